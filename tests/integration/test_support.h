// Real-socket helpers for integration tests: an in-process bridge on free loopback ports, a
// Beast WebSocket client with bounded waits, a gRPC stub, and a bounded condition wait.
#ifndef BRIDGE_TESTS_INTEGRATION_TEST_SUPPORT_H_
#define BRIDGE_TESTS_INTEGRATION_TEST_SUPPORT_H_

#include <boost/asio/io_context.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "app/bridge_server.h"
#include "gathering/bridge/v1/events.grpc.pb.h"

namespace bridge::testing {

using namespace std::chrono_literals;

// Polls `pred` until it holds or `timeout` passes; false on timeout.
bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 5s);

// A bridge on 127.0.0.1 with ports picked by the kernel.
std::unique_ptr<app::BridgeServer> StartBridge(app::ServerConfig config = {});

std::unique_ptr<gathering::bridge::v1::EventService::Stub> MakeStub(uint16_t grpc_port);

// Publishes an agent_message; returns the gRPC status.
grpc::Status PublishMessage(gathering::bridge::v1::EventService::Stub& stub,
                            const std::string& channel, int agent_id, const std::string& content,
                            gathering::bridge::v1::PublishResponse* response = nullptr);

// Sends one HTTP/1.1 request (optionally a WebSocket upgrade) and returns the status code, or 0
// when the connection failed.
int HttpStatus(uint16_t port, const std::string& target, bool upgrade = false,
               std::string* body = nullptr, const std::string& origin = "");
inline int HttpStatusWithOrigin(uint16_t port, const std::string& target,
                                const std::string& origin) {
  return HttpStatus(port, target, true, nullptr, origin);
}

// How the bridge refused a WebSocket upgrade of `target`: `http_status` when it did not upgrade
// (0: no answer), else 101 and the close frame it sent right after (`close_code` 0: none within
// 5 s, or the connection stayed open). `handshake_took`: from the 101 until the bridge ended
// the TCP connection after Beast answered its close (the close handshake, which a server that
// waits for --close_timeout would stretch to 5 s).
struct Refusal {
  int http_status = 0;
  int close_code = 0;
  std::string reason;
  std::chrono::milliseconds handshake_took{0};
};
Refusal RefuseUpgrade(uint16_t port, const std::string& target, const std::string& origin = "");
// The close code after the 101, or the HTTP status when there was no upgrade.
inline int RefusalCode(uint16_t port, const std::string& target, const std::string& origin = "") {
  Refusal r = RefuseUpgrade(port, target, origin);
  return r.http_status == 101 ? r.close_code : r.http_status;
}

// Reads one WebSocket message from `ws` into `buf`, running `ioc` for at most `timeout`:
// nullopt when it timed out (the socket is then closed), else the read's result.
template <class WebSocket>
std::optional<boost::beast::error_code> ReadMessage(boost::asio::io_context& ioc, WebSocket& ws,
                                                    boost::beast::flat_buffer& buf,
                                                    std::chrono::milliseconds timeout) {
  boost::beast::error_code ec;
  bool done = false;
  ws.async_read(buf, [&](boost::beast::error_code e, size_t) {
    ec = e;
    done = true;
  });
  ioc.restart();
  ioc.run_for(timeout);
  if (done) return ec;
  boost::beast::get_lowest_layer(ws).close();
  ioc.restart();
  ioc.run();  // the read completes, aborted
  return std::nullopt;
}

class WsClient {
 public:
  // Connects and upgrades; nullptr (and `error`) when refused.
  // `receive_buffer` > 0 shrinks the socket's kernel receive buffer (stalled-reader tests).
  static std::unique_ptr<WsClient> Connect(uint16_t port, const std::string& target,
                                           std::string* error = nullptr, int receive_buffer = 0);
  ~WsClient();

  void Send(const std::string& text);
  void SendBinary(const std::string& bytes);
  // The next text frame; nullopt when the connection closed or `timeout` passed (then closed()
  // or timed_out() says which).
  std::optional<std::string> Recv(std::chrono::milliseconds timeout = 5s);
  // The next frame parsed as JSON; a null value on close/timeout/parse failure.
  boost::json::value RecvJson(std::chrono::milliseconds timeout = 5s);
  // The next frame whose type is not "ping" (server heartbeats).
  boost::json::value RecvEvent(std::chrono::milliseconds timeout = 5s);
  // Reads until the server closes; returns its close code (0 when none arrived in time).
  int AwaitClose(std::chrono::milliseconds timeout = 5s);
  // The client's close handshake with `code`, bounded by `timeout` (the destructor just cuts the
  // socket).
  void Close(uint16_t code = 1000, std::chrono::milliseconds timeout = 5s);

  bool closed() const { return closed_; }
  bool timed_out() const { return timed_out_; }
  int close_code() const { return close_code_; }

 private:
  WsClient();
  boost::asio::io_context ioc_;
  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  bool closed_ = false;
  bool timed_out_ = false;
  int close_code_ = 0;
};

}  // namespace bridge::testing

#endif  // BRIDGE_TESTS_INTEGRATION_TEST_SUPPORT_H_
