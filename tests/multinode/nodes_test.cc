// The node directory and the broker lag histograms, with real bridges (issue #12): three nodes
// on one redis-server list each other on /admin/nodes; a node killed with -9 drops out of the
// others' lists within its ttl (3 announce intervals) plus an interval, one stopped cleanly at
// once; entries in Redis that are not a node's announce are not listed; the broker's publish and
// delivery-lag histograms count a node's own publishes (Redis and memory broker); embedded,
// the list is this node alone and there are no broker histograms.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <set>

#include "absl/strings/str_cat.h"
#include "cluster.h"

namespace bridge::multinode {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kInterval = 300ms;

// node id -> its entry, from node i's /admin/nodes; empty when the request failed.
std::map<std::string, boost::json::object> Nodes(Cluster& c, int i, std::string* raw = nullptr) {
  std::string body;
  std::map<std::string, boost::json::object> out;
  if (c.AdminHttp(i, "/admin/nodes", &body) != 200) return out;
  if (raw != nullptr) *raw = body;
  boost::system::error_code ec;
  auto v = boost::json::parse(body, ec);
  if (ec || !v.is_object() || !v.as_object().contains("nodes")) return out;
  for (const auto& n : v.at("nodes").as_array()) {
    out[std::string(n.at("node").as_string())] = n.as_object();
  }
  return out;
}

std::set<std::string> Names(const std::map<std::string, boost::json::object>& nodes) {
  std::set<std::string> out;
  for (const auto& [name, n] : nodes) out.insert(name);
  return out;
}

std::string Join(const std::set<std::string>& names) {
  std::string out;
  for (const auto& n : names) absl::StrAppend(&out, out.empty() ? "" : ",", n);
  return out;
}

// Waits until node i lists exactly `want`; the time it took, or nullopt on timeout.
std::optional<Clock::duration> AwaitNodes(Cluster& c, int i, const std::set<std::string>& want,
                                          std::string* last, std::chrono::milliseconds timeout) {
  const auto start = Clock::now();
  const bool ok = testing::WaitFor(
      [&] {
        *last = Join(Names(Nodes(c, i)));
        return Names(Nodes(c, i)) == want;
      },
      timeout);
  if (!ok) return std::nullopt;
  return Clock::now() - start;
}

std::vector<std::string> Flags() {
  return {"--admin_port=0",
          absl::StrCat("--broker_node_announce_interval=", kInterval.count(), "ms")};
}

TEST(NodeDirectoryTest, EveryNodeListsEveryLiveNodeAndADeadOneDropsOutInBound) {
  Cluster c;
  ClusterOptions o;
  o.extra_flags = Flags();
  ASSERT_TRUE(c.Start(o).ok());
  const std::set<std::string> all = {"node0", "node1", "node2"};
  for (int i = 0; i < 3; ++i) {
    std::string last;
    ASSERT_TRUE(AwaitNodes(c, i, all, &last, 5s)) << "node" << i << " lists {" << last << "}\n"
                                                  << c.Diagnostics();
  }
  // Each entry is the node's own announce: its addresses, and `self` on its own node only.
  std::string raw;
  auto nodes = Nodes(c, 0, &raw);
  for (int i = 0; i < 3; ++i) {
    const auto& n = nodes[absl::StrCat("node", i)];
    EXPECT_EQ(n.at("ws").as_string(), absl::StrCat("127.0.0.1:", c.node(i).ws_port())) << raw;
    EXPECT_EQ(n.at("grpc").as_string(), absl::StrCat("127.0.0.1:", c.node(i).grpc_port())) << raw;
    EXPECT_EQ(n.at("admin").as_string(), absl::StrCat("127.0.0.1:", c.node(i).admin_port())) << raw;
    EXPECT_EQ(n.at("self").as_bool(), i == 0) << raw;
    EXPECT_TRUE(n.at("broker_up").as_bool()) << raw;
    EXPECT_LE(n.at("last_seen_ms").to_number<int64_t>(), 3 * kInterval.count()) << raw;
    EXPECT_FALSE(n.at("version").as_string().empty()) << raw;
  }

  // Garbage in the directory (anything that can write to Redis could leave it) is not listed.
  ASSERT_TRUE(c.RedisCommand({"HSET", "gb:{#nodes}:info", "evil", "1\n{\"connections\":\"x\"}",
                              "bad\x01id", "1\n{}", "junk", "no newline"})
                  .ok());
  ASSERT_TRUE(c.RedisCommand({"ZADD", "gb:{#nodes}:lease", "99999999999999", "evil",
                              "99999999999999", "bad\x01id", "99999999999999", "junk"})
                  .ok());

  // kill -9: gone within the ttl (3 intervals) plus one interval (the next announce that reads
  // the list), with 500 ms for the scheduler of a loaded 2-core machine.
  const auto killed_at = Clock::now();
  c.node(2).Kill9();
  const auto bound = 4 * kInterval + 500ms;
  for (int i = 0; i < 2; ++i) {
    std::string last;
    auto took = AwaitNodes(c, i, {"node0", "node1"}, &last, 5s);
    ASSERT_TRUE(took) << "node" << i << " still lists {" << last << "}";
    EXPECT_LE(Clock::now() - killed_at, bound)
        << "node" << i << " dropped the killed node after "
        << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - killed_at).count()
        << " ms";
  }
  // SIGTERM: withdrawn at once, so listed no longer than one interval (plus scheduling).
  const auto stopped_at = Clock::now();
  EXPECT_EQ(c.node(1).Stop(), 0);
  std::string last;
  ASSERT_TRUE(AwaitNodes(c, 0, {"node0"}, &last, 5s)) << "node0 lists {" << last << "}";
  EXPECT_LE(Clock::now() - stopped_at, c.node(1).running() ? 0ms : kInterval + 2s)
      << "the stop itself took a while; the withdraw is at its end";
  // Redis holds exactly what the live node announced, plus the foreign entries it skipped.
  auto lease = c.RedisCommand({"ZRANGE", "gb:{#nodes}:lease", "0", "-1"});
  ASSERT_TRUE(lease.ok());
  std::set<std::string> in_redis;
  for (const auto& e : lease->elements) in_redis.insert(e.str);
  EXPECT_EQ(in_redis, (std::set<std::string>{"node0", "evil", "bad\x01id", "junk"}));
}

double Count(Cluster& c, int i, const std::string& family) {
  return c.Metric(i, family + "_count").value_or(-1);
}

// Subscribes a client to `channel` on node `sub`, publishes `n` events through node `pub`, and
// waits for the client to receive them.
void PublishSubscribed(Cluster& c, int sub, int pub, const std::string& channel, int n) {
  std::string error;
  auto ws = c.Connect(sub, "/ws/" + channel + "?ack=1", &error);
  ASSERT_NE(ws, nullptr) << error;
  ASSERT_FALSE(NextOfType(*ws, "subscribed").empty());
  auto stub = c.Stub(pub);
  for (int k = 0; k < n; ++k) {
    ASSERT_TRUE(Publish(*stub, channel, 1, absl::StrCat("m", k)).ok());
  }
  Received r = CollectEvents(*ws, n, 10s);
  ASSERT_EQ(r.events.size(), static_cast<size_t>(n)) << r.Summary();
}

TEST(BrokerLagTest, RedisHistogramsCountTheNodesOwnPublishes) {
  Cluster c;
  ClusterOptions o;
  o.nodes = 2;
  o.extra_flags = Flags();
  ASSERT_TRUE(c.Start(o).ok());
  constexpr int kN = 25;
  // node0 publishes to a channel it has a subscriber of: every publish is timed twice.
  ASSERT_NO_FATAL_FAILURE(PublishSubscribed(c, 0, 0, "workspace/lag", kN));
  // node1 has a subscriber too, but the publishes are not its own: no lag observed there.
  std::string error;
  EXPECT_TRUE(
      testing::WaitFor([&] { return Count(c, 0, "bridge_broker_delivery_lag_seconds") == kN; }, 5s))
      << Count(c, 0, "bridge_broker_delivery_lag_seconds");
  EXPECT_EQ(Count(c, 0, "bridge_broker_publish_seconds"), kN);
  EXPECT_EQ(Count(c, 1, "bridge_broker_publish_seconds"), 0);
  EXPECT_EQ(Count(c, 1, "bridge_broker_delivery_lag_seconds"), 0);
  // node1 publishes to a channel subscribed on node0 only: its round trips count, no lag (its
  // frames never come back to it).
  ASSERT_NO_FATAL_FAILURE(PublishSubscribed(c, 0, 1, "workspace/lag2", kN));
  EXPECT_EQ(Count(c, 1, "bridge_broker_publish_seconds"), kN);
  EXPECT_EQ(Count(c, 1, "bridge_broker_delivery_lag_seconds"), 0);
  EXPECT_EQ(Count(c, 0, "bridge_broker_delivery_lag_seconds"), kN);
  // The +Inf bucket holds them all, and the sum is a plausible loopback time (< 1 s each).
  EXPECT_EQ(c.Metric(0, "bridge_broker_publish_seconds_bucket{le=\"+Inf\"}").value_or(-1), kN);
  const double sum = c.Metric(0, "bridge_broker_delivery_lag_seconds_sum").value_or(-1);
  EXPECT_GT(sum, 0);
  EXPECT_LT(sum, kN * 1.0);
  std::cout << "loopback redis, " << kN << " own publishes: mean publish round trip "
            << c.Metric(0, "bridge_broker_publish_seconds_sum").value_or(0) / kN * 1e3
            << " ms, mean delivery lag " << sum / kN * 1e3 << " ms\n";
}

TEST(BrokerLagTest, MemoryBrokerHistogramsAndASingleNodeList) {
  Cluster c;
  ClusterOptions o;
  o.nodes = 1;
  o.redis = false;
  o.extra_flags = Flags();
  o.extra_flags.push_back("--broker=memory");
  o.extra_flags.push_back("--node_id=solo");
  ASSERT_TRUE(c.Start(o).ok());
  constexpr int kN = 10;
  ASSERT_NO_FATAL_FAILURE(PublishSubscribed(c, 0, 0, "workspace/mem", kN));
  EXPECT_EQ(Count(c, 0, "bridge_broker_publish_seconds"), kN);
  EXPECT_EQ(Count(c, 0, "bridge_broker_delivery_lag_seconds"), kN);
  std::string last;
  EXPECT_TRUE(AwaitNodes(c, 0, {"solo"}, &last, 5s)) << last;
  EXPECT_TRUE(Nodes(c, 0)["solo"].at("self").as_bool());
}

TEST(NodeDirectoryTest, EmbeddedListsThisNodeAloneAndHasNoBrokerHistograms) {
  Cluster c;
  ClusterOptions o;
  o.nodes = 1;
  o.redis = false;
  o.extra_flags = {"--admin_port=0"};
  ASSERT_TRUE(c.Start(o).ok());
  std::string raw;
  auto nodes = Nodes(c, 0, &raw);
  ASSERT_EQ(nodes.size(), 1u) << raw;
  EXPECT_TRUE(nodes.begin()->second.at("self").as_bool()) << raw;
  EXPECT_NE(raw.find(R"("mode":"embedded")"), std::string::npos) << raw;
  EXPECT_FALSE(c.Metric(0, "bridge_broker_publish_seconds_count").has_value());
}

}  // namespace
}  // namespace bridge::multinode
