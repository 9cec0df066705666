// The default Origin policy with auth off: browsers from other sites may not upgrade.
#include "core/origin.h"

#include <gtest/gtest.h>

#include "test_support.h"

namespace bridge::testing {
namespace {

TEST(OriginTest, DefaultPolicyWithAuthOff) {
  auto server = StartBridge();
  ASSERT_NE(server, nullptr);
  uint16_t port = server->ws_port();
  EXPECT_EQ(HttpStatusWithOrigin(port, "/ws/circles/a", "https://evil.example"), 403);
  EXPECT_EQ(HttpStatusWithOrigin(port, "/ws/circles/a", "null"), 403);
  EXPECT_EQ(HttpStatusWithOrigin(port, "/ws/circles/a", "http://localhost:3000"), 101);
  EXPECT_EQ(HttpStatusWithOrigin(port, "/ws/circles/a", "http://127.0.0.1:5173"), 101);
  EXPECT_EQ(HttpStatus(port, "/ws/circles/a", true), 101);  // no Origin: not a browser
  EXPECT_EQ(server->metrics().origin_rejected_total.load(), 2u);
}

TEST(OriginTest, PolicyTable) {
  core::OriginPolicy open;
  EXPECT_TRUE(core::OriginAllowed(open, "", "bridge.example:8080"));
  EXPECT_TRUE(core::OriginAllowed(open, "https://bridge.example:8080", "bridge.example:8080"));
  EXPECT_TRUE(core::OriginAllowed(open, "http://[::1]:80", "x"));
  EXPECT_FALSE(core::OriginAllowed(open, "https://localhost.evil.example", "x"));
  core::OriginPolicy with_auth{{}, true};
  EXPECT_TRUE(core::OriginAllowed(with_auth, "https://anywhere.example", "x"));
  core::OriginPolicy list{{"https://app.example"}, true};
  EXPECT_TRUE(core::OriginAllowed(list, "https://app.example", "x"));
  EXPECT_FALSE(core::OriginAllowed(list, "https://app.example.evil", "x"));
  core::OriginPolicy any{{"*"}, false};
  EXPECT_TRUE(core::OriginAllowed(any, "https://x.example", "y"));
}

}  // namespace
}  // namespace bridge::testing
