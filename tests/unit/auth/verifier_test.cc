#include "auth/verifier.h"

#include <gtest/gtest.h>

#include <atomic>
#include <jwt/jwt.hpp>
#include <thread>

#include "auth/base64url.h"
#include "test_keys.h"

namespace bridge::auth {
namespace {

using std::chrono::seconds;
using std::chrono::system_clock;
using testing::KeyPair;
using testing::SignHs256;
using testing::SignWithKey;
using testing::Unsigned;

const system_clock::time_point kNow = system_clock::time_point(seconds(1'800'000'000));
const std::string kSecret = "0123456789abcdef0123456789abcdef-secret";

// exp an hour after kNow unless told otherwise.
std::string Claims(const std::string& extra = "", long exp = 1'800'003'600) {
  return R"({"sub":"alice","exp":)" + std::to_string(exp) + extra + "}";
}

class VerifierTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    rsa_a_ = new KeyPair(testing::GenerateRsa());
    rsa_b_ = new KeyPair(testing::GenerateRsa());
    ec_a_ = new KeyPair(testing::GenerateEc());
  }
  static void TearDownTestSuite() {
    delete rsa_a_;
    delete rsa_b_;
    delete ec_a_;
  }

  std::unique_ptr<TokenVerifier> Make(VerifierConfig config) {
    auto v = TokenVerifier::Create(config);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *std::move(v) : nullptr;
  }
  std::unique_ptr<TokenVerifier> Hs() { return Make({kSecret, {}, "", "", "", seconds(30)}); }
  // JWKS with two RSA keys (rotation) and one EC key.
  std::unique_ptr<TokenVerifier> Jwks() {
    const std::string path =
        dir_.Write("jwks.json", "{\"keys\":[" + testing::JwkFor(*rsa_a_, "rsa-a") + "," +
                                    testing::JwkFor(*rsa_b_, "rsa-b") + "," +
                                    testing::JwkFor(*ec_a_, "ec-a") + "]}");
    return Make({"", {}, path, "", "", seconds(30)});
  }

  static void ExpectRefused(const absl::StatusOr<Principal>& result, std::string_view message) {
    ASSERT_FALSE(result.ok()) << "accepted, expected '" << message << "'";
    EXPECT_EQ(result.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(std::string(result.status().message()), message);
  }

  static KeyPair* rsa_a_;
  static KeyPair* rsa_b_;
  static KeyPair* ec_a_;
  testing::TempDir dir_;
};

KeyPair* VerifierTest::rsa_a_ = nullptr;
KeyPair* VerifierTest::rsa_b_ = nullptr;
KeyPair* VerifierTest::ec_a_ = nullptr;

constexpr char kHs[] = R"({"alg":"HS256","typ":"JWT"})";
constexpr char kRs[] = R"({"alg":"RS256","typ":"JWT"})";
constexpr char kEs[] = R"({"alg":"ES256","typ":"JWT"})";

// ---- configuration -------------------------------------------------------------------------

TEST_F(VerifierTest, CreateRefusesBadConfigurations) {
  EXPECT_EQ(TokenVerifier::Create({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TokenVerifier::Create({"short", {}, "", "", "", seconds(30)}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      TokenVerifier::Create({"", {"/nonexistent/k.pem"}, "", "", "", seconds(30)}).status().code(),
      absl::StatusCode::kNotFound);
  const std::string priv = dir_.Write("priv.pem", rsa_a_->private_pem);
  EXPECT_EQ(TokenVerifier::Create({"", {priv}, "", "", "", seconds(30)}).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::string small = dir_.Write("small.pem", testing::GenerateRsa(1024).public_pem);
  EXPECT_FALSE(TokenVerifier::Create({"", {small}, "", "", "", seconds(30)}).ok());
  // A PEM file named like a JWKS kid: "rsa-a" would name two keys.
  const std::string pem = dir_.Write("rsa-a.pem", rsa_b_->public_pem);
  const std::string jwks =
      dir_.Write("j.json", "{\"keys\":[" + testing::JwkFor(*rsa_a_, "rsa-a") + "]}");
  auto dup = TokenVerifier::Create({"", {pem}, jwks, "", "", seconds(30)});
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.status().message().find("duplicate key id"), std::string::npos);
  const std::string bad_jwks = dir_.Write("bad.json", "{\"keys\":[]}");
  auto bad = TokenVerifier::Create({"", {}, bad_jwks, "", "", seconds(30)});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bad.json"), std::string::npos);
}

// ---- accepted tokens -----------------------------------------------------------------------

TEST_F(VerifierTest, AcceptsHs256AndFillsThePrincipal) {
  auto v = Hs();
  const std::string token = SignHs256(
      kHs, Claims(R"(,"channels":["circles/*","agents/7"],"publish":["circles/dev"])"), kSecret);
  auto p = v->Verify(token, kNow);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->subject, "alice");
  EXPECT_EQ(p->channels, (std::vector<std::string>{"circles/*", "agents/7"}));
  EXPECT_EQ(p->publish, (std::vector<std::string>{"circles/dev"}));
  EXPECT_EQ(p->expires_at, system_clock::time_point(seconds(1'800'003'600)));
  EXPECT_TRUE(p->CanSubscribe("circles/ops"));
  EXPECT_FALSE(p->CanPublish("circles/ops"));
}

TEST_F(VerifierTest, ChannelsMayBeASpaceSeparatedString) {
  auto v = Hs();
  auto p = v->Verify(
      SignHs256(kHs, Claims(R"(,"channels":" circles/*  agents/7 ","publish":"circles/dev")"),
                kSecret),
      kNow);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->channels, (std::vector<std::string>{"circles/*", "agents/7"}));
  EXPECT_EQ(p->publish, (std::vector<std::string>{"circles/dev"}));
  auto none = v->Verify(SignHs256(kHs, Claims(), kSecret), kNow);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->channels.empty());
  EXPECT_TRUE(none->publish.empty());
}

TEST_F(VerifierTest, AcceptsRs256AndEs256FromPemFilesWithFileNameAsKid) {
  auto v = Make({"",
                 {dir_.Write("rsa-2026.pem", rsa_a_->public_pem),
                  dir_.Write("ec-2026.pem", ec_a_->public_pem)},
                 "",
                 "",
                 "",
                 seconds(30)});
  EXPECT_EQ(v->public_key_count(), 2u);
  EXPECT_TRUE(v->Verify(SignWithKey(kRs, Claims(), *rsa_a_), kNow).ok());
  EXPECT_TRUE(v->Verify(SignWithKey(kEs, Claims(), *ec_a_), kNow).ok());
  EXPECT_TRUE(
      v->Verify(SignWithKey(R"({"alg":"RS256","kid":"rsa-2026"})", Claims(), *rsa_a_), kNow).ok());
  ExpectRefused(
      v->Verify(SignWithKey(R"({"alg":"RS256","kid":"rsa-2025"})", Claims(), *rsa_a_), kNow),
      "unknown key id");
}

TEST_F(VerifierTest, AcceptsTokensSignedByCppJwt) {
  auto v = Make({"",
                 {dir_.Write("r.pem", rsa_a_->public_pem), dir_.Write("e.pem", ec_a_->public_pem)},
                 "",
                 "",
                 "",
                 seconds(30)});
  for (auto [alg, key] : {std::pair{"RS256", rsa_a_}, std::pair{"ES256", ec_a_}}) {
    jwt::jwt_object obj{jwt::params::algorithm(alg), jwt::params::secret(key->private_pem)};
    obj.add_claim("sub", "bob");
    obj.add_claim("exp", 1'800'003'600);
    obj.add_claim("channels", std::vector<std::string>{"circles/dev"});
    auto p = v->Verify(obj.signature(), kNow);
    ASSERT_TRUE(p.ok()) << alg << ": " << p.status();
    EXPECT_EQ(p->subject, "bob");
    EXPECT_TRUE(p->CanSubscribe("circles/dev"));
  }
}

TEST_F(VerifierTest, JwksWithTwoKeysAcceptsBothDuringRotation) {
  auto v = Jwks();
  EXPECT_EQ(v->public_key_count(), 3u);
  // With kid: only that key.
  EXPECT_TRUE(
      v->Verify(SignWithKey(R"({"alg":"RS256","kid":"rsa-a"})", Claims(), *rsa_a_), kNow).ok());
  EXPECT_TRUE(
      v->Verify(SignWithKey(R"({"alg":"RS256","kid":"rsa-b"})", Claims(), *rsa_b_), kNow).ok());
  EXPECT_TRUE(
      v->Verify(SignWithKey(R"({"alg":"ES256","kid":"ec-a"})", Claims(), *ec_a_), kNow).ok());
  // Without kid: every key of the token's algorithm is tried.
  EXPECT_TRUE(v->Verify(SignWithKey(kRs, Claims(), *rsa_a_), kNow).ok());
  EXPECT_TRUE(v->Verify(SignWithKey(kRs, Claims(), *rsa_b_), kNow).ok());
  EXPECT_TRUE(v->Verify(SignWithKey(kEs, Claims(), *ec_a_), kNow).ok());
}

// ---- refusals ------------------------------------------------------------------------------

TEST_F(VerifierTest, KidSelectsExactlyOneKey) {
  auto v = Jwks();
  // Signed by a, labelled b: b alone is tried.
  ExpectRefused(v->Verify(SignWithKey(R"({"alg":"RS256","kid":"rsa-b"})", Claims(), *rsa_a_), kNow),
                "bad signature");
  ExpectRefused(v->Verify(SignWithKey(R"({"alg":"RS256","kid":"rsa-c"})", Claims(), *rsa_a_), kNow),
                "unknown key id");
  // The kid names an EC key but the token says RS256.
  ExpectRefused(v->Verify(SignWithKey(R"({"alg":"RS256","kid":"ec-a"})", Claims(), *rsa_a_), kNow),
                "algorithm not allowed");
  ExpectRefused(v->Verify(SignWithKey(R"({"alg":"RS256","kid":7})", Claims(), *rsa_a_), kNow),
                "malformed token");
  // An unknown signer without kid.
  const KeyPair stranger = testing::GenerateRsa();
  ExpectRefused(v->Verify(SignWithKey(kRs, Claims(), stranger), kNow), "bad signature");
}

TEST_F(VerifierTest, RefusesAlgNone) {
  auto hs = Hs();
  auto jwks = Jwks();
  for (const char* header : {R"({"alg":"none"})", R"({"alg":"None","typ":"JWT"})",
                             R"({"alg":"NONE"})", R"({"alg":"hs256"})", R"({"alg":""})"}) {
    ExpectRefused(hs->Verify(Unsigned(header, Claims()), kNow), "algorithm not allowed");
    ExpectRefused(jwks->Verify(Unsigned(header, Claims()), kNow), "algorithm not allowed");
    // Even with a signature appended.
    ExpectRefused(hs->Verify(SignHs256(header, Claims(), kSecret), kNow), "algorithm not allowed");
  }
}

TEST_F(VerifierTest, RefusesAlgorithmsWithoutAConfiguredKey) {
  auto hs = Hs();
  ExpectRefused(hs->Verify(SignWithKey(kRs, Claims(), *rsa_a_), kNow), "algorithm not allowed");
  ExpectRefused(hs->Verify(SignWithKey(kEs, Claims(), *ec_a_), kNow), "algorithm not allowed");
  ExpectRefused(hs->Verify(SignHs256(R"({"alg":"HS512"})", Claims(), kSecret), kNow),
                "algorithm not allowed");
  auto rsa_only = Make({"", {dir_.Write("r.pem", rsa_a_->public_pem)}, "", "", "", seconds(30)});
  ExpectRefused(rsa_only->Verify(SignHs256(kHs, Claims(), kSecret), kNow), "algorithm not allowed");
  ExpectRefused(rsa_only->Verify(SignWithKey(kEs, Claims(), *ec_a_), kNow),
                "algorithm not allowed");
}

TEST_F(VerifierTest, RefusesHs256SignedWithThePublicKeyText) {
  const std::string pem_path = dir_.Write("r.pem", rsa_a_->public_pem);
  const std::string forged = SignHs256(kHs, Claims(), rsa_a_->public_pem);
  auto rsa_only = Make({"", {pem_path}, "", "", "", seconds(30)});
  ExpectRefused(rsa_only->Verify(forged, kNow), "algorithm not allowed");
  // With an HS256 secret configured too, HMAC uses that secret and nothing else.
  auto both = Make({kSecret, {pem_path}, "", "", "", seconds(30)});
  ExpectRefused(both->Verify(forged, kNow), "bad signature");
  ExpectRefused(
      both->Verify(SignHs256(R"({"alg":"HS256","kid":"r"})", Claims(), rsa_a_->public_pem), kNow),
      "bad signature");
  EXPECT_TRUE(both->Verify(SignHs256(kHs, Claims(), kSecret), kNow).ok());
}

TEST_F(VerifierTest, RefusesTamperedTokens) {
  auto v = Jwks();
  const std::string good = SignWithKey(kEs, Claims(), *ec_a_);
  const std::string other = SignWithKey(kEs, Claims(R"(,"channels":"*")"), *ec_a_);
  // Other payload, original signature.
  const std::string swapped = other.substr(0, other.rfind('.')) + good.substr(good.rfind('.'));
  ExpectRefused(v->Verify(swapped, kNow), "bad signature");
  // ES256 signature one byte short, and one flipped bit.
  std::string raw = *internal::Base64UrlDecode(good.substr(good.rfind('.') + 1));
  const std::string body = good.substr(0, good.rfind('.') + 1);
  ExpectRefused(v->Verify(body + internal::Base64UrlEncode(raw.substr(1)), kNow), "bad signature");
  raw[40] ^= 1;
  ExpectRefused(v->Verify(body + internal::Base64UrlEncode(raw), kNow), "bad signature");
  auto hs = Hs();
  ExpectRefused(hs->Verify(SignHs256(kHs, Claims(), kSecret + "x"), kNow), "bad signature");
}

TEST_F(VerifierTest, ExpiryHonoursLeeway) {
  auto v = Hs();  // leeway 30 s
  const long now = 1'800'000'000;
  EXPECT_TRUE(v->Verify(SignHs256(kHs, Claims("", now - 29), kSecret), kNow).ok());
  ExpectRefused(v->Verify(SignHs256(kHs, Claims("", now - 30), kSecret), kNow), "token expired");
  ExpectRefused(v->Verify(SignHs256(kHs, Claims("", now - 86400), kSecret), kNow), "token expired");
  auto strict = Make({kSecret, {}, "", "", "", seconds(0)});
  EXPECT_TRUE(strict->Verify(SignHs256(kHs, Claims("", now + 1), kSecret), kNow).ok());
  ExpectRefused(strict->Verify(SignHs256(kHs, Claims("", now), kSecret), kNow), "token expired");
  // Fractional and far-future values are numbers too.
  EXPECT_TRUE(
      strict->Verify(SignHs256(kHs, R"({"sub":"a","exp":1800000000.5})", kSecret), kNow).ok());
  auto far = strict->Verify(SignHs256(kHs, R"({"sub":"a","exp":1e300})", kSecret), kNow);
  ASSERT_TRUE(far.ok());
  EXPECT_EQ(far->expires_at, system_clock::time_point::max());
}

TEST_F(VerifierTest, NotBeforeHonoursLeeway) {
  auto v = Hs();
  EXPECT_TRUE(v->Verify(SignHs256(kHs, Claims(R"(,"nbf":1800000030)"), kSecret), kNow).ok());
  ExpectRefused(v->Verify(SignHs256(kHs, Claims(R"(,"nbf":1800000031)"), kSecret), kNow),
                "token not yet valid");
  ExpectRefused(v->Verify(SignHs256(kHs, Claims(R"(,"nbf":"soon")"), kSecret), kNow),
                "malformed token");
}

TEST_F(VerifierTest, IssuerAndAudienceAreCheckedWhenConfigured) {
  auto v = Make({kSecret, {}, "", "gathering", "bridge", seconds(30)});
  auto sign = [](const std::string& extra) { return SignHs256(kHs, Claims(extra), kSecret); };
  EXPECT_TRUE(v->Verify(sign(R"(,"iss":"gathering","aud":"bridge")"), kNow).ok());
  EXPECT_TRUE(v->Verify(sign(R"(,"iss":"gathering","aud":["other","bridge"])"), kNow).ok());
  ExpectRefused(v->Verify(sign(R"(,"iss":"evil","aud":"bridge")"), kNow), "wrong issuer");
  ExpectRefused(v->Verify(sign(R"(,"aud":"bridge")"), kNow), "wrong issuer");
  ExpectRefused(v->Verify(sign(R"(,"iss":["gathering"],"aud":"bridge")"), kNow), "wrong issuer");
  ExpectRefused(v->Verify(sign(R"(,"iss":"gathering","aud":"other")"), kNow), "wrong audience");
  ExpectRefused(v->Verify(sign(R"(,"iss":"gathering","aud":["other"])"), kNow), "wrong audience");
  ExpectRefused(v->Verify(sign(R"(,"iss":"gathering")"), kNow), "wrong audience");
  // Not configured: not checked.
  EXPECT_TRUE(Hs()->Verify(sign(R"(,"iss":"anyone","aud":"anything")"), kNow).ok());
}

TEST_F(VerifierTest, RefusesMissingOrMistypedClaims) {
  auto v = Hs();
  auto verify = [&](const std::string& payload) {
    return v->Verify(SignHs256(kHs, payload, kSecret), kNow);
  };
  ExpectRefused(verify(R"({"exp":1800003600})"), "missing subject");
  ExpectRefused(verify(R"({"sub":"","exp":1800003600})"), "missing subject");
  ExpectRefused(verify(R"({"sub":7,"exp":1800003600})"), "missing subject");
  ExpectRefused(verify(R"({"sub":"alice"})"), "missing expiry");
  ExpectRefused(verify(R"({"sub":"alice","exp":"1800003600"})"), "malformed token");
  ExpectRefused(verify(Claims(R"(,"channels":7)")), "malformed token");
  ExpectRefused(verify(Claims(R"(,"channels":["circles/dev",7])")), "malformed token");
  ExpectRefused(verify(Claims(R"(,"channels":{"a":1})")), "malformed token");
  ExpectRefused(verify(Claims(R"(,"channels":["circles/d*"])")), "invalid channel pattern");
  ExpectRefused(verify(Claims(R"(,"publish":"circles/dev bad")")), "invalid channel pattern");
  ExpectRefused(verify("[1]"), "malformed token");
  ExpectRefused(verify("not json"), "malformed token");
}

TEST_F(VerifierTest, RefusesMalformedTokens) {
  auto v = Hs();
  const std::string good = SignHs256(kHs, Claims(), kSecret);
  const std::size_t dot1 = good.find('.');
  const std::string sig = good.substr(good.rfind('.') + 1);
  const std::string body = good.substr(0, good.rfind('.'));
  for (const std::string& token : std::vector<std::string>{
           "", ".", "..", "abc", "a.b", "a.b.c.d", good + ".", "." + good,
           good.substr(dot1),                              // no header
           body + "." + sig + "=",                         // padded signature
           body + "." + sig.substr(1),                     // not base64url (length)
           "e30." + good.substr(dot1 + 1),                 // header {} without alg
           Unsigned(R"({"alg":"HS256")", Claims()) + sig,  // header not JSON
           Unsigned("[\"HS256\"]", Claims()) + sig,        // header not an object
           Unsigned(R"({"alg":256})", Claims()) + sig,     // alg not a string
           good.substr(0, dot1) + "..." + sig,             // stray dots
       }) {
    ExpectRefused(v->Verify(token, kNow), "malformed token");
  }
  ExpectRefused(
      v->Verify(SignHs256(R"({"alg":"HS256","crit":["exp"],"exp":1})", Claims(), kSecret), kNow),
      "malformed token");
  ExpectRefused(v->Verify(good.substr(0, dot1 + 1) + "!!!" + good.substr(good.rfind('.')), kNow),
                "bad signature");
}

TEST_F(VerifierTest, SizeLimitIs8KiB) {
  auto v = Hs();
  std::string last_fitting;
  std::string first_over;
  for (std::size_t pad = 5900; first_over.empty(); ++pad) {
    const std::string token =
        SignHs256(kHs, Claims(R"(,"pad":")" + std::string(pad, 'x') + "\""), kSecret);
    if (token.size() <= kMaxTokenBytes) last_fitting = token;
    if (token.size() > kMaxTokenBytes) first_over = token;
  }
  ASSERT_GE(last_fitting.size(), kMaxTokenBytes - 3);
  EXPECT_TRUE(v->Verify(last_fitting, kNow).ok());
  ExpectRefused(v->Verify(first_over, kNow), "token too large");
  ExpectRefused(v->Verify(std::string(1 << 20, 'a'), kNow), "token too large");
}

TEST_F(VerifierTest, VerifyIsSafeFromManyThreads) {
  auto v = Jwks();
  const std::string rs = SignWithKey(kRs, Claims(), *rsa_b_);
  const std::string es = SignWithKey(kEs, Claims(), *ec_a_);
  const std::string bad = SignWithKey(kRs, Claims(), *rsa_a_).substr(0, 200) + "x.y";
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        if (!v->Verify(rs, kNow).ok() || !v->Verify(es, kNow).ok() || v->Verify(bad, kNow).ok()) {
          ++failures;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace bridge::auth
