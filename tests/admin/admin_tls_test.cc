// The admin listener over TLS against a real bridge on loopback: https:// metrics and health, the
// dashboard's feed over wss://, an admin token accepted over wss://, plain HTTP to the TLS port
// answered with nothing (and the listener still serving), and a renewed certificate served to new
// connections without a restart.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "app/configure.h"
#include "auth/mint.h"
#include "auth/verifier.h"
#include "config/config.h"
#include "test_support.h"
#include "tls_support.h"

namespace bridge::testing {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using tcp = asio::ip::tcp;

const std::string kSecret = "0123456789abcdef0123456789abcdef-admin-tls-secret";

// What a plain-HTTP client gets from the port: the bytes it read before the connection ended,
// and whether it ended (EOF or reset) within 5 s.
struct PlainAnswer {
  std::string bytes;
  bool ended = false;
};

PlainAnswer PlainGet(uint16_t port, const std::string& target) {
  asio::io_context ioc;
  tcp::socket socket(ioc);
  boost::system::error_code ec;
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  if (ec) return {};
  const std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  asio::write(socket, asio::buffer(req), ec);
  PlainAnswer answer;
  std::array<char, 4096> buf{};
  std::function<void()> read = [&] {
    socket.async_read_some(asio::buffer(buf), [&](boost::system::error_code e, size_t n) {
      answer.bytes.append(buf.data(), n);
      if (e) {
        answer.ended = true;
        return;
      }
      read();
    });
  };
  read();
  ioc.run_for(5s);
  return answer;
}

class AdminTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::temp_directory_path() / ("bridge-admin-tls-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    ASSERT_TRUE(MakeTestCertificates(dir_)) << "openssl failed";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  bool Sh(const std::string& commands) {
    std::ofstream(dir_ / "step.sh") << "set -e; cd '" << dir_.string() << "'; " << commands << "\n";
    return std::system(("bash '" + Path("step.sh") + "'").c_str()) == 0;
  }

  app::ServerConfig WithTlsAdmin(const std::string& cert = "server.pem",
                                 const std::string& key = "server.key") {
    app::ServerConfig c;
    admin::AdminOptions a;
    a.sample_interval = 50ms;
    c.admin = a;
    c.admin_tls_cert_file = Path(cert);
    c.admin_tls_key_file = Path(key);
    return c;
  }

  std::filesystem::path dir_;
};

TEST_F(AdminTlsTest, ServesMetricsHealthOverHttpsAndTheFeedOverWss) {
  auto server = StartBridge(WithTlsAdmin());
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->admin_port();
  std::string body;
  EXPECT_EQ(HttpsStatus(port, "/metrics", Path("ca.pem"), &body), 200);
  EXPECT_NE(body.find("bridge_connections_current "), std::string::npos) << body;
  EXPECT_EQ(HttpsStatus(port, "/healthz", Path("ca.pem"), &body), 200);
  EXPECT_EQ(HttpsStatus(port, "/admin", Path("ca.pem"), &body), 200);
  EXPECT_NE(body.find("<title>gathering-bridge admin</title>"), std::string::npos);

  std::string error;
  auto feed = WssClient::Connect(port, "/admin/ws", Path("ca.pem"), &error);
  ASSERT_NE(feed, nullptr) << error;
  json::value history = feed->RecvEvent();
  ASSERT_TRUE(history.is_object()) << "no history frame over wss://";
  EXPECT_EQ(history.at("type"), "history");
  bool sampled = false;
  for (int i = 0; i < 10 && !sampled; ++i) {
    json::value v = feed->RecvEvent();
    ASSERT_TRUE(v.is_object()) << "the wss:// feed ended before a sample";
    sampled = v.at("type") == "sample";
  }
  EXPECT_TRUE(sampled) << "no sample frame over wss://";
  // The public listener stays plain: only the admin port was asked for TLS.
  EXPECT_EQ(HttpStatus(server->ws_port(), "/healthz"), 200);
}

TEST_F(AdminTlsTest, PlainHttpToTheTlsPortGetsNoAnswerAndTheListenerKeepsServing) {
  auto server = StartBridge(WithTlsAdmin());
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->admin_port();
  for (const char* target : {"/healthz", "/metrics", "/admin"}) {
    PlainAnswer plain = PlainGet(port, target);
    EXPECT_TRUE(plain.ended) << target << ": the connection was not closed within 5 s";
    EXPECT_EQ(plain.bytes.find("HTTP/"), std::string::npos)
        << target << ": answered in clear: " << plain.bytes;
    EXPECT_EQ(plain.bytes.find("bridge_"), std::string::npos) << target << ": metrics in clear";
  }
  // A plain WebSocket upgrade is refused too.
  EXPECT_EQ(WsClient::Connect(port, "/admin/ws"), nullptr);
  std::string body;
  EXPECT_EQ(HttpsStatus(port, "/healthz", Path("ca.pem"), &body), 200)
      << "the listener stopped serving after plain-HTTP clients";
  std::string error;
  EXPECT_NE(WssClient::Connect(port, "/admin/ws", Path("ca.pem"), &error), nullptr) << error;
}

TEST_F(AdminTlsTest, AClientThatNeverHandshakesIsCutAtTheHandshakeTimeout) {
  app::ServerConfig c = WithTlsAdmin();
  c.admin->handshake_timeout = 200ms;
  auto server = StartBridge(c);
  ASSERT_NE(server, nullptr);
  asio::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server->admin_port()));
  bool ended = false;
  std::array<char, 64> buf{};
  socket.async_read_some(asio::buffer(buf),
                         [&](boost::system::error_code e, size_t) { ended = e.failed(); });
  ioc.run_for(5s);
  EXPECT_TRUE(ended) << "an idle connection to the TLS admin port was not cut within 5 s";
}

TEST_F(AdminTlsTest, TheAdminTokenIsAcceptedOverWss) {
  auth::VerifierConfig v;
  v.hs256_secret = kSecret;
  auto verifier = auth::TokenVerifier::Create(v);
  ASSERT_TRUE(verifier.ok()) << verifier.status();
  app::ServerConfig c = WithTlsAdmin();
  std::shared_ptr<const auth::TokenVerifier> shared(std::move(*verifier));
  c.auth.verifier = shared;
  c.rpc.auth.verifier = shared;
  auto server = StartBridge(c);
  ASSERT_NE(server, nullptr);
  auth::MintOptions m;
  m.subject = "operator";
  m.channels = {"*"};
  m.admin = true;
  m.hs256_secret = kSecret;
  auto token = auth::MintToken(m, std::chrono::system_clock::now());
  ASSERT_TRUE(token.ok()) << token.status();

  const uint16_t port = server->admin_port();
  std::string body;
  EXPECT_EQ(HttpsStatus(port, "/admin", Path("ca.pem"), &body), 401);
  EXPECT_EQ(HttpsStatus(port, "/admin?token=" + *token, Path("ca.pem"), &body), 200);
  std::string error;
  EXPECT_EQ(WssClient::Connect(port, "/admin/ws", Path("ca.pem"), &error), nullptr);
  auto feed = WssClient::Connect(port, "/admin/ws?token=" + *token, Path("ca.pem"), &error);
  ASSERT_NE(feed, nullptr) << error;
  json::value history = feed->RecvEvent();
  ASSERT_TRUE(history.is_object()) << "no frame over wss:// with the admin token";
  EXPECT_EQ(history.at("type"), "history");
}

// SIGHUP's path (BridgeServer::Reload): the files are read again for new connections; a broken
// pair is refused and the running certificate kept; TLS is not turned off without a restart.
TEST_F(AdminTlsTest, ARenewedCertificateServesNewConnectionsAndABrokenOneIsRefused) {
  ASSERT_TRUE(Sh("cp server.pem live.pem; cp server.key live.key"));
  app::ServerConfig c = WithTlsAdmin("live.pem", "live.key");
  auto server = StartBridge(c);
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->admin_port();
  std::string error;
  auto open = WssClient::Connect(port, "/admin/ws", Path("ca.pem"), &error);
  ASSERT_NE(open, nullptr) << error;
  ASSERT_TRUE(open->RecvEvent().is_object());

  ASSERT_TRUE(Sh(
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca2.key -out ca2.pem -days 1 "
      "-subj /CN=test-ca-2 2>/dev/null; "
      "openssl req -newkey rsa:2048 -nodes -keyout live2.key -out live2.csr -subj /CN=localhost "
      "2>/dev/null; "
      "openssl x509 -req -in live2.csr -CA ca2.pem -CAkey ca2.key -CAcreateserial -out live2.pem "
      "-days 1 -extfile server.ext 2>/dev/null; "
      "cp live2.pem live.pem; cp live2.key live.key"));
  absl::Status reloaded = server->Reload(c);
  ASSERT_TRUE(reloaded.ok()) << reloaded;
  std::string body;
  EXPECT_EQ(HttpsStatus(port, "/healthz", Path("ca.pem"), &body), 0)
      << "still serving the old certificate";
  EXPECT_EQ(HttpsStatus(port, "/healthz", Path("ca2.pem"), &body), 200);

  // A key that does not match: refused, the renewed certificate stays.
  ASSERT_TRUE(Sh("cp server.key live.key"));
  absl::Status refused = server->Reload(c);
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("admin"), std::string::npos) << refused;
  EXPECT_EQ(HttpsStatus(port, "/healthz", Path("ca2.pem"), &body), 200);
  // Off without a restart: refused too.
  app::ServerConfig plain = c;
  plain.admin_tls_cert_file.clear();
  plain.admin_tls_key_file.clear();
  EXPECT_FALSE(server->Reload(plain).ok());
  EXPECT_EQ(HttpsStatus(port, "/healthz", Path("ca2.pem"), &body), 200);

  // The feed opened before the renewal keeps receiving.
  EXPECT_TRUE(open->RecvEvent().is_object()) << "the feed opened before the reload stopped";
}

// admin.tls_from_ws: the admin listener serves the WebSocket listener's files.
TEST_F(AdminTlsTest, TlsFromWsServesTheWebSocketCertificate) {
  config::Config cfg;
  ASSERT_TRUE(config::MergeJson(
                  R"({"admin":{"port":0,"tls_from_ws":true},"tls":{"ws_cert_file":")" +
                      Path("server.pem") + R"(","ws_key_file":")" + Path("server.key") + R"("}})",
                  cfg)
                  .ok());
  auto c = app::ServerConfigFrom(config::Effective(cfg));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->admin_tls_cert_file, Path("server.pem"));
  EXPECT_EQ(c->admin_tls_key_file, Path("server.key"));
  auto server = StartBridge(*c);
  ASSERT_NE(server, nullptr);
  std::string body;
  EXPECT_EQ(HttpsStatus(server->admin_port(), "/healthz", Path("ca.pem"), &body), 200);
  EXPECT_EQ(HttpsStatus(server->ws_port(), "/healthz", Path("ca.pem"), &body), 200);
}

}  // namespace
}  // namespace bridge::testing
