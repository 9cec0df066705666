// The server's option structs from the configuration proto (config::Effective, validated).
#ifndef BRIDGE_APP_CONFIGURE_H_
#define BRIDGE_APP_CONFIGURE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "app/bridge_server.h"
#include "auth/api_keys.h"
#include "auth/verifier.h"
#include "config/config.h"

namespace bridge::app {

// The token verifier's settings (the key files read now).
absl::StatusOr<auth::VerifierConfig> VerifierConfigFrom(const config::Config& c);
// The verifier and API keys of `c` (null when auth.mode is none / no API key file).
struct AuthParts {
  std::shared_ptr<const auth::TokenVerifier> verifier;
  std::shared_ptr<const auth::ApiKeys> api_keys;
};
absl::StatusOr<AuthParts> AuthFrom(const config::Config& c);

// Everything BridgeServer::Start takes, from a validated effective configuration.
absl::StatusOr<ServerConfig> ServerConfigFrom(const config::Config& c);

}  // namespace bridge::app

#endif  // BRIDGE_APP_CONFIGURE_H_
