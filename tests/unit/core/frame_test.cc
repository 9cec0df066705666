#include "core/frame.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <cctype>

#include "google/protobuf/util/json_util.h"

namespace bridge::core {
namespace {

namespace pb = gathering::bridge::v1;

// The frame the hub would send for `event` at `offset`, parsed.
boost::json::value FrameOf(const pb::Event& event, uint64_t offset = 1) {
  auto parts = EncodeEvent(event, std::chrono::system_clock::time_point{});
  EXPECT_TRUE(parts.ok()) << parts.status();
  if (!parts.ok()) return {};
  std::string text = parts->head + std::to_string(offset) + parts->tail;
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  EXPECT_FALSE(ec) << text;
  return v;
}

pb::Event EventFromJson(const std::string& json) {
  pb::Event e;
  auto st = google::protobuf::util::JsonStringToMessage(json, &e);
  EXPECT_TRUE(st.ok()) << json;
  return e;
}

struct Golden {
  const char* event_json;  // proto3 JSON of the Event
  const char* frame;       // the expected frame
};

class GoldenFrameTest : public testing::TestWithParam<Golden> {};

TEST_P(GoldenFrameTest, FrameMatches) {
  pb::Event e = EventFromJson(GetParam().event_json);
  EXPECT_EQ(FrameOf(e, 42), boost::json::parse(GetParam().frame));
}

constexpr const char* kTs = R"("timestamp":"2026-11-25T17:00:00.123Z")";
#define TS_IN R"("timestamp":"2026-11-25T17:00:00.123456Z")"

INSTANTIATE_TEST_SUITE_P(
    EveryPayloadType, GoldenFrameTest,
    testing::Values(
        Golden{R"({"channel":"circles/dev-team",)" TS_IN
               R"(,"agent_message":{"agent_id":7,"content":"hi"}})",
               R"({"type":"agent_message","channel":"circles/dev-team","offset":42,)"
               R"("timestamp":"2026-11-25T17:00:00.123Z","data":{"agent_id":7,"content":"hi"}})"},
        Golden{
            R"({"channel":"circles/dev-team",)" TS_IN
            R"(,"agent_joined":{"agent_id":3,"agent_name":"Ada"}})",
            R"({"type":"agent_joined","channel":"circles/dev-team","offset":42,)"
            R"("timestamp":"2026-11-25T17:00:00.123Z","data":{"agent_id":3,"agent_name":"Ada"}})"},
        Golden{
            R"({"channel":"circles/dev-team",)" TS_IN
            R"(,"agent_left":{"agent_id":3,"reason":"closed"}})",
            R"({"type":"agent_left","channel":"circles/dev-team","offset":42,)"
            R"("timestamp":"2026-11-25T17:00:00.123Z","data":{"agent_id":3,"reason":"closed"}})"},
        Golden{R"({"channel":"circles/dev-team",)" TS_IN
               R"(,"circle_status":{"circle":"dev-team","status":"running","active_agents":4}})",
               R"({"type":"circle_status","channel":"circles/dev-team","offset":42,)"
               R"("timestamp":"2026-11-25T17:00:00.123Z",)"
               R"("data":{"circle":"dev-team","status":"running","active_agents":4}})"},
        Golden{R"({"channel":"workspace/9",)" TS_IN
               R"(,"file_changed":{"path":"src/a.py","agent_id":2,"size_bytes":"10"}})",
               R"({"type":"file_changed","channel":"workspace/9","offset":42,)"
               R"("timestamp":"2026-11-25T17:00:00.123Z",)"
               R"("data":{"path":"src/a.py","agent_id":2,"size_bytes":"10"}})"},
        Golden{R"({"channel":"workspace/9",)" TS_IN R"(,"file_created":{"path":"b.txt"}})",
               R"({"type":"file_created","channel":"workspace/9","offset":42,)"
               R"("timestamp":"2026-11-25T17:00:00.123Z","data":{"path":"b.txt"}})"},
        Golden{R"({"channel":"workspace/9",)" TS_IN R"(,"file_deleted":{"path":"b.txt"}})",
               R"({"type":"file_deleted","channel":"workspace/9","offset":42,)"
               R"("timestamp":"2026-11-25T17:00:00.123Z","data":{"path":"b.txt"}})"},
        Golden{R"({"channel":"workspace/9",)" TS_IN
               R"(,"git_status":{"branch":"main","ahead":1,"modified":["a","b"]}})",
               R"({"type":"git_status","channel":"workspace/9","offset":42,)"
               R"("timestamp":"2026-11-25T17:00:00.123Z",)"
               R"("data":{"branch":"main","ahead":1,"modified":["a","b"]}})"},
        Golden{R"({"channel":"agents/7",)" TS_IN R"(,"error":{"code":"E1","message":"boom"}})",
               R"({"type":"error","channel":"agents/7","offset":42,)"
               R"("timestamp":"2026-11-25T17:00:00.123Z","data":{"code":"E1","message":"boom"}})"},
        Golden{
            R"({"channel":"agents/7",)" TS_IN
            R"(,"custom":{"type":"tool_call","data":{"tool":"grep","n":3,"ok":true}}})",
            R"({"type":"tool_call","channel":"agents/7","offset":42,)"
            R"("timestamp":"2026-11-25T17:00:00.123Z","data":{"tool":"grep","n":3,"ok":true}})"}),
    [](const testing::TestParamInfo<Golden>& info) {
      std::string frame = info.param.frame;
      size_t start = frame.find(':') + 2;
      std::string type = frame.substr(start, frame.find('"', start) - start);
      for (char& c : type) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
      return type;
    });

TEST(FrameTest, StampsMissingTimestampWithNow) {
  pb::Event e = EventFromJson(R"({"channel":"circles/x","agent_message":{"content":"a"}})");
  auto now = std::chrono::system_clock::time_point(std::chrono::milliseconds(1764090000123));
  auto parts = EncodeEvent(e, now);
  ASSERT_TRUE(parts.ok());
  EXPECT_EQ(parts->timestamp, "2025-11-25T17:00:00.123Z");
  (void)kTs;
}

TEST(FrameTest, RefusesBadEvents) {
  auto now = std::chrono::system_clock::now();
  EXPECT_FALSE(EncodeEvent(EventFromJson(R"({"channel":"circles/x"})"), now).ok());
  EXPECT_FALSE(EncodeEvent(EventFromJson(R"({"channel":"bad","agent_message":{}})"), now).ok());
  EXPECT_FALSE(
      EncodeEvent(EventFromJson(R"({"channel":"circles/x","custom":{"type":"Bad Type"}})"), now)
          .ok());
  EXPECT_FALSE(
      EncodeEvent(EventFromJson(R"({"channel":"circles/x","custom":{"type":"ping"}})"), now).ok());
  EXPECT_FALSE(
      EncodeEvent(EventFromJson(R"({"channel":"circles/x","custom":{"type":"agent_message"}})"),
                  now)
          .ok());
}

TEST(FrameTest, EmptyPayloadGivesEmptyObject) {
  pb::Event e = EventFromJson(R"({"channel":"circles/x","agent_message":{}})");
  auto v = FrameOf(e);
  EXPECT_EQ(v.at("data"), boost::json::object());
  EXPECT_EQ(v.at("type"), "agent_message");
}

}  // namespace
}  // namespace bridge::core
