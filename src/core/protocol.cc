#include "core/protocol.h"

#include <array>

#include "core/strings.h"
#include "gathering/bridge/v1/events.pb.h"
#include "google/protobuf/descriptor.h"

namespace bridge::core {
namespace {

constexpr std::array kCloseCodes = {
    CloseCodeInfo{CloseCode::kNormal, "normal close", true},
    CloseCodeInfo{CloseCode::kGoingAway, "server going away (shutdown, idle timeout)", true},
    CloseCodeInfo{CloseCode::kProtocolError, "protocol error", false},
    CloseCodeInfo{CloseCode::kInvalidData, "invalid UTF-8 in a text message or close reason",
                  false},
    CloseCodeInfo{CloseCode::kTooBig, "message too big", true},
    // Retryable only after an accepted token expired and a new one can be had (clients' getToken).
    CloseCodeInfo{CloseCode::kUnauthenticated, "unauthenticated", false},
    CloseCodeInfo{CloseCode::kForbidden, "forbidden", false},
    CloseCodeInfo{CloseCode::kSlowConsumer, "slow consumer or rate limited", true},
    CloseCodeInfo{CloseCode::kNotFound, "unknown namespace", false},
    CloseCodeInfo{CloseCode::kBadRequest, "bad request", false},
    CloseCodeInfo{CloseCode::kTooManyFromIp, "too many connections from this address", true},
    CloseCodeInfo{CloseCode::kUnavailable, "shutting down or too many connections", true},
};

constexpr std::array kErrorCodes = {
    ErrorCode::kInvalidJson,        ErrorCode::kNotAnObject,     ErrorCode::kInvalidType,
    ErrorCode::kBinaryNotSupported, ErrorCode::kInvalidChannel,  ErrorCode::kInvalidSince,
    ErrorCode::kNotSubscribed,      ErrorCode::kTooManyChannels, ErrorCode::kReservedType,
    ErrorCode::kRateLimited,        ErrorCode::kForbidden,       ErrorCode::kUnauthenticated,
    ErrorCode::kInvalidUtf8,        ErrorCode::kUnavailable,     ErrorCode::kInvalidId,
    ErrorCode::kInvalidLimit,       ErrorCode::kMessageTooBig,
};

constexpr std::array<std::string_view, 11> kServerControlTypes = {
    "ping",  "pong", "subscribed", "unsubscribed", "authenticated", "gap",
    "error", "ack",  "history",    "presence",     "reconnect"};
constexpr std::array<std::string_view, 7> kClientControlTypes = {
    "ping", "pong", "auth", "subscribe", "unsubscribe", "history", "presence"};

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
    case ErrorCode::kInvalidId:
      return "invalid_id";
    case ErrorCode::kInvalidLimit:
      return "invalid_limit";
    case ErrorCode::kMessageTooBig:
      return "message_too_big";
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
  auto f = std::make_shared<Frame>();
  f->text = std::move(s);
  f->channel = std::string(channel);
  f->epoch = std::string(epoch);
  return f;
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

FramePtr WithContext(const FramePtr& frame, const AnswerContext& context) {
  if (context.empty()) return frame;
  std::string text = frame->text;
  text.pop_back();  // the closing brace
  if (!context.channel.empty() && text.find(R"("channel":)") == std::string::npos) {
    text += Cat(R"(,"channel":)", JsonQuote(context.channel));
  }
  if (!context.id.empty()) text += Cat(R"(,"id":)", context.id);
  text += "}";
  auto f = std::make_shared<Frame>();
  f->text = std::move(text);
  f->channel = frame->channel;
  f->epoch = frame->epoch;
  return f;
}

FramePtr AckFrame(const AnswerContext& context, uint64_t offset) {
  std::string s = R"({"type":"ack")";
  if (offset != 0) s += Cat(R"(,"offset":)", offset);
  s += "}";
  return WithContext(MakeControlFrame(std::move(s)), context);
}

FramePtr HistoryAnswerFrame(const AnswerContext& context, std::string_view epoch, uint64_t offset,
                            bool complete, const std::vector<FramePtr>& messages) {
  size_t size = 128;
  for (const auto& m : messages) size += m->text.size() + 1;
  std::string s;
  s.reserve(size);
  s += Cat(R"({"type":"history","channel":)", JsonQuote(context.channel), R"(,"epoch":)",
           JsonQuote(epoch), R"(,"offset":)", offset, R"(,"complete":)",
           complete ? "true" : "false", R"(,"messages":[)");
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i != 0) s += ",";
    s += messages[i]->text;
  }
  s += "]}";
  return WithContext(MakeControlFrame(std::move(s)), context);
}

FramePtr PresenceAnswerFrame(const AnswerContext& context,
                             const std::vector<PresenceAnswerMember>& members,
                             uint32_t connection_count) {
  std::string s = Cat(R"({"type":"presence","channel":)", JsonQuote(context.channel),
                      R"(,"connection_count":)", connection_count, R"(,"members":[)");
  for (size_t i = 0; i < members.size(); ++i) {
    if (i != 0) s += ",";
    s += Cat(R"({"identity":)", JsonQuote(members[i].identity), R"(,"connections":)",
             members[i].connections, R"(,"joined_at":")", FormatTimestamp(members[i].joined_at),
             R"("})");
  }
  s += "]}";
  return WithContext(MakeControlFrame(std::move(s)), context);
}

FramePtr ReconnectFrame(std::string_view reason, const std::vector<ResumePosition>& positions) {
  size_t size = 64 + reason.size();
  for (const auto& p : positions) size += p.channel.size() + p.epoch.size() + 48;
  std::string s;
  s.reserve(size);
  s += Cat(R"({"type":"reconnect","reason":)", JsonQuote(reason), R"(,"positions":{)");
  for (size_t i = 0; i < positions.size(); ++i) {
    if (i != 0) s += ",";
    s += Cat(JsonQuote(positions[i].channel), R"(:{"epoch":)", JsonQuote(positions[i].epoch),
             R"(,"offset":)", positions[i].offset, "}");
  }
  s += "}}";
  return MakeControlFrame(std::move(s));
}

}  // namespace bridge::core
