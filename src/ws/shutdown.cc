#include "ws/shutdown.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <vector>

#include "ws/ws_session.h"

namespace bridge::ws {
namespace {

// One shard's sessions, closed in `steps` slices at even intervals of the spread.
struct Drain : std::enable_shared_from_this<Drain> {
  Drain(boost::asio::io_context& ioc, std::vector<std::shared_ptr<WsSession>> s,
        std::chrono::milliseconds spread)
      : timer(ioc), sessions(std::move(s)), start(std::chrono::steady_clock::now()) {
    steps = std::min<size_t>(sessions.size(), kMaxSteps);
    interval = steps > 1 ? spread / static_cast<int64_t>(steps) : spread;
  }

  void Step() {
    const size_t n = sessions.size();
    const size_t from = n * done / steps;
    const size_t to = n * (done + 1) / steps;
    for (size_t i = from; i < to; ++i) {
      sessions[i]->CloseForShutdown();
      sessions[i].reset();  // a closed session is not kept alive by the drain
    }
    if (++done >= steps) return;
    timer.expires_at(start + interval * done);
    timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->Step();
    });
  }

  static constexpr size_t kMaxSteps = 100;  // at most one timer tick per 1% of the window
  boost::asio::steady_timer timer;
  std::vector<std::shared_ptr<WsSession>> sessions;
  std::chrono::steady_clock::time_point start;
  size_t steps = 0;
  size_t done = 0;
  std::chrono::steady_clock::duration interval{};
};

}  // namespace

void CloseAllSessions(ServerState& state, std::chrono::milliseconds spread) {
  state.draining.store(true);
  for (size_t i = 0; i < state.shards.size(); ++i) {
    boost::asio::post(*state.shards[i], [&state, i, spread] {
      // Closing may not remove from the registry synchronously, but copy to be safe.
      std::vector<std::shared_ptr<WsSession>> sessions;
      for (WsSession* s : state.registries[i]) sessions.push_back(s->shared_from_this());
      if (spread.count() <= 0 || sessions.size() <= 1) {
        for (auto& s : sessions) s->CloseForShutdown();
        return;
      }
      std::make_shared<Drain>(*state.shards[i], std::move(sessions), spread)->Step();
    });
  }
}

}  // namespace bridge::ws
