#include "auth/mint.h"

#include <exception>
#include <jwt/jwt.hpp>

#include "auth/channel_pattern.h"
#include "auth/text.h"
#include "auth/verifier.h"

namespace bridge::auth {

absl::StatusOr<std::string> MintToken(const MintOptions& options,
                                      std::chrono::system_clock::time_point now) {
  if (options.subject.empty()) return absl::InvalidArgumentError("empty subject");
  if (options.hs256_secret.size() < kMinHs256SecretBytes) {
    return absl::InvalidArgumentError(
        internal::Cat("HS256 secret is shorter than ", kMinHs256SecretBytes, " bytes"));
  }
  if (options.ttl.count() <= 0) return absl::InvalidArgumentError("ttl must be positive");
  for (const auto* grants : {&options.channels, &options.publish}) {
    for (const std::string& p : *grants) {
      if (!PatternValid(p)) {
        return absl::InvalidArgumentError(internal::Cat("invalid channel pattern '", p, "'"));
      }
    }
  }
  const int64_t iat =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  try {
    jwt::jwt_object token{jwt::params::algorithm("HS256"),
                          jwt::params::secret(options.hs256_secret)};
    token.add_claim("sub", options.subject);
    token.add_claim("iat", iat);
    token.add_claim("exp", iat + int64_t(options.ttl.count()));
    if (!options.issuer.empty()) token.add_claim("iss", options.issuer);
    if (!options.audience.empty()) token.add_claim("aud", options.audience);
    if (!options.channels.empty()) token.add_claim("channels", options.channels);
    if (!options.publish.empty()) token.add_claim("publish", options.publish);
    if (options.admin) token.add_claim("admin", true);
    std::error_code ec;
    std::string out = token.signature(ec);
    if (ec) return absl::InternalError(internal::Cat("signing failed: ", ec.message()));
    return out;
  } catch (const std::exception& e) {
    return absl::InternalError(internal::Cat("signing failed: ", e.what()));
  }
}

}  // namespace bridge::auth
