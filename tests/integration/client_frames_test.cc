// What WebSocket clients send: control frames, messages broadcast to the channel, bad input.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "test_support.h"

namespace bridge::testing {
namespace {

namespace pb = gathering::bridge::v1;

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

TEST_F(ClientFramesTest, AnswersCarryTheFramesIdAndErrorsNameTheirChannel) {
  auto a = Join("circles/ids");
  auto b = Join("circles/ids");
  a->Send(R"({"type":"ping","id":"p1"})");
  EXPECT_EQ(a->RecvJson(), boost::json::parse(R"({"type":"pong","id":"p1"})"));
  // A message with an id is acked with its offset; the others get it without the id.
  a->Send(R"({"type":"message","content":"hi","id":7})");
  auto ack = a->RecvJson();
  EXPECT_EQ(ack, boost::json::parse(R"({"type":"ack","offset":1,"channel":"circles/ids","id":7})"));
  auto relayed = b->RecvEvent();
  EXPECT_EQ(relayed.at("content"), "hi");
  EXPECT_FALSE(relayed.as_object().contains("id")) << boost::json::serialize(relayed);
  // Two subscribes in flight: each answer and each refusal names its request.
  a->Send(R"({"type":"subscribe","channel":"nowhere/x","id":"s1"})");
  a->Send(R"({"type":"subscribe","channel":"circles/two","id":"s2"})");
  auto refused = a->RecvJson();
  EXPECT_EQ(refused.at("type"), "error");
  EXPECT_EQ(refused.at("id"), "s1");
  EXPECT_EQ(refused.at("channel"), "nowhere/x");
  EXPECT_EQ(refused.at("data").at("code"), "invalid_channel");
  auto ok = a->RecvJson();
  EXPECT_EQ(ok.at("type"), "subscribed");
  EXPECT_EQ(ok.at("id"), "s2");
  a->Send(R"({"type":"unsubscribe","channel":"circles/two","id":"u1"})");
  EXPECT_EQ(a->RecvJson(),
            boost::json::parse(R"({"type":"unsubscribed","channel":"circles/two","id":"u1"})"));
  // Forwarded only (workspace does not broadcast): acked without an offset.
  auto w = Join("workspace/ids");
  w->Send(R"({"type":"note","id":"n1"})");
  EXPECT_EQ(w->RecvJson(),
            boost::json::parse(R"({"type":"ack","channel":"workspace/ids","id":"n1"})"));
  // A bad id is refused, and costs nothing else.
  for (const char* bad : {R"({"type":"ping","id":-1})", R"({"type":"ping","id":{"x":1}})"}) {
    a->Send(bad);
    auto e = a->RecvJson();
    EXPECT_EQ(e.at("data").at("code"), "invalid_id") << bad;
  }
  std::string long_id(65, 'x');
  a->Send(R"({"type":"ping","id":")" + long_id + R"("})");
  EXPECT_EQ(a->RecvJson().at("data").at("code"), "invalid_id");
}

TEST_F(ClientFramesTest, HistoryAndPresenceFramesAreAnsweredOnTheSocket) {
  auto a = Join("circles/hist");
  auto stub = MakeStub(server_->grpc_port());
  for (int i = 1; i <= 3; ++i) {
    pb::PublishRequest req;
    req.mutable_event()->set_channel("circles/hist");
    req.mutable_event()->mutable_agent_message()->set_agent_id(i);
    pb::PublishResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->Publish(&ctx, req, &resp).ok());
    a->RecvEvent();
  }
  // Another socket, not subscribed to the channel, reads it.
  auto c = Join("workspace/reader");
  c->Send(R"({"type":"history","channel":"circles/hist","since":1,"limit":5,"id":"h"})");
  auto h = c->RecvJson();
  ASSERT_EQ(h.at("type"), "history") << boost::json::serialize(h);
  EXPECT_EQ(h.at("id"), "h");
  EXPECT_EQ(h.at("offset"), 3);
  EXPECT_EQ(h.at("complete"), true);
  ASSERT_EQ(h.at("messages").as_array().size(), 2u);
  EXPECT_EQ(h.at("messages").as_array()[0].at("offset"), 2);
  EXPECT_EQ(h.at("messages").as_array()[1].at("data").at("agent_id"), 3);
  c->Send(R"({"type":"history","channel":"circles/hist","limit":1})");
  auto one = c->RecvJson();
  EXPECT_EQ(one.at("messages").as_array().size(), 1u);
  EXPECT_EQ(one.at("complete"), false) << "the limit cut the range";
  c->Send(R"({"type":"history","channel":"circles/hist","limit":"x","id":1})");
  EXPECT_EQ(c->RecvJson().at("data").at("code"), "invalid_limit");

  auto alice = WsClient::Connect(server_->ws_port(), "/ws/circles/hist?client=alice&ack=1");
  ASSERT_NE(alice, nullptr);
  EXPECT_EQ(alice->RecvJson().at("type"), "subscribed");
  c->Send(R"({"type":"presence","channel":"circles/hist","id":"p"})");
  auto p = c->RecvJson();
  ASSERT_EQ(p.at("type"), "presence") << boost::json::serialize(p);
  EXPECT_EQ(p.at("id"), "p");
  EXPECT_EQ(p.at("connection_count"), 2);
  ASSERT_EQ(p.at("members").as_array().size(), 1u);
  EXPECT_EQ(p.at("members").as_array()[0].at("identity"), "alice");
  c->Send(R"({"type":"presence","channel":"workspace/reader","id":"q"})");
  auto none = c->RecvJson();
  EXPECT_EQ(none.at("data").at("code"), "invalid_channel") << "workspace keeps no presence";
  EXPECT_EQ(none.at("id"), "q");
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
