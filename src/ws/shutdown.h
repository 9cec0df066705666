// Draining the front end at shutdown.
#ifndef BRIDGE_WS_SHUTDOWN_H_
#define BRIDGE_WS_SHUTDOWN_H_

#include <chrono>

#include "ws/server_state.h"

namespace bridge::ws {

// Any thread. Marks the server draining (healthz 503, upgrades refused) and closes every open
// WebSocket with 1001 on its own shard's thread: all at once, or spread evenly over `spread`
// so that thousands of clients do not all reconnect (elsewhere) in the same instant. Each is
// first sent every frame queued for it, then a `reconnect` frame with its resume position per
// channel (WsSession::CloseForShutdown); resuming there (?since=&epoch=) loses nothing, so
// nothing is lost by waiting its turn.
void CloseAllSessions(ServerState& state,
                      std::chrono::milliseconds spread = std::chrono::milliseconds(0));

}  // namespace bridge::ws

#endif  // BRIDGE_WS_SHUTDOWN_H_
