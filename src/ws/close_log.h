// The last WebSocket closes (code, reason, time, connection), for the admin dashboard's "recent
// disconnects". Bounded: the newest kCapacity closes, each reason cut to a close frame's 123
// bytes, so a flood of disconnects costs a fixed ~10 KiB.
//
// Any thread: one short lock per close (closes are rare next to frames) and per read.
#ifndef BRIDGE_WS_CLOSE_LOG_H_
#define BRIDGE_WS_CLOSE_LOG_H_

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace bridge::ws {

class CloseLog {
 public:
  static constexpr size_t kCapacity = 50;
  struct Entry {
    uint16_t code = 0;  // sent in the close frame; 1006: the connection ended without one
    std::string reason;
    std::string connection_id;
    std::chrono::system_clock::time_point at;
  };

  // `reason` must be valid UTF-8 of at most 123 bytes (what a close frame carries).
  void Record(uint16_t code, std::string_view reason, std::string_view connection_id) {
    std::lock_guard lock(mu_);
    Entry& e = ring_[next_ % kCapacity];
    e.code = code;
    e.reason.assign(reason.substr(0, 123));
    e.connection_id.assign(connection_id.substr(0, 32));
    e.at = std::chrono::system_clock::now();
    ++next_;
  }
  // Oldest first.
  std::vector<Entry> Recent() const {
    std::lock_guard lock(mu_);
    std::vector<Entry> out;
    const uint64_t n = next_ < kCapacity ? next_ : kCapacity;
    out.reserve(n);
    for (uint64_t i = next_ - n; i < next_; ++i) out.push_back(ring_[i % kCapacity]);
    return out;
  }
  // Closes recorded since start-up.
  uint64_t total() const {
    std::lock_guard lock(mu_);
    return next_;
  }

 private:
  mutable std::mutex mu_;
  std::array<Entry, kCapacity> ring_;
  uint64_t next_ = 0;
};

}  // namespace bridge::ws

#endif  // BRIDGE_WS_CLOSE_LOG_H_
