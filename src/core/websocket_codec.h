// RFC 6455 framing for the server side, without I/O: building the (unmasked) headers of the
// frames the bridge sends, and parsing the (masked) frames clients send.
//
// The front end writes pre-built frames of many queued messages in one gather write, which is
// why it frames them itself instead of writing one message per call through Beast (see
// docs/benchmarks.md). Not thread-safe; one decoder per connection.
#ifndef BRIDGE_CORE_WEBSOCKET_CODEC_H_
#define BRIDGE_CORE_WEBSOCKET_CODEC_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bridge::core {

enum class WsOpcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

// A frame header: at most 10 bytes for a server frame.
struct WsHeader {
  std::array<uint8_t, 10> bytes;
  size_t size = 0;
};

// The header of a final, unmasked frame of `opcode` carrying `payload_size` bytes.
WsHeader BuildWsHeader(WsOpcode opcode, size_t payload_size);

// A whole control frame (close: 2-byte code + reason, truncated to the 125-byte limit).
std::string BuildWsControlFrame(WsOpcode opcode, std::string_view payload);
std::string BuildWsCloseFrame(uint16_t code, std::string_view reason);

// The Sec-WebSocket-Accept value answering a client's Sec-WebSocket-Key (RFC 6455 section
// 4.2.2); nullopt when the key is not the base64 of 16 bytes.
std::optional<std::string> WebSocketAccept(std::string_view key);

// Reassembles client messages from frames. Feed() consumes what it can and reports one event at
// a time; call it again until it returns kNeedMore.
class WsDecoder {
 public:
  enum class Event {
    kNeedMore,  // no complete frame in the input
    kMessage,   // message() holds a complete text or binary message
    kPing,      // control_payload() holds the ping's payload (answer with a pong)
    kPong,
    kClose,         // close_code() / close_reason() (1005 when the frame had no code)
    kTooBig,        // a message over the limit: close 1009
    kProtocolError  // unmasked, reserved bits, bad control frame, bad continuation: close 1002
  };

  explicit WsDecoder(size_t max_message_bytes) : max_message_bytes_(max_message_bytes) {}

  // Parses from `data`; `consumed` says how many bytes were used (the caller drops them).
  Event Feed(const uint8_t* data, size_t size, size_t& consumed);

  const std::string& message() const { return message_; }
  bool message_is_text() const { return message_opcode_ == WsOpcode::kText; }
  const std::string& control_payload() const { return control_; }
  uint16_t close_code() const { return close_code_; }
  // Bytes a frame header announced that are not buffered yet (how far to grow the buffer).
  size_t wanted() const { return wanted_; }

 private:
  const size_t max_message_bytes_;
  std::string message_;
  std::string control_;
  WsOpcode message_opcode_ = WsOpcode::kText;
  bool in_message_ = false;
  bool message_ready_ = false;
  uint16_t close_code_ = 0;
  size_t wanted_ = 0;
};

}  // namespace bridge::core

#endif  // BRIDGE_CORE_WEBSOCKET_CODEC_H_
