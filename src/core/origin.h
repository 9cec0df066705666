// The Origin check for browser WebSocket upgrades (cross-site WebSocket hijacking). Pure.
#ifndef BRIDGE_CORE_ORIGIN_H_
#define BRIDGE_CORE_ORIGIN_H_

#include <string>
#include <string_view>
#include <vector>

namespace bridge::core {

struct OriginPolicy {
  // Exact origins ("https://app.example.com") or "*". Empty: the default below. Requests
  // without an Origin (non-browser clients) are always allowed.
  std::vector<std::string> allowed;
  // Whether tokens are required. With no allow-list and auth off, only requests without an
  // Origin (non-browser clients), same-host origins and localhost origins are accepted; with
  // auth on and no allow-list, any origin is (the token is the check).
  bool auth_enabled = false;
};

// `origin` is the request's Origin header ("" when absent), `host` its Host header.
bool OriginAllowed(const OriginPolicy& policy, std::string_view origin, std::string_view host);

}  // namespace bridge::core

#endif  // BRIDGE_CORE_ORIGIN_H_
