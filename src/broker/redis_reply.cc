#include "broker/redis_reply.h"

#include <hiredis/hiredis.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace bridge::broker {

RedisReply RedisReply::Integer(int64_t v) {
  RedisReply r;
  r.type = Type::kInteger;
  r.integer = v;
  return r;
}

RedisReply RedisReply::String(std::string s) {
  RedisReply r;
  r.type = Type::kString;
  r.str = std::move(s);
  return r;
}

RedisReply RedisReply::Status(std::string s) {
  RedisReply r = String(std::move(s));
  r.type = Type::kStatus;
  return r;
}

RedisReply RedisReply::Error(std::string s) {
  RedisReply r = String(std::move(s));
  r.type = Type::kError;
  return r;
}

RedisReply RedisReply::Array(std::vector<RedisReply> elements) {
  RedisReply r;
  r.type = Type::kArray;
  r.elements = std::move(elements);
  return r;
}

RedisReply RedisReply::FromHiredis(const redisReply& r) {
  switch (r.type) {
    case REDIS_REPLY_INTEGER:
      return Integer(r.integer);
    case REDIS_REPLY_STRING:
      return String(std::string(r.str, r.len));
    case REDIS_REPLY_STATUS:
      return Status(std::string(r.str, r.len));
    case REDIS_REPLY_ERROR:
      return Error(std::string(r.str, r.len));
    case REDIS_REPLY_ARRAY: {
      std::vector<RedisReply> elements;
      elements.reserve(r.elements);
      for (size_t i = 0; i < r.elements; ++i) elements.push_back(FromHiredis(*r.element[i]));
      return Array(std::move(elements));
    }
    default:
      return Nil();
  }
}

std::string RedisReply::DebugString() const {
  constexpr size_t kMaxShown = 64;
  auto text = [&](const char* prefix) {
    if (str.size() <= kMaxShown) return absl::StrCat(prefix, "\"", str, "\"");
    return absl::StrCat(prefix, "\"", str.substr(0, kMaxShown), "...\" (", str.size(), " bytes)");
  };
  switch (type) {
    case Type::kNil:
      return "nil";
    case Type::kInteger:
      return absl::StrCat("(integer) ", integer);
    case Type::kString:
      return text("");
    case Type::kStatus:
      return text("+");
    case Type::kError:
      return text("-");
    case Type::kArray: {
      std::string out = "[";
      for (size_t i = 0; i < elements.size(); ++i) {
        if (i == 8) {
          absl::StrAppend(&out, ", ... (", elements.size(), " elements)");
          break;
        }
        absl::StrAppend(&out, i ? ", " : "", elements[i].DebugString());
      }
      return out + "]";
    }
  }
  return "?";
}

bool operator==(const RedisReply& a, const RedisReply& b) {
  return a.type == b.type && a.integer == b.integer && a.str == b.str && a.elements == b.elements;
}

absl::Status ReplyToStatus(const RedisReply& reply) {
  if (!reply.is_error()) return absl::OkStatus();
  const std::string message = absl::StrCat("redis: ", reply.str);
  if (absl::StartsWith(reply.str, "NOAUTH") || absl::StartsWith(reply.str, "WRONGPASS") ||
      absl::StartsWith(reply.str, "NOPERM")) {
    return absl::PermissionDeniedError(message);
  }
  return absl::FailedPreconditionError(message);
}

}  // namespace bridge::broker
