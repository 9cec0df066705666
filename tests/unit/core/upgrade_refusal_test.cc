// The sniffer that reads a refused connection's request head without a parser, and the waiter
// that finds the client's close frame without keeping its frames.
#include "core/upgrade_refusal.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace bridge::core {
namespace {

constexpr char kKey[] = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr char kAccept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";  // RFC 6455 section 1.3

std::string Head(const std::string& request_line, const std::string& extra = "") {
  return request_line + "\r\nHost: bridge.example\r\nUpgrade: websocket\r\n" +
         "Connection: keep-alive, Upgrade\r\nCookie: " + std::string(300, 'c') +
         "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + kKey + "\r\n" + extra + "\r\n";
}

UpgradeSniffer::Result SniffInPieces(const std::string& head, size_t piece, std::string* accept,
                                     size_t* total_consumed = nullptr) {
  UpgradeSniffer sniffer(8192);
  UpgradeSniffer::Result r = UpgradeSniffer::Result::kNeedMore;
  size_t total = 0;
  for (size_t at = 0; at < head.size() && r == UpgradeSniffer::Result::kNeedMore; at += piece) {
    size_t used = 0;
    r = sniffer.Feed(std::string_view(head).substr(at, piece), used);
    total += used;
  }
  if (accept != nullptr) *accept = sniffer.accept();
  if (total_consumed != nullptr) *total_consumed = total;
  return r;
}

TEST(UpgradeSnifferTest, FindsTheUpgradeInAnyPieces) {
  std::string head = Head("GET /ws/circles/a?token=" + std::string(500, 't') + " HTTP/1.1");
  for (size_t piece : {1, 2, 7, 64, 256, 100000}) {
    std::string accept;
    size_t consumed = 0;
    EXPECT_EQ(SniffInPieces(head + "\x81\x80", piece, &accept, &consumed),
              UpgradeSniffer::Result::kUpgrade)
        << piece;
    EXPECT_EQ(accept, kAccept);
    EXPECT_EQ(consumed, head.size()) << "the frame after the head is not the sniffer's";
  }
  EXPECT_EQ(SniffInPieces(Head("GET /ws HTTP/1.1"), 3, nullptr), UpgradeSniffer::Result::kUpgrade);
  EXPECT_EQ(SniffInPieces(Head("GET /ws?multiplex=1 HTTP/1.1"), 3, nullptr),
            UpgradeSniffer::Result::kUpgrade);
}

TEST(UpgradeSnifferTest, AnythingElseIsNotAnUpgrade) {
  using R = UpgradeSniffer::Result;
  EXPECT_EQ(SniffInPieces(Head("GET /healthz HTTP/1.1"), 5, nullptr), R::kNotUpgrade);
  EXPECT_EQ(SniffInPieces(Head("POST /ws/circles/a HTTP/1.1"), 5, nullptr), R::kNotUpgrade);
  EXPECT_EQ(SniffInPieces(Head("GET /wsx HTTP/1.1"), 5, nullptr), R::kNotUpgrade);
  EXPECT_EQ(SniffInPieces(Head("GET /ws/a HTTP/1.0"), 5, nullptr), R::kNotUpgrade);
  EXPECT_EQ(
      SniffInPieces(Head("GET /ws/a HTTP/1.1", "Sec-WebSocket-Key: " + std::string(kKey) + "\r\n"),
                    5, nullptr),
      R::kNotUpgrade)
      << "two keys";
  std::string no_key =
      "GET /ws/a HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n";
  EXPECT_EQ(SniffInPieces(no_key, 5, nullptr), R::kNotUpgrade);
  std::string old_version = Head("GET /ws/a HTTP/1.1");
  old_version.replace(old_version.find("Version: 13"), 11, "Version: 8");
  EXPECT_EQ(SniffInPieces(old_version, 5, nullptr), R::kNotUpgrade);
  std::string bad_key = Head("GET /ws/a HTTP/1.1");
  bad_key.replace(bad_key.find(kKey), 24, "short");
  EXPECT_EQ(SniffInPieces(bad_key, 5, nullptr), R::kNotUpgrade);
  std::string no_upgrade = Head("GET /ws/a HTTP/1.1");
  no_upgrade.replace(no_upgrade.find("Upgrade: websocket"), 18, "Upgrade: h2c      ");
  EXPECT_EQ(SniffInPieces(no_upgrade, 5, nullptr), R::kNotUpgrade);
}

TEST(UpgradeSnifferTest, AHeadOverTheLimitIsNotAnUpgradeAndStopsConsuming) {
  UpgradeSniffer sniffer(100);
  std::string head = Head("GET /ws/a HTTP/1.1");
  size_t used = 0;
  EXPECT_EQ(sniffer.Feed(head, used), UpgradeSniffer::Result::kNotUpgrade);
  EXPECT_LE(used, 101u);
  EXPECT_EQ(sniffer.Feed("more", used), UpgradeSniffer::Result::kNotUpgrade);
  EXPECT_EQ(used, 0u);
}

// A masked client frame: `opcode`, `payload` bytes of payload.
std::vector<uint8_t> ClientFrame(uint8_t opcode, size_t payload) {
  std::vector<uint8_t> f{static_cast<uint8_t>(0x80 | opcode)};
  if (payload < 126) {
    f.push_back(static_cast<uint8_t>(0x80 | payload));
  } else if (payload < 65536) {
    f.push_back(0x80 | 126);
    f.push_back(static_cast<uint8_t>(payload >> 8));
    f.push_back(static_cast<uint8_t>(payload));
  } else {
    f.push_back(0x80 | 127);
    for (int i = 7; i >= 0; --i) f.push_back(static_cast<uint8_t>(uint64_t{payload} >> (8 * i)));
  }
  for (int i = 0; i < 4; ++i) f.push_back(0x37);
  f.resize(f.size() + payload, 0x88);  // payload bytes that look like close opcodes
  return f;
}

TEST(CloseWaiterTest, SkipsFramesOfEveryLengthUntilTheClose) {
  std::vector<uint8_t> stream;
  for (size_t len : {0, 5, 125, 126, 300, 65535, 70000}) {
    auto f = ClientFrame(0x1, len);
    stream.insert(stream.end(), f.begin(), f.end());
  }
  auto ping = ClientFrame(0x9, 4);
  stream.insert(stream.end(), ping.begin(), ping.end());
  const size_t before_close = stream.size();
  auto close = ClientFrame(0x8, 2);
  stream.insert(stream.end(), close.begin(), close.end());
  for (size_t piece : {1, 3, 100, 1 << 20}) {
    CloseWaiter waiter;
    bool done = false;
    size_t at = 0;
    for (; at < stream.size() && !done; at += piece) {
      size_t n = std::min(piece, stream.size() - at);
      done = waiter.Feed(stream.data() + at, n);
      if (!done) {
        EXPECT_LT(at + n, before_close + 2) << "close seen late, piece " << piece;
      }
    }
    EXPECT_TRUE(done) << piece;
    EXPECT_GT(at, before_close) << "close seen before it came, piece " << piece;
  }
}

}  // namespace
}  // namespace bridge::core
