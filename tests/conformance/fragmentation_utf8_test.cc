// Autobahn categories 5 (fragmentation) and 6 (UTF-8 handling), against the real server.
#include <string>
#include <vector>

#include "raw_client.h"

namespace bridge::conformance {
namespace {

// `text` as a fragmented text message: cut at `cuts` (increasing offsets).
std::string Fragmented(const std::string& text, const std::vector<size_t>& cuts) {
  std::string out;
  size_t from = 0;
  for (size_t i = 0; i <= cuts.size(); ++i) {
    const size_t to = i < cuts.size() ? cuts[i] : text.size();
    const bool first = i == 0;
    const bool last = i == cuts.size();
    out += Frame(static_cast<uint8_t>((last ? kFin : 0) | (first ? kText : kContinuation)),
                 text.substr(from, to - from));
    from = to;
  }
  return out;
}

// A JSON ping whose padding is `pad` (any UTF-8).
std::string JsonPingWith(const std::string& pad) {
  return R"({"type":"ping","pad":")" + pad + "\"}";
}

// --- 5 Fragmentation ---------------------------------------------------------------------------

TEST_F(ConformanceTest, Case5FragmentedTextIsReassembled) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const std::string text = JsonPing(100);
  ASSERT_TRUE(c->Send(Fragmented(text, {10})));
  EXPECT_TRUE(IsJsonPong(c->Read()));
  ASSERT_TRUE(c->Send(Fragmented(text, {1, 2, 3, 50, 99})));
  EXPECT_TRUE(IsJsonPong(c->Read()));
  // Empty fragments, first, between and last.
  ASSERT_TRUE(c->Send(Fragmented(text, {0, 40, 40, 100})));
  EXPECT_TRUE(IsJsonPong(c->Read()));
}

TEST_F(ConformanceTest, Case5FragmentedBinaryIsReassembled) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Send(Frame(kBinary, "ab") + Frame(kContinuation, "cd") +
                      Frame(kFin | kContinuation, "ef")));
  EXPECT_TRUE(IsErrorFrame(c->Read(), "binary_not_supported"));  // one message, one answer
  ASSERT_TRUE(c->Send(Frame(kFin | kText, JsonPing(30))));
  EXPECT_TRUE(IsJsonPong(c->Read()));
}

TEST_F(ConformanceTest, Case5ControlFramesBetweenFragmentsAreHandled) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const std::string text = JsonPing(60);
  ASSERT_TRUE(c->Send(Frame(kText, text.substr(0, 20)) + Frame(kFin | kPing, "between") +
                      Frame(kContinuation, text.substr(20, 20)) + Frame(kFin | kPong, "ignored") +
                      Frame(kFin | kContinuation, text.substr(40))));
  auto pong = c->Read();
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->opcode, kPong);
  EXPECT_EQ(pong->payload, "between");
  EXPECT_TRUE(IsJsonPong(c->Read()));
}

TEST_F(ConformanceTest, Case5PingBetweenFragmentsSentSeparatelyIsAnsweredAtOnce) {
  // The pong must not wait for the message to end (Autobahn 5.7/5.8).
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const std::string text = JsonPing(40);
  ASSERT_TRUE(c->Send(Frame(kText, text.substr(0, 20)) + Frame(kFin | kPing, "now")));
  auto pong = c->Read();
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->opcode, kPong);
  EXPECT_EQ(pong->payload, "now");
  ASSERT_TRUE(c->Send(Frame(kFin | kContinuation, text.substr(20))));
  EXPECT_TRUE(IsJsonPong(c->Read()));
}

TEST_F(ConformanceTest, Case5ContinuationWithoutAStartIsAProtocolError) {
  for (uint8_t first : {uint8_t{kFin | kContinuation}, uint8_t{kContinuation}}) {
    SCOPED_TRACE(int{first});
    auto c = Connect();
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(c->Send(Frame(first, "orphan") + Frame(kFin | kText, JsonPing(30))));
    EXPECT_TRUE(ClosesWith(*c, 1002));
  }
  // A continuation after a finished message has nothing to continue either.
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Send(Frame(kFin | kText, JsonPing(30)) + Frame(kFin | kContinuation, "late")));
  EXPECT_TRUE(IsJsonPong(c->Read()));
  EXPECT_TRUE(ClosesWith(*c, 1002));
}

TEST_F(ConformanceTest, Case5NewMessageDuringFragmentationIsAProtocolError) {
  for (uint8_t second : {uint8_t{kText}, uint8_t{kFin | kText}, uint8_t{kFin | kBinary}}) {
    SCOPED_TRACE(int{second});
    auto c = Connect();
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(c->Send(Frame(kText, "{\"type\":") + Frame(second, "\"ping\"}")));
    EXPECT_TRUE(ClosesWith(*c, 1002));
  }
}

// --- 6 UTF-8 -----------------------------------------------------------------------------------

const std::string kKosme = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";  // Greek "kosme"
const std::string kGrin = "\xf0\x9f\x98\x80";                               // U+1F600

TEST_F(ConformanceTest, Case6ValidMultiByteTextIsAccepted) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  for (const std::string& pad :
       {kKosme, kGrin, std::string("\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80"),
        std::string("\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf")}) {
    ASSERT_TRUE(c->Send(Frame(kFin | kText, JsonPingWith(pad))));
    EXPECT_TRUE(IsJsonPong(c->Read()));
  }
}

TEST_F(ConformanceTest, Case6CodePointSplitAtEveryByteBoundaryIsAccepted) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const std::string text = JsonPingWith(kGrin);
  const size_t at = text.find(kGrin);
  for (size_t cut = at; cut <= at + kGrin.size(); ++cut) {
    SCOPED_TRACE(cut - at);
    ASSERT_TRUE(c->Send(Fragmented(text, {cut})));
    EXPECT_TRUE(IsJsonPong(c->Read()));
  }
  // Every byte its own fragment.
  std::vector<size_t> cuts;
  for (size_t i = 1; i < text.size(); ++i) cuts.push_back(i);
  ASSERT_TRUE(c->Send(Fragmented(text, cuts)));
  EXPECT_TRUE(IsJsonPong(c->Read()));
  // A frame written a byte at a time.
  const std::string one = Frame(kFin | kText, JsonPingWith(kKosme + kGrin));
  for (char ch : one) ASSERT_TRUE(c->Send(std::string(1, ch)));
  EXPECT_TRUE(IsJsonPong(c->Read()));
}

const std::vector<std::string>& InvalidSequences() {
  static const auto* v = new std::vector<std::string>{
      "\x80",              // lone continuation byte
      "\xc0\x80",          // overlong NUL
      "\xc1\xbf",          // overlong
      "\xe0\x80\xaf",      // overlong '/'
      "\xf0\x80\x80\xaf",  // overlong '/'
      "\xed\xa0\x80",      // U+D800
      "\xed\xbf\xbf",      // U+DFFF
      "\xf4\x90\x80\x80",  // U+110000
      "\xf8\x88\x80\x80\x80",
      "\xfe",
      "\xff",
      "\xce\xba\xe1\xbd",  // ends inside a code point
  };
  return *v;
}

TEST_F(ConformanceTest, Case6InvalidUtf8TextCloses1007) {
  for (const std::string& bad : InvalidSequences()) {
    SCOPED_TRACE(::testing::PrintToString(bad));
    auto c = Connect();
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(c->Send(Frame(kFin | kText, "{\"pad\":\"" + kKosme + bad)));
    EXPECT_TRUE(ClosesWith(*c, 1007));
  }
}

TEST_F(ConformanceTest, Case6InvalidUtf8InAFragmentedMessageCloses1007) {
  for (const std::string& bad : InvalidSequences()) {
    SCOPED_TRACE(::testing::PrintToString(bad));
    auto c = Connect();
    ASSERT_NE(c, nullptr);
    const std::string text = kKosme + bad + "tail";
    ASSERT_TRUE(c->Send(Fragmented(text, {1, kKosme.size() + 1, text.size() - 2})));
    EXPECT_TRUE(ClosesWith(*c, 1007));
  }
}

TEST_F(ConformanceTest, Case6InvalidUtf8FailsFastBeforeTheMessageEnds) {
  {
    // The first fragment already cannot be UTF-8: closed without the final fragment.
    auto c = Connect();
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(c->Send(Frame(kText, kKosme + "\xed\xa0\x80" + "more")));
    EXPECT_TRUE(ClosesWith(*c, 1007));
  }
  {
    // Inside one frame: closed once the bad bytes arrived, with the rest of the payload unsent.
    auto c = Connect();
    ASSERT_NE(c, nullptr);
    const std::string f = Frame(kFin | kText, kKosme + "\xf4\x90\x80\x80" + std::string(1000, 'a'));
    ASSERT_TRUE(c->Send(f.substr(0, f.size() - 1000)));
    EXPECT_TRUE(ClosesWith(*c, 1007));
  }
}

TEST_F(ConformanceTest, Case6BinaryIsNotUtf8Checked) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Send(Frame(kFin | kBinary, "\xff\xfe\xed\xa0\x80")));
  EXPECT_TRUE(IsErrorFrame(c->Read(), "binary_not_supported"));
}

}  // namespace
}  // namespace bridge::conformance
