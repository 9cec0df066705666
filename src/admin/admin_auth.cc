#include "admin/admin_auth.h"

#include "core/strings.h"

namespace bridge::admin {

AdminAccess CheckAdminAccess(const auth::TokenVerifier* verifier, std::string_view authorization,
                             std::optional<std::string_view> query_token,
                             std::chrono::system_clock::time_point now) {
  if (verifier == nullptr) return AdminAccess{};
  std::string_view token;
  if (!authorization.empty()) {
    // The scheme is case-insensitive (RFC 9110 11.1); only Bearer is known here.
    if (authorization.size() < 7 ||
        (authorization.substr(0, 7) != "Bearer " && authorization.substr(0, 7) != "bearer ")) {
      return AdminAccess{401, "Authorization must be 'Bearer <token>'", ""};
    }
    token = authorization.substr(7);
  } else if (query_token) {
    token = *query_token;
  }
  if (token.empty()) {
    return AdminAccess{401, "an admin token is required (Authorization: Bearer or ?token=)", ""};
  }
  auto principal = verifier->Verify(token, now);
  if (!principal.ok()) return AdminAccess{401, std::string(principal.status().message()), ""};
  if (!principal->admin) {
    return AdminAccess{403, core::Cat("token of '", principal->subject, "' has no admin grant"),
                       principal->subject};
  }
  return AdminAccess{200, "", principal->subject};
}

}  // namespace bridge::admin
