#include "core/hub.h"

#include <algorithm>
#include <random>

#include "core/channel.h"
#include "core/strings.h"

namespace bridge::core {
namespace {

std::string NewEpoch() {
  std::random_device rd;
  uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
               static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  static const char kHex[] = "0123456789abcdef";
  std::string s(12, '0');
  for (char& c : s) {
    c = kHex[v & 15];
    v >>= 4;
  }
  return s;
}

}  // namespace

Hub::Hub(std::vector<Executor> shard_executors, NamespaceRegistry namespaces, Metrics& metrics,
         size_t max_channels)
    : namespaces_(std::move(namespaces)),
      metrics_(metrics),
      epoch_(NewEpoch()),
      namespace_stats_(new NamespaceStats[namespaces_.all().size() + 1]),
      max_channels_(max_channels),
      stripes_(new Stripe[kStripes]) {
  for (auto& e : shard_executors) {
    auto shard = std::make_unique<Shard>();
    shard->executor = std::move(e);
    shards_.push_back(std::move(shard));
  }
}

Hub::~Hub() = default;

Hub::ChannelState* Hub::FindOrCreateLocked(Stripe& stripe, const std::string& channel) {
  auto it = stripe.channels.find(channel);
  if (it != stripe.channels.end()) return &it->second;
  if (channel_count_.fetch_add(1, std::memory_order_relaxed) >= max_channels_) {
    channel_count_.fetch_sub(1, std::memory_order_relaxed);
    metrics_.channels_refused_total.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  metrics_.channels_current.fetch_add(1, std::memory_order_relaxed);
  return &stripe.channels[channel];
}

Hub::Stripe& Hub::StripeFor(const std::string& channel) {
  return stripes_[std::hash<std::string>{}(channel) % kStripes];
}

void Hub::TrimHistory(ChannelState& state, const NamespaceConfig* ns,
                      std::chrono::steady_clock::time_point now) {
  size_t max = ns == nullptr ? 0 : ns->history_size;
  while (state.history.size() > max) state.history.pop_front();
  if (ns != nullptr && ns->history_ttl.count() > 0) {
    while (!state.history.empty() && now - state.history.front().first > ns->history_ttl) {
      state.history.pop_front();
    }
  }
}

absl::StatusOr<PublishResult> Hub::Publish(const gathering::bridge::v1::Event& event) {
  auto parts = EncodeEvent(event, std::chrono::system_clock::now());
  if (!parts.ok()) {
    metrics_.publish_rejected_total.fetch_add(1, std::memory_order_relaxed);
    return parts.status();
  }
  if (namespaces_.Find(NamespaceOf(event.channel())) == nullptr) {
    metrics_.publish_rejected_total.fetch_add(1, std::memory_order_relaxed);
    return absl::InvalidArgumentError(
        Cat("unknown namespace '", NamespaceOf(event.channel()), "'"));
  }
  PublishResult r = PublishFrame(event.channel(), parts->head, parts->tail, 0);
  if (r.offset == 0) return absl::ResourceExhaustedError("the bridge holds too many channels");
  metrics_.events_published_total.fetch_add(1, std::memory_order_relaxed);
  return r;
}

PublishResult Hub::PublishFrame(const std::string& channel, std::string_view head,
                                std::string_view tail, uint64_t exclude_id) {
  const NamespaceConfig* ns = namespaces_.Find(NamespaceOf(channel));
  auto now = std::chrono::steady_clock::now();
  Stripe& stripe = StripeFor(channel);
  std::lock_guard lock(stripe.mu);
  ChannelState* found = FindOrCreateLocked(stripe, channel);
  if (found == nullptr) return PublishResult{0, epoch_};
  ChannelState& state = *found;
  uint64_t offset = ++state.offset;
  auto frame = std::make_shared<Frame>();
  frame->channel = channel;
  frame->offset = offset;
  frame->ns = namespaces_.IndexOf(NamespaceOf(channel));
  frame->text.reserve(head.size() + 20 + tail.size());
  frame->text.append(head);
  internal::AppendPiece(frame->text, offset);
  frame->text.append(tail);
  FramePtr shared = std::move(frame);
  if (ns != nullptr && ns->history_size > 0) state.history.emplace_back(now, shared);
  TrimHistory(state, ns, now);
  // Posted under the lock so every shard receives a channel's frames in offset order.
  if (stopped_.load(std::memory_order_relaxed)) return PublishResult{offset, epoch_};
  for (size_t i = 0; i < state.shard_subscribers.size(); ++i) {
    if (state.shard_subscribers[i] == 0) continue;
    Shard* s = shards_[i].get();
    s->executor([s, shared, exclude_id] { s->Deliver(shared, exclude_id); });
  }
  return PublishResult{offset, epoch_};
}

void Hub::Shard::Deliver(const FramePtr& frame, uint64_t exclude_id) {
  auto it = channels.find(frame->channel);
  if (it == channels.end()) return;
  for (Entry& e : it->second) {
    if (frame->offset <= e.last_offset) continue;
    e.last_offset = frame->offset;
    if (exclude_id != 0 && e.subscriber->subscriber_id() == exclude_id) continue;
    e.subscriber->Deliver(frame);
  }
}

SubscribeResult Hub::Subscribe(size_t shard, const std::string& channel, Subscriber* s,
                               const std::optional<RecoveryRequest>& recovery) {
  SubscribeResult result;
  result.epoch = epoch_;
  const NamespaceConfig* ns = namespaces_.Find(NamespaceOf(channel));
  auto now = std::chrono::steady_clock::now();
  uint64_t last_offset = 0;
  bool joined = false;
  {
    Stripe& stripe = StripeFor(channel);
    std::lock_guard lock(stripe.mu);
    ChannelState* found = FindOrCreateLocked(stripe, channel);
    if (found == nullptr) {
      result.refused = true;
      return result;
    }
    ChannelState& state = *found;
    TrimHistory(state, ns, now);
    result.offset = state.offset;
    last_offset = state.offset;
    if (recovery.has_value()) {
      uint64_t since = recovery->since;
      bool same_epoch = recovery->epoch == epoch_ || (recovery->epoch.empty() && since == 0);
      if (!same_epoch || since > state.offset) {
        result.recovered = false;
      } else if (since == state.offset) {
        result.recovered = true;
      } else {
        uint64_t first =
            state.history.empty() ? state.offset + 1 : state.history.front().second->offset;
        result.recovered = first <= since + 1;
        for (const auto& [t, f] : state.history) {
          if (f->offset > since) result.missed.push_back(f);
        }
      }
    }
    // Registering inside the lock: frames with offsets above `last_offset` are posted after it
    // is released and so reach this shard's queue after this task.
    auto& entries = shards_[shard]->channels[channel];
    for (auto& e : entries) {
      if (e.subscriber == s) {
        e.last_offset = std::max(e.last_offset, last_offset);
        return result;
      }
    }
    entries.push_back(Entry{s, last_offset});
    ++state.connections;
    if (state.shard_subscribers.empty()) state.shard_subscribers.resize(shards_.size());
    ++state.shard_subscribers[shard];
    if (!s->identity().empty()) {
      Member& m = state.members[s->identity()];
      if (m.connections++ == 0) {
        m.joined_at = std::chrono::system_clock::now();
        joined = ns != nullptr && ns->presence;
      }
    }
  }
  metrics_.subscriptions_current.fetch_add(1, std::memory_order_relaxed);
  if (joined) PublishPresence(channel, s->identity(), true, "");
  if (lifecycle_sinks_.load(std::memory_order_relaxed) > 0) {
    ForwardLifecycle(channel, *s, true, "");
  }
  return result;
}

void Hub::PublishPresence(const std::string& channel, const std::string& identity, bool joined,
                          std::string_view reason) {
  gathering::bridge::v1::Event e;
  e.set_channel(channel);
  if (joined) {
    e.mutable_agent_joined()->set_identity(identity);
  } else {
    e.mutable_agent_left()->set_identity(identity);
    e.mutable_agent_left()->set_reason(std::string(reason));
  }
  auto parts = EncodeEvent(e, std::chrono::system_clock::now());
  if (parts.ok()) PublishFrame(channel, parts->head, parts->tail, 0);
}

void Hub::ForwardLifecycle(const std::string& channel, const Subscriber& s, bool subscribed,
                           std::string_view reason) {
  auto r = std::make_shared<ClientMessageRecord>();
  r->kind = subscribed ? ClientMessageRecord::Kind::kSubscribed
                       : ClientMessageRecord::Kind::kUnsubscribed;
  r->reason = std::string(reason);
  r->channel = channel;
  r->connection_id = s.connection_id();
  r->identity = s.identity();
  r->received_at = std::chrono::system_clock::now();
  ForwardToBackends(r);
}

void Hub::Unsubscribe(size_t shard, const std::string& channel, Subscriber* s,
                      std::string_view reason) {
  auto& channels = shards_[shard]->channels;
  auto it = channels.find(channel);
  if (it == channels.end()) return;
  auto& entries = it->second;
  auto pos = std::find_if(entries.begin(), entries.end(),
                          [s](const Entry& e) { return e.subscriber == s; });
  if (pos == entries.end()) return;
  entries.erase(pos);
  metrics_.subscriptions_current.fetch_sub(1, std::memory_order_relaxed);
  if (entries.empty()) channels.erase(it);

  const NamespaceConfig* ns = namespaces_.Find(NamespaceOf(channel));
  bool left = false;
  {
    Stripe& stripe = StripeFor(channel);
    std::lock_guard lock(stripe.mu);
    auto found = stripe.channels.find(channel);
    if (found == stripe.channels.end()) return;  // unreachable: subscribing created it
    ChannelState& state = found->second;
    if (state.connections > 0) --state.connections;
    if (shard < state.shard_subscribers.size() && state.shard_subscribers[shard] > 0) {
      --state.shard_subscribers[shard];
    }
    auto m = state.members.find(s->identity());
    if (!s->identity().empty() && m != state.members.end() && --m->second.connections == 0) {
      state.members.erase(m);
      left = ns != nullptr && ns->presence;
    }
  }
  if (left) PublishPresence(channel, s->identity(), false, reason);
  if (lifecycle_sinks_.load(std::memory_order_relaxed) > 0) {
    ForwardLifecycle(channel, *s, false, reason);
  }
}

PresenceResult Hub::Presence(const std::string& channel) {
  PresenceResult r;
  Stripe& stripe = StripeFor(channel);
  std::lock_guard lock(stripe.mu);
  auto it = stripe.channels.find(channel);
  if (it == stripe.channels.end()) return r;
  r.connection_count = it->second.connections;
  for (const auto& [identity, m] : it->second.members) {
    r.members.push_back({identity, m.connections, m.joined_at});
  }
  std::sort(r.members.begin(), r.members.end(),
            [](const auto& a, const auto& b) { return a.identity < b.identity; });
  return r;
}

std::string Hub::RenderNamespaceMetrics() const {
  std::string out;
  const auto& all = namespaces_.all();
  auto family = [&](const char* name, const char* type, const char* help, auto field) {
    out += Cat("# HELP bridge_namespace_", name, " ", help, "\n# TYPE bridge_namespace_", name, " ",
               type, "\n");
    for (size_t i = 0; i < all.size(); ++i) {
      out += Cat("bridge_namespace_", name, "{namespace=\"", all[i].name, "\"} ",
                 field(namespace_stats_[i]), "\n");
    }
  };
  family("dropped_total", "counter", "Frames dropped by drop_oldest/latest_only.",
         [](const NamespaceStats& s) { return s.dropped.load(); });
  family("gaps_total", "counter", "Gap frames sent.",
         [](const NamespaceStats& s) { return s.gaps.load(); });
  family("slow_closes_total", "counter", "Connections closed 4008.",
         [](const NamespaceStats& s) { return s.slow_closes.load(); });
  family("queued_bytes", "gauge", "Bytes of the namespace's frames waiting in write queues.",
         [](const NamespaceStats& s) { return s.queued_bytes.load(); });
  return out;
}

HistoryResult Hub::History(const std::string& channel, uint64_t since, size_t limit) {
  HistoryResult out;
  out.epoch = epoch_;
  const NamespaceConfig* ns = namespaces_.Find(NamespaceOf(channel));
  Stripe& stripe = StripeFor(channel);
  std::lock_guard lock(stripe.mu);
  auto it = stripe.channels.find(channel);
  if (it == stripe.channels.end()) {
    out.complete = since == 0;
    return out;
  }
  ChannelState& state = it->second;
  TrimHistory(state, ns, std::chrono::steady_clock::now());
  out.offset = state.offset;
  uint64_t first = state.history.empty() ? state.offset + 1 : state.history.front().second->offset;
  out.complete = since >= state.offset || first <= since + 1;
  for (const auto& [t, f] : state.history) {
    if (f->offset <= since) continue;
    if (limit != 0 && out.frames.size() >= limit) {
      out.complete = false;
      break;
    }
    out.frames.push_back(f);
  }
  return out;
}

void Hub::AddSink(std::vector<std::string> patterns, std::shared_ptr<ClientMessageSink> sink,
                  bool lifecycle) {
  std::unique_lock lock(sinks_mu_);
  if (lifecycle) lifecycle_sinks_.fetch_add(1);
  sinks_.push_back(SinkEntry{std::move(patterns), std::move(sink), lifecycle});
}

void Hub::RemoveSink(const ClientMessageSink* sink) {
  std::unique_lock lock(sinks_mu_);
  std::erase_if(sinks_, [this, sink](const SinkEntry& e) {
    if (e.sink.get() != sink) return false;
    if (e.lifecycle) lifecycle_sinks_.fetch_sub(1);
    return true;
  });
}

size_t Hub::sink_count() const {
  std::shared_lock lock(sinks_mu_);
  return sinks_.size();
}

void Hub::ForwardToBackends(const ClientMessagePtr& message) {
  bool is_lifecycle = message->kind != ClientMessageRecord::Kind::kMessage;
  std::shared_lock lock(sinks_mu_);
  for (const auto& e : sinks_) {
    if (is_lifecycle && !e.lifecycle) continue;
    for (const auto& p : e.patterns) {
      if (PatternMatches(p, message->channel)) {
        e.sink->OnClientMessage(message);
        break;
      }
    }
  }
}

}  // namespace bridge::core
