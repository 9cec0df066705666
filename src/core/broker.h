// The broker seam: what a node needs from whatever orders, stores and distributes a channel's
// events (in-process: broker/memory_broker.h; Redis: broker/redis_broker.h). Interface only;
// core includes no implementation.
//
// A broker owns, per channel: the offset counter, the epoch, the bounded history, and the
// delivery of each published frame to every node that declared interest in the channel
// (Subscribe), this node included. It knows nothing of WebSocket sessions or shards: the node
// fans a delivered frame out locally.
//
// Threading. Every method may be called from any thread. Every method returns at once; results
// come through callbacks. Each implementation documents where its callbacks run (inline on the
// calling thread, or on its own executor); a caller must be ready for both, i.e. a callback may
// run before the method returns. Callbacks and the handler must not block.
//
// Callbacks. Each callback passed to a method is called exactly once (also when the broker is
// stopped: then with UNAVAILABLE or CANCELLED).
//
// Ordering. Within a channel, offsets are consecutive from 1 while the channel's state lives
// (offset, epoch and history are created together and go together). The handler receives a
// channel's messages in offset order, each at most once; pub/sub loss (a broken subscriber
// link) is reported through the state callback, never silently. A channel's state created
// again gets a new random epoch and starts again at offset 1, so a position `{offset, epoch}`
// is never reused.
#ifndef BRIDGE_CORE_BROKER_H_
#define BRIDGE_CORE_BROKER_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/histogram.h"

namespace bridge::core {

// A place in one channel's stream. offset 0 with an empty epoch: the channel has no state (never
// published, or its state expired); offset 0 is never an event's offset.
struct StreamPosition {
  uint64_t offset = 0;
  std::string epoch;
};

inline bool operator==(const StreamPosition& a, const StreamPosition& b) {
  return a.offset == b.offset && a.epoch == b.epoch;
}

// How a channel's history is bounded; the oldest frames go first. Each bound applies on its own.
struct HistoryPolicy {
  size_t size = 0;  // frames kept; 0: none (the offset is still assigned and delivered)
  // How long history lives. 0: no time bound. In memory: each frame's age. In Redis: the whole
  // stream expires `ttl` after the channel's last publish.
  std::chrono::seconds ttl{0};
  size_t max_bytes = 0;  // sum of the kept frames' text sizes; 0: no byte bound
};

// One retained frame.
struct HistoryFrame {
  uint64_t offset = 0;
  std::string text;  // head + offset + tail, exactly as delivered
};

// The frames after `since` and the channel's top, read together (they agree with each other).
struct BrokerHistory {
  std::vector<HistoryFrame> frames;  // consecutive offsets, ascending
  StreamPosition top;                // offset 0 / empty epoch: no channel state
  // The frames are everything after `since` in this epoch: since >= top.offset, or the first
  // frame is since + 1 and `limit` did not cut the range. With no channel state: since == 0.
  // It says nothing about the caller's epoch: compare `top.epoch` yourself.
  bool complete = false;
};

// One published frame as a subscribed node receives it.
struct BrokerMessage {
  std::string channel;
  uint64_t offset = 0;
  std::string epoch;
  std::string text;    // head + offset + tail
  std::string origin;  // as given to Publish
};

enum class BrokerState {
  kUp,    // publishing works and every subscribed channel is active again
  kDown,  // messages may have been lost (or publishing fails); repair after the next kUp
};

// Receives what the broker delivers. Either member may be empty. Where they run: see the
// implementation. Neither may block, and neither may call into the broker synchronously
// (post instead): an implementation may hold a per-channel lock while calling on_message.
struct BrokerHandler {
  // Messages of subscribed channels, per channel in offset order, at most once each.
  std::function<void(BrokerMessage)> on_message;
  // Changes only (kUp after kDown, kDown after kUp), with the reason for kDown. An
  // implementation that starts up reports its first kUp too.
  std::function<void(BrokerState, const absl::Status&)> on_state;
  // Backend messages (PublishBackendMessage) from every node, this one included, while
  // SetBackendInterest(true): (origin, payload).
  std::function<void(std::string, std::string)> on_backend_message;
};

// Health as the node reports it (readiness, metrics). Any thread.
struct BrokerHealth {
  bool publish_up = false;  // Publish and History can reach the store
  bool pubsub_up = false;   // deliveries can arrive (subscriber link up, channels re-subscribed)
  std::string detail;       // why not, when either is false
  bool ok() const { return publish_up && pubsub_up; }
};

// One node in the broker's node directory (Broker::AnnounceNode).
struct NodeAnnouncement {
  std::string node;
  // What the node announced: opaque to the broker, and input to whoever reads it (another
  // node, or anything else that can write to the store, wrote it): validate before use.
  std::string info;
  int64_t age_ms = 0;  // since the node's last announce, on the broker's clock (no skew)
};

// The node directory's bounds: an announce past kMaxNodes live nodes is refused, reads return
// at most kMaxNodes entries, and an info longer than kMaxNodeInfoBytes is neither written nor
// returned.
inline constexpr size_t kMaxNodes = 256;
inline constexpr size_t kMaxNodeInfoBytes = 4096;

// Counters since creation. Plain atomics: read them from any thread.
struct BrokerStats {
  // Histogram cells: an implementation observes with one writer per shard (a lock stripe, or
  // shard 0 from one strand). Series 0 only: no labels.
  static constexpr size_t kLatencyShards = 64;

  std::atomic<uint64_t> published{0};       // Publish callbacks with OK
  std::atomic<uint64_t> publish_failed{0};  // Publish callbacks with an error
  std::atomic<uint64_t> delivered{0};       // messages handed to on_message
  std::atomic<uint64_t> history_reads{0};   // History calls answered OK
  std::atomic<uint64_t> reconnects{0};      // kUp reported after a kDown
  std::atomic<uint64_t> errors{0};          // anything else that failed (bad replies, ...)
  // From the Publish call to its answer from the store (Redis: the script's reply; memory: the
  // frame stored and delivered). OK publishes only.
  ShardedHistogram publish_latency{kLatencyShards, 1};
  // From the Publish call to the frame's delivery back to this node (its own publishes of
  // subscribed channels only: one clock, no skew between nodes).
  ShardedHistogram delivery_lag{kLatencyShards, 1};
};

class Broker {
 public:
  using PublishCallback = absl::AnyInvocable<void(absl::StatusOr<StreamPosition>)>;
  using HistoryCallback = absl::AnyInvocable<void(absl::StatusOr<BrokerHistory>)>;
  using StatusCallback = absl::AnyInvocable<void(absl::Status)>;

  virtual ~Broker() = default;

  // Set once, before the first Subscribe (and, for implementations with a Start, before it).
  virtual void SetHandler(BrokerHandler handler) = 0;

  // INVALID_ARGUMENT when the broker cannot honour `policy` (e.g. a Redis meta TTL shorter than
  // the history TTL). Call it at start-up for every configured policy; Publish refuses such a
  // policy the same way.
  virtual absl::Status ValidatePolicy(const HistoryPolicy& policy) const = 0;

  // Atomically for the channel: creates its state if needed (new epoch, offset 0), assigns the
  // next offset, appends `head + offset + tail` to the history bounded by `policy`, and delivers
  // the frame to every node subscribed to `channel`, this one included. `origin` names the
  // publishing node (diagnostics; every node receives the frame, the origin too). `done` gets
  // the frame's position. Errors: UNAVAILABLE (the store is unreachable: the event may or may not
  // have been stored, and no OK is ever given for an event that was not), INVALID_ARGUMENT (bad
  // policy), RESOURCE_EXHAUSTED (a local bound), CANCELLED (stopped).
  virtual void Publish(const std::string& channel, std::string_view head, std::string_view tail,
                       const HistoryPolicy& policy, std::string_view origin,
                       PublishCallback done) = 0;

  // The retained frames with offsets > `since` (at most `limit`; 0: no limit), and the top,
  // read together. Reading creates no state. Errors: UNAVAILABLE, CANCELLED.
  virtual void History(const std::string& channel, uint64_t since, size_t limit,
                       HistoryCallback done) = 0;

  // As History, but a channel with no state gets one (a new epoch at offset 0), so a subscriber
  // is told the epoch its later events will carry. Errors: as History, and RESOURCE_EXHAUSTED
  // (a local bound on channels).
  virtual void Open(const std::string& channel, uint64_t since, size_t limit,
                    HistoryCallback done) = 0;

  // Declares this node's interest in `channel` (idempotent: one interest per channel, not a
  // counter; the node subscribes at its first local subscriber). `done` gets OK once the
  // subscription is active: every publish that completes after that is delivered to the handler.
  // So a recovering node buffers deliveries from `done` on, reads History, and merges by offset.
  // UNAVAILABLE when it cannot be made active now; the interest is kept anyway and becomes
  // active with the next kUp (the node repairs then).
  virtual void Subscribe(const std::string& channel, StatusCallback done) = 0;

  // Gives the channel a new random epoch if its epoch is still `from_epoch` (its offset and
  // history stay); `done` gets the position after it. A node calls it when it saw the channel's
  // offsets go back under one epoch (a fail-over to a replica that lacked the latest writes), so
  // no client accepts a reused offset. Errors: UNAVAILABLE, CANCELLED.
  virtual void RotateEpoch(const std::string& channel, const std::string& from_epoch,
                           PublishCallback done) = 0;

  // Drops the interest (at the node's last local subscriber). Deliveries for the channel may
  // still arrive until the broker has processed it; the handler should ignore them.
  virtual void Unsubscribe(const std::string& channel) = 0;

  // Client frames on their way to backend streams, which may be held by any node: `payload` is
  // delivered at most once (no history, no offsets) to on_backend_message on every node with a
  // backend interest, this one included (compare `origin`). `origin` holds no ':'.
  virtual void PublishBackendMessage(std::string_view origin, std::string_view payload) = 0;
  // Whether this node receives backend messages (it holds backend streams). Idempotent.
  virtual void SetBackendInterest(bool on) = 0;

  // The node directory: every node announces itself periodically with a short description
  // (`info`, at most kMaxNodeInfoBytes) that lives `ttl` unless announced again; a node that
  // stops announcing drops out once its ttl passed. `done` gets the live nodes (this one
  // included, at most kMaxNodes, in no particular order). RESOURCE_EXHAUSTED: kMaxNodes other
  // nodes are live (this one was not added); INVALID_ARGUMENT: info too long; UNAVAILABLE,
  // CANCELLED. The default answers UNIMPLEMENTED (a broker without a directory).
  using NodesCallback = absl::AnyInvocable<void(absl::StatusOr<std::vector<NodeAnnouncement>>)>;
  virtual void AnnounceNode(std::string_view node, std::string_view info,
                            std::chrono::milliseconds ttl, NodesCallback done) {
    (void)node, (void)info, (void)ttl;
    done(absl::UnimplementedError("this broker keeps no node directory"));
  }
  // Removes `node` from the directory at once (a node that stops cleanly).
  virtual void WithdrawNode(std::string_view node, StatusCallback done) {
    (void)node;
    done(absl::UnimplementedError("this broker keeps no node directory"));
  }

  virtual BrokerHealth Health() const = 0;
  virtual const BrokerStats& stats() const = 0;
};

}  // namespace bridge::core

#endif  // BRIDGE_CORE_BROKER_H_
