#include "core/protocol.h"

#include <array>

#include "core/strings.h"
#include "gathering/bridge/v1/events.pb.h"
#include "google/protobuf/descriptor.h"

namespace bridge::core {
namespace {

constexpr std::array kCloseCodes = {
    CloseCodeInfo{CloseCode::kNormal, "normal close"},
    CloseCodeInfo{CloseCode::kGoingAway, "server going away (shutdown, idle timeout)"},
    CloseCodeInfo{CloseCode::kProtocolError, "protocol error"},
    CloseCodeInfo{CloseCode::kInvalidData, "invalid UTF-8 in a text message or close reason"},
    CloseCodeInfo{CloseCode::kTooBig, "message too big"},
    CloseCodeInfo{CloseCode::kUnauthenticated, "unauthenticated"},
    CloseCodeInfo{CloseCode::kForbidden, "forbidden"},
    CloseCodeInfo{CloseCode::kSlowConsumer, "slow consumer or rate limited"},
};

constexpr std::array kErrorCodes = {
    ErrorCode::kInvalidJson,        ErrorCode::kNotAnObject,     ErrorCode::kInvalidType,
    ErrorCode::kBinaryNotSupported, ErrorCode::kInvalidChannel,  ErrorCode::kInvalidSince,
    ErrorCode::kNotSubscribed,      ErrorCode::kTooManyChannels, ErrorCode::kReservedType,
    ErrorCode::kRateLimited,        ErrorCode::kForbidden,       ErrorCode::kUnauthenticated,
    ErrorCode::kInvalidUtf8,        ErrorCode::kUnavailable,
};

constexpr std::array<std::string_view, 7> kServerControlTypes = {
    "ping", "pong", "subscribed", "unsubscribed", "authenticated", "gap", "error"};
constexpr std::array<std::string_view, 5> kClientControlTypes = {"ping", "pong", "auth",
                                                                 "subscribe", "unsubscribe"};

}  // namespace

std::span<const CloseCodeInfo> CloseCodes() { return kCloseCodes; }

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidJson:
      return "invalid_json";
    case ErrorCode::kNotAnObject:
      return "not_an_object";
    case ErrorCode::kInvalidType:
      return "invalid_type";
    case ErrorCode::kBinaryNotSupported:
      return "binary_not_supported";
    case ErrorCode::kInvalidChannel:
      return "invalid_channel";
    case ErrorCode::kInvalidSince:
      return "invalid_since";
    case ErrorCode::kNotSubscribed:
      return "not_subscribed";
    case ErrorCode::kTooManyChannels:
      return "too_many_channels";
    case ErrorCode::kReservedType:
      return "reserved_type";
    case ErrorCode::kRateLimited:
      return "rate_limited";
    case ErrorCode::kForbidden:
      return "forbidden";
    case ErrorCode::kUnauthenticated:
      return "unauthenticated";
    case ErrorCode::kInvalidUtf8:
      return "invalid_utf8";
    case ErrorCode::kUnavailable:
      return "unavailable";
  }
  return "unknown";
}

std::span<const ErrorCode> ErrorCodes() { return kErrorCodes; }
std::span<const std::string_view> ServerControlTypes() { return kServerControlTypes; }
std::span<const std::string_view> ClientControlTypes() { return kClientControlTypes; }

bool IsReservedType(std::string_view type) {
  for (std::string_view t : kServerControlTypes) {
    if (type == t) return true;
  }
  for (std::string_view t : kClientControlTypes) {
    if (type == t) return true;
  }
  if (type == "custom") return true;
  static const auto* oneof = gathering::bridge::v1::Event::descriptor()->FindOneofByName("payload");
  for (int i = 0; i < oneof->field_count(); ++i) {
    if (type == oneof->field(i)->name()) return true;
  }
  return false;
}

FramePtr PongFrame() {
  static const FramePtr kPong = MakeControlFrame(R"({"type":"pong"})");
  return kPong;
}

FramePtr PingFrame() {
  static const FramePtr kPing = MakeControlFrame(R"({"type":"ping"})");
  return kPing;
}

FramePtr ErrorFrame(ErrorCode code, std::string_view message) {
  return MakeControlFrame(Cat(R"({"type":"error","data":{"code":")", ErrorCodeName(code),
                              R"(","message":)", JsonQuote(message), "}}"));
}

FramePtr SubscribedFrame(std::string_view channel, std::string_view epoch, uint64_t offset,
                         std::optional<bool> recovered) {
  std::string s = Cat(R"({"type":"subscribed","channel":)", JsonQuote(channel), R"(,"epoch":)",
                      JsonQuote(epoch), R"(,"offset":)", offset);
  if (recovered) s += *recovered ? R"(,"recovered":true)" : R"(,"recovered":false)";
  s += "}";
  return MakeControlFrame(std::move(s));
}

FramePtr UnsubscribedFrame(std::string_view channel) {
  return MakeControlFrame(Cat(R"({"type":"unsubscribed","channel":)", JsonQuote(channel), "}"));
}

FramePtr AuthenticatedFrame(std::string_view identity,
                            std::optional<std::chrono::system_clock::time_point> expires_at) {
  std::string s = Cat(R"({"type":"authenticated","identity":)", JsonQuote(identity));
  if (expires_at) s += Cat(R"(,"expires_at":")", FormatTimestamp(*expires_at), "\"");
  s += "}";
  return MakeControlFrame(std::move(s));
}

FramePtr GapFrame(std::string_view channel, uint64_t from, uint64_t to) {
  return MakeControlFrame(Cat(R"({"type":"gap","channel":)", JsonQuote(channel), R"(,"from":)",
                              from, R"(,"to":)", to, "}"));
}

}  // namespace bridge::core
