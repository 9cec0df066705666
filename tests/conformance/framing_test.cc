// Autobahn categories 1 (framing), 2 (pings and pongs), 3 (reserved bits), 4 (opcodes) and 10
// (misc: masking), against the real server.
#include <string>
#include <vector>

#include "raw_client.h"

namespace bridge::conformance {
namespace {

// --- 1 Framing ---------------------------------------------------------------------------------

constexpr size_t kLengths[] = {0, 125, 126, 127, 128, 65535, 65536};

TEST(ConformanceFrameTest, LengthsUseTheShortestEncoding) {
  // Our own builder, so that the cases below cover the 7-, 16- and 64-bit length forms.
  EXPECT_EQ(static_cast<uint8_t>(Frame(kFin | kText, std::string(125, 'x'))[1]), 0x80 | 125);
  EXPECT_EQ(static_cast<uint8_t>(Frame(kFin | kText, std::string(126, 'x'))[1]), 0x80 | 126);
  EXPECT_EQ(static_cast<uint8_t>(Frame(kFin | kText, std::string(65535, 'x'))[1]), 0x80 | 126);
  EXPECT_EQ(static_cast<uint8_t>(Frame(kFin | kText, std::string(65536, 'x'))[1]), 0x80 | 127);
  EXPECT_EQ(Frame(kFin | kText, std::string(65536, 'x')).size(), 2 + 8 + 4 + 65536u);
}

TEST_F(ConformanceTest, Case1TextOfEveryLengthEncodingIsReceived) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  for (size_t len : kLengths) {
    SCOPED_TRACE(len);
    if (len == 0) {
      // An empty text message is a valid frame; the bridge refuses it as JSON.
      ASSERT_TRUE(c->Send(Frame(kFin | kText, "")));
      EXPECT_TRUE(IsErrorFrame(c->Read(), "invalid_json"));
      continue;
    }
    ASSERT_TRUE(c->Send(Frame(kFin | kText, JsonPing(len))));
    EXPECT_TRUE(IsJsonPong(c->Read()));
  }
}

TEST_F(ConformanceTest, Case1BinaryOfEveryLengthEncodingIsReceived) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  for (size_t len : kLengths) {
    SCOPED_TRACE(len);
    std::string payload(len, '\0');
    for (size_t i = 0; i < len; ++i) payload[i] = static_cast<char>(i * 7);
    ASSERT_TRUE(c->Send(Frame(kFin | kBinary, payload)));
    // The bridge speaks JSON text: it refuses binary with an error frame, the connection stays.
    EXPECT_TRUE(IsErrorFrame(c->Read(), "binary_not_supported"));
  }
  ASSERT_TRUE(c->Send(Frame(kFin | kText, JsonPing(30))));
  EXPECT_TRUE(IsJsonPong(c->Read()));
}

TEST_F(ConformanceTest, Case1FrameWrittenInSmallChopsIsReceived) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const std::string f = Frame(kFin | kText, JsonPing(65536));
  for (size_t i = 0; i < f.size(); i += 997) ASSERT_TRUE(c->Send(f.substr(i, 997)));
  EXPECT_TRUE(IsJsonPong(c->Read()));
}

// --- 2 Pings and pongs -------------------------------------------------------------------------

TEST_F(ConformanceTest, Case2PingIsAnsweredWithAnIdenticalPong) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  std::string binary(125, '\0');
  for (size_t i = 0; i < binary.size(); ++i) binary[i] = static_cast<char>(255 - i);
  for (const std::string& payload : {std::string(), std::string("Hello, world!"), binary}) {
    SCOPED_TRACE(payload.size());
    ASSERT_TRUE(c->Send(Frame(kFin | kPing, payload)));
    auto f = c->Read();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->opcode, kPong);
    EXPECT_TRUE(f->fin);
    EXPECT_EQ(f->payload, payload);
  }
}

TEST_F(ConformanceTest, Case2PingOver125BytesIsAProtocolError) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Send(Frame(kFin | kPing, std::string(126, 'p'))));
  EXPECT_TRUE(ClosesWith(*c, 1002));
}

TEST_F(ConformanceTest, Case2FragmentedPingIsAProtocolError) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Send(Frame(kPing, "frag") + Frame(kFin | kContinuation, "ment")));
  EXPECT_TRUE(ClosesWith(*c, 1002));
}

TEST_F(ConformanceTest, Case2UnsolicitedPongIsIgnored) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Send(Frame(kFin | kPong, "unsolicited") + Frame(kFin | kPong, "") +
                      Frame(kFin | kText, JsonPing(30))));
  EXPECT_TRUE(IsJsonPong(c->Read()));  // nothing came before the answer to the JSON ping
}

TEST_F(ConformanceTest, Case2TenPingsInABurstGetTenPongsInOrder) {
  // Not required by RFC 6455 (a pong may answer only the latest ping), as in Autobahn 2.10.
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  std::string burst;
  for (int i = 0; i < 10; ++i) burst += Frame(kFin | kPing, "ping " + std::to_string(i));
  ASSERT_TRUE(c->Send(burst));
  for (int i = 0; i < 10; ++i) {
    auto f = c->Read();
    ASSERT_TRUE(f) << i;
    EXPECT_EQ(f->opcode, kPong);
    EXPECT_EQ(f->payload, "ping " + std::to_string(i));
  }
}

// --- 3 Reserved bits ---------------------------------------------------------------------------

TEST_F(ConformanceTest, Case3ReservedBitsAreProtocolErrors) {
  struct Case {
    uint8_t rsv;
    uint8_t opcode;
  };
  for (Case k : {Case{0x40, kText}, Case{0x20, kText}, Case{0x10, kText}, Case{0x60, kBinary},
                 Case{0x50, kPing}, Case{0x30, kPong}, Case{0x70, kClose}}) {
    SCOPED_TRACE(int{k.rsv} + int{k.opcode});
    auto c = Connect();
    ASSERT_NE(c, nullptr);
    // A valid frame first: answered; then the bad frame closes; the ping after it is not answered.
    std::string payload = k.opcode == kText ? JsonPing(30) : std::string("x");
    if (k.opcode == kClose) payload = ClosePayload(1000);
    ASSERT_TRUE(c->Send(Frame(kFin | kText, JsonPing(30)) +
                        Frame(static_cast<uint8_t>(kFin | k.rsv | k.opcode), payload) +
                        Frame(kFin | kPing, "after")));
    EXPECT_TRUE(IsJsonPong(c->Read()));
    EXPECT_TRUE(ClosesWith(*c, 1002));
  }
}

// --- 4 Opcodes ---------------------------------------------------------------------------------

TEST_F(ConformanceTest, Case4ReservedOpcodesAreProtocolErrors) {
  for (uint8_t opcode : {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
    SCOPED_TRACE(int{opcode});
    for (const std::string& payload : {std::string(), std::string("reserved")}) {
      auto c = Connect();
      ASSERT_NE(c, nullptr);
      ASSERT_TRUE(c->Send(Frame(kFin | kText, JsonPing(30)) + Frame(kFin | opcode, payload) +
                          Frame(kFin | kPing, "after")));
      EXPECT_TRUE(IsJsonPong(c->Read()));
      EXPECT_TRUE(ClosesWith(*c, 1002));
    }
  }
}

// --- 10 Misc -----------------------------------------------------------------------------------

TEST_F(ConformanceTest, Case10UnmaskedClientFramesAreProtocolErrors) {
  for (uint8_t first : {kFin | kText, kFin | kBinary, kFin | kPing, kFin | kClose}) {
    SCOPED_TRACE(int{first});
    auto c = Connect();
    ASSERT_NE(c, nullptr);
    std::string payload = first == (kFin | kClose) ? ClosePayload(1000) : JsonPing(30);
    ASSERT_TRUE(c->Send(Frame(static_cast<uint8_t>(first), payload, /*masked=*/false)));
    EXPECT_TRUE(ClosesWith(*c, 1002));
  }
}

}  // namespace
}  // namespace bridge::conformance
