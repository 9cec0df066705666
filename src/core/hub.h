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

#include "absl/status/statusor.h"
#include "core/frame.h"
#include "core/metrics.h"
#include "core/namespaces.h"

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
};

// A frame a WebSocket client sent, on its way to backends.
struct ClientMessageRecord {
  std::string channel;
  std::string connection_id;
  std::string identity;
  std::chrono::system_clock::time_point received_at;
  std::string json;
};
using ClientMessagePtr = std::shared_ptr<const ClientMessageRecord>;

// A backend's Subscribe stream. Called from any io thread; must not block (queue and return).
class ClientMessageSink {
 public:
  virtual ~ClientMessageSink() = default;
  virtual void OnClientMessage(const ClientMessagePtr& message) = 0;
};

struct PublishResult {
  uint64_t offset = 0;
  std::string epoch;
};

struct SubscribeResult {
  std::string epoch;
  uint64_t offset = 0;           // the channel's latest offset when the subscription began
  bool recovered = false;        // only meaningful when `since` was given
  std::vector<FramePtr> missed;  // frames after `since`, in order, when recovering
};

struct RecoveryRequest {
  uint64_t since = 0;
  std::string epoch;  // empty: accepted only with since == 0
};

class Hub {
 public:
  // Posts a task to a shard's thread.
  using Executor = std::function<void(std::function<void()>)>;

  Hub(std::vector<Executor> shard_executors, NamespaceRegistry namespaces, Metrics& metrics);
  ~Hub();
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  size_t shard_count() const { return shards_.size(); }
  const NamespaceRegistry& namespaces() const { return namespaces_; }
  const std::string& epoch() const { return epoch_; }
  Metrics& metrics() { return metrics_; }

  // Any thread. Validates and publishes a backend event.
  absl::StatusOr<PublishResult> Publish(const gathering::bridge::v1::Event& event);

  // Any thread. Publishes a frame `head + offset + tail` on a valid channel; the subscriber
  // `exclude_id` (0: none) does not receive it.
  PublishResult PublishFrame(const std::string& channel, std::string_view head,
                             std::string_view tail, uint64_t exclude_id);

  // Shard thread only. Adds `s` to `channel` on shard `shard`; with `recovery`, returns the frames
  // it missed. `s` must be removed (Unsubscribe/UnsubscribeAll) before it is destroyed.
  SubscribeResult Subscribe(size_t shard, const std::string& channel, Subscriber* s,
                            const std::optional<RecoveryRequest>& recovery);
  void Unsubscribe(size_t shard, const std::string& channel, Subscriber* s);

  // Any thread. The retained frames of `channel` after `since` (up to `limit`).
  std::vector<FramePtr> History(const std::string& channel, uint64_t since, size_t limit);

  // Backend Subscribe streams. Any thread.
  void AddSink(std::vector<std::string> patterns, std::shared_ptr<ClientMessageSink> sink);
  void RemoveSink(const ClientMessageSink* sink);
  void ForwardToBackends(const ClientMessagePtr& message);
  size_t sink_count() const;

 private:
  struct Entry {
    Subscriber* subscriber;
    uint64_t last_offset;  // frames at or below it are skipped
  };
  // One io thread's subscribers. Touched only on that thread.
  struct Shard {
    Executor executor;
    std::unordered_map<std::string, std::vector<Entry>> channels;
    void Deliver(const FramePtr& frame, uint64_t exclude_id);
  };
  struct ChannelState {
    uint64_t offset = 0;
    std::deque<std::pair<std::chrono::steady_clock::time_point, FramePtr>> history;
  };
  struct Stripe {
    std::mutex mu;
    std::unordered_map<std::string, ChannelState> channels;
  };
  struct SinkEntry {
    std::vector<std::string> patterns;
    std::shared_ptr<ClientMessageSink> sink;
  };

  Stripe& StripeFor(const std::string& channel);
  static void TrimHistory(ChannelState& state, const NamespaceConfig* ns,
                          std::chrono::steady_clock::time_point now);

  static constexpr size_t kStripes = 64;
  NamespaceRegistry namespaces_;
  Metrics& metrics_;
  std::string epoch_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unique_ptr<Stripe[]> stripes_;
  mutable std::shared_mutex sinks_mu_;
  std::vector<SinkEntry> sinks_;
};

}  // namespace bridge::core

#endif  // BRIDGE_CORE_HUB_H_
