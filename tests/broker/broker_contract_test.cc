// One contract suite for every core::Broker: the in-process MemoryBroker and the RedisBroker
// against a real redis-server started per test. Everything is driven from the test thread (the
// Redis brokers' io_context runs there, inside RunUntil), and every wait is bounded.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "broker/memory_broker.h"
#include "broker/redis_broker.h"
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
  std::vector<std::pair<std::string, std::string>> backend;  // (origin, payload)

  core::BrokerHandler Handler() {
    return core::BrokerHandler{[this](BrokerMessage m) {
                                 std::lock_guard lock(mu);
                                 messages.push_back(std::move(m));
                               },
                               [this](BrokerState s, const absl::Status&) {
                                 std::lock_guard lock(mu);
                                 states.push_back(s);
                               },
                               [this](std::string origin, std::string payload) {
                                 std::lock_guard lock(mu);
                                 backend.emplace_back(std::move(origin), std::move(payload));
                               }};
  }
  size_t BackendCount() {
    std::lock_guard lock(mu);
    return backend.size();
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

  absl::StatusOr<BrokerHistory> Open(const std::string& channel, uint64_t since, int at = 0) {
    std::optional<absl::StatusOr<BrokerHistory>> result;
    node(at).Open(channel, since, 0,
                  [&](absl::StatusOr<BrokerHistory> r) { result = std::move(r); });
    if (!RunUntil([&] { return result.has_value(); })) {
      return absl::DeadlineExceededError("test: no open callback within the bounded wait");
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

TEST_P(BrokerContractTest, OpenCreatesTheEpochTheNextPublishUses) {
  auto o = Open("c/new", std::numeric_limits<uint64_t>::max());
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_FALSE(o->top.epoch.empty());
  EXPECT_EQ(o->top.offset, 0u);
  auto again = Open("c/new", 0);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->top, o->top) << "an existing state is only read";
  auto p = Publish("c/new", 1);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->offset, 1u);
  EXPECT_EQ(p->epoch, o->top.epoch);
  auto h = Open("c/new", 0);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(Offsets(*h), Range(1, 1));
  EXPECT_TRUE(h->complete);
}

TEST_P(BrokerContractTest, RotateEpochChangesOnlyTheExpectedEpochAndKeepsTheOffset) {
  auto rotate = [&](const std::string& from) {
    std::optional<absl::StatusOr<StreamPosition>> result;
    node().RotateEpoch("c/r", from,
                       [&](absl::StatusOr<StreamPosition> r) { result = std::move(r); });
    EXPECT_TRUE(RunUntil([&] { return result.has_value(); })) << "no rotate callback";
    return result.value_or(absl::DeadlineExceededError("no callback"));
  };
  auto none = rotate("x");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, StreamPosition{}) << "no state, nothing to rotate";
  StreamPosition last;
  for (int i = 1; i <= 3; ++i) last = *Publish("c/r", i);
  auto same = rotate("not-the-epoch");
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(*same, last) << "another epoch is left alone";
  auto rotated = rotate(last.epoch);
  ASSERT_TRUE(rotated.ok());
  EXPECT_NE(rotated->epoch, last.epoch);
  EXPECT_EQ(rotated->offset, 3u);
  auto next = Publish("c/r", 4);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, (StreamPosition{4, rotated->epoch}));
}

TEST_P(BrokerContractTest, DeliveriesCarryTheirOrigin) {
  ASSERT_TRUE(Subscribe("c/o").ok());
  std::optional<absl::StatusOr<StreamPosition>> result;
  node().Publish("c/o", Head("c/o"), Tail(1), kKeep10, "node-a/42",
                 [&](absl::StatusOr<StreamPosition> r) { result = std::move(r); });
  ASSERT_TRUE(RunUntil([&] { return result.has_value() && rec().Count("c/o") == 1; }));
  EXPECT_EQ(rec().Of("c/o")[0].origin, "node-a/42");
}

TEST_P(BrokerContractTest, BackendMessagesReachNodesWithAnInterestOnly) {
  node().PublishBackendMessage("n1", "dropped: nobody listens");
  // A publish queued behind it (same strand and Redis connection) has completed, so the message
  // above was handled before the interest below exists.
  ASSERT_TRUE(Publish("c/fence", 1).ok());
  node().SetBackendInterest(true);
  // The interest is asynchronous on Redis: publish until one arrives.
  ASSERT_TRUE(RunUntil([&] {
    if (rec().BackendCount() > 0) return true;
    node().PublishBackendMessage("n1", std::string("pay\0load:1", 10));
    return false;
  }));
  std::lock_guard lock(rec().mu);
  EXPECT_EQ(rec().backend.front().first, "n1");
  EXPECT_EQ(rec().backend.front().second, std::string("pay\0load:1", 10)) << "binary-safe";
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

INSTANTIATE_TEST_SUITE_P(Brokers, BrokerContractTest, ::testing::Values("memory", "redis"),
                         [](const auto& info) { return info.param; });

// Two RedisBrokers ("nodes") on one redis-server, both on the test thread's io_context.
class RedisEnv : public Env {
 public:
  absl::Status Start() override {
    if (absl::Status s = server_.Start(); !s.ok()) return s;
    for (int i = 0; i < 2; ++i) {
      auto b = RedisBroker::Create(io.get_executor(), Options(i));
      if (!b.ok()) return b.status();
      brokers_.push_back(*b);
      brokers_.back()->SetHandler(recorders_[i].Handler());
      brokers_.back()->Start();
    }
    // Both up (bounded), so every test starts from a working pair.
    const auto deadline = std::chrono::steady_clock::now() + ms(5000);
    while (recorders_[0].StateCount(BrokerState::kUp) == 0 ||
           recorders_[1].StateCount(BrokerState::kUp) == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        return absl::DeadlineExceededError("brokers never came up");
      }
      if (io.stopped()) io.restart();
      io.run_one_for(ms(10));
    }
    return absl::OkStatus();
  }
  RedisBrokerOptions Options(int i) {
    RedisBrokerOptions o;
    auto url = ParseRedisUrl(server_.Url());
    if (url.ok()) o.connection.url = *url;
    o.connection.reconnect_min = ms(20);
    o.connection.reconnect_max = ms(200);
    o.node_id = "node" + std::to_string(i);
    return o;
  }
  int node_count() const override { return 2; }
  Broker& node(int i) override { return *brokers_[i]; }
  Recorder& recorder(int i) override { return recorders_[i]; }
  RedisBroker& redis(int i) { return *brokers_[i]; }
  void ForgetChannel(const std::string& channel) override {
    testing::SyncRedis sync;
    ASSERT_TRUE(sync.Connect(server_.port()).ok());
    auto r = sync.Command({"DEL", KeysFor("gb", channel).meta});
    ASSERT_TRUE(r.ok() && r->integer == 1) << (r.ok() ? r->DebugString() : r.status().ToString());
  }
  testing::RedisServer* server() override { return &server_; }
  void Stop() override {
    for (auto& b : brokers_) b->Stop();
    io.restart();
    io.run_for(ms(50));  // the posted stops and the connections' last handlers
    server_.Stop();
  }

 private:
  testing::RedisServer server_;
  Recorder recorders_[2];
  std::vector<std::shared_ptr<RedisBroker>> brokers_;
};

std::unique_ptr<Env> MakeRedisEnv() { return std::make_unique<RedisEnv>(); }

// What only a shared Redis can show: several nodes, a server that dies.
class RedisBrokerTest : public BrokerContractTest {
 protected:
  RedisEnv& redis_env() { return static_cast<RedisEnv&>(*env_); }
  testing::SyncRedis Sync() {
    testing::SyncRedis s;
    EXPECT_TRUE(s.Connect(env_->server()->port()).ok());
    return s;
  }
};

TEST_P(RedisBrokerTest, PublishOnOneNodeReachesTheOtherAndHistoryAgrees) {
  ASSERT_TRUE(Subscribe("c/a", 1).ok());
  auto p = Publish("c/a", 1, kKeep10, /*at=*/0);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(RunUntil([&] { return rec(1).Count("c/a") == 1; }));
  auto got = rec(1).Of("c/a");
  EXPECT_EQ(got[0].offset, 1u);
  EXPECT_EQ(got[0].epoch, p->epoch);
  EXPECT_EQ(got[0].text, Text("c/a", 1, 1));
  EXPECT_EQ(rec(0).Count("c/a"), 0u) << "node 0 is not subscribed";
  ASSERT_TRUE(Publish("c/a", 2, kKeep10, /*at=*/1).ok());
  auto h0 = History("c/a", 0, 0, 0);
  auto h1 = History("c/a", 0, 0, 1);
  ASSERT_TRUE(h0.ok() && h1.ok());
  EXPECT_EQ(Offsets(*h0), Range(1, 2));
  EXPECT_EQ(h0->top, h1->top);
  EXPECT_EQ(h0->frames[1].text, h1->frames[1].text);
}

TEST_P(RedisBrokerTest, KeysShareTheChannelHashTag) {
  ASSERT_TRUE(Publish("circles/a", 1).ok());
  auto sync = Sync();
  auto keys = sync.Command({"KEYS", "*"});
  ASSERT_TRUE(keys.ok());
  std::vector<std::string> names;
  for (const auto& k : keys->elements) names.push_back(k.str);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"gb:{circles/a}:meta", "gb:{circles/a}:stream"}));
  auto id = sync.Command({"XRANGE", "gb:{circles/a}:stream", "-", "+"});
  ASSERT_TRUE(id.ok() && id->elements.size() == 1);
  EXPECT_EQ(id->elements[0].elements[0].str, "1-0") << "the offset is the entry id";
  auto cached = sync.Command({"SCRIPT", "EXISTS", PublishScript().sha1});
  ASSERT_TRUE(cached.ok() && cached->elements.size() == 1);
  EXPECT_EQ(cached->elements[0].integer, 1) << "our SHA1 is Redis's: EVALSHA hits the cache";
}

TEST_P(RedisBrokerTest, ScriptCacheFlushIsRecoveredWithinThePublish) {
  ASSERT_TRUE(Publish("c/a", 1).ok());
  auto sync = Sync();
  ASSERT_TRUE(sync.Command({"SCRIPT", "FLUSH"}).ok());
  auto p = Publish("c/a", 2);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->offset, 2u);
  ASSERT_TRUE(sync.Command({"SCRIPT", "FLUSH"}).ok());
  auto h = History("c/a", 0);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(Offsets(*h), Range(1, 2));
}

// A fresh server (or a restarted one) has no scripts cached: each connect loads them before the
// first call, so pipelined publishes never answer NOSCRIPT and keep their call order.
TEST_P(RedisBrokerTest, ScriptsAreCachedAtConnectAndPublishesKeepTheirCallOrder) {
  auto sync = Sync();
  auto cached =
      sync.Command({"SCRIPT", "EXISTS", PublishScript().sha1, HistoryScript().sha1,
                    RotateScript().sha1, NodesAnnounceScript().sha1, NodesWithdrawScript().sha1});
  ASSERT_TRUE(cached.ok() && cached->elements.size() == 5) << cached->DebugString();
  for (const auto& e : cached->elements) EXPECT_EQ(e.integer, 1) << "loaded before any call";
  // Issued back to back and from callbacks: the offsets follow the order of the calls.
  std::vector<int> calls;
  std::map<int, uint64_t> offset_of;
  std::function<void(int)> publish = [&](int n) {
    calls.push_back(n);
    node().Publish("c/order", Head("c/order"), Tail(n), kKeep10, "test",
                   [&, n](absl::StatusOr<StreamPosition> p) {
                     ASSERT_TRUE(p.ok()) << p.status();
                     offset_of[n] = p->offset;
                     if (n < 10) publish(100 + n);
                   });
  };
  for (int n = 0; n < 40; ++n) publish(n);
  ASSERT_TRUE(RunUntil([&] { return offset_of.size() == 50; })) << offset_of.size();
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(offset_of[calls[i]], i + 1) << "call " << i << " (message " << calls[i] << ")";
  }
}

TEST_P(RedisBrokerTest, MetaTtlShorterThanHistoryIsRefused) {
  RedisBrokerOptions o = redis_env().Options(0);
  o.meta_ttl = std::chrono::seconds(60);
  auto b = RedisBroker::Create(env_->io.get_executor(), o);
  ASSERT_TRUE(b.ok());
  const auto s = std::chrono::seconds(1);
  EXPECT_TRUE((*b)->ValidatePolicy({10, 60 * s, 0}).ok());
  EXPECT_EQ((*b)->ValidatePolicy({10, 61 * s, 0}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*b)->ValidatePolicy({10, 0 * s, 0}).code(), absl::StatusCode::kInvalidArgument)
      << "a stream without ttl would outlive the meta";
  EXPECT_TRUE((*b)->ValidatePolicy({0, 0 * s, 0}).ok()) << "no history, nothing to outlive";
  EXPECT_TRUE(redis_env().redis(0).ValidatePolicy({10, 0 * s, 0}).ok()) << "meta never expires";
}

TEST_P(RedisBrokerTest, TtlsAreRefreshedWithMetaAtLeastStream) {
  RedisBrokerOptions o = redis_env().Options(0);
  o.meta_ttl = std::chrono::seconds(600);
  auto b = RedisBroker::Create(env_->io.get_executor(), o);
  ASSERT_TRUE(b.ok());
  (*b)->Start();
  std::optional<absl::StatusOr<StreamPosition>> r;
  ASSERT_TRUE(RunUntil([&] {
    if (!r.has_value() || !r->ok()) {
      r.reset();
      (*b)->Publish("c/t", Head("c/t"), Tail(1), {10, std::chrono::seconds(100), 0}, "t",
                    [&](absl::StatusOr<StreamPosition> p) { r = std::move(p); });
      RunUntil([&] { return r.has_value(); });
    }
    return r.has_value() && r->ok();
  }));
  auto sync = Sync();
  auto meta = sync.Command({"TTL", "gb:{c/t}:meta"});
  auto stream = sync.Command({"TTL", "gb:{c/t}:stream"});
  ASSERT_TRUE(meta.ok() && stream.ok());
  EXPECT_GT(meta->integer, 500);
  EXPECT_GT(stream->integer, 50);
  EXPECT_LE(stream->integer, 100);
  (*b)->Stop();
}

TEST_P(RedisBrokerTest, KillNineFailsPendingPublishesThenEverythingComesBack) {
  ASSERT_TRUE(Subscribe("c/a", 0).ok());
  ASSERT_TRUE(Subscribe("c/a", 1).ok());
  ASSERT_TRUE(Publish("c/a", 1).ok());
  ASSERT_TRUE(RunUntil([&] { return rec(1).Count("c/a") == 1; }));

  // 20 publishes that complete, then 180 that Redis holds (CLIENT PAUSE) when it dies.
  constexpr int kDone = 20;
  constexpr int kN = 200;
  int called = 0;
  std::vector<absl::Status> failures;
  std::vector<uint64_t> ok_offsets;
  auto publish = [&](int i) {
    node(0).Publish("c/a", Head("c/a"), Tail(i), kKeep10, "test",
                    [&](absl::StatusOr<StreamPosition> p) {
                      ++called;
                      if (p.ok()) {
                        ok_offsets.push_back(p->offset);
                      } else {
                        failures.push_back(p.status());
                      }
                    });
  };
  for (int i = 0; i < kDone; ++i) publish(i);
  ASSERT_TRUE(RunUntil([&] { return called == kDone; }));
  auto sync = Sync();
  ASSERT_TRUE(sync.Command({"CLIENT", "PAUSE", "10000"}).ok());
  for (int i = kDone; i < kN; ++i) publish(i);
  for (int i = 0; i < 10; ++i) env_->io.poll();  // written, not answered
  env_->server()->Kill9();
  ASSERT_TRUE(RunUntil([&] { return called == kN; })) << called;
  EXPECT_EQ(ok_offsets, Range(2, kDone + 1));
  EXPECT_EQ(failures.size(), static_cast<size_t>(kN - kDone)) << "never OK for an unanswered one";
  for (const auto& s : failures) EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  ASSERT_TRUE(RunUntil([&] {
    return rec(0).StateCount(BrokerState::kDown) == 1 && rec(1).StateCount(BrokerState::kDown) == 1;
  }));
  EXPECT_FALSE(node(0).Health().ok());

  // While down: fail fast.
  auto down = Publish("c/a", 1000);
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable) << down.status();

  ASSERT_TRUE(env_->server()->Restart().ok());
  ASSERT_TRUE(RunUntil(
      [&] {
        return rec(0).StateCount(BrokerState::kUp) == 2 && rec(1).StateCount(BrokerState::kUp) == 2;
      },
      ms(10000)))
      << "both nodes re-subscribed and reported up";
  EXPECT_TRUE(node(1).Health().ok()) << node(1).Health().detail;
  EXPECT_EQ(node(1).stats().reconnects.load(), 1u);
  const size_t before0 = rec(0).Count("c/a");
  const size_t before1 = rec(1).Count("c/a");
  auto again = Publish("c/a", 7, kKeep10, /*at=*/1);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->offset, 1u) << "the server lost everything: a new epoch starts at 1";
  auto cached = Sync().Command({"SCRIPT", "EXISTS", PublishScript().sha1});
  ASSERT_TRUE(cached.ok() && cached->elements.size() == 1);
  EXPECT_EQ(cached->elements[0].integer, 1) << "reloaded at the reconnect";
  ASSERT_TRUE(RunUntil([&] {
    return rec(0).Count("c/a") == before0 + 1 && rec(1).Count("c/a") == before1 + 1;
  })) << "subscriptions restored on both nodes";
  EXPECT_EQ(rec(0).Of("c/a").back().text, Text("c/a", 1, 7));
}

TEST_P(RedisBrokerTest, LostSubscriberLinkIsReportedAndRestored) {
  ASSERT_TRUE(Subscribe("c/a", 0).ok());
  auto sync = Sync();
  auto killed = sync.Command({"CLIENT", "KILL", "TYPE", "pubsub"});
  ASSERT_TRUE(killed.ok() && killed->integer == 1) << killed->DebugString();
  ASSERT_TRUE(RunUntil([&] { return rec(0).StateCount(BrokerState::kDown) == 1; }));
  ASSERT_TRUE(RunUntil([&] { return rec(0).StateCount(BrokerState::kUp) == 2; }));
  EXPECT_TRUE(node(0).Health().ok()) << node(0).Health().detail;
  ASSERT_TRUE(Publish("c/a", 1, kKeep10, /*at=*/1).ok());
  ASSERT_TRUE(RunUntil([&] { return rec(0).Count("c/a") == 1; })) << "re-subscribed";
}

INSTANTIATE_TEST_SUITE_P(Redis, RedisBrokerTest, ::testing::Values("redis"),
                         [](const auto& info) { return info.param; });

TEST(RedisScriptsTest, KeysTopicsAndPayloads) {
  ChannelKeys k = KeysFor("gb", "circles/a");
  EXPECT_EQ(k.meta, "gb:{circles/a}:meta");
  EXPECT_EQ(k.stream, "gb:{circles/a}:stream");
  EXPECT_EQ(k.topic, "gb:{circles/a}");
  EXPECT_EQ(ChannelOfTopic("gb", k.topic), "circles/a");
  EXPECT_EQ(ChannelOfTopic("gb", "gb:{a:b}"), "a:b");
  EXPECT_FALSE(ChannelOfTopic("gb", "xx:{a}").has_value());
  EXPECT_FALSE(ChannelOfTopic("gb", "gb:{a").has_value());
  auto p = ParsePayload("12:abc:node-1/7:{\"x\":\"1:2\"}");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->offset, 12u);
  EXPECT_EQ(p->epoch, "abc");
  EXPECT_EQ(p->origin, "node-1/7");
  EXPECT_EQ(p->text, "{\"x\":\"1:2\"}");
  EXPECT_FALSE(ParsePayload("0:abc:x").has_value()) << "offset 0 is no event";
  EXPECT_FALSE(ParsePayload("x1:abc:x").has_value());
  EXPECT_FALSE(ParsePayload("12:abc").has_value());
  EXPECT_FALSE(ParsePayload("12:abc:x").has_value()) << "no origin";
  EXPECT_EQ(PublishScript().sha1.size(), 40u);
  EXPECT_NE(PublishScript().sha1, HistoryScript().sha1);
}

}  // namespace
}  // namespace bridge::broker
