// TokenVerifier: checks a JWT (JWS compact form) and turns it into a Principal.
//
// Accepted algorithms are exactly those with a configured key: HS256 with `hs256_secret`,
// RS256/ES256 with PEM files and/or a JWKS file. Everything else, `alg: none` first, is refused.
// docs/security.md lists every check.
//
// Create once at startup (it reads the key files); the verifier is immutable afterwards, so
// Verify may be called from any number of threads at once without locking. Key rotation means
// creating a new verifier with the new files and swapping it in (e.g. an atomic shared_ptr).
#ifndef BRIDGE_AUTH_VERIFIER_H_
#define BRIDGE_AUTH_VERIFIER_H_

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "auth/principal.h"

namespace bridge::auth {

// Longest accepted token, in bytes; longer ones fail with "token too large" before any parsing.
inline constexpr std::size_t kMaxTokenBytes = 8 * 1024;
// Shortest accepted HS256 secret, in bytes (RFC 7518 3.2: at least the hash size).
inline constexpr std::size_t kMinHs256SecretBytes = 32;

struct VerifierConfig {
  // HS256 shared secret (raw bytes). Empty: HS256 is not accepted.
  std::string hs256_secret;
  // Files each holding one PEM "PUBLIC KEY" (RSA >= 2048 bits -> RS256, EC P-256 -> ES256). A
  // key's kid is its file name without directory and extension ("keys/2026-01.pem" -> "2026-01").
  // Empty: no PEM keys.
  std::vector<std::string> public_key_pem_files;
  // A JWK Set file (RSA and EC P-256 keys, each with its `kid`). Empty: no JWKS.
  std::string jwks_file;
  // Required `iss` claim. Empty: `iss` is not checked.
  std::string issuer;
  // Required `aud` (a string, or one element of an array). Empty: `aud` is not checked.
  std::string audience;
  // Clock skew allowed on `exp` and `nbf`. Zero: none.
  std::chrono::seconds leeway{30};
};

class TokenVerifier {
 public:
  // Loads and checks every configured key. Fails with INVALID_ARGUMENT (bad config, no key at
  // all, short secret, bad key) or NOT_FOUND (unreadable file), naming the culprit.
  static absl::StatusOr<std::unique_ptr<TokenVerifier>> Create(const VerifierConfig& config);

  ~TokenVerifier();
  TokenVerifier(const TokenVerifier&) = delete;
  TokenVerifier& operator=(const TokenVerifier&) = delete;

  // Verifies `token` at time `now`. On success the Principal has a non-empty subject and
  // expires_at set from `exp`. Every failure is UNAUTHENTICATED with a short message that is
  // safe to show the client ("token expired", "bad signature", "unknown key id", "algorithm not
  // allowed", "malformed token", ...). Thread-safe.
  absl::StatusOr<Principal> Verify(std::string_view token,
                                   std::chrono::system_clock::time_point now) const;

  // Number of RS256/ES256 keys loaded (for startup logs). Thread-safe.
  std::size_t public_key_count() const;

  // Takes `other`'s keys and claims checks (a reload at SIGHUP): verifications that started
  // before finish with the old ones. Thread-safe; const because holders of a const verifier
  // (every session, the gRPC service) must see the new keys without being told.
  void Replace(const TokenVerifier& other) const;

 private:
  struct Keys;
  explicit TokenVerifier(std::unique_ptr<Keys> keys);
  std::shared_ptr<const Keys> keys() const;

  mutable std::mutex mu_;
  mutable std::shared_ptr<const Keys> keys_;  // mu_
};

}  // namespace bridge::auth

#endif  // BRIDGE_AUTH_VERIFIER_H_
