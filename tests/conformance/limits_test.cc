// Autobahn category 9 (limits and performance), against the real server: the frame limit
// (--max_frame_bytes, 64 KiB by default) and bursts of many frames.
#include <string>

#include "raw_client.h"

namespace bridge::conformance {
namespace {

TEST_F(ConformanceTest, Case9MessageAtAndJustUnderTheLimitIsAccepted) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  for (size_t len : {max_frame_bytes() - 1, max_frame_bytes()}) {
    SCOPED_TRACE(len);
    ASSERT_TRUE(c->Send(Frame(kFin | kText, JsonPing(len))));
    EXPECT_TRUE(IsJsonPong(c->Read()));
  }
}

TEST_F(ConformanceTest, Case9FrameJustOverTheLimitCloses1009) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Send(Frame(kFin | kText, JsonPing(max_frame_bytes() + 1))));
  EXPECT_TRUE(ClosesWith(*c, 1009));
}

TEST_F(ConformanceTest, Case9FrameOverTheLimitClosesFromItsHeader) {
  // Only the header of a 1 MiB frame is sent: the size alone decides.
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const std::string f = Frame(kFin | kBinary, std::string(1 << 20, 'b'));
  ASSERT_TRUE(c->Send(f.substr(0, 14)));
  EXPECT_TRUE(ClosesWith(*c, 1009));
}

TEST_F(ConformanceTest, Case9FragmentedMessageJustOverTheLimitCloses1009) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const std::string text = JsonPing(max_frame_bytes() + 1);
  const size_t half = text.size() / 2;
  ASSERT_TRUE(
      c->Send(Frame(kText, text.substr(0, half)) + Frame(kFin | kContinuation, text.substr(half))));
  EXPECT_TRUE(ClosesWith(*c, 1009));
}

TEST_F(ConformanceTest, Case9ThousandSmallFramesInABurstAreAnsweredInOrder) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  std::string burst;
  for (int i = 0; i < 1000; ++i) burst += Frame(kFin | kPing, "p" + std::to_string(i));
  ASSERT_TRUE(c->Send(burst));
  for (int i = 0; i < 1000; ++i) {
    auto f = c->Read();
    ASSERT_TRUE(f) << i;
    ASSERT_EQ(f->opcode, kPong) << i;
    ASSERT_EQ(f->payload, "p" + std::to_string(i));
  }
  burst.clear();
  for (int i = 0; i < 1000; ++i) burst += Frame(kFin | kText, JsonPing(30 + i % 50));
  ASSERT_TRUE(c->Send(burst));
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(IsJsonPong(c->Read())) << i;
}

TEST_F(ConformanceTest, Case9LargeMessageInOneByteFragmentsIsReassembled) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const std::string text = JsonPing(max_frame_bytes());
  std::string frames;
  for (size_t i = 0; i < text.size(); ++i) {
    const bool first = i == 0;
    const bool last = i + 1 == text.size();
    frames += Frame(static_cast<uint8_t>((last ? kFin : 0) | (first ? kText : kContinuation)),
                    text.substr(i, 1));
  }
  ASSERT_TRUE(c->Send(frames, 30s));
  EXPECT_TRUE(IsJsonPong(c->Read(30s)));
}

}  // namespace
}  // namespace bridge::conformance
