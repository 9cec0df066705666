// NodeDirectory: this node's entry in the broker's node directory and its view of the others.
//
// Every `interval` a thread of its own builds this node's NodeInfo (counters from core::Metrics,
// rates over the interval, the broker's health), announces it with Broker::AnnounceNode for
// 3 x `interval` and keeps the live nodes the broker answers (validated by ParseAnnounce; an
// entry that does not parse is skipped and counted). A node that stops announcing (killed)
// disappears from every other node's list once its ttl passed, so within 3 intervals plus one;
// Stop() withdraws it at once. While the broker does not answer, the last list is kept with
// each node's last_seen growing and nodes older than the ttl dropped; this node is always
// listed. At most kMaxNodes entries.
//
// Threads: Start/Stop from the owner's thread; nodes() and the sink's calls from any thread
// (the sink runs on the directory's thread or the broker's, never concurrently with itself).
#ifndef BRIDGE_ADMIN_NODE_DIRECTORY_H_
#define BRIDGE_ADMIN_NODE_DIRECTORY_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "admin/node_info.h"
#include "core/broker.h"
#include "core/hub.h"
#include "core/metrics.h"

namespace bridge::admin {

struct NodeDirectoryOptions {
  std::string node_id;
  std::chrono::milliseconds interval{2000};
  std::string ws;  // the addresses this node serves, host:port ("" when off)
  std::string grpc;
  std::string admin;
};

class NodeDirectory {
 public:
  // All outlive the directory. `sink` (may be empty) hears every new list.
  NodeDirectory(NodeDirectoryOptions options, core::Broker& broker, const core::Metrics& metrics,
                core::Hub& hub, std::function<void(std::vector<NodeInfo>)> sink);
  ~NodeDirectory();  // Stop()
  NodeDirectory(const NodeDirectory&) = delete;
  NodeDirectory& operator=(const NodeDirectory&) = delete;

  // Announces at once, then every interval.
  void Start();
  // Withdraws this node (waiting at most 1 s for the broker) and joins the thread. Idempotent.
  void Stop();

  // The latest list, sorted by node id.
  std::vector<NodeInfo> nodes() const;
  // Entries read from the broker that did not parse.
  uint64_t invalid() const;

  struct Shared;

 private:
  void Announce();

  const NodeDirectoryOptions options_;
  core::Broker& broker_;
  const core::Metrics& metrics_;
  core::Hub& hub_;
  std::shared_ptr<Shared> shared_;  // what the broker's callbacks touch (they may outlive us)
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_at_ = started_;
  uint64_t last_published_ = 0;
  uint64_t last_client_messages_ = 0;
  uint64_t last_frames_sent_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool stopped_ = false;
};

}  // namespace bridge::admin

#endif  // BRIDGE_ADMIN_NODE_DIRECTORY_H_
