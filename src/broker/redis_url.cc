#include "broker/redis_url.h"

#include <charconv>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/uri.h"

namespace bridge::broker {
namespace {

absl::Status Bad(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("redis url: ", what));
}

template <typename T>
std::optional<T> ParseDigits(std::string_view s) {
  if (s.empty()) return std::nullopt;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  T value{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

}  // namespace

absl::StatusOr<RedisUrl> ParseRedisUrl(std::string_view url) {
  RedisUrl out;
  const size_t sep = url.find("://");
  if (sep == std::string_view::npos) return Bad("expected redis:// or rediss://");
  const std::string scheme = absl::AsciiStrToLower(std::string(url.substr(0, sep)));
  if (scheme == "rediss") {
    out.tls = true;
  } else if (scheme != "redis") {
    return Bad(absl::StrCat("unsupported scheme \"", scheme, "\" (redis:// or rediss://)"));
  }
  std::string_view rest = url.substr(sep + 3);
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return Bad("query and fragment are not supported");
  }
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);

  // The last '@' ends the user info, so an unescaped '@' in a password still parses.
  if (const size_t at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view info = authority.substr(0, at);
    authority = authority.substr(at + 1);
    const size_t colon = info.find(':');
    std::string_view user = colon == std::string_view::npos ? "" : info.substr(0, colon);
    std::string_view password = colon == std::string_view::npos ? info : info.substr(colon + 1);
    auto u = core::PercentDecode(user, false);
    auto p = core::PercentDecode(password, false);
    if (!u || !p) return Bad("bad %-escape in user or password");
    out.user = std::move(*u);
    out.password = std::move(*p);
    if (!out.user.empty() && out.password.empty()) return Bad("a user needs a password");
  }

  std::string_view port;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return Bad("unclosed '[' in IPv6 host");
    out.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return Bad("unexpected text after IPv6 host");
      port = after.substr(1);
      has_port = true;
    }
  } else {
    const size_t colon = authority.find(':');
    if (colon != std::string_view::npos) {
      if (authority.find(':', colon + 1) != std::string_view::npos) {
        return Bad("IPv6 hosts must be written in brackets, e.g. [::1]:6379");
      }
      port = authority.substr(colon + 1);
      has_port = true;
    }
    auto host = core::PercentDecode(authority.substr(0, colon), false);
    if (!host) return Bad("bad %-escape in host");
    out.host = std::move(*host);
  }
  if (out.host.empty()) return Bad("missing host");
  if (has_port) {
    auto p = ParseDigits<uint32_t>(port);
    if (!p || *p == 0 || *p > 65535) {
      return Bad(absl::StrCat("bad port \"", std::string(port), "\" (1..65535)"));
    }
    out.port = static_cast<uint16_t>(*p);
  }

  if (path.size() > 1) {
    auto db = ParseDigits<int>(path.substr(1));
    if (!db) {
      return Bad(
          absl::StrCat("bad db \"", std::string(path.substr(1)), "\" (a non-negative integer)"));
    }
    out.db = *db;
  }
  return out;
}

std::string RedactedUrl(const RedisUrl& url) {
  const bool v6 = url.host.find(':') != std::string::npos;
  std::string auth;
  if (!url.password.empty()) auth = absl::StrCat(url.user, ":***@");
  return absl::StrCat(url.tls ? "rediss://" : "redis://", auth, v6 ? "[" : "", url.host,
                      v6 ? "]" : "", ":", url.port, "/", url.db);
}

}  // namespace bridge::broker
