// RedisReply: one decoded RESP2 reply, owning its data (a converted copy of hiredis's
// redisReply, which is freed right after conversion). A plain value: copy, move, use on any
// thread.
//
// A Redis error reply ("-ERR ...", "-NOSCRIPT ...", "-WRONGPASS ...") is a reply of type
// kError, not a failed absl::Status: the command reached Redis and Redis answered. Use
// ReplyToStatus() when an error reply should become a Status.
#ifndef BRIDGE_BROKER_REDIS_REPLY_H_
#define BRIDGE_BROKER_REDIS_REPLY_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

struct redisReply;

namespace bridge::broker {

struct RedisReply {
  enum class Type { kNil, kInteger, kString, kStatus, kError, kArray };

  Type type = Type::kNil;
  int64_t integer = 0;               // kInteger only
  std::string str;                   // kString (bulk), kStatus ("OK"), kError ("ERR ...")
  std::vector<RedisReply> elements;  // kArray only; a nil array ("*-1") is kNil

  bool is_nil() const { return type == Type::kNil; }
  bool is_error() const { return type == Type::kError; }
  bool is_array() const { return type == Type::kArray; }
  bool is_integer() const { return type == Type::kInteger; }
  // kString or kStatus.
  bool is_text() const { return type == Type::kString || type == Type::kStatus; }
  // True for a kString/kStatus equal to `s` (exact, case-sensitive).
  bool Is(std::string_view s) const { return is_text() && str == s; }

  // A short human-readable rendering for logs and test failures (long strings elided).
  std::string DebugString() const;

  static RedisReply Nil() { return {}; }
  static RedisReply Integer(int64_t v);
  static RedisReply String(std::string s);
  static RedisReply Status(std::string s);
  static RedisReply Error(std::string s);
  static RedisReply Array(std::vector<RedisReply> elements);

  // Deep copy of a hiredis reply (does not free it).
  static RedisReply FromHiredis(const redisReply& r);
};

bool operator==(const RedisReply& a, const RedisReply& b);

// OK for any reply but kError; for kError, a Status whose message is the error text and whose
// code is FAILED_PRECONDITION (or PERMISSION_DENIED for NOAUTH/WRONGPASS/NOPERM).
absl::Status ReplyToStatus(const RedisReply& reply);

}  // namespace bridge::broker

#endif  // BRIDGE_BROKER_REDIS_REPLY_H_
