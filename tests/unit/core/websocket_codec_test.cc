#include "core/websocket_codec.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace bridge::core {
namespace {

// A client frame: masked with a fixed key.
std::string ClientFrame(uint8_t first_byte, const std::string& payload, bool masked = true) {
  std::string f;
  f.push_back(static_cast<char>(first_byte));
  const uint8_t mask_bit = masked ? 0x80 : 0;
  if (payload.size() < 126) {
    f.push_back(static_cast<char>(mask_bit | payload.size()));
  } else if (payload.size() <= 0xFFFF) {
    f.push_back(static_cast<char>(mask_bit | 126));
    f.push_back(static_cast<char>(payload.size() >> 8));
    f.push_back(static_cast<char>(payload.size() & 0xFF));
  } else {
    f.push_back(static_cast<char>(mask_bit | 127));
    for (int shift = 56; shift >= 0; shift -= 8) {
      f.push_back(static_cast<char>((uint64_t{payload.size()} >> shift) & 0xFF));
    }
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

// Feeds `bytes` to `d` as a session would (dropping what was consumed, feeding the rest again
// with `chunk` more bytes each time) and returns every event but kNeedMore, in order.
std::vector<WsDecoder::Event> FeedInChunks(WsDecoder& d, const std::string& bytes, size_t chunk,
                                           std::vector<std::string>* messages = nullptr) {
  std::vector<WsDecoder::Event> events;
  std::string buffer;
  size_t next = 0;
  while (next < bytes.size() || !buffer.empty()) {
    const size_t n = std::min(chunk, bytes.size() - next);
    buffer.append(bytes, next, n);
    next += n;
    for (;;) {
      size_t consumed = 0;
      auto e = d.Feed(reinterpret_cast<const uint8_t*>(buffer.data()), buffer.size(), consumed);
      buffer.erase(0, consumed);
      if (e == WsDecoder::Event::kNeedMore) break;
      events.push_back(e);
      if (e == WsDecoder::Event::kMessage && messages != nullptr) messages->push_back(d.message());
      if (e != WsDecoder::Event::kMessage && e != WsDecoder::Event::kPing &&
          e != WsDecoder::Event::kPong) {
        return events;
      }
    }
    if (n == 0) break;  // the rest is an incomplete frame
  }
  return events;
}

std::string CloseFrame(uint16_t code, const std::string& reason = "") {
  std::string payload;
  payload.push_back(static_cast<char>(code >> 8));
  payload.push_back(static_cast<char>(code & 0xFF));
  return ClientFrame(0x88, payload + reason);
}

using E = WsDecoder::Event;

TEST(WebsocketCodecTest, PayloadArrivingInAnyPiecesGivesTheSameMessage) {
  std::string text = R"({"type":"ping","pad":")" + std::string(300, 'x') + "\u00e9\u20ac\"}";
  for (size_t size :
       {size_t{0}, size_t{1}, size_t{125}, size_t{126}, size_t{65535}, size_t{65536}}) {
    std::string payload(size, 'a');
    for (size_t i = 0; i < size; ++i) payload[i] = static_cast<char>('a' + i % 26);
    std::string f = ClientFrame(0x82, payload);
    WsDecoder d(70000);
    std::vector<std::string> messages;
    EXPECT_EQ(FeedInChunks(d, f, 4096, &messages), std::vector<E>{E::kMessage}) << size;
    ASSERT_EQ(messages.size(), 1u);
    EXPECT_EQ(messages[0], payload);
  }
  for (size_t chunk = 1; chunk <= 17; ++chunk) {
    WsDecoder d(1024);
    std::vector<std::string> messages;
    EXPECT_EQ(FeedInChunks(d, ClientFrame(0x81, text), chunk, &messages),
              std::vector<E>{E::kMessage});
    ASSERT_EQ(messages.size(), 1u);
    EXPECT_EQ(messages[0], text);
  }
}

TEST(WebsocketCodecTest, WantedIsWhatTheFrameStillNeeds) {
  WsDecoder d(1024);
  std::string f = ClientFrame(0x81, std::string(300, 'a'));  // 4-byte header + mask
  size_t consumed = 0;
  EXPECT_EQ(FeedAll(d, f.substr(0, 5), consumed), E::kNeedMore);
  EXPECT_EQ(consumed, 0u);
  EXPECT_EQ(d.wanted(), 8u);
  EXPECT_EQ(FeedAll(d, f.substr(0, 108), consumed), E::kNeedMore);
  EXPECT_EQ(consumed, 108u);  // the header and the first 100 payload bytes
  EXPECT_EQ(d.wanted(), 200u);
  std::string rest = f.substr(108);
  EXPECT_EQ(FeedAll(d, rest, consumed), E::kMessage);
  EXPECT_EQ(consumed, rest.size());
  EXPECT_EQ(d.message(), std::string(300, 'a'));
}

TEST(WebsocketCodecTest, SixtyFourBitLengthsAreDecoded) {
  WsDecoder d(100000);
  std::string payload(70000, 'z');
  std::vector<std::string> messages;
  EXPECT_EQ(FeedInChunks(d, ClientFrame(0x82, payload), 65536, &messages),
            std::vector<E>{E::kMessage});
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0], payload);
}

TEST(WebsocketCodecTest, FragmentsUpToTheLimitAreAcceptedAndOneMoreByteIsTooBig) {
  WsDecoder d(10);
  std::vector<std::string> messages;
  EXPECT_EQ(FeedInChunks(d, ClientFrame(0x02, "12345") + ClientFrame(0x80, "67890"), 64, &messages),
            std::vector<E>{E::kMessage});
  EXPECT_EQ(messages, std::vector<std::string>{"1234567890"});
  WsDecoder e(10);
  EXPECT_EQ(FeedInChunks(e, ClientFrame(0x02, "12345") + ClientFrame(0x80, "678901"), 64),
            std::vector<E>{E::kTooBig});
}

TEST(WebsocketCodecTest, ErrorsAreFinal) {
  WsDecoder d(1024);
  size_t consumed = 0;
  EXPECT_EQ(FeedAll(d, ClientFrame(0x81, "x", /*masked=*/false), consumed), E::kProtocolError);
  EXPECT_EQ(FeedAll(d, ClientFrame(0x81, "x"), consumed), E::kProtocolError);
  EXPECT_EQ(consumed, 0u);
}

TEST(WebsocketCodecTest, ReservedOpcodesAndBitsAreProtocolErrors) {
  for (uint8_t op : {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
    WsDecoder d(1024);
    size_t consumed = 0;
    EXPECT_EQ(FeedAll(d, ClientFrame(0x80 | op, ""), consumed), E::kProtocolError) << int{op};
  }
  for (uint8_t rsv : {0x40, 0x20, 0x10}) {
    WsDecoder d(1024);
    size_t consumed = 0;
    EXPECT_EQ(FeedAll(d, ClientFrame(0x81 | rsv, "{}"), consumed), E::kProtocolError) << int{rsv};
  }
  WsDecoder big_ping(1024);
  size_t consumed = 0;
  EXPECT_EQ(FeedAll(big_ping, ClientFrame(0x89, std::string(126, 'p')), consumed),
            E::kProtocolError);
  WsDecoder text_in_text(1024);
  EXPECT_EQ(FeedInChunks(text_in_text, ClientFrame(0x01, "a") + ClientFrame(0x01, "b"), 64),
            std::vector<E>{E::kProtocolError});
}

// --- UTF-8 ---------------------------------------------------------------------------------

const std::vector<std::string>& ValidUtf8() {
  static const auto* v = new std::vector<std::string>{
      "",
      "plain ascii, longer than eight bytes to use the fast path",
      "\x7f",
      "\xc2\x80",                                      // U+0080
      "\xdf\xbf",                                      // U+07FF
      "\xe0\xa0\x80",                                  // U+0800
      "\xed\x9f\xbf",                                  // U+D7FF, below the surrogates
      "\xee\x80\x80",                                  // U+E000, above them
      "\xef\xbf\xbf",                                  // U+FFFF
      "\xf0\x90\x80\x80",                              // U+10000
      "\xf4\x8f\xbf\xbf",                              // U+10FFFF
      "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",  // "kosme"
      "\xf0\x9f\x98\x80 grin, then ascii: 0123456789abcdef",
      "ascii 01234567\xe2\x82\xac"
      "0123456789\xf0\x9f\x92\xa9",
  };
  return *v;
}

struct BadUtf8 {
  std::string bytes;
  size_t fails_at;  // index of the first byte after which Feed() must be false
};

const std::vector<BadUtf8>& InvalidUtf8() {
  static const auto* v = new std::vector<BadUtf8>{
      {"\x80", 0},  // lone continuation
      {"\xbf", 0},
      {"a\xc0\x80", 1},                 // overlong NUL (C0 is never valid)
      {"\xc1\xbf", 0},                  // overlong
      {"\xe0\x80\x80", 1},              // overlong 3-byte
      {"\xe0\x9f\xbf", 1},              // overlong U+07FF
      {"\xf0\x80\x80\x80", 1},          // overlong 4-byte
      {"\xf0\x8f\xbf\xbf", 1},          // overlong U+FFFF
      {"\xed\xa0\x80", 1},              // U+D800
      {"\xed\xbf\xbf", 1},              // U+DFFF
      {"\xed\xa0\x80\xed\xb0\x80", 1},  // a surrogate pair in CESU-8
      {"\xf4\x90\x80\x80", 1},          // U+110000
      {"\xf5\x80\x80\x80", 0},          // lead bytes past F4
      {"\xfe", 0},
      {"\xff", 0},
      {"\xc2\x41", 1},  // a continuation missing
      {"\xe2\x82\x41", 2},
      {"\xf0\x9f\x98\x41", 3},
      {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
       "edited",
       12},
      {"0123456789abcdef\xff", 16},  // after the fast path
      {"01234567\x80", 8},
  };
  return *v;
}

TEST(WsUtf8ValidatorTest, AcceptsValidText) {
  for (const auto& s : ValidUtf8()) EXPECT_TRUE(Utf8Validator::IsComplete(s)) << s;
}

TEST(WsUtf8ValidatorTest, RefusesOverlongsSurrogatesAndCodePointsPastTheLast) {
  for (const auto& bad : InvalidUtf8())
    EXPECT_FALSE(Utf8Validator::IsComplete(bad.bytes)) << bad.fails_at;
}

TEST(WsUtf8ValidatorTest, AcceptsCodePointsSplitAtEveryByte) {
  for (const auto& s : ValidUtf8()) {
    for (size_t cut = 0; cut <= s.size(); ++cut) {
      Utf8Validator v;
      EXPECT_TRUE(v.Feed(s.data(), cut));
      EXPECT_TRUE(v.Feed(s.data() + cut, s.size() - cut));
      EXPECT_TRUE(v.complete()) << s << " cut at " << cut;
    }
    Utf8Validator one_by_one;
    for (char c : s) EXPECT_TRUE(one_by_one.Feed(&c, 1));
    EXPECT_TRUE(one_by_one.complete());
  }
}

TEST(WsUtf8ValidatorTest, FailsOnTheFirstByteThatCannotBeValid) {
  for (const auto& bad : InvalidUtf8()) {
    Utf8Validator v;
    for (size_t i = 0; i < bad.bytes.size(); ++i) {
      const bool ok = v.Feed(&bad.bytes[i], 1);
      EXPECT_EQ(ok, i < bad.fails_at) << "case failing at " << bad.fails_at << ", byte " << i;
      if (!ok) break;
    }
    EXPECT_FALSE(v.complete());
  }
}

TEST(WsUtf8ValidatorTest, AnUnfinishedCodePointIsNotComplete) {
  for (const std::string s : {"\xc2", "\xe2\x82", "\xf0\x9f\x98", "abc\xf4\x8f\xbf"}) {
    Utf8Validator v;
    EXPECT_TRUE(v.Feed(s.data(), s.size()));
    EXPECT_FALSE(v.complete()) << s.size();
    EXPECT_FALSE(Utf8Validator::IsComplete(s));
  }
}

TEST(WsUtf8ValidatorTest, FastPathFindsANonAsciiByteAtEveryOffset) {
  for (size_t at = 0; at < 40; ++at) {
    std::string good(40, 'a');
    good.replace(at, 1, "\xc3\xa9");
    EXPECT_TRUE(Utf8Validator::IsComplete(good)) << at;
    std::string bad(40, 'a');
    bad[at] = '\xff';
    EXPECT_FALSE(Utf8Validator::IsComplete(bad)) << at;
  }
}

TEST(WebsocketCodecTest, InvalidUtf8TextIsRefused) {
  for (const auto& bad : InvalidUtf8()) {
    WsDecoder d(1024);
    EXPECT_EQ(FeedInChunks(d, ClientFrame(0x81, bad.bytes), 64), std::vector<E>{E::kInvalidUtf8});
  }
}

TEST(WebsocketCodecTest, BinaryIsNotCheckedForUtf8) {
  WsDecoder d(1024);
  EXPECT_EQ(FeedInChunks(d, ClientFrame(0x82, "\xff\xfe"), 64), std::vector<E>{E::kMessage});
}

TEST(WebsocketCodecTest, CodePointSplitAcrossFragmentsAtEveryByteIsAccepted) {
  const std::string text = "x\xf0\x9f\x98\x80y";  // a 4-byte code point
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    WsDecoder d(1024);
    std::vector<std::string> messages;
    // A ping between the fragments does not disturb the validation.
    std::string bytes = ClientFrame(0x01, text.substr(0, cut)) + ClientFrame(0x89, "") +
                        ClientFrame(0x80, text.substr(cut));
    EXPECT_EQ(FeedInChunks(d, bytes, 3, &messages), (std::vector<E>{E::kPing, E::kMessage})) << cut;
    EXPECT_EQ(messages, std::vector<std::string>{text});
  }
}

TEST(WebsocketCodecTest, MessageEndingInsideACodePointIsRefused) {
  WsDecoder d(1024);
  EXPECT_EQ(FeedInChunks(d, ClientFrame(0x01, "ok\xf0\x9f") + ClientFrame(0x80, "\x98"), 64),
            std::vector<E>{E::kInvalidUtf8});
  WsDecoder e(1024);
  EXPECT_EQ(FeedInChunks(e, ClientFrame(0x81, "\xe2\x82"), 64), std::vector<E>{E::kInvalidUtf8});
}

TEST(WebsocketCodecTest, InvalidUtf8FailsFastBeforeTheMessageEnds) {
  // The first of three fragments is already invalid: refused before the others arrive.
  WsDecoder d(1024);
  EXPECT_EQ(FeedInChunks(d, ClientFrame(0x01, "\xce\xba\xed\xa0\x80"), 64),
            std::vector<E>{E::kInvalidUtf8});
  // Inside one frame: refused once the bad byte arrived, with the rest of the payload unsent.
  WsDecoder e(1024);
  std::string f = ClientFrame(0x81, "\xce\xba\xf4\x90" + std::string(100, 'a'));
  size_t consumed = 0;
  EXPECT_EQ(FeedAll(e, f.substr(0, 6 + 3), consumed), E::kNeedMore);
  EXPECT_EQ(FeedAll(e, f.substr(6 + 3, 1), consumed), E::kInvalidUtf8);
}

// --- Close frames ---------------------------------------------------------------------------

TEST(WebsocketCodecTest, CloseCodesAPeerMayNotSendAreProtocolErrors) {
  for (uint32_t code = 0; code <= 0xFFFF; ++code) {
    const bool valid = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                       (code >= 3000 && code <= 4999);
    WsDecoder d(100);
    size_t consumed = 0;
    EXPECT_EQ(FeedAll(d, CloseFrame(static_cast<uint16_t>(code)), consumed),
              valid ? E::kClose : E::kProtocolError)
        << code;
  }
  for (uint16_t code : {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
    WsDecoder d(100);
    size_t consumed = 0;
    EXPECT_EQ(FeedAll(d, CloseFrame(code), consumed), E::kProtocolError) << code;
  }
  for (uint16_t code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
                        3000, 3999, 4000, 4999}) {
    WsDecoder d(100);
    size_t consumed = 0;
    EXPECT_EQ(FeedAll(d, CloseFrame(code), consumed), E::kClose) << code;
    EXPECT_EQ(d.close_code(), code);
  }
}

TEST(WebsocketCodecTest, OneByteClosePayloadIsAProtocolError) {
  WsDecoder d(100);
  size_t consumed = 0;
  EXPECT_EQ(FeedAll(d, ClientFrame(0x88, "\x03"), consumed), E::kProtocolError);
}

TEST(WebsocketCodecTest, CloseReasonMustBeUtf8) {
  WsDecoder d(100);
  size_t consumed = 0;
  EXPECT_EQ(FeedAll(d, CloseFrame(1000, "bye \xce\xba\xe1\xbd\xb9"), consumed), E::kClose);
  EXPECT_EQ(d.close_reason(), "bye \xce\xba\xe1\xbd\xb9");
  for (const auto& bad : InvalidUtf8()) {
    WsDecoder e(100);
    EXPECT_EQ(FeedAll(e, CloseFrame(1000, bad.bytes), consumed), E::kInvalidUtf8);
  }
  WsDecoder f(100);
  EXPECT_EQ(FeedAll(f, CloseFrame(1000, "cut \xe2\x82"), consumed), E::kInvalidUtf8);
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
