// Verification keys and signature checks for the three accepted JWS algorithms. Internal to
// bridge_auth (TokenVerifier uses it; tests and fuzz targets call it directly).
//
// A PublicKey is immutable once built and may be used by any number of threads at once
// (OpenSSL 3 allows concurrent operations on one EVP_PKEY). The Parse functions are pure.
#ifndef BRIDGE_AUTH_PUBLIC_KEY_H_
#define BRIDGE_AUTH_PUBLIC_KEY_H_

#include <openssl/types.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace bridge::auth::internal {

enum class Algorithm { kHs256, kRs256, kEs256 };

// "HS256", "RS256", "ES256".
std::string_view AlgorithmName(Algorithm alg);
// Exact, case-sensitive match of one of the names above; nullopt for anything else ("none"...).
std::optional<Algorithm> ParseAlgorithm(std::string_view name);

struct PkeyDeleter {
  void operator()(EVP_PKEY* pkey) const;
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

struct PublicKey {
  // Key id matched against a token's `kid`. Empty: the key has no id and is only tried for
  // tokens without a `kid`.
  std::string kid;
  Algorithm alg = Algorithm::kRs256;  // kRs256 or kEs256, fixed by the key type
  PkeyPtr pkey;                       // never null
};

// One PEM "PUBLIC KEY" (SubjectPublicKeyInfo): an RSA key of at least 2048 bits (RS256) or an
// EC P-256 key (ES256). Private keys, certificates and other curves are refused.
absl::StatusOr<PublicKey> ParsePemPublicKey(std::string_view pem, std::string kid);

// A JWK Set ({"keys":[...]}) with RSA (`n`, `e`) and EC P-256 (`crv`, `x`, `y`) keys. Keys whose
// `use` is not "sig", whose `kty` is not RSA/EC, or whose `alg` is neither RS256 nor ES256 are
// skipped (and logged); a malformed RSA/EC key, a duplicate `kid` or a set with no usable key is
// an error.
absl::StatusOr<std::vector<PublicKey>> ParseJwks(std::string_view json);

// HMAC-SHA256 of `signing_input` with `secret` (32 raw bytes).
std::string HmacSha256(std::string_view secret, std::string_view signing_input);

// Constant-time check of an HS256 signature (raw bytes, already base64url-decoded).
bool VerifyHs256(std::string_view secret, std::string_view signing_input,
                 std::string_view signature);

// Checks an RS256 (PKCS#1 v1.5) or ES256 (raw 64-byte R||S) signature with `key`.
bool VerifyWithKey(const PublicKey& key, std::string_view signing_input,
                   std::string_view signature);

}  // namespace bridge::auth::internal

#endif  // BRIDGE_AUTH_PUBLIC_KEY_H_
