#include "broker/memory_broker.h"

#include <utility>
#include <vector>

#include "core/epoch.h"

namespace bridge::broker {

MemoryBroker::MemoryBroker(MemoryBrokerOptions options)
    : options_(options), max_channels_(options.max_channels), stripes_(new Stripe[kStripes]) {}

MemoryBroker::~MemoryBroker() = default;

void MemoryBroker::SetHandler(core::BrokerHandler handler) {
  handler_ = std::move(handler);
  if (handler_.on_state) handler_.on_state(core::BrokerState::kUp, absl::OkStatus());
}

absl::Status MemoryBroker::ValidatePolicy(const core::HistoryPolicy& policy) const {
  if (policy.ttl.count() < 0) return absl::InvalidArgumentError("history ttl is negative");
  return absl::OkStatus();
}

MemoryBroker::Stripe& MemoryBroker::StripeFor(const std::string& channel) {
  return stripes_[std::hash<std::string>{}(channel) % kStripes];
}

MemoryBroker::ChannelState* MemoryBroker::FindLive(Stripe& stripe, const std::string& channel,
                                                   Clock::time_point now) {
  auto it = stripe.channels.find(channel);
  if (it == stripe.channels.end()) return nullptr;
  if (options_.meta_ttl.count() > 0 && now - it->second.last_publish > options_.meta_ttl) {
    stripe.channels.erase(it);
    channel_count_.fetch_sub(1, std::memory_order_relaxed);
    return nullptr;
  }
  return &it->second;
}

void MemoryBroker::Trim(ChannelState& state, const core::HistoryPolicy& policy,
                        Clock::time_point now) {
  const bool has_ttl = policy.ttl.count() > 0;
  while (!state.history.empty() &&
         (state.history.size() > policy.size ||
          (policy.max_bytes != 0 && state.history_bytes > policy.max_bytes) ||
          (has_ttl && now - state.history.front().at > policy.ttl))) {
    state.history_bytes -= state.history.front().text.size();
    state.history.pop_front();
  }
}

void MemoryBroker::Publish(const std::string& channel, std::string_view head, std::string_view tail,
                           const core::HistoryPolicy& policy, std::string_view origin,
                           PublishCallback done) {
  absl::StatusOr<core::StreamPosition> result;
  if (absl::Status valid = ValidatePolicy(policy); !valid.ok()) {
    result = valid;
  } else {
    const auto now = Clock::now();
    Stripe& stripe = StripeFor(channel);
    std::lock_guard lock(stripe.mu);
    ChannelState* state = FindLive(stripe, channel, now);
    if (state == nullptr) {
      if (channel_count_.load(std::memory_order_relaxed) >=
          max_channels_.load(std::memory_order_relaxed)) {
        result = absl::ResourceExhaustedError("the broker holds too many channels");
      } else {
        state = &stripe.channels[channel];
        state->epoch = NewEpoch();
        channel_count_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    if (state != nullptr) {
      const uint64_t offset = ++state->offset;
      std::string text;
      const std::string digits = std::to_string(offset);
      text.reserve(head.size() + digits.size() + tail.size());
      text.append(head).append(digits).append(tail);
      state->last_publish = now;
      state->ttl = policy.ttl;
      if (policy.size > 0) {
        state->history_bytes += text.size();
        state->history.push_back(Retained{now, offset, text});
      }
      Trim(*state, policy, now);
      result = core::StreamPosition{offset, state->epoch};
      // One more clock read: stored, and delivered next (inline, nothing waits in between),
      // so both histograms take it. Observed under the stripe lock: one writer per cell.
      const size_t shard = static_cast<size_t>(&stripe - stripes_.get());
      const int64_t nanos =
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - now).count();
      stats_.publish_latency.Observe(shard, 0, nanos);
      if (handler_.on_message && stripe.subscribed.count(channel) != 0) {
        stats_.delivered.fetch_add(1, std::memory_order_relaxed);
        stats_.delivery_lag.Observe(shard, 0, nanos);
        handler_.on_message(core::BrokerMessage{channel, offset, state->epoch, std::move(text),
                                                std::string(origin)});
      }
    }
  }
  (result.ok() ? stats_.published : stats_.publish_failed).fetch_add(1, std::memory_order_relaxed);
  done(std::move(result));
}

void MemoryBroker::History(const std::string& channel, uint64_t since, size_t limit,
                           HistoryCallback done) {
  ReadHistory(channel, since, limit, false, std::move(done));
}

void MemoryBroker::Open(const std::string& channel, uint64_t since, size_t limit,
                        HistoryCallback done) {
  ReadHistory(channel, since, limit, true, std::move(done));
}

void MemoryBroker::ReadHistory(const std::string& channel, uint64_t since, size_t limit,
                               bool create, HistoryCallback done) {
  core::BrokerHistory out;
  bool refused = false;
  {
    const auto now = Clock::now();
    Stripe& stripe = StripeFor(channel);
    std::lock_guard lock(stripe.mu);
    ChannelState* state = FindLive(stripe, channel, now);
    if (state == nullptr && create) {
      if (channel_count_.load(std::memory_order_relaxed) >=
          max_channels_.load(std::memory_order_relaxed)) {
        refused = true;
      } else {
        state = &stripe.channels[channel];
        state->epoch = NewEpoch();
        state->last_publish = now;
        channel_count_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    if (refused) {
    } else if (state == nullptr) {
      out.complete = since == 0;
    } else {
      core::HistoryPolicy keep{state->history.size(), state->ttl, 0};
      Trim(*state, keep, now);
      out.top = core::StreamPosition{state->offset, state->epoch};
      bool cut = false;
      for (const Retained& r : state->history) {
        if (r.offset <= since) continue;
        if (limit != 0 && out.frames.size() >= limit) {
          cut = true;
          break;
        }
        out.frames.push_back(core::HistoryFrame{r.offset, r.text});
      }
      out.complete = since >= state->offset ||
                     (!cut && !out.frames.empty() && out.frames.front().offset == since + 1);
    }
  }
  if (refused) return done(absl::ResourceExhaustedError("the broker holds too many channels"));
  stats_.history_reads.fetch_add(1, std::memory_order_relaxed);
  done(std::move(out));
}

void MemoryBroker::RotateEpoch(const std::string& channel, const std::string& from_epoch,
                               PublishCallback done) {
  core::StreamPosition top;
  {
    Stripe& stripe = StripeFor(channel);
    std::lock_guard lock(stripe.mu);
    ChannelState* state = FindLive(stripe, channel, Clock::now());
    if (state != nullptr) {
      if (state->epoch == from_epoch) state->epoch = NewEpoch();
      top = core::StreamPosition{state->offset, state->epoch};
    }
  }
  done(std::move(top));
}

void MemoryBroker::Subscribe(const std::string& channel, StatusCallback done) {
  {
    Stripe& stripe = StripeFor(channel);
    std::lock_guard lock(stripe.mu);
    stripe.subscribed.insert(channel);
  }
  done(absl::OkStatus());
}

void MemoryBroker::Unsubscribe(const std::string& channel) {
  Stripe& stripe = StripeFor(channel);
  std::lock_guard lock(stripe.mu);
  stripe.subscribed.erase(channel);
}

void MemoryBroker::PublishBackendMessage(std::string_view origin, std::string_view payload) {
  if (backend_interest_.load(std::memory_order_acquire) && handler_.on_backend_message) {
    handler_.on_backend_message(std::string(origin), std::string(payload));
  }
}

void MemoryBroker::SetBackendInterest(bool on) {
  backend_interest_.store(on, std::memory_order_release);
}

void MemoryBroker::Forget(const std::string& channel) {
  Stripe& stripe = StripeFor(channel);
  std::lock_guard lock(stripe.mu);
  if (stripe.channels.erase(channel) != 0) channel_count_.fetch_sub(1, std::memory_order_relaxed);
}

size_t MemoryBroker::channel_count() const {
  return channel_count_.load(std::memory_order_relaxed);
}

void MemoryBroker::AnnounceNode(std::string_view node, std::string_view info,
                                std::chrono::milliseconds ttl, NodesCallback done) {
  if (info.size() > core::kMaxNodeInfoBytes) {
    return done(absl::InvalidArgumentError("node info too long"));
  }
  const auto now = Clock::now();
  std::vector<core::NodeAnnouncement> out;
  absl::Status refused;
  {
    std::lock_guard lock(nodes_mu_);
    for (auto it = nodes_.begin(); it != nodes_.end();) {
      it = it->second.expires <= now ? nodes_.erase(it) : std::next(it);
    }
    auto it = nodes_.find(std::string(node));
    if (it == nodes_.end() && nodes_.size() >= core::kMaxNodes) {
      refused = absl::ResourceExhaustedError("the node directory is full");
    } else {
      nodes_[std::string(node)] = AnnouncedNode{std::string(info), now, now + ttl};
    }
    for (const auto& [name, n] : nodes_) {
      out.push_back(core::NodeAnnouncement{
          name, n.info, std::chrono::duration_cast<std::chrono::milliseconds>(now - n.at).count()});
    }
  }
  if (!refused.ok()) return done(refused);
  done(std::move(out));
}

void MemoryBroker::WithdrawNode(std::string_view node, StatusCallback done) {
  {
    std::lock_guard lock(nodes_mu_);
    nodes_.erase(std::string(node));
  }
  done(absl::OkStatus());
}

core::BrokerHealth MemoryBroker::Health() const { return core::BrokerHealth{true, true, ""}; }

}  // namespace bridge::broker
