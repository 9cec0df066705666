// Limits: oversized frames, slow consumers, connection caps, silent clients. Each is answered
// and costs nothing to a well-behaved client on the same server.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "test_support.h"

namespace bridge::testing {
namespace {

namespace pb = gathering::bridge::v1;

TEST(LimitsTest, OversizedFrameClosesWith1009AndOthersCarryOn) {
  app::ServerConfig cfg;
  cfg.ws.max_frame_bytes = 1024;
  auto server = StartBridge(cfg);
  ASSERT_NE(server, nullptr);
  auto bad = WsClient::Connect(server->ws_port(), "/ws/circles/a");
  auto good = WsClient::Connect(server->ws_port(), "/ws/circles/a?ack=1");
  ASSERT_TRUE(bad && good);
  good->RecvJson();
  bad->Send(R"({"type":"m","pad":")" + std::string(2000, 'x') + R"("})");
  EXPECT_EQ(bad->AwaitClose(), 1009);
  EXPECT_EQ(server->metrics().frame_too_big_total.load(), 1u);
  auto stub = MakeStub(server->grpc_port());
  ASSERT_TRUE(PublishMessage(*stub, "circles/a", 1, "still here").ok());
  EXPECT_EQ(good->RecvEvent().at("data").at("content"), "still here");
}

TEST(LimitsTest, StalledReaderIsClosedAndDoesNotDelayOthers) {
  app::ServerConfig cfg;
  // Room for the healthy reader to fall behind on a busy machine; the stalled one still overflows
  // (12 MB published against 2 MB of queue and a few MB of kernel buffers).
  cfg.ws.max_queue_bytes = 2 * 1024 * 1024;
  cfg.ws.close_timeout = 500ms;
  auto server = StartBridge(cfg);
  ASSERT_NE(server, nullptr);
  auto stalled = WsClient::Connect(server->ws_port(), "/ws/circles/load?ack=1", nullptr, 4096);
  auto healthy = WsClient::Connect(server->ws_port(), "/ws/circles/load?ack=1");
  ASSERT_TRUE(stalled && healthy);
  ASSERT_EQ(stalled->RecvJson().at("type"), "subscribed");
  ASSERT_EQ(healthy->RecvJson().at("type"), "subscribed");

  constexpr int kEvents = 3000;
  std::atomic<int> received{0};
  std::atomic<bool> in_order{true};
  std::thread reader([&] {
    for (int i = 1; i <= kEvents; ++i) {
      auto v = healthy->RecvEvent(10s);
      if (!v.is_object() || !v.as_object().contains("offset")) return;
      if (v.at("offset").to_number<int>() != i) in_order = false;
      received = i;
    }
  });
  auto stub = MakeStub(server->grpc_port());
  std::string pad(4096, 'p');
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_TRUE(PublishMessage(*stub, "circles/load", i, pad).ok());
  }
  reader.join();
  EXPECT_EQ(received.load(), kEvents) << "the healthy reader missed events";
  EXPECT_TRUE(in_order.load());
  EXPECT_TRUE(WaitFor([&] { return server->metrics().slow_consumer_closes_total.load() == 1; }))
      << "stalled reader not closed as a slow consumer";
  EXPECT_TRUE(WaitFor([&] { return server->metrics().connections_current.load() == 1; }))
      << "stalled reader's session not released";
  EXPECT_LE(server->metrics().queued_bytes_current.load(), 2 * 1024 * 1024);
}

TEST(LimitsTest, ConnectionCapAnswers4503AfterTheUpgradeAnd503ToPlainHttp) {
  app::ServerConfig cfg;
  cfg.ws.max_connections = 2;
  auto server = StartBridge(cfg);
  ASSERT_NE(server, nullptr);
  auto a = WsClient::Connect(server->ws_port(), "/ws/circles/a?ack=1");
  auto b = WsClient::Connect(server->ws_port(), "/ws/circles/a?ack=1");
  ASSERT_TRUE(a && b);
  a->RecvJson();
  b->RecvJson();
  EXPECT_EQ(RefusalCode(server->ws_port(), "/ws/circles/a"), 4503);
  EXPECT_EQ(HttpStatus(server->ws_port(), "/healthz"), 503);
  EXPECT_EQ(server->metrics().connections_rejected_total.load(), 2u);
  a.reset();
  EXPECT_TRUE(WaitFor([&] { return server->metrics().connections_current.load() == 1; }));
  EXPECT_NE(WsClient::Connect(server->ws_port(), "/ws/circles/a"), nullptr);
}

TEST(LimitsTest, SilentConnectionIsClosedAfterIdleTimeout) {
  app::ServerConfig cfg;
  cfg.ws.idle_timeout = 300ms;
  cfg.ws.close_timeout = 300ms;
  auto server = StartBridge(cfg);
  ASSERT_NE(server, nullptr);
  // This client never reads, so it never answers the server's WebSocket pings.
  auto silent = WsClient::Connect(server->ws_port(), "/ws/circles/quiet");
  ASSERT_NE(silent, nullptr);
  EXPECT_TRUE(WaitFor([&] { return server->metrics().idle_timeouts_total.load() == 1; }, 10s))
      << "silent connection was not closed";
  EXPECT_TRUE(WaitFor([&] { return server->metrics().connections_current.load() == 0; }));
}

TEST(LimitsTest, SlowHttpClientIsDroppedAtTheHandshakeDeadline) {
  app::ServerConfig cfg;
  cfg.ws.handshake_timeout = 200ms;
  auto server = StartBridge(cfg);
  ASSERT_NE(server, nullptr);
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::socket sock(ioc);
  sock.connect({boost::asio::ip::make_address("127.0.0.1"), server->ws_port()});
  std::string partial = "GET /ws/circles/a HTTP/1.1\r\nHost: x\r\n";  // never finished
  boost::asio::write(sock, boost::asio::buffer(partial));
  char buf[16];
  boost::system::error_code ec;
  sock.read_some(boost::asio::buffer(buf), ec);  // returns when the server drops us
  EXPECT_TRUE(ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset)
      << ec.message();
}

}  // namespace
}  // namespace bridge::testing
