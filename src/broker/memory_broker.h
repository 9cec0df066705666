// MemoryBroker: the in-process broker (one node, no I/O): what core::Hub does today for offsets,
// epochs and history, behind the core::Broker seam.
//
// Threading. Every method may be called from any thread; channels are spread over lock stripes.
// Everything runs inline on the calling thread:
//   - Publish's and History's callbacks run before the method returns, after the lock is
//     released;
//   - on_message runs inside Publish, on the publisher's thread, WHILE the channel's stripe lock
//     is held: that is what makes delivery follow offset order across concurrent publishers.
//     The handler must not call into this broker (post instead) and must not block;
//   - Subscribe's callback runs before Subscribe returns (always OK: nothing can be down);
//   - on_state is called once, with kUp, inside SetHandler.
// Subscribe and Publish take the same lock, so a publish either completed before the
// subscription (it is in History) or is delivered after it.
//
// Channel state lives until `meta_ttl` passes without a publish (checked lazily, when the channel
// is next touched) or Forget(); then the next publish starts again at offset 1 with a new epoch.
// History frames expire by their own age (`ttl`), as in the hub.
#ifndef BRIDGE_BROKER_MEMORY_BROKER_H_
#define BRIDGE_BROKER_MEMORY_BROKER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/broker.h"
#include "core/epoch.h"

namespace bridge::broker {

struct MemoryBrokerOptions {
  // Channels with state at most; past it Publish fails with RESOURCE_EXHAUSTED.
  size_t max_channels = 1000000;
  // A channel with no publish for this long loses its state; 0: never (Forget only).
  std::chrono::milliseconds meta_ttl{0};
};

// Both brokers make their epochs with core::NewEpoch (core/epoch.h), as the hub does.
using core::NewEpoch;

class MemoryBroker : public core::Broker {
 public:
  explicit MemoryBroker(MemoryBrokerOptions options = {});
  ~MemoryBroker() override;
  MemoryBroker(const MemoryBroker&) = delete;
  MemoryBroker& operator=(const MemoryBroker&) = delete;

  void SetHandler(core::BrokerHandler handler) override;
  // Any thread (a reload): channels created from now on are counted against `n`; those held
  // stay.
  void SetMaxChannels(size_t n) { max_channels_.store(n, std::memory_order_relaxed); }
  absl::Status ValidatePolicy(const core::HistoryPolicy& policy) const override;
  void Publish(const std::string& channel, std::string_view head, std::string_view tail,
               const core::HistoryPolicy& policy, std::string_view origin,
               PublishCallback done) override;
  void History(const std::string& channel, uint64_t since, size_t limit,
               HistoryCallback done) override;
  void Open(const std::string& channel, uint64_t since, size_t limit,
            HistoryCallback done) override;
  void RotateEpoch(const std::string& channel, const std::string& from_epoch,
                   PublishCallback done) override;
  void Subscribe(const std::string& channel, StatusCallback done) override;
  void Unsubscribe(const std::string& channel) override;
  void PublishBackendMessage(std::string_view origin, std::string_view payload) override;
  void SetBackendInterest(bool on) override;
  // The directory of this process (nodes expire lazily, at the next announce).
  void AnnounceNode(std::string_view node, std::string_view info, std::chrono::milliseconds ttl,
                    NodesCallback done) override;
  void WithdrawNode(std::string_view node, StatusCallback done) override;
  core::BrokerHealth Health() const override;
  const core::BrokerStats& stats() const override { return stats_; }

  // Any thread. Drops the channel's state (offset, epoch, history), as an expired Redis meta key
  // would; the interest (Subscribe) stays. The node may call it for an idle channel.
  void Forget(const std::string& channel);
  // Channels holding state.
  size_t channel_count() const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Retained {
    Clock::time_point at;
    uint64_t offset;
    std::string text;
  };
  struct ChannelState {
    std::string epoch;
    uint64_t offset = 0;
    std::deque<Retained> history;
    size_t history_bytes = 0;
    // The ttl of the last publish's policy: History, which is given no policy, trims by it.
    std::chrono::seconds ttl{0};
    Clock::time_point last_publish;
  };
  struct Stripe {
    std::mutex mu;
    std::unordered_map<std::string, ChannelState> channels;
    std::unordered_set<std::string> subscribed;
  };

  Stripe& StripeFor(const std::string& channel);
  // The channel's state unless it expired (then erased); nullptr when none. Lock held.
  ChannelState* FindLive(Stripe& stripe, const std::string& channel, Clock::time_point now);
  static void Trim(ChannelState& state, const core::HistoryPolicy& policy, Clock::time_point now);
  void ReadHistory(const std::string& channel, uint64_t since, size_t limit, bool create,
                   HistoryCallback done);

  struct AnnouncedNode {
    std::string info;
    Clock::time_point at;
    Clock::time_point expires;
  };

  static constexpr size_t kStripes = 64;
  static_assert(kStripes <= core::BrokerStats::kLatencyShards, "a histogram shard per stripe");
  const MemoryBrokerOptions options_;
  std::atomic<size_t> max_channels_;  // options_'s at first; SetMaxChannels
  core::BrokerHandler handler_;
  std::unique_ptr<Stripe[]> stripes_;
  std::atomic<size_t> channel_count_{0};
  std::atomic<bool> backend_interest_{false};
  core::BrokerStats stats_;
  std::mutex nodes_mu_;
  std::map<std::string, AnnouncedNode> nodes_;
};

}  // namespace bridge::broker

#endif  // BRIDGE_BROKER_MEMORY_BROKER_H_
