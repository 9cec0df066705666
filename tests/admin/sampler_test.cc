// The dashboard's sources without sockets: the hub's busiest-channel tables and the sampler's
// frames (rates over the interval, busiest channels, closes newest first, history points).
#include "admin/sampler.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "core/hub.h"
#include "core/hub_top_channels.h"
#include "ws/close_log.h"

namespace bridge::admin {
namespace {

using namespace std::chrono_literals;

TEST(TopChannelsTest, CountsExactlyWithinCapacityAndKeepsTheHeavyOnesPastIt) {
  core::TopChannels top;
  for (int i = 0; i < 100; ++i) top.Count("circles/hot");
  for (int i = 0; i < 30; ++i) top.Count("circles/warm");
  // Many more distinct cold channels than the table holds, each published once: 330 publishes,
  // so every channel over 330 / 16 is guaranteed a slot (and hot and warm, never the least
  // counted, keep exact counts).
  for (int i = 0; i < 200; ++i) top.Count("circles/cold-" + std::to_string(i));
  std::vector<core::ChannelCount> out;
  top.TakeInto(out);
  ASSERT_EQ(out.size(), core::TopChannels::kCapacity);
  auto find = [&](const std::string& c) -> const core::ChannelCount* {
    for (const auto& e : out) {
      if (e.channel == c) return &e;
    }
    return nullptr;
  };
  ASSERT_NE(find("circles/hot"), nullptr);
  EXPECT_EQ(find("circles/hot")->messages, 100u);
  EXPECT_EQ(find("circles/hot")->error, 0u);
  ASSERT_NE(find("circles/warm"), nullptr);
  EXPECT_EQ(find("circles/warm")->messages, 30u);
  // A new interval starts empty.
  out.clear();
  top.TakeInto(out);
  EXPECT_TRUE(out.empty());
}

class SamplerTest : public ::testing::Test {
 protected:
  SamplerTest()
      : hub_({[](std::function<void()> f) { f(); }}, core::NamespaceRegistry::Defaults(),
             metrics_) {
    hub_.EnableChannelCounts();
  }
  void Publish(const std::string& channel, int n) {
    for (int i = 0; i < n; ++i) {
      gathering::bridge::v1::Event e;
      e.set_channel(channel);
      e.mutable_agent_message()->set_content("x");
      ASSERT_TRUE(hub_.Publish(e).ok());
    }
  }
  core::Metrics metrics_;
  core::Hub hub_;
  ws::CloseLog closes_;
  std::atomic<bool> draining_{false};
};

TEST_F(SamplerTest, RatesCoverTheIntervalAndBusiestChannelsComeMostFirst) {
  Sampler sampler(SamplerSources{&metrics_, &hub_, &closes_, &draining_, "embedded"});
  auto t0 = std::chrono::steady_clock::now();
  auto wall = std::chrono::system_clock::now();
  auto first = boost::json::parse(sampler.Sample(t0, wall));
  EXPECT_EQ(first.at("type"), "sample");
  EXPECT_EQ(first.at("rates").at("published").to_number<double>(), 0);

  Publish("circles/a", 3);
  Publish("workspace/b", 7);
  closes_.Record(4008, "slow consumer", "c-1");
  closes_.Record(1000, "", "c-2");
  auto s = boost::json::parse(sampler.Sample(t0 + 2s, wall + 2s));
  EXPECT_EQ(s.at("status"), "ok");
  EXPECT_EQ(s.at("interval_ms").to_number<int64_t>(), 2000);
  EXPECT_EQ(s.at("totals").at("published").to_number<int64_t>(), 10);
  EXPECT_DOUBLE_EQ(s.at("rates").at("published").to_number<double>(), 5.0);
  const auto& busiest = s.at("busiest").as_array();
  ASSERT_EQ(busiest.size(), 2u);
  EXPECT_EQ(busiest[0].at("channel"), "workspace/b");
  EXPECT_EQ(busiest[0].at("messages").to_number<int64_t>(), 7);
  EXPECT_DOUBLE_EQ(busiest[0].at("rate").to_number<double>(), 3.5);
  EXPECT_EQ(busiest[1].at("channel"), "circles/a");
  const auto& closes = s.at("closes").as_array();
  ASSERT_EQ(closes.size(), 2u);
  EXPECT_EQ(closes[0].at("connection"), "c-2");  // newest first
  EXPECT_EQ(closes[1].at("code").to_number<int64_t>(), 4008);
  EXPECT_EQ(closes[1].at("reason"), "slow consumer");
  EXPECT_EQ(s.at("broker").at("mode"), "embedded");
  ASSERT_EQ(s.at("nodes").as_array().size(), 1u);
  EXPECT_EQ(s.at("nodes").as_array()[0].at("self"), true);

  // The counts were taken: a quiet interval lists nothing.
  auto quiet = boost::json::parse(sampler.Sample(t0 + 3s, wall + 3s));
  EXPECT_TRUE(quiet.at("busiest").as_array().empty());

  auto history = boost::json::parse(sampler.HistoryFrame());
  EXPECT_EQ(history.at("type"), "history");
  EXPECT_EQ(history.at("points").as_array().size(), 3u);

  draining_ = true;
  EXPECT_EQ(boost::json::parse(sampler.Sample(t0 + 4s, wall + 4s)).at("status"), "draining");
}

TEST(CloseLogTest, KeepsTheNewestFiftyOldestFirst) {
  ws::CloseLog log;
  for (int i = 0; i < 120; ++i) log.Record(1000, "r" + std::to_string(i), "c-" + std::to_string(i));
  auto recent = log.Recent();
  ASSERT_EQ(recent.size(), ws::CloseLog::kCapacity);
  EXPECT_EQ(recent.front().reason, "r70");
  EXPECT_EQ(recent.back().reason, "r119");
  EXPECT_EQ(log.total(), 120u);
}

}  // namespace
}  // namespace bridge::admin
