// Accepts TCP connections and spreads them round-robin over the io threads' shards.
//
// Owns itself while accepting; Stop() (any thread) closes the acceptor.
#ifndef BRIDGE_WS_LISTENER_H_
#define BRIDGE_WS_LISTENER_H_

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>

#include "absl/status/statusor.h"
#include "ws/server_state.h"

namespace bridge::ws {

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  // Binds `endpoint` (port 0 picks one) on the first shard's context.
  static absl::StatusOr<std::shared_ptr<Listener>> Create(ServerState& state,
                                                          boost::asio::ip::tcp::endpoint endpoint);
  uint16_t port() const { return port_; }
  void Run();
  void Stop();

 private:
  explicit Listener(ServerState& state);
  void DoAccept();

  ServerState& state_;
  boost::asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  size_t next_shard_ = 0;
  boost::asio::steady_timer retry_timer_;
};

}  // namespace bridge::ws

#endif  // BRIDGE_WS_LISTENER_H_
