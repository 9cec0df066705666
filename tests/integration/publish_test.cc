// Backend publishes over real gRPC; real WebSocket clients receive.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/parse.hpp>
#include <functional>
#include <vector>

#include "core/utf8.h"
#include "google/protobuf/util/json_util.h"
#include "test_support.h"

namespace bridge::testing {
namespace {

namespace pb = gathering::bridge::v1;

class PublishTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = StartBridge();
    ASSERT_NE(server_, nullptr);
    stub_ = MakeStub(server_->grpc_port());
  }
  // Connects with ?ack=1 and waits for the subscription to be confirmed, so that what is
  // published next is certain to reach it.
  std::unique_ptr<WsClient> Subscribe(const std::string& channel) {
    auto c = WsClient::Connect(server_->ws_port(), "/ws/" + channel + "?ack=1");
    EXPECT_NE(c, nullptr);
    if (c == nullptr) return c;
    auto v = c->RecvJson();
    EXPECT_EQ(v.at("type"), "subscribed") << v;
    return c;
  }

  std::unique_ptr<app::BridgeServer> server_;
  std::unique_ptr<pb::EventService::Stub> stub_;
};

TEST_F(PublishTest, AgentMessageReachesEverySubscriberOnceWithTheDocumentedFrame) {
  auto a = Subscribe("circles/dev-team");
  auto b = Subscribe("circles/dev-team");
  pb::PublishResponse resp;
  ASSERT_TRUE(PublishMessage(*stub_, "circles/dev-team", 7, "hi", &resp).ok());
  EXPECT_EQ(resp.offset(), 1u);
  EXPECT_FALSE(resp.epoch().empty());
  for (auto* c : {a.get(), b.get()}) {
    auto v = c->RecvEvent();
    ASSERT_TRUE(v.is_object()) << "no frame";
    EXPECT_EQ(v.at("type"), "agent_message");
    EXPECT_EQ(v.at("channel"), "circles/dev-team");
    EXPECT_EQ(v.at("offset"), 1);
    EXPECT_EQ(v.at("data"), boost::json::parse(R"({"agent_id":7,"content":"hi"})"));
    std::string ts(v.at("timestamp").as_string());
    EXPECT_EQ(ts.size(), 24u) << ts;  // 2026-11-25T17:00:00.123Z
    EXPECT_EQ(ts.back(), 'Z');
  }
}

TEST_F(PublishTest, PlainPathSubscriberFirstFrameIsTheEvent) {
  auto c = WsClient::Connect(server_->ws_port(), "/ws/circles/plain");
  ASSERT_NE(c, nullptr);
  // Without ack the subscription is registered during the upgrade: wait for it to count.
  ASSERT_TRUE(WaitFor([&] { return server_->metrics().subscriptions_current.load() == 1; }));
  ASSERT_TRUE(PublishMessage(*stub_, "circles/plain", 1, "x").ok());
  EXPECT_EQ(c->RecvEvent().at("type"), "agent_message");
}

TEST_F(PublishTest, EveryPayloadTypeArrivesWithItsType) {
  // Every type in one channel: a namespace events.proto leaves untyped (typed_channels_test.cc
  // covers the typed ones).
  app::ServerConfig config;
  config.namespaces = *core::NamespaceRegistry::Parse("circles:broadcast:presence,rooms");
  server_ = StartBridge(std::move(config));
  ASSERT_NE(server_, nullptr);
  stub_ = MakeStub(server_->grpc_port());
  auto c = Subscribe("rooms/42");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"agent_message", R"({"agent_message":{"agent_id":1,"content":"c"}})"},
      {"agent_joined", R"({"agent_joined":{"agent_id":1,"agent_name":"Ada"}})"},
      {"agent_left", R"({"agent_left":{"agent_id":1}})"},
      {"circle_status", R"({"circle_status":{"circle":"x","status":"running"}})"},
      {"file_changed", R"({"file_changed":{"path":"a","agent_id":3}})"},
      {"file_created", R"({"file_created":{"path":"a"}})"},
      {"file_deleted", R"({"file_deleted":{"path":"a"}})"},
      {"git_status", R"({"git_status":{"branch":"main","ahead":2}})"},
      {"error", R"({"error":{"code":"E","message":"m"}})"},
      {"tool_call", R"({"custom":{"type":"tool_call","data":{"tool":"grep"}}})"},
  };
  for (const auto& [type, json] : cases) {
    pb::PublishRequest req;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, req.mutable_event()).ok());
    req.mutable_event()->set_channel("rooms/42");
    pb::PublishResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->Publish(&ctx, req, &resp).ok()) << type;
  }
  uint64_t offset = 0;
  for (const auto& [type, json] : cases) {
    auto v = c->RecvEvent();
    ASSERT_TRUE(v.is_object()) << "missing " << type;
    EXPECT_EQ(v.at("type"), type.c_str());
    EXPECT_EQ(v.at("offset").to_number<uint64_t>(), ++offset);
  }
  // Ids stay JSON numbers.
}

TEST_F(PublishTest, ChannelsAreIsolated) {
  auto x = Subscribe("circles/x");
  auto y = Subscribe("circles/y");
  ASSERT_TRUE(PublishMessage(*stub_, "circles/x", 1, "for x").ok());
  ASSERT_TRUE(PublishMessage(*stub_, "circles/y", 2, "for y").ok());
  // Frames reach a shard in publish order, so y's first event proves it never got x's.
  auto v = y->RecvEvent();
  EXPECT_EQ(v.at("data").at("content"), "for y");
  EXPECT_EQ(x->RecvEvent().at("data").at("content"), "for x");
}

TEST_F(PublishTest, OffsetsCountPerChannelAndOrderHolds) {
  auto c = Subscribe("agents/7");
  for (int i = 1; i <= 200; ++i) ASSERT_TRUE(PublishMessage(*stub_, "agents/7", i, "m").ok());
  for (int i = 1; i <= 200; ++i) {
    auto v = c->RecvEvent();
    ASSERT_TRUE(v.is_object());
    ASSERT_EQ(v.at("offset").to_number<int>(), i);
    ASSERT_EQ(v.at("data").at("agent_id").to_number<int>(), i);
  }
}

TEST_F(PublishTest, PublisherTimestampIsKept) {
  auto c = Subscribe("circles/t");
  pb::PublishRequest req;
  req.mutable_event()->set_channel("circles/t");
  req.mutable_event()->mutable_timestamp()->set_seconds(1764090000);
  req.mutable_event()->mutable_timestamp()->set_nanos(123456789);
  req.mutable_event()->mutable_agent_left()->set_agent_id(1);
  pb::PublishResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->Publish(&ctx, req, &resp).ok());
  EXPECT_EQ(c->RecvEvent().at("timestamp"), "2025-11-25T17:00:00.123Z");
}

TEST_F(PublishTest, InvalidPublishesAreInvalidArgument) {
  auto bad = [&](const std::string& json) {
    pb::PublishRequest req;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &req).ok()) << json;
    pb::PublishResponse resp;
    grpc::ClientContext ctx;
    return stub_->Publish(&ctx, req, &resp).error_code();
  };
  EXPECT_EQ(bad(R"({})"), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(bad(R"({"event":{"channel":"circles/x"}})"), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(bad(R"({"event":{"channel":"","agent_message":{}}})"),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(bad(R"({"event":{"channel":"circles/a b","agent_message":{}}})"),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(bad(R"({"event":{"channel":"unknown/x","agent_message":{}}})"),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(bad(R"({"event":{"channel":"circles/x","custom":{"type":"Bad!"}}})"),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(server_->metrics().events_published_total.load(), 0u);
}

TEST_F(PublishTest, PublishStreamCountsAcceptedAndRejected) {
  auto c = Subscribe("circles/stream");
  grpc::ClientContext ctx;
  pb::PublishStreamResponse resp;
  auto writer = stub_->PublishStream(&ctx, &resp);
  for (int i = 0; i < 1000; ++i) {
    pb::PublishRequest req;
    req.mutable_event()->set_channel(i == 500 ? "bad" : "circles/stream");
    req.mutable_event()->mutable_agent_message()->set_agent_id(i);
    ASSERT_TRUE(writer->Write(req));
  }
  writer->WritesDone();
  ASSERT_TRUE(writer->Finish().ok());
  EXPECT_EQ(resp.accepted(), 999u);
  EXPECT_EQ(resp.rejected(), 1u);
  ASSERT_EQ(resp.rejections_size(), 1);
  EXPECT_EQ(resp.rejections(0).index(), 500u);
  EXPECT_EQ(resp.rejections(0).code(), "INVALID_ARGUMENT");
  for (int i = 0; i < 999; ++i) {
    auto v = c->RecvEvent();
    ASSERT_TRUE(v.is_object()) << "frame " << i;
    ASSERT_EQ(v.at("offset").to_number<int>(), i + 1);
  }
}

TEST_F(PublishTest, HttpRoutes) {
  std::string body;
  EXPECT_EQ(HttpStatus(server_->ws_port(), "/healthz", false, &body), 200);
  EXPECT_EQ(boost::json::parse(body).at("status"), "ok");
  EXPECT_EQ(HttpStatus(server_->ws_port(), "/metrics", false, &body), 200);
  EXPECT_NE(body.find("bridge_connections_current"), std::string::npos);
  EXPECT_EQ(HttpStatus(server_->ws_port(), "/", false, &body), 200);
  EXPECT_NE(body.find("<html"), std::string::npos);
  EXPECT_EQ(HttpStatus(server_->ws_port(), "/nope"), 404);
  EXPECT_EQ(HttpStatus(server_->ws_port(), "/ws/circles/dev-team"), 426);
  // Plain HTTP to a WebSocket path keeps its statuses; upgrades are refused after their 101
  // (RefusalsOfAValidUpgradeAreCloseCodesWithTheirReason).
  EXPECT_EQ(HttpStatus(server_->ws_port(), "/ws/unknown/x"), 404);
  EXPECT_EQ(HttpStatus(server_->ws_port(), "/ws/circles/%zz"), 400);
}

TEST_F(PublishTest, RefusalsOfAValidUpgradeAreCloseCodesWithTheirReason) {
  const uint16_t port = server_->ws_port();
  struct Case {
    std::string target;
    int code;
    std::string reason;  // a part of it
  };
  const std::vector<Case> cases = {
      {"/ws/unknown/x", 4004, "unknown namespace 'unknown'"},
      {"/ws/circles/a%20b", 4400, "channel may only contain"},
      {"/ws/circles/", 4400, ""},
      {"/ws/circles", 4400, ""},
      {"/ws/circles/" + std::string(300, 'a'), 4400, ""},
      {"/ws/circles/x?client=%C0%AF", 4400, "client must be valid UTF-8"},
      {"/ws/circles/x?since=abc", 4400, "since must be a non-negative integer"},
      {"/ws/circles/x?since=1&epoch=" + std::string(65, 'e'), 4400, "epoch must be"},
      {"/ws/circles/x?since=1&epoch=%FF", 4400, "epoch must be"},
      {"/ws/circles/%zz", 4400, "malformed request target"},
  };
  for (const auto& c : cases) {
    Refusal r = RefuseUpgrade(port, c.target);
    EXPECT_EQ(r.http_status, 101) << c.target;
    EXPECT_EQ(r.close_code, c.code) << c.target;
    EXPECT_NE(r.reason.find(c.reason), std::string::npos) << c.target << ": " << r.reason;
    EXPECT_FALSE(r.reason.empty()) << c.target;
    // The bridge ends the connection as soon as the client answered its close, well before
    // --close_timeout (5 s) would cut it.
    EXPECT_LT(r.handshake_took, 3s) << c.target;
  }
  // A reason built from a long client string is cut to 123 bytes, between characters.
  std::string long_ns = "/ws/" + std::string(150, 'n') + "/x";
  Refusal r = RefuseUpgrade(port, long_ns);
  EXPECT_EQ(r.close_code, 4004);
  EXPECT_LE(r.reason.size(), 123u);
  EXPECT_TRUE(core::IsValidUtf8(r.reason));
  // Nothing is left open: every refused connection is gone, and a good upgrade still works.
  EXPECT_TRUE(WaitFor([&] {
    return server_->metrics().http_connections_current.load() == 0 &&
           server_->metrics().connections_current.load() == 0;
  })) << "refused connections linger";
  EXPECT_NE(WsClient::Connect(port, "/ws/circles/fine"), nullptr);
}

TEST_F(PublishTest, ARefusedUpgradeThatNeverAnswersTheCloseIsCutAtTheCloseTimeout) {
  // A raw client that sends its upgrade and then nothing: it gets the 101 and the close frame,
  // and the bridge lets go of the connection after --close_timeout, not before.
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::socket s(ioc);
  s.connect({boost::asio::ip::make_address("127.0.0.1"), server_->ws_port()});
  std::string req =
      "GET /ws/unknown/x HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
  boost::asio::write(s, boost::asio::buffer(req));
  std::string got;
  char buf[512];
  boost::system::error_code ec;
  const auto start = std::chrono::steady_clock::now();
  std::function<void()> read = [&] {
    s.async_read_some(boost::asio::buffer(buf), [&](boost::system::error_code e, size_t n) {
      got.append(buf, n);
      ec = e;
      if (!e) read();
    });
  };
  read();
  ioc.run_for(15s);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(got.rfind("HTTP/1.1 101", 0), 0u) << got;
  size_t frame = got.find("\r\n\r\n") + 4;
  ASSERT_GT(got.size(), frame + 4);
  EXPECT_EQ(static_cast<uint8_t>(got[frame]), 0x88);  // FIN + close
  EXPECT_EQ((static_cast<uint8_t>(got[frame + 2]) << 8) | static_cast<uint8_t>(got[frame + 3]),
            4004);
  EXPECT_TRUE(ec) << "the connection was never ended";
  EXPECT_GE(took, 4s) << "cut before --close_timeout";
  EXPECT_LT(took, 12s);
}

// Writes `bytes` on a fresh connection and reads until `until` appears, the server closes or
// 5 s pass; returns what arrived.
std::string RawExchange(uint16_t port, const std::string& bytes, const std::string& until) {
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::socket s(ioc);
  s.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  boost::asio::write(s, boost::asio::buffer(bytes));
  std::string got;
  char buf[4096];
  std::function<void()> read = [&] {
    s.async_read_some(boost::asio::buffer(buf), [&](boost::system::error_code ec, size_t n) {
      got.append(buf, n);
      if (!ec && got.find(until) == std::string::npos) read();
    });
  };
  read();
  ioc.run_for(5s);
  return got;
}

std::string Upgrade(const std::string& key, const std::string& version) {
  return "GET /ws/circles/raw HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\nSec-WebSocket-Version: " +
         version + "\r\nSec-WebSocket-Key: " + key + "\r\n\r\n";
}

TEST_F(PublishTest, UpgradeHandshakeFollowsRfc6455) {
  uint16_t port = server_->ws_port();
  std::string wrong_version =
      RawExchange(port, Upgrade("dGhlIHNhbXBsZSBub25jZQ==", "8"), "\r\n\r\n");
  EXPECT_EQ(wrong_version.rfind("HTTP/1.1 426", 0), 0u) << wrong_version;
  EXPECT_NE(wrong_version.find("Sec-WebSocket-Version: 13"), std::string::npos) << wrong_version;
  std::string bad_key = RawExchange(port, Upgrade("short", "13"), "\r\n\r\n");
  EXPECT_EQ(bad_key.rfind("HTTP/1.1 400", 0), 0u) << bad_key;

  // A client that sends its first frame with the request (without waiting for the 101) is
  // answered: the bytes read with the request are not lost.
  std::string ping = R"({"type":"ping"})";
  std::string frame = {'\x81', static_cast<char>(0x80 | ping.size()), 1, 2, 3, 4};
  for (size_t i = 0; i < ping.size(); ++i) frame += static_cast<char>(ping[i] ^ (1 + i % 4));
  std::string got = RawExchange(port, Upgrade("dGhlIHNhbXBsZSBub25jZQ==", "13") + frame, "pong");
  EXPECT_EQ(got.rfind("HTTP/1.1 101", 0), 0u) << got;
  EXPECT_NE(got.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), std::string::npos)
      << got;
  EXPECT_NE(got.find(R"({"type":"pong"})"), std::string::npos) << got;
}

TEST_F(PublishTest, ReflectionListsTheEventService) {
  // A raw call to grpc.reflection.v1alpha (its stubs are not packaged): ServerReflectionRequest
  // with list_services = "" is field 7, length 0.
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->grpc_port()),
                                     grpc::InsecureChannelCredentials());
  grpc::GenericStub generic(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  auto call = generic.PrepareCall(
      &ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag = nullptr;
  bool ok = false;
  auto step = [&](intptr_t t) {
    EXPECT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(reinterpret_cast<intptr_t>(tag), t);
    return ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(step(1));
  const char request[] = {0x3a, 0x00};
  grpc::Slice slice(request, sizeof(request));
  grpc::ByteBuffer out(&slice, 1);
  call->Write(out, reinterpret_cast<void*>(2));
  ASSERT_TRUE(step(2));
  call->WritesDone(reinterpret_cast<void*>(3));
  ASSERT_TRUE(step(3));
  grpc::ByteBuffer in;
  call->Read(&in, reinterpret_cast<void*>(4));
  ASSERT_TRUE(step(4));
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(in.Dump(&slices).ok());
  std::string bytes;
  for (auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_NE(bytes.find("gathering.bridge.v1.EventService"), std::string::npos);
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  step(5);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

}  // namespace
}  // namespace bridge::testing
