// One contract suite for every core::Broker: the in-process MemoryBroker and the RedisBroker
// against a real redis-server started per test. Everything is driven from the test thread (the
// Redis brokers' io_context runs there, inside RunUntil), and every wait is bounded.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "broker/memory_broker.h"
#include "core/broker.h"
#include "redis_server.h"

namespace bridge::broker {
namespace {

using core::Broker;
using core::BrokerHistory;
using core::BrokerMessage;
using core::BrokerState;
using core::HistoryPolicy;
using core::StreamPosition;
using ms = std::chrono::milliseconds;

// What a node's handler saw. Locked: MemoryBroker delivers on the publishing thread.
struct Recorder {
  std::mutex mu;
  std::vector<BrokerMessage> messages;
  std::vector<BrokerState> states;

  core::BrokerHandler Handler() {
    return core::BrokerHandler{[this](BrokerMessage m) {
                                 std::lock_guard lock(mu);
                                 messages.push_back(std::move(m));
                               },
                               [this](BrokerState s, const absl::Status&) {
                                 std::lock_guard lock(mu);
                                 states.push_back(s);
                               }};
  }
  std::vector<BrokerMessage> Of(const std::string& channel) {
    std::lock_guard lock(mu);
    std::vector<BrokerMessage> out;
    for (const auto& m : messages) {
      if (m.channel == channel) out.push_back(m);
    }
    return out;
  }
  size_t Count(const std::string& channel) { return Of(channel).size(); }
  size_t StateCount(BrokerState s) {
    std::lock_guard lock(mu);
    return static_cast<size_t>(std::count(states.begin(), states.end(), s));
  }
};

// One implementation with its surroundings (a Redis server, an io_context).
class Env {
 public:
  virtual ~Env() = default;
  virtual absl::Status Start() = 0;
  virtual int node_count() const = 0;
  virtual Broker& node(int i) = 0;
  virtual Recorder& recorder(int i) = 0;
  // Makes the channel's state vanish as an expiry would (Redis: only the meta key goes, so a
  // stale stream stays behind).
  virtual void ForgetChannel(const std::string& channel) = 0;
  // Redis only: the server, for kill -9 and restart; nullptr otherwise.
  virtual testing::RedisServer* server() { return nullptr; }
  virtual void Stop() {}

  boost::asio::io_context io;
};

class MemoryEnv : public Env {
 public:
  absl::Status Start() override {
    broker_.SetHandler(recorder_.Handler());
    return absl::OkStatus();
  }
  int node_count() const override { return 1; }
  Broker& node(int) override { return broker_; }
  Recorder& recorder(int) override { return recorder_; }
  void ForgetChannel(const std::string& channel) override { broker_.Forget(channel); }

 private:
  Recorder recorder_;
  MemoryBroker broker_;
};

std::unique_ptr<Env> MakeRedisEnv();  // below, with the Redis broker

std::unique_ptr<Env> MakeEnv(const std::string& kind) {
  if (kind == "redis") return MakeRedisEnv();
  return std::make_unique<MemoryEnv>();
}

std::string Head(const std::string& channel) {
  return R"({"type":"event","channel":")" + channel + R"(","offset":)";
}
std::string Tail(int n) { return R"(,"data":)" + std::to_string(n) + "}"; }
std::string Text(const std::string& channel, uint64_t offset, int n) {
  return Head(channel) + std::to_string(offset) + Tail(n);
}

const HistoryPolicy kKeep10{10, std::chrono::seconds(0), 0};

class BrokerContractTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    env_ = MakeEnv(GetParam());
    ASSERT_TRUE(env_ != nullptr);
    absl::Status s = env_->Start();
    ASSERT_TRUE(s.ok()) << s;
  }
  void TearDown() override {
    if (env_) env_->Stop();
  }

  Broker& node(int i = 0) { return env_->node(i); }
  Recorder& rec(int i = 0) { return env_->recorder(i); }

  bool RunUntil(const std::function<bool()>& done, ms timeout = ms(5000)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      if (env_->io.stopped()) env_->io.restart();
      env_->io.run_one_for(ms(10));
    }
    return true;
  }

  absl::StatusOr<StreamPosition> Publish(const std::string& channel, int n,
                                         const HistoryPolicy& policy = kKeep10, int at = 0) {
    std::optional<absl::StatusOr<StreamPosition>> result;
    node(at).Publish(channel, Head(channel), Tail(n), policy, "test",
                     [&](absl::StatusOr<StreamPosition> r) { result = std::move(r); });
    if (!RunUntil([&] { return result.has_value(); })) {
      return absl::DeadlineExceededError("test: no publish callback within the bounded wait");
    }
    return *result;
  }

  absl::StatusOr<BrokerHistory> History(const std::string& channel, uint64_t since,
                                        size_t limit = 0, int at = 0) {
    std::optional<absl::StatusOr<BrokerHistory>> result;
    node(at).History(channel, since, limit,
                     [&](absl::StatusOr<BrokerHistory> r) { result = std::move(r); });
    if (!RunUntil([&] { return result.has_value(); })) {
      return absl::DeadlineExceededError("test: no history callback within the bounded wait");
    }
    return *result;
  }

  absl::Status Subscribe(const std::string& channel, int at = 0) {
    std::optional<absl::Status> result;
    node(at).Subscribe(channel, [&](absl::Status s) { result = std::move(s); });
    if (!RunUntil([&] { return result.has_value(); })) {
      return absl::DeadlineExceededError("test: no subscribe callback within the bounded wait");
    }
    return *result;
  }

  static std::vector<uint64_t> Offsets(const std::vector<BrokerMessage>& ms) {
    std::vector<uint64_t> out;
    for (const auto& m : ms) out.push_back(m.offset);
    return out;
  }
  static std::vector<uint64_t> Offsets(const BrokerHistory& h) {
    std::vector<uint64_t> out;
    for (const auto& f : h.frames) out.push_back(f.offset);
    return out;
  }
  static std::vector<uint64_t> Range(uint64_t from, uint64_t to) {
    std::vector<uint64_t> out;
    for (uint64_t i = from; i <= to; ++i) out.push_back(i);
    return out;
  }

  std::unique_ptr<Env> env_;
};

TEST_P(BrokerContractTest, OffsetsAreConsecutiveFromOneWithOneEpoch) {
  std::string epoch;
  for (uint64_t i = 1; i <= 5; ++i) {
    auto p = Publish("c/a", static_cast<int>(i));
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->offset, i);
    EXPECT_FALSE(p->epoch.empty());
    if (i == 1) epoch = p->epoch;
    EXPECT_EQ(p->epoch, epoch) << "the epoch is stable across publishes";
  }
}

TEST_P(BrokerContractTest, ChannelsAreIndependent) {
  for (int i = 1; i <= 3; ++i) {
    auto a = Publish("c/a", i);
    auto b = Publish("c/b", i);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->offset, static_cast<uint64_t>(i));
    EXPECT_EQ(b->offset, static_cast<uint64_t>(i));
    EXPECT_NE(a->epoch, b->epoch) << "an epoch per channel";
  }
  auto h = History("c/b", 0);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(Offsets(*h), Range(1, 3));
  EXPECT_EQ(h->frames[2].text, Text("c/b", 3, 3));
}

TEST_P(BrokerContractTest, HistoryIsBoundedBySizeAndSaysWhenComplete) {
  const HistoryPolicy keep3{3, std::chrono::seconds(0), 0};
  std::string epoch;
  for (int i = 1; i <= 5; ++i) {
    auto p = Publish("c/a", i, keep3);
    ASSERT_TRUE(p.ok());
    epoch = p->epoch;
  }
  auto all = History("c/a", 0);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(Offsets(*all), Range(3, 5));
  EXPECT_EQ(all->frames.front().text, Text("c/a", 3, 3));
  EXPECT_EQ(all->top, (StreamPosition{5, epoch}));
  EXPECT_FALSE(all->complete) << "1 and 2 are gone";
  auto from1 = History("c/a", 1);
  ASSERT_TRUE(from1.ok());
  EXPECT_FALSE(from1->complete) << "2 is gone";
  auto from2 = History("c/a", 2);
  ASSERT_TRUE(from2.ok());
  EXPECT_EQ(Offsets(*from2), Range(3, 5));
  EXPECT_TRUE(from2->complete);
  auto at_top = History("c/a", 5);
  ASSERT_TRUE(at_top.ok());
  EXPECT_TRUE(at_top->frames.empty());
  EXPECT_TRUE(at_top->complete);
  auto past_top = History("c/a", 9);
  ASSERT_TRUE(past_top.ok());
  EXPECT_TRUE(past_top->complete);
  EXPECT_EQ(past_top->top.offset, 5u);
}

TEST_P(BrokerContractTest, HistoryIsBoundedByBytes) {
  const size_t frame = Text("c/a", 1, 1).size();  // offsets 1..9 and data 1..9: same size
  const HistoryPolicy two_frames{100, std::chrono::seconds(0), 2 * frame + frame / 2};
  for (int i = 1; i <= 6; ++i) ASSERT_TRUE(Publish("c/a", i, two_frames).ok());
  auto h = History("c/a", 0);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(Offsets(*h), Range(5, 6));
  EXPECT_FALSE(h->complete);
  EXPECT_EQ(h->top.offset, 6u);
}

TEST_P(BrokerContractTest, HistoryLimitCutsTheRangeAndMakesItIncomplete) {
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(Publish("c/a", i).ok());
  auto two = History("c/a", 0, 2);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(Offsets(*two), Range(1, 2));
  EXPECT_FALSE(two->complete);
  EXPECT_EQ(two->top.offset, 5u);
  auto exact = History("c/a", 1, 4);
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(Offsets(*exact), Range(2, 5));
  EXPECT_TRUE(exact->complete);
}

TEST_P(BrokerContractTest, UnknownChannelHasNoStateAndReadingCreatesNone) {
  auto h = History("c/none", 0);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->top, StreamPosition{});
  EXPECT_TRUE(h->frames.empty());
  EXPECT_TRUE(h->complete);
  auto later = History("c/none", 3);
  ASSERT_TRUE(later.ok());
  EXPECT_FALSE(later->complete);
  auto p = Publish("c/none", 1);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->offset, 1u);
}

TEST_P(BrokerContractTest, SizeZeroKeepsNoHistoryButAssignsOffsets) {
  const HistoryPolicy none{0, std::chrono::seconds(0), 0};
  ASSERT_TRUE(Publish("c/a", 1, none).ok());
  auto p = Publish("c/a", 2, none);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->offset, 2u);
  auto h = History("c/a", 0);
  ASSERT_TRUE(h.ok());
  EXPECT_TRUE(h->frames.empty());
  EXPECT_EQ(h->top, *p);
  EXPECT_FALSE(h->complete);
}

TEST_P(BrokerContractTest, EpochIsNewOnceTheStateIsGoneAndOldHistoryIsNotServed) {
  std::string old_epoch;
  for (int i = 1; i <= 3; ++i) {
    auto p = Publish("c/a", i);
    ASSERT_TRUE(p.ok());
    old_epoch = p->epoch;
  }
  env_->ForgetChannel("c/a");
  auto gone = History("c/a", 0);
  ASSERT_TRUE(gone.ok()) << gone.status();
  EXPECT_EQ(gone->top, StreamPosition{}) << "no state, whatever stream survived";
  EXPECT_TRUE(gone->frames.empty());
  auto p = Publish("c/a", 9);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->offset, 1u);
  EXPECT_NE(p->epoch, old_epoch);
  auto h = History("c/a", 0);
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(Offsets(*h), Range(1, 1)) << "the stale frames are not served";
  EXPECT_EQ(h->frames[0].text, Text("c/a", 1, 9));
  EXPECT_EQ(h->top, *p);
  EXPECT_TRUE(h->complete);
}

TEST_P(BrokerContractTest, DeliversSubscribedChannelsInOrderExactlyOnce) {
  ASSERT_TRUE(Subscribe("c/a").ok());
  ASSERT_TRUE(Subscribe("c/a").ok()) << "idempotent: still one delivery per frame";
  std::string epoch;
  // Queued back to back (pipelined on Redis), then waited for together.
  int done = 0;
  for (int i = 1; i <= 50; ++i) {
    node().Publish("c/a", Head("c/a"), Tail(i), kKeep10, "test",
                   [&](absl::StatusOr<StreamPosition> p) {
                     EXPECT_TRUE(p.ok()) << p.status();
                     if (p.ok()) epoch = p->epoch;
                     ++done;
                   });
    node().Publish("c/other", Head("c/other"), Tail(i), kKeep10, "test",
                   [&](absl::StatusOr<StreamPosition>) { ++done; });
  }
  ASSERT_TRUE(RunUntil([&] { return done == 100 && rec().Count("c/a") >= 50; }));
  auto got = rec().Of("c/a");
  EXPECT_EQ(Offsets(got), Range(1, 50));
  EXPECT_EQ(got[6].text, Text("c/a", 7, 7));
  EXPECT_EQ(got[6].epoch, epoch);
  EXPECT_EQ(rec().Count("c/other"), 0u) << "not subscribed";
}

TEST_P(BrokerContractTest, UnsubscribedChannelGetsNothing) {
  ASSERT_TRUE(Subscribe("c/a").ok());
  ASSERT_TRUE(Subscribe("c/marker").ok());
  ASSERT_TRUE(Publish("c/a", 1).ok());
  ASSERT_TRUE(RunUntil([&] { return rec().Count("c/a") == 1; }));
  node().Unsubscribe("c/a");
  ASSERT_TRUE(Publish("c/a", 2).ok());
  ASSERT_TRUE(Publish("c/marker", 1).ok());
  // The marker was published after c/a's second frame: once it is here, that frame would be too.
  ASSERT_TRUE(RunUntil([&] { return rec().Count("c/marker") == 1; }));
  EXPECT_EQ(rec().Count("c/a"), 1u);
}

TEST_P(BrokerContractTest, SubscribeThenHistoryMergesWithoutGapOrDuplicate) {
  for (int i = 1; i <= 4; ++i) ASSERT_TRUE(Publish("c/a", i).ok());
  ASSERT_TRUE(Subscribe("c/a").ok());
  for (int i = 5; i <= 7; ++i) ASSERT_TRUE(Publish("c/a", i).ok());
  auto h = History("c/a", 2);
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(RunUntil([&] { return rec().Count("c/a") == 3; }));
  std::map<uint64_t, std::string> merged;
  for (const auto& f : h->frames) merged.emplace(f.offset, f.text);
  for (const auto& m : rec().Of("c/a")) merged.emplace(m.offset, m.text);
  std::vector<uint64_t> offsets;
  for (const auto& [o, t] : merged) offsets.push_back(o);
  EXPECT_EQ(offsets, Range(3, 7));
  EXPECT_EQ(Offsets(rec().Of("c/a")), Range(5, 7));
}

TEST_P(BrokerContractTest, ReportsUpAndHealthy) {
  ASSERT_TRUE(RunUntil([&] { return rec().StateCount(BrokerState::kUp) >= 1; }));
  EXPECT_EQ(rec().StateCount(BrokerState::kDown), 0u);
  EXPECT_TRUE(node().Health().ok()) << node().Health().detail;
  ASSERT_TRUE(Publish("c/a", 1).ok());
  EXPECT_EQ(node().stats().published.load(), 1u);
}

TEST_P(BrokerContractTest, ConcurrentPublishersOnOneChannelAllSeeOneOrder) {
  // Memory: two threads. Redis: both nodes, pipelined. Every subscribed node sees 1..N in order.
  constexpr int kPerPublisher = 200;
  const int nodes = env_->node_count();
  for (int n = 0; n < nodes; ++n) ASSERT_TRUE(Subscribe("c/a", n).ok());
  std::atomic<int> ok{0};
  auto publish_all = [&](int at) {
    for (int i = 1; i <= kPerPublisher; ++i) {
      node(at).Publish("c/a", Head("c/a"), Tail(i), kKeep10, "test",
                       [&](absl::StatusOr<StreamPosition> p) {
                         if (p.ok()) ok.fetch_add(1);
                       });
    }
  };
  if (nodes == 1) {
    std::thread other([&] { publish_all(0); });
    publish_all(0);
    other.join();
  } else {
    publish_all(0);
    publish_all(1);
  }
  const size_t total = 2 * kPerPublisher;
  ASSERT_TRUE(RunUntil([&] {
    if (ok.load() != static_cast<int>(total)) return false;
    for (int n = 0; n < nodes; ++n) {
      if (rec(n).Count("c/a") < total) return false;
    }
    return true;
  })) << ok.load();
  for (int n = 0; n < nodes; ++n) {
    EXPECT_EQ(Offsets(rec(n).Of("c/a")), Range(1, total)) << "node " << n;
  }
  if (nodes > 1) {
    auto a = rec(0).Of("c/a");
    auto b = rec(1).Of("c/a");
    for (size_t i = 0; i < total; ++i) ASSERT_EQ(a[i].text, b[i].text);
  }
}

INSTANTIATE_TEST_SUITE_P(Brokers, BrokerContractTest, ::testing::Values("memory"),
                         [](const auto& info) { return info.param; });

std::unique_ptr<Env> MakeRedisEnv() { return nullptr; }

}  // namespace
}  // namespace bridge::broker
