#include "ws/shutdown.h"

#include <boost/asio/post.hpp>
#include <memory>
#include <vector>

#include "ws/ws_session.h"

namespace bridge::ws {

void CloseAllSessions(ServerState& state) {
  state.draining.store(true);
  for (size_t i = 0; i < state.shards.size(); ++i) {
    boost::asio::post(*state.shards[i], [&state, i] {
      // Closing may not remove from the registry synchronously, but copy to be safe.
      std::vector<std::shared_ptr<WsSession>> sessions;
      for (WsSession* s : state.registries[i]) sessions.push_back(s->shared_from_this());
      for (auto& s : sessions) s->Close(1001, "server shutting down");
    });
  }
}

}  // namespace bridge::ws
