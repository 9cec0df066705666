#include <gtest/gtest.h>

#include "auth/public_key.h"
#include "test_keys.h"

namespace bridge::auth::internal {
namespace {

using testing::GenerateEc;
using testing::GenerateRsa;
using testing::JwkFor;
using testing::KeyPair;

const KeyPair& Rsa() {
  static const KeyPair* key = new KeyPair(GenerateRsa());
  return *key;
}
const KeyPair& Ec() {
  static const KeyPair* key = new KeyPair(GenerateEc());
  return *key;
}

std::string Set(const std::string& keys) { return "{\"keys\":[" + keys + "]}"; }

TEST(JwksTest, LoadsRsaAndEcKeysWithTheirKids) {
  auto keys = ParseJwks(Set(JwkFor(Rsa(), "r1") + "," + JwkFor(Ec(), "e1")));
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].kid, "r1");
  EXPECT_EQ((*keys)[0].alg, Algorithm::kRs256);
  EXPECT_EQ((*keys)[1].kid, "e1");
  EXPECT_EQ((*keys)[1].alg, Algorithm::kEs256);
}

TEST(JwksTest, SkipsKeysNotForSignaturesOrUnsupported) {
  const std::string enc = R"({"kty":"RSA","kid":"x","use":"enc","n":"AQAB","e":"AQAB"})";
  const std::string oct = R"({"kty":"oct","kid":"s","k":"c2VjcmV0"})";
  const std::string rs384 = R"({"kty":"RSA","kid":"y","alg":"RS384","n":"AQAB","e":"AQAB"})";
  auto keys = ParseJwks(Set(enc + "," + oct + "," + rs384 + "," + JwkFor(Ec(), "e1")));
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0].kid, "e1");
  EXPECT_FALSE(ParseJwks(Set(enc + "," + oct)).ok());
}

TEST(JwksTest, RefusesMalformedSets) {
  for (const char* json : {"", "[]", "{}", R"({"keys":{}})", R"({"keys":[]})", R"({"keys":[1]})",
                           R"({"keys":[{"kty":"RSA","n":"AQAB"}]})",
                           R"({"keys":[{"kty":"RSA","n":"AQ==","e":"AQAB"}]})",
                           R"({"keys":[{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}]})",
                           R"({"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]})",
                           R"({"keys":[{"kty":"RSA","kid":7,"n":"AQAB","e":"AQAB"}]})"}) {
    EXPECT_FALSE(ParseJwks(json).ok()) << json;
  }
}

TEST(JwksTest, RefusesAPointNotOnTheCurve) {
  const std::string zeros(43, 'A');  // 32 zero bytes
  const std::string jwk =
      R"({"kty":"EC","crv":"P-256","x":")" + zeros + R"(","y":")" + zeros.substr(0, 42) + "E\"}";
  EXPECT_FALSE(ParseJwks(Set(jwk)).ok());
}

TEST(JwksTest, RefusesShortRsaKeysAndDuplicateKids) {
  const KeyPair small = GenerateRsa(1024);
  auto short_key = ParseJwks(Set(JwkFor(small, "s")));
  ASSERT_FALSE(short_key.ok());
  EXPECT_NE(short_key.status().message().find("2048"), std::string::npos);
  EXPECT_FALSE(ParseJwks(Set(JwkFor(Rsa(), "a") + "," + JwkFor(Ec(), "a"))).ok());
}

TEST(PemTest, AcceptsPublicKeysOnly) {
  auto rsa = ParsePemPublicKey(Rsa().public_pem, "k");
  ASSERT_TRUE(rsa.ok()) << rsa.status();
  EXPECT_EQ(rsa->alg, Algorithm::kRs256);
  auto ec = ParsePemPublicKey(Ec().public_pem, "k");
  ASSERT_TRUE(ec.ok()) << ec.status();
  EXPECT_EQ(ec->alg, Algorithm::kEs256);
  EXPECT_FALSE(ParsePemPublicKey(Rsa().private_pem, "k").ok());
  EXPECT_FALSE(ParsePemPublicKey("not a key", "k").ok());
  EXPECT_FALSE(ParsePemPublicKey(GenerateEc("P-384").public_pem, "k").ok());
}

}  // namespace
}  // namespace bridge::auth::internal
