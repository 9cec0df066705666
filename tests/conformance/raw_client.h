// What the RFC 6455 conformance suite drives the real server with: a raw TCP client that does the
// HTTP upgrade by hand, sends bytes it framed itself (masked or not, any bits, any opcode) and
// reads the server's frames back one at a time, every wait bounded.
//
// The fixture starts an in-process bridge (tests/integration/test_support.h) whose heartbeats
// are an hour apart, so that every frame the server sends answers something the test sent.
// Cases are grouped by the Autobahn testsuite's categories; docs/ws-conformance.md summarises
// them. Single-threaded: each client runs its own io_context on the test's thread.
#ifndef BRIDGE_TESTS_CONFORMANCE_RAW_CLIENT_H_
#define BRIDGE_TESTS_CONFORMANCE_RAW_CLIENT_H_

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bridge::app {
class BridgeServer;
}  // namespace bridge::app

namespace bridge::conformance {

using namespace std::chrono_literals;

// Opcodes, first bytes (FIN | opcode) and close codes as the tests spell them.
constexpr uint8_t kFin = 0x80;
constexpr uint8_t kContinuation = 0x0, kText = 0x1, kBinary = 0x2, kClose = 0x8, kPing = 0x9,
                  kPong = 0xA;

// A client frame: `first_byte` is FIN/RSV/opcode as sent, the payload is masked with `key`
// unless `masked` is false. Lengths use the shortest encoding (7, 16 or 64 bits).
std::string Frame(uint8_t first_byte, std::string_view payload, bool masked = true,
                  uint32_t key = 0x37fa213d);
// A close frame's payload: the code in network order and `reason`.
std::string ClosePayload(uint16_t code, std::string_view reason = "");
// `{"type":"ping","pad":"xxx…"}` of exactly `size` bytes (at least 26): the server answers it
// with `{"type":"pong"}`.
std::string JsonPing(size_t size);
inline constexpr std::string_view kJsonPong = R"({"type":"pong"})";

struct ServerFrame {
  bool fin = false;
  uint8_t rsv = 0;
  uint8_t opcode = 0;
  bool masked = false;
  std::string payload;
  // For a close frame: its code (1005 when it has none).
  uint16_t close_code() const;
};

class RawClient {
 public:
  // Connects to 127.0.0.1:`port` and upgrades `target`; nullptr (with a test failure) when the
  // 101 or its Sec-WebSocket-Accept is wrong.
  static std::unique_ptr<RawClient> Connect(uint16_t port, const std::string& target = "/ws");
  ~RawClient();

  // Writes all of `bytes`; false when the connection failed or `timeout` passed.
  bool Send(std::string_view bytes, std::chrono::milliseconds timeout = 10s);
  // The next frame the server sent; nullopt when the connection ended (eof()) or nothing whole
  // arrived within `timeout` (timed_out()).
  std::optional<ServerFrame> Read(std::chrono::milliseconds timeout = 5s);
  // Whether the server ends the TCP connection within `timeout` without sending anything more.
  bool AwaitEof(std::chrono::milliseconds timeout = 5s);
  // Half-closes our side (the client's TCP close after the close handshake).
  void ShutdownSend();

  bool eof() const { return eof_; }
  bool timed_out() const { return timed_out_; }

 private:
  RawClient();
  // Reads more bytes into `input_` until `deadline`; false on EOF, error or timeout.
  bool ReadMore(std::chrono::steady_clock::time_point deadline);

  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::socket socket_;
  std::string input_;  // received bytes not parsed yet
  bool eof_ = false;
  bool timed_out_ = false;
};

// Every test gets a fresh bridge with the default frame limit and quiet heartbeats.
class ConformanceTest : public ::testing::Test {
 protected:
  ConformanceTest();
  ~ConformanceTest() override;
  void SetUp() override;
  // A new upgraded connection to /ws.
  std::unique_ptr<RawClient> Connect();
  // The server's --max_frame_bytes (its default: 64 KiB).
  size_t max_frame_bytes() const { return max_frame_bytes_; }

 private:
  size_t max_frame_bytes_ = 0;
  std::unique_ptr<app::BridgeServer> server_;
};

// The next frame must be a text frame holding `{"type":"pong"}`.
::testing::AssertionResult IsJsonPong(const std::optional<ServerFrame>& frame);
// The next frame must be a text error frame `{"type":"error","data":{"code":`code`…}}`.
::testing::AssertionResult IsErrorFrame(const std::optional<ServerFrame>& frame,
                                        std::string_view code);
// The next frame must be a close with `code` (RFC 6455 section 7.4), followed by the end of the
// TCP connection, which the server closes first (section 7.1.1).
::testing::AssertionResult ClosesWith(RawClient& client, uint16_t code);
// After the client's valid close: the server answers with a close that echoes `code` or says
// 1000 (section 5.5.1; for an empty close: no code or 1000), then ends the TCP connection.
::testing::AssertionResult AnswersClose(RawClient& client, uint16_t code);

}  // namespace bridge::conformance

#endif  // BRIDGE_TESTS_CONFORMANCE_RAW_CLIENT_H_
