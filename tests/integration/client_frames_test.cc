// What WebSocket clients send: control frames, messages broadcast to the channel, bad input.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "test_support.h"

namespace bridge::testing {
namespace {

class ClientFramesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = StartBridge();
    ASSERT_NE(server_, nullptr);
  }
  std::unique_ptr<WsClient> Join(const std::string& channel) {
    auto c = WsClient::Connect(server_->ws_port(), "/ws/" + channel + "?ack=1");
    EXPECT_NE(c, nullptr);
    if (c != nullptr) {
      EXPECT_EQ(c->RecvJson().at("type"), "subscribed");
    }
    return c;
  }
  std::unique_ptr<app::BridgeServer> server_;
};

TEST_F(ClientFramesTest, PingIsAnsweredPong) {
  auto c = Join("circles/a");
  c->Send(R"({"type":"ping"})");
  EXPECT_EQ(c->RecvJson(), boost::json::parse(R"({"type":"pong"})"));
}

TEST_F(ClientFramesTest, MessageIsBroadcastToOthersWithFieldsUnchanged) {
  auto a = Join("circles/dev-team");
  auto b = Join("circles/dev-team");
  auto c = Join("circles/dev-team");
  a->Send(R"({"type":"message","content":"Hello","n":[1,2]})");
  for (auto* other : {b.get(), c.get()}) {
    auto v = other->RecvEvent();
    ASSERT_TRUE(v.is_object());
    EXPECT_EQ(v.at("type"), "message");
    EXPECT_EQ(v.at("content"), "Hello");
    EXPECT_EQ(v.at("n"), boost::json::parse("[1,2]"));
    EXPECT_EQ(v.at("channel"), "circles/dev-team");
    EXPECT_EQ(v.at("offset"), 1);
    EXPECT_TRUE(v.at("sender").is_string());
  }
  // The sender does not get its own message back: its next frame is the pong.
  a->Send(R"({"type":"ping"})");
  EXPECT_EQ(a->RecvEvent().at("type"), "pong");
}

TEST_F(ClientFramesTest, WorkspaceDoesNotBroadcastClientFrames) {
  auto a = Join("workspace/1");
  auto b = Join("workspace/1");
  a->Send(R"({"type":"message","content":"Hello"})");
  b->Send(R"({"type":"ping"})");
  EXPECT_EQ(b->RecvEvent().at("type"), "pong");
}

TEST_F(ClientFramesTest, BadFramesGetErrorFramesAndTheConnectionStaysOpen) {
  auto a = Join("circles/a");
  auto b = Join("circles/a");
  struct Case {
    std::string frame;
    bool binary;
    const char* code;
  };
  for (const auto& k :
       {Case{"not json", false, "invalid_json"}, Case{"[1,2,3]", false, "not_an_object"},
        Case{"42", false, "not_an_object"}, Case{"\x01\x02", true, "binary_not_supported"},
        Case{R"({"type":"agent_message"})", false, "reserved_type"},
        Case{R"({"type":"subscribe","channel":"bad name"})", false, "invalid_channel"},
        Case{R"({"type":"unsubscribe","channel":"circles/zz"})", false, "not_subscribed"},
        Case{R"({"type":"message","channel":"circles/other"})", false, "not_subscribed"},
        Case{std::string(1000, '['), false, "invalid_json"}}) {
    if (k.binary) {
      a->SendBinary(k.frame);
    } else {
      a->Send(k.frame);
    }
    auto v = a->RecvEvent();
    ASSERT_TRUE(v.is_object()) << "no answer to " << k.frame;
    EXPECT_EQ(v.at("type"), "error");
    EXPECT_EQ(v.at("data").at("code"), k.code) << k.frame;
    EXPECT_TRUE(v.at("data").at("message").is_string());
  }
  // Still open, and the other client saw none of it.
  a->Send(R"({"type":"ping"})");
  EXPECT_EQ(a->RecvEvent().at("type"), "pong");
  b->Send(R"({"type":"ping"})");
  EXPECT_EQ(b->RecvEvent().at("type"), "pong");
}

TEST_F(ClientFramesTest, MultiplexedSubscribeAndUnsubscribe) {
  auto m = WsClient::Connect(server_->ws_port(), "/ws");
  ASSERT_NE(m, nullptr);
  m->Send(R"({"type":"subscribe","channel":"circles/one"})");
  auto s1 = m->RecvJson();
  EXPECT_EQ(s1.at("type"), "subscribed");
  EXPECT_EQ(s1.at("channel"), "circles/one");
  EXPECT_TRUE(s1.at("epoch").is_string());
  m->Send(R"({"type":"subscribe","channel":"circles/two"})");
  EXPECT_EQ(m->RecvJson().at("channel"), "circles/two");
  // A message on a socket with two channels must name one.
  m->Send(R"({"type":"message"})");
  EXPECT_EQ(m->RecvEvent().at("data").at("code"), "invalid_channel");

  auto two = Join("circles/two");
  m->Send(R"({"type":"message","channel":"circles/two","x":1})");
  auto v = two->RecvEvent();
  EXPECT_EQ(v.at("x"), 1);
  EXPECT_EQ(v.at("channel"), "circles/two");

  m->Send(R"({"type":"unsubscribe","channel":"circles/two"})");
  EXPECT_EQ(m->RecvJson().at("type"), "unsubscribed");
  two->Send(R"({"type":"message","y":2})");
  m->Send(R"({"type":"ping"})");
  EXPECT_EQ(m->RecvEvent().at("type"), "pong");
}

TEST_F(ClientFramesTest, ServerSendsJsonPingOnHeartbeat) {
  app::ServerConfig cfg;
  cfg.ws.heartbeat_interval = 50ms;
  auto server = StartBridge(cfg);
  ASSERT_NE(server, nullptr);
  auto c = WsClient::Connect(server->ws_port(), "/ws/circles/hb");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->RecvJson(2s), boost::json::parse(R"({"type":"ping"})"));
}

}  // namespace
}  // namespace bridge::testing
