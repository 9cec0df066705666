// ApiKeys: static keys for agents and services that cannot mint tokens.
//
// File format, one key per line:
//   <key> <name> <pattern>[,<pattern>...]
// `key` is the secret (16-512 printable bytes, no spaces), `name` becomes Principal::subject
// ([A-Za-z0-9_.:@-]+), and the patterns (channel_pattern.h) are both the publish and subscribe
// grants: a client can only send to a channel it is on. Blank lines and lines starting with '#'
// are ignored; fields are separated by spaces or tabs. A key must not appear twice.
//
// Only SHA-256 digests of the keys are kept in memory, and Lookup compares the digest of the
// presented key against every entry with a constant-time comparison.
//
// Immutable after LoadFile: Lookup may be called from any thread. Copyable and movable. A
// default-constructed or empty ApiKeys accepts no key.
#ifndef BRIDGE_AUTH_API_KEYS_H_
#define BRIDGE_AUTH_API_KEYS_H_

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "auth/principal.h"

namespace bridge::auth {

inline constexpr std::size_t kMinApiKeyBytes = 16;
inline constexpr std::size_t kMaxApiKeyBytes = 512;

class ApiKeys {
 public:
  ApiKeys() = default;

  // Reads the file. NOT_FOUND when it cannot be opened; INVALID_ARGUMENT naming the file and the
  // first bad line ("keys.txt:3: duplicate key") otherwise. The message never contains a key.
  static absl::StatusOr<ApiKeys> LoadFile(const std::string& path);
  // Same, from the file's contents; `source` names it in errors.
  static absl::StatusOr<ApiKeys> Parse(std::string_view contents, std::string_view source);

  // The principal of `key` (no expiry), or nullopt when no entry matches. Thread-safe.
  std::optional<Principal> Lookup(std::string_view key) const;

  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::array<unsigned char, 32> digest;
    std::string name;
    std::vector<std::string> patterns;
  };
  std::vector<Entry> entries_;
};

}  // namespace bridge::auth

#endif  // BRIDGE_AUTH_API_KEYS_H_
