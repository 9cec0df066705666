// One contract suite for every core::PresenceManager: the in-process MemoryPresence and
// RedisPresence (two or three "nodes", each on its own RedisConnection, against one real
// redis-server started per test), then what only Redis can show: leases, expiry of a dead node's
// members reported once across nodes, Redis loss. The Redis nodes' io_context runs on the test
// thread inside RunUntil; every wait is bounded and fails with a message.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "broker/memory_presence.h"
#include "broker/redis_connection.h"
#include "broker/redis_presence.h"
#include "core/presence.h"
#include "redis_server.h"

namespace bridge::broker {
namespace {

using core::PresenceManager;
using core::PresenceSnapshot;
using ms = std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// What a node's expired and restored handlers saw. Locked: any thread may report.
struct Reports {
  struct Event {
    std::string channel, identity;
    Clock::time_point at;
  };
  std::mutex mu;
  std::vector<Event> expired, restored;

  void Install(PresenceManager& p) {
    p.SetExpiredHandler([this](const std::string& c, const std::string& i) {
      std::lock_guard lock(mu);
      expired.push_back({c, i, Clock::now()});
    });
    p.SetRestoredHandler([this](const std::string& c, const std::string& i) {
      std::lock_guard lock(mu);
      restored.push_back({c, i, Clock::now()});
    });
  }
  size_t Expired(const std::string& identity = "") {
    std::lock_guard lock(mu);
    return static_cast<size_t>(std::count_if(expired.begin(), expired.end(), [&](const Event& e) {
      return identity.empty() || e.identity == identity;
    }));
  }
  size_t Restored(const std::string& identity = "") {
    std::lock_guard lock(mu);
    return static_cast<size_t>(std::count_if(restored.begin(), restored.end(), [&](const Event& e) {
      return identity.empty() || e.identity == identity;
    }));
  }
};

class Env {
 public:
  virtual ~Env() = default;
  virtual absl::Status Start() = 0;
  virtual int node_count() const = 0;
  virtual PresenceManager& node(int i) = 0;
  virtual Reports& reports(int i) = 0;
  virtual void Stop() {}

  boost::asio::io_context io;
};

class MemoryEnv : public Env {
 public:
  absl::Status Start() override {
    reports_.Install(presence_);
    return absl::OkStatus();
  }
  int node_count() const override { return 1; }
  PresenceManager& node(int) override { return presence_; }
  Reports& reports(int) override { return reports_; }

 private:
  MemoryPresence presence_;
  Reports reports_;
};

constexpr ms kLease{600};
constexpr ms kRenew{200};

// Lease and renew interval of one node.
struct Timing {
  ms lease = kLease;
  ms renew = kRenew;
  bool forward_state = true;  // false: the presence must notice a new link by itself
};

// One node per Timing, each a RedisConnection and a RedisPresence on the test thread's io_context.
class RedisEnv : public Env {
 public:
  explicit RedisEnv(std::vector<Timing> nodes = {Timing{}, Timing{}})
      : timing_(std::move(nodes)), reports_(timing_.size()) {}

  absl::Status Start() override {
    if (absl::Status s = server_.Start(); !s.ok()) return s;
    for (size_t i = 0; i < timing_.size(); ++i) {
      if (absl::Status s = AddNode(static_cast<int>(i)); !s.ok()) return s;
    }
    return AwaitReady();
  }

  absl::Status AddNode(int i) {
    RedisConnectionOptions o;
    auto url = ParseRedisUrl(server_.Url());
    if (!url.ok()) return url.status();
    o.url = *url;
    o.client_name = "node" + std::to_string(i) + ":cmd";
    o.reconnect_min = ms(20);
    o.reconnect_max = ms(100);
    auto c = RedisConnection::Create(io.get_executor(), o);
    if (!c.ok()) return c.status();
    RedisPresenceOptions po;
    po.node_id = "node" + std::to_string(i);
    po.lease = timing_[i].lease;
    po.renew_interval = timing_[i].renew;
    auto p = RedisPresence::Create(io.get_executor(), **c, po);
    if (!p.ok()) return p.status();
    if (timing_[i].forward_state) {
      std::weak_ptr<RedisPresence> weak = *p;
      (*c)->SetStateHandler([weak](RedisConnectionState s, const absl::Status& why) {
        if (auto presence = weak.lock()) presence->OnConnectionState(s, why);
      });
    }
    connections_.push_back(*c);
    presences_.push_back(*p);
    reports_[i].Install(**p);
    (*c)->Start();
    (*p)->Start();
    return absl::OkStatus();
  }

  // Every connection ready (bounded).
  absl::Status AwaitReady(ms timeout = ms(5000)) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      bool all = true;
      for (auto& c : connections_) all = all && c->state() == RedisConnectionState::kReady;
      if (all) return absl::OkStatus();
      if (Clock::now() >= deadline) return absl::DeadlineExceededError("connections never ready");
      if (io.stopped()) io.restart();
      io.run_one_for(ms(10));
    }
  }

  int node_count() const override { return static_cast<int>(timing_.size()); }
  PresenceManager& node(int i) override { return *presences_[i]; }
  RedisPresence& redis(int i) { return *presences_[i]; }
  RedisConnection& connection(int i) { return *connections_[i]; }
  Reports& reports(int i) override { return reports_[i]; }
  testing::RedisServer& server() { return server_; }

  void Stop() override {
    for (auto& p : presences_) p->AbandonForTesting();
    io.restart();
    io.run_for(ms(20));  // the posted stops
    for (auto& c : connections_) c->Stop();
    io.restart();
    io.run_for(ms(30));  // the connections' last handlers
    server_.Stop();
  }

 private:
  const std::vector<Timing> timing_;
  testing::RedisServer server_;
  std::vector<Reports> reports_;
  std::vector<std::shared_ptr<RedisConnection>> connections_;
  std::vector<std::shared_ptr<RedisPresence>> presences_;
};

class PresenceTestBase : public ::testing::Test {
 protected:
  void TearDown() override {
    if (env_) env_->Stop();
  }

  PresenceManager& node(int i) { return env_->node(i % env_->node_count()); }
  Reports& reports(int i) { return env_->reports(i % env_->node_count()); }

  bool RunUntil(const std::function<bool()>& done, ms timeout = ms(5000)) {
    const auto deadline = Clock::now() + timeout;
    while (!done()) {
      if (Clock::now() >= deadline) return false;
      if (env_->io.stopped()) env_->io.restart();
      env_->io.run_one_for(ms(5));
    }
    return true;
  }

  absl::StatusOr<bool> Join(const std::string& ch, const std::string& id, const std::string& conn,
                            int at = 0) {
    std::optional<absl::StatusOr<bool>> result;
    node(at).Join(ch, id, conn, [&](absl::StatusOr<bool> r) { result = std::move(r); });
    if (!RunUntil([&] { return result.has_value(); })) {
      return absl::DeadlineExceededError("test: no Join callback within the bounded wait");
    }
    return *result;
  }
  absl::StatusOr<bool> Leave(const std::string& ch, const std::string& id, const std::string& conn,
                             int at = 0) {
    std::optional<absl::StatusOr<bool>> result;
    node(at).Leave(ch, id, conn, [&](absl::StatusOr<bool> r) { result = std::move(r); });
    if (!RunUntil([&] { return result.has_value(); })) {
      return absl::DeadlineExceededError("test: no Leave callback within the bounded wait");
    }
    return *result;
  }
  absl::StatusOr<PresenceSnapshot> List(const std::string& ch, int at = 0) {
    std::optional<absl::StatusOr<PresenceSnapshot>> result;
    node(at).List(ch, [&](absl::StatusOr<PresenceSnapshot> r) { result = std::move(r); });
    if (!RunUntil([&] { return result.has_value(); })) {
      return absl::DeadlineExceededError("test: no List callback within the bounded wait");
    }
    return *result;
  }

  // "identity:connections" per member, in List order.
  static std::vector<std::string> Summary(const PresenceSnapshot& s) {
    std::vector<std::string> out;
    for (const auto& m : s.members) out.push_back(m.identity + ":" + std::to_string(m.connections));
    return out;
  }
  std::vector<std::string> ListSummary(const std::string& ch, int at = 0) {
    auto l = List(ch, at);
    EXPECT_TRUE(l.ok()) << l.status();
    if (!l.ok()) return {"<" + l.status().ToString() + ">"};
    return Summary(*l);
  }

  std::unique_ptr<Env> env_;
};

// ---------------------------------------------------------------------------------------------
// The contract, for both implementations.

class PresenceContractTest : public PresenceTestBase,
                             public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "redis") {
      env_ = std::make_unique<RedisEnv>();
    } else {
      env_ = std::make_unique<MemoryEnv>();
    }
    absl::Status s = env_->Start();
    ASSERT_TRUE(s.ok()) << s;
  }
};

TEST_P(PresenceContractTest, FirstAndLastConnectionChangeMembership) {
  const auto before = std::chrono::system_clock::now() - std::chrono::seconds(1);
  auto j = Join("c/a", "alice", "conn-1");
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_TRUE(*j) << "the identity's first connection is a membership change";
  auto l = List("c/a");
  ASSERT_TRUE(l.ok()) << l.status();
  ASSERT_EQ(l->members.size(), 1u);
  EXPECT_EQ(l->members[0].identity, "alice");
  EXPECT_EQ(l->members[0].connections, 1u);
  EXPECT_EQ(l->connection_count, 1u);
  EXPECT_GE(l->members[0].joined_at, before);
  EXPECT_LE(l->members[0].joined_at, std::chrono::system_clock::now() + std::chrono::seconds(1));
  auto lv = Leave("c/a", "alice", "conn-1");
  ASSERT_TRUE(lv.ok()) << lv.status();
  EXPECT_TRUE(*lv) << "the identity's last connection is a membership change";
  EXPECT_EQ(ListSummary("c/a"), std::vector<std::string>{});
}

TEST_P(PresenceContractTest, TwoConnectionsOfOneIdentityAreOneMember) {
  ASSERT_EQ(Join("c/a", "alice", "conn-1", 0).value_or(false), true);
  auto first = List("c/a");
  ASSERT_TRUE(first.ok()) << first.status();
  auto j2 = Join("c/a", "alice", "conn-2", 1);  // the other node, where there is one
  ASSERT_TRUE(j2.ok()) << j2.status();
  EXPECT_FALSE(*j2) << "a second connection is not a join";
  auto l = List("c/a", 1);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(Summary(*l), std::vector<std::string>{"alice:2"});
  EXPECT_EQ(l->connection_count, 2u);
  EXPECT_EQ(l->members[0].joined_at, first->members[0].joined_at)
      << "joined_at is the identity's first connection";
  auto lv1 = Leave("c/a", "alice", "conn-1", 0);
  ASSERT_TRUE(lv1.ok()) << lv1.status();
  EXPECT_FALSE(*lv1) << "one connection is left";
  EXPECT_EQ(ListSummary("c/a"), std::vector<std::string>{"alice:1"});
  auto lv2 = Leave("c/a", "alice", "conn-2", 1);
  ASSERT_TRUE(lv2.ok()) << lv2.status();
  EXPECT_TRUE(*lv2);
  EXPECT_EQ(ListSummary("c/a"), std::vector<std::string>{});
}

TEST_P(PresenceContractTest, ManyIdentitiesAreListedByIdentityWithCounts) {
  // Joined out of order, with 1..3 connections each, spread over the nodes.
  const std::vector<std::string> ids = {"mallory", "bob", "zed", "alice", "Carol", "bob2", "_x"};
  uint32_t total = 0;
  int conn = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    for (size_t k = 0; k <= i % 3; ++k, ++conn, ++total) {
      auto j = Join("c/many", ids[i], "conn-" + std::to_string(conn), conn);
      ASSERT_TRUE(j.ok()) << j.status();
      EXPECT_EQ(*j, k == 0) << ids[i] << " connection " << k;
    }
  }
  auto l = List("c/many");
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(Summary(*l), (std::vector<std::string>{"Carol:2", "_x:1", "alice:1", "bob:2", "bob2:3",
                                                   "mallory:1", "zed:3"}));
  EXPECT_EQ(l->connection_count, total);
  EXPECT_EQ(ListSummary("c/other"), std::vector<std::string>{}) << "channels are independent";
}

TEST_P(PresenceContractTest, LeaveOfAnAbsentConnectionChangesNothing) {
  auto unknown = Leave("c/none", "alice", "conn-1");
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_FALSE(*unknown) << "unknown channel";
  ASSERT_EQ(Join("c/a", "alice", "conn-1").value_or(false), true);
  auto other = Leave("c/a", "alice", "conn-9");
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_FALSE(*other) << "unknown connection";
  auto wrong_channel = Leave("c/b", "alice", "conn-1");
  ASSERT_TRUE(wrong_channel.ok()) << wrong_channel.status();
  EXPECT_FALSE(*wrong_channel);
  EXPECT_EQ(ListSummary("c/a"), std::vector<std::string>{"alice:1"});
  // The same connection joining twice counts once.
  auto again = Join("c/a", "alice", "conn-1");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(*again);
  EXPECT_EQ(ListSummary("c/a"), std::vector<std::string>{"alice:1"});
  EXPECT_EQ(Leave("c/a", "alice", "conn-1").value_or(false), true);
  auto twice = Leave("c/a", "alice", "conn-1");
  ASSERT_TRUE(twice.ok()) << twice.status();
  EXPECT_FALSE(*twice) << "the second leave of a connection";
}

TEST_P(PresenceContractTest, ConcurrentJoinsAndLeavesFromSeveralThreadsCountOnce) {
  constexpr int kThreads = 4;
  constexpr int kIdentities = 25;
  std::atomic<int> callbacks{0}, changes{0}, failures{0};
  auto run = [&](bool join) {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kIdentities; ++i) {
          const std::string id = "user-" + std::to_string(i);
          const std::string conn = "t" + std::to_string(t) + "-" + std::to_string(i);
          auto done = [&](absl::StatusOr<bool> r) {
            if (!r.ok()) failures.fetch_add(1);
            if (r.ok() && *r) changes.fetch_add(1);
            callbacks.fetch_add(1);
          };
          if (join) {
            node(t).Join("c/busy", id, conn, done);
          } else {
            node(t).Leave("c/busy", id, conn, done);
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    ASSERT_TRUE(RunUntil([&] { return callbacks.load() == kThreads * kIdentities; }))
        << callbacks.load() << " of " << kThreads * kIdentities << " callbacks";
  };
  run(true);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(changes.load(), kIdentities) << "exactly one join per identity";
  auto l = List("c/busy");
  ASSERT_TRUE(l.ok()) << l.status();
  ASSERT_EQ(l->members.size(), static_cast<size_t>(kIdentities));
  for (const auto& m : l->members) EXPECT_EQ(m.connections, static_cast<uint32_t>(kThreads));
  EXPECT_EQ(l->connection_count, static_cast<uint32_t>(kThreads * kIdentities));
  callbacks = 0;
  changes = 0;
  run(false);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(changes.load(), kIdentities) << "exactly one leave per identity";
  EXPECT_EQ(ListSummary("c/busy"), std::vector<std::string>{});
}

INSTANTIATE_TEST_SUITE_P(Presence, PresenceContractTest, ::testing::Values("memory", "redis"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

// ---------------------------------------------------------------------------------------------
// Redis only: several nodes, leases, a server that dies.

class RedisPresenceTest : public PresenceTestBase {
 protected:
  void StartEnv(std::vector<Timing> nodes = {Timing{}, Timing{}}) {
    auto env = std::make_unique<RedisEnv>(std::move(nodes));
    redis_ = env.get();
    env_ = std::move(env);
    absl::Status s = env_->Start();
    ASSERT_TRUE(s.ok()) << s;
  }
  testing::SyncRedis Sync() {
    testing::SyncRedis s;
    EXPECT_TRUE(s.Connect(redis_->server().port()).ok());
    return s;
  }
  // Every renew-interval tick of node i ran at least `ticks` more times (its expiry runs count
  // the ticks: one per watched or joined channel per tick).
  bool AwaitExpiryRuns(int i, uint64_t at_least, ms timeout = ms(5000)) {
    return RunUntil([&] { return redis_->redis(i).stats().expiry_runs.load() >= at_least; },
                    timeout);
  }

  RedisEnv* redis_ = nullptr;
};

TEST_F(RedisPresenceTest, KeysShareTheChannelsHashTagAndHaveATtl) {
  StartEnv();
  ASSERT_EQ(Join("c/k", "alice", "conn-1", 0).value_or(false), true);
  auto sync = Sync();
  auto keys = sync.Command({"KEYS", "gb:{c/k}:*"});
  ASSERT_TRUE(keys.ok()) << keys.status();
  std::vector<std::string> names;
  for (const auto& k : keys->elements) names.push_back(k.str);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"gb:{c/k}:presence", "gb:{c/k}:presence:lease",
                                             "gb:{c/k}:presence:members"}));
  for (const auto& k : names) {
    auto ttl = sync.Command({"PTTL", k});
    ASSERT_TRUE(ttl.ok()) << ttl.status();
    EXPECT_GT(ttl->integer, 0) << k << " has no TTL (abandoned channels must vanish)";
    EXPECT_LE(ttl->integer, 3 * kLease.count()) << k;
  }
  auto info = sync.Command({"HGET", "gb:{c/k}:presence", "conn-1"});
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->str.substr(0, 6), "node0\n") << info->DebugString();
  EXPECT_EQ(info->str.substr(info->str.size() - 6), "\nalice") << info->DebugString();
  // Leaving removes everything: the hashes and the zset are empty, so Redis drops the keys.
  ASSERT_EQ(Leave("c/k", "alice", "conn-1", 1).value_or(false), true);
  auto after = sync.Command({"KEYS", "gb:{c/k}:*"});
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(after->elements.empty()) << after->DebugString();
}

TEST_F(RedisPresenceTest, RenewalKeepsMembersPastTheLeaseWithOneCallPerChannel) {
  StartEnv();
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(Join("c/r" + std::to_string(i % 3), "user-" + std::to_string(i),
                     "conn-" + std::to_string(i), 0)
                    .ok());
  }
  redis_->redis(1).Watch("c/r0");  // node 1 sweeps too, and must find nothing
  const uint64_t renews = redis_->redis(0).stats().renews.load();
  const uint64_t runs = redis_->redis(0).stats().expiry_runs.load();
  // 3 leases' worth of ticks: 9 ticks * 3 channels.
  const uint64_t ticks = 3 * kLease / kRenew;
  ASSERT_TRUE(AwaitExpiryRuns(0, runs + 3 * ticks, 4 * kLease + ms(2000)))
      << "node 0 did not tick: " << redis_->redis(0).stats().expiry_runs.load();
  const uint64_t renewed = redis_->redis(0).stats().renews.load() - renews;
  const uint64_t swept = redis_->redis(0).stats().expiry_runs.load() - runs;
  EXPECT_EQ(renewed, swept) << "one renew per channel per tick (30 connections, 3 channels)";
  auto l = List("c/r0", 1);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->connection_count, 10u);
  EXPECT_EQ(reports(0).Expired() + reports(1).Expired(), 0u) << "nothing expired while renewed";
  EXPECT_EQ(redis_->redis(0).stats().failures.load(), 0u);
}

TEST_F(RedisPresenceTest, KilledNodesMembersAreReportedOnceAfterTheLease) {
  StartEnv({Timing{}, Timing{}, Timing{}});
  // Node 0 dies with alice (2 connections) and bob; nodes 1 and 2 watch and race to sweep.
  ASSERT_EQ(Join("c/k9", "alice", "a-1", 0).value_or(false), true);
  ASSERT_EQ(Join("c/k9", "alice", "a-2", 0).value_or(true), false);
  ASSERT_EQ(Join("c/k9", "bob", "b-1", 0).value_or(false), true);
  redis_->redis(1).Watch("c/k9");
  redis_->redis(2).Watch("c/k9");
  redis_->redis(0).AbandonForTesting();
  const auto died = Clock::now();
  auto total = [&](const std::string& id) {
    return reports(0).Expired(id) + reports(1).Expired(id) + reports(2).Expired(id);
  };
  ASSERT_TRUE(RunUntil([&] { return total("alice") >= 1 && total("bob") >= 1; },
                       kLease + 3 * kRenew + ms(1500)))
      << "no agent_left for node 0's members within lease + 3 intervals; alice " << total("alice")
      << ", bob " << total("bob");
  const auto reported = Clock::now();
  // A few more ticks on both watchers: still once each.
  const uint64_t r1 = redis_->redis(1).stats().expiry_runs.load();
  const uint64_t r2 = redis_->redis(2).stats().expiry_runs.load();
  ASSERT_TRUE(AwaitExpiryRuns(1, r1 + 3) && AwaitExpiryRuns(2, r2 + 3));
  EXPECT_EQ(total("alice"), 1u);
  EXPECT_EQ(total("bob"), 1u);
  EXPECT_EQ(reports(0).Expired(), 0u) << "the dead node reports nothing";
  // Not before the lease could have passed (its last renew was at most one interval earlier).
  EXPECT_GE(reported - died, kLease - kRenew - ms(50));
  EXPECT_EQ(ListSummary("c/k9", 1), std::vector<std::string>{});
}

TEST_F(RedisPresenceTest, AnIdentityStillConnectedElsewhereIsNotReported) {
  StartEnv();
  ASSERT_EQ(Join("c/both", "alice", "a-0", 0).value_or(false), true);
  ASSERT_EQ(Join("c/both", "alice", "a-1", 1).value_or(true), false);
  ASSERT_EQ(Join("c/both", "bob", "b-0", 0).value_or(false), true);
  redis_->redis(0).AbandonForTesting();
  ASSERT_TRUE(RunUntil([&] { return reports(1).Expired("bob") == 1; }, kLease + ms(2000)))
      << "bob (only on the dead node) was not reported";
  // One more sweep by node 1 after bob's.
  const uint64_t runs = redis_->redis(1).stats().expiry_runs.load();
  ASSERT_TRUE(AwaitExpiryRuns(1, runs + 2));
  EXPECT_EQ(reports(1).Expired("alice"), 0u) << "alice still has a connection on node 1";
  EXPECT_EQ(ListSummary("c/both", 1), std::vector<std::string>{"alice:1"});
  // Her last connection leaving is a normal leave.
  EXPECT_EQ(Leave("c/both", "alice", "a-1", 1).value_or(false), true);
}

TEST_F(RedisPresenceTest, ExpiredButUnsweptConnectionsAreLeftOutOfList) {
  // Node 1 sweeps only every 3 s (long lease), node 0 (short lease) dies: once node 0's lease has
  // passed on the server's clock, List leaves its connections out although nobody swept yet.
  StartEnv({Timing{}, Timing{ms(10000), ms(3000)}});
  ASSERT_EQ(Join("c/l", "alice", "a-0", 0).value_or(false), true);
  ASSERT_EQ(Join("c/l", "carol", "c-0", 0).value_or(false), true);
  ASSERT_EQ(Join("c/l", "carol", "c-1", 1).value_or(true), false);
  redis_->redis(0).AbandonForTesting();
  auto sync = Sync();
  // Both of node 0's connections: c-0 joined after a-0, so its lease ends a little later.
  auto passed = [&] {
    auto now = sync.Command({"TIME"});
    if (!now.ok()) return false;
    const double now_ms =
        std::stod(now->elements[0].str) * 1000 + std::stod(now->elements[1].str) / 1000;
    for (const char* conn : {"a-0", "c-0"}) {
      auto score = sync.Command({"ZSCORE", "gb:{c/l}:presence:lease", conn});
      if (!score.ok() || score->is_nil() || now_ms <= std::stod(score->str)) return false;
    }
    return true;
  };
  ASSERT_TRUE(RunUntil(passed, kLease + ms(1500))) << "node 0's lease never passed (or swept)";
  EXPECT_EQ(ListSummary("c/l", 1), std::vector<std::string>{"carol:1"});
  auto still = sync.Command({"HEXISTS", "gb:{c/l}:presence", "a-0"});
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->integer, 1) << "swept already: the test did not show List's exclusion";
  EXPECT_EQ(reports(1).Expired(), 0u);
}

TEST_F(RedisPresenceTest, StopReleasesLeasesSoOthersReportWithinAnInterval) {
  // A long lease: the report must not wait for it.
  StartEnv({Timing{ms(10000), ms(200)}, Timing{ms(10000), ms(200)}});
  ASSERT_EQ(Join("c/stop", "alice", "a-0", 0).value_or(false), true);
  redis_->redis(1).Watch("c/stop");
  const auto stopped = Clock::now();
  redis_->redis(0).Stop();
  ASSERT_TRUE(RunUntil([&] { return reports(1).Expired("alice") == 1; }, ms(3000)))
      << "a stopped node's members were not reported soon";
  EXPECT_LT(Clock::now() - stopped, ms(2000));
  auto after = Join("c/stop", "bob", "b-0", 0);
  EXPECT_EQ(after.status().code(), absl::StatusCode::kCancelled) << after.status();
}

TEST_F(RedisPresenceTest, ASweptConnectionIsRestoredByTheNextRenew) {
  StartEnv();
  ASSERT_EQ(Join("c/sw", "alice", "a-0", 0).value_or(false), true);
  // As if another node had swept it while node 0 could not renew (and reported alice left).
  auto sync = Sync();
  ASSERT_TRUE(sync.Command({"DEL", "gb:{c/sw}:presence", "gb:{c/sw}:presence:lease",
                            "gb:{c/sw}:presence:members"})
                  .ok());
  ASSERT_TRUE(RunUntil([&] { return reports(0).Restored("alice") == 1; }, ms(3000)))
      << "the renew did not restore the swept connection";
  EXPECT_EQ(ListSummary("c/sw", 1), std::vector<std::string>{"alice:1"});
}

TEST_F(RedisPresenceTest, ScriptFlushIsRecoveredWithinTheCall) {
  StartEnv();
  ASSERT_EQ(Join("c/f", "alice", "a-0", 0).value_or(false), true);
  auto sync = Sync();
  ASSERT_TRUE(sync.Command({"SCRIPT", "FLUSH"}).ok());
  auto j = Join("c/f", "bob", "b-0", 1);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_TRUE(*j);
  EXPECT_EQ(ListSummary("c/f", 0), (std::vector<std::string>{"alice:1", "bob:1"}));
}

TEST_F(RedisPresenceTest, RedisKilledAndRestartedGivesUnavailableThenRestoresMembers) {
  // Node 1 is not told about the connection's states: its tick notices the new link.
  StartEnv({Timing{}, Timing{kLease, kRenew, /*forward_state=*/false}});
  ASSERT_EQ(Join("c/down", "alice", "a-0", 0).value_or(false), true);
  ASSERT_EQ(Join("c/down", "bob", "b-1", 1).value_or(false), true);
  redis_->server().Kill9();
  ASSERT_TRUE(RunUntil([&] {
    return redis_->connection(0).state() != RedisConnectionState::kReady &&
           redis_->connection(1).state() != RedisConnectionState::kReady;
  })) << "the connections did not notice the kill";
  auto j = Join("c/down", "carol", "c-0", 0);
  EXPECT_EQ(j.status().code(), absl::StatusCode::kUnavailable) << j.status();
  auto l = List("c/down", 1);
  EXPECT_EQ(l.status().code(), absl::StatusCode::kUnavailable) << l.status();
  auto lv = Leave("c/down", "zed", "z-0", 1);
  EXPECT_EQ(lv.status().code(), absl::StatusCode::kUnavailable) << lv.status();
  // Back, empty: each node registers its members again and reports them restored, carol too
  // (her Join failed, the node kept her).
  ASSERT_TRUE(redis_->server().Restart().ok());
  ASSERT_TRUE(RunUntil([&] {
    return reports(0).Restored("alice") == 1 && reports(0).Restored("carol") == 1 &&
           reports(1).Restored("bob") == 1;
  })) << "not restored: alice "
      << reports(0).Restored("alice") << ", carol " << reports(0).Restored("carol") << ", bob "
      << reports(1).Restored("bob");
  EXPECT_EQ(ListSummary("c/down", 1), (std::vector<std::string>{"alice:1", "bob:1", "carol:1"}));
  EXPECT_EQ(Join("c/down", "dave", "d-0", 1).value_or(false), true);
  EXPECT_EQ(reports(0).Expired() + reports(1).Expired(), 0u);
}

}  // namespace
}  // namespace bridge::broker
