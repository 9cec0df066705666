// What the front end needs to refuse a WebSocket after its upgrade (a 101, then a close frame with
// the refusal's code and reason: the only refusal a browser can read) while holding nothing but a
// fixed-size state per connection:
//
// - UpgradeSniffer reads a request head as it streams by and keeps only what the 101 needs
//   (whether it is a WebSocket upgrade of a /ws path, and its Sec-WebSocket-Key). It serves the
//   connections refused at accept (over --max_connections, or too many from one address), which
//   must cost the bridge no more than the plain-text refusal did: the same 256-byte read buffer,
//   the same deadline, no parser and no growing buffer.
// - CloseWaiter follows the client's frames after the bridge's close frame, without keeping any
//   of them, until the client's own close frame arrives (then the bridge closes the TCP
//   connection, as RFC 6455 section 7.1.1 asks of a server).
//
// Pure, no I/O; one of each per connection, not thread-safe.
#ifndef BRIDGE_CORE_UPGRADE_REFUSAL_H_
#define BRIDGE_CORE_UPGRADE_REFUSAL_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bridge::core {

class UpgradeSniffer {
 public:
  enum class Result {
    kNeedMore,    // the head has not ended yet
    kUpgrade,     // a GET of /ws or /ws/... over HTTP/1.1 with Upgrade: websocket, Connection:
                  // upgrade, Sec-WebSocket-Version: 13 and a well-formed key: accept() is set
    kNotUpgrade,  // anything else (or a head over max_head_bytes): answer with an HTTP status
  };

  explicit UpgradeSniffer(size_t max_head_bytes) : max_head_bytes_(max_head_bytes) {}

  // Consumes `bytes` up to the end of the head (`consumed` says how many); once the result is
  // not kNeedMore it stays so and nothing more is consumed.
  Result Feed(std::string_view bytes, size_t& consumed);
  // The Sec-WebSocket-Accept answering the key (kUpgrade only).
  const std::string& accept() const { return accept_; }

 private:
  // Evaluates the line held (its first kLineBytes bytes, `line_size_` in all).
  void EndLine();

  // Every header the sniffer looks at fits ("sec-websocket-key: " and 24 characters); longer
  // lines are seen by their beginning (the request line's end is kept apart).
  static constexpr size_t kLineBytes = 64;
  static constexpr size_t kTailBytes = 9;  // " HTTP/1.1"
  const size_t max_head_bytes_;
  size_t head_size_ = 0;
  std::array<char, kLineBytes> line_{};
  size_t line_size_ = 0;
  std::array<char, kTailBytes> tail_{};  // the line's last bytes, circular
  bool first_line_ = true;
  bool get_ws_ = false;
  bool upgrade_ = false;
  bool connection_ = false;
  bool version_ = false;
  int keys_ = 0;
  std::array<char, 24> key_{};  // a valid key is 24 base64 characters
  Result result_ = Result::kNeedMore;
  std::string accept_;
};

class CloseWaiter {
 public:
  // True once the client's close frame has begun to arrive (its header is enough: what it says
  // changes nothing). Data frames and pings before it are skipped as they stream by.
  bool Feed(const uint8_t* data, size_t size);

 private:
  std::array<uint8_t, 14> header_{};  // the longest client frame header: 2 + 8 + 4 (mask)
  size_t header_size_ = 0;
  uint64_t payload_left_ = 0;
  bool done_ = false;
};

}  // namespace bridge::core

#endif  // BRIDGE_CORE_UPGRADE_REFUSAL_H_
