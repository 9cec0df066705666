#include "auth/base64url.h"

#include <gtest/gtest.h>

namespace bridge::auth::internal {
namespace {

TEST(Base64UrlTest, EncodesRfc4648VectorsWithoutPadding) {
  EXPECT_EQ(Base64UrlEncode(""), "");
  EXPECT_EQ(Base64UrlEncode("f"), "Zg");
  EXPECT_EQ(Base64UrlEncode("fo"), "Zm8");
  EXPECT_EQ(Base64UrlEncode("foo"), "Zm9v");
  EXPECT_EQ(Base64UrlEncode("foob"), "Zm9vYg");
  EXPECT_EQ(Base64UrlEncode("fooba"), "Zm9vYmE");
  EXPECT_EQ(Base64UrlEncode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64UrlEncode("\xfb\xff\xbf"), "-_-_");
}

TEST(Base64UrlTest, RoundTripsAllByteValues) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(char(i));
  for (std::size_t n = 0; n <= all.size(); n += 7) {
    const std::string part = all.substr(0, n);
    EXPECT_EQ(Base64UrlDecode(Base64UrlEncode(part)), part);
  }
}

TEST(Base64UrlTest, DecodingIsStrict) {
  EXPECT_EQ(Base64UrlDecode(""), "");
  EXPECT_EQ(Base64UrlDecode("-_-_"), "\xfb\xff\xbf");
  EXPECT_FALSE(Base64UrlDecode("Zg=="));    // padding
  EXPECT_FALSE(Base64UrlDecode("+/+/"));    // standard alphabet
  EXPECT_FALSE(Base64UrlDecode("Zm9v\n"));  // whitespace
  EXPECT_FALSE(Base64UrlDecode("Zm9vY"));   // length 1 mod 4
  EXPECT_FALSE(Base64UrlDecode("Zh"));      // non-zero trailing bits
  EXPECT_FALSE(Base64UrlDecode("Zm9"));     // non-zero trailing bits
  EXPECT_TRUE(Base64UrlDecode("Zm8"));
  EXPECT_FALSE(Base64UrlDecode(std::string_view("Zm\0v", 4)));
}

}  // namespace
}  // namespace bridge::auth::internal
