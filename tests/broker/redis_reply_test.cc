#include "broker/redis_reply.h"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <string>

namespace bridge::broker {
namespace {

// Decodes one RESP reply through hiredis's reader, as the connection does.
RedisReply Decode(const std::string& wire) {
  redisReader* reader = redisReaderCreate();
  EXPECT_EQ(redisReaderFeed(reader, wire.data(), wire.size()), REDIS_OK);
  void* raw = nullptr;
  EXPECT_EQ(redisReaderGetReply(reader, &raw), REDIS_OK);
  EXPECT_NE(raw, nullptr) << "incomplete: " << wire;
  RedisReply out = raw ? RedisReply::FromHiredis(*static_cast<redisReply*>(raw)) : RedisReply{};
  if (raw) freeReplyObject(raw);
  redisReaderFree(reader);
  return out;
}

TEST(RedisReplyTest, ConvertsEveryType) {
  EXPECT_EQ(Decode("$-1\r\n"), RedisReply::Nil());
  EXPECT_EQ(Decode("*-1\r\n"), RedisReply::Nil());
  EXPECT_EQ(Decode(":-42\r\n"), RedisReply::Integer(-42));
  EXPECT_EQ(Decode("+OK\r\n"), RedisReply::Status("OK"));
  EXPECT_EQ(Decode("-ERR bad\r\n"), RedisReply::Error("ERR bad"));
  EXPECT_EQ(Decode(std::string("$3\r\na\0b\r\n", 9)), RedisReply::String(std::string("a\0b", 3)));
  EXPECT_EQ(Decode("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n*1\r\n:1\r\n"),
            RedisReply::Array({RedisReply::String("message"), RedisReply::String("ch"),
                               RedisReply::Array({RedisReply::Integer(1)})}));
}

TEST(RedisReplyTest, DebugStringElidesLongStrings) {
  EXPECT_EQ(RedisReply::Array({RedisReply::Integer(1), RedisReply::Status("OK"), RedisReply::Nil()})
                .DebugString(),
            "[(integer) 1, +\"OK\", nil]");
  const std::string s = RedisReply::String(std::string(1000, 'x')).DebugString();
  EXPECT_NE(s.find("(1000 bytes)"), std::string::npos) << s;
  EXPECT_LT(s.size(), 100u);
}

TEST(RedisReplyTest, ReplyToStatus) {
  EXPECT_TRUE(ReplyToStatus(RedisReply::Status("OK")).ok());
  EXPECT_EQ(ReplyToStatus(RedisReply::Error("WRONGPASS invalid")).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ReplyToStatus(RedisReply::Error("ERR syntax")).code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace bridge::broker
