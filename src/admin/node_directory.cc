#include "admin/node_directory.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "admin/counters.h"

#ifndef BRIDGE_VERSION
#define BRIDGE_VERSION "unknown"
#endif

namespace bridge::admin {

using Clock = std::chrono::steady_clock;

struct NodeDirectory::Shared {
  std::mutex sink_mu;  // held while the sink runs: Stop() clears it, later answers find none
  std::function<void(std::vector<NodeInfo>)> sink;
  mutable std::mutex mu;
  std::vector<NodeInfo> nodes;  // sorted by node id
  std::atomic<bool> in_flight{false};
  std::atomic<uint64_t> invalid{0};
  std::atomic<uint64_t> failures{0};
  std::chrono::milliseconds ttl{0};

  // The other nodes as last read, each with when it last announced (on this node's clock).
  std::vector<std::pair<NodeInfo, Clock::time_point>> others;

  // The broker's answer (or its failure) with this node's fresh info.
  void Update(absl::StatusOr<std::vector<core::NodeAnnouncement>> got, NodeInfo self) {
    std::vector<NodeInfo> list;
    const Clock::time_point now = Clock::now();
    {
      std::lock_guard lock(mu);
      if (got.ok()) {
        others.clear();
        for (const core::NodeAnnouncement& a : *got) {
          if (a.node == self.node) continue;
          std::optional<NodeInfo> n = ParseAnnounce(a.node, a.info);
          if (!n) {
            invalid.fetch_add(1, std::memory_order_relaxed);
            continue;
          }
          others.emplace_back(*std::move(n),
                              now - std::chrono::milliseconds(std::max<int64_t>(0, a.age_ms)));
          if (others.size() + 1 >= core::kMaxNodes) break;
        }
      } else {
        // Keep what the broker said last; nodes past their ttl are gone.
        std::erase_if(others, [&](const auto& o) { return now - o.second > ttl; });
        if (failures.fetch_add(1, std::memory_order_relaxed) % 30 == 0) {
          spdlog::warn("node directory: announce failed: {}", got.status().ToString());
        }
      }
      for (const auto& [n, seen] : others) {
        list.push_back(n);
        list.back().last_seen_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(now - seen).count();
      }
      self.self = true;
      list.push_back(std::move(self));
      std::sort(list.begin(), list.end(),
                [](const NodeInfo& a, const NodeInfo& b) { return a.node < b.node; });
      nodes = list;
    }
    in_flight.store(false, std::memory_order_release);
    std::lock_guard lock(sink_mu);
    if (sink) sink(std::move(list));
  }
};

NodeDirectory::NodeDirectory(NodeDirectoryOptions options, core::Broker& broker,
                             const core::Metrics& metrics, core::Hub& hub,
                             std::function<void(std::vector<NodeInfo>)> sink)
    : options_(std::move(options)),
      broker_(broker),
      metrics_(metrics),
      hub_(hub),
      shared_(std::make_shared<Shared>()) {
  shared_->sink = std::move(sink);
  shared_->ttl = 3 * std::max(options_.interval, std::chrono::milliseconds(10));
}

NodeDirectory::~NodeDirectory() { Stop(); }

void NodeDirectory::Start() {
  const auto interval = std::max(options_.interval, std::chrono::milliseconds(10));
  thread_ = std::thread([this, interval] {
    std::unique_lock lock(mu_);
    do {
      lock.unlock();
      Announce();
      lock.lock();
    } while (!cv_.wait_for(lock, interval, [this] { return stop_; }));
  });
}

void NodeDirectory::Announce() {
  const Clock::time_point now = Clock::now();
  const CounterSnapshot c = ReadCounters(metrics_);
  const double seconds = std::chrono::duration<double>(now - last_at_).count();
  auto rate = [&](uint64_t cur, uint64_t& prev) {
    const double r = seconds > 0 && cur >= prev ? static_cast<double>(cur - prev) / seconds : 0;
    prev = cur;
    return r;
  };
  NodeInfo self;
  self.node = options_.node_id;
  self.ws = options_.ws;
  self.grpc = options_.grpc;
  self.admin = options_.admin;
  self.connections = c.connections;
  self.subscriptions = c.subscriptions;
  self.channels = c.channels;
  self.published = rate(c.published, last_published_);
  self.client_messages = rate(c.client_messages, last_client_messages_);
  self.frames_sent = rate(c.frames_sent, last_frames_sent_);
  self.broker_up = hub_.broker_health().ok();
  self.uptime_s = std::chrono::duration_cast<std::chrono::seconds>(now - started_).count();
  self.version = BRIDGE_VERSION;
  last_at_ = now;
  // One announce at a time: a slow broker is not handed a queue of them.
  if (shared_->in_flight.exchange(true, std::memory_order_acq_rel)) return;
  std::string info = EncodeAnnounce(self);
  broker_.AnnounceNode(options_.node_id, info, shared_->ttl,
                       [shared = shared_, self = std::move(self)](
                           absl::StatusOr<std::vector<core::NodeAnnouncement>> got) mutable {
                         shared->Update(std::move(got), std::move(self));
                       });
}

void NodeDirectory::Stop() {
  if (stopped_) return;
  stopped_ = true;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  {
    std::lock_guard lock(shared_->sink_mu);
    shared_->sink = nullptr;
  }
  // Gone from the others' lists now rather than after the ttl.
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };
  auto wait = std::make_shared<Wait>();
  broker_.WithdrawNode(options_.node_id, [wait](absl::Status) {
    std::lock_guard lock(wait->mu);
    wait->done = true;
    wait->cv.notify_all();
  });
  std::unique_lock lock(wait->mu);
  wait->cv.wait_for(lock, std::chrono::seconds(1), [&] { return wait->done; });
}

std::vector<NodeInfo> NodeDirectory::nodes() const {
  std::lock_guard lock(shared_->mu);
  return shared_->nodes;
}

uint64_t NodeDirectory::invalid() const { return shared_->invalid.load(std::memory_order_relaxed); }

}  // namespace bridge::admin
