#include "broker/redis_broker.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <charconv>
#include <limits>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "broker/memory_broker.h"

namespace bridge::broker {
namespace asio = boost::asio;
namespace {

int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool ParseOffset(std::string_view s, uint64_t& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

// "<offset>-0" -> offset.
bool ParseEntryId(std::string_view id, uint64_t& out) {
  size_t dash = id.find('-');
  return dash != std::string_view::npos && ParseOffset(id.substr(0, dash), out);
}

absl::Status BadReply(const char* what, const RedisReply& r) {
  return absl::InternalError(absl::StrCat(what, ": unexpected reply ", r.DebugString()));
}

}  // namespace

absl::StatusOr<std::shared_ptr<RedisBroker>> RedisBroker::Create(asio::any_io_executor executor,
                                                                 RedisBrokerOptions options) {
  std::shared_ptr<RedisBroker> b(new RedisBroker(std::move(executor), std::move(options)));
  RedisConnectionOptions cmd = b->options_.connection;
  cmd.subscriber = false;
  cmd.client_name = b->options_.node_id + ":cmd";
  auto c = RedisConnection::Create(b->strand_, std::move(cmd));
  if (!c.ok()) return c.status();
  RedisConnectionOptions sub = b->options_.connection;
  sub.subscriber = true;
  sub.client_name = b->options_.node_id + ":sub";
  auto s = RedisConnection::Create(b->strand_, std::move(sub));
  if (!s.ok()) return s.status();
  b->cmd_ = *std::move(c);
  b->sub_ = *std::move(s);
  b->scripts_ = ScriptRunner::Create(*b->cmd_, {&PublishScript(), &HistoryScript(), &RotateScript(),
                                                &NodesAnnounceScript(), &NodesWithdrawScript()});
  return b;
}

RedisBroker::RedisBroker(asio::any_io_executor executor, RedisBrokerOptions options)
    : strand_(asio::make_strand(std::move(executor))), options_(std::move(options)) {
  health_.detail = "not started";
}

RedisBroker::~RedisBroker() = default;

void RedisBroker::SetHandler(core::BrokerHandler handler) { handler_ = std::move(handler); }

void RedisBroker::Start() {
  asio::post(strand_, [self = shared_from_this()] {
    if (self->started_ || self->stopped_) return;
    self->started_ = true;
    std::weak_ptr<RedisBroker> weak = self;
    self->cmd_->SetStateHandler([weak](State s, const absl::Status& why) {
      if (auto b = weak.lock()) b->OnCommandState(s, why);
    });
    self->sub_->SetStateHandler([weak](State s, const absl::Status& why) {
      if (auto b = weak.lock()) b->OnSubscriberState(s, why);
    });
    self->sub_->SetPushHandler([weak](RedisReply push) {
      if (auto b = weak.lock()) b->OnPush(push);
    });
    self->cmd_->Start();
    self->sub_->Start();
  });
}

void RedisBroker::Stop() {
  asio::post(strand_, [self = shared_from_this()] { self->DoStop(); });
}

void RedisBroker::DoStop() {
  if (stopped_) return;
  stopped_ = true;
  cmd_->Stop();
  sub_->Stop();
  auto interests = std::move(interests_);
  interests_.clear();
  for (auto& [channel, in] : interests) {
    for (auto& done : in.waiting) done(absl::CancelledError("broker stopped"));
  }
  std::lock_guard lock(health_mu_);
  health_ = core::BrokerHealth{false, false, "stopped"};
}

absl::Status RedisBroker::ValidatePolicy(const core::HistoryPolicy& policy) const {
  if (policy.ttl.count() < 0) return absl::InvalidArgumentError("history ttl is negative");
  if (options_.meta_ttl.count() > 0 && policy.size > 0 &&
      (policy.ttl.count() == 0 || policy.ttl > options_.meta_ttl)) {
    return absl::InvalidArgumentError(
        absl::StrCat("history ttl ", policy.ttl.count(), "s must be set and at most the meta ttl ",
                     options_.meta_ttl.count(), "s (a stream must not outlive its meta)"));
  }
  return absl::OkStatus();
}

void RedisBroker::Publish(const std::string& channel, std::string_view head, std::string_view tail,
                          const core::HistoryPolicy& policy, std::string_view origin,
                          PublishCallback done) {
  std::string from(origin);
  std::replace(from.begin(), from.end(), ':', '_');  // the payload's separator
  // The one clock read of the publish path: it travels in the payload (this node reads it back
  // for its delivery lag) and measures the round trip at the reply.
  const int64_t sent = SteadyNanos();
  from = StampOrigin(from, sent);
  asio::post(strand_, [self = shared_from_this(), channel, head = std::string(head),
                       tail = std::string(tail), policy, from = std::move(from),
                       done = std::move(done)]() mutable {
    self->DoPublish(channel, head, tail, policy, from, std::move(done));
  });
}

void RedisBroker::DoPublish(const std::string& channel, const std::string& head,
                            const std::string& tail, const core::HistoryPolicy& policy,
                            const std::string& origin, PublishCallback done) {
  auto fail = [this, &done](absl::Status s) {
    stats_.publish_failed.fetch_add(1, std::memory_order_relaxed);
    done(std::move(s));
  };
  if (stopped_) return fail(absl::CancelledError("broker stopped"));
  if (absl::Status valid = ValidatePolicy(policy); !valid.ok()) return fail(valid);
  ChannelKeys keys = KeysFor(options_.prefix, channel);
  std::vector<std::string> args = {"3",
                                   std::move(keys.meta),
                                   std::move(keys.stream),
                                   std::move(keys.topic),
                                   head,
                                   tail,
                                   std::to_string(policy.size),
                                   std::to_string(policy.max_bytes),
                                   std::to_string(policy.ttl.count()),
                                   std::to_string(options_.meta_ttl.count()),
                                   NewEpoch(),
                                   origin};
  int64_t sent = -1;
  SplitStamp(origin, &sent);
  scripts_->Run(PublishScript(), std::move(args), options_.connection.command_timeout,
                [this, self = shared_from_this(), sent,
                 done = std::move(done)](absl::StatusOr<RedisReply> r) mutable {
                  absl::StatusOr<core::StreamPosition> out;
                  if (!r.ok()) {
                    out = r.status();
                  } else if (r->is_error()) {
                    out = absl::InternalError(absl::StrCat("publish script: ", r->str));
                  } else {
                    core::StreamPosition pos;
                    if (r->is_array() && r->elements.size() == 2 && r->elements[0].is_text() &&
                        r->elements[1].is_text() && ParseOffset(r->elements[0].str, pos.offset)) {
                      pos.epoch = r->elements[1].str;
                      out = std::move(pos);
                    } else {
                      out = BadReply("publish script", *r);
                    }
                  }
                  if (out.ok()) {
                    stats_.published.fetch_add(1, std::memory_order_relaxed);
                    stats_.publish_latency.Observe(0, 0,
                                                   SteadyNanos() - sent);  // the strand: shard 0
                  } else {
                    stats_.publish_failed.fetch_add(1, std::memory_order_relaxed);
                    if (out.status().code() == absl::StatusCode::kInternal) {
                      stats_.errors.fetch_add(1, std::memory_order_relaxed);
                    }
                  }
                  done(std::move(out));
                });
}

void RedisBroker::History(const std::string& channel, uint64_t since, size_t limit,
                          HistoryCallback done) {
  asio::post(strand_,
             [self = shared_from_this(), channel, since, limit, done = std::move(done)]() mutable {
               self->DoHistory(channel, since, limit, false, std::move(done));
             });
}

void RedisBroker::Open(const std::string& channel, uint64_t since, size_t limit,
                       HistoryCallback done) {
  asio::post(strand_,
             [self = shared_from_this(), channel, since, limit, done = std::move(done)]() mutable {
               self->DoHistory(channel, since, limit, true, std::move(done));
             });
}

void RedisBroker::DoHistory(const std::string& channel, uint64_t since, size_t limit, bool create,
                            HistoryCallback done) {
  if (stopped_) return done(absl::CancelledError("broker stopped"));
  ChannelKeys keys = KeysFor(options_.prefix, channel);
  const std::string first = since == std::numeric_limits<uint64_t>::max()
                                ? absl::StrCat(since, "-1")
                                : absl::StrCat(since + 1, "-0");
  // One more than asked for, to know whether the limit cut the range.
  const std::string count = limit == 0 ? "0" : std::to_string(limit + 1);
  scripts_->Run(
      HistoryScript(),
      {"2", std::move(keys.meta), std::move(keys.stream), first, count,
       create ? NewEpoch() : std::string(), std::to_string(options_.meta_ttl.count())},
      options_.history_timeout,
      [this, self = shared_from_this(), since, limit,
       done = std::move(done)](absl::StatusOr<RedisReply> r) mutable {
        if (!r.ok()) return done(r.status());
        auto bad = [&](const char* what) {
          stats_.errors.fetch_add(1, std::memory_order_relaxed);
          done(r->is_error() ? absl::InternalError(absl::StrCat("history script: ", r->str))
                             : BadReply(what, *r));
        };
        if (!r->is_array() || r->elements.size() != 3 || !r->elements[0].is_text() ||
            !r->elements[1].is_text()) {
          return bad("history script");
        }
        core::BrokerHistory out;
        out.top.epoch = r->elements[0].str;
        if (!ParseOffset(r->elements[1].str, out.top.offset)) return bad("history offset");
        if (out.top.epoch.empty()) {
          out.top.offset = 0;
          out.complete = since == 0;
          stats_.history_reads.fetch_add(1, std::memory_order_relaxed);
          return done(std::move(out));
        }
        RedisReply& entries = r->elements[2];
        if (!entries.is_array() && !entries.is_nil()) return bad("history entries");
        for (RedisReply& e : entries.elements) {
          core::HistoryFrame f;
          if (!e.is_array() || e.elements.size() != 2 || !e.elements[0].is_text() ||
              !ParseEntryId(e.elements[0].str, f.offset) || !e.elements[1].is_array() ||
              e.elements[1].elements.size() < 2) {
            return bad("history entry");
          }
          f.text = std::move(e.elements[1].elements[1].str);
          out.frames.push_back(std::move(f));
        }
        bool cut = false;
        if (limit != 0 && out.frames.size() > limit) {
          out.frames.resize(limit);
          cut = true;
        }
        out.complete = since >= out.top.offset ||
                       (!cut && !out.frames.empty() && out.frames.front().offset == since + 1);
        stats_.history_reads.fetch_add(1, std::memory_order_relaxed);
        done(std::move(out));
      });
}

void RedisBroker::RotateEpoch(const std::string& channel, const std::string& from_epoch,
                              PublishCallback done) {
  asio::post(
      strand_, [self = shared_from_this(), channel, from_epoch, done = std::move(done)]() mutable {
        if (self->stopped_) return done(absl::CancelledError("broker stopped"));
        ChannelKeys keys = KeysFor(self->options_.prefix, channel);
        self->scripts_->Run(RotateScript(), {"1", std::move(keys.meta), from_epoch, NewEpoch()},
                            self->options_.connection.command_timeout,
                            [self, done = std::move(done)](absl::StatusOr<RedisReply> r) mutable {
                              if (!r.ok()) return done(r.status());
                              core::StreamPosition pos;
                              if (!r->is_array() || r->elements.size() != 2 ||
                                  !r->elements[0].is_text() || !r->elements[1].is_text() ||
                                  !ParseOffset(r->elements[1].str, pos.offset)) {
                                self->stats_.errors.fetch_add(1, std::memory_order_relaxed);
                                return done(BadReply("rotate script", *r));
                              }
                              pos.epoch = r->elements[0].str;
                              done(std::move(pos));
                            });
      });
}

void RedisBroker::Subscribe(const std::string& channel, StatusCallback done) {
  asio::post(strand_, [self = shared_from_this(), channel, done = std::move(done)]() mutable {
    self->DoSubscribe(channel, std::move(done));
  });
}

void RedisBroker::Unsubscribe(const std::string& channel) {
  asio::post(strand_, [self = shared_from_this(), channel] { self->DoUnsubscribe(channel); });
}

void RedisBroker::DoSubscribe(const std::string& channel, StatusCallback done) {
  if (stopped_) return done(absl::CancelledError("broker stopped"));
  auto [it, inserted] = interests_.try_emplace(channel);
  Interest& in = it->second;
  if (inserted) in.generation = next_generation_++;
  if (in.active) return done(absl::OkStatus());
  if (!sub_ready_) {
    // Kept: the next kReady subscribes it with the others.
    return done(absl::UnavailableError(
        absl::StrCat("redis subscriber connection not ready: ", sub_->last_error().ToString())));
  }
  in.waiting.push_back(std::move(done));
  if (!in.in_flight) SendSubscribe(channel, in);
}

void RedisBroker::SendSubscribe(const std::string& channel, Interest& in) {
  in.in_flight = true;
  const uint64_t generation = in.generation;
  sub_->Command(
      {"SUBSCRIBE", KeysFor(options_.prefix, channel).topic},
      [this, self = shared_from_this(), channel, generation](absl::StatusOr<RedisReply> r) mutable {
        OnSubscribed(channel, generation, std::move(r));
      });
}

void RedisBroker::OnSubscribed(const std::string& channel, uint64_t generation,
                               absl::StatusOr<RedisReply> r) {
  auto it = interests_.find(channel);
  if (it == interests_.end() || it->second.generation != generation) return;  // stale
  Interest& in = it->second;
  in.in_flight = false;
  absl::Status status = r.ok() ? ReplyToStatus(*r) : r.status();
  if (status.ok()) in.active = true;
  if (!status.ok()) stats_.errors.fetch_add(1, std::memory_order_relaxed);
  if (in.restoring) {
    in.restoring = false;
    --restoring_;
  }
  auto waiting = std::move(in.waiting);
  in.waiting.clear();
  for (auto& done : waiting) done(status);
  UpdateState(status);
}

void RedisBroker::DoUnsubscribe(const std::string& channel) {
  auto it = interests_.find(channel);
  if (it == interests_.end()) return;
  Interest in = std::move(it->second);
  interests_.erase(it);
  if (in.restoring) --restoring_;
  for (auto& done : in.waiting) done(absl::CancelledError("unsubscribed"));
  if (sub_ready_) {
    sub_->Command({"UNSUBSCRIBE", KeysFor(options_.prefix, channel).topic},
                  [](absl::StatusOr<RedisReply>) {});
  }
  UpdateState(absl::OkStatus());
}

void RedisBroker::PublishBackendMessage(std::string_view origin, std::string_view payload) {
  std::string message(origin);
  std::replace(message.begin(), message.end(), ':', '_');
  message.push_back(':');
  message.append(payload);
  asio::post(strand_, [self = shared_from_this(), message = std::move(message)]() mutable {
    if (self->stopped_) return;
    if (!self->cmd_ready_) {
      // At most once, as pub/sub: counted, never queued for a link that may not come back.
      self->stats_.errors.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    self->cmd_->Command({"PUBLISH", BackendTopic(self->options_.prefix), std::move(message)},
                        self->options_.connection.command_timeout,
                        [self](absl::StatusOr<RedisReply> r) {
                          if (!r.ok() || r->is_error()) {
                            self->stats_.errors.fetch_add(1, std::memory_order_relaxed);
                          }
                        });
  });
}

void RedisBroker::SetBackendInterest(bool on) {
  asio::post(strand_, [self = shared_from_this(), on] {
    if (self->stopped_ || self->backend_interest_ == on) return;
    self->backend_interest_ = on;
    if (!self->sub_ready_) return;  // the next kReady subscribes
    self->sub_->Command({on ? "SUBSCRIBE" : "UNSUBSCRIBE", BackendTopic(self->options_.prefix)},
                        [](absl::StatusOr<RedisReply>) {});
  });
}

void RedisBroker::OnCommandState(State s, const absl::Status& why) {
  if (stopped_) return;
  cmd_ready_ = s == State::kReady;
  UpdateState(why);
}

void RedisBroker::OnSubscriberState(State s, const absl::Status& why) {
  if (stopped_) return;
  const bool was_ready = sub_ready_;
  sub_ready_ = s == State::kReady;
  if (was_ready && !sub_ready_) {
    // The link's pending SUBSCRIBEs fail on their own; those completions are now stale.
    restoring_ = 0;
    for (auto& [channel, in] : interests_) {
      in.active = false;
      in.in_flight = false;
      in.restoring = false;
      in.generation = next_generation_++;
      auto waiting = std::move(in.waiting);
      in.waiting.clear();
      for (auto& done : waiting) done(absl::UnavailableError("redis subscriber connection lost"));
    }
  } else if (!was_ready && sub_ready_) {
    if (backend_interest_) {
      sub_->Command({"SUBSCRIBE", BackendTopic(options_.prefix)},
                    [](absl::StatusOr<RedisReply>) {});
    }
    for (auto& [channel, in] : interests_) {
      in.restoring = true;
      ++restoring_;
      SendSubscribe(channel, in);
    }
  }
  UpdateState(why);
}

void RedisBroker::OnPush(const RedisReply& push) {
  if (stopped_ || !push.is_array() || push.elements.size() != 3 ||
      !push.elements[0].Is("message")) {
    return;  // acks complete their commands; nothing else is subscribed to
  }
  const RedisReply& topic = push.elements[1];
  const RedisReply& payload = push.elements[2];
  if (topic.is_text() && topic.str == BackendTopic(options_.prefix)) {
    size_t colon = payload.is_text() ? payload.str.find(':') : std::string::npos;
    if (colon == std::string::npos) {
      stats_.errors.fetch_add(1, std::memory_order_relaxed);
    } else if (backend_interest_ && handler_.on_backend_message) {
      handler_.on_backend_message(payload.str.substr(0, colon), payload.str.substr(colon + 1));
    }
    return;
  }
  std::optional<std::string> channel =
      topic.is_text() ? ChannelOfTopic(options_.prefix, topic.str) : std::nullopt;
  std::optional<TopicPayload> parsed = payload.is_text() ? ParsePayload(payload.str) : std::nullopt;
  if (!channel || !parsed) {
    stats_.errors.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  auto it = interests_.find(*channel);
  if (it == interests_.end() || !it->second.active) return;
  stats_.delivered.fetch_add(1, std::memory_order_relaxed);
  int64_t sent = -1;
  const std::string_view origin = SplitStamp(parsed->origin, &sent);
  // Only this node's stamps are on this clock; another node's (or a forged one) mean nothing.
  const std::string_view id = options_.node_id;
  if (sent >= 0 && origin.substr(0, id.size()) == id &&
      (origin.size() == id.size() || origin[id.size()] == '/')) {
    const int64_t lag = SteadyNanos() - sent;
    if (lag >= 0 && lag < int64_t{3600} * 1'000'000'000) stats_.delivery_lag.Observe(0, 0, lag);
  }
  if (handler_.on_message) {
    handler_.on_message(core::BrokerMessage{*std::move(channel), parsed->offset,
                                            std::string(parsed->epoch), std::string(parsed->text),
                                            std::string(origin)});
  }
}

void RedisBroker::UpdateState(const absl::Status& why) {
  const bool pubsub_up = sub_ready_ && restoring_ == 0;
  core::BrokerHealth health{cmd_ready_, pubsub_up, ""};
  if (!cmd_ready_) {
    health.detail = absl::StrCat("redis commands: ", cmd_->last_error().ToString(), "; ");
  }
  if (!sub_ready_) {
    absl::StrAppend(&health.detail, "redis pub/sub: ", sub_->last_error().ToString());
  } else if (restoring_ != 0) {
    absl::StrAppend(&health.detail, "redis pub/sub: re-subscribing ", restoring_, " channels");
  }
  {
    std::lock_guard lock(health_mu_);
    health_ = health;
  }
  const bool any_down = !sub_ready_ || !cmd_ready_;
  std::optional<core::BrokerState> next;
  if (health.ok() && reported_ != core::BrokerState::kUp) {
    if (reported_ == core::BrokerState::kDown) {
      stats_.reconnects.fetch_add(1, std::memory_order_relaxed);
    }
    next = core::BrokerState::kUp;
  } else if (any_down && reported_ == core::BrokerState::kUp) {
    next = core::BrokerState::kDown;
  } else if (any_down && !reported_ && !why.ok()) {
    next = core::BrokerState::kDown;  // never came up
  }
  if (!next) return;
  reported_ = next;
  if (handler_.on_state) {
    handler_.on_state(*next, *next == core::BrokerState::kUp
                                 ? absl::OkStatus()
                                 : absl::UnavailableError(health.detail));
  }
}

void RedisBroker::AnnounceNode(std::string_view node, std::string_view info,
                               std::chrono::milliseconds ttl, NodesCallback done) {
  if (info.size() > core::kMaxNodeInfoBytes) {
    return done(absl::InvalidArgumentError("node info too long"));
  }
  asio::post(strand_, [self = shared_from_this(), node = std::string(node),
                       info = std::string(info), ttl, done = std::move(done)]() mutable {
    if (self->stopped_) return done(absl::CancelledError("broker stopped"));
    if (!self->cmd_ready_) return done(absl::UnavailableError("redis commands not ready"));
    NodeKeys keys = NodeKeysFor(self->options_.prefix);
    self->scripts_->Run(
        NodesAnnounceScript(),
        {"2", std::move(keys.info), std::move(keys.lease), node, std::move(info),
         std::to_string(std::max<int64_t>(1, ttl.count())), std::to_string(core::kMaxNodes),
         std::to_string(core::kMaxNodeInfoBytes)},
        self->options_.connection.command_timeout,
        [self, done = std::move(done)](absl::StatusOr<RedisReply> r) mutable {
          if (!r.ok()) return done(r.status());
          int64_t now = 0;
          if (r->is_error() || !r->is_array() || r->elements.size() < 2 ||
              !r->elements[0].is_text() || !absl::SimpleAtoi(r->elements[0].str, &now) ||
              !r->elements[1].is_integer() || r->elements.size() % 2 != 0) {
            self->stats_.errors.fetch_add(1, std::memory_order_relaxed);
            return done(r->is_error() ? absl::InternalError(absl::StrCat("nodes script: ", r->str))
                                      : BadReply("nodes script", *r));
          }
          if (r->elements[1].integer != 0) {
            return done(absl::ResourceExhaustedError(
                absl::StrCat("the node directory holds ", core::kMaxNodes, " live nodes")));
          }
          // What another writer left there is skipped, not trusted: the reader validates info.
          std::vector<core::NodeAnnouncement> out;
          for (size_t i = 2; i + 1 < r->elements.size() && out.size() < core::kMaxNodes; i += 2) {
            RedisReply& name = r->elements[i];
            RedisReply& value = r->elements[i + 1];
            if (!name.is_text() || !value.is_text()) continue;
            const size_t nl = value.str.find('\n');
            int64_t at = 0;
            if (nl == std::string::npos ||
                !absl::SimpleAtoi(absl::string_view(value.str.data(), nl), &at) ||
                value.str.size() - nl - 1 > core::kMaxNodeInfoBytes) {
              continue;
            }
            out.push_back(core::NodeAnnouncement{std::move(name.str), value.str.substr(nl + 1),
                                                 std::max<int64_t>(0, now - at)});
          }
          done(std::move(out));
        });
  });
}

void RedisBroker::WithdrawNode(std::string_view node, StatusCallback done) {
  asio::post(strand_, [self = shared_from_this(), node = std::string(node),
                       done = std::move(done)]() mutable {
    if (self->stopped_) return done(absl::CancelledError("broker stopped"));
    if (!self->cmd_ready_) return done(absl::UnavailableError("redis not ready"));
    NodeKeys keys = NodeKeysFor(self->options_.prefix);
    self->scripts_->Run(NodesWithdrawScript(),
                        {"2", std::move(keys.info), std::move(keys.lease), node},
                        self->options_.connection.command_timeout,
                        [done = std::move(done)](absl::StatusOr<RedisReply> r) mutable {
                          if (!r.ok()) return done(r.status());
                          done(ReplyToStatus(*r));
                        });
  });
}

core::BrokerHealth RedisBroker::Health() const {
  std::lock_guard lock(health_mu_);
  return health_;
}

}  // namespace bridge::broker
