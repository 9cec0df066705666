// The wire vocabulary: the builders, the reserved types, and the documents and clients that must
// agree with core/protocol.h (docs/protocol.md's tables, the TypeScript and Python clients'
// control types).
#include "core/protocol.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "core/utf8.h"
#include "core/websocket_codec.h"

namespace bridge::core {
namespace {

std::string ReadSource(const std::string& relative) {
  std::ifstream in(std::string(BRIDGE_SOURCE_DIR) + "/" + relative);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The lines of `doc` between the heading `heading` and the next heading of the same or a higher
// level.
std::string Section(const std::string& doc, const std::string& heading) {
  size_t at = doc.find("\n" + heading + "\n");
  if (at == std::string::npos) return "";
  size_t level = heading.find(' ');
  size_t end = at + heading.size() + 2;
  for (;;) {
    size_t next = doc.find("\n#", end);
    if (next == std::string::npos) return doc.substr(at);
    size_t hashes = doc.find(' ', next + 1) - (next + 1);
    if (hashes <= level) return doc.substr(at, next - at);
    end = next + 1;
  }
}

// Every run of `chars` (non-empty) that follows `prefix` and is followed by `suffix`. (Plain
// scanning: GCC 12 warns inside std::regex under the sanitizers.)
std::set<std::string> Matches(const std::string& text, const std::string& prefix,
                              const std::string& chars, const std::string& suffix) {
  std::set<std::string> out;
  for (size_t at = text.find(prefix); at != std::string::npos; at = text.find(prefix, at + 1)) {
    size_t begin = at + prefix.size();
    size_t end = text.find_first_not_of(chars, begin);
    if (end == std::string::npos || end == begin) continue;
    if (text.compare(end, suffix.size(), suffix) != 0) continue;
    out.insert(text.substr(begin, end - begin));
  }
  return out;
}

// The text between `open` and the next `close`, "" when `open` is missing.
std::string Block(const std::string& text, const std::string& open, const std::string& close) {
  size_t at = text.find(open);
  if (at == std::string::npos) return "";
  size_t begin = at + open.size();
  size_t end = text.find(close, begin);
  return end == std::string::npos ? "" : text.substr(begin, end - begin);
}

constexpr char kLower[] = "abcdefghijklmnopqrstuvwxyz_";
constexpr char kLowerDigits[] = "abcdefghijklmnopqrstuvwxyz_0123456789";

template <class Range>
std::set<std::string> AsSet(const Range& r) {
  std::set<std::string> out;
  for (const auto& x : r) out.insert(std::string(x));
  return out;
}

TEST(ProtocolTest, ErrorFrameEscapesTheMessage) {
  auto f = ErrorFrame(ErrorCode::kInvalidChannel, "line\nbreak\x01 \"q\"");
  auto v = boost::json::parse(f->text);
  EXPECT_EQ(v.at("type"), "error");
  EXPECT_EQ(v.at("data").at("code"), "invalid_channel");
  EXPECT_EQ(v.at("data").at("message"), "line\nbreak\x01 \"q\"");
  EXPECT_TRUE(f->is_control());
}

TEST(ProtocolTest, ControlFramesAreJsonWithTheirFields) {
  auto s = boost::json::parse(SubscribedFrame("circles/a", "e1", 7, true)->text);
  EXPECT_EQ(s.at("type"), "subscribed");
  EXPECT_EQ(s.at("epoch"), "e1");
  EXPECT_EQ(s.at("offset"), 7);
  EXPECT_EQ(s.at("recovered"), true);
  EXPECT_FALSE(boost::json::parse(SubscribedFrame("circles/a", "e", 0, std::nullopt)->text)
                   .as_object()
                   .contains("recovered"));
  EXPECT_EQ(boost::json::parse(UnsubscribedFrame("circles/a")->text).at("channel"), "circles/a");
  auto g = boost::json::parse(GapFrame("circles/a", 3, 9)->text);
  EXPECT_EQ(g.at("from"), 3);
  EXPECT_EQ(g.at("to"), 9);
  auto a = boost::json::parse(
      AuthenticatedFrame("ann\xc3\xa9", std::chrono::system_clock::from_time_t(0))->text);
  EXPECT_EQ(a.at("identity"), "ann\xc3\xa9");
  EXPECT_EQ(a.at("expires_at"), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(PongFrame()->text, R"({"type":"pong"})");
  EXPECT_EQ(PingFrame()->text, R"({"type":"ping"})");
  auto r = boost::json::parse(
      ReconnectFrame("server shutting down", {{"circles/\"a\"", "e1", 7}, {"agents/b", "e2", 0}})
          ->text);
  EXPECT_EQ(r.at("type"), "reconnect");
  EXPECT_EQ(r.at("reason"), "server shutting down");
  EXPECT_EQ(r.at("positions").at("circles/\"a\"").at("epoch"), "e1");
  EXPECT_EQ(r.at("positions").at("circles/\"a\"").at("offset"), 7);
  EXPECT_EQ(r.at("positions").at("agents/b").at("offset"), 0);
  EXPECT_TRUE(
      boost::json::parse(ReconnectFrame("x", {})->text).at("positions").as_object().empty());
}

// A subscribed frame names its channel and epoch on the frame itself (the session keeps the
// epoch for its resume positions), through WithContext too.
TEST(ProtocolTest, SubscribedFramesCarryTheirEpoch) {
  auto s = WithContext(SubscribedFrame("circles/a", "e1", 7, std::nullopt), {"3", "circles/a"});
  EXPECT_TRUE(s->is_control());
  EXPECT_EQ(s->channel, "circles/a");
  EXPECT_EQ(s->epoch, "e1");
  EXPECT_TRUE(GapFrame("circles/a", 1, 2)->epoch.empty());
}

TEST(ProtocolTest, EveryTypeTheBridgeEmitsIsReserved) {
  for (auto t : ServerControlTypes()) EXPECT_TRUE(IsReservedType(t)) << t;
  for (auto t : ClientControlTypes()) EXPECT_TRUE(IsReservedType(t)) << t;
  for (const char* t :
       {"agent_message", "agent_joined", "git_status", "custom", "authenticated", "error", "gap"}) {
    EXPECT_TRUE(IsReservedType(t)) << t;
  }
  EXPECT_FALSE(IsReservedType("message"));
  EXPECT_FALSE(IsReservedType("tool_call"));
}

TEST(ProtocolTest, PeerCloseCodesFollowRfc6455) {
  for (uint16_t c : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4001, 4999}) {
    EXPECT_TRUE(IsValidPeerCloseCode(c)) << c;
  }
  for (uint16_t c : {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535}) {
    EXPECT_FALSE(IsValidPeerCloseCode(c)) << c;
  }
}

TEST(ProtocolTest, ErrorCodeNamesAreDistinctSnakeCase) {
  std::set<std::string> names;
  for (ErrorCode c : ErrorCodes()) {
    std::string n(ErrorCodeName(c));
    EXPECT_TRUE(!n.empty() && n[0] >= 'a' && n[0] <= 'z' &&
                n.find_first_not_of(kLowerDigits) == std::string::npos)
        << n;
    EXPECT_TRUE(names.insert(n).second) << n;
  }
}

TEST(ProtocolTest, DocumentedCloseCodesAreTheOnesTheBridgeSends) {
  std::string doc = ReadSource("docs/protocol.md");
  ASSERT_FALSE(doc.empty()) << "docs/protocol.md not found";
  std::string table = Section(doc, "## Close codes");
  ASSERT_FALSE(table.empty()) << "docs/protocol.md has no '## Close codes' section";
  std::set<std::string> expected;
  for (const auto& c : CloseCodes()) expected.insert(std::to_string(CloseValue(c.code)));
  EXPECT_EQ(Matches(table, "\n| ", "0123456789", " |"), expected);
}

TEST(ProtocolTest, DocumentedErrorCodesAreTheOnesTheBridgeSends) {
  std::string doc = ReadSource("docs/protocol.md");
  std::string table = Section(doc, "### Error codes");
  ASSERT_FALSE(table.empty()) << "docs/protocol.md has no '### Error codes' section";
  std::set<std::string> expected;
  for (ErrorCode c : ErrorCodes()) expected.insert(std::string(ErrorCodeName(c)));
  EXPECT_EQ(Matches(table, "\n| `", kLowerDigits, "` |"), expected);
}

TEST(ProtocolTest, DocumentedControlFramesAreTheOnesTheBridgeSends) {
  std::string doc = ReadSource("docs/protocol.md");
  std::string server = Section(doc, "### Control frames");
  ASSERT_FALSE(server.empty());
  EXPECT_EQ(Matches(server, "\n| `{\"type\":\"", kLower, "\""), AsSet(ServerControlTypes()));
  std::string client = Section(doc, "## Client → server frames");
  ASSERT_FALSE(client.empty());
  EXPECT_EQ(Matches(client, "\n| `{\"type\":\"", kLower, "\""), AsSet(ClientControlTypes()));
}

// The clients skip control frames when they hand events to the application: their lists must be
// the bridge's control types, both ways, except `error` (handed to the application).
std::set<std::string> ClientsControlTypes() {
  std::set<std::string> out = AsSet(ServerControlTypes());
  for (auto t : ClientControlTypes()) out.insert(std::string(t));
  out.erase("error");
  return out;
}

TEST(ProtocolTest, TypeScriptClientKnowsEveryControlType) {
  std::string src = ReadSource("clients/typescript/src/events.ts");
  std::string list = Block(src, "CONTROL_TYPES = new Set([", "])");
  ASSERT_FALSE(list.empty()) << "CONTROL_TYPES not found in clients/typescript/src/events.ts";
  EXPECT_EQ(Matches(list, "\"", kLower, "\""), ClientsControlTypes());
}

TEST(ProtocolTest, PythonClientKnowsEveryControlType) {
  std::string src = ReadSource("clients/python/gathering_bridge/events.py");
  std::string list = Block(src, "CONTROL_TYPES = frozenset({", "})");
  ASSERT_FALSE(list.empty())
      << "CONTROL_TYPES not found in clients/python/gathering_bridge/events.py";
  EXPECT_EQ(Matches(list, "\"", kLower, "\""), ClientsControlTypes());
}

// Which of the bridge's close codes a client must not retry: exactly the ones core/protocol.h
// marks not retryable. The clients' lists may hold more (RFC codes the bridge never sends).
std::set<std::string> TerminalBridgeCodes(const std::set<std::string>& client_list) {
  std::set<std::string> out;
  for (const auto& c : CloseCodes()) {
    if (client_list.count(std::to_string(CloseValue(c.code))))
      out.insert(std::to_string(CloseValue(c.code)));
  }
  return out;
}

std::set<std::string> ExpectedTerminal() {
  std::set<std::string> out;
  for (const auto& c : CloseCodes()) {
    if (!c.retryable) out.insert(std::to_string(CloseValue(c.code)));
  }
  return out;
}

TEST(ProtocolTest, RefusalCodesAreFourThousandsAndTerminalOnlyWhenRetryingCannotHelp) {
  std::set<uint16_t> seen;
  for (const auto& c : CloseCodes()) {
    EXPECT_TRUE(seen.insert(CloseValue(c.code)).second) << CloseValue(c.code);
    EXPECT_TRUE(IsValidPeerCloseCode(CloseValue(c.code))) << CloseValue(c.code);
  }
  for (CloseCode c : {CloseCode::kNotFound, CloseCode::kBadRequest, CloseCode::kForbidden,
                      CloseCode::kUnauthenticated}) {
    EXPECT_EQ(ExpectedTerminal().count(std::to_string(CloseValue(c))), 1u) << CloseValue(c);
  }
  for (CloseCode c : {CloseCode::kTooManyFromIp, CloseCode::kUnavailable, CloseCode::kGoingAway,
                      CloseCode::kSlowConsumer}) {
    EXPECT_EQ(ExpectedTerminal().count(std::to_string(CloseValue(c))), 0u) << CloseValue(c);
  }
}

TEST(ProtocolTest, DocumentedClientBehaviourPerCloseCodeIsTheBridgesList) {
  std::string table = Section(ReadSource("docs/protocol.md"), "## Close codes");
  std::set<std::string> stop;
  for (const auto& c : CloseCodes()) {
    std::string code = std::to_string(CloseValue(c.code));
    size_t row = table.find("\n| " + code + " |");
    ASSERT_NE(row, std::string::npos) << code;
    std::string line = table.substr(row + 1, table.find('\n', row + 1) - row - 1);
    std::string last = line.substr(line.rfind(" | ", line.size() - 3) + 3);
    if (last.rfind("stop", 0) == 0)
      stop.insert(code);
    else
      EXPECT_EQ(last.rfind("retry", 0), 0u) << line;
  }
  EXPECT_EQ(stop, ExpectedTerminal());
}

TEST(ProtocolTest, TypeScriptClientStopsOnTheTerminalCodes) {
  std::string src = ReadSource("clients/typescript/src/client.ts");
  std::string list = Block(src, "TERMINAL_CLOSE_CODES: readonly number[] = [", "]");
  ASSERT_FALSE(list.empty())
      << "TERMINAL_CLOSE_CODES not found in clients/typescript/src/client.ts";
  std::string padded = " " + list + ",";
  EXPECT_EQ(TerminalBridgeCodes(Matches(padded, " ", "0123456789", ",")), ExpectedTerminal());
}

TEST(ProtocolTest, PythonClientStopsOnTheTerminalCodes) {
  std::string src = ReadSource("clients/python/gathering_bridge/subscriber.py");
  std::string list = Block(src, "TERMINAL_CLOSE_CODES = (", ")");
  ASSERT_FALSE(list.empty())
      << "TERMINAL_CLOSE_CODES not found in clients/python/gathering_bridge/subscriber.py";
  std::string padded = " " + list + ",";
  EXPECT_EQ(TerminalBridgeCodes(Matches(padded, " ", "0123456789", ",")), ExpectedTerminal());
}

TEST(Utf8Test, ValidatesAndTruncatesBetweenCharacters) {
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9 \xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("ab\xe2\x82"));        // cut short
  std::string s = "ab\xe2\x82\xac";               // "ab€"
  EXPECT_EQ(TruncateUtf8(s, 4), "ab");
  EXPECT_EQ(TruncateUtf8(s, 5), s);
  EXPECT_EQ(TruncateUtf8(s, 2), "ab");
  EXPECT_TRUE(IsValidUtf8(TruncateUtf8("\xf0\x9f\x98\x80\xf0\x9f\x98\x80", 6)));
}

}  // namespace
}  // namespace bridge::core
