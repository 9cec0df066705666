// What a node reads from the broker's node directory is input: ParseAnnounce takes only what
// EncodeAnnounce writes (known fields, the right types, bounded clean strings).
#include "admin/node_info.h"

#include <gtest/gtest.h>

namespace bridge::admin {
namespace {

TEST(NodeInfoTest, AnAnnounceReadsBackAsWritten) {
  NodeInfo n;
  n.node = "node-1";
  n.ws = "127.0.0.1:8080";
  n.grpc = "127.0.0.1:50051";
  n.connections = 12;
  n.channels = 3;
  n.published = 4.5;
  n.broker_up = true;
  n.uptime_s = 60;
  n.version = "0.1.0";
  auto back = ParseAnnounce("node-1", EncodeAnnounce(n));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->ws, n.ws);
  EXPECT_EQ(back->grpc, n.grpc);
  EXPECT_EQ(back->connections, 12);
  EXPECT_EQ(back->channels, 3);
  EXPECT_DOUBLE_EQ(back->published, 4.5);
  EXPECT_TRUE(back->broker_up);
  EXPECT_EQ(back->version, "0.1.0");
  EXPECT_FALSE(back->self);
}

TEST(NodeInfoTest, WhatIsNotAnAnnounceIsRefused) {
  EXPECT_FALSE(ParseAnnounce("n", "not json"));
  EXPECT_FALSE(ParseAnnounce("n", "[1,2]"));
  EXPECT_FALSE(ParseAnnounce("n", R"({"connections":"12"})"));
  EXPECT_FALSE(ParseAnnounce("n", R"({"connections":-1})"));
  EXPECT_FALSE(ParseAnnounce("n", R"({"published":-0.5})"));
  EXPECT_FALSE(ParseAnnounce("n", R"({"broker_up":1})"));
  EXPECT_FALSE(ParseAnnounce("n", R"({"ws":"a\nb"})"));
  EXPECT_FALSE(ParseAnnounce("n", "{\"version\":\"\xff\"}"));
  EXPECT_FALSE(ParseAnnounce("n", R"({"version":")" + std::string(kMaxNodeField + 1, 'v') + "\"}"));
  EXPECT_FALSE(ParseAnnounce("", "{}"));
  EXPECT_FALSE(ParseAnnounce("bad\x01id", "{}"));
  // Fields a newer node adds are ignored, not refused.
  EXPECT_TRUE(ParseAnnounce("n", R"({"connections":1,"future":{"x":1}})"));
}

TEST(NodeInfoTest, TheListQuotesWhatItPrints) {
  NodeInfo n;
  n.node = "a\"b";
  n.self = true;
  const std::string json = NodesJson({n});
  EXPECT_NE(json.find(R"("node":"a\"b","self":true,"last_seen_ms":0,"ws":"")"), std::string::npos)
      << json;
}

}  // namespace
}  // namespace bridge::admin
