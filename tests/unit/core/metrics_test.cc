#include "core/metrics.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "core/histogram.h"

namespace bridge::core {
namespace {

TEST(ShardedHistogramTest, BucketsAreInclusiveUpperBoundsAndShardsAreSummed) {
  ShardedHistogram h(2, 3);
  h.Observe(0, 1, 50'000);          // exactly the first bound: first bucket
  h.Observe(1, 1, 50'001);          // just above: second
  h.Observe(1, 1, -5);              // negative: zero, first bucket
  h.Observe(0, 1, 20'000'000'000);  // past the last bound: +Inf
  h.Observe(5, 1, 1);               // no such shard: ignored
  h.Observe(0, 9, 1);               // no such series: ignored
  auto t = h.Sum(1);
  EXPECT_EQ(t.count, 4u);
  EXPECT_EQ(t.buckets[0], 2u);
  EXPECT_EQ(t.buckets[1], 1u);
  EXPECT_EQ(t.buckets[ShardedHistogram::kBuckets - 1], 1u);
  EXPECT_EQ(t.sum_nanos, 50'000 + 50'001 + 20'000'000'000);
  EXPECT_EQ(h.Sum(0).count, 0u);
}

TEST(ShardedHistogramTest, OneWriterPerShardLosesNothing) {
  ShardedHistogram h(4, 1);
  std::vector<std::thread> writers;
  for (size_t s = 0; s < 4; ++s) {
    writers.emplace_back([&h, s] {
      for (int i = 0; i < 100000; ++i) h.Observe(s, 0, i);
    });
  }
  // A reader meanwhile sees monotonic counts.
  uint64_t last = 0;
  for (int i = 0; i < 100; ++i) {
    uint64_t c = h.Sum(0).count;
    EXPECT_GE(c, last);
    last = c;
  }
  for (auto& t : writers) t.join();
  EXPECT_EQ(h.Sum(0).count, 400000u);
}

TEST(MetricsRenderTest, FamiliesHaveHelpTypeAndEscapedLabels) {
  MetricFamilies f;
  f.push_back({"bridge_x_total", "counter", "An x.", {{"", {{"reason", "a\"b\\c\nd"}}, 3}}});
  f.push_back({"bridge_y", "gauge", "A y.", {{"", {}, 1.5}}});
  std::string text = RenderPrometheus(f);
  EXPECT_EQ(text,
            "# HELP bridge_x_total An x.\n# TYPE bridge_x_total counter\n"
            "bridge_x_total{reason=\"a\\\"b\\\\c\\nd\"} 3\n"
            "# HELP bridge_y A y.\n# TYPE bridge_y gauge\nbridge_y 1.5\n");
  auto snap = Snapshot(f);
  EXPECT_EQ(snap.at("bridge_y"), 1.5);
}

TEST(MetricsRenderTest, LabelledCountersAreBoundedAndNamed) {
  Metrics m;
  m.CountClose(1000);
  m.CountClose(4008);
  m.CountClose(3000);  // outside the cells: "other"
  m.CountClose(65535);
  m.CountPublish(0);
  m.CountPublish(99);  // not a gRPC code: ignored
  m.CountRpc(RpcMethodFromPath("/gathering.bridge.v1.EventService/History"), 5);
  m.CountRpc(RpcMethodFromPath("/made.up/Method"), 0);
  m.CountAuthFailure(ClassifyAuthFailure("token expired"));
  m.CountAuthFailure(AuthFailure::kForbidden);
  m.CountLimit(Limit::kQueueBytes);
  MetricFamilies f;
  m.Collect(f);
  auto s = Snapshot(f);
  EXPECT_EQ(s.at("bridge_connections_closed_total{code=\"1000\"}"), 1);
  EXPECT_EQ(s.at("bridge_connections_closed_total{code=\"4008\"}"), 1);
  EXPECT_EQ(s.at("bridge_connections_closed_total{code=\"other\"}"), 2);
  EXPECT_EQ(s.at("bridge_connections_closed_total{code=\"1006\"}"), 0);
  EXPECT_EQ(s.at("bridge_publishes_total{code=\"OK\"}"), 1);
  EXPECT_EQ(s.at("bridge_grpc_calls_total{method=\"History\",code=\"NOT_FOUND\"}"), 1);
  EXPECT_EQ(s.at("bridge_grpc_calls_total{method=\"other\",code=\"OK\"}"), 1);
  EXPECT_EQ(s.at("bridge_auth_refusals_total{reason=\"expired\"}"), 1);
  EXPECT_EQ(s.at("bridge_auth_refusals_total{reason=\"forbidden\"}"), 1);
  EXPECT_EQ(s.at("bridge_auth_failures_total"), 1);
  EXPECT_EQ(s.at("bridge_auth_forbidden_total"), 1);
  EXPECT_EQ(s.at("bridge_limit_hits_total{limit=\"max_queue_bytes\"}"), 1);
  EXPECT_EQ(s.at("bridge_limit_hits_total{limit=\"max_channels\"}"), 0);
}

}  // namespace
}  // namespace bridge::core
