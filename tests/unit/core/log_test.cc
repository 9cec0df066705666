#include "core/log.h"

#include <gtest/gtest.h>

namespace bridge::core::log {
namespace {

using std::chrono::seconds;

TEST(RateLimiterTest, AtMostBurstPerKeyPerIntervalThenSaysHowManyWereHeldBack) {
  RateLimiter limiter(2, seconds(10));
  const auto t0 = std::chrono::steady_clock::time_point{} + seconds(100);
  EXPECT_TRUE(limiter.Allow("a", t0).write);
  EXPECT_TRUE(limiter.Allow("a", t0).write);
  EXPECT_FALSE(limiter.Allow("a", t0 + seconds(1)).write);
  EXPECT_FALSE(limiter.Allow("a", t0 + seconds(2)).write);
  EXPECT_TRUE(limiter.Allow("b", t0 + seconds(2)).write) << "keys are counted apart";
  auto d = limiter.Allow("a", t0 + seconds(11));
  EXPECT_TRUE(d.write);
  EXPECT_EQ(d.suppressed, 2u);
  auto e = limiter.Allow("a", t0 + seconds(12));
  EXPECT_TRUE(e.write);
  EXPECT_EQ(e.suppressed, 0u);
}

TEST(LogJsonTest, StringsAreEscapedAndInvalidUtf8Replaced) {
  std::string out;
  AppendJsonString(out, "a\"b\\\n\x01 \xc3\xa9 \xff end");
  EXPECT_EQ(out, "\"a\\\"b\\\\\\n\\u0001 \xc3\xa9 \xef\xbf\xbd end\"");
  std::string f;
  Field("code", 4008).AppendJson(f);
  Field("reason", "slow consumer").AppendJson(f);
  Field("tls", false).AppendJson(f);
  EXPECT_EQ(f, ",\"code\":4008,\"reason\":\"slow consumer\",\"tls\":false");
  std::string t;
  Field("reason", "slow consumer").AppendText(t);
  Field("conn", "c-1").AppendText(t);
  Field("identity", "").AppendText(t);
  EXPECT_EQ(t, " reason=\"slow consumer\" conn=c-1 identity=\"\"");
}

TEST(LogFormatTest, Parses) {
  EXPECT_EQ(ParseFormat("json"), Format::kJson);
  EXPECT_EQ(ParseFormat("text"), Format::kText);
  EXPECT_EQ(ParseFormat("xml"), std::nullopt);
}

}  // namespace
}  // namespace bridge::core::log
