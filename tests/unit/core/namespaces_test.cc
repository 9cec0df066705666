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
TEST(NamespacesTest, RequirementsAndLimitsParseAndDefaultToTodaysBehaviour) {
  auto r = NamespaceRegistry::Parse(
      "inbox:personal:history=5:history_frames=subscribed:presence_frames=nobody:"
      "max_message_bytes=512:message_rate=5:message_burst=10,plain");
  ASSERT_TRUE(r.ok()) << r.status();
  const NamespaceConfig* inbox = r->Find("inbox");
  ASSERT_NE(inbox, nullptr);
  EXPECT_TRUE(inbox->personal_channels);
  EXPECT_EQ(inbox->client_history, ClientReads::kSubscribed);
  EXPECT_EQ(inbox->client_presence, ClientReads::kNobody);
  EXPECT_EQ(inbox->max_message_bytes, 512u);
  EXPECT_EQ(inbox->client_message_rate, 5);
  EXPECT_EQ(inbox->client_message_burst, 10);
  const NamespaceConfig* plain = r->Find("plain");
  EXPECT_FALSE(plain->personal_channels);
  EXPECT_EQ(plain->client_history, ClientReads::kGranted);
  EXPECT_EQ(plain->client_presence, ClientReads::kGranted);
  EXPECT_EQ(plain->max_message_bytes, 0u);
  EXPECT_EQ(plain->client_message_rate, 0);
  EXPECT_FALSE(NamespaceRegistry::Parse("inbox:history_frames=all").ok());
  EXPECT_FALSE(NamespaceRegistry::Parse("inbox:max_message_bytes=big").ok());
}

TEST(NamespacesTest, PersonalChannelsBelongToTheIdentityInTheirSecondSegment) {
  NamespaceConfig ns;
  ns.name = "inbox";
  EXPECT_TRUE(ns.Owns("bob", "inbox/alice")) << "off: everyone";
  ns.personal_channels = true;
  EXPECT_TRUE(ns.Owns("alice", "inbox/alice"));
  EXPECT_TRUE(ns.Owns("alice", "inbox/alice/drafts"));
  EXPECT_FALSE(ns.Owns("bob", "inbox/alice"));
  EXPECT_FALSE(ns.Owns("alice", "inbox/alicex"));
  EXPECT_FALSE(ns.Owns("alic", "inbox/alice"));
  EXPECT_FALSE(ns.Owns("bob", "inbox/alice/bob"));
  EXPECT_FALSE(ns.Owns("", "inbox/alice")) << "anonymous owns nothing";
}

}  // namespace bridge::core
