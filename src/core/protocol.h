// The wire vocabulary of the WebSocket edge, in one place: the close codes the bridge sends, the
// error codes of its error frames, the frame types it reserves, and the builders of every control
// frame it emits. docs/protocol.md documents each table; tests/unit/core/protocol_test.cc checks
// the document and the TypeScript and Python clients against the lists here.
//
// Pure functions and constants; any thread.
#ifndef BRIDGE_CORE_PROTOCOL_H_
#define BRIDGE_CORE_PROTOCOL_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/frame.h"

namespace bridge::core {

// Close codes the bridge sends (RFC 6455 section 7.4 for 1xxx; 4xxx are the bridge's own).
enum class CloseCode : uint16_t {
  kNormal = 1000,           // the peer closed normally (echoed)
  kGoingAway = 1001,        // shutdown, idle timeout
  kProtocolError = 1002,    // a frame breaking RFC 6455, or a close code a peer may not send
  kInvalidData = 1007,      // a text message or close reason that is not valid UTF-8
  kTooBig = 1009,           // a message over --max_frame_bytes
  kUnauthenticated = 4001,  // missing, bad or expired token
  kForbidden = 4003,        // a channel outside the token's grants
  kSlowConsumer = 4008,     // write queue over its bound, or rate limits exceeded
  // Refusals of a /ws upgrade, sent right after the 101 (browsers cannot read an HTTP status).
  kNotFound = 4004,       // the namespace is not configured
  kBadRequest = 4400,     // a bad channel name, since, epoch or client identity
  kTooManyFromIp = 4429,  // too many connections from this address (retry later)
  kUnavailable = 4503,    // shutting down, or too many connections in all (retry later)
};

struct CloseCodeInfo {
  CloseCode code;
  std::string_view meaning;
  // Whether a client should reconnect (with backoff) after it; false: retrying cannot help.
  bool retryable;
};
std::span<const CloseCodeInfo> CloseCodes();
inline uint16_t CloseValue(CloseCode c) { return static_cast<uint16_t>(c); }

// The longest close reason: a close frame's payload is at most 125 bytes, 2 of them the code.
inline constexpr size_t kMaxCloseReasonBytes = 123;

// Which codes a peer may send is the decoder's rule: core::IsValidPeerCloseCode
// (core/websocket_codec.h).

// The codes of error frames: `{"type":"error","data":{"code":…,"message":…}}`.
enum class ErrorCode {
  kInvalidJson,         // not JSON, or numbers that are not finite
  kNotAnObject,         // JSON that is not an object
  kInvalidType,         // `type` not a string
  kBinaryNotSupported,  // a binary message
  kInvalidChannel,      // bad name, unknown namespace, or an ambiguous message target
  kInvalidSince,        // `since` not a non-negative integer
  kNotSubscribed,       // unsubscribe or message for a channel the socket does not have
  kTooManyChannels,     // per-connection or bridge-wide channel limit
  kReservedType,        // a client message using a type the bridge emits
  kRateLimited,         // client messages or subscribe frames over their rate
  kForbidden,           // the token does not grant the channel, or publishing to it
  kUnauthenticated,     // a refused token (refresh)
  kInvalidUtf8,         // a string field that is not valid UTF-8
  kUnavailable,         // the broker is unreachable: the subscribe or message did not happen
  kInvalidId,           // `id` neither a string of at most 64 bytes nor a non-negative integer
  kInvalidLimit,        // `limit` not a non-negative integer
  kMessageTooBig,       // a client message over its namespace's max_message_bytes
};
std::string_view ErrorCodeName(ErrorCode code);
std::span<const ErrorCode> ErrorCodes();

// Types of the control frames the bridge sends, and of those a client sends that are not
// messages. A client message may use none of these, nor an event payload's name.
std::span<const std::string_view> ServerControlTypes();
std::span<const std::string_view> ClientControlTypes();

// Whether `type` is a name the bridge uses itself (control frames either way, event payload
// names, `custom`), which custom events and client messages may not take.
bool IsReservedType(std::string_view type);

// Control frames.
FramePtr PongFrame();
FramePtr PingFrame();
FramePtr ErrorFrame(ErrorCode code, std::string_view message);
// `recovered` only when the subscription asked for recovery.
FramePtr SubscribedFrame(std::string_view channel, std::string_view epoch, uint64_t offset,
                         std::optional<bool> recovered);
FramePtr UnsubscribedFrame(std::string_view channel);
// `expires_at`: the effective deadline (the token's expiry plus the verifier's leeway).
FramePtr AuthenticatedFrame(std::string_view identity,
                            std::optional<std::chrono::system_clock::time_point> expires_at);
FramePtr GapFrame(std::string_view channel, uint64_t from, uint64_t to);

// What answers a client frame carries back: its `id` (as JSON text: a string or a number; empty
// when the frame had none) and the channel it was about (empty: none).
struct AnswerContext {
  std::string id;
  std::string channel;
  bool empty() const { return id.empty() && channel.empty(); }
};
// `frame` (a JSON object) with `"channel"` (unless it has one) and `"id"` added.
FramePtr WithContext(const FramePtr& frame, const AnswerContext& context);
// A client message with an `id` was accepted: `offset` when it was broadcast (0: it went to
// backends only).
FramePtr AckFrame(const AnswerContext& context, uint64_t offset);
// Answers to the client `history` and `presence` frames. `messages` are event frames' texts.
FramePtr HistoryAnswerFrame(const AnswerContext& context, std::string_view epoch, uint64_t offset,
                            bool complete, const std::vector<FramePtr>& messages);
struct PresenceAnswerMember {
  std::string identity;
  uint32_t connections = 0;
  std::chrono::system_clock::time_point joined_at;
};
FramePtr PresenceAnswerFrame(const AnswerContext& context,
                             const std::vector<PresenceAnswerMember>& members,
                             uint32_t connection_count);

// Where a client resumes a channel on another node (or this one, restarted): the last offset
// queued for it under `epoch`. Subscribing there with `since=offset&epoch=epoch` loses nothing.
struct ResumePosition {
  std::string channel;
  std::string epoch;
  uint64_t offset = 0;
};
// Sent at shutdown after the last event queued for the connection and just before its close
// 1001: `{"type":"reconnect","reason":…,"positions":{"<channel>":{"epoch":…,"offset":…}}}`.
FramePtr ReconnectFrame(std::string_view reason, const std::vector<ResumePosition>& positions);

}  // namespace bridge::core

#endif  // BRIDGE_CORE_PROTOCOL_H_
