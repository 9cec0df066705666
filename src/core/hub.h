// The hub: orders every publish in its channel, keeps each channel's history, and fans frames
// out to the io threads' shards of subscribers.
//
// Threading. The hub is shared by every thread. `Publish` and the backend-sink calls may be
// called from any thread. Each shard belongs to one io thread (the hub posts work to it through
// its `Executor`); `Subscribe`, `Unsubscribe` and everything a `Subscriber` receives run on that
// shard's thread only, so shards hold no locks.
//
// Ordering. A channel's offset is assigned, its history appended and its frame posted to every
// shard under the channel's lock, so all subscribers of a channel see the same order, without
// gaps or duplicates across a subscribe-with-recovery (each subscription remembers the last
// offset it has and skips anything at or below it).
//
// Channel state. A channel's state (offset, epoch, history, members) exists while the channel
// has subscribers or retained history, and for `idle_timeout` after its last subscriber left
// or its last publish (so a client reconnecting soon keeps its epoch); then `Sweep`, which also
// drops expired history, frees it. While the hub holds half its `max_channels` or more, idle
// channels are freed at once (at their last unsubscribe, or by the next sweep), so a client
// subscribing to names in a loop cannot fill the limit. A channel created again starts at
// offset 1 with a new random `epoch`, so a client recovering with the old epoch is told
// `recovered: false`.
#ifndef BRIDGE_CORE_HUB_H_
#define BRIDGE_CORE_HUB_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "core/broker.h"
#include "core/frame.h"
#include "core/histogram.h"
#include "core/hub_top_channels.h"
#include "core/metrics.h"
#include "core/namespaces.h"
#include "core/presence.h"

namespace bridge::core {

// Receives the frames of the channels it subscribed to. Implemented by WebSocket sessions.
// Called on its shard's thread only; must not block, and must not call Hub::Subscribe or
// Hub::Unsubscribe from inside Deliver (defer them by posting).
class Subscriber {
 public:
  virtual ~Subscriber() = default;
  virtual void Deliver(const FramePtr& frame) = 0;
  // A unique id, used to keep a client's own messages from coming back to it.
  virtual uint64_t subscriber_id() const = 0;
  // The connection's identity for presence ("" when anonymous) and its id for backends.
  virtual const std::string& identity() const = 0;
  virtual const std::string& connection_id() const = 0;
};

// A frame a WebSocket client sent, on its way to backends.
struct ClientMessageRecord {
  enum class Kind { kMessage, kSubscribed, kUnsubscribed };
  Kind kind = Kind::kMessage;
  std::string reason;  // kUnsubscribed: why
  std::string channel;
  std::string connection_id;
  std::string identity;
  std::chrono::system_clock::time_point received_at;
  std::string json;
};
using ClientMessagePtr = std::shared_ptr<const ClientMessageRecord>;

// The record as backends receive it (rpc's Subscribe streams, and other nodes through the
// broker), and back.
void ToProto(const ClientMessageRecord& r, gathering::bridge::v1::ClientMessage* out);
ClientMessagePtr FromProto(const gathering::bridge::v1::ClientMessage& m);

// A backend's Subscribe stream. Called from any io thread; must not block (queue and return).
class ClientMessageSink {
 public:
  virtual ~ClientMessageSink() = default;
  virtual void OnClientMessage(const ClientMessagePtr& message) = 0;
};

struct PublishResult {
  uint64_t offset = 0;
  std::string epoch;  // the channel's; empty when refused (offset 0)
};

struct SubscribeResult {
  std::string epoch;             // the channel's; empty when refused
  uint64_t offset = 0;           // the channel's latest offset when the subscription began
  bool recovered = false;        // only meaningful when `since` was given
  std::vector<FramePtr> missed;  // frames after `since`, in order, when recovering
  bool refused = false;          // too many channels: nothing was subscribed
  // With a broker: why the subscription could not be made (UNAVAILABLE while the broker is
  // unreachable); nothing was subscribed.
  absl::Status error;
};

struct HistoryResult {
  std::string epoch;      // the channel's; empty when the bridge holds no state for it
  uint64_t offset = 0;    // the channel's latest offset
  bool complete = false;  // the frames cover everything after `since`
  std::vector<FramePtr> frames;
};

struct PresenceResult {
  struct Member {
    std::string identity;
    uint32_t connections = 0;
    std::chrono::system_clock::time_point joined_at;
  };
  std::vector<Member> members;
  uint32_t connection_count = 0;
};

// Per-namespace delivery counters (rendered with a `namespace` label). Any thread.
struct NamespaceStats {
  Metrics::Counter dropped{0};      // frames dropped by drop_oldest / latest_only
  Metrics::Counter gaps{0};         // gap frames sent
  Metrics::Counter slow_closes{0};  // connections closed 4008
  Metrics::Gauge queued_bytes{0};   // bytes of this namespace's frames waiting in queues
  Metrics::Gauge subscriptions{0};  // this node's subscriptions to the namespace's channels
};

struct RecoveryRequest {
  uint64_t since = 0;
  std::string epoch;  // empty: accepted only with since == 0
};

// Where channels live when they are shared with other nodes (docs/broker.md). Without a broker
// the hub is the whole system: offsets, history and presence in its own memory (the embedded
// default). With one, the hub is this node's part: local fan-out on the shards, while offsets,
// history and pub/sub between nodes are the broker's and membership the presence manager's.
struct ClusterOptions {
  Broker* broker = nullptr;             // outlives the hub; nullptr: embedded
  PresenceManager* presence = nullptr;  // required with a broker
  std::string node_id;                  // unique among the nodes; no ':' or '/'
  // Frames a subscription waiting for the broker's answer buffers (past it: a gap).
  size_t max_pending_frames = 8192;
  // How long a channel's broker link outlives its last local subscriber.
  std::chrono::milliseconds link_linger{2000};
};

// Counters of the broker mode (rendered in /metrics). Any thread.
struct ClusterStats {
  Metrics::Counter repairs{0};             // ranges read back from the broker after a gap
  Metrics::Counter repaired_frames{0};     // frames those ranges delivered
  Metrics::Counter unrecoverable_gaps{0};  // gaps the broker's history could not fill
  Metrics::Counter epoch_changes{0};       // a live channel's state was lost and created again
  Metrics::Counter duplicates{0};          // deliveries at or below the last offset, dropped
  Metrics::Counter rewinds{0};             // offsets that went back under one epoch (rotated)
  Metrics::Counter pubsub_stalls{0};       // own publishes not delivered back in time
  Metrics::Counter subscribe_failures{0};  // subscriptions refused because the broker is down
  Metrics::Counter backend_forwarded{0};   // client messages sent to other nodes' backends
  Metrics::Counter backend_received{0};    // client messages from other nodes to local backends
  Metrics::Counter backend_malformed{0};   // backend messages from the broker that did not parse
  Metrics::Gauge linked_channels{0};       // channels this node subscribes to in the broker
};

// The hub's limits that may change while it runs (Hub::SetLimits), as the constructor and
// ClusterOptions take them.
struct HubLimits {
  size_t max_channels = 1000000;
  std::chrono::milliseconds idle_timeout{30000};
  // Broker mode (ClusterOptions' max_pending_frames and link_linger).
  size_t max_pending_frames = 8192;
  std::chrono::milliseconds link_linger{2000};
};

class Hub {
 public:
  // Posts a task to a shard's thread.
  using Executor = std::function<void(std::function<void()>)>;

  // Channels the hub keeps state for (offsets, history, presence): a bound against clients
  // inventing channel names. Past it, new channels are refused (publish offset 0, subscribe
  // `refused`); existing ones keep working.
  static constexpr size_t kDefaultMaxChannels = 1000000;
  // How long an idle channel (no subscribers, no history) keeps its state; 0: not at all.
  static constexpr std::chrono::milliseconds kDefaultIdleTimeout{30000};
  // Sweep's budget when given 0: enough for a whole pass over the channels in about ten calls.
  static constexpr size_t kMinSweepBudget = 4096;

  // How long a channel keeps its broker subscription after its last local subscriber left.
  static constexpr std::chrono::milliseconds kBrokerLinger{2000};  // ClusterOptions' default
  // Frames a subscription waiting for its recovery read buffers; past it a `gap` tells the loss.
  static constexpr size_t kMaxPendingFrames = 8192;

  Hub(std::vector<Executor> shard_executors, NamespaceRegistry namespaces, Metrics& metrics,
      size_t max_channels = kDefaultMaxChannels,
      std::chrono::milliseconds idle_timeout = kDefaultIdleTimeout, ClusterOptions cluster = {});
  ~Hub();
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  size_t shard_count() const { return shards_.size(); }
  // Any thread. The set of names never changes; the policies may (ReplaceNamespacePolicies).
  const NamespaceRegistry& namespaces() const { return namespaces_; }

  // Any thread, at any time (the app calls it at SIGHUP). Each limit is an atomic the hub reads
  // where it applies, so the new value takes effect from the next read on:
  // - max_channels: for channels created from then on. Lowering it frees nothing at once: the
  //   channels held stay until idle (and while the hub holds half the limit or more, idle ones go
  //   at once, as always), and new ones are refused until the count is under it.
  // - idle_timeout: at the next Sweep or last unsubscribe.
  // - max_pending_frames: for frames a waiting subscription (or channel link) buffers from then
  //   on; what is already buffered stays.
  // - link_linger: at the next Sweep.
  void SetLimits(const HubLimits& limits);
  HubLimits limits() const;
  // Any thread (a reload). The namespaces' policies from now on: publishes, subscribes, frames
  // and sweeps read them at each use (a subscription made before keeps running: a policy checked
  // at subscribe time, such as personal_channels, is not checked again). Presence turned on
  // applies to members who join from then on; turned off, members announced before still get
  // their agent_left. FAILED_PRECONDITION, and nothing changes, unless `next` has the same names
  // in the same order. True when a policy changed.
  absl::StatusOr<bool> ReplaceNamespacePolicies(const NamespaceRegistry& next) {
    return namespaces_.ReplacePolicies(next);
  }
  Metrics& metrics() { return metrics_; }

  bool clustered() const { return broker_ != nullptr; }
  const std::string& node_id() const { return node_id_; }
  const ClusterStats& cluster_stats() const { return cluster_stats_; }
  // The broker's health; embedded: always up.
  BrokerHealth broker_health() const;
  std::string RenderClusterMetrics() const;
  // Any thread. Every family of /metrics: the Metrics struct's, the per-namespace ones (with
  // the delivery latency histogram) and, with a broker, bridge_broker_*.
  MetricFamilies CollectMetrics() const;
  void CollectNamespaceMetrics(MetricFamilies& out) const;
  void CollectClusterMetrics(MetricFamilies& out) const;

  // From a publish's acceptance (Frame::accepted_nanos) to the completion of the socket write
  // that carried its frame, per shard (the io thread observing) and namespace index. Observed
  // by the WebSocket sessions on their shard's thread.
  ShardedHistogram& delivery_latency() { return delivery_latency_; }
  const ShardedHistogram& delivery_latency() const { return delivery_latency_; }

  // Completions of the asynchronous calls below. Embedded, they run inline, before the call
  // returns; with a broker, on the broker's thread (or inline: the memory broker). They must
  // not block.
  using PublishCallback = absl::AnyInvocable<void(absl::StatusOr<PublishResult>)>;
  using HistoryCallback = absl::AnyInvocable<void(absl::StatusOr<HistoryResult>)>;
  using PresenceCallback = absl::AnyInvocable<void(absl::StatusOr<PresenceResult>)>;
  // Runs on the subscriber's shard thread (inline when the answer is known at once). Never
  // called when the subscriber unsubscribed (or subscribed again) before the answer.
  using SubscribeCallback = absl::AnyInvocable<void(SubscribeResult)>;

  // Any thread. Validates and publishes a backend event. Embedded only (tests): see PublishAsync.
  absl::StatusOr<PublishResult> Publish(const gathering::bridge::v1::Event& event);
  // Any thread. Validates and publishes a backend event; `done` gets its position, or
  // INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE (the broker is unreachable).
  void PublishAsync(const gathering::bridge::v1::Event& event, PublishCallback done);
  // Any thread. As PublishFrame; `done` (may be empty) gets the position or the error.
  void PublishFrameAsync(const std::string& channel, std::string_view head, std::string_view tail,
                         uint64_t exclude_id, PublishCallback done);
  // Shard thread only. As Subscribe, answering through `done`; with a broker the subscription
  // is pending (it buffers what arrives) until the broker confirmed it and, when recovering,
  // the history was read, then merged without gap or duplicate.
  void SubscribeAsync(size_t shard, const std::string& channel, Subscriber* s,
                      const std::optional<RecoveryRequest>& recovery, SubscribeCallback done);
  // Any thread.
  void HistoryAsync(const std::string& channel, uint64_t since, size_t limit, HistoryCallback done);
  void PresenceAsync(const std::string& channel, PresenceCallback done);

  // Any thread. Publishes a frame `head + offset + tail` on a valid channel; the subscriber
  // `exclude_id` (0: none) does not receive it. Offset 0: refused (too many channels).
  PublishResult PublishFrame(const std::string& channel, std::string_view head,
                             std::string_view tail, uint64_t exclude_id);

  // Shard thread only. Adds `s` to `channel` on shard `shard`; with `recovery`, returns the frames
  // it missed. `s` must be removed (Unsubscribe/UnsubscribeAll) before it is destroyed.
  // Joins presence (agent_joined) for an identity's first connection on a presence namespace.
  SubscribeResult Subscribe(size_t shard, const std::string& channel, Subscriber* s,
                            const std::optional<RecoveryRequest>& recovery);
  // `reason` reaches backends' lifecycle streams and the agent_left event.
  void Unsubscribe(size_t shard, const std::string& channel, Subscriber* s,
                   std::string_view reason = "unsubscribed");
  // Shard thread only. The last offset handed to `s` on `channel` (or skipped for it: its own
  // message, a duplicate), i.e. where its stream stands; nullopt while its subscription waits
  // for the broker's answer, or when it has none.
  std::optional<uint64_t> DeliveredOffset(size_t shard, const std::string& channel,
                                          const Subscriber* s) const;

  // Any thread. The retained frames of `channel` after `since` (at most `limit`; 0: all).
  HistoryResult History(const std::string& channel, uint64_t since, size_t limit);

  // Any thread. The channel's members.
  PresenceResult Presence(const std::string& channel);

  // Any thread (the app calls it every second). Drops history older than its namespace's ttl
  // and frees the state of channels with no subscribers and no history left that have been
  // idle for `idle_timeout` (or at once under pressure, above). Bounded work per
  // call: it resumes where the previous call stopped and does about `budget` units of work (a
  // channel or a hash bucket each; 0: a whole pass in about ten calls, at least
  // kMinSweepBudget), holding a stripe's lock for at most a few hundred units at a time; a call
  // never visits a channel twice. Returns the number of channels freed.
  size_t Sweep(std::chrono::steady_clock::time_point now, size_t budget = 0);

  // Any thread. Stats of the namespace at `index` in namespaces().all().
  NamespaceStats& namespace_stats(int index) { return namespace_stats_[index]; }
  std::string RenderNamespaceMetrics() const;

  // Busiest channels (the admin dashboard). Any thread. Off until enabled: then every publish
  // (a backend's, a client message, a presence event; in broker mode those made through this
  // node) is counted once in its stripe's TopChannels, under the lock it already holds.
  void EnableChannelCounts() { count_channels_.store(true, std::memory_order_relaxed); }
  // The `n` channels with the most publishes since the previous call, most first; starts a new
  // interval. Takes each stripe's lock once, briefly.
  std::vector<ChannelCount> TakeBusiestChannels(size_t n);

  // Called once the io threads are joined: later publishes post nothing.
  void Stop() { stopped_.store(true); }

  // Backend Subscribe streams. Any thread. `lifecycle` sinks also get subscribe/unsubscribe
  // records. Patterns are valid (ValidatePattern); those of unknown namespaces can match no
  // client channel and are ignored. Sinks are indexed by namespace, so a message is matched
  // against the streams with a pattern in its namespace and the `*` ones only, and each sink
  // gets a message at most once.
  void AddSink(std::vector<std::string> patterns, std::shared_ptr<ClientMessageSink> sink,
               bool lifecycle = false);
  void RemoveSink(const ClientMessageSink* sink);
  void ForwardToBackends(const ClientMessagePtr& message);
  // Broker mode: whether any backend may listen (on any node); embedded: this node's sinks.
  bool backends_may_listen() const { return broker_ != nullptr || sink_count() > 0; }
  size_t sink_count() const { return sink_count_.load(std::memory_order_relaxed); }

 private:
  struct Entry {
    Subscriber* subscriber;
    uint64_t last_offset;  // frames at or below it are skipped
    // Broker mode: a subscription waiting for the broker (below), and what it buffers.
    struct Pending {
      uint64_t token = 0;  // tells a stale answer from the current subscription's
      std::optional<RecoveryRequest> recovery;
      SubscribeCallback done;
      std::vector<FramePtr> frames;  // arrived while waiting, in order
      uint64_t dropped_from = 0;     // past max_pending_frames_: the first and last dropped
      uint64_t dropped_to = 0;
    };
    std::unique_ptr<Pending> pending;
    // Broker mode: the connection was registered with the presence manager (its namespace had
    // presence when it subscribed), so it leaves it when it goes.
    bool presence = false;
  };
  struct ShardChannel {
    // The ChannelState's generation: frames posted for an earlier incarnation of the channel
    // (freed and created again while they were queued) carry another one and are skipped.
    uint64_t generation = 0;
    std::vector<Entry> entries;
  };
  // One io thread's subscribers. Touched only on that thread.
  struct Shard {
    Executor executor;
    std::unordered_map<std::string, ShardChannel> channels;
    std::atomic<size_t> max_pending_frames{8192};  // ClusterOptions'; SetLimits
    void Deliver(const FramePtr& frame, uint64_t exclude_id, uint64_t generation);
    // Broker mode: a control frame (gap, subscribed) for the channel's live subscriptions;
    // `reset` also forgets their offsets (the channel's epoch changed).
    void DeliverControl(const std::string& channel, const FramePtr& frame, bool reset);
  };
  struct Member {
    uint32_t connections = 0;
    std::chrono::system_clock::time_point joined_at;
    bool announced = false;  // its agent_joined was published: its agent_left will be
  };
  struct ChannelState {
    std::string epoch;        // random, set at creation
    uint64_t generation = 0;  // unique per creation in this hub
    uint64_t offset = 0;
    uint32_t connections = 0;
    // Subscriptions per shard: frames are posted only to shards that have some.
    std::vector<uint32_t> shard_subscribers;
    std::unordered_map<std::string, Member> members;
    std::deque<std::pair<std::chrono::steady_clock::time_point, FramePtr>> history;
    size_t history_bytes = 0;  // sum of the history's frame sizes
    // The last publish, or the last subscriber leaving: idleness is counted from it.
    std::chrono::steady_clock::time_point last_active;
    // Broker mode. The link: none; Subscribe sent; Open (the top) in flight; live, delivering.
    enum class Link : uint8_t { kNone, kSubscribing, kOpening, kLive };
    Link link = Link::kNone;
    bool watched = false;       // presence_->Watch was called: Unwatch when the state goes
    StreamPosition delivered;   // live: the last offset posted to the shards, and its epoch
    uint64_t published = 0;     // the highest offset a publish through this node was given
    uint8_t stall_ticks = 0;    // sweeps for which `published` stayed above `delivered`
    bool repairing = false;     // a History read is filling a gap; deliveries wait in `held`
    uint64_t repair_seq = 0;    // the read in flight; older answers are ignored
    bool checking = false;      // a rewind check is in flight
    std::string retired_epoch;  // rotated away after a rewind: its late deliveries are dropped
    std::vector<BrokerMessage> held;
  };
  struct Stripe {
    std::mutex mu;
    std::unordered_map<std::string, ChannelState> channels;
    TopChannels top;  // with count_channels_
  };
  // Stripe lock held.
  void CountPublishLocked(Stripe& stripe, const std::string& channel) {
    if (count_channels_.load(std::memory_order_relaxed)) stripe.top.Count(channel);
  }

  Stripe& StripeFor(const std::string& channel);
  // The channel's state, created if needed; nullptr at the channel limit. Stripe lock held.
  ChannelState* FindOrCreateLocked(Stripe& stripe, const std::string& channel);
  // True when the state may go: no subscribers, no history, and idle long enough (or the hub is
  // under pressure). Stripe lock held.
  bool Evictable(const ChannelState& state, std::chrono::steady_clock::time_point now) const;
  // Frees the channel's state if Evictable. Stripe lock held. True when freed (`it` is then
  // invalid).
  bool EvictIfIdleLocked(Stripe& stripe, std::unordered_map<std::string, ChannelState>::iterator it,
                         std::chrono::steady_clock::time_point now);
  // Frees the channel's state if it is Evictable once its expired history is dropped.
  void EvictIfIdle(const std::string& channel, std::chrono::steady_clock::time_point now);
  void PublishPresence(const std::string& channel, const std::string& identity, bool joined,
                       std::string_view reason);
  void ForwardLifecycle(const std::string& channel, const Subscriber& s, bool subscribed,
                        std::string_view reason);
  // The event's frame parts, or INVALID_ARGUMENT (counted as a rejected publish).
  absl::StatusOr<FrameParts> EncodeForPublish(const gathering::bridge::v1::Event& event);
  // Removes `s` from `channel` on its shard; false when it was not there. `presence` (may be
  // null) gets the entry's Entry::presence.
  bool RemoveFromShard(size_t shard, const std::string& channel, Subscriber* s,
                       bool* presence = nullptr);
  // Drops history past the namespace's count, bytes and age; returns the bytes dropped (the
  // caller updates history_bytes_current). Stripe lock held.
  static size_t TrimHistory(ChannelState& state, const NamespaceConfig* ns,
                            std::chrono::steady_clock::time_point now);
  // As TrimHistory, updating the gauge.
  void TrimHistoryCounted(ChannelState& state, const NamespaceConfig* ns,
                          std::chrono::steady_clock::time_point now);
  struct SinkEntry {
    std::vector<std::string> patterns;
    std::shared_ptr<ClientMessageSink> sink;
    bool lifecycle = false;
  };
  static void ForwardTo(const std::vector<SinkEntry>& sinks, const ClientMessagePtr& message);
  void ForwardToLocalBackends(const ClientMessagePtr& message);
  void ForwardToOtherNodes(const ClientMessagePtr& message);

  // Broker mode (hub_cluster.cc).
  void OnBrokerMessage(BrokerMessage m);
  void OnBrokerState(BrokerState state, const absl::Status& why);
  void OnBackendMessage(std::string origin, std::string payload);
  HistoryPolicy PolicyFor(const NamespaceConfig* ns) const;
  // `accepted_nanos`: see Frame (0 for history read back from the broker).
  FramePtr MakeFrame(const std::string& channel, uint64_t offset, std::string text,
                     int64_t accepted_nanos = 0) const;
  // subscriptions_current and the channel's namespace gauge. Any thread.
  void CountSubscription(const std::string& channel, int64_t delta);
  // What to do once the stripe lock is released: broker calls may call back inline.
  struct Deferred {
    std::vector<std::string> repair;  // channels to read back from their delivered offset
    // Channels whose top to compare with what they had delivered when the repeat came.
    std::vector<std::pair<std::string, uint64_t>> check;
  };
  // Hands `m` to the shards in offset order, or holds it behind a gap. Stripe lock held.
  // `live`: straight from pub/sub (a duplicate there may mean the offsets went back).
  void DeliverLocked(const std::string& channel, ChannelState& state, BrokerMessage m,
                     Deferred& deferred, bool live = false);
  void CheckRewind(const std::string& channel, uint64_t delivered);
  void PostFrameLocked(ChannelState& state, const FramePtr& frame, uint64_t exclude_id);
  void PostControlLocked(const std::string& channel, ChannelState& state, const FramePtr& frame,
                         bool reset);
  void RunDeferred(Deferred& deferred);
  void Repair(const std::string& channel);
  void OnRepaired(const std::string& channel, uint64_t generation, uint64_t seq,
                  absl::StatusOr<BrokerHistory> h);
  // `watch`: Watch the channel's presence (the caller set ChannelState::watched).
  void LinkChannel(const std::string& channel, uint64_t generation, bool watch);
  void OnLinked(const std::string& channel, uint64_t generation, absl::Status s);
  void OnOpened(const std::string& channel, uint64_t generation, absl::StatusOr<BrokerHistory> h);
  // Fails the channel's pending subscriptions on every shard with `why`.
  void FailPendingLocked(const std::string& channel, ChannelState& state, const absl::Status& why);
  // Shard thread: completes the pending subscriptions of `channel` whose link became live.
  void ActivatePending(size_t shard, const std::string& channel, StreamPosition top);
  void StartRecovery(size_t shard, const std::string& channel, uint64_t token, uint64_t since);
  void CompleteRecovery(size_t shard, const std::string& channel, uint64_t token,
                        absl::StatusOr<BrokerHistory> h);
  void SubscribeClustered(size_t shard, const std::string& channel, Subscriber* s,
                          const std::optional<RecoveryRequest>& recovery, SubscribeCallback done);
  void UnsubscribeClustered(size_t shard, const std::string& channel, Subscriber* s,
                            std::string_view reason);
  size_t SweepClustered(std::chrono::steady_clock::time_point now);
  std::string PresenceConnection(const Subscriber& s) const;
  // The caller checked the namespace's presence (and recorded it in the entry).
  void JoinPresence(const std::string& channel, const std::string& identity,
                    const std::string& connection);
  void PublishPresenceChange(const std::string& channel, const std::string& identity, bool joined,
                             std::string_view reason);

  static constexpr size_t kStripes = 64;
  NamespaceRegistry namespaces_;
  Metrics& metrics_;
  std::unique_ptr<NamespaceStats[]> namespace_stats_;
  ShardedHistogram delivery_latency_;
  std::atomic<bool> stopped_{false};
  std::atomic<bool> count_channels_{false};
  std::atomic<size_t> lifecycle_sinks_{0};
  std::atomic<size_t> max_channels_;                     // SetLimits
  std::atomic<std::chrono::milliseconds> idle_timeout_;  // SetLimits
  std::atomic<size_t> channel_count_{0};
  std::atomic<uint64_t> next_generation_{1};
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unique_ptr<Stripe[]> stripes_;
  // Sweep's cursor: the stripe and bucket it resumes at.
  std::mutex sweep_mu_;
  size_t sweep_stripe_ = 0;
  size_t sweep_bucket_ = 0;
  mutable std::shared_mutex sinks_mu_;
  // Sinks with a pattern in namespace i (only those patterns), by namespaces().all() index;
  // sinks with a `*` pattern are in any_ns_sinks_ only.
  std::vector<std::vector<SinkEntry>> sinks_by_ns_;
  std::vector<SinkEntry> any_ns_sinks_;
  std::vector<std::pair<const ClientMessageSink*, bool>> sinks_;  // every sink, its lifecycle
  std::atomic<size_t> sink_count_{0};

  Broker* const broker_;
  PresenceManager* const presence_;
  const std::string node_id_;
  std::atomic<size_t> max_pending_frames_;              // SetLimits
  std::atomic<std::chrono::milliseconds> link_linger_;  // SetLimits
  ClusterStats cluster_stats_;
  std::atomic<uint64_t> next_token_{1};
  std::atomic<bool> broker_down_{false};  // a kDown was seen: repair every channel at kUp
};

}  // namespace bridge::core

#endif  // BRIDGE_CORE_HUB_H_
