// gRPC over TLS and mutual TLS, with a CA and certificates generated at test time.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "test_support.h"

namespace bridge::testing {
namespace {

namespace pb = gathering::bridge::v1;

std::string Slurp(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("bridge-tls-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    // A CA, a server certificate for localhost/127.0.0.1 and a client certificate, all from it.
    std::string script = "set -e; cd '" + dir_.string() + "'; " +
                         "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem "
                         "-days 1 -subj /CN=test-ca 2>/dev/null; "
                         "for n in server client; do "
                         "openssl req -newkey rsa:2048 -nodes -keyout $n.key -out $n.csr "
                         "-subj /CN=localhost 2>/dev/null; "
                         "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1' > $n.ext; "
                         "openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
                         "-out $n.pem -days 1 -extfile $n.ext 2>/dev/null; done";
    std::ofstream(dir_ / "make-certs.sh") << script << "\n";
    ASSERT_EQ(std::system(("bash '" + (dir_ / "make-certs.sh").string() + "'").c_str()), 0)
        << "openssl failed";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<app::BridgeServer> Start(bool mutual) {
    app::ServerConfig cfg;
    cfg.grpc_tls_cert_file = (dir_ / "server.pem").string();
    cfg.grpc_tls_key_file = (dir_ / "server.key").string();
    if (mutual) cfg.grpc_client_ca_file = (dir_ / "ca.pem").string();
    return StartBridge(cfg);
  }
  grpc::Status Publish(uint16_t port, bool with_client_cert) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = Slurp(dir_ / "ca.pem");
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

}  // namespace
}  // namespace bridge::testing
