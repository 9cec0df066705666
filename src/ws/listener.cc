#include "ws/listener.h"

#include <spdlog/spdlog.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include "core/log.h"
#include "core/strings.h"
#include "ws/http_session.h"

namespace bridge::ws {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

Listener::Listener(ServerState& state)
    : state_(state), acceptor_(*state.shards[0]), retry_timer_(*state.shards[0]) {}

absl::StatusOr<std::shared_ptr<Listener>> Listener::Create(ServerState& state,
                                                           tcp::endpoint endpoint) {
  std::shared_ptr<Listener> l(new Listener(state));
  boost::system::error_code ec;
  l->acceptor_.open(endpoint.protocol(), ec);
  if (!ec) l->acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) l->acceptor_.bind(endpoint, ec);
  if (!ec) l->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(core::Cat("cannot listen on ", endpoint.address().to_string(),
                                            ":", endpoint.port(), ": ", ec.message()));
  }
  l->port_ = l->acceptor_.local_endpoint().port();
  return l;
}

void Listener::Run() {
  asio::dispatch(acceptor_.get_executor(), [self = shared_from_this()] { self->DoAccept(); });
}

void Listener::Stop() {
  asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
    boost::system::error_code ec;
    self->acceptor_.close(ec);
    self->retry_timer_.cancel();
  });
}

void Listener::DoAccept() {
  size_t shard = next_shard_;
  next_shard_ = (next_shard_ + 1) % state_.shards.size();
  acceptor_.async_accept(
      *state_.shards[shard],
      [self = shared_from_this(), shard](boost::system::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !self->acceptor_.is_open()) return;
        if (ec) {
          // EMFILE and friends: back off briefly instead of spinning on the error.
          core::log::WriteLimited(spdlog::level::warn, "accept_failed",
                                  "accept failed; retrying in 100 ms", {{"error", ec.message()}});
          self->retry_timer_.expires_after(std::chrono::milliseconds(100));
          self->retry_timer_.async_wait([self](boost::system::error_code e) {
            if (!e) self->DoAccept();
          });
          return;
        } else {
          socket.set_option(tcp::no_delay(true), ec);
          auto session = std::make_shared<HttpSession>(std::move(socket), self->state_, shard);
          asio::dispatch(*self->state_.shards[shard], [session] { session->Run(); });
        }
        self->DoAccept();
      });
}

}  // namespace bridge::ws
