// Redis endpoint URLs: "redis://[[user]:password@]host[:port][/db]" and "rediss://" (TLS).
// Pure; any thread.
#ifndef BRIDGE_BROKER_REDIS_URL_H_
#define BRIDGE_BROKER_REDIS_URL_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace bridge::broker {

struct RedisUrl {
  bool tls = false;      // rediss://
  std::string host;      // without brackets for IPv6 ("::1")
  uint16_t port = 6379;  // 6379 when the URL names none
  std::string user;      // percent-decoded; empty: no ACL user (AUTH <password> only)
  std::string password;  // percent-decoded; empty: no AUTH at all
  int db = 0;            // SELECT db after connecting; 0 is Redis's default and is not sent
};

// Parses a Redis URL. Fails with INVALID_ARGUMENT naming what is wrong: another scheme, a missing
// host, a bad port (0 or > 65535), a db that is not a non-negative integer, a bad %XX escape, an
// unclosed IPv6 bracket, or a query/fragment (not supported; options are set in code).
absl::StatusOr<RedisUrl> ParseRedisUrl(std::string_view url);

// "redis://host:port/db" with the password shown as "***" (for logs).
std::string RedactedUrl(const RedisUrl& url);

}  // namespace bridge::broker

#endif  // BRIDGE_BROKER_REDIS_URL_H_
