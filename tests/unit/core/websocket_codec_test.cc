#include "core/websocket_codec.h"

#include <gtest/gtest.h>

namespace bridge::core {
namespace {

// A client frame: masked with a fixed key.
std::string ClientFrame(uint8_t first_byte, const std::string& payload, bool masked = true) {
  std::string f;
  f.push_back(static_cast<char>(first_byte));
  const uint8_t mask_bit = masked ? 0x80 : 0;
  if (payload.size() < 126) {
    f.push_back(static_cast<char>(mask_bit | payload.size()));
  } else {
    f.push_back(static_cast<char>(mask_bit | 126));
    f.push_back(static_cast<char>(payload.size() >> 8));
    f.push_back(static_cast<char>(payload.size() & 0xFF));
  }
  const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
  if (masked) f.append(reinterpret_cast<const char*>(key), 4);
  for (size_t i = 0; i < payload.size(); ++i) {
    f.push_back(masked ? static_cast<char>(payload[i] ^ key[i & 3]) : payload[i]);
  }
  return f;
}

WsDecoder::Event FeedAll(WsDecoder& d, const std::string& bytes, size_t& consumed) {
  return d.Feed(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), consumed);
}

TEST(WebsocketCodecTest, ServerHeaders) {
  EXPECT_EQ(BuildWsHeader(WsOpcode::kText, 5).size, 2u);
  EXPECT_EQ(BuildWsHeader(WsOpcode::kText, 5).bytes[0], 0x81);
  EXPECT_EQ(BuildWsHeader(WsOpcode::kText, 125).bytes[1], 125);
  auto h = BuildWsHeader(WsOpcode::kText, 300);
  EXPECT_EQ(h.size, 4u);
  EXPECT_EQ(h.bytes[1], 126);
  EXPECT_EQ((h.bytes[2] << 8) | h.bytes[3], 300);
  EXPECT_EQ(BuildWsHeader(WsOpcode::kText, 70000).size, 10u);
  std::string close = BuildWsCloseFrame(4008, "slow consumer");
  EXPECT_EQ(static_cast<uint8_t>(close[0]), 0x88);
  EXPECT_EQ(static_cast<uint8_t>(close[2]) << 8 | static_cast<uint8_t>(close[3]), 4008);
}

TEST(WebsocketCodecTest, DecodesMaskedTextInPieces) {
  WsDecoder d(1024);
  std::string f = ClientFrame(0x81, R"({"type":"ping"})");
  size_t consumed = 0;
  EXPECT_EQ(FeedAll(d, f.substr(0, 3), consumed), WsDecoder::Event::kNeedMore);
  EXPECT_EQ(consumed, 0u);
  EXPECT_EQ(FeedAll(d, f, consumed), WsDecoder::Event::kMessage);
  EXPECT_EQ(consumed, f.size());
  EXPECT_TRUE(d.message_is_text());
  EXPECT_EQ(d.message(), R"({"type":"ping"})");
}

TEST(WebsocketCodecTest, ReassemblesFragmentsAroundAPing) {
  WsDecoder d(1024);
  std::string bytes = ClientFrame(0x01, "hel") + ClientFrame(0x89, "p") + ClientFrame(0x80, "lo");
  size_t consumed = 0;
  size_t offset = 0;
  auto feed = [&] {
    auto e = d.Feed(reinterpret_cast<const uint8_t*>(bytes.data()) + offset, bytes.size() - offset,
                    consumed);
    offset += consumed;
    return e;
  };
  EXPECT_EQ(feed(), WsDecoder::Event::kPing);
  EXPECT_EQ(d.control_payload(), "p");
  EXPECT_EQ(feed(), WsDecoder::Event::kMessage);
  EXPECT_EQ(d.message(), "hello");
  EXPECT_EQ(feed(), WsDecoder::Event::kNeedMore);
}

TEST(WebsocketCodecTest, RefusesWhatRfc6455Forbids) {
  size_t consumed = 0;
  {
    WsDecoder d(1024);
    EXPECT_EQ(FeedAll(d, ClientFrame(0x81, "x", /*masked=*/false), consumed),
              WsDecoder::Event::kProtocolError);
  }
  {
    WsDecoder d(1024);
    EXPECT_EQ(FeedAll(d, ClientFrame(0xC1, "x"), consumed), WsDecoder::Event::kProtocolError);
  }
  {
    WsDecoder d(1024);  // fragmented control frame
    EXPECT_EQ(FeedAll(d, ClientFrame(0x09, "x"), consumed), WsDecoder::Event::kProtocolError);
  }
  {
    WsDecoder d(1024);  // continuation without a start
    EXPECT_EQ(FeedAll(d, ClientFrame(0x80, "x"), consumed), WsDecoder::Event::kProtocolError);
  }
  {
    WsDecoder d(1024);  // reserved opcode
    EXPECT_EQ(FeedAll(d, ClientFrame(0x83, "x"), consumed), WsDecoder::Event::kProtocolError);
  }
}

TEST(WebsocketCodecTest, OversizedMessageIsRefusedFromItsHeader) {
  WsDecoder d(100);
  size_t consumed = 0;
  std::string f = ClientFrame(0x81, std::string(200, 'a'));
  // Only the header has arrived: the size alone decides.
  EXPECT_EQ(FeedAll(d, f.substr(0, 8), consumed), WsDecoder::Event::kTooBig);
}

TEST(WebsocketCodecTest, CloseCarriesItsCode) {
  WsDecoder d(100);
  size_t consumed = 0;
  EXPECT_EQ(FeedAll(d, ClientFrame(0x88, std::string("\x03\xe8", 2)), consumed),
            WsDecoder::Event::kClose);
  EXPECT_EQ(d.close_code(), 1000);
  WsDecoder e(100);
  EXPECT_EQ(FeedAll(e, ClientFrame(0x88, ""), consumed), WsDecoder::Event::kClose);
  EXPECT_EQ(e.close_code(), 1005);
}

TEST(WebsocketCodecTest, AcceptKeyMatchesTheRfcExample) {
  // RFC 6455 section 1.3.
  EXPECT_EQ(WebSocketAccept("dGhlIHNhbXBsZSBub25jZQ==").value_or(""),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WebsocketCodecTest, AcceptKeyRefusesKeysThatAreNotSixteenBytes) {
  EXPECT_FALSE(WebSocketAccept(""));
  EXPECT_FALSE(WebSocketAccept("dGhlIHNhbXBsZSBub25jZQ"));  // no padding
  EXPECT_FALSE(
      WebSocketAccept("dGhlIHNhbXBsZSBub25jZQ=="
                      "AAAA"));                               // 20 bytes
  EXPECT_FALSE(WebSocketAccept("dGhlIHNhbXBsZSBub25j!Q=="));  // not base64
}

}  // namespace
}  // namespace bridge::core
