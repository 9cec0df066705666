// The admin listener against a real bridge on loopback: metrics and health on its own port, the
// dashboard behind an admin token when auth is on, the live feed's frames, and its bounds (feed
// limit, a dashboard that stops reading is dropped while the others keep their feed).
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <map>
#include <thread>

#include "auth/mint.h"
#include "auth/verifier.h"
#include "test_support.h"

namespace bridge::testing {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = boost::asio::ip::tcp;

const std::string kSecret = "0123456789abcdef0123456789abcdef-admin-secret";

struct HttpAnswer {
  int status = 0;  // 0: no answer
  std::string body;
  std::string www_authenticate;
  std::string content_security_policy;
};

HttpAnswer Get(uint16_t port, const std::string& target, const std::string& authorization = "") {
  boost::asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  beast::error_code ec;
  stream.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port), ec);
  if (ec) return {};
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!authorization.empty()) req.set(http::field::authorization, authorization);
  http::write(stream, req, ec);
  if (ec) return {};
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  stream.expires_after(5s);
  http::read(stream, buf, res, ec);
  if (ec) return {};
  return HttpAnswer{static_cast<int>(res.result_int()), res.body(),
                    std::string(res[http::field::www_authenticate]),
                    std::string(res["Content-Security-Policy"])};
}

app::ServerConfig WithAdmin(std::chrono::milliseconds interval = 50ms) {
  app::ServerConfig c;
  admin::AdminOptions a;
  a.sample_interval = interval;
  c.admin = a;
  return c;
}

// Reads feed frames until one of `type` satisfies `pred`, within `timeout`.
json::value AwaitFrame(WsClient& feed, const char* type,
                       const std::function<bool(const json::object&)>& pred,
                       std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  json::value last;
  while (std::chrono::steady_clock::now() < deadline) {
    json::value v = feed.RecvJson(1s);
    if (!v.is_object()) {
      if (feed.closed()) break;
      continue;
    }
    last = v;
    if (v.at("type") == type && pred(v.as_object())) return v;
  }
  ADD_FAILURE() << "no " << type << " frame as expected within " << timeout.count()
                << " ms; last: " << json::serialize(last);
  return nullptr;
}

TEST(AdminTest, OffUnlessConfigured) {
  auto server = StartBridge();
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->admin_port(), 0);
}

TEST(AdminTest, ServesMetricsHealthAndTheDashboardOnItsOwnPort) {
  auto server = StartBridge(WithAdmin());
  ASSERT_NE(server, nullptr);
  const uint16_t admin = server->admin_port();
  ASSERT_NE(admin, 0);
  EXPECT_NE(admin, server->ws_port());

  HttpAnswer metrics = Get(admin, "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("bridge_connections_current "), std::string::npos);
  // The same answers as the public listener's.
  std::string public_health;
  EXPECT_EQ(HttpStatus(server->ws_port(), "/healthz", false, &public_health), 200);
  HttpAnswer health = Get(admin, "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, public_health);
  EXPECT_EQ(Get(admin, "/readyz").status, 200);

  HttpAnswer page = Get(admin, "/admin");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("<title>gathering-bridge admin</title>"), std::string::npos);
  EXPECT_NE(page.content_security_policy.find("frame-ancestors 'none'"), std::string::npos);
  EXPECT_EQ(Get(admin, "/nope").status, 404);
  // A plain GET of the feed is told to upgrade.
  EXPECT_EQ(Get(admin, "/admin/ws").status, 426);
  // The public listener does not serve the dashboard.
  EXPECT_EQ(HttpStatus(server->ws_port(), "/admin"), 404);
}

TEST(AdminTest, FeedSendsSamplesWithConnectionsBusiestChannelsAndCloses) {
  auto server = StartBridge(WithAdmin());
  ASSERT_NE(server, nullptr);
  auto client = WsClient::Connect(server->ws_port(), "/ws/circles/watched?ack=1");
  ASSERT_NE(client, nullptr);
  ASSERT_EQ(client->RecvEvent().at("type"), "subscribed");
  // The feed first: samples taken while no dashboard is open are not replayed.
  auto feed = WsClient::Connect(server->admin_port(), "/admin/ws");
  ASSERT_NE(feed, nullptr);
  json::value history = feed->RecvJson();
  ASSERT_TRUE(history.is_object());
  EXPECT_EQ(history.at("type"), "history");
  EXPECT_TRUE(history.at("points").is_array());

  auto stub = MakeStub(server->grpc_port());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(PublishMessage(*stub, "circles/busy", 1, "x").ok());
  ASSERT_TRUE(PublishMessage(*stub, "circles/quiet", 1, "x").ok());
  // A close the feed must report: a frame over --max_frame_bytes is closed 1009.
  auto big = WsClient::Connect(server->ws_port(), "/ws/circles/big");
  ASSERT_NE(big, nullptr);
  big->Send(std::string(128 * 1024, 'x'));
  EXPECT_EQ(big->AwaitClose(), 1009);

  // Each sample counts the publishes of its own interval: add them up until all five are seen,
  // and until a sample lists the 1009 close (the first one may predate it).
  std::map<std::string, int64_t> published;
  bool saw_1009 = false;
  json::value sample = AwaitFrame(*feed, "sample", [&](const json::object& f) {
    for (const auto& b : f.at("busiest").as_array()) {
      published[std::string(b.at("channel").as_string())] += b.at("messages").to_number<int64_t>();
    }
    for (const auto& c : f.at("closes").as_array()) {
      saw_1009 = saw_1009 ||
                 (c.at("code").to_number<int64_t>() == 1009 && c.at("reason") == "frame too big");
    }
    return published["circles/busy"] >= 5 && saw_1009;
  });
  ASSERT_TRUE(sample.is_object());
  EXPECT_EQ(published["circles/busy"], 5);
  EXPECT_EQ(published["circles/quiet"], 1);
  const json::object& s = sample.as_object();
  for (const char* field :
       {"time", "interval_ms", "node", "status", "connections", "subscriptions", "channels",
        "rates", "totals", "busiest", "closes", "broker", "nodes"}) {
    EXPECT_TRUE(s.contains(field)) << field;
  }
  EXPECT_EQ(s.at("status"), "ok");
  EXPECT_GE(s.at("connections").to_number<int64_t>(), 1);
  EXPECT_GE(s.at("subscriptions").to_number<int64_t>(), 1);
  EXPECT_EQ(s.at("totals").at("published").to_number<int64_t>(), 6);
  EXPECT_EQ(s.at("broker").at("mode"),
            std::getenv("BRIDGE_TEST_BROKER") != nullptr ? "memory" : "embedded");

  // The rates follow what happens next.
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(PublishMessage(*stub, "circles/watched", 1, "y").ok());
  AwaitFrame(*feed, "sample", [](const json::object& f) {
    return f.at("totals").at("published").to_number<int64_t>() == 26 &&
           f.at("busiest").as_array().empty();  // the interval after the publishes
  });
}

TEST(AdminTest, FeedsAreBoundedAndADashboardThatStopsReadingIsDropped) {
  app::ServerConfig c = WithAdmin(5ms);
  c.admin->max_feeds = 2;
  // A new feed starts with two frames queued (history, last sample): four leave a reader that
  // keeps up some room, and drop one that reads nothing within a few samples.
  c.admin->max_feed_queue_frames = 4;
  auto server = StartBridge(c);
  ASSERT_NE(server, nullptr);
  // One dashboard reads on its own thread for the whole test, so it is never the slow one.
  auto healthy = WsClient::Connect(server->admin_port(), "/admin/ws");
  ASSERT_NE(healthy, nullptr);
  std::atomic<int> healthy_frames{0};
  std::jthread reader([&](std::stop_token stop) {  // stopped and joined on every way out
    while (!stop.stop_requested() && !healthy->closed()) {
      if (healthy->Recv(200ms)) ++healthy_frames;
    }
  });

  // The limit, checked while samples are still small (no socket fills up in the meantime).
  auto second = WsClient::Connect(server->admin_port(), "/admin/ws");
  ASSERT_NE(second, nullptr);
  std::string error;
  EXPECT_EQ(WsClient::Connect(server->admin_port(), "/admin/ws", &error), nullptr);
  EXPECT_EQ(HttpStatus(server->admin_port(), "/admin/ws", true), 503);
  second->Close();

  // Samples carry up to 50 closes: make them large, so that a stalled reader fills its socket
  // buffers quickly.
  for (int i = 0; i < 50; ++i) {
    auto w = WsClient::Connect(server->ws_port(), "/ws/circles/churn");
    ASSERT_NE(w, nullptr);
    w->Send(std::string(128 * 1024, 'x'));
    ASSERT_EQ(w->AwaitClose(), 1009);
  }
  // The second's slot goes to a dashboard that reads nothing.
  std::unique_ptr<WsClient> stalled;
  ASSERT_TRUE(WaitFor(
      [&] {
        stalled = WsClient::Connect(server->admin_port(), "/admin/ws", nullptr, 4096);
        return stalled != nullptr;
      },
      10s))
      << "the slot of a dashboard that closed was not freed within 10 s";

  // The stalled one is dropped once its queue is full; its slot is free again, and a
  // third dashboard gets in.
  std::unique_ptr<WsClient> third;
  ASSERT_TRUE(WaitFor(
      [&] {
        third = WsClient::Connect(server->admin_port(), "/admin/ws");
        return third != nullptr;
      },
      10s))
      << "the stalled dashboard was not dropped within 10 s";
  EXPECT_TRUE(third->RecvJson().is_object());
  // What the stalled one had buffered ends with the server's cut, not with more samples.
  int frames = 0;
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < give_up && stalled->Recv(2s)) ++frames;
  EXPECT_TRUE(stalled->closed()) << "still receiving after " << frames << " frames";
  // The reader kept its feed throughout.
  const int before = healthy_frames;
  EXPECT_TRUE(WaitFor([&] { return healthy_frames > before; }, 5s));
  EXPECT_FALSE(healthy->closed()) << "the dashboard that reads was dropped too";
}

TEST(AdminTest, UpgradesAtOnceNeverOpenMoreFeedsThanTheLimit) {
  app::ServerConfig c = WithAdmin(1s);
  c.admin->max_feeds = 2;
  auto server = StartBridge(c);
  ASSERT_NE(server, nullptr);
  // A slot is taken when the 101 is queued, not when it has been written: twelve upgrades sent
  // together get two feeds and ten 503s.
  std::vector<std::unique_ptr<WsClient>> got(12);
  std::vector<std::thread> threads;
  for (auto& g : got) {
    threads.emplace_back(
        [&g, port = server->admin_port()] { g = WsClient::Connect(port, "/admin/ws"); });
  }
  for (auto& t : threads) t.join();
  int open = 0;
  for (const auto& g : got) open += g != nullptr;
  EXPECT_EQ(open, 2);
}

class AdminAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auth::VerifierConfig v;
    v.hs256_secret = kSecret;
    auto verifier = auth::TokenVerifier::Create(v);
    ASSERT_TRUE(verifier.ok()) << verifier.status();
    app::ServerConfig c = WithAdmin();
    std::shared_ptr<const auth::TokenVerifier> shared(std::move(*verifier));
    c.auth.verifier = shared;
    c.rpc.auth.verifier = shared;
    server_ = StartBridge(c);
    ASSERT_NE(server_, nullptr);
  }
  static std::string Token(bool admin) {
    auth::MintOptions m;
    m.subject = admin ? "operator" : "alice";
    m.channels = {"*"};
    m.admin = admin;
    m.hs256_secret = kSecret;
    auto t = auth::MintToken(m, std::chrono::system_clock::now());
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : "";
  }
  std::unique_ptr<app::BridgeServer> server_;
};

TEST_F(AdminAuthTest, DashboardAndFeedNeedATokenWithTheAdminGrant) {
  const uint16_t port = server_->admin_port();
  HttpAnswer none = Get(port, "/admin");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.www_authenticate, "Bearer realm=\"admin\"");
  EXPECT_EQ(Get(port, "/admin", "Bearer not-a-token").status, 401);
  EXPECT_EQ(Get(port, "/admin", "Basic b3A6cHc=").status, 401);
  HttpAnswer user = Get(port, "/admin", "Bearer " + Token(false));
  EXPECT_EQ(user.status, 403);
  EXPECT_NE(user.body.find("no admin grant"), std::string::npos) << user.body;
  EXPECT_EQ(Get(port, "/admin", "Bearer " + Token(true)).status, 200);
  EXPECT_EQ(Get(port, "/admin?token=" + Token(true)).status, 200);

  EXPECT_EQ(WsClient::Connect(port, "/admin/ws"), nullptr);
  EXPECT_EQ(HttpStatus(port, "/admin/ws", true), 401);
  EXPECT_EQ(HttpStatus(port, "/admin/ws?token=" + Token(false), true), 403);
  auto feed = WsClient::Connect(port, "/admin/ws?token=" + Token(true));
  ASSERT_NE(feed, nullptr);
  EXPECT_EQ(feed->RecvJson().at("type"), "history");

  // Metrics and health need none (the listener is meant for a private address).
  EXPECT_EQ(Get(port, "/metrics").status, 200);
  EXPECT_EQ(Get(port, "/healthz").status, 200);
  EXPECT_EQ(Get(port, "/readyz").status, 200);
}

}  // namespace
}  // namespace bridge::testing
