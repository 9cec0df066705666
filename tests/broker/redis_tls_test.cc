// RedisConnection over TLS (rediss://) against a real redis-server with a TLS port and a
// self-signed certificate made by the openssl tool for each test.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "redis_test_fixture.h"

namespace bridge::broker {
namespace {

using State = RedisConnectionState;

class RedisTlsTest : public RedisConnectionTest {
 protected:
  void SetUp() override {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "bridge-redis-tls-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    ASSERT_NO_FATAL_FAILURE(MakeCert("server"));
    ASSERT_NO_FATAL_FAILURE(MakeCert("other"));
    tls_port_ = testing::ProbeFreePort();
    ASSERT_NE(tls_port_, 0);
    ASSERT_NO_FATAL_FAILURE(
        StartServer({"--tls-port", std::to_string(tls_port_), "--tls-cert-file", Pem("server-cert"),
                     "--tls-key-file", Pem("server-key"), "--tls-ca-cert-file", Pem("server-cert"),
                     "--tls-auth-clients", "no"}));
  }

  void TearDown() override {
    RedisConnectionTest::TearDown();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string Pem(const std::string& name) const { return dir_ + "/" + name + ".pem"; }

  // A self-signed certificate for 127.0.0.1 / localhost (it is its own CA).
  void MakeCert(const std::string& name) {
    const std::string log = dir_ + "/openssl.log";
    const std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
        "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout " +
        Pem(name + "-key") + " -out " + Pem(name + "-cert") + " >" + log + " 2>&1";
    const int rc = std::system(cmd.c_str());
    std::ifstream in(log);
    std::stringstream out;
    out << in.rdbuf();
    ASSERT_EQ(rc, 0) << "the openssl tool failed (is it installed?): " << cmd << "\n" << out.str();
  }

  RedisConnectionOptions TlsOptions(const std::string& ca) {
    RedisConnectionOptions o = Options("rediss://127.0.0.1:" + std::to_string(tls_port_));
    o.tls_ca_file = ca;
    return o;
  }

  std::string dir_;
  uint16_t tls_port_ = 0;
};

TEST_F(RedisTlsTest, RoundTripPipelineAndLargeReply) {
  auto c = ConnectReady(TlsOptions(Pem("server-cert")));
  ASSERT_TRUE(c);
  const std::string big(1 << 20, 't');
  auto set = Call(*c, {"SET", "big", big});
  ASSERT_TRUE(set.ok()) << set.status();
  auto get = Call(*c, {"GET", "big"});
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_TRUE(get->str == big) << get->str.size();

  constexpr int kN = 2000;
  int in_order = 0;
  for (int i = 0; i < kN; ++i) {
    c->Command({"INCR", "n"}, [&, i](absl::StatusOr<RedisReply> r) {
      if (r.ok() && r->integer == i + 1) ++in_order;
    });
  }
  ASSERT_TRUE(RunUntil([&] { return c->pending() == 0; }, ms(20000)));
  EXPECT_EQ(in_order, kN);
}

TEST_F(RedisTlsTest, UntrustedCertificateFailsTheHandshake) {
  auto c = Connect(TlsOptions(Pem("other-cert")));
  ASSERT_TRUE(c);
  ASSERT_TRUE(AwaitState(State::kDown)) << StatesString();
  auto down = std::find(states_.begin(), states_.end(), State::kDown) - states_.begin();
  EXPECT_EQ(reasons_[down].code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(reasons_[down].ToString().find("tls handshake"), std::string::npos) << StatesString();
  EXPECT_NE(c->state(), State::kReady);
}

TEST_F(RedisTlsTest, MissingCaFileFailsCreate) {
  auto c = RedisConnection::Create(io_.get_executor(), TlsOptions(dir_ + "/nope.pem"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().ToString().find("nope.pem"), std::string::npos) << c.status();
}

}  // namespace
}  // namespace bridge::broker
