// Typed channels (events.proto's channel_types) through the real bridge: real gRPC publishes,
// real WebSocket subscribers.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <boost/json/parse.hpp>

#include "test_support.h"

namespace bridge::testing {
namespace {

namespace pb = gathering::bridge::v1;

constexpr char kCirclesAllows[] =
    "namespace 'circles' is typed and carries agent_message, agent_joined, agent_left, "
    "circle_status, error, custom (events.proto, channel_types)";

pb::PublishRequest FileChanged(const std::string& channel, const std::string& path) {
  pb::PublishRequest req;
  req.mutable_event()->set_channel(channel);
  req.mutable_event()->mutable_file_changed()->set_path(path);
  return req;
}

pb::PublishRequest Message(const std::string& channel, const std::string& content) {
  pb::PublishRequest req;
  req.mutable_event()->set_channel(channel);
  req.mutable_event()->mutable_agent_message()->set_content(content);
  return req;
}

pb::PublishRequest Custom(const std::string& channel, const std::string& type) {
  pb::PublishRequest req;
  req.mutable_event()->set_channel(channel);
  req.mutable_event()->mutable_custom()->set_type(type);
  return req;
}

class TypedChannelsTest : public ::testing::Test {
 protected:
  void Start(app::ServerConfig config = {}) {
    server_ = StartBridge(std::move(config));
    ASSERT_NE(server_, nullptr);
    stub_ = MakeStub(server_->grpc_port());
  }
  grpc::Status Publish(const pb::PublishRequest& req, pb::PublishResponse* resp = nullptr) {
    pb::PublishResponse local;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    return stub_->Publish(&ctx, req, resp != nullptr ? resp : &local);
  }
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

TEST_F(TypedChannelsTest, AWorkspaceEventIntoACircleIsRefusedWithTheAllowedTypes) {
  Start();
  auto c = Subscribe("circles/x");
  grpc::Status s = Publish(FileChanged("circles/x", "a.txt"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(
      s.error_message(),
      std::string("channel 'circles/x' does not carry file_changed events: ") + kCirclesAllows);
  EXPECT_EQ(server_->metrics().publish_type_rejected_total.load(), 1u);
  EXPECT_EQ(server_->metrics().publish_rejected_total.load(), 1u);

  // Nothing reached the channel: the next event is the channel's first.
  pb::PublishResponse resp;
  ASSERT_TRUE(Publish(Message("circles/x", "after"), &resp).ok());
  EXPECT_EQ(resp.offset(), 1u);
  auto v = c->RecvEvent();
  EXPECT_EQ(v.at("type"), "agent_message") << v;
  EXPECT_EQ(v.at("offset"), 1);

  std::string metrics;
  ASSERT_EQ(HttpStatus(server_->ws_port(), "/metrics", false, &metrics), 200);
  EXPECT_NE(metrics.find("\nbridge_publish_type_rejected_total 1\n"), std::string::npos) << metrics;
}

TEST_F(TypedChannelsTest, PublishStreamRejectsTheItemAndAcceptsTheNext) {
  Start();
  auto c = Subscribe("circles/x");
  pb::PublishStreamResponse resp;
  grpc::ClientContext ctx;
  auto writer = stub_->PublishStream(&ctx, &resp);
  ASSERT_TRUE(writer->Write(FileChanged("circles/x", "a.txt")));
  ASSERT_TRUE(writer->Write(Message("circles/x", "allowed")));
  ASSERT_TRUE(writer->Write(Custom("workspace/1", "tool_call")));
  ASSERT_TRUE(writer->Write(FileChanged("workspace/1", "b.txt")));
  writer->WritesDone();
  ASSERT_TRUE(writer->Finish().ok());
  EXPECT_EQ(resp.accepted(), 2u);
  EXPECT_EQ(resp.rejected(), 2u);
  ASSERT_EQ(resp.rejections_size(), 2);
  EXPECT_EQ(resp.rejections(0).index(), 0u);
  EXPECT_EQ(resp.rejections(0).code(), "INVALID_ARGUMENT");
  EXPECT_EQ(
      resp.rejections(0).message(),
      std::string("channel 'circles/x' does not carry file_changed events: ") + kCirclesAllows);
  EXPECT_EQ(resp.rejections(1).index(), 2u);
  EXPECT_EQ(
      resp.rejections(1).message(),
      "channel 'workspace/1' does not carry custom (type 'tool_call') events: namespace "
      "'workspace' is typed and carries agent_message, file_changed, file_created, file_deleted, "
      "git_status, error (events.proto, channel_types)");
  EXPECT_EQ(server_->metrics().publish_type_rejected_total.load(), 2u);

  auto v = c->RecvEvent();
  EXPECT_EQ(v.at("type"), "agent_message") << v;
  EXPECT_EQ(v.at("data").at("content"), "allowed");
}

TEST_F(TypedChannelsTest, AllowedTypesAreDelivered) {
  Start();
  auto w = Subscribe("workspace/7");
  ASSERT_TRUE(Publish(FileChanged("workspace/7", "src/main.cc")).ok());
  pb::PublishRequest git;
  git.mutable_event()->set_channel("workspace/7");
  git.mutable_event()->mutable_git_status()->set_branch("main");
  ASSERT_TRUE(Publish(git).ok());
  auto a = w->RecvEvent();
  EXPECT_EQ(a.at("type"), "file_changed") << a;
  EXPECT_EQ(a.at("data"), boost::json::parse(R"({"path":"src/main.cc"})"));
  auto b = w->RecvEvent();
  EXPECT_EQ(b.at("type"), "git_status") << b;
  EXPECT_EQ(server_->metrics().publish_type_rejected_total.load(), 0u);
}

TEST_F(TypedChannelsTest, AnUntypedNamespaceAcceptsAnything) {
  app::ServerConfig config;
  auto ns = core::NamespaceRegistry::Parse(
      "circles:broadcast:history=100:ttl=300:presence,workspace,agents,rooms:broadcast");
  ASSERT_TRUE(ns.ok());
  config.namespaces = *ns;
  Start(std::move(config));
  auto c = Subscribe("rooms/a");
  ASSERT_TRUE(Publish(FileChanged("rooms/a", "x")).ok());
  ASSERT_TRUE(Publish(Message("rooms/a", "y")).ok());
  ASSERT_TRUE(Publish(Custom("rooms/a", "whatever")).ok());
  for (const char* type : {"file_changed", "agent_message", "whatever"}) {
    auto v = c->RecvEvent();
    EXPECT_EQ(v.at("type"), type) << v;
  }
  // The typed ones stay typed next to it.
  EXPECT_EQ(Publish(FileChanged("circles/a", "x")).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(TypedChannelsTest, RefusedBeforeThePayloadChecksButAfterTheGrants) {
  Start();
  // No payload at all is the hub's refusal, with its own message.
  pb::PublishRequest empty;
  empty.mutable_event()->set_channel("circles/x");
  grpc::Status s = Publish(empty);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message().find("does not carry"), std::string::npos) << s.error_message();
  EXPECT_EQ(server_->metrics().publish_type_rejected_total.load(), 0u);
  // An unknown namespace is still that.
  s = Publish(FileChanged("nope/x", "a"));
  EXPECT_NE(s.error_message().find("unknown namespace"), std::string::npos) << s.error_message();
}

// Start-up validation: a namespace whose configuration contradicts its declaration.
absl::Status StartWith(const std::string& spec) {
  auto ns = core::NamespaceRegistry::Parse(spec);
  if (!ns.ok()) return ns.status();
  app::ServerConfig config;
  config.host = "127.0.0.1";
  config.ws_port = 0;
  config.grpc_port = 0;
  config.io_threads = 1;
  config.namespaces = *ns;
  auto s = app::BridgeServer::Start(std::move(config));
  return s.status();
}

TEST(TypedChannelsStartupTest, PresenceWithoutJoinsAndLeavesDoesNotStart) {
  absl::Status s = StartWith("circles:broadcast:presence,workspace:presence,agents");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("namespace 'workspace' has presence"), std::string::npos) << s;
}

TEST(TypedChannelsStartupTest, BroadcastWithoutCustomDoesNotStart) {
  absl::Status s = StartWith("circles:broadcast:presence,workspace:broadcast,agents");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("namespace 'workspace' broadcasts client messages"), std::string::npos)
      << s;
}

TEST(TypedChannelsStartupTest, ADeclaredNamespaceNotConfiguredIsAWarning) {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
  auto logger = std::make_shared<spdlog::logger>("typed-test", sink);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);
  absl::Status s = StartWith("circles:broadcast:presence,rooms");
  spdlog::set_default_logger(previous);
  EXPECT_TRUE(s.ok()) << s;
  std::string warnings;
  for (const auto& line : sink->last_formatted()) {
    if (line.find("[warning]") != std::string::npos) warnings += line;
  }
  EXPECT_NE(warnings.find("typed channels: events.proto declares the types of namespace "
                          "'workspace', which is not configured (--namespaces); ignored"),
            std::string::npos)
      << warnings;
  EXPECT_NE(warnings.find("namespace 'agents'"), std::string::npos) << warnings;
}

}  // namespace
}  // namespace bridge::testing
