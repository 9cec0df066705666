// Parsing of the frames WebSocket clients send.
//
// Pure; any thread. The parser never throws and bounds nesting depth, so hostile input costs at
// most one pass over the frame.
#ifndef BRIDGE_CORE_CLIENT_FRAME_H_
#define BRIDGE_CORE_CLIENT_FRAME_H_

#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/protocol.h"

namespace bridge::core {

struct ClientFrame {
  enum class Kind { kPing, kPong, kAuth, kSubscribe, kUnsubscribe, kHistory, kPresence, kMessage };
  Kind kind = Kind::kMessage;
  std::string type;               // the frame's "type" ("" when absent)
  std::string channel;            // "channel" when present (subscribe/unsubscribe/message)
  std::string token;              // auth
  std::optional<uint64_t> since;  // subscribe with recovery; history
  std::string epoch;
  std::optional<uint64_t> limit;  // history
  std::string id;                 // "id" as JSON text (a string or a number); "" when absent
  boost::json::object object;     // the whole frame, for messages
};

// A refused frame: `code` goes in the error frame (docs/protocol.md), `message` says why.
struct ClientFrameError {
  ErrorCode code = ErrorCode::kInvalidJson;
  std::string message;
};

// Parses one text frame. On error, fills `error` and returns nullopt.
std::optional<ClientFrame> ParseClientFrame(std::string_view text, ClientFrameError& error);

// Serialises a client message for the channel's other subscribers: the client's fields, minus
// the four the bridge owns and the `id` (the sender's own, answered with an `ack`), then
// `"channel"`, `"offset"`, `"timestamp"`, `"sender"`. Returns the head (up to and including
// `"offset":`) and the tail, so the hub can put the offset between.
void BuildClientMessageFrame(boost::json::object object, std::string_view channel,
                             std::string_view timestamp, std::string_view sender, std::string& head,
                             std::string& tail);

}  // namespace bridge::core

#endif  // BRIDGE_CORE_CLIENT_FRAME_H_
