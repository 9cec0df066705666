// Fuzzes a real WebSocket session (ws/ws_session.h) with arbitrary client byte streams.
//
// One hub, one ServerState and one io_context live across inputs. Each input gets a loopback TCP
// pair (an acceptor on 127.0.0.1:0): the accepted socket is the session's transport, as after
// HttpSession's upgrade; the other end writes the input. The io_context runs until nothing is
// left to do (bounded), the client resets the connection, and the session must then be gone:
// a session still alive is a leak (a shared_ptr cycle or a handler that never completes), and
// ASan catches the rest.
//
// Input: [flags][split][stream...]. flags bit 0: a valid masked `{"type":"ping"}` frame goes
// first; bit 1: the first `split` bytes arrive as bytes buffered with the upgrade; bit 2: the
// session starts subscribed to circles/fuzz (with ack=1); bit 3: the stream is written in two
// writes at `split`, the io_context running in between.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/hub.h"
#include "core/metrics.h"
#include "core/namespaces.h"
#include "ws/server_state.h"
#include "ws/transport.h"
#include "ws/ws_session.h"

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

struct World {
  World()
      : hub({[this](std::function<void()> task) { asio::post(ioc, std::move(task)); }},
            bridge::core::NamespaceRegistry::Defaults(), metrics),
        state(hub, metrics, Options(), bridge::ws::AuthSettings{}, {&ioc}),
        acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    spdlog::set_level(spdlog::level::off);
  }

  static bridge::ws::WsOptions Options() {
    bridge::ws::WsOptions o;
    o.max_frame_bytes = 4096;  // reachable by -max_len=16384 inputs: 1009 is exercised
    o.heartbeat_interval = std::chrono::hours(1);
    o.idle_timeout = std::chrono::hours(2);
    o.close_timeout = 200ms;
    o.max_queue_bytes = 64 * 1024;
    return o;
  }

  asio::io_context ioc{1};
  bridge::core::Metrics metrics;
  bridge::core::Hub hub;
  bridge::ws::ServerState state;
  tcp::acceptor acceptor;
};

World& TheWorld() {
  static World* world = new World();
  return *world;
}

// Runs every ready handler until none is left (or a bound is reached).
void RunUntilIdle(asio::io_context& ioc) {
  ioc.restart();
  for (int i = 0; i < 100000 && ioc.poll() > 0; ++i) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  World& w = TheWorld();
  const uint8_t flags = data[0];
  std::string stream;
  if (flags & 1) {
    // {"type":"ping"} masked with 01 02 03 04.
    const std::string text = R"({"type":"ping"})";
    stream.push_back(static_cast<char>(0x81));
    stream.push_back(static_cast<char>(0x80 | text.size()));
    const char key[4] = {1, 2, 3, 4};
    stream.append(key, 4);
    for (size_t i = 0; i < text.size(); ++i)
      stream.push_back(static_cast<char>(text[i] ^ key[i & 3]));
  }
  stream.append(reinterpret_cast<const char*>(data) + 2, size - 2);
  const size_t split = std::min<size_t>(data[1], stream.size());

  tcp::socket client(w.ioc);
  boost::system::error_code ec;
  client.connect(w.acceptor.local_endpoint(), ec);
  if (ec) std::abort();
  tcp::socket server = w.acceptor.accept(ec);
  if (ec) std::abort();

  std::string_view buffered;
  std::string_view to_write = stream;
  if (flags & 2) {
    buffered = std::string_view(stream).substr(0, split);
    to_write = std::string_view(stream).substr(split);
  }
  bridge::ws::WsSession::InitialSubscription initial;
  if (flags & 4) {
    initial.channel = "circles/fuzz";
    initial.ack = true;
  }
  auto session = std::make_shared<bridge::ws::WsSession>(bridge::ws::Transport(std::move(server)),
                                                         buffered, w.state, w.state.options(), 0,
                                                         std::move(initial), "", "", "");
  std::weak_ptr<bridge::ws::WsSession> weak = session;
  session->Start();
  session.reset();

  // The client drains whatever the server sends, so that its writes never stall.
  auto sink = std::make_shared<std::array<char, 16384>>();
  std::function<void()> drain = [&] {
    client.async_read_some(asio::buffer(*sink), [&, sink](boost::system::error_code e, size_t) {
      if (!e) drain();
    });
  };
  drain();

  const size_t first = (flags & 8) && !(flags & 2) ? split : to_write.size();
  asio::async_write(client, asio::buffer(to_write.data(), first),
                    [](boost::system::error_code, size_t) {});
  RunUntilIdle(w.ioc);
  if (first < to_write.size()) {
    asio::async_write(client, asio::buffer(to_write.data() + first, to_write.size() - first),
                      [](boost::system::error_code, size_t) {});
    RunUntilIdle(w.ioc);
  }

  // Reset (no TIME_WAIT left behind), then the session must end within a bound.
  client.set_option(asio::socket_base::linger(true, 0), ec);
  client.close(ec);
  w.ioc.restart();
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (!weak.expired() && std::chrono::steady_clock::now() < deadline) {
    w.ioc.run_one_for(10ms);
  }
  if (!weak.expired()) std::abort();  // the session outlived its connection
  RunUntilIdle(w.ioc);
  return 0;
}
