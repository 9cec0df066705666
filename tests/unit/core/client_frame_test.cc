#include "core/client_frame.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

namespace bridge::core {
namespace {

TEST(ClientFrameTest, ControlFrames) {
  ClientFrameError err;
  EXPECT_EQ(ParseClientFrame(R"({"type":"ping"})", err)->kind, ClientFrame::Kind::kPing);
  EXPECT_EQ(ParseClientFrame(R"({"type":"pong"})", err)->kind, ClientFrame::Kind::kPong);
  auto auth = ParseClientFrame(R"({"type":"auth","token":"abc"})", err);
  EXPECT_EQ(auth->kind, ClientFrame::Kind::kAuth);
  EXPECT_EQ(auth->token, "abc");
  auto sub =
      ParseClientFrame(R"({"type":"subscribe","channel":"circles/a","since":5,"epoch":"e"})", err);
  ASSERT_TRUE(sub.has_value());
  EXPECT_EQ(sub->kind, ClientFrame::Kind::kSubscribe);
  EXPECT_EQ(sub->channel, "circles/a");
  EXPECT_EQ(sub->since, 5u);
  EXPECT_EQ(sub->epoch, "e");
}

TEST(ClientFrameTest, MessagesKeepTheirFields) {
  ClientFrameError err;
  auto m = ParseClientFrame(R"({"type":"message","content":"Hello"})", err);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->kind, ClientFrame::Kind::kMessage);
  EXPECT_EQ(m->object.at("content"), "Hello");
  auto untyped = ParseClientFrame(R"({"content":"x"})", err);
  ASSERT_TRUE(untyped.has_value());
  EXPECT_EQ(untyped->kind, ClientFrame::Kind::kMessage);
}

TEST(ClientFrameTest, RefusalsCarryCodes) {
  struct Case {
    const char* text;
    const char* code;
  };
  for (const Case& c :
       {Case{"not json", "invalid_json"}, Case{"[1,2]", "not_an_object"},
        Case{"\"s\"", "not_an_object"}, Case{R"({"type":7})", "invalid_type"},
        Case{R"({"type":"subscribe"})", "invalid_channel"},
        Case{R"({"type":"subscribe","channel":"circles/a","since":-1})", "invalid_since"},
        Case{R"({"type":"agent_message"})", "reserved_type"},
        Case{R"({"type":"error"})", "reserved_type"}, Case{R"({"channel":5})", "invalid_channel"},
        Case{R"({"c":47777E773808})", "invalid_json"},
        Case{R"({"a":[1,{"b":-1e400}]})", "invalid_json"}}) {
    ClientFrameError err;
    EXPECT_FALSE(ParseClientFrame(c.text, err).has_value()) << c.text;
    EXPECT_EQ(ErrorCodeName(err.code), c.code) << c.text;
  }
}

TEST(ClientFrameTest, DeepNestingIsRefusedNotRecursed) {
  std::string deep(100000, '[');
  ClientFrameError err;
  EXPECT_FALSE(ParseClientFrame(deep, err).has_value());
  EXPECT_EQ(ErrorCodeName(err.code), "invalid_json");
}

TEST(ClientFrameTest, BroadcastFrameAddsServerFields) {
  ClientFrameError err;
  auto m = ParseClientFrame(
      R"({"type":"message","content":"Hello","channel":"spoof","sender":"x"})", err);
  ASSERT_TRUE(m.has_value());
  std::string head, tail;
  BuildClientMessageFrame(std::move(m->object), "circles/a", "2026-01-01T00:00:00.000Z", "c-1",
                          head, tail);
  auto v = boost::json::parse(head + "9" + tail);
  EXPECT_EQ(v, boost::json::parse(R"({"type":"message","content":"Hello","channel":"circles/a",
      "offset":9,"timestamp":"2026-01-01T00:00:00.000Z","sender":"c-1"})"));
  BuildClientMessageFrame(boost::json::object(), "circles/a", "t", "c-1", head, tail);
  EXPECT_NO_THROW(boost::json::parse(head + "1" + tail));
}

}  // namespace
}  // namespace bridge::core
