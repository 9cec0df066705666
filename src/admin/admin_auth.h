// Who may open the dashboard (/admin, /admin/ws) when the bridge runs with --auth=token: a token
// the bridge's verifier accepts whose claims hold `"admin": true` (mint one with
// `gathering-bridge token --admin`). It comes as `Authorization: Bearer <token>` or, for the
// browser's WebSocket that cannot set headers, as `?token=`. Without auth (no verifier) the
// dashboard is open: bind the admin listener to a private address (docs/operations.md).
//
// Pure function of its arguments; any thread.
#ifndef BRIDGE_ADMIN_ADMIN_AUTH_H_
#define BRIDGE_ADMIN_ADMIN_AUTH_H_

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "auth/verifier.h"

namespace bridge::admin {

struct AdminAccess {
  unsigned status = 200;  // 200 allowed; 401 no or bad token; 403 a valid token without admin
  std::string message;    // why not (safe to show: the verifier's short reasons)
  std::string subject;    // who, when a token was checked
};

// `authorization`: the header's value ("" when absent); `query_token`: ?token= when given.
AdminAccess CheckAdminAccess(const auth::TokenVerifier* verifier, std::string_view authorization,
                             std::optional<std::string_view> query_token,
                             std::chrono::system_clock::time_point now);

}  // namespace bridge::admin

#endif  // BRIDGE_ADMIN_ADMIN_AUTH_H_
