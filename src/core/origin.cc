#include "core/origin.h"

namespace bridge::core {
namespace {

// "https://example.com:8080" -> "example.com:8080"; "" when there is no scheme.
std::string_view HostPart(std::string_view origin) {
  size_t p = origin.find("://");
  if (p == std::string_view::npos) return {};
  return origin.substr(p + 3);
}

// "example.com:8080" -> "example.com", "[::1]:80" -> "[::1]".
std::string_view WithoutPort(std::string_view host) {
  if (!host.empty() && host[0] == '[') {
    size_t close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  return host.substr(0, host.find(':'));
}

}  // namespace

bool OriginAllowed(const OriginPolicy& policy, std::string_view origin, std::string_view host) {
  // Browsers always send Origin on upgrades; without one the client is not a browser, and
  // cross-site WebSocket hijacking (what this check prevents) needs a browser.
  if (origin.empty()) return true;
  if (!policy.allowed.empty()) {
    for (const auto& a : policy.allowed) {
      if (a == "*" || a == origin) return true;
    }
    return false;
  }
  if (policy.auth_enabled) return true;
  std::string_view origin_host = HostPart(origin);
  if (origin_host.empty()) return false;  // "null" and other opaque origins
  if (origin_host == host) return true;
  std::string_view name = WithoutPort(origin_host);
  return name == "localhost" || name == "127.0.0.1" || name == "[::1]";
}

}  // namespace bridge::core
