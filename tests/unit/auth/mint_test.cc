#include "auth/mint.h"

#include <gtest/gtest.h>

#include "auth/base64url.h"
#include "auth/verifier.h"

namespace bridge::auth {
namespace {

using std::chrono::seconds;
using std::chrono::system_clock;

const system_clock::time_point kNow = system_clock::time_point(seconds(1'800'000'000));
const std::string kSecret(40, 's');

MintOptions Options() {
  MintOptions o;
  o.subject = "alice";
  o.channels = {"circles/*", "agents/7"};
  o.publish = {"circles/dev"};
  o.ttl = seconds(3600);
  o.hs256_secret = kSecret;
  o.issuer = "gathering";
  o.audience = "bridge";
  return o;
}

TEST(MintTest, MintedTokenVerifies) {
  auto token = MintToken(Options(), kNow);
  ASSERT_TRUE(token.ok()) << token.status();
  auto verifier = TokenVerifier::Create({kSecret, {}, "", "gathering", "bridge", seconds(0)});
  ASSERT_TRUE(verifier.ok()) << verifier.status();
  auto p = (*verifier)->Verify(*token, kNow);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->subject, "alice");
  EXPECT_EQ(p->channels, Options().channels);
  EXPECT_EQ(p->publish, Options().publish);
  EXPECT_EQ(p->expires_at, kNow + seconds(3600));
  EXPECT_EQ(std::string((*verifier)->Verify(*token, kNow + seconds(3600)).status().message()),
            "token expired");
}

TEST(MintTest, HeaderIsHs256Jwt) {
  auto token = MintToken(Options(), kNow);
  ASSERT_TRUE(token.ok());
  const auto header = internal::Base64UrlDecode(token->substr(0, token->find('.')));
  ASSERT_TRUE(header.has_value());
  EXPECT_NE(header->find("\"alg\":\"HS256\""), std::string::npos) << *header;
}

TEST(MintTest, RefusesBadOptions) {
  MintOptions o = Options();
  o.subject.clear();
  EXPECT_EQ(MintToken(o, kNow).status().code(), absl::StatusCode::kInvalidArgument);
  o = Options();
  o.hs256_secret = "short";
  EXPECT_EQ(MintToken(o, kNow).status().code(), absl::StatusCode::kInvalidArgument);
  o = Options();
  o.ttl = seconds(0);
  EXPECT_EQ(MintToken(o, kNow).status().code(), absl::StatusCode::kInvalidArgument);
  o = Options();
  o.channels = {"circles/d*"};
  EXPECT_EQ(MintToken(o, kNow).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MintTest, OmitsEmptyOptionalClaims) {
  MintOptions o = Options();
  o.issuer.clear();
  o.audience.clear();
  o.publish.clear();
  auto token = MintToken(o, kNow);
  ASSERT_TRUE(token.ok());
  const std::size_t dot1 = token->find('.');
  const auto payload =
      internal::Base64UrlDecode(token->substr(dot1 + 1, token->rfind('.') - dot1 - 1));
  ASSERT_TRUE(payload.has_value());
  EXPECT_EQ(payload->find("iss"), std::string::npos) << *payload;
  EXPECT_EQ(payload->find("publish"), std::string::npos) << *payload;
}

}  // namespace
}  // namespace bridge::auth
