// What backends can make the bridge hold, over real gRPC: Subscribe streams per identity and in
// all, per-identity publish buckets under key churn, channels freed when idle (with a fresh
// epoch when they come back), and requests validated before grants are checked.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "auth/api_keys.h"
#include "auth/mint.h"
#include "auth/verifier.h"
#include "test_support.h"

namespace bridge::testing {
namespace {

namespace pb = gathering::bridge::v1;

const std::string kSecret = "0123456789abcdef0123456789abcdef-rpc-limits-secret";

// Keys: `narrow-key…` (subject "narrow") may use circles/* only; `a-key…`, `b-key…` and `c-key…`
// are three identities that may use everything in circles.
constexpr const char* kKeys =
    "narrow-key-0123456789 narrow circles/*\n"
    "a-key-0123456789abcdef a circles/*\n"
    "b-key-0123456789abcdef b circles/*\n"
    "c-key-0123456789abcdef c circles/*\n";

class RpcLimitsTest : public ::testing::Test {
 protected:
  // A bridge with auth on (tokens and the keys above) unless `auth` is false.
  void Start(app::ServerConfig cfg, bool auth = true) {
    if (auth) {
      auth::VerifierConfig v;
      v.hs256_secret = kSecret;
      auto verifier = auth::TokenVerifier::Create(v);
      ASSERT_TRUE(verifier.ok()) << verifier.status();
      std::shared_ptr<const auth::TokenVerifier> shared(std::move(*verifier));
      cfg.auth.verifier = shared;
      cfg.rpc.auth.verifier = shared;
      auto keys = auth::ApiKeys::Parse(kKeys, "test");
      ASSERT_TRUE(keys.ok()) << keys.status();
      cfg.rpc.auth.api_keys = std::make_shared<const auth::ApiKeys>(std::move(*keys));
      cfg.ws.origins.auth_enabled = true;
    }
    cfg_ = cfg;
    server_ = StartBridge(cfg);
    ASSERT_NE(server_, nullptr);
    stub_ = MakeStub(server_->grpc_port());
  }
  static std::string Token(const std::string& sub) {
    auth::MintOptions m;
    m.subject = sub;
    m.channels = {"circles/*"};
    m.publish = {"circles/*"};
    m.ttl = std::chrono::hours(1);
    m.hs256_secret = kSecret;
    auto t = auth::MintToken(m, std::chrono::system_clock::now());
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : "";
  }
  grpc::Status Publish(const std::string& bearer, const std::string& channel,
                       pb::PublishResponse* response = nullptr) {
    pb::PublishRequest req;
    req.mutable_event()->set_channel(channel);
    req.mutable_event()->mutable_agent_message()->set_content("x");
    pb::PublishResponse scratch;
    grpc::ClientContext ctx;
    if (!bearer.empty()) ctx.AddMetadata("authorization", "Bearer " + bearer);
    return stub_->Publish(&ctx, req, response != nullptr ? response : &scratch);
  }

  // One Subscribe call; `open()` is true once the bridge counts it, else Finish() says why not.
  struct Stream {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<pb::ClientMessage>> reader;
    grpc::Status Finish() {
      ctx.TryCancel();
      return reader->Finish();
    }
  };
  std::unique_ptr<Stream> Subscribe(const std::string& bearer,
                                    std::vector<std::string> channels = {"circles/*"}) {
    auto s = std::make_unique<Stream>();
    if (!bearer.empty()) s->ctx.AddMetadata("authorization", "Bearer " + bearer);
    pb::SubscribeRequest req;
    for (auto& c : channels) req.add_channels(c);
    s->reader = stub_->Subscribe(&s->ctx, req);
    return s;
  }
  // The status of a Subscribe the bridge answered at once.
  grpc::Status RefusedSubscribe(const std::string& bearer, std::vector<std::string> channels) {
    auto s = Subscribe(bearer, std::move(channels));
    pb::ClientMessage m;
    EXPECT_FALSE(s->reader->Read(&m));
    return s->reader->Finish();
  }
  bool StreamsAre(int64_t n) {
    return WaitFor([&] { return server_->metrics().backend_streams_current.load() == n; });
  }

  std::unique_ptr<app::BridgeServer> server_;
  app::ServerConfig cfg_;  // what Start started the bridge with (auth included)
  std::unique_ptr<pb::EventService::Stub> stub_;
};

TEST_F(RpcLimitsTest, SubscribeStreamsAreBoundedPerIdentityAndInAll) {
  app::ServerConfig cfg;
  cfg.rpc.max_subscribe_streams_per_identity = 2;
  cfg.rpc.max_subscribe_streams = 3;
  ASSERT_NO_FATAL_FAILURE(Start(cfg));
  const std::string a = "a-key-0123456789abcdef", b = "b-key-0123456789abcdef";
  auto a1 = Subscribe(a), a2 = Subscribe(a);
  ASSERT_TRUE(StreamsAre(2));
  grpc::Status third = RefusedSubscribe(a, {"circles/*"});
  EXPECT_EQ(third.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(third.error_message().find("this identity (at most 2)"), std::string::npos)
      << third.error_message();
  // A JWT with the same subject is the same identity.
  EXPECT_EQ(RefusedSubscribe(Token("a"), {"circles/*"}).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);

  auto b1 = Subscribe(b);
  ASSERT_TRUE(StreamsAre(3));
  grpc::Status full = RefusedSubscribe("c-key-0123456789abcdef", {"circles/*"});
  EXPECT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(full.error_message().find("too many Subscribe streams (at most 3)"), std::string::npos)
      << full.error_message();
  EXPECT_EQ(server_->metrics().backend_streams_refused_total.load(), 3u);

  // Closing a stream gives its slot back.
  a1->Finish();
  ASSERT_TRUE(StreamsAre(2));
  auto a3 = Subscribe(a);
  ASSERT_TRUE(StreamsAre(3));
  // The open streams still work.
  auto c = WsClient::Connect(server_->ws_port(), "/ws/circles/x?ack=1&token=" + Token("client"));
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->RecvEvent().is_object());
  c->Send(R"({"type":"message","content":"hi"})");
  for (auto* s : {a2.get(), a3.get(), b1.get()}) {
    pb::ClientMessage m;
    ASSERT_TRUE(s->reader->Read(&m));
    EXPECT_EQ(m.channel(), "circles/x");
  }
  for (auto* s : {a2.get(), a3.get(), b1.get()}) s->Finish();
  EXPECT_TRUE(StreamsAre(0));
}

TEST_F(RpcLimitsTest, AnonymousCallersAreOneIdentity) {
  app::ServerConfig cfg;
  cfg.rpc.max_subscribe_streams_per_identity = 2;
  ASSERT_NO_FATAL_FAILURE(Start(cfg, /*auth=*/false));
  auto s1 = Subscribe(""), s2 = Subscribe("");
  ASSERT_TRUE(StreamsAre(2));
  EXPECT_EQ(RefusedSubscribe("", {"*"}).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  s1->Finish();
  s2->Finish();
  EXPECT_TRUE(StreamsAre(0));
}

TEST_F(RpcLimitsTest, AHotKeyKeepsItsLimitWhileOtherKeysChurn) {
  app::ServerConfig cfg;
  cfg.rpc.publish_rate_per_key = 0.001;  // no refill during the test
  cfg.rpc.publish_burst_per_key = 2;
  cfg.rpc.publish_bucket_keys = 100;
  ASSERT_NO_FATAL_FAILURE(Start(cfg));
  const std::string hot = Token("hot");
  ASSERT_TRUE(Publish(hot, "circles/x").ok());
  ASSERT_TRUE(Publish(hot, "circles/x").ok());
  ASSERT_EQ(Publish(hot, "circles/x").error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Three times the cap in other identities, each new (a full bucket); the hot key stays
  // among the most recently used and so keeps its empty bucket.
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(Publish(Token("cold-" + std::to_string(i)), "circles/x").ok()) << i;
    if (i % 40 == 39) {
      ASSERT_EQ(Publish(hot, "circles/x").error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << "the hot key's limit was reset after " << i + 1 << " other keys";
    }
  }
  // The least recently used were forgotten: cold-0 starts again with a full bucket.
  EXPECT_TRUE(Publish(Token("cold-0"), "circles/x").ok());
  EXPECT_TRUE(Publish(Token("cold-0"), "circles/x").ok());
}

// SIGHUP's path (BridgeServer::Reload): the publish rate changes at once, every bucket full again.
TEST_F(RpcLimitsTest, AReloadedPublishRateAppliesToTheNextCall) {
  app::ServerConfig cfg;
  cfg.rpc.publish_rate_per_key = 0.001;  // no refill during the test
  cfg.rpc.publish_burst_per_key = 1;
  ASSERT_NO_FATAL_FAILURE(Start(cfg));
  const std::string key = Token("reloaded");
  ASSERT_TRUE(Publish(key, "circles/x").ok());
  ASSERT_EQ(Publish(key, "circles/x").error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  app::ServerConfig next = cfg_;
  next.rpc.publish_burst_per_key = 3;
  ASSERT_TRUE(server_->Reload(next).ok());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(Publish(key, "circles/x").ok()) << i;
  EXPECT_EQ(Publish(key, "circles/x").error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  next.rpc.publish_rate_per_key = 0;  // no limit
  ASSERT_TRUE(server_->Reload(next).ok());
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(Publish(key, "circles/x").ok()) << i;
}

// A lowered bucket count forgets the least recently publishing identities at once; the others
// keep their buckets (the rate did not change: nothing is refilled).
TEST_F(RpcLimitsTest, AReloadedBucketCountForgetsTheLeastRecentIdentities) {
  app::ServerConfig cfg;
  cfg.rpc.publish_rate_per_key = 0.001;  // no refill during the test
  cfg.rpc.publish_burst_per_key = 1;
  cfg.rpc.publish_bucket_keys = 100;
  ASSERT_NO_FATAL_FAILURE(Start(cfg));
  const std::string a = Token("a"), b = Token("b"), c = Token("c");
  for (const std::string* key : {&a, &b, &c}) ASSERT_TRUE(Publish(*key, "circles/x").ok());
  ASSERT_EQ(Publish(a, "circles/x").error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  app::ServerConfig next = cfg_;
  next.rpc.publish_bucket_keys = 1;
  ASSERT_TRUE(server_->Reload(next).ok());
  // "a" (refused last, so the most recent) is kept with its empty bucket; b and c are forgotten
  // and start full.
  EXPECT_EQ(Publish(a, "circles/x").error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(Publish(b, "circles/x").ok());
  EXPECT_EQ(server_->Reload(next).code(), absl::StatusCode::kOk);
  EXPECT_EQ(Publish(b, "circles/x").error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << "a reload that leaves the rate alone refilled the buckets";
}

// SIGHUP's path: a lowered Subscribe stream maximum refuses new streams and ends none.
TEST_F(RpcLimitsTest, AReloadedStreamMaximumRefusesNewStreamsAndKeepsTheOpenOnes) {
  app::ServerConfig cfg;
  ASSERT_NO_FATAL_FAILURE(Start(cfg));
  const std::string a = "a-key-0123456789abcdef", b = "b-key-0123456789abcdef";
  auto a1 = Subscribe(a), b1 = Subscribe(b);
  ASSERT_TRUE(StreamsAre(2));
  app::ServerConfig next = cfg_;
  next.rpc.max_subscribe_streams = 1;
  ASSERT_TRUE(server_->Reload(next).ok());
  grpc::Status refused = RefusedSubscribe("c-key-0123456789abcdef", {"circles/*"});
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused.error_message().find("(at most 1)"), std::string::npos)
      << refused.error_message();
  // Both open streams still receive; one closing leaves one: still at the bound.
  auto c = WsClient::Connect(server_->ws_port(), "/ws/circles/x?ack=1&token=" + Token("client"));
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->RecvEvent().is_object());
  c->Send(R"({"type":"message","content":"hi"})");
  for (auto* s : {a1.get(), b1.get()}) {
    pb::ClientMessage m;
    ASSERT_TRUE(s->reader->Read(&m));
    EXPECT_EQ(m.channel(), "circles/x");
  }
  b1->Finish();
  ASSERT_TRUE(StreamsAre(1));
  EXPECT_EQ(RefusedSubscribe(b, {"circles/*"}).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  a1->Finish();
  ASSERT_TRUE(StreamsAre(0));
  auto b2 = Subscribe(b);
  EXPECT_TRUE(StreamsAre(1));
  b2->Finish();
}

TEST_F(RpcLimitsTest, InvalidRequestsAreInvalidArgumentWhateverTheGrants) {
  ASSERT_NO_FATAL_FAILURE(Start({}));
  const std::string narrow = "narrow-key-0123456789";
  // "circles" has no name, "nope" is no namespace, a space is not allowed: the request is
  // wrong, which comes before whether the key covers it.
  for (const char* bad : {"circles", "nope/x", "circles/bad name", "", "workspace"}) {
    EXPECT_EQ(Publish(narrow, bad).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
  }
  EXPECT_EQ(Publish(narrow, "workspace/1").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Publish(narrow, "circles/ok").ok());

  {
    pb::PublishStreamResponse resp;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + narrow);
    auto writer = stub_->PublishStream(&ctx, &resp);
    for (const char* ch : {"nope/x", "workspace/1", "circles"}) {
      pb::PublishRequest req;
      req.mutable_event()->set_channel(ch);
      req.mutable_event()->mutable_agent_message()->set_content("x");
      ASSERT_TRUE(writer->Write(req));
    }
    writer->WritesDone();
    ASSERT_TRUE(writer->Finish().ok());
    ASSERT_EQ(resp.rejections_size(), 3);
    EXPECT_EQ(resp.rejections(0).code(), "INVALID_ARGUMENT");
    EXPECT_EQ(resp.rejections(1).code(), "PERMISSION_DENIED");
    EXPECT_EQ(resp.rejections(2).code(), "INVALID_ARGUMENT");
  }

  auto history = [&](const std::string& channel) {
    pb::HistoryRequest req;
    req.set_channel(channel);
    pb::HistoryResponse resp;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + narrow);
    return stub_->History(&ctx, req, &resp).error_code();
  };
  auto presence = [&](const std::string& channel) {
    pb::PresenceRequest req;
    req.set_channel(channel);
    pb::PresenceResponse resp;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + narrow);
    return stub_->Presence(&ctx, req, &resp).error_code();
  };
  for (const char* bad : {"nope/x", "workspace", "circles/a b"}) {
    EXPECT_EQ(history(bad), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_EQ(presence(bad), grpc::StatusCode::INVALID_ARGUMENT) << bad;
  }
  EXPECT_EQ(history("workspace/1"), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(presence("workspace/1"), grpc::StatusCode::PERMISSION_DENIED);

  // Subscribe: every pattern is validated before any grant.
  EXPECT_EQ(RefusedSubscribe(narrow, {"workspace/1", "circles*"}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(RefusedSubscribe(narrow, {"workspace/*", "nope/*"}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(RefusedSubscribe(narrow, {"circles/*", "workspace/*"}).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Without credentials it is still UNAUTHENTICATED first.
  EXPECT_EQ(Publish("", "nope/x").error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(RpcLimitsTest, IdleChannelsAreFreedAndComeBackWithANewEpoch) {
  app::ServerConfig cfg;
  cfg.sweep_interval = std::chrono::milliseconds(20);
  cfg.channel_idle_timeout = std::chrono::milliseconds(100);
  auto ns = core::NamespaceRegistry::Parse("rooms:history=0,logs:history=10:ttl=1");
  ASSERT_TRUE(ns.ok()) << ns.status();
  cfg.namespaces = *ns;
  ASSERT_NO_FATAL_FAILURE(Start(cfg, /*auth=*/false));
  core::Metrics& metrics = server_->metrics();

  // No history, no subscribers: the sweep frees it, and the next publish starts it again.
  pb::PublishResponse first, second;
  ASSERT_TRUE(Publish("", "rooms/a", &first).ok());
  EXPECT_EQ(first.offset(), 1u);
  EXPECT_EQ(first.epoch().size(), 12u);
  ASSERT_TRUE(WaitFor([&] { return metrics.channels_evicted_total.load() >= 1; }));
  ASSERT_TRUE(Publish("", "rooms/a", &second).ok());
  EXPECT_EQ(second.offset(), 1u);
  EXPECT_NE(second.epoch(), first.epoch());

  // A client resuming with the old epoch is told its offsets restarted.
  auto c = WsClient::Connect(server_->ws_port(), "/ws/rooms/a?since=1&epoch=" + first.epoch());
  ASSERT_NE(c, nullptr);
  auto subscribed = c->RecvEvent();
  ASSERT_TRUE(subscribed.is_object());
  EXPECT_EQ(subscribed.at("type").as_string(), "subscribed");
  EXPECT_FALSE(subscribed.at("recovered").as_bool());
  EXPECT_NE(subscribed.at("epoch").as_string(), first.epoch());

  // History that expires is freed by the sweep although nobody touches the channel; History
  // and Publish agree on the channel's epoch while it lives.
  pb::PublishResponse logged;
  ASSERT_TRUE(Publish("", "logs/x", &logged).ok());
  {
    pb::HistoryRequest req;
    req.set_channel("logs/x");
    pb::HistoryResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->History(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.epoch(), logged.epoch());
    EXPECT_EQ(resp.messages_size(), 1);
  }
  ASSERT_GT(metrics.history_bytes_current.load(), 0);
  EXPECT_TRUE(WaitFor([&] { return metrics.history_bytes_current.load() == 0; }, 5s));
  EXPECT_TRUE(WaitFor([&] { return metrics.channels_current.load() == 1; }))  // rooms/a (c)
      << metrics.channels_current.load();
}

}  // namespace
}  // namespace bridge::testing
