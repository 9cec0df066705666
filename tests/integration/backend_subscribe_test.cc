// Client frames reach backends' Subscribe streams over real gRPC.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <thread>

#include "test_support.h"

namespace bridge::testing {
namespace {

namespace pb = gathering::bridge::v1;

class BackendSubscribeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = StartBridge();
    ASSERT_NE(server_, nullptr);
    stub_ = MakeStub(server_->grpc_port());
  }
  std::unique_ptr<app::BridgeServer> server_;
  std::unique_ptr<pb::EventService::Stub> stub_;
};

TEST_F(BackendSubscribeTest, MatchingStreamsReceiveClientFrames) {
  grpc::ClientContext pattern_ctx, exact_ctx, other_ctx;
  pb::SubscribeRequest pattern_req, exact_req, other_req;
  pattern_req.add_channels("circles/*");
  exact_req.add_channels("circles/dev-team");
  other_req.add_channels("workspace/*");
  auto pattern = stub_->Subscribe(&pattern_ctx, pattern_req);
  auto exact = stub_->Subscribe(&exact_ctx, exact_req);
  auto other = stub_->Subscribe(&other_ctx, other_req);
  ASSERT_TRUE(WaitFor([&] { return server_->metrics().backend_streams_current.load() == 3; }))
      << "Subscribe streams not registered";

  auto c = WsClient::Connect(server_->ws_port(), "/ws/circles/dev-team?ack=1");
  ASSERT_NE(c, nullptr);
  c->RecvJson();
  c->Send(R"({"type":"message","content":"Hello"})");

  for (auto* reader : {pattern.get(), exact.get()}) {
    pb::ClientMessage m;
    ASSERT_TRUE(reader->Read(&m));
    EXPECT_EQ(m.channel(), "circles/dev-team");
    EXPECT_EQ(m.connection_id().rfind("c-", 0), 0u);
    EXPECT_GT(m.received_at().seconds(), 0);
    EXPECT_EQ(boost::json::parse(m.json()),
              boost::json::parse(R"({"type":"message","content":"Hello"})"));
  }
  // A workspace client frame reaches only the workspace stream (and shows it is alive).
  auto w = WsClient::Connect(server_->ws_port(), "/ws/workspace/1?ack=1");
  ASSERT_NE(w, nullptr);
  w->RecvJson();
  w->Send(R"({"type":"note"})");
  pb::ClientMessage m;
  ASSERT_TRUE(other->Read(&m));
  EXPECT_EQ(m.channel(), "workspace/1");

  for (auto* ctx : {&pattern_ctx, &exact_ctx, &other_ctx}) ctx->TryCancel();
  pattern->Finish();
  exact->Finish();
  other->Finish();
  EXPECT_TRUE(WaitFor([&] { return server_->metrics().backend_streams_current.load() == 0; }));
}

TEST_F(BackendSubscribeTest, BadRequestsAreInvalidArgument) {
  for (const std::vector<std::string>& channels :
       {std::vector<std::string>{}, std::vector<std::string>{"circles*"},
        std::vector<std::string>{"bad name"}}) {
    grpc::ClientContext ctx;
    pb::SubscribeRequest req;
    for (const auto& ch : channels) req.add_channels(ch);
    auto reader = stub_->Subscribe(&ctx, req);
    pb::ClientMessage m;
    EXPECT_FALSE(reader->Read(&m));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
}

TEST_F(BackendSubscribeTest, EachStreamGetsEachMatchingMessageOnce) {
  struct Stream {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<pb::ClientMessage>> reader;
  };
  auto open = [&](std::vector<std::string> patterns) {
    auto s = std::make_unique<Stream>();
    pb::SubscribeRequest req;
    for (auto& p : patterns) req.add_channels(p);
    s->reader = stub_->Subscribe(&s->ctx, req);
    return s;
  };
  auto two_ns = open({"workspace/*", "circles/dev"});      // two namespaces, one stream
  auto overlap = open({"circles/dev", "*", "circles/*"});  // three patterns match circles/dev
  auto agents = open({"agents/*"});
  ASSERT_TRUE(WaitFor([&] { return server_->metrics().backend_streams_current.load() == 3; }));
  auto connect = [&](const std::string& channel) {
    auto c = WsClient::Connect(server_->ws_port(), "/ws/" + channel + "?ack=1");
    EXPECT_NE(c, nullptr);
    if (c) c->RecvJson();
    return c;
  };
  auto circles = connect("circles/dev"), workspace = connect("workspace/1"),
       agent = connect("agents/7");
  ASSERT_TRUE(circles && workspace && agent);
  auto next = [](Stream& s) {
    pb::ClientMessage m;
    EXPECT_TRUE(s.reader->Read(&m));
    return boost::json::parse(m.json()).at("n").as_int64();
  };
  circles->Send(R"({"type":"m","n":1})");
  EXPECT_EQ(next(*two_ns), 1);
  EXPECT_EQ(next(*overlap), 1);
  workspace->Send(R"({"type":"m","n":2})");
  EXPECT_EQ(next(*two_ns), 2);
  EXPECT_EQ(next(*overlap), 2);
  agent->Send(R"({"type":"m","n":3})");
  EXPECT_EQ(next(*overlap), 3);
  EXPECT_EQ(next(*agents), 3);  // its first: nothing else reached it
  workspace->Send(R"({"type":"m","n":4})");
  EXPECT_EQ(next(*two_ns), 4);  // no second copy of 1 or 2 came before
  EXPECT_EQ(next(*overlap), 4);
  for (auto* s : {two_ns.get(), overlap.get(), agents.get()}) {
    s->ctx.TryCancel();
    s->reader->Finish();
  }
}

TEST_F(BackendSubscribeTest, SlowBackendLosesMessagesNotClients) {
  app::ServerConfig cfg;
  cfg.rpc.subscribe_queue_messages = 4;
  cfg.ws.client_message_rate = 0;  // this burst is about the backend, not the rate limit
  auto server = StartBridge(cfg);
  ASSERT_NE(server, nullptr);
  auto stub = MakeStub(server->grpc_port());
  grpc::ClientContext ctx;
  pb::SubscribeRequest req;
  req.add_channels("*");
  auto reader = stub->Subscribe(&ctx, req);  // never read during the burst
  ASSERT_TRUE(WaitFor([&] { return server->metrics().backend_streams_current.load() == 1; }));
  auto a = WsClient::Connect(server->ws_port(), "/ws/circles/burst?ack=1");
  auto b = WsClient::Connect(server->ws_port(), "/ws/circles/burst?ack=1");
  ASSERT_TRUE(a && b);
  a->RecvJson();
  b->RecvJson();
  const int kBurst = 2000;
  std::string pad(2000, 'x');
  for (int i = 0; i < kBurst; ++i) a->Send(R"({"type":"m","pad":")" + pad + R"("})");
  for (int i = 0; i < kBurst; ++i) {
    auto v = b->RecvEvent();
    ASSERT_TRUE(v.is_object()) << "client missed broadcast " << i;
  }
  EXPECT_GT(server->metrics().backend_dropped_total.load(), 0u);
  ctx.TryCancel();
  reader->Finish();
}

}  // namespace
}  // namespace bridge::testing
