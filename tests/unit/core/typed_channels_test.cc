#include "core/typed_channels.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace bridge::core {
namespace {

namespace pb = gathering::bridge::v1;

pb::ChannelTypes Decl(std::string ns, std::vector<std::string> payloads, bool custom = false) {
  pb::ChannelTypes d;
  d.set_namespace_(std::move(ns));
  for (auto& p : payloads) d.add_payloads(std::move(p));
  d.set_custom(custom);
  return d;
}

pb::Event Message(std::string channel) {
  pb::Event e;
  e.set_channel(std::move(channel));
  e.mutable_agent_message()->set_content("hi");
  return e;
}

pb::Event FileChanged(std::string channel) {
  pb::Event e;
  e.set_channel(std::move(channel));
  e.mutable_file_changed()->set_path("a.txt");
  return e;
}

pb::Event Custom(std::string channel, std::string type) {
  pb::Event e;
  e.set_channel(std::move(channel));
  e.mutable_custom()->set_type(std::move(type));
  return e;
}

TEST(TypedChannelsTest, TheCompiledDeclarationsTypeGatheRingsNamespaces) {
  std::vector<std::string> warnings;
  auto typed = TypedChannels::Load(NamespaceRegistry::Defaults(), &warnings);
  ASSERT_TRUE(typed.ok()) << typed.status();
  EXPECT_TRUE(warnings.empty());
  const auto* circles = typed->Find("circles");
  ASSERT_NE(circles, nullptr);
  EXPECT_EQ(circles->names, (std::vector<std::string>{"agent_message", "agent_joined", "agent_left",
                                                      "circle_status", "error", "custom"}));
  const auto* workspace = typed->Find("workspace");
  ASSERT_NE(workspace, nullptr);
  EXPECT_FALSE(workspace->custom);
  EXPECT_EQ(workspace->names,
            (std::vector<std::string>{"agent_message", "file_changed", "file_created",
                                      "file_deleted", "git_status", "error"}));
  EXPECT_NE(typed->Find("agents"), nullptr);
  EXPECT_EQ(typed->Find("rooms"), nullptr);
}

TEST(TypedChannelsTest, RefusesAnUndeclaredTypeNamingChannelTypeAndAllowedTypes) {
  auto typed = TypedChannels::Load(NamespaceRegistry::Defaults(), nullptr);
  ASSERT_TRUE(typed.ok()) << typed.status();
  EXPECT_TRUE(typed->Check(Message("circles/x")).ok());
  absl::Status s = typed->Check(FileChanged("circles/x"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "channel 'circles/x' does not carry file_changed events: namespace 'circles' is typed "
            "and carries agent_message, agent_joined, agent_left, circle_status, error, custom "
            "(events.proto, channel_types)");
  EXPECT_TRUE(typed->Check(FileChanged("workspace/1")).ok());
  EXPECT_TRUE(typed->Check(Custom("circles/x", "tool_call")).ok());
  s = typed->Check(Custom("workspace/1", "tool_call"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("does not carry custom (type 'tool_call') events"), std::string::npos)
      << s;
  // A type the hub will refuse anyway is not echoed.
  s = typed->Check(Custom("workspace/1", std::string("\xff\xfe", 2)));
  EXPECT_NE(s.message().find("does not carry custom events"), std::string::npos) << s;
}

TEST(TypedChannelsTest, UntypedNamespacesAndEventsWithoutPayloadPass) {
  auto ns = NamespaceRegistry::Parse("circles:broadcast:presence,rooms");
  ASSERT_TRUE(ns.ok());
  auto typed = TypedChannels::Load(*ns, nullptr);
  ASSERT_TRUE(typed.ok()) << typed.status();
  EXPECT_TRUE(typed->Check(FileChanged("rooms/a")).ok());
  EXPECT_TRUE(typed->Check(Custom("rooms/a", "anything")).ok());
  pb::Event empty;
  empty.set_channel("circles/x");
  EXPECT_TRUE(typed->Check(empty).ok());
  EXPECT_TRUE(TypedChannels().Check(FileChanged("circles/x")).ok());
}

TEST(TypedChannelsTest, ADeclarationForAnUnconfiguredNamespaceIsAWarning) {
  auto ns = NamespaceRegistry::Parse("circles:broadcast:presence");
  ASSERT_TRUE(ns.ok());
  std::vector<std::string> warnings;
  auto typed = TypedChannels::Load(*ns, &warnings);
  ASSERT_TRUE(typed.ok()) << typed.status();
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_EQ(warnings[0],
            "events.proto declares the types of namespace 'workspace', which is not configured "
            "(--namespaces); ignored");
  EXPECT_NE(warnings[1].find("'agents'"), std::string::npos);
  EXPECT_EQ(typed->entries().size(), 1u);
}

TEST(TypedChannelsTest, PresenceNeedsJoinsAndLeaves) {
  auto built = TypedChannels::Build({Decl("rooms", {"agent_message", "agent_joined"}, true)});
  ASSERT_TRUE(built.ok()) << built.status();
  auto ns = NamespaceRegistry::Parse("rooms:presence");
  ASSERT_TRUE(ns.ok());
  auto typed = built->ForNamespaces(*ns, nullptr);
  EXPECT_EQ(typed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(typed.status().message().find("namespace 'rooms' has presence"), std::string::npos)
      << typed.status();
  auto without = NamespaceRegistry::Parse("rooms");
  ASSERT_TRUE(without.ok());
  EXPECT_TRUE(built->ForNamespaces(*without, nullptr).ok());
}

TEST(TypedChannelsTest, BroadcastNeedsCustom) {
  auto built = TypedChannels::Build({Decl("rooms", {"agent_message"})});
  ASSERT_TRUE(built.ok()) << built.status();
  auto ns = NamespaceRegistry::Parse("rooms:broadcast");
  ASSERT_TRUE(ns.ok());
  auto typed = built->ForNamespaces(*ns, nullptr);
  EXPECT_EQ(typed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(typed.status().message().find("broadcasts client messages"), std::string::npos)
      << typed.status();
}

TEST(TypedChannelsTest, BadDeclarationsAreRefused) {
  struct Case {
    pb::ChannelTypes decl;
    const char* why;
  };
  const std::vector<Case> cases = {
      {Decl("", {"agent_message"}), "not a namespace name"},
      {Decl("a/b", {"agent_message"}), "not a namespace name"},
      {Decl("rooms", {"agent_mesage"}), "'agent_mesage' is not a case of Event.payload"},
      {Decl("rooms", {"channel"}), "'channel' is not a case of Event.payload"},
      {Decl("rooms", {"custom"}), "say `custom: true`"},
      {Decl("rooms", {"error", "error"}), "'error' is listed twice"},
  };
  for (const auto& c : cases) {
    auto built = TypedChannels::Build({c.decl});
    ASSERT_FALSE(built.ok()) << c.why;
    EXPECT_EQ(built.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(built.status().message().find(c.why), std::string::npos) << built.status();
  }
  auto twice = TypedChannels::Build({Decl("rooms", {"error"}), Decl("rooms", {"agent_message"})});
  EXPECT_NE(twice.status().message().find("declared twice"), std::string::npos) << twice.status();
}

TEST(TypedChannelsTest, TypesAreListedInProtoOrderWhateverTheDeclarationsOrder) {
  auto built = TypedChannels::Build({Decl("rooms", {"error", "agent_message"}, true)});
  ASSERT_TRUE(built.ok()) << built.status();
  EXPECT_EQ(built->Find("rooms")->names,
            (std::vector<std::string>{"agent_message", "error", "custom"}));
}

}  // namespace
}  // namespace bridge::core
