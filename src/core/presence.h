// The presence seam: who is in a channel, across every node on one broker (in-process:
// broker/memory_presence.h; Redis: broker/redis_presence.h). Interface only; core includes no
// implementation.
//
// Membership is counted per identity: an identity with connections on two nodes is one member
// with two connections. Join and Leave say whether membership really changed (the identity's
// first connection anywhere, its last), so the node publishes `agent_joined` / `agent_left`
// exactly once per change, whichever node the connections are on.
//
// Leases. Each node's connections are held under a lease the manager renews itself (one call per
// channel per interval, never one per connection). A node that dies stops renewing; once its
// lease has passed, a node that still has an interest in the channel (it has members there, or
// Watch was called) removes the dead node's connections atomically and reports, through the
// expired handler, each identity whose last connection went — exactly once across the cluster.
//
// Restored. When the store comes back after an outage, a node registers its connections again.
// If that makes an identity a member again (its lease passed meanwhile, so another node may have
// reported it left; or the store lost its data), the restored handler is called: publish
// `agent_joined` for it. Preferring a possibly duplicated join over a missing one.
//
// Threading. Every method may be called from any thread and returns at once; callbacks run where
// the implementation says (inline, or on its own executor), each exactly once (UNAVAILABLE or
// CANCELLED when the store is unreachable or stopped). Callbacks and the handlers must not block
// and must not call into the manager synchronously (post instead).
#ifndef BRIDGE_CORE_PRESENCE_H_
#define BRIDGE_CORE_PRESENCE_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bridge::core {

struct PresenceMember {
  std::string identity;
  uint32_t connections = 0;                         // on every node
  std::chrono::system_clock::time_point joined_at;  // the identity's first connection
};

struct PresenceSnapshot {
  std::vector<PresenceMember> members;  // by identity, ascending
  uint32_t connection_count = 0;        // sum of members' connections
};

class PresenceManager {
 public:
  // true: membership changed (the identity's first connection / its last one).
  using ChangeCallback = absl::AnyInvocable<void(absl::StatusOr<bool>)>;
  using ListCallback = absl::AnyInvocable<void(absl::StatusOr<PresenceSnapshot>)>;
  // (channel, identity): the identity's last connection was removed because its node's lease
  // passed. Called once per such identity across the cluster.
  using ExpiredHandler =
      std::function<void(const std::string& channel, const std::string& identity)>;
  // (channel, identity): re-registering this node's connections after an outage made the identity
  // a member again (see "Restored" above).
  using RestoredHandler =
      std::function<void(const std::string& channel, const std::string& identity)>;

  virtual ~PresenceManager() = default;

  // Set once, before the first Join.
  virtual void SetExpiredHandler(ExpiredHandler handler) = 0;
  // Set once, before the first Join. Default: ignored (a store that cannot lose members).
  virtual void SetRestoredHandler(RestoredHandler /*handler*/) {}

  // Adds connection `connection_id` (unique across nodes) of `identity` to `channel`.
  virtual void Join(const std::string& channel, const std::string& identity,
                    const std::string& connection_id, ChangeCallback done) = 0;
  // Removes it; `done(false)` too when it was not there.
  virtual void Leave(const std::string& channel, const std::string& identity,
                     const std::string& connection_id, ChangeCallback done) = 0;
  virtual void List(const std::string& channel, ListCallback done) = 0;

  // Interest in a channel's expiries without having members there (the node watches the channels
  // it has local subscribers in): the expired handler then fires for that channel too. A flag,
  // not a counter; Unwatch drops it (members keep their own interest). Default: nothing to watch.
  virtual void Watch(const std::string& /*channel*/) {}
  virtual void Unwatch(const std::string& /*channel*/) {}
};

}  // namespace bridge::core

#endif  // BRIDGE_CORE_PRESENCE_H_
