// Who may connect, publish and subscribe: tokens over WebSocket and gRPC, grants, expiry, and
// hostile clients answered while a well-behaved client keeps receiving everything.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "auth/api_keys.h"
#include "auth/base64url.h"
#include "auth/mint.h"
#include "auth/verifier.h"
#include "core/frame.h"
#include "core/namespaces.h"
#include "core/strings.h"
#include "test_support.h"

namespace bridge::testing {
namespace {

namespace pb = gathering::bridge::v1;

const std::string kSecret = "0123456789abcdef0123456789abcdef-test-secret";

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(Start({})); }
  void Start(app::ServerConfig cfg, std::chrono::seconds leeway = std::chrono::seconds(0)) {
    server_.reset();
    auth::VerifierConfig v;
    v.hs256_secret = kSecret;
    v.audience = "bridge";
    v.leeway = leeway;
    auto verifier = auth::TokenVerifier::Create(v);
    ASSERT_TRUE(verifier.ok()) << verifier.status();
    std::shared_ptr<const auth::TokenVerifier> shared(std::move(*verifier));
    cfg.auth.verifier = shared;
    cfg.auth.auth_timeout = 300ms;
    cfg.rpc.auth.verifier = shared;
    auto keys = auth::ApiKeys::Parse("backend-key-0123456789 billing circles/*\n", "test");
    ASSERT_TRUE(keys.ok()) << keys.status();
    cfg.rpc.auth.api_keys = std::make_shared<const auth::ApiKeys>(std::move(*keys));
    cfg.ws.origins.auth_enabled = true;
    server_.reset();
    server_ = StartBridge(cfg);
    ASSERT_NE(server_, nullptr);
    stub_ = MakeStub(server_->grpc_port());
  }
  static std::string Token(
      const std::string& sub, std::vector<std::string> channels,
      std::vector<std::string> publish = {}, std::chrono::seconds ttl = std::chrono::hours(1),
      std::chrono::system_clock::time_point now = std::chrono::system_clock::now(),
      const std::string& audience = "bridge") {
    auth::MintOptions m;
    m.subject = sub;
    m.channels = std::move(channels);
    m.publish = std::move(publish);
    m.ttl = ttl;
    m.hs256_secret = kSecret;
    m.audience = audience;
    auto t = auth::MintToken(m, now);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : "";
  }
  std::unique_ptr<WsClient> Connect(const std::string& target) {
    auto c = WsClient::Connect(server_->ws_port(), target);
    EXPECT_NE(c, nullptr) << target;
    return c;
  }
  grpc::Status PublishWith(const std::string& bearer, const std::string& channel) {
    pb::PublishRequest req;
    req.mutable_event()->set_channel(channel);
    req.mutable_event()->mutable_agent_message()->set_content("x");
    pb::PublishResponse resp;
    grpc::ClientContext ctx;
    if (!bearer.empty()) ctx.AddMetadata("authorization", "Bearer " + bearer);
    return stub_->Publish(&ctx, req, &resp);
  }

  std::unique_ptr<app::BridgeServer> server_;
  std::unique_ptr<pb::EventService::Stub> stub_;
};

TEST_F(AuthTest, QueryTokenSubscribesAndIdentityIsTheSubject) {
  auto c = Connect("/ws/circles/dev-team?ack=1&token=" + Token("alice", {"circles/*"}));
  auto a = c->RecvJson();
  EXPECT_EQ(a.at("type"), "authenticated");
  EXPECT_EQ(a.at("identity"), "alice");
  EXPECT_EQ(c->RecvJson().at("type"), "subscribed");
  ASSERT_TRUE(PublishWith("backend-key-0123456789", "circles/dev-team").ok());
  auto v = c->RecvEvent();
  // alice's own join comes first (circles have presence), then the event.
  EXPECT_EQ(v.at("type"), "agent_joined");
  EXPECT_EQ(v.at("data").at("identity"), "alice");
  EXPECT_EQ(c->RecvEvent().at("type"), "agent_message");
}

TEST_F(AuthTest, FirstFrameAuthNothingBeforeIt) {
  auto c = Connect("/ws/circles/x?ack=1");
  // Published before the client authenticated: never sent to it.
  ASSERT_TRUE(PublishWith("backend-key-0123456789", "circles/x").ok());
  c->Send(R"({"type":"auth","token":")" + Token("bob", {"circles/x"}) + R"("})");
  EXPECT_EQ(c->RecvJson().at("type"), "authenticated");
  auto sub = c->RecvJson();
  EXPECT_EQ(sub.at("type"), "subscribed");
  EXPECT_EQ(sub.at("offset"), 1);  // the earlier event exists, but was not delivered
  c->Send(R"({"type":"ping"})");
  auto next = c->RecvEvent();
  if (next.at("type") == "agent_joined") next = c->RecvEvent();
  EXPECT_EQ(next.at("type"), "pong");
}

TEST_F(AuthTest, MissingTokenClosesWith4001AfterTheAuthTimeout) {
  auto c = Connect("/ws/circles/x");
  EXPECT_EQ(c->AwaitClose(5s), 4001);
}

TEST_F(AuthTest, FramesBeforeAuthClose4001) {
  auto c = Connect("/ws/circles/x");
  c->Send(R"({"type":"subscribe","channel":"circles/y"})");
  EXPECT_EQ(c->AwaitClose(), 4001);
}

TEST_F(AuthTest, BadTokensClose4001) {
  auto now = std::chrono::system_clock::now();
  std::string good = Token("eve", {"circles/*"});
  std::string tampered = good;
  tampered.back() = tampered.back() == 'A' ? 'B' : 'A';
  std::string none =
      auth::internal::Base64UrlEncode(R"({"alg":"none","typ":"JWT"})") + "." +
      auth::internal::Base64UrlEncode(R"({"sub":"eve","exp":9999999999,"aud":"bridge"})") + ".";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"garbage", "not-a-token"},
      {"tampered", tampered},
      {"alg none", none},
      {"expired", Token("eve", {"circles/*"}, {}, std::chrono::hours(1), now - 2h)},
      {"wrong audience", Token("eve", {"circles/*"}, {}, 1h, now, "someone-else")},
  };
  for (const auto& [name, token] : cases) {
    auto c = Connect("/ws/circles/x?token=" + token);
    EXPECT_EQ(c->AwaitClose(), 4001) << name;
  }
  EXPECT_GE(server_->metrics().auth_failures_total.load(), 5u);
}

TEST_F(AuthTest, ChannelOutsideGrantsIs4003OrForbiddenFrame) {
  auto c = Connect("/ws/workspace/1?token=" + Token("carol", {"circles/*"}));
  EXPECT_EQ(c->AwaitClose(), 4003);
  auto m = Connect("/ws?token=" + Token("carol", {"circles/*"}));
  EXPECT_EQ(m->RecvJson().at("type"), "authenticated");
  m->Send(R"({"type":"subscribe","channel":"workspace/1"})");
  auto e = m->RecvJson();
  EXPECT_EQ(e.at("type"), "error");
  EXPECT_EQ(e.at("data").at("code"), "forbidden");
  m->Send(R"({"type":"subscribe","channel":"circles/ok"})");
  EXPECT_EQ(m->RecvJson().at("type"), "subscribed");
}

TEST_F(AuthTest, ExpiryClosesUnlessRefreshedInBand) {
  auto c = Connect("/ws/agents/1?token=" + Token("dave", {"agents/*"}, {}, 1s));
  EXPECT_EQ(c->RecvJson().at("type"), "authenticated");
  EXPECT_EQ(c->AwaitClose(5s), 4001);

  auto r = Connect("/ws/agents/1?token=" + Token("dave", {"agents/*"}, {}, 1s));
  EXPECT_EQ(r->RecvJson().at("type"), "authenticated");
  r->Send(R"({"type":"auth","token":")" + Token("dave", {"agents/*"}) + R"("})");
  EXPECT_EQ(r->RecvJson().at("type"), "authenticated");
  // Past the first token's expiry the connection still answers.
  std::this_thread::sleep_for(1500ms);  // no event marks "the old expiry passed": a bounded wait
  r->Send(R"({"type":"ping"})");
  EXPECT_EQ(r->RecvEvent().at("type"), "pong");
  // A refresh for another subject is refused and changes nothing.
  r->Send(R"({"type":"auth","token":")" + Token("mallory", {"agents/*"}) + R"("})");
  EXPECT_EQ(r->RecvEvent().at("data").at("code"), "unauthenticated");
}

TEST_F(AuthTest, GrpcCallsNeedCredentialsAndGrants) {
  EXPECT_EQ(PublishWith("", "circles/x").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(PublishWith("wrong-key-0123456789", "circles/x").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(PublishWith("backend-key-0123456789", "circles/x").ok());
  EXPECT_EQ(PublishWith("backend-key-0123456789", "workspace/1").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  std::string jwt = Token("svc", {}, {"workspace/*"});
  EXPECT_TRUE(PublishWith(jwt, "workspace/1").ok());
  EXPECT_EQ(PublishWith(jwt, "circles/x").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  auto expired = Token("svc", {}, {"workspace/*"}, 1h, std::chrono::system_clock::now() - 2h);
  EXPECT_EQ(PublishWith(expired, "workspace/1").error_code(), grpc::StatusCode::UNAUTHENTICATED);

  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer backend-key-0123456789");
  pb::SubscribeRequest req;
  req.add_channels("*");
  auto reader = stub_->Subscribe(&ctx, req);
  pb::ClientMessage m;
  EXPECT_FALSE(reader->Read(&m));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(AuthTest, HostileClientsAreAnsweredWhileAGoodClientMissesNothing) {
  app::ServerConfig cfg;
  cfg.ws.max_frame_bytes = 4096;
  cfg.ws.client_message_rate = 10;
  cfg.ws.client_message_burst = 20;
  cfg.ws.max_connections_per_ip = 3;
  cfg.ws.per_ip_exempt_loopback = false;
  cfg.ws.origins.allowed = {"https://app.example"};
  ASSERT_NO_FATAL_FAILURE(Start(cfg));
  auto good = Connect("/ws/circles/room?ack=1&token=" + Token("good", {"circles/*"}));
  good->RecvJson();
  good->RecvJson();
  good->RecvEvent();  // its own join

  // A flood of client messages: one error frame, then 4008.
  auto flooder = Connect("/ws/circles/other?token=" + Token("flood", {"circles/*"}, {"circles/*"}));
  for (int i = 0; i < 200; ++i) flooder->Send(R"({"type":"m"})");
  bool saw_rate_error = false;
  for (;;) {
    auto v = flooder->RecvJson();
    if (!v.is_object()) break;
    if (v.at("type") == "error" && v.at("data").at("code") == "rate_limited") saw_rate_error = true;
  }
  EXPECT_TRUE(saw_rate_error);
  EXPECT_EQ(flooder->close_code(), 4008);

  // A huge frame: 1009.
  auto big = Connect("/ws/circles/other?token=" + Token("big", {"circles/*"}));
  big->Send(std::string(10000, ' '));
  EXPECT_EQ(big->AwaitClose(), 1009);

  // A bad Origin: 403 before any upgrade (a cross-site page gets no WebSocket at all).
  EXPECT_EQ(HttpStatusWithOrigin(server_->ws_port(), "/ws/circles/room", "https://evil.example"),
            403);
  // Too many from one address: `good` holds one slot; two more fit, the fourth is refused. The
  // connections above hold slots until the server has seen them go (every TCP connection counts).
  ASSERT_TRUE(WaitFor([&] {
    return server_->metrics().connections_current.load() == 1 &&
           server_->metrics().http_connections_current.load() == 0;
  })) << "the refused connections' slots were not released";
  auto s1 = Connect("/ws/circles/a?token=" + Token("x", {"circles/*"}));
  auto s2 = Connect("/ws/circles/a?token=" + Token("x", {"circles/*"}));
  ASSERT_TRUE(WaitFor([&] { return server_->metrics().connections_current.load() >= 3; }));
  Refusal per_ip = RefuseUpgrade(server_->ws_port(), "/ws/circles/a");
  EXPECT_EQ(per_ip.close_code, 4429);
  EXPECT_EQ(per_ip.reason, "too many connections from this address");
  EXPECT_EQ(HttpStatus(server_->ws_port(), "/healthz"), 429);

  for (int i = 0; i < 50; ++i)
    ASSERT_TRUE(PublishWith("backend-key-0123456789", "circles/room").ok());
  for (int i = 0; i < 50; ++i) {
    auto v = good->RecvEvent();
    ASSERT_TRUE(v.is_object()) << "good client missed event " << i;
    ASSERT_EQ(v.at("type"), "agent_message");
  }
}

TEST_F(AuthTest, TokenInsideTheLeewayLastsUntilTheLeewayEnds) {
  // exp passed 5 s ago; the verifier's leeway is 30 s: accepted, and the session lasts ~25 s.
  ASSERT_NO_FATAL_FAILURE(Start({}, std::chrono::seconds(30)));
  auto issued = std::chrono::system_clock::now() - std::chrono::hours(1) - 5s;
  auto c = Connect("/ws/agents/1?token=" + Token("late", {"agents/*"}, {}, 1h, issued));
  auto a = c->RecvJson();
  ASSERT_EQ(a.at("type"), "authenticated") << a;
  // RFC 3339 with fixed widths: string order is time order.
  std::string deadline(a.at("expires_at").as_string());
  EXPECT_GT(deadline, core::FormatTimestamp(std::chrono::system_clock::now() + 20s))
      << "expires_at must be the effective deadline (exp + leeway)";
  EXPECT_LT(deadline, core::FormatTimestamp(std::chrono::system_clock::now() + 30s));
  c->Send(R"({"type":"ping"})");
  EXPECT_EQ(c->RecvEvent().at("type"), "pong") << "a token inside the leeway was cut at once";
  EXPECT_FALSE(c->closed());
}

TEST_F(AuthTest, ClientsCannotForgeBridgeFramesNorSendWithoutAPublishGrant) {
  auto reader = Connect("/ws/circles/f?ack=1&token=" + Token("reader", {"circles/*"}));
  ASSERT_EQ(reader->RecvJson().at("type"), "authenticated");
  ASSERT_EQ(reader->RecvJson().at("type"), "subscribed");
  auto forger =
      Connect("/ws/circles/f?ack=1&token=" + Token("forger", {"circles/*"}, {"circles/*"}));
  ASSERT_EQ(forger->RecvJson().at("type"), "authenticated");
  ASSERT_EQ(forger->RecvJson().at("type"), "subscribed");
  for (const char* t :
       {"authenticated", "error", "gap", "subscribed", "unsubscribed", "agent_joined", "custom"}) {
    forger->Send(core::Cat(R"({"type":")", t, R"(","identity":"root"})"));
    auto e = forger->RecvEvent();
    while (e.is_object() && e.at("type") == "agent_joined") e = forger->RecvEvent();
    ASSERT_EQ(e.at("type"), "error") << t;
    EXPECT_EQ(e.at("data").at("code"), "reserved_type") << t;
  }
  // Subscribe grants only: every client message is refused, broadcast or not.
  auto mute = Connect("/ws/circles/f?ack=1&token=" + Token("mute", {"circles/*"}));
  ASSERT_EQ(mute->RecvJson().at("type"), "authenticated");
  ASSERT_EQ(mute->RecvJson().at("type"), "subscribed");
  mute->Send(R"({"type":"chat","text":"spam"})");
  auto e = mute->RecvEvent();
  while (e.is_object() && e.at("type") == "agent_joined") e = mute->RecvEvent();
  ASSERT_TRUE(e.is_object());
  EXPECT_EQ(e.at("type"), "error");
  EXPECT_EQ(e.at("data").at("code"), "forbidden");
  // The reader's next frame after the joins is the forger's legitimate message: nothing forged
  // and nothing from `mute` reached it.
  forger->Send(R"({"type":"chat","text":"hello"})");
  for (;;) {
    auto v = reader->RecvEvent();
    ASSERT_TRUE(v.is_object()) << "the legitimate message never arrived";
    if (v.at("type") == "agent_joined") continue;
    EXPECT_EQ(v.at("type"), "chat") << v;
    EXPECT_EQ(v.at("text"), "hello") << v;
    break;
  }
}

// Namespace auth requirements: with the same grants ("inbox/*" for everyone), each identity
// reaches only its own personal channels, on the path, in subscribe frames and in history frames.
core::NamespaceRegistry PolicyNamespaces() {
  core::NamespaceConfig inbox;
  inbox.name = "inbox";
  inbox.personal_channels = true;
  inbox.history_size = 10;
  core::NamespaceConfig room;
  room.name = "room";
  room.presence = true;
  room.history_size = 10;
  room.client_history = core::ClientReads::kSubscribed;
  room.client_presence = core::ClientReads::kNobody;
  core::NamespaceConfig circles;
  circles.name = "circles";
  circles.history_size = 10;
  auto r = core::NamespaceRegistry::FromList({inbox, room, circles});
  EXPECT_TRUE(r.ok()) << r.status();
  return *r;
}

uint64_t AuthRefusals(app::BridgeServer& s, core::AuthFailure f) {
  return s.metrics().auth_failures[static_cast<size_t>(f)].load();
}

// The next frame that is not an agent_joined/agent_left (presence of other connections).
boost::json::value NextAnswer(WsClient& c) {
  for (;;) {
    auto v = c.RecvEvent();
    if (!v.is_object() || (v.at("type") != "agent_joined" && v.at("type") != "agent_left")) {
      return v;
    }
  }
}

TEST_F(AuthTest, PersonalChannelsAreOnlyTheirOwnersWhateverTheGrants) {
  app::ServerConfig cfg;
  cfg.namespaces = PolicyNamespaces();
  ASSERT_NO_FATAL_FAILURE(Start(cfg));
  const std::string alice = Token("alice", {"inbox/*"});
  // Another identity's channel on the path: 4003 like a channel outside the grants.
  {
    auto b = Connect("/ws/inbox/bob?token=" + alice);
    EXPECT_EQ(b->RecvJson().at("type"), "authenticated");
    EXPECT_EQ(b->AwaitClose(), 4003);
  }
  EXPECT_EQ(AuthRefusals(*server_, core::AuthFailure::kNotOwner), 1u);

  auto a = Connect("/ws/inbox/alice?ack=1&token=" + alice);
  ASSERT_EQ(a->RecvJson().at("type"), "authenticated");
  ASSERT_EQ(a->RecvJson().at("type"), "subscribed");
  for (const char* other : {"inbox/bob", "inbox/alicex", "inbox/bob/alice"}) {
    a->Send(core::Cat(R"({"type":"subscribe","id":1,"channel":")", other, R"("})"));
    auto e = a->RecvEvent();
    ASSERT_EQ(e.at("type"), "error") << other;
    EXPECT_EQ(e.at("data").at("code"), "forbidden") << other;
    EXPECT_NE(std::string(e.at("data").at("message").as_string()).find("personal"),
              std::string::npos)
        << e;
  }
  a->Send(R"({"type":"history","id":2,"channel":"inbox/bob"})");
  auto h = a->RecvEvent();
  EXPECT_EQ(h.at("data").at("code"), "forbidden") << h;
  EXPECT_EQ(AuthRefusals(*server_, core::AuthFailure::kNotOwner), 5u);
  EXPECT_EQ(AuthRefusals(*server_, core::AuthFailure::kForbidden), 0u) << "counted apart";
  EXPECT_EQ(server_->metrics().auth_forbidden_total.load(), 5u);

  // Under its own channel it may go anywhere; backends (not bound by it) reach it.
  a->Send(R"({"type":"subscribe","id":3,"channel":"inbox/alice/drafts"})");
  EXPECT_EQ(a->RecvEvent().at("type"), "subscribed");
  pb::PublishRequest req;
  req.mutable_event()->set_channel("inbox/alice");
  req.mutable_event()->mutable_agent_message()->set_content("for alice");
  pb::PublishResponse resp;
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + Token("svc", {}, {"inbox/*"}));
  ASSERT_TRUE(stub_->Publish(&ctx, req, &resp).ok());
  auto ev = a->RecvEvent();
  EXPECT_EQ(ev.at("channel"), "inbox/alice") << ev;
  EXPECT_EQ(ev.at("data").at("content"), "for alice") << ev;
}

TEST_F(AuthTest, HistoryAndPresenceFramesFollowTheNamespacesReaders) {
  app::ServerConfig cfg;
  cfg.namespaces = PolicyNamespaces();
  ASSERT_NO_FATAL_FAILURE(Start(cfg));
  auto c = Connect("/ws/room/a?ack=1&token=" + Token("carol", {"room/*", "circles/*"}));
  ASSERT_EQ(c->RecvJson().at("type"), "authenticated");
  ASSERT_EQ(c->RecvJson().at("type"), "subscribed");
  // room: history for subscribers only, presence for nobody.
  c->Send(R"({"type":"history","id":1,"channel":"room/b"})");
  auto e = NextAnswer(*c);
  ASSERT_EQ(e.at("type"), "error") << e;
  EXPECT_EQ(e.at("data").at("code"), "forbidden");
  EXPECT_NE(std::string(e.at("data").at("message").as_string()).find("subscribe to room/b first"),
            std::string::npos)
      << e;
  c->Send(R"({"type":"history","id":2,"channel":"room/a"})");
  auto h = NextAnswer(*c);
  EXPECT_EQ(h.at("type"), "history") << h;
  c->Send(R"({"type":"presence","id":3,"channel":"room/a"})");
  auto p = NextAnswer(*c);
  ASSERT_EQ(p.at("type"), "error") << p;
  EXPECT_EQ(p.at("data").at("code"), "forbidden");
  EXPECT_EQ(AuthRefusals(*server_, core::AuthFailure::kNamespaceReads), 2u);
  // circles keeps today's rule: any granted channel, subscribed or not.
  c->Send(R"({"type":"history","id":4,"channel":"circles/elsewhere"})");
  EXPECT_EQ(NextAnswer(*c).at("type"), "history");
  EXPECT_EQ(AuthRefusals(*server_, core::AuthFailure::kNamespaceReads), 2u);
}

}  // namespace
}  // namespace bridge::testing
