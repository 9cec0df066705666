// Principal: who a verified token or API key speaks for, and what it may do.
//
// A plain value: built by TokenVerifier::Verify or ApiKeys::Lookup, then copied or moved into the
// session that owns it. Const methods may be called from any thread.
#ifndef BRIDGE_AUTH_PRINCIPAL_H_
#define BRIDGE_AUTH_PRINCIPAL_H_

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bridge::auth {

// Longest token subject, in bytes (it becomes the connection's identity).
inline constexpr std::size_t kMaxSubjectBytes = 128;

struct Principal {
  // The token's `sub`, or the API key's name. Never empty for a verified principal.
  std::string subject;
  // Subscribe grants (channel patterns, see channel_pattern.h). Empty: may subscribe to nothing.
  std::vector<std::string> channels;
  // Publish grants: channels this principal may send client messages to. Empty: publishes
  // nothing.
  std::vector<std::string> publish;
  // The token's `exp`. Empty: never expires (API keys). The session should close with 4001 when
  // this passes.
  std::optional<std::chrono::system_clock::time_point> expires_at;
  // When the session must end: `expires_at` plus the verifier's leeway (the same leeway that
  // verification allowed). Empty with `expires_at`.
  std::optional<std::chrono::system_clock::time_point> deadline;
  // The token's `"admin": true`: may open the admin dashboard (/admin, /admin/ws). API keys
  // never carry it.
  bool admin = false;

  // True when a subscribe grant matches `channel`.
  bool CanSubscribe(std::string_view channel) const;
  // True when a publish grant matches `channel`.
  bool CanPublish(std::string_view channel) const;
};

}  // namespace bridge::auth

#endif  // BRIDGE_AUTH_PRINCIPAL_H_
