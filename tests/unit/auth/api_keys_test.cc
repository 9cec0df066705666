#include "auth/api_keys.h"

#include <gtest/gtest.h>

#include "test_keys.h"

namespace bridge::auth {
namespace {

constexpr char kGood[] =
    "# agents of the dev circle\n"
    "\n"
    "k-0123456789abcdef  builder   circles/dev,agents/*\r\n"
    "   # indented comment\n"
    "k-fedcba9876543210\tmonitor\t*\n";

TEST(ApiKeysTest, ParsesKeysCommentsAndBlankLines) {
  auto keys = ApiKeys::Parse(kGood, "keys.txt");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->size(), 2u);
  auto builder = keys->Lookup("k-0123456789abcdef");
  ASSERT_TRUE(builder.has_value());
  EXPECT_EQ(builder->subject, "builder");
  EXPECT_EQ(builder->publish, (std::vector<std::string>{"circles/dev", "agents/*"}));
  EXPECT_EQ(builder->channels, builder->publish);
  EXPECT_FALSE(builder->expires_at.has_value());
  EXPECT_TRUE(builder->CanPublish("agents/7"));
  EXPECT_FALSE(builder->CanPublish("circles/ops"));
  auto monitor = keys->Lookup("k-fedcba9876543210");
  ASSERT_TRUE(monitor.has_value());
  EXPECT_TRUE(monitor->CanSubscribe("circles/ops"));
}

TEST(ApiKeysTest, UnknownKeysAndNearMissesAreRefused) {
  auto keys = ApiKeys::Parse(kGood, "keys.txt");
  ASSERT_TRUE(keys.ok());
  for (const char* k : {"", "k-0123456789abcde", "k-0123456789abcdef ", "K-0123456789ABCDEF",
                        "k-0123456789abcdefg", "builder"}) {
    EXPECT_FALSE(keys->Lookup(k).has_value()) << k;
  }
  EXPECT_FALSE(ApiKeys().Lookup("k-0123456789abcdef").has_value());
}

TEST(ApiKeysTest, BadLinesNameTheLineAndNeverTheKey) {
  struct Case {
    std::string contents;
    std::string error;
  };
  const Case cases[] = {
      {"k-0123456789abcdef builder\n", "keys.txt:1: expected"},
      {"# c\nk-0123456789abcdef builder circles/dev extra\n", "keys.txt:2: expected"},
      {"\n\nshortkey builder circles/dev\n", "keys.txt:3: key must be"},
      {"k-0123456789abcdef bad/name circles/dev\n", "keys.txt:1: name must be"},
      {"k-0123456789abcdef builder circles/d*\n", "keys.txt:1: invalid channel pattern"},
      {"k-0123456789abcdef builder circles/dev,\n", "keys.txt:1: invalid channel pattern"},
      {"k-0123456789abcdef a circles/dev\nk-0123456789abcdef b circles/dev\n",
       "keys.txt:2: duplicate key"},
  };
  for (const Case& c : cases) {
    auto keys = ApiKeys::Parse(c.contents, "keys.txt");
    ASSERT_FALSE(keys.ok()) << c.contents;
    EXPECT_EQ(keys.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string message(keys.status().message());
    EXPECT_EQ(message.rfind(c.error, 0), 0u) << message;
    EXPECT_EQ(message.find("0123456789abcdef"), std::string::npos) << message;
  }
}

TEST(ApiKeysTest, LoadFileReadsAFileAndReportsAMissingOne) {
  testing::TempDir dir;
  const std::string path = dir.Write("keys.txt", kGood);
  auto keys = ApiKeys::LoadFile(path);
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->size(), 2u);
  auto missing = ApiKeys::LoadFile((dir.path() / "nope.txt").string());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  auto bad = ApiKeys::LoadFile(dir.Write("bad.txt", "x y z\n"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bad.txt:1:"), std::string::npos);
}

TEST(ApiKeysTest, EmptyFileAcceptsNoKey) {
  auto keys = ApiKeys::Parse("# nothing yet\n", "keys.txt");
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->size(), 0u);
  EXPECT_FALSE(keys->Lookup("k-0123456789abcdef").has_value());
}

}  // namespace
}  // namespace bridge::auth
