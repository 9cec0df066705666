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

// Whether a peer may send close status `code` (RFC 6455 section 7.4.1/7.4.2; the IANA
// registry's 1012-1014 are accepted). 1005, 1006 and 1015 never appear on the wire.
bool IsValidPeerCloseCode(uint16_t code);

// The Sec-WebSocket-Accept value answering a client's Sec-WebSocket-Key (RFC 6455 section
// 4.2.2); nullopt when the key is not the base64 of 16 bytes.
std::optional<std::string> WebSocketAccept(std::string_view key);

// Validates UTF-8 incrementally (RFC 3629): bytes may arrive in any pieces, a code point split
// between two pieces is accepted, and Feed() fails on the first byte after which no valid text can
// follow (fail fast). Refuses overlong forms, surrogates (U+D800..U+DFFF) and code points over
// U+10FFFF. Runs ASCII eight bytes at a time. A default-constructed validator is at a code point
// boundary.
class Utf8Validator {
 public:
  // False once the bytes seen so far cannot be the start of valid UTF-8 (then stays false until
  // Reset()).
  bool Feed(const char* data, size_t size);
  // Whether the bytes seen so far are complete UTF-8 (no code point left unfinished).
  bool complete() const { return need_ == 0 && !failed_; }
  void Reset() { *this = Utf8Validator(); }
  // Whether `text` is complete, valid UTF-8 on its own.
  static bool IsComplete(std::string_view text);

 private:
  uint8_t need_ = 0;   // continuation bytes still due for the current code point
  uint8_t lo_ = 0x80;  // the range the next continuation byte must be in
  uint8_t hi_ = 0xBF;
  bool failed_ = false;
};

// Reassembles client messages from frames. Feed() consumes what it can and reports one event at
// a time; call it again until it returns kNeedMore. A data frame's payload is consumed (unmasked
// into message()) as it arrives, so a text message is refused as soon as its bytes can no longer
// be UTF-8; control frames are consumed whole. kTooBig, kProtocolError and kInvalidUtf8 are
// final: every later Feed() returns the same event and consumes nothing.
class WsDecoder {
 public:
  enum class Event {
    kNeedMore,  // no complete frame in the input
    kMessage,   // message() holds a complete text or binary message
    kPing,      // control_payload() holds the ping's payload (answer with a pong)
    kPong,
    kClose,          // close_code() / close_reason() (1005 when the frame had no code)
    kTooBig,         // a message over the limit: close 1009
    kProtocolError,  // unmasked, reserved bits or opcode, bad control frame, bad continuation, a
                     // close code a peer may not send (RFC 6455 section 7.4: only 1000-1003,
                     // 1007-1014 and 3000-4999 are valid): close 1002
    kInvalidUtf8,    // a text message or a close reason that is not UTF-8: close 1007
  };

  // `max_message_bytes`: the largest message (all fragments together) accepted.
  explicit WsDecoder(size_t max_message_bytes) : max_message_bytes_(max_message_bytes) {}

  // Parses from `data`; `consumed` says how many bytes were used (the caller drops them and feeds
  // the rest again with what arrives next).
  Event Feed(const uint8_t* data, size_t size, size_t& consumed);

  // The message of the last kMessage; valid until the next Feed().
  const std::string& message() const { return message_; }
  bool message_is_text() const { return message_opcode_ == WsOpcode::kText; }
  // The payload of the last control frame (ping, pong, close).
  const std::string& control_payload() const { return control_; }
  uint16_t close_code() const { return close_code_; }
  std::string_view close_reason() const {
    return control_.size() > 2 ? std::string_view(control_).substr(2) : std::string_view();
  }
  // Bytes the current frame still needs before Feed() can go on: the whole frame for a header or
  // a control frame, the rest of the payload for a data frame (how far to grow a read buffer to
  // take it in one read). 0 when nothing is announced.
  size_t wanted() const { return wanted_; }

 private:
  Event Fail(Event e) {
    failed_ = e;
    return e;
  }

  const size_t max_message_bytes_;
  std::string message_;
  std::string control_;
  WsOpcode message_opcode_ = WsOpcode::kText;
  bool in_message_ = false;  // a message started and its final frame has not been read
  bool message_ready_ = false;
  uint16_t close_code_ = 0;
  size_t wanted_ = 0;
  Event failed_ = Event::kNeedMore;  // kNeedMore: not failed
  // The data frame whose payload is being read.
  bool in_frame_ = false;
  bool frame_fin_ = false;
  uint64_t frame_left_ = 0;  // payload bytes not read yet
  std::array<uint8_t, 4> mask_{};
  size_t mask_phase_ = 0;  // index into mask_ of the next payload byte
  Utf8Validator utf8_;     // the text message so far
};

}  // namespace bridge::core

#endif  // BRIDGE_CORE_WEBSOCKET_CODEC_H_
