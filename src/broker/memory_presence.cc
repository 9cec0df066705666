#include "broker/memory_presence.h"

#include <utility>

namespace bridge::broker {

void MemoryPresence::SetExpiredHandler(ExpiredHandler handler) {
  std::lock_guard lock(mu_);
  expired_ = std::move(handler);
}

void MemoryPresence::Join(const std::string& channel, const std::string& identity,
                          const std::string& connection_id, ChangeCallback done) {
  bool changed = false;
  {
    std::lock_guard lock(mu_);
    Channel& ch = channels_[channel];
    if (ch.connections.try_emplace(connection_id, identity).second) {
      Member& m = ch.members[identity];
      if (m.connections++ == 0) {
        m.joined_at = std::chrono::system_clock::now();
        changed = true;
      }
    }
  }
  done(changed);
}

void MemoryPresence::Leave(const std::string& channel, const std::string& /*identity*/,
                           const std::string& connection_id, ChangeCallback done) {
  bool changed = false;
  {
    std::lock_guard lock(mu_);
    auto ch = channels_.find(channel);
    if (ch != channels_.end()) {
      auto conn = ch->second.connections.find(connection_id);
      if (conn != ch->second.connections.end()) {
        // The identity the connection joined with, whatever the caller says now.
        auto m = ch->second.members.find(conn->second);
        ch->second.connections.erase(conn);
        if (m != ch->second.members.end() && --m->second.connections == 0) {
          ch->second.members.erase(m);
          changed = true;
        }
        if (ch->second.connections.empty()) channels_.erase(ch);
      }
    }
  }
  done(changed);
}

void MemoryPresence::List(const std::string& channel, ListCallback done) {
  core::PresenceSnapshot out;
  {
    std::lock_guard lock(mu_);
    auto ch = channels_.find(channel);
    if (ch != channels_.end()) {
      out.members.reserve(ch->second.members.size());
      for (const auto& [identity, m] : ch->second.members) {
        out.members.push_back(core::PresenceMember{identity, m.connections, m.joined_at});
        out.connection_count += m.connections;
      }
    }
  }
  done(std::move(out));
}

size_t MemoryPresence::channel_count() const {
  std::lock_guard lock(mu_);
  return channels_.size();
}

}  // namespace bridge::broker
