// Draining the front end at shutdown.
#ifndef BRIDGE_WS_SHUTDOWN_H_
#define BRIDGE_WS_SHUTDOWN_H_

#include "ws/server_state.h"

namespace bridge::ws {

// Any thread. Marks the server draining (healthz 503, upgrades refused) and closes every open
// WebSocket with 1001 on its own shard's thread.
void CloseAllSessions(ServerState& state);

}  // namespace bridge::ws

#endif  // BRIDGE_WS_SHUTDOWN_H_
