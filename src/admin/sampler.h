// The dashboard's feed: once a second the admin listener asks the Sampler for a sample of the
// bridge (gauges, rates over the last interval, the busiest channels, the last closes, the
// broker's state, the nodes) as one JSON frame, sent unchanged to every open dashboard.
//
// Frames (docs/operations.md, "Admin listener and dashboard"):
//   {"type":"sample","time":<ms since epoch>,"interval_ms":N,"node":"…","status":"ok",
//    "connections":N,"http_connections":N,"subscriptions":N,"channels":N,"backend_streams":N,
//    "queued_bytes":N,"rates":{"published":x,"client_messages":x,"frames_sent":x,
//    "bytes_sent":x,"connections_opened":x} (per second),"totals":{…},
//    "busiest":[{"channel":"…","messages":N}],"closes":[{"code":N,"reason":"…",
//    "connection":"c-1","time":"…Z"}] (newest first),"broker":{"mode":"embedded",…,
//    "publish_ms":{"count":N,"mean":x,"p99":x},"lag_ms":{…}} (over the interval; p99 is the
//    upper bound of its histogram bucket),"nodes":[NodesJson: this node alone, or the
//    NodeDirectory's list]}
//   {"type":"history","interval_ms":N,"points":[[time,connections,subscriptions,channels,
//    published/s,client_messages/s,frames_sent/s],…]} (the last kHistoryPoints samples, oldest
//    first: what a dashboard that just opened draws before the next sample)
//
// Not thread-safe: one thread (the admin io thread) calls everything. Reads its sources (any
// thread's atomics, the hub's busiest-channel tables, the close log) without blocking them.
#ifndef BRIDGE_ADMIN_SAMPLER_H_
#define BRIDGE_ADMIN_SAMPLER_H_

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <string>
#include <vector>

#include "admin/counters.h"
#include "admin/node_info.h"
#include "core/histogram.h"
#include "core/hub.h"
#include "core/metrics.h"
#include "ws/close_log.h"

namespace bridge::admin {

struct SamplerSources {
  const core::Metrics* metrics = nullptr;
  core::Hub* hub = nullptr;
  const ws::CloseLog* closes = nullptr;
  const std::atomic<bool>* draining = nullptr;
  std::string broker_mode = "embedded";             // "embedded", "memory" or "redis"
  const core::BrokerStats* broker_stats = nullptr;  // null: embedded (no broker lag)
};

class Sampler {
 public:
  static constexpr size_t kHistoryPoints = 120;
  static constexpr size_t kBusiest = 10;

  explicit Sampler(SamplerSources sources);

  // A sample frame for the interval since the previous call (the first call's rates are 0).
  // Takes (and so resets) the hub's busiest-channel counts.
  std::string Sample(std::chrono::steady_clock::time_point now,
                     std::chrono::system_clock::time_point wall);
  // The history frame of the samples taken so far.
  std::string HistoryFrame() const;
  // The nodes to list from the next sample on (empty: this node alone).
  void SetNodes(std::vector<NodeInfo> nodes) { nodes_ = std::move(nodes); }
  // The node list of the last sample (this node alone without SetNodes).
  std::vector<NodeInfo> Nodes() const;

 private:
  using Point = std::array<double, 7>;
  SamplerSources sources_;
  CounterSnapshot last_;
  std::chrono::steady_clock::time_point last_at_;
  bool first_ = true;
  std::deque<Point> history_;
  std::vector<NodeInfo> nodes_;
  NodeInfo self_;  // from the last sample
  core::ShardedHistogram::Totals last_publish_;
  core::ShardedHistogram::Totals last_lag_;
  std::chrono::milliseconds interval_{1000};
};

}  // namespace bridge::admin

#endif  // BRIDGE_ADMIN_SAMPLER_H_
