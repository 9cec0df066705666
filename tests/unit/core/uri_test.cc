#include "core/uri.h"

#include <gtest/gtest.h>

namespace bridge::core {
namespace {

TEST(UriTest, ParsesPathAndQuery) {
  auto t = ParseRequestTarget("/ws/circles/dev-team?since=3&epoch=ab%20c&flag&x=a+b");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->path, "/ws/circles/dev-team");
  EXPECT_EQ(t->Param("since"), "3");
  EXPECT_EQ(t->Param("epoch"), "ab c");
  EXPECT_EQ(t->Param("flag"), "");
  EXPECT_EQ(t->Param("x"), "a b");
  EXPECT_FALSE(t->Param("missing").has_value());
}

TEST(UriTest, RejectsMalformedEscapesAndNul) {
  EXPECT_FALSE(ParseRequestTarget("/ws/circles/%zz").has_value());
  EXPECT_FALSE(ParseRequestTarget("/ws/circles/%2").has_value());
  EXPECT_FALSE(ParseRequestTarget("/ws/circles/a%00b").has_value());
  EXPECT_FALSE(ParseRequestTarget("ws/circles").has_value());
  EXPECT_FALSE(ParseRequestTarget("").has_value());
}

TEST(UriTest, ChannelFromWsPath) {
  EXPECT_EQ(ChannelFromWsPath("/ws/circles/dev-team"), "circles/dev-team");
  EXPECT_EQ(ChannelFromWsPath("/ws"), "");
  EXPECT_EQ(ChannelFromWsPath("/ws/"), "");
  EXPECT_FALSE(ChannelFromWsPath("/wss/x").has_value());
  EXPECT_FALSE(ChannelFromWsPath("/").has_value());
}

}  // namespace
}  // namespace bridge::core
