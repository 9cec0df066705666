// Limits: oversized frames, slow consumers, connection caps, silent clients. Each is answered
// and costs nothing to a well-behaved client on the same server.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "core/namespaces.h"
#include "core/strings.h"
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

// A namespace's client message limits: a size under the global frame limit and a rate of its own,
// each refused with an error frame while the connection and everyone else carry on.
app::ServerConfig ChatNamespace(size_t max_message_bytes, double rate, double burst) {
  core::NamespaceConfig chat;
  chat.name = "chat";
  chat.client_broadcast = true;
  chat.max_message_bytes = max_message_bytes;
  chat.client_message_rate = rate;
  chat.client_message_burst = burst;
  core::NamespaceConfig circles;
  circles.name = "circles";
  circles.client_broadcast = true;
  auto r = core::NamespaceRegistry::FromList({chat, circles});
  EXPECT_TRUE(r.ok()) << r.status();
  app::ServerConfig cfg;
  cfg.namespaces = *r;
  return cfg;
}

uint64_t LimitHits(app::BridgeServer& s, core::Limit l) {
  return s.metrics().limit_hits[static_cast<size_t>(l)].load();
}

TEST(LimitsTest, MessageOverItsNamespacesLimitIsRefusedAndTheConnectionStays) {
  auto server = StartBridge(ChatNamespace(200, 0, 0));
  ASSERT_NE(server, nullptr);
  auto a = WsClient::Connect(server->ws_port(), "/ws/chat/x?ack=1&client=a");
  auto b = WsClient::Connect(server->ws_port(), "/ws/chat/x?ack=1&client=b");
  ASSERT_TRUE(a && b);
  ASSERT_EQ(a->RecvJson().at("type"), "subscribed");
  ASSERT_EQ(b->RecvJson().at("type"), "subscribed");
  const std::string pad(300, 'x');
  a->Send(R"({"type":"chat","id":"big","pad":")" + pad + R"("})");
  auto e = a->RecvEvent();
  ASSERT_EQ(e.at("type"), "error") << e;
  EXPECT_EQ(e.at("id"), "big");
  EXPECT_EQ(e.at("data").at("code"), "message_too_big");
  EXPECT_EQ(LimitHits(*server, core::Limit::kNamespaceMessageBytes), 1u);
  // Exactly at the limit passes; b's next frame is that one, not the refused one.
  std::string fits = R"({"type":"chat","id":"ok","pad":""})";
  const size_t pad_bytes = 200 - fits.size();
  fits.insert(fits.size() - 2, std::string(pad_bytes, 'y'));
  ASSERT_EQ(fits.size(), 200u);
  a->Send(fits);
  EXPECT_EQ(a->RecvEvent().at("type"), "ack");
  auto got = b->RecvEvent();
  EXPECT_EQ(got.at("type"), "chat") << got;
  EXPECT_EQ(got.at("pad").as_string().size(), pad_bytes) << got;
  // Other namespaces keep the global limit only.
  a->Send(R"({"type":"subscribe","channel":"circles/x"})");
  ASSERT_EQ(a->RecvEvent().at("type"), "subscribed");
  a->Send(R"({"type":"chat","id":"elsewhere","channel":"circles/x","pad":")" + pad + R"("})");
  EXPECT_EQ(a->RecvEvent().at("type"), "ack");
  EXPECT_EQ(LimitHits(*server, core::Limit::kNamespaceMessageBytes), 1u);
}

TEST(LimitsTest, NamespaceMessageRateHasItsOwnBucket) {
  // 0.5/s: the bucket does not refill measurably while the test runs.
  auto server = StartBridge(ChatNamespace(0, 0.5, 3));
  ASSERT_NE(server, nullptr);
  auto a = WsClient::Connect(server->ws_port(), "/ws/chat/x?ack=1&client=a");
  ASSERT_TRUE(a);
  ASSERT_EQ(a->RecvJson().at("type"), "subscribed");
  a->Send(R"({"type":"subscribe","channel":"circles/x"})");
  ASSERT_EQ(a->RecvEvent().at("type"), "subscribed");
  for (int i = 0; i < 3; ++i) {
    a->Send(core::Cat(R"({"type":"chat","channel":"chat/x","id":)", i, "}"));
    auto ack = a->RecvEvent();
    ASSERT_EQ(ack.at("type"), "ack") << i << ": " << ack;
  }
  a->Send(R"({"type":"chat","channel":"chat/x","id":3})");
  auto e = a->RecvEvent();
  ASSERT_EQ(e.at("type"), "error") << e;
  EXPECT_EQ(e.at("data").at("code"), "rate_limited");
  EXPECT_NE(std::string(e.at("data").at("message").as_string()).find("on this namespace"),
            std::string::npos)
      << e;
  EXPECT_EQ(LimitHits(*server, core::Limit::kNamespaceMessageRate), 1u);
  EXPECT_EQ(LimitHits(*server, core::Limit::kClientMessageRate), 0u);
  // Another namespace's messages are not in that bucket.
  a->Send(R"({"type":"chat","channel":"circles/x","id":4})");
  EXPECT_EQ(a->RecvEvent().at("type"), "ack");
  // A long burst of refusals (more than the namespace's burst) closes 4008 as the global one does.
  for (int i = 0; i < 4; ++i) a->Send(R"({"type":"chat","channel":"chat/x"})");
  EXPECT_EQ(a->AwaitClose(), 4008);
}

}  // namespace
}  // namespace bridge::testing
