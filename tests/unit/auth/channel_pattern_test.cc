#include "auth/channel_pattern.h"

#include <gtest/gtest.h>

#include <string>

#include "auth/principal.h"

namespace bridge::auth {
namespace {

struct MatchCase {
  const char* pattern;
  const char* channel;
  bool matches;
};

class PatternMatchesTest : public ::testing::TestWithParam<MatchCase> {};

TEST_P(PatternMatchesTest, FollowsTheGrammar) {
  const MatchCase& c = GetParam();
  EXPECT_EQ(PatternMatches(c.pattern, c.channel), c.matches)
      << "pattern '" << c.pattern << "' channel '" << c.channel << "'";
}

INSTANTIATE_TEST_SUITE_P(
    Table, PatternMatchesTest,
    ::testing::Values(
        // Exact names.
        MatchCase{"circles/dev", "circles/dev", true},
        MatchCase{"circles/dev", "circles/dev2", false},
        MatchCase{"circles/dev", "circles/de", false},
        MatchCase{"circles/dev", "circles/dev/x", false},
        MatchCase{"workspace/42/files", "workspace/42/files", true},
        MatchCase{"Circles/dev", "circles/dev", false},
        // Namespace wildcards: any depth, first segment only.
        MatchCase{"circles/*", "circles/dev", true}, MatchCase{"circles/*", "circles/a/b/c", true},
        MatchCase{"circles/*", "circlesx/dev", false}, MatchCase{"circles/*", "circle/dev", false},
        MatchCase{"circles/*", "agents/circles", false}, MatchCase{"circles/*", "circles", false},
        MatchCase{"circles/*", "circles/", false},
        // Everything.
        MatchCase{"*", "circles/dev", true}, MatchCase{"*", "agents/7/x", true},
        // A star anywhere else is not a wildcard, and invalid patterns grant nothing.
        MatchCase{"circles/d*", "circles/dev", false}, MatchCase{"*/dev", "circles/dev", false},
        MatchCase{"circles/*/x", "circles/a/x", false}, MatchCase{"", "circles/dev", false},
        MatchCase{"circles/**", "circles/dev", false}, MatchCase{"/*", "/dev", false},
        // Invalid channels never match, not even "*".
        MatchCase{"*", "", false}, MatchCase{"*", "circles", false},
        MatchCase{"*", "circles//x", false}, MatchCase{"*", "circles/a b", false},
        MatchCase{"*", "circles/*", false}, MatchCase{"circles/*", "circles/*", false},
        MatchCase{"*", "circles/dev/", false}));

TEST(PatternValidTest, AcceptsTheThreeForms) {
  EXPECT_TRUE(PatternValid("*"));
  EXPECT_TRUE(PatternValid("circles/*"));
  EXPECT_TRUE(PatternValid("circles/dev-team"));
  EXPECT_TRUE(PatternValid("workspace/42/files"));
  EXPECT_TRUE(PatternValid("agents/a_b.c:d@e-f"));
}

TEST(PatternValidTest, RejectsEverythingElse) {
  for (const char* p : {"", "circles", "/", "*/*", "circles/", "/dev", "circles//x", "circles/ x",
                        "circles/d*", "circles/*/x", "**", "circles/**", "circles/é"}) {
    EXPECT_FALSE(PatternValid(p)) << p;
  }
}

TEST(PatternValidTest, LengthLimitIs200Bytes) {
  const std::string ok = "n/" + std::string(198, 'a');
  EXPECT_TRUE(PatternValid(ok));
  EXPECT_TRUE(PatternMatches(ok, ok));
  EXPECT_FALSE(PatternValid(ok + "a"));
  EXPECT_FALSE(PatternMatches("n/*", ok + "a"));
  EXPECT_TRUE(PatternValid(std::string(198, 'a') + "/*"));
  EXPECT_FALSE(PatternValid(std::string(199, 'a') + "/*"));
}

TEST(AnyMatchesTest, EmptyListMatchesNothing) {
  EXPECT_FALSE(AnyMatches({}, "circles/dev"));
  EXPECT_TRUE(AnyMatches({"agents/1", "circles/*"}, "circles/dev"));
  EXPECT_FALSE(AnyMatches({"agents/1", "bad pattern"}, "circles/dev"));
}

TEST(PrincipalTest, SubscribeAndPublishGrantsAreSeparate) {
  Principal p{"alice", {"circles/*"}, {"circles/dev"}, std::nullopt};
  EXPECT_TRUE(p.CanSubscribe("circles/ops"));
  EXPECT_FALSE(p.CanPublish("circles/ops"));
  EXPECT_TRUE(p.CanPublish("circles/dev"));
  EXPECT_FALSE(p.CanSubscribe("agents/1"));
  EXPECT_FALSE(Principal{}.CanSubscribe("circles/dev"));
}

}  // namespace
}  // namespace bridge::auth
