#include "core/channel.h"

#include <gtest/gtest.h>

#include <string>

namespace bridge::core {
namespace {

TEST(ChannelTest, AcceptsGatheringChannels) {
  EXPECT_TRUE(ValidateChannel("circles/dev-team").ok());
  EXPECT_TRUE(ValidateChannel("workspace/42").ok());
  EXPECT_TRUE(ValidateChannel("agents/7").ok());
  EXPECT_TRUE(ValidateChannel("workspace/42/files").ok());
  EXPECT_TRUE(ValidateChannel("circles/a.b:c@d_e-f").ok());
}

TEST(ChannelTest, RejectsBadNames) {
  for (const char* bad : {"", "circles", "circles/", "/x", "circles//x", "circles/a b",
                          "circles/a\"b", "circles/*", "circles/é", "circles/a\\b"}) {
    EXPECT_FALSE(ValidateChannel(bad).ok()) << bad;
  }
  EXPECT_FALSE(ValidateChannel("circles/" + std::string(kMaxChannelBytes, 'a')).ok());
  EXPECT_TRUE(ValidateChannel("circles/" + std::string(kMaxChannelBytes - 8, 'a')).ok());
}

TEST(ChannelTest, NamespaceIsFirstSegment) {
  EXPECT_EQ(NamespaceOf("circles/dev-team"), "circles");
  EXPECT_EQ(NamespaceOf("workspace/42/files"), "workspace");
}

TEST(ChannelTest, PatternsMatchExactNamespaceAndAll) {
  EXPECT_TRUE(PatternMatches("circles/dev-team", "circles/dev-team"));
  EXPECT_FALSE(PatternMatches("circles/dev-team", "circles/dev-team2"));
  EXPECT_TRUE(PatternMatches("circles/*", "circles/x"));
  EXPECT_TRUE(PatternMatches("circles/*", "circles/x/y"));
  EXPECT_FALSE(PatternMatches("circles/*", "circlesx/y"));
  EXPECT_FALSE(PatternMatches("circles/*", "workspace/1"));
  EXPECT_TRUE(PatternMatches("*", "agents/1"));
  EXPECT_TRUE(ValidatePattern("circles/*").ok());
  EXPECT_TRUE(ValidatePattern("*").ok());
  EXPECT_FALSE(ValidatePattern("circles*").ok());
  EXPECT_FALSE(ValidatePattern("/*").ok());
  EXPECT_FALSE(ValidatePattern("").ok());
}

}  // namespace
}  // namespace bridge::core
