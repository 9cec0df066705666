// libFuzzer target for TokenVerifier and the JWKS parser. The first byte picks what the rest is
// (byte % 3):
//   0: a token, verified as is (header, base64url, key selection, signature parsing);
//   1: a JWT payload (claims JSON), wrapped in a correctly signed HS256 token so that the claim
//      checks behind the signature are reached too;
//   2: a JWKS document, parsed.
// Accepted principals are checked against the documented guarantees; a violation aborts.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>

#include "auth/base64url.h"
#include "auth/channel_pattern.h"
#include "auth/public_key.h"
#include "auth/verifier.h"

namespace {

using bridge::auth::TokenVerifier;
using bridge::auth::VerifierConfig;
using bridge::auth::internal::Base64UrlEncode;

constexpr char kSecret[] = "fuzz-secret-0123456789abcdef-0123456789";
const std::chrono::system_clock::time_point kNow{std::chrono::seconds(1'800'000'000)};

// Writes the public half of a freshly generated key as <dir>/<kid>.pem.
std::string WritePublicKey(EVP_PKEY* pkey, const std::filesystem::path& dir, const char* kid) {
  const std::string path = (dir / (std::string(kid) + ".pem")).string();
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr || PEM_write_PUBKEY(f, pkey) != 1) std::abort();
  std::fclose(f);
  EVP_PKEY_free(pkey);
  return path;
}

// Keys are generated per process (none committed): the corpus cannot hold valid RS256/ES256
// signatures, but every step before the signature check is reached, and mode 1 covers claims.
const TokenVerifier& Verifier() {
  static const TokenVerifier* verifier = [] {
    std::string dir = (std::filesystem::temp_directory_path() / "fuzz_auth_XXXXXX").string();
    if (mkdtemp(dir.data()) == nullptr) std::abort();
    VerifierConfig config;
    config.hs256_secret = kSecret;
    config.public_key_pem_files = {WritePublicKey(EVP_RSA_gen(2048), dir, "rsa1"),
                                   WritePublicKey(EVP_EC_gen("P-256"), dir, "ec1")};
    config.issuer = "fuzz-iss";
    config.audience = "fuzz-aud";
    auto created = TokenVerifier::Create(config);
    std::filesystem::remove_all(dir);
    if (!created.ok()) std::abort();
    return created->release();
  }();
  return *verifier;
}

void CheckToken(std::string_view token) {
  auto principal = Verifier().Verify(token, kNow);
  if (!principal.ok()) {
    if (principal.status().code() != absl::StatusCode::kUnauthenticated) std::abort();
    return;
  }
  if (principal->subject.empty() || !principal->expires_at.has_value() ||
      *principal->expires_at <= kNow - std::chrono::seconds(30)) {
    std::abort();
  }
  for (const auto* grants : {&principal->channels, &principal->publish}) {
    for (const std::string& p : *grants) {
      if (!bridge::auth::PatternValid(p)) std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      CheckToken(rest);
      break;
    case 1: {
      const std::string input =
          Base64UrlEncode(R"({"alg":"HS256","typ":"JWT"})") + "." + Base64UrlEncode(rest);
      CheckToken(input + "." + Base64UrlEncode(bridge::auth::internal::HmacSha256(kSecret, input)));
      break;
    }
    default:
      (void)bridge::auth::internal::ParseJwks(rest);
      break;
  }
  return 0;
}
