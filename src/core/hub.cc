#include "core/hub.h"

#include <algorithm>

#include "core/channel.h"
#include "core/epoch.h"
#include "core/strings.h"

namespace bridge::core {
Hub::Hub(std::vector<Executor> shard_executors, NamespaceRegistry namespaces, Metrics& metrics,
         size_t max_channels, std::chrono::milliseconds idle_timeout, ClusterOptions cluster)
    : namespaces_(std::move(namespaces)),
      metrics_(metrics),
      namespace_stats_(new NamespaceStats[namespaces_.all().size() + 1]),
      delivery_latency_(shard_executors.size(), namespaces_.all().size()),
      max_channels_(max_channels),
      idle_timeout_(idle_timeout),
      stripes_(new Stripe[kStripes]),
      sinks_by_ns_(namespaces_.all().size()),
      broker_(cluster.broker),
      presence_(cluster.presence),
      node_id_(cluster.node_id),
      max_pending_frames_(cluster.max_pending_frames),
      link_linger_(cluster.link_linger) {
  for (auto& e : shard_executors) {
    auto shard = std::make_unique<Shard>();
    shard->executor = std::move(e);
    shard->max_pending_frames.store(cluster.max_pending_frames, std::memory_order_relaxed);
    shards_.push_back(std::move(shard));
  }
  if (broker_ != nullptr) {
    broker_->SetHandler(BrokerHandler{
        [this](BrokerMessage m) { OnBrokerMessage(std::move(m)); },
        [this](BrokerState state, const absl::Status& why) { OnBrokerState(state, why); },
        [this](std::string origin, std::string payload) {
          OnBackendMessage(std::move(origin), std::move(payload));
        }});
  }
  if (presence_ != nullptr) {
    presence_->SetExpiredHandler([this](const std::string& channel, const std::string& identity) {
      PublishPresenceChange(channel, identity, false, "node_lost");
    });
    // Members this node registered again after a store outage, whom others may have seen leave.
    presence_->SetRestoredHandler([this](const std::string& channel, const std::string& identity) {
      PublishPresenceChange(channel, identity, true, "");
    });
  }
}

void Hub::SetLimits(const HubLimits& limits) {
  max_channels_.store(limits.max_channels, std::memory_order_relaxed);
  idle_timeout_.store(limits.idle_timeout, std::memory_order_relaxed);
  max_pending_frames_.store(limits.max_pending_frames, std::memory_order_relaxed);
  for (auto& shard : shards_) {
    shard->max_pending_frames.store(limits.max_pending_frames, std::memory_order_relaxed);
  }
  link_linger_.store(limits.link_linger, std::memory_order_relaxed);
}

HubLimits Hub::limits() const {
  return HubLimits{max_channels_.load(std::memory_order_relaxed),
                   idle_timeout_.load(std::memory_order_relaxed),
                   max_pending_frames_.load(std::memory_order_relaxed),
                   link_linger_.load(std::memory_order_relaxed)};
}

Hub::~Hub() {
  // The gauges describe live state; the metrics may outlive this hub.
  int64_t bytes = 0;
  for (size_t i = 0; i < kStripes; ++i) {
    for (const auto& [name, state] : stripes_[i].channels) bytes += state.history_bytes;
  }
  metrics_.history_bytes_current.fetch_sub(bytes, std::memory_order_relaxed);
  metrics_.channels_current.fetch_sub(static_cast<int64_t>(channel_count_.load()),
                                      std::memory_order_relaxed);
}

Hub::ChannelState* Hub::FindOrCreateLocked(Stripe& stripe, const std::string& channel) {
  auto it = stripe.channels.find(channel);
  if (it != stripe.channels.end()) return &it->second;
  if (channel_count_.fetch_add(1, std::memory_order_relaxed) >=
      max_channels_.load(std::memory_order_relaxed)) {
    channel_count_.fetch_sub(1, std::memory_order_relaxed);
    metrics_.channels_refused_total.fetch_add(1, std::memory_order_relaxed);
    metrics_.CountLimit(Limit::kMaxChannels);
    return nullptr;
  }
  metrics_.channels_current.fetch_add(1, std::memory_order_relaxed);
  ChannelState& state = stripe.channels[channel];
  state.epoch = NewEpoch();
  state.generation = next_generation_.fetch_add(1, std::memory_order_relaxed);
  state.last_active = std::chrono::steady_clock::now();
  return &state;
}

bool Hub::Evictable(const ChannelState& state, std::chrono::steady_clock::time_point now) const {
  if (state.connections != 0) return false;
  // Under pressure a channel nobody subscribes to goes even with history left (presence events
  // and client messages leave some): invented names must not fill the limit for a history ttl.
  if (channel_count_.load(std::memory_order_relaxed) >=
      max_channels_.load(std::memory_order_relaxed) / 2) {
    return true;
  }
  return state.history.empty() &&
         now - state.last_active >= idle_timeout_.load(std::memory_order_relaxed);
}

bool Hub::EvictIfIdleLocked(Stripe& stripe,
                            std::unordered_map<std::string, ChannelState>::iterator it,
                            std::chrono::steady_clock::time_point now) {
  if (!Evictable(it->second, now)) return false;
  if (it->second.history_bytes != 0) {
    metrics_.history_bytes_current.fetch_sub(static_cast<int64_t>(it->second.history_bytes),
                                             std::memory_order_relaxed);
  }
  stripe.channels.erase(it);
  channel_count_.fetch_sub(1, std::memory_order_relaxed);
  metrics_.channels_current.fetch_sub(1, std::memory_order_relaxed);
  metrics_.channels_evicted_total.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void Hub::EvictIfIdle(const std::string& channel, std::chrono::steady_clock::time_point now) {
  const NamespaceConfig* ns = namespaces_.Find(NamespaceOf(channel));
  Stripe& stripe = StripeFor(channel);
  std::lock_guard lock(stripe.mu);
  auto it = stripe.channels.find(channel);
  if (it == stripe.channels.end() || it->second.connections != 0) return;
  TrimHistoryCounted(it->second, ns, now);
  EvictIfIdleLocked(stripe, it, now);
}

Hub::Stripe& Hub::StripeFor(const std::string& channel) {
  return stripes_[std::hash<std::string>{}(channel) % kStripes];
}

std::vector<ChannelCount> Hub::TakeBusiestChannels(size_t n) {
  std::vector<ChannelCount> all;
  for (size_t i = 0; i < kStripes; ++i) {
    std::lock_guard lock(stripes_[i].mu);
    stripes_[i].top.TakeInto(all);
  }
  const size_t keep = std::min(n, all.size());
  std::partial_sort(
      all.begin(), all.begin() + keep, all.end(), [](const ChannelCount& a, const ChannelCount& b) {
        return a.messages != b.messages ? a.messages > b.messages : a.channel < b.channel;
      });
  all.resize(keep);
  return all;
}

size_t Hub::TrimHistory(ChannelState& state, const NamespaceConfig* ns,
                        std::chrono::steady_clock::time_point now) {
  size_t max = ns == nullptr ? 0 : ns->history_size;
  size_t max_bytes = ns == nullptr ? 0 : ns->history_max_bytes;
  bool has_ttl = ns != nullptr && ns->history_ttl.count() > 0;
  size_t dropped = 0;
  while (!state.history.empty() &&
         (state.history.size() > max || state.history_bytes > max_bytes ||
          (has_ttl && now - state.history.front().first > ns->history_ttl))) {
    size_t n = state.history.front().second->text.size();
    state.history_bytes -= n;
    dropped += n;
    state.history.pop_front();
  }
  return dropped;
}

void Hub::TrimHistoryCounted(ChannelState& state, const NamespaceConfig* ns,
                             std::chrono::steady_clock::time_point now) {
  size_t dropped = TrimHistory(state, ns, now);
  if (dropped != 0) {
    metrics_.history_bytes_current.fetch_sub(static_cast<int64_t>(dropped),
                                             std::memory_order_relaxed);
  }
}

absl::StatusOr<FrameParts> Hub::EncodeForPublish(const gathering::bridge::v1::Event& event) {
  auto parts = EncodeEvent(event, std::chrono::system_clock::now());
  if (parts.ok() && namespaces_.Find(NamespaceOf(event.channel())) == nullptr) {
    parts =
        absl::InvalidArgumentError(Cat("unknown namespace '", NamespaceOf(event.channel()), "'"));
  }
  if (!parts.ok()) metrics_.publish_rejected_total.fetch_add(1, std::memory_order_relaxed);
  return parts;
}

absl::StatusOr<PublishResult> Hub::Publish(const gathering::bridge::v1::Event& event) {
  auto parts = EncodeForPublish(event);
  if (!parts.ok()) return parts.status();
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
  if (found == nullptr) return PublishResult{};
  CountPublishLocked(stripe, channel);
  ChannelState& state = *found;
  uint64_t offset = ++state.offset;
  state.last_active = now;
  auto frame = std::make_shared<Frame>();
  frame->channel = channel;
  frame->offset = offset;
  frame->ns = namespaces_.IndexOf(NamespaceOf(channel));
  frame->accepted_nanos =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  frame->text.reserve(head.size() + 20 + tail.size());
  frame->text.append(head);
  internal::AppendPiece(frame->text, offset);
  frame->text.append(tail);
  FramePtr shared = std::move(frame);
  // One gauge update per publish: what was retained minus what it pushed out.
  int64_t retained = 0;
  if (ns != nullptr && ns->history_size > 0 && ns->history_max_bytes > 0) {
    state.history.emplace_back(now, shared);
    state.history_bytes += shared->text.size();
    retained = static_cast<int64_t>(shared->text.size());
  }
  retained -= static_cast<int64_t>(TrimHistory(state, ns, now));
  if (retained != 0) metrics_.history_bytes_current.fetch_add(retained, std::memory_order_relaxed);
  // Posted under the lock so every shard receives a channel's frames in offset order.
  if (stopped_.load(std::memory_order_relaxed)) return PublishResult{offset, state.epoch};
  const uint64_t generation = state.generation;
  for (size_t i = 0; i < state.shard_subscribers.size(); ++i) {
    if (state.shard_subscribers[i] == 0) continue;
    Shard* s = shards_[i].get();
    s->executor(
        [s, shared, exclude_id, generation] { s->Deliver(shared, exclude_id, generation); });
  }
  return PublishResult{offset, state.epoch};
}

void Hub::Shard::Deliver(const FramePtr& frame, uint64_t exclude_id, uint64_t generation) {
  auto it = channels.find(frame->channel);
  if (it == channels.end() || it->second.generation != generation) return;
  for (Entry& e : it->second.entries) {
    if (e.pending) {
      // Waiting for the broker: kept for the merge (its own messages included: the merge does
      // not know who sent what, and a recovering client gets them from history anyway).
      if (e.pending->frames.size() < max_pending_frames.load(std::memory_order_relaxed)) {
        e.pending->frames.push_back(frame);
      } else {
        if (e.pending->dropped_from == 0) e.pending->dropped_from = frame->offset;
        e.pending->dropped_to = frame->offset;
      }
      continue;
    }
    if (frame->offset <= e.last_offset) continue;
    e.last_offset = frame->offset;
    if (exclude_id != 0 && e.subscriber->subscriber_id() == exclude_id) continue;
    e.subscriber->Deliver(frame);
  }
}

std::optional<uint64_t> Hub::DeliveredOffset(size_t shard, const std::string& channel,
                                             const Subscriber* s) const {
  const auto& channels = shards_[shard]->channels;
  auto it = channels.find(channel);
  if (it == channels.end()) return std::nullopt;
  for (const Entry& e : it->second.entries) {
    if (e.subscriber != s) continue;
    if (e.pending) return std::nullopt;
    return e.last_offset;
  }
  return std::nullopt;
}

SubscribeResult Hub::Subscribe(size_t shard, const std::string& channel, Subscriber* s,
                               const std::optional<RecoveryRequest>& recovery) {
  SubscribeResult result;
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
    TrimHistoryCounted(state, ns, now);
    result.epoch = state.epoch;
    result.offset = state.offset;
    last_offset = state.offset;
    if (recovery.has_value()) {
      uint64_t since = recovery->since;
      bool same_epoch = recovery->epoch == state.epoch || (recovery->epoch.empty() && since == 0);
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
    ShardChannel& sc = shards_[shard]->channels[channel];
    sc.generation = state.generation;  // the same unless the entry is new: state outlives entries
    auto& entries = sc.entries;
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
        m.announced = joined;
      }
    }
  }
  CountSubscription(channel, 1);
  if (joined) PublishPresence(channel, s->identity(), true, "");
  if (lifecycle_sinks_.load(std::memory_order_relaxed) > 0 || broker_ != nullptr) {
    ForwardLifecycle(channel, *s, true, "");
  }
  return result;
}

void Hub::SubscribeAsync(size_t shard, const std::string& channel, Subscriber* s,
                         const std::optional<RecoveryRequest>& recovery, SubscribeCallback done) {
  if (broker_ != nullptr) return SubscribeClustered(shard, channel, s, recovery, std::move(done));
  done(Subscribe(shard, channel, s, recovery));
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

bool Hub::RemoveFromShard(size_t shard, const std::string& channel, Subscriber* s, bool* presence) {
  auto& channels = shards_[shard]->channels;
  auto it = channels.find(channel);
  if (it == channels.end()) return false;
  auto& entries = it->second.entries;
  auto pos = std::find_if(entries.begin(), entries.end(),
                          [s](const Entry& e) { return e.subscriber == s; });
  if (pos == entries.end()) return false;
  if (presence != nullptr) *presence = pos->presence;
  entries.erase(pos);
  CountSubscription(channel, -1);
  if (entries.empty()) channels.erase(it);
  return true;
}

void Hub::Unsubscribe(size_t shard, const std::string& channel, Subscriber* s,
                      std::string_view reason) {
  if (broker_ != nullptr) return UnsubscribeClustered(shard, channel, s, reason);
  if (!RemoveFromShard(shard, channel, s)) return;

  bool left = false;
  bool idle = false;
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
      // Announced or not by the policy when it joined (a reload may have changed it since).
      left = m->second.announced;
      state.members.erase(m);
    }
    if (state.connections == 0) {
      idle = true;
      state.last_active = std::chrono::steady_clock::now();
    }
  }
  // agent_left goes into the channel's history first: a client recovering with this epoch
  // gets it, and the channel then stays until that history expires.
  if (left) PublishPresence(channel, s->identity(), false, reason);
  if (idle) EvictIfIdle(channel, std::chrono::steady_clock::now());
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

void Hub::CountSubscription(const std::string& channel, int64_t delta) {
  metrics_.subscriptions_current.fetch_add(delta, std::memory_order_relaxed);
  int index = namespaces_.IndexOf(NamespaceOf(channel));
  if (index >= 0) namespace_stats_[index].subscriptions.fetch_add(delta, std::memory_order_relaxed);
}

MetricFamilies Hub::CollectMetrics() const {
  MetricFamilies out;
  metrics_.Collect(out);
  CollectNamespaceMetrics(out);
  CollectClusterMetrics(out);
  return out;
}

void Hub::CollectNamespaceMetrics(MetricFamilies& out) const {
  const auto& all = namespaces_.all();
  auto family = [&](const char* name, const char* type, const char* help, auto field) {
    MetricFamily f{Cat("bridge_namespace_", name), type, help, {}};
    for (size_t i = 0; i < all.size(); ++i) {
      f.samples.push_back(
          {"", {{"namespace", all[i].name}}, static_cast<double>(field(namespace_stats_[i]))});
    }
    out.push_back(std::move(f));
  };
  family("dropped_total", "counter", "Frames dropped by drop_oldest/latest_only.",
         [](const NamespaceStats& s) { return s.dropped.load(); });
  family("gaps_total", "counter", "Gap frames sent.",
         [](const NamespaceStats& s) { return s.gaps.load(); });
  family("slow_closes_total", "counter", "Connections closed 4008.",
         [](const NamespaceStats& s) { return s.slow_closes.load(); });
  family("queued_bytes", "gauge", "Bytes of the namespace's frames waiting in write queues.",
         [](const NamespaceStats& s) { return s.queued_bytes.load(); });
  family("subscriptions", "gauge", "Subscriptions of this node's connections.",
         [](const NamespaceStats& s) { return s.subscriptions.load(); });
  // Cumulative buckets in seconds, as Prometheus histograms are.
  MetricFamily h{"bridge_delivery_latency_seconds",
                 "histogram",
                 "From the hub accepting a publish to the completion of the socket write that "
                 "carried its frame, per namespace.",
                 {}};
  for (size_t i = 0; i < all.size(); ++i) {
    const ShardedHistogram::Totals t = delivery_latency_.Sum(i);
    uint64_t cumulative = 0;
    for (size_t b = 0; b < ShardedHistogram::kBuckets; ++b) {
      cumulative += t.buckets[b];
      std::string le = "+Inf";
      if (b < ShardedHistogram::kBoundsNanos.size()) {
        // Bounds are whole microseconds: print them exactly ("0.00005", "2.5").
        const int64_t us = ShardedHistogram::kBoundsNanos[b] / 1000;
        std::string frac = Cat(1000000 + us % 1000000).substr(1);
        while (!frac.empty() && frac.back() == '0') frac.pop_back();
        le = frac.empty() ? Cat(us / 1000000) : Cat(us / 1000000, ".", frac);
      }
      h.samples.push_back(
          {"_bucket", {{"namespace", all[i].name}, {"le", le}}, static_cast<double>(cumulative)});
    }
    h.samples.push_back(
        {"_sum", {{"namespace", all[i].name}}, static_cast<double>(t.sum_nanos) / 1e9});
    h.samples.push_back({"_count", {{"namespace", all[i].name}}, static_cast<double>(t.count)});
  }
  out.push_back(std::move(h));
}

std::string Hub::RenderNamespaceMetrics() const {
  MetricFamilies f;
  CollectNamespaceMetrics(f);
  return RenderPrometheus(f);
}

HistoryResult Hub::History(const std::string& channel, uint64_t since, size_t limit) {
  HistoryResult out;
  const NamespaceConfig* ns = namespaces_.Find(NamespaceOf(channel));
  Stripe& stripe = StripeFor(channel);
  std::lock_guard lock(stripe.mu);
  auto it = stripe.channels.find(channel);
  if (it == stripe.channels.end()) {
    out.complete = since == 0;
    return out;
  }
  ChannelState& state = it->second;
  TrimHistoryCounted(state, ns, std::chrono::steady_clock::now());
  out.epoch = state.epoch;
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

size_t Hub::Sweep(std::chrono::steady_clock::time_point now, size_t budget) {
  if (broker_ != nullptr) return SweepClustered(now);
  // Work units: one per bucket and one per channel visited. A stripe's lock is held for at most
  // kChunk of them, so publishers on it wait no longer than that.
  constexpr size_t kChunk = 256;
  if (budget == 0) {
    budget = std::max(kMinSweepBudget, channel_count_.load(std::memory_order_relaxed) / 5);
  }
  std::lock_guard sweep_lock(sweep_mu_);
  size_t evicted = 0;
  size_t work = 0;
  // One pass at most: every stripe once, plus the start of the first if it began mid-stripe.
  size_t passes_left = kStripes + (sweep_bucket_ != 0 ? 1 : 0);
  while (work < budget && passes_left > 0) {
    Stripe& stripe = stripes_[sweep_stripe_];
    bool stripe_done = false;
    {
      std::lock_guard lock(stripe.mu);
      auto& channels = stripe.channels;
      size_t chunk_end = work + kChunk;
      while (sweep_bucket_ < channels.bucket_count() && work < budget && work < chunk_end) {
        size_t bucket = sweep_bucket_++;
        ++work;
        for (auto it = channels.begin(bucket); it != channels.end(bucket);) {
          ++work;
          ChannelState& state = it->second;
          TrimHistoryCounted(state, namespaces_.Find(NamespaceOf(it->first)), now);
          if (!Evictable(state, now)) {
            ++it;
            continue;
          }
          auto victim = channels.find(it->first);
          ++it;  // erasing invalidates only the erased element's iterators
          if (EvictIfIdleLocked(stripe, victim, now)) ++evicted;
        }
      }
      if (sweep_bucket_ >= channels.bucket_count()) {
        stripe_done = true;
        // Buckets are never given back by erase: after a flood of channels, shrink the table
        // so later passes do not walk empty buckets.
        if (channels.bucket_count() > 1024 && channels.size() * 8 < channels.bucket_count()) {
          channels.rehash(0);
        }
      }
    }
    if (stripe_done) {
      sweep_bucket_ = 0;
      sweep_stripe_ = (sweep_stripe_ + 1) % kStripes;
      --passes_left;
    }
  }
  return evicted;
}

void Hub::AddSink(std::vector<std::string> patterns, std::shared_ptr<ClientMessageSink> sink,
                  bool lifecycle) {
  // Other nodes' clients reach this node's backends through the broker.
  if (broker_ != nullptr) broker_->SetBackendInterest(true);
  std::unique_lock lock(sinks_mu_);
  if (lifecycle) lifecycle_sinks_.fetch_add(1);
  sinks_.emplace_back(sink.get(), lifecycle);
  sink_count_.store(sinks_.size(), std::memory_order_relaxed);
  bool any = std::any_of(patterns.begin(), patterns.end(),
                         [](const std::string& p) { return p.empty() || p[0] == '*'; });
  if (any) {
    any_ns_sinks_.push_back(SinkEntry{std::move(patterns), std::move(sink), lifecycle});
    return;
  }
  // One entry per namespace, holding that namespace's patterns: a sink is a candidate for a
  // message once, through its namespace's list.
  std::vector<std::vector<std::string>> by_ns(sinks_by_ns_.size());
  for (auto& p : patterns) {
    int index = namespaces_.IndexOf(NamespaceOf(p));
    if (index >= 0) by_ns[index].push_back(std::move(p));
  }
  for (size_t i = 0; i < by_ns.size(); ++i) {
    if (by_ns[i].empty()) continue;
    sinks_by_ns_[i].push_back(SinkEntry{std::move(by_ns[i]), sink, lifecycle});
  }
}

void Hub::RemoveSink(const ClientMessageSink* sink) {
  std::unique_lock lock(sinks_mu_);
  auto pos =
      std::find_if(sinks_.begin(), sinks_.end(), [sink](const auto& r) { return r.first == sink; });
  if (pos == sinks_.end()) return;
  bool lifecycle = pos->second;
  sinks_.erase(pos);
  sink_count_.store(sinks_.size(), std::memory_order_relaxed);
  auto erase = [sink](std::vector<SinkEntry>& list) {
    std::erase_if(list, [sink](const SinkEntry& e) { return e.sink.get() == sink; });
  };
  erase(any_ns_sinks_);
  for (auto& list : sinks_by_ns_) erase(list);
  if (lifecycle) lifecycle_sinks_.fetch_sub(1);
  if (broker_ != nullptr && sinks_.empty()) broker_->SetBackendInterest(false);
}

void Hub::ForwardTo(const std::vector<SinkEntry>& sinks, const ClientMessagePtr& message) {
  bool is_lifecycle = message->kind != ClientMessageRecord::Kind::kMessage;
  for (const auto& e : sinks) {
    if (is_lifecycle && !e.lifecycle) continue;
    for (const auto& p : e.patterns) {
      if (PatternMatches(p, message->channel)) {
        e.sink->OnClientMessage(message);
        break;
      }
    }
  }
}

void Hub::ForwardToBackends(const ClientMessagePtr& message) {
  if (broker_ != nullptr) ForwardToOtherNodes(message);
  ForwardToLocalBackends(message);
}

void Hub::ForwardToLocalBackends(const ClientMessagePtr& message) {
  int index = namespaces_.IndexOf(NamespaceOf(message->channel));
  std::shared_lock lock(sinks_mu_);
  ForwardTo(any_ns_sinks_, message);
  if (index >= 0) ForwardTo(sinks_by_ns_[index], message);
}

}  // namespace bridge::core
