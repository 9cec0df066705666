// The multi-node harness itself, on what the binary does today: a standalone (embedded) node
// delivers a publish, a node can be killed and restarted, a node that cannot start is reported
// with its log, and nothing the fixture started outlives it.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>

#include "cluster.h"

namespace bridge::multinode {
namespace {

namespace pb = gathering::bridge::v1;

TEST(HarnessTest, EmbeddedNodeDeliversAPublish) {
  Cluster cluster;
  absl::Status s = cluster.Start({.nodes = 1, .redis = false});
  ASSERT_TRUE(s.ok()) << s;
  auto ws = cluster.Connect(0, "/ws/workspace/harness?ack=1");
  ASSERT_NE(ws, nullptr);
  auto sub = NextOfType(*ws, "subscribed");
  ASSERT_FALSE(sub.empty()) << "no subscribed frame" << cluster.Diagnostics();

  auto stub = cluster.Stub(0);
  pb::PublishResponse resp;
  grpc::Status st = Publish(*stub, "workspace/harness", 1, "hello", &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  auto ev = NextEvent(*ws);
  ASSERT_FALSE(ev.empty()) << "the event did not arrive" << cluster.Diagnostics();
  EXPECT_EQ(TypeOf(ev), "agent_message");
  EXPECT_EQ(ContentOf(ev), "hello");
  EXPECT_EQ(OffsetOf(ev), resp.offset());
  EXPECT_EQ(resp.offset(), 1u);
  EXPECT_EQ(boost::json::value(sub.at("epoch")), boost::json::value(resp.epoch()));
}

TEST(HarnessTest, NodeCanBeKilledRestartedAndStopped) {
  Cluster cluster;
  absl::Status s = cluster.Start({.nodes = 1, .redis = false});
  ASSERT_TRUE(s.ok()) << s;
  BridgeProcess& node = cluster.node(0);
  const uint16_t old_ws = node.ws_port();
  const pid_t old_pid = node.pid();
  auto ws = cluster.Connect(0, "/ws/workspace/k?ack=1");
  ASSERT_NE(ws, nullptr);
  ASSERT_FALSE(NextOfType(*ws, "subscribed").empty());

  node.Kill9();
  EXPECT_FALSE(node.running());
  EXPECT_EQ(::kill(old_pid, 0), -1) << "the killed node's pid still exists";
  // The client sees its connection end without a close frame.
  EXPECT_TRUE(NextEvent(*ws, 5s).empty());
  EXPECT_TRUE(ws->closed()) << "the socket of a killed node is still open";
  EXPECT_EQ(testing::HttpStatus(old_ws, "/healthz"), 0) << "something still answers on the port";

  s = node.Restart();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(node.running());
  EXPECT_NE(node.pid(), old_pid);
  ws = cluster.Connect(0, "/ws/workspace/k?ack=1");
  ASSERT_NE(ws, nullptr);
  ASSERT_FALSE(NextOfType(*ws, "subscribed").empty());
  auto stub = cluster.Stub(0);
  ASSERT_TRUE(Publish(*stub, "workspace/k", 1, "after restart").ok());
  EXPECT_EQ(ContentOf(NextEvent(*ws)), "after restart");

  // An open client (WebSocket, or even an idle gRPC channel) holds the drain for up to
  // --shutdown_timeout (5 s); drop them first to keep this quick.
  stub.reset();
  ws.reset();
  EXPECT_EQ(node.Stop(), 0) << "SIGTERM should drain and exit 0" << cluster.Diagnostics();
  EXPECT_FALSE(node.running());
  EXPECT_EQ(node.Stop(), -1);
}

TEST(HarnessTest, ANodeThatCannotStartIsReportedWithItsLog) {
  Cluster cluster;
  absl::Status s =
      cluster.Start({.nodes = 1, .redis = false, .extra_flags = {"--no_such_flag_at_all=1"}});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("no_such_flag_at_all"), std::string::npos)
      << "the error should carry the bridge's own complaint: " << s;
  EXPECT_FALSE(cluster.node(0).running());
}

TEST(HarnessTest, NothingOutlivesTheCluster) {
  std::vector<pid_t> pids;
  uint16_t redis_port = 0;
  {
    Cluster cluster;
    absl::Status s = cluster.Start({.nodes = 2, .redis = true});
    ASSERT_TRUE(s.ok()) << s;
    auto pong = cluster.RedisCommand({"PING"});
    ASSERT_TRUE(pong.ok()) << pong.status();
    EXPECT_TRUE(pong->Is("PONG")) << pong->DebugString();
    for (int i = 0; i < cluster.size(); ++i) {
      ASSERT_TRUE(cluster.node(i).running());
      pids.push_back(cluster.node(i).pid());
      auto flags = cluster.node(i).flags();
      EXPECT_NE(std::find(flags.begin(), flags.end(), "--broker=" + cluster.broker_url()),
                flags.end());
    }
    redis_port = cluster.redis().port();
  }
  for (pid_t pid : pids) {
    errno = 0;
    EXPECT_EQ(::kill(pid, 0), -1) << "bridge pid " << pid << " outlived the cluster";
    EXPECT_EQ(errno, ESRCH);
  }
  broker::testing::SyncRedis probe;
  EXPECT_FALSE(probe.Connect(redis_port).ok()) << "redis-server outlived the cluster";
}

TEST(HarnessTest, FlagProbeReadsTheBinarysHelp) {
  auto ws_port = BinaryFlagDefault("ws_port");
  ASSERT_TRUE(ws_port.has_value()) << "`flagfile` parsing found no --ws_port";
  EXPECT_EQ(*ws_port, "8080");
  EXPECT_EQ(BinaryFlagDefault("idle_timeout").value_or("?"), "75s");
  EXPECT_FALSE(BinaryFlagDefault("no_such_flag_at_all").has_value());
}

}  // namespace
}  // namespace bridge::multinode
