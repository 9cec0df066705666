#include "core/namespaces.h"

#include <gtest/gtest.h>

namespace bridge::core {
namespace {

TEST(NamespacesTest, DefaultsAreGatherings) {
  auto r = NamespaceRegistry::Defaults();
  ASSERT_NE(r.Find("circles"), nullptr);
  EXPECT_TRUE(r.Find("circles")->client_broadcast);
  EXPECT_EQ(r.Find("circles")->history_size, 100u);
  ASSERT_NE(r.Find("workspace"), nullptr);
  EXPECT_FALSE(r.Find("workspace")->client_broadcast);
  ASSERT_NE(r.Find("agents"), nullptr);
  EXPECT_EQ(r.Find("agents")->history_ttl, std::chrono::seconds(120));
  EXPECT_EQ(r.Find("other"), nullptr);
}

TEST(NamespacesTest, ParsesSpec) {
  auto r = NamespaceRegistry::Parse("rooms:broadcast:history=10:ttl=60:presence,feeds");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_NE(r->Find("rooms"), nullptr);
  EXPECT_TRUE(r->Find("rooms")->client_broadcast);
  EXPECT_TRUE(r->Find("rooms")->presence);
  EXPECT_EQ(r->Find("rooms")->history_size, 10u);
  EXPECT_EQ(r->Find("rooms")->history_ttl, std::chrono::seconds(60));
  ASSERT_NE(r->Find("feeds"), nullptr);
  EXPECT_FALSE(r->Find("feeds")->client_broadcast);
}

TEST(NamespacesTest, HistoryBytesDefaultsToOneMebibyteAndParses) {
  EXPECT_EQ(NamespaceRegistry::Defaults().Find("circles")->history_max_bytes, 1u << 20);
  auto r = NamespaceRegistry::Parse("rooms:history=10:history_bytes=4096,feeds:history_bytes=0");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->Find("rooms")->history_size, 10u);
  EXPECT_EQ(r->Find("rooms")->history_max_bytes, 4096u);
  EXPECT_EQ(r->Find("feeds")->history_max_bytes, 0u);
  EXPECT_FALSE(NamespaceRegistry::Parse("rooms:history_bytes=").ok());
  EXPECT_FALSE(NamespaceRegistry::Parse("rooms:history_bytes=-1").ok());
  EXPECT_FALSE(NamespaceRegistry::Parse("rooms:history_bytes=1k").ok());
}

TEST(NamespacesTest, RejectsBadSpecs) {
  EXPECT_FALSE(NamespaceRegistry::Parse("rooms:bogus").ok());
  EXPECT_FALSE(NamespaceRegistry::Parse("rooms:history=x").ok());
  EXPECT_FALSE(NamespaceRegistry::Parse("rooms,rooms").ok());
  EXPECT_FALSE(NamespaceRegistry::Parse("a/b").ok());
}

}  // namespace
}  // namespace bridge::core
