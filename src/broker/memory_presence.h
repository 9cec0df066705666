// MemoryPresence: core::PresenceManager for one process (the process is the node, so there are no
// leases and nothing ever expires or needs restoring).
//
// Per channel: connection -> identity, and identity -> {connection count, joined_at}, where
// joined_at is the time of the identity's first connection (kept while it has any).
//
// Threading. One mutex; every method may be called from any thread. Every callback runs inline,
// before the method returns, after the lock is released. The expired and restored handlers are
// never called.
#ifndef BRIDGE_BROKER_MEMORY_PRESENCE_H_
#define BRIDGE_BROKER_MEMORY_PRESENCE_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

#include "core/presence.h"

namespace bridge::broker {

class MemoryPresence final : public core::PresenceManager {
 public:
  MemoryPresence() = default;
  ~MemoryPresence() override = default;
  MemoryPresence(const MemoryPresence&) = delete;
  MemoryPresence& operator=(const MemoryPresence&) = delete;

  void SetExpiredHandler(ExpiredHandler handler) override;
  void Join(const std::string& channel, const std::string& identity,
            const std::string& connection_id, ChangeCallback done) override;
  void Leave(const std::string& channel, const std::string& identity,
             const std::string& connection_id, ChangeCallback done) override;
  void List(const std::string& channel, ListCallback done) override;

  // Channels with at least one member (tests: a channel's state goes with its last member).
  size_t channel_count() const;

 private:
  struct Member {
    uint32_t connections = 0;
    std::chrono::system_clock::time_point joined_at;
  };
  struct Channel {
    std::unordered_map<std::string, std::string> connections;  // connection -> identity
    std::map<std::string, Member> members;                     // by identity, ascending
  };

  mutable std::mutex mu_;
  std::unordered_map<std::string, Channel> channels_;
  ExpiredHandler expired_;  // kept for the interface; never called
};

}  // namespace bridge::broker

#endif  // BRIDGE_BROKER_MEMORY_PRESENCE_H_
