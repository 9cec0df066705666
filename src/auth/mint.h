// MintToken: issues HS256 tokens that TokenVerifier accepts; backs the
// `gathering-bridge token` subcommand and tests. Pure function, any thread.
#ifndef BRIDGE_AUTH_MINT_H_
#define BRIDGE_AUTH_MINT_H_

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace bridge::auth {

struct MintOptions {
  std::string subject;                // `sub`; required
  std::vector<std::string> channels;  // `channels` (subscribe grants); empty: claim omitted
  std::vector<std::string> publish;   // `publish` grants; empty: claim omitted
  bool admin = false;                 // `"admin": true` (the dashboard); false: claim omitted
  std::chrono::seconds ttl{3600};     // `exp` = now + ttl; must be positive
  std::string hs256_secret;           // at least kMinHs256SecretBytes (32) bytes
  std::string issuer;                 // `iss`; empty: claim omitted
  std::string audience;               // `aud`; empty: claim omitted
};

// A compact JWS (header {"alg":"HS256","typ":"JWT"}) with `iat` = now. INVALID_ARGUMENT for an
// empty subject, a short secret, a non-positive ttl, or an invalid channel pattern.
absl::StatusOr<std::string> MintToken(const MintOptions& options,
                                      std::chrono::system_clock::time_point now);

}  // namespace bridge::auth

#endif  // BRIDGE_AUTH_MINT_H_
