// Hostile clients, tried through real sockets: each is answered as docs/protocol.md says and a
// healthy subscriber on the same server loses nothing.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>

#include "core/strings.h"
#include "test_support.h"

namespace bridge::testing {
namespace {

namespace pb = gathering::bridge::v1;
using tcp = boost::asio::ip::tcp;

// A healthy subscriber receives `n` events published now, in order.
void ExpectHealthyReceives(WsClient& healthy, pb::EventService::Stub& stub,
                           const std::string& channel, int n) {
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(PublishMessage(stub, channel, i + 1, "still here").ok());
  }
  for (int i = 0; i < n; ++i) {
    auto v = healthy.RecvEvent();
    // What the attacker was allowed to send before (chat, joins) may come first.
    while (v.is_object() && v.at("type") != "agent_message") v = healthy.RecvEvent();
    ASSERT_TRUE(v.is_object()) << "the healthy subscriber missed event " << i;
    ASSERT_EQ(v.at("data").at("agent_id").to_number<int>(), i + 1);
  }
}

// A raw WebSocket client that never reads: a tiny receive buffer, writes with a send timeout.
class NonReader {
 public:
  explicit NonReader(uint16_t port, const std::string& target) : socket_(ioc_) {
    socket_.open(tcp::v4());
    socket_.set_option(boost::asio::socket_base::receive_buffer_size(4096));
    socket_.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
    std::string req = core::Cat("GET ", target,
                                " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\nSec-WebSocket-Key: "
                                "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    boost::asio::write(socket_, boost::asio::buffer(req));
    boost::asio::streambuf head;
    boost::asio::read_until(socket_, head, "\r\n\r\n");
    timeval tv{1, 0};
    setsockopt(socket_.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  // Writes all of `bytes`; false once the server cut the connection or stopped taking bytes.
  bool Write(const std::string& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n =
          ::send(socket_.native_handle(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

 private:
  boost::asio::io_context ioc_;
  tcp::socket socket_;
};

// `count` masked pings with 125-byte payloads.
std::string Pings(int count) {
  std::string one;
  one.push_back(static_cast<char>(0x89));
  one.push_back(static_cast<char>(0x80 | 125));
  one.append("\x11\x22\x33\x44", 4);
  one.append(125, 'p');
  std::string out;
  for (int i = 0; i < count; ++i) out += one;
  return out;
}

TEST(HostileTest, PingFloodFromAClientThatNeverReadsIsClosedAndCostsNothing) {
  app::ServerConfig cfg;
  cfg.ws.close_timeout = 500ms;
  auto server = StartBridge(cfg);
  ASSERT_NE(server, nullptr);
  auto healthy = WsClient::Connect(server->ws_port(), "/ws/circles/room?ack=1");
  ASSERT_TRUE(healthy);
  ASSERT_EQ(healthy->RecvJson().at("type"), "subscribed");

  NonReader flood(server->ws_port(), "/ws/circles/room");
  const std::string batch = Pings(200);
  int sent = 0;
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (sent < 240000 && std::chrono::steady_clock::now() < deadline && flood.Write(batch)) {
    sent += 200;
  }
  // The server may read (and drop) what follows its close until it cuts the connection.
  EXPECT_TRUE(
      WaitFor([&] { return server->metrics().slow_consumer_closes_total.load() == 1; }, 10s))
      << "the ping flooder was not closed as a slow consumer";
  EXPECT_TRUE(WaitFor([&] { return server->metrics().connections_current.load() == 1; }, 10s))
      << "the ping flooder's session was not released";
  auto stub = MakeStub(server->grpc_port());
  ExpectHealthyReceives(*healthy, *stub, "circles/room", 20);
  EXPECT_LE(server->metrics().queued_bytes_current.load(), 64 * 1024);
}

TEST(HostileTest, ClientMessagesOverTheRateGetOneErrorThen4008EvenWithAcceptedOnesBetween) {
  app::ServerConfig cfg;
  cfg.ws.client_message_rate = 10;
  cfg.ws.client_message_burst = 20;
  auto server = StartBridge(cfg);
  ASSERT_NE(server, nullptr);
  auto healthy = WsClient::Connect(server->ws_port(), "/ws/circles/room?ack=1");
  auto flooder = WsClient::Connect(server->ws_port(), "/ws/circles/room?ack=1");
  ASSERT_TRUE(healthy && flooder);
  ASSERT_EQ(healthy->RecvJson().at("type"), "subscribed");
  ASSERT_EQ(flooder->RecvJson().at("type"), "subscribed");
  // 20x the rate for up to three seconds: some messages are accepted all along (one token every
  // 100 ms), which used to reset the count and keep the flooder open forever.
  for (int i = 0; i < 600; ++i) {
    flooder->Send(R"({"type":"chat","n":1})");
    std::this_thread::sleep_for(5ms);  // pacing the flood, not synchronisation
  }
  int errors = 0;
  for (;;) {
    auto v = flooder->RecvJson();
    if (!v.is_object()) break;
    if (v.at("type") == "error") {
      EXPECT_EQ(v.at("data").at("code"), "rate_limited");
      ++errors;
    }
  }
  EXPECT_EQ(errors, 1) << "one error frame per burst of refusals";
  EXPECT_EQ(flooder->close_code(), 4008);
  EXPECT_GE(server->metrics().rate_limited_total.load(), 21u);
  auto stub = MakeStub(server->grpc_port());
  ExpectHealthyReceives(*healthy, *stub, "circles/room", 10);
}

TEST(HostileTest, EachAcceptedMessageTakesOneToken) {
  app::ServerConfig cfg;
  cfg.ws.client_message_rate = 0.5;  // nothing refills during the test
  cfg.ws.client_message_burst = 10;
  auto server = StartBridge(cfg);
  ASSERT_NE(server, nullptr);
  auto reader = WsClient::Connect(server->ws_port(), "/ws/circles/room?ack=1");
  auto sender = WsClient::Connect(server->ws_port(), "/ws/circles/room?ack=1");
  ASSERT_TRUE(reader && sender);
  ASSERT_EQ(reader->RecvJson().at("type"), "subscribed");
  ASSERT_EQ(sender->RecvJson().at("type"), "subscribed");
  for (int i = 1; i <= 10; ++i) sender->Send(core::Cat(R"({"type":"chat","n":)", i, "}"));
  for (int i = 1; i <= 10; ++i) {
    auto v = reader->RecvEvent();
    ASSERT_TRUE(v.is_object()) << "message " << i << " of the burst was refused";
    EXPECT_EQ(v.at("n"), i);
  }
  EXPECT_EQ(server->metrics().rate_limited_total.load(), 0u);
}

TEST(HostileTest, SubscribeFloodIsRateLimitedAndLeavesNoChannelsBehind) {
  auto server = StartBridge();
  ASSERT_NE(server, nullptr);
  auto healthy = WsClient::Connect(server->ws_port(), "/ws/circles/room?ack=1");
  auto flooder = WsClient::Connect(server->ws_port(), "/ws");
  ASSERT_TRUE(healthy && flooder);
  ASSERT_EQ(healthy->RecvJson().at("type"), "subscribed");
  for (int i = 0; i < 200; ++i) {
    std::string ch = core::Cat("workspace/invented-", i);
    flooder->Send(core::Cat(R"({"type":"subscribe","channel":")", ch, R"("})"));
    flooder->Send(core::Cat(R"({"type":"unsubscribe","channel":")", ch, R"("})"));
  }
  int limited = 0;
  for (;;) {
    auto v = flooder->RecvJson();
    if (!v.is_object()) break;
    if (v.at("type") == "error" && v.at("data").at("code") == "rate_limited") ++limited;
  }
  EXPECT_EQ(limited, 1);
  EXPECT_EQ(flooder->close_code(), 4008);
  // At most the admitted burst of channels was ever created.
  EXPECT_LE(server->metrics().channels_current.load(), 130);
  auto stub = MakeStub(server->grpc_port());
  ExpectHealthyReceives(*healthy, *stub, "circles/room", 10);
}

TEST(HostileTest, IdleHttpConnectionsCountAgainstTheConnectionLimit) {
  app::ServerConfig cfg;
  cfg.ws.max_connections = 3;
  auto server = StartBridge(cfg);
  ASSERT_NE(server, nullptr);
  auto healthy = WsClient::Connect(server->ws_port(), "/ws/circles/room?ack=1");
  ASSERT_TRUE(healthy);
  ASSERT_EQ(healthy->RecvJson().at("type"), "subscribed");
  // Two connections that never finish a request (or sit in keep-alive) hold the other slots.
  boost::asio::io_context ioc;
  std::vector<std::unique_ptr<tcp::socket>> idle;
  for (int i = 0; i < 2; ++i) {
    idle.push_back(std::make_unique<tcp::socket>(ioc));
    idle.back()->connect(
        tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), server->ws_port()));
  }
  ASSERT_TRUE(WaitFor([&] { return server->metrics().http_connections_current.load() == 2; }))
      << "idle HTTP connections are not counted";
  EXPECT_EQ(HttpStatus(server->ws_port(), "/healthz"), 503);
  // A WebSocket upgrade is read (the head, through a fixed 256-byte buffer) and refused after
  // its 101, so that browsers see why; plain HTTP keeps the 503.
  Refusal full = RefuseUpgrade(server->ws_port(), "/ws/circles/room");
  EXPECT_EQ(full.http_status, 101);
  EXPECT_EQ(full.close_code, 4503);
  EXPECT_EQ(full.reason, "too many connections");
  EXPECT_GE(server->metrics().http_connections_rejected_total.load(), 2u);
  idle.clear();  // closing them frees the slots
  ASSERT_TRUE(WaitFor([&] { return server->metrics().http_connections_current.load() == 0; }));
  EXPECT_EQ(HttpStatus(server->ws_port(), "/healthz"), 200);
  auto stub = MakeStub(server->grpc_port());
  ExpectHealthyReceives(*healthy, *stub, "circles/room", 5);
}

TEST(HostileTest, AnIdentityThatIsNotUtf8IsRefusedBeforeAnyoneSeesIt) {
  auto server = StartBridge();
  ASSERT_NE(server, nullptr);
  auto healthy = WsClient::Connect(server->ws_port(), "/ws/circles/room?ack=1&client=ann");
  ASSERT_TRUE(healthy);
  ASSERT_EQ(healthy->RecvJson().at("type"), "subscribed");
  ASSERT_EQ(healthy->RecvEvent().at("type"), "agent_joined");  // its own
  for (const char* bad : {"%C0%AF", "%ED%A0%80", "%F4%90%80%80", "ok%E2%82"}) {
    EXPECT_EQ(RefusalCode(server->ws_port(), core::Cat("/ws/circles/room?client=", bad)), 4400)
        << bad;
  }
  Refusal long_id =
      RefuseUpgrade(server->ws_port(), "/ws/circles/room?client=" + std::string(129, 'a'));
  EXPECT_EQ(long_id.close_code, 4400);
  EXPECT_EQ(long_id.reason, "client is longer than 128 bytes");
  EXPECT_EQ(server->metrics().identity_rejected_total.load(), 5u);
  // A valid multi-byte identity is fine, and the first thing the healthy client sees is it.
  auto ok = WsClient::Connect(server->ws_port(), "/ws/circles/room?client=%C3%A9l%C3%A8ve");
  ASSERT_TRUE(ok);
  auto joined = healthy->RecvEvent();
  ASSERT_EQ(joined.at("type"), "agent_joined");
  EXPECT_EQ(joined.at("data").at("identity"), "\xc3\xa9l\xc3\xa8ve");
  auto stub = MakeStub(server->grpc_port());
  ExpectHealthyReceives(*healthy, *stub, "circles/room", 5);
}

}  // namespace
}  // namespace bridge::testing
