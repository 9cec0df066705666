#include "test_support.h"

#include <grpcpp/grpcpp.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>
#include <cstdlib>
#include <thread>

namespace bridge::testing {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = boost::asio::ip::tcp;
namespace pb = gathering::bridge::v1;

bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

std::unique_ptr<app::BridgeServer> StartBridge(app::ServerConfig config) {
  config.host = "127.0.0.1";
  config.ws_port = 0;
  config.grpc_port = 0;
  if (config.io_threads == 0) config.io_threads = 2;
  // BRIDGE_TEST_BROKER=memory runs the same tests through the broker seam (the hub's broker
  // mode on the in-process broker): see tests/integration/CMakeLists.txt.
  if (const char* broker = std::getenv("BRIDGE_TEST_BROKER");
      broker != nullptr && config.broker.empty()) {
    config.broker = broker;
  }
  auto s = app::BridgeServer::Start(std::move(config));
  if (!s.ok()) return nullptr;
  return std::move(*s);
}

std::unique_ptr<pb::EventService::Stub> MakeStub(uint16_t grpc_port) {
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(grpc_port),
                                     grpc::InsecureChannelCredentials());
  return pb::EventService::NewStub(channel);
}

grpc::Status PublishMessage(pb::EventService::Stub& stub, const std::string& channel, int agent_id,
                            const std::string& content, pb::PublishResponse* response) {
  pb::PublishRequest req;
  req.mutable_event()->set_channel(channel);
  req.mutable_event()->mutable_agent_message()->set_agent_id(agent_id);
  req.mutable_event()->mutable_agent_message()->set_content(content);
  pb::PublishResponse local;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  return stub.Publish(&ctx, req, response != nullptr ? response : &local);
}

int HttpStatus(uint16_t port, const std::string& target, bool upgrade, std::string* body,
               const std::string& origin) {
  boost::asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  beast::error_code ec;
  stream.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port), ec);
  if (ec) return 0;
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!origin.empty()) req.set(http::field::origin, origin);
  if (upgrade) {
    req.set(http::field::upgrade, "websocket");
    req.set(http::field::connection, "Upgrade");
    req.set(http::field::sec_websocket_version, "13");
    req.set(http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
  }
  http::write(stream, req, ec);
  if (ec) return 0;
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  stream.expires_after(5s);
  bool done = false;
  http::async_read(stream, buf, res, [&](beast::error_code e, size_t) {
    ec = e;
    done = true;
  });
  ioc.run();
  if (!done || ec) return 0;
  if (body != nullptr) *body = res.body();
  return static_cast<int>(res.result_int());
}

Refusal RefuseUpgrade(uint16_t port, const std::string& target, const std::string& origin) {
  Refusal out;
  boost::asio::io_context ioc;
  websocket::stream<beast::tcp_stream> ws(ioc);
  beast::error_code ec;
  beast::get_lowest_layer(ws).connect(
      tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port), ec);
  if (ec) return out;
  if (!origin.empty()) {
    ws.set_option(websocket::stream_base::decorator(
        [origin](websocket::request_type& req) { req.set(http::field::origin, origin); }));
  }
  beast::get_lowest_layer(ws).expires_after(5s);
  websocket::response_type res;
  ws.handshake(res, "127.0.0.1:" + std::to_string(port), target, ec);
  out.http_status = static_cast<int>(res.result_int());
  if (ec) return out;
  // Beast's read answers the close and completes once the server has ended the connection.
  const auto upgraded = std::chrono::steady_clock::now();
  beast::get_lowest_layer(ws).expires_after(10s);
  beast::flat_buffer buf;
  bool done = false;
  ws.async_read(buf, [&](beast::error_code e, size_t) {
    ec = e;
    done = true;
  });
  ioc.run_for(10s);
  if (!done || ec != websocket::error::closed) return out;
  out.handshake_took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - upgraded);
  out.close_code = ws.reason().code;
  out.reason = std::string(ws.reason().reason.c_str());
  return out;
}

WsClient::WsClient() : ws_(ioc_) {}

void WsClient::Close(uint16_t code, std::chrono::milliseconds timeout) {
  bool done = false;
  ws_.async_close(websocket::close_reason(code), [&](beast::error_code) { done = true; });
  ioc_.restart();
  ioc_.run_for(timeout);
  closed_ = true;
  if (!done) timed_out_ = true;
}

WsClient::~WsClient() {
  beast::error_code ec;
  beast::get_lowest_layer(ws_).socket().close(ec);
}

std::unique_ptr<WsClient> WsClient::Connect(uint16_t port, const std::string& target,
                                            std::string* error, int receive_buffer) {
  std::unique_ptr<WsClient> c(new WsClient());
  beast::error_code ec;
  if (receive_buffer > 0) {
    auto& sock = beast::get_lowest_layer(c->ws_).socket();
    sock.open(tcp::v4(), ec);
    sock.set_option(boost::asio::socket_base::receive_buffer_size(receive_buffer), ec);
  }
  beast::get_lowest_layer(c->ws_).connect(
      tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port), ec);
  if (!ec) {
    websocket::response_type res;
    c->ws_.handshake(res, "127.0.0.1:" + std::to_string(port), target, ec);
  }
  if (ec) {
    if (error != nullptr) *error = ec.message();
    return nullptr;
  }
  return c;
}

void WsClient::Send(const std::string& text) {
  ws_.text(true);
  beast::error_code ec;
  ws_.write(boost::asio::buffer(text), ec);
}

void WsClient::SendBinary(const std::string& bytes) {
  ws_.binary(true);
  beast::error_code ec;
  ws_.write(boost::asio::buffer(bytes), ec);
  ws_.text(true);
}

std::optional<std::string> WsClient::Recv(std::chrono::milliseconds timeout) {
  if (closed_ || timed_out_) return std::nullopt;
  beast::flat_buffer buf;
  auto ec = ReadMessage(ioc_, ws_, buf, timeout);
  if (!ec) {
    timed_out_ = true;
    return std::nullopt;
  }
  if (*ec) {
    closed_ = true;
    close_code_ = ws_.reason().code;
    return std::nullopt;
  }
  return beast::buffers_to_string(buf.data());
}

boost::json::value WsClient::RecvJson(std::chrono::milliseconds timeout) {
  auto text = Recv(timeout);
  if (!text) return nullptr;
  boost::system::error_code ec;
  auto v = boost::json::parse(*text, ec);
  if (ec) return nullptr;
  return v;
}

boost::json::value WsClient::RecvEvent(std::chrono::milliseconds timeout) {
  for (;;) {
    auto v = RecvJson(timeout);
    if (!v.is_object() || v.at("type") != "ping") return v;
  }
}

int WsClient::AwaitClose(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!closed_ && !timed_out_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    Recv(left);
  }
  return close_code_;
}

}  // namespace bridge::testing
