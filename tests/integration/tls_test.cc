// TLS on both listeners, with a CA and certificates generated at test time: gRPC over TLS and
// mutual TLS; wss:// and https:// on the WebSocket port, plain clients and slow handshakes
// refused while a wss:// subscriber keeps receiving.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/json/parse.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "test_support.h"
#include "tls_support.h"

namespace bridge::testing {
namespace {

namespace pb = gathering::bridge::v1;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("bridge-tls-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    // A CA, a server certificate for localhost/127.0.0.1 and a client certificate, all from it.
    ASSERT_TRUE(MakeTestCertificates(dir_)) << "openssl failed";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  // Runs shell `commands` in the test's directory; true when they all succeeded.
  bool Sh(const std::string& commands) {
    std::ofstream(dir_ / "step.sh") << "set -e; cd '" << dir_.string() << "'; " << commands << "\n";
    return std::system(("bash '" + Path("step.sh") + "'").c_str()) == 0;
  }

  // A wss:// client on `channel`, its subscription confirmed (so what is published next reaches
  // it); nullptr (and a test failure) otherwise.
  std::unique_ptr<WssClient> Subscribe(uint16_t port, const std::string& channel) {
    std::string error;
    auto c = WssClient::Connect(port, "/ws/" + channel + "?ack=1", Path("ca.pem"), &error);
    EXPECT_NE(c, nullptr) << error;
    if (c == nullptr) return nullptr;
    auto ack = c->RecvEvent();
    EXPECT_TRUE(ack.is_object() && ack.at("type") == "subscribed") << ack;
    return c;
  }

  std::unique_ptr<app::BridgeServer> StartWss(std::chrono::milliseconds handshake_timeout = 10s) {
    app::ServerConfig cfg;
    cfg.ws_tls_cert_file = Path("server.pem");
    cfg.ws_tls_key_file = Path("server.key");
    cfg.ws.handshake_timeout = handshake_timeout;
    return StartBridge(cfg);
  }

  std::unique_ptr<app::BridgeServer> Start(bool mutual) {
    app::ServerConfig cfg;
    cfg.grpc_tls_cert_file = (dir_ / "server.pem").string();
    cfg.grpc_tls_key_file = (dir_ / "server.key").string();
    if (mutual) cfg.grpc_client_ca_file = (dir_ / "ca.pem").string();
    return StartBridge(cfg);
  }
  grpc::Status Publish(uint16_t port, bool with_client_cert, const std::string& ca = "ca.pem") {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = Slurp(dir_ / ca);
    if (with_client_cert) {
      o.pem_private_key = Slurp(dir_ / "client.key");
      o.pem_cert_chain = Slurp(dir_ / "client.pem");
    }
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                             grpc::SslCredentials(o), args);
    auto stub = pb::EventService::NewStub(channel);
    pb::PublishRequest req;
    req.mutable_event()->set_channel("circles/tls");
    req.mutable_event()->mutable_agent_message()->set_content("secure");
    pb::PublishResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    return stub->Publish(&ctx, req, &resp);
  }

  std::filesystem::path dir_;
};

TEST_F(TlsTest, GrpcOverTlsAcceptsTlsAndRefusesPlaintext) {
  auto server = Start(/*mutual=*/false);
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(Publish(server->grpc_port(), false).ok());
  pb::PublishRequest req;
  req.mutable_event()->set_channel("circles/tls");
  req.mutable_event()->mutable_agent_message()->set_content("plain");
  pb::PublishResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  EXPECT_FALSE(MakeStub(server->grpc_port())->Publish(&ctx, req, &resp).ok());
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificate) {
  auto server = Start(/*mutual=*/true);
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(Publish(server->grpc_port(), true).ok());
  EXPECT_FALSE(Publish(server->grpc_port(), false).ok());
}

TEST_F(TlsTest, WssDeliversEventsAndHttpsServesHealth) {
  auto server = StartWss();
  ASSERT_NE(server, nullptr);
  auto client = Subscribe(server->ws_port(), "circles/tls");
  ASSERT_NE(client, nullptr);
  auto stub = MakeStub(server->grpc_port());
  ASSERT_TRUE(PublishMessage(*stub, "circles/tls", 1, "first").ok());
  auto first = client->RecvEvent();
  ASSERT_TRUE(first.is_object()) << "no event over wss://";
  EXPECT_EQ(first.at("channel"), "circles/tls");
  EXPECT_EQ(first.at("data").at("content"), "first");

  // A burst of 2 KiB events: many frames per write, sealed into many TLS records, all in order.
  constexpr int kBurst = 300;
  for (int i = 0; i < kBurst; ++i) {
    ASSERT_TRUE(
        PublishMessage(*stub, "circles/tls", 1, std::to_string(i) + std::string(2048, '.')).ok());
  }
  for (int i = 0; i < kBurst; ++i) {
    auto v = client->RecvEvent();
    ASSERT_TRUE(v.is_object()) << "event " << i << " of the burst did not arrive";
    EXPECT_EQ(v.at("data").at("content"),
              boost::json::value(std::to_string(i) + std::string(2048, '.')));
  }

  std::string body;
  EXPECT_EQ(HttpsStatus(server->ws_port(), "/healthz", Path("ca.pem"), &body), 200);
  EXPECT_EQ(body, "{\"status\":\"ok\"}\n");
}

TEST_F(TlsTest, ClientsThatDoNotSpeakTlsAreDroppedWhileWssKeepsReceiving) {
  auto server = StartWss(/*handshake_timeout=*/300ms);
  ASSERT_NE(server, nullptr);
  auto good = Subscribe(server->ws_port(), "circles/tls");
  ASSERT_NE(good, nullptr);
  auto stub = MakeStub(server->grpc_port());
  int sent = 0;
  auto publish = [&] {
    ASSERT_TRUE(PublishMessage(*stub, "circles/tls", 1, std::to_string(sent++)).ok());
  };

  // Plain HTTP and a plain WebSocket upgrade to the TLS port: a plain-text 400 saying so,
  // counted.
  publish();
  std::string body;
  EXPECT_EQ(HttpStatus(server->ws_port(), "/healthz", false, &body), 400);
  EXPECT_EQ(body, "this port speaks TLS: use https:// or wss://\n");
  EXPECT_EQ(HttpStatus(server->ws_port(), "/ws/circles/tls", /*upgrade=*/true), 400);
  EXPECT_TRUE(WaitFor([&] { return server->metrics().tls_handshake_failures_total.load() >= 2; }))
      << "failed handshakes are not counted";
  publish();

  // A client that connects and never starts its handshake is cut at the handshake timeout.
  asio::io_context ioc;
  tcp::socket idle(ioc);
  idle.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server->ws_port()));
  auto started = std::chrono::steady_clock::now();
  char byte;
  beast::error_code read_ec;
  bool read_done = false;
  idle.async_read_some(asio::buffer(&byte, 1), [&](beast::error_code e, size_t) {
    read_ec = e;
    read_done = true;
  });
  ioc.run_for(5s);
  ASSERT_TRUE(read_done) << "an idle TLS connection was not cut within 5 s";
  EXPECT_EQ(read_ec, asio::error::eof);
  EXPECT_GE(std::chrono::steady_clock::now() - started, 250ms);
  EXPECT_TRUE(WaitFor([&] { return server->metrics().tls_handshake_failures_total.load() >= 3; }))
      << "the connection cut at the handshake timeout is not counted";
  publish();

  // A wrong-CA client: its handshake fails on its side, nobody else notices.
  {
    ASSERT_TRUE(
        Sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.pem "
           "-days 1 -subj /CN=other 2>/dev/null"));
    std::string refused;
    EXPECT_EQ(WssClient::Connect(server->ws_port(), "/ws/circles/tls", Path("other.pem"), &refused),
              nullptr);
    EXPECT_FALSE(refused.empty());
  }
  publish();

  for (int i = 0; i < sent; ++i) {
    auto v = good->RecvEvent();
    ASSERT_TRUE(v.is_object()) << "the wss:// subscriber lost event " << i;
    EXPECT_EQ(v.at("data").at("content"), boost::json::value(std::to_string(i)));
  }
}

TEST_F(TlsTest, CloseCodesReachWssClients) {
  app::ServerConfig cfg;
  cfg.ws_tls_cert_file = Path("server.pem");
  cfg.ws_tls_key_file = Path("server.key");
  cfg.ws.max_frame_bytes = 1024;
  auto server = StartBridge(cfg);
  ASSERT_NE(server, nullptr);
  std::string error;
  auto client = WssClient::Connect(server->ws_port(), "/ws/circles/tls", Path("ca.pem"), &error);
  ASSERT_NE(client, nullptr) << error;
  client->Send(std::string(4096, 'x'));
  EXPECT_TRUE(client->RecvEvent().is_null());
  EXPECT_EQ(client->close_code(), 1009);
}

TEST_F(TlsTest, ReloadedCertificateServesNewConnectionsAndOpenOnesKeepTheirs) {
  // The served files are copies, replaced below the way a certificate renewal replaces them.
  ASSERT_TRUE(Sh("cp server.pem live.pem; cp server.key live.key"));
  app::ServerConfig cfg;
  cfg.ws_tls_cert_file = Path("live.pem");
  cfg.ws_tls_key_file = Path("live.key");
  auto server = StartBridge(cfg);
  ASSERT_NE(server, nullptr);
  auto open = Subscribe(server->ws_port(), "circles/reload");
  ASSERT_NE(open, nullptr);

  // A renewal from another CA.
  ASSERT_TRUE(Sh(
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca2.key -out ca2.pem -days 1 "
      "-subj /CN=test-ca-2 2>/dev/null; "
      "openssl req -newkey rsa:2048 -nodes -keyout live2.key -out live2.csr -subj /CN=localhost "
      "2>/dev/null; "
      "openssl x509 -req -in live2.csr -CA ca2.pem -CAkey ca2.key -CAcreateserial -out live2.pem "
      "-days 1 -extfile server.ext 2>/dev/null; "
      "cp live2.pem live.pem; cp live2.key live.key"));
  ASSERT_TRUE(server->ReloadTls().ok());
  std::string error;
  EXPECT_EQ(WssClient::Connect(server->ws_port(), "/ws/circles/reload", Path("ca.pem"), &error),
            nullptr)
      << "still serving the old certificate";
  auto renewed =
      WssClient::Connect(server->ws_port(), "/ws/circles/reload", Path("ca2.pem"), &error);
  EXPECT_NE(renewed, nullptr) << error;

  // A broken file is refused and the current certificate stays.
  ASSERT_TRUE(Sh("echo garbage > live.pem"));
  EXPECT_FALSE(server->ReloadTls().ok());
  EXPECT_NE(WssClient::Connect(server->ws_port(), "/ws/circles/reload", Path("ca2.pem"), &error),
            nullptr)
      << error;

  // The connection opened before the renewal still receives.
  auto stub = MakeStub(server->grpc_port());
  ASSERT_TRUE(PublishMessage(*stub, "circles/reload", 1, "after").ok());
  auto v = open->RecvEvent();
  ASSERT_TRUE(v.is_object()) << "the connection opened before the reload lost its event";
  EXPECT_EQ(v.at("data").at("content"), "after");
}

// SIGHUP's path for gRPC: the renewed files are checked and served to new gRPC connections within
// a second (gRPC's own refresh), no restart; a pair that does not match is refused, the running
// one kept.
TEST_F(TlsTest, ARenewedGrpcCertificateServesNewCallsWithoutARestart) {
  ASSERT_TRUE(Sh("cp server.pem grpc.pem; cp server.key grpc.key"));
  app::ServerConfig cfg;
  cfg.grpc_tls_cert_file = Path("grpc.pem");
  cfg.grpc_tls_key_file = Path("grpc.key");
  auto server = StartBridge(cfg);
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(Publish(server->grpc_port(), false).ok());

  // A renewal from another CA.
  ASSERT_TRUE(Sh(
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca3.key -out ca3.pem -days 1 "
      "-subj /CN=test-ca-3 2>/dev/null; "
      "openssl req -newkey rsa:2048 -nodes -keyout grpc3.key -out grpc3.csr -subj /CN=localhost "
      "2>/dev/null; "
      "openssl x509 -req -in grpc3.csr -CA ca3.pem -CAkey ca3.key -CAcreateserial -out grpc3.pem "
      "-days 1 -extfile server.ext 2>/dev/null; "
      "cp grpc3.key grpc.key; cp grpc3.pem grpc.pem"));
  // Not read before the reload: gRPC serves a checked copy, not the configured files.
  EXPECT_TRUE(Publish(server->grpc_port(), false).ok());
  app::ServerConfig next = cfg;
  ASSERT_TRUE(server->Reload(next).ok());
  // Each Publish opens a new channel (a new TLS handshake). Bounded: gRPC reads every second.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!Publish(server->grpc_port(), false, "ca3.pem").ok()) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline)
        << "the renewed gRPC certificate was not served within 10 s of the reload";
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_FALSE(Publish(server->grpc_port(), false, "ca.pem").ok()) << "the old one still served";

  // A key that does not match its certificate is refused with the file's flag; nothing changes.
  ASSERT_TRUE(Sh("cp client.key grpc.key"));
  absl::Status refused = server->Reload(next);
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("--grpc_tls_key_file"), std::string::npos) << refused;
  EXPECT_TRUE(Publish(server->grpc_port(), false, "ca3.pem").ok());
}

TEST_F(TlsTest, BadCertificateFilesFailStartUp) {
  app::ServerConfig cfg;
  cfg.host = "127.0.0.1";
  cfg.ws_port = 0;
  cfg.grpc_port = 0;
  cfg.ws_tls_cert_file = Path("missing.pem");
  cfg.ws_tls_key_file = Path("server.key");
  auto missing = app::BridgeServer::Start(cfg);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("missing.pem"), std::string::npos)
      << missing.status().message();

  cfg.ws_tls_cert_file = Path("server.pem");
  cfg.ws_tls_key_file = Path("client.key");  // not the certificate's key
  auto mismatch = app::BridgeServer::Start(cfg);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("--ws_tls_key_file"), std::string::npos)
      << mismatch.status().message();

  cfg.ws_tls_key_file = "";
  EXPECT_FALSE(app::BridgeServer::Start(cfg).ok());

  app::ServerConfig grpc;
  grpc.host = "127.0.0.1";
  grpc.ws_port = 0;
  grpc.grpc_port = 0;
  grpc.grpc_tls_cert_file = Path("server.pem");
  grpc.grpc_tls_key_file = Path("client.key");  // not the certificate's key
  auto grpc_mismatch = app::BridgeServer::Start(grpc);
  ASSERT_FALSE(grpc_mismatch.ok());
  EXPECT_NE(grpc_mismatch.status().message().find("--grpc_tls_key_file"), std::string::npos)
      << grpc_mismatch.status().message();
}

}  // namespace
}  // namespace bridge::testing
