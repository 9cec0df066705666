#include "broker/redis_url.h"

#include <gtest/gtest.h>

namespace bridge::broker {
namespace {

TEST(RedisUrlTest, HostOnlyGetsDefaults) {
  auto u = ParseRedisUrl("redis://localhost");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_FALSE(u->tls);
  EXPECT_EQ(u->host, "localhost");
  EXPECT_EQ(u->port, 6379);
  EXPECT_EQ(u->user, "");
  EXPECT_EQ(u->password, "");
  EXPECT_EQ(u->db, 0);
}

TEST(RedisUrlTest, FullUrl) {
  auto u = ParseRedisUrl("rediss://alice:s3cret@redis.example.com:6380/4");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->host, "redis.example.com");
  EXPECT_EQ(u->port, 6380);
  EXPECT_EQ(u->user, "alice");
  EXPECT_EQ(u->password, "s3cret");
  EXPECT_EQ(u->db, 4);
}

TEST(RedisUrlTest, SchemeIsCaseInsensitive) {
  auto u = ParseRedisUrl("REDISS://h:1");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_TRUE(u->tls);
}

TEST(RedisUrlTest, PasswordOnlyForms) {
  auto a = ParseRedisUrl("redis://:pw@h");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->user, "");
  EXPECT_EQ(a->password, "pw");
  auto b = ParseRedisUrl("redis://pw@h");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->user, "");
  EXPECT_EQ(b->password, "pw");
}

TEST(RedisUrlTest, PercentDecodesUserAndPassword) {
  auto u = ParseRedisUrl("redis://us%40er:p%3Aw%2Fd%25@h:7000");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->user, "us@er");
  EXPECT_EQ(u->password, "p:w/d%");
  EXPECT_EQ(u->port, 7000);
}

TEST(RedisUrlTest, UnescapedAtInPasswordUsesTheLastAt) {
  auto u = ParseRedisUrl("redis://u:a@b@h");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->password, "a@b");
  EXPECT_EQ(u->host, "h");
}

TEST(RedisUrlTest, Ipv6InBrackets) {
  auto u = ParseRedisUrl("redis://[::1]:6390/2");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 6390);
  EXPECT_EQ(u->db, 2);
  auto v = ParseRedisUrl("redis://[fe80::1]");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->host, "fe80::1");
  EXPECT_EQ(v->port, 6379);
}

TEST(RedisUrlTest, TrailingSlashIsDbZero) {
  auto u = ParseRedisUrl("redis://h:1/");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->db, 0);
}

void ExpectBad(const std::string& url, const std::string& fragment) {
  auto u = ParseRedisUrl(url);
  ASSERT_FALSE(u.ok()) << url << " parsed";
  EXPECT_EQ(u.status().code(), absl::StatusCode::kInvalidArgument) << url;
  EXPECT_NE(std::string(u.status().message()).find(fragment), std::string::npos)
      << url << ": " << u.status();
}

TEST(RedisUrlTest, RejectsBadInputWithAClearMessage) {
  ExpectBad("http://h", "unsupported scheme");
  ExpectBad("h:6379", "expected redis://");
  ExpectBad("redis://", "missing host");
  ExpectBad("redis://:pw@", "missing host");
  ExpectBad("redis://h:", "bad port");
  ExpectBad("redis://h:0", "bad port");
  ExpectBad("redis://h:65536", "bad port");
  ExpectBad("redis://h:12ab", "bad port");
  ExpectBad("redis://h/-1", "bad db");
  ExpectBad("redis://h/x", "bad db");
  ExpectBad("redis://h/99999999999", "bad db");
  ExpectBad("redis://h/1/2", "bad db");
  ExpectBad("redis://[::1", "unclosed");
  ExpectBad("redis://[::1]x", "after IPv6");
  ExpectBad("redis://::1:6379", "brackets");
  ExpectBad("redis://u:p%zz@h", "escape");
  ExpectBad("redis://h?db=1", "query");
  ExpectBad("redis://alice:@h", "needs a password");
}

TEST(RedisUrlTest, RedactedUrlHidesThePassword) {
  auto u = ParseRedisUrl("rediss://alice:s3cret@[::1]:6380/4");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(RedactedUrl(*u), "rediss://alice:***@[::1]:6380/4");
}

}  // namespace
}  // namespace bridge::broker
