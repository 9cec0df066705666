#include "core/hub.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>

namespace bridge::core {
namespace {

namespace pb = gathering::bridge::v1;

class RecordingSubscriber : public Subscriber {
 public:
  explicit RecordingSubscriber(uint64_t id, std::string identity = "")
      : id_(id), identity_(std::move(identity)), connection_id_("c-" + std::to_string(id)) {}
  void Deliver(const FramePtr& f) override { frames.push_back(f); }
  uint64_t subscriber_id() const override { return id_; }
  const std::string& identity() const override { return identity_; }
  const std::string& connection_id() const override { return connection_id_; }
  std::vector<FramePtr> frames;

 private:
  uint64_t id_;
  std::string identity_;
  std::string connection_id_;
};

// Shards whose tasks wait in a queue until the test runs them, like an io thread would.
class HubTest : public testing::Test {
 protected:
  HubTest() : hub_(MakeExecutors(), NamespaceRegistry::Defaults(), metrics_) {}

  std::vector<Hub::Executor> MakeExecutors() {
    std::vector<Hub::Executor> e;
    for (int i = 0; i < 2; ++i) {
      e.push_back([this, i](std::function<void()> t) { pending_[i].push_back(std::move(t)); });
    }
    return e;
  }
  void RunShard(int i) {
    while (!pending_[i].empty()) {
      auto t = std::move(pending_[i].front());
      pending_[i].pop_front();
      t();
    }
  }
  void RunAll() {
    RunShard(0);
    RunShard(1);
  }
  absl::StatusOr<PublishResult> PublishMessage(const std::string& channel, const std::string& c) {
    pb::Event e;
    e.set_channel(channel);
    e.mutable_agent_message()->set_content(c);
    return hub_.Publish(e);
  }

  Metrics metrics_;
  std::deque<std::function<void()>> pending_[2];
  Hub hub_;
};

TEST_F(HubTest, FansOutToSubscribersOfTheChannelOnly) {
  RecordingSubscriber a(1), b(2), other(3);
  hub_.Subscribe(0, "circles/x", &a, std::nullopt);
  hub_.Subscribe(1, "circles/x", &b, std::nullopt);
  hub_.Subscribe(1, "circles/y", &other, std::nullopt);
  auto r = PublishMessage("circles/x", "hi");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->offset, 1u);
  RunAll();
  ASSERT_EQ(a.frames.size(), 1u);
  ASSERT_EQ(b.frames.size(), 1u);
  EXPECT_TRUE(other.frames.empty());
  // One serialisation shared by every subscriber.
  EXPECT_EQ(a.frames[0].get(), b.frames[0].get());
  EXPECT_EQ(a.frames[0]->offset, 1u);
}

TEST_F(HubTest, OffsetsCountPerChannel) {
  EXPECT_EQ(PublishMessage("circles/x", "1")->offset, 1u);
  EXPECT_EQ(PublishMessage("circles/x", "2")->offset, 2u);
  EXPECT_EQ(PublishMessage("circles/y", "1")->offset, 1u);
}

TEST_F(HubTest, UnsubscribeStopsDelivery) {
  RecordingSubscriber a(1);
  hub_.Subscribe(0, "circles/x", &a, std::nullopt);
  hub_.Unsubscribe(0, "circles/x", &a);
  (void)PublishMessage("circles/x", "hi");
  RunAll();
  EXPECT_TRUE(a.frames.empty());
  EXPECT_EQ(metrics_.subscriptions_current.load(), 0);
}

TEST_F(HubTest, ExcludedSenderDoesNotReceiveItsOwnFrame) {
  RecordingSubscriber a(1), b(2);
  hub_.Subscribe(0, "circles/x", &a, std::nullopt);
  hub_.Subscribe(0, "circles/x", &b, std::nullopt);
  (void)hub_.PublishFrame("circles/x", R"({"type":"message","offset":)", "}", /*exclude_id=*/1);
  RunAll();
  EXPECT_TRUE(a.frames.empty());
  ASSERT_EQ(b.frames.size(), 1u);
  EXPECT_EQ(b.frames[0]->text, R"({"type":"message","offset":1})");
}

TEST_F(HubTest, FramesPublishedBeforeSubscribingAreNotDelivered) {
  RecordingSubscriber a(1);
  (void)PublishMessage("circles/x", "old");  // posted, not yet run on the shard
  hub_.Subscribe(0, "circles/x", &a, std::nullopt);
  (void)PublishMessage("circles/x", "new");
  RunAll();
  ASSERT_EQ(a.frames.size(), 1u);
  EXPECT_EQ(a.frames[0]->offset, 2u);
}

TEST_F(HubTest, RecoveryReturnsMissedFramesWithoutDuplicates) {
  std::string epoch;
  for (int i = 0; i < 5; ++i) epoch = PublishMessage("circles/x", "m")->epoch;
  RecordingSubscriber a(1);
  // Frames 1..5 are still queued for the shard when the subscription recovers from 2.
  auto r = hub_.Subscribe(0, "circles/x", &a, RecoveryRequest{2, epoch});
  EXPECT_EQ(r.epoch, epoch);
  EXPECT_TRUE(r.recovered);
  ASSERT_EQ(r.missed.size(), 3u);
  EXPECT_EQ(r.missed[0]->offset, 3u);
  (void)PublishMessage("circles/x", "live");
  RunAll();
  ASSERT_EQ(a.frames.size(), 1u);
  EXPECT_EQ(a.frames[0]->offset, 6u);
}

TEST_F(HubTest, RecoveryFailsForOtherEpochOrTooOld) {
  RecordingSubscriber a(1);
  std::string epoch;
  for (int i = 0; i < 150; ++i) epoch = PublishMessage("circles/x", "m")->epoch;  // keeps 100
  EXPECT_FALSE(hub_.Subscribe(0, "circles/x", &a, RecoveryRequest{10, epoch}).recovered);
  EXPECT_FALSE(hub_.Subscribe(0, "circles/x", &a, RecoveryRequest{140, "other"}).recovered);
  EXPECT_TRUE(hub_.Subscribe(0, "circles/x", &a, RecoveryRequest{50, epoch}).recovered);
  EXPECT_FALSE(hub_.Subscribe(0, "circles/x", &a, RecoveryRequest{151, epoch}).recovered);
  RunAll();
}

TEST_F(HubTest, RejectsUnknownNamespace) {
  auto r = PublishMessage("nope/x", "hi");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(metrics_.publish_rejected_total.load(), 1u);
}

TEST_F(HubTest, PresenceJoinsOnFirstConnectionAndLeavesOnLast) {
  RecordingSubscriber observer(1), tab1(2, "alice"), tab2(3, "alice");
  hub_.Subscribe(0, "circles/p", &observer, std::nullopt);
  hub_.Subscribe(0, "circles/p", &tab1, std::nullopt);
  hub_.Subscribe(1, "circles/p", &tab2, std::nullopt);
  RunAll();
  ASSERT_EQ(observer.frames.size(), 1u);
  EXPECT_NE(observer.frames[0]->text.find(R"("type":"agent_joined")"), std::string::npos);
  auto p = hub_.Presence("circles/p");
  ASSERT_EQ(p.members.size(), 1u);
  EXPECT_EQ(p.members[0].connections, 2u);
  EXPECT_EQ(p.connection_count, 3u);
  hub_.Unsubscribe(0, "circles/p", &tab1, "closed");
  RunAll();
  EXPECT_EQ(observer.frames.size(), 1u);
  hub_.Unsubscribe(1, "circles/p", &tab2, "slow_consumer");
  RunAll();
  ASSERT_EQ(observer.frames.size(), 2u);
  EXPECT_NE(observer.frames[1]->text.find(R"("reason":"slow_consumer")"), std::string::npos);
  EXPECT_TRUE(hub_.Presence("circles/p").members.empty());
}

TEST_F(HubTest, NoPresenceOutsidePresenceNamespaces) {
  RecordingSubscriber observer(1), alice(2, "alice");
  hub_.Subscribe(0, "workspace/1", &observer, std::nullopt);
  hub_.Subscribe(0, "workspace/1", &alice, std::nullopt);
  RunAll();
  EXPECT_TRUE(observer.frames.empty());
  EXPECT_EQ(hub_.Presence("workspace/1").members.size(), 1u);
}

TEST(HubLimitTest, NewChannelsPastTheLimitAreRefused) {
  Metrics metrics;
  std::vector<Hub::Executor> executors{[](std::function<void()> t) { t(); }};
  Hub hub(std::move(executors), NamespaceRegistry::Defaults(), metrics, /*max_channels=*/2);
  pb::Event e;
  e.mutable_agent_message()->set_content("x");
  for (const char* ch : {"circles/a", "circles/b"}) {
    e.set_channel(ch);
    ASSERT_TRUE(hub.Publish(e).ok()) << ch;
  }
  e.set_channel("circles/c");
  EXPECT_EQ(hub.Publish(e).status().code(), absl::StatusCode::kResourceExhausted);
  RecordingSubscriber s(1);
  EXPECT_TRUE(hub.Subscribe(0, "circles/d", &s, std::nullopt).refused);
  EXPECT_FALSE(hub.Subscribe(0, "circles/a", &s, std::nullopt).refused);  // existing: fine
  e.set_channel("circles/a");
  EXPECT_TRUE(hub.Publish(e).ok());
  EXPECT_EQ(metrics.channels_current.load(), 2);
  EXPECT_EQ(metrics.channels_refused_total.load(), 2u);
  hub.Unsubscribe(0, "circles/a", &s);
}

TEST(HubLimitTest, ALoweredChannelLimitRefusesNewChannelsAndKeepsTheOnesHeld) {
  Metrics metrics;
  std::vector<Hub::Executor> executors{[](std::function<void()> t) { t(); }};
  Hub hub(std::move(executors), NamespaceRegistry::Defaults(), metrics, /*max_channels=*/100,
          std::chrono::hours(1));
  RecordingSubscriber s(1);
  for (const char* ch : {"circles/a", "circles/b", "circles/c"}) {
    ASSERT_FALSE(hub.Subscribe(0, ch, &s, std::nullopt).refused) << ch;
  }
  HubLimits limits = hub.limits();
  limits.max_channels = 2;
  hub.SetLimits(limits);
  EXPECT_EQ(hub.limits().max_channels, 2u);
  EXPECT_TRUE(hub.Subscribe(0, "circles/d", &s, std::nullopt).refused);
  // The three held stay and keep working.
  EXPECT_FALSE(hub.Subscribe(0, "circles/a", &s, std::nullopt).refused);
  EXPECT_EQ(metrics.channels_current.load(), 3);
  // Raised again: new channels are taken.
  limits.max_channels = 10;
  hub.SetLimits(limits);
  EXPECT_FALSE(hub.Subscribe(0, "circles/d", &s, std::nullopt).refused);
  for (const char* ch : {"circles/a", "circles/b", "circles/c", "circles/d"}) {
    hub.Unsubscribe(0, ch, &s);
  }
}

TEST(HubIdleTest, ALoweredIdleTimeoutAppliesAtTheNextSweep) {
  Metrics metrics;
  std::vector<Hub::Executor> executors{[](std::function<void()> t) { t(); }};
  Hub hub(std::move(executors), NamespaceRegistry::Defaults(), metrics, 1000,
          std::chrono::hours(1));
  RecordingSubscriber s(1);
  hub.Subscribe(0, "circles/quiet", &s, std::nullopt);
  hub.Unsubscribe(0, "circles/quiet", &s, "closed");
  const auto soon = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  EXPECT_EQ(hub.Sweep(soon, SIZE_MAX), 0u);
  HubLimits limits = hub.limits();
  limits.idle_timeout = std::chrono::seconds(30);
  hub.SetLimits(limits);
  EXPECT_EQ(hub.Sweep(soon, SIZE_MAX), 1u);
}

TEST(HubNamespaceTest, ReplacedPoliciesApplyToPublishesFromThenOn) {
  Metrics metrics;
  std::vector<Hub::Executor> executors{[](std::function<void()> t) { t(); }};
  Hub hub(std::move(executors), *NamespaceRegistry::Parse("rooms,feeds:history=5"), metrics);
  const NamespaceConfig* before = hub.namespaces().Find("rooms");
  hub.PublishFrame("rooms/a", R"({"offset":)", "}", 0);
  EXPECT_TRUE(hub.History("rooms/a", 0, 0).frames.empty());
  ASSERT_TRUE(*hub.ReplaceNamespacePolicies(
      *NamespaceRegistry::Parse("rooms:history=10:broadcast,feeds:history=5")));
  // A pointer read before keeps the policy it pointed to; readers from now on see the new one.
  EXPECT_EQ(before->history_size, 0u);
  EXPECT_EQ(hub.namespaces().Find("rooms")->history_size, 10u);
  EXPECT_TRUE(hub.namespaces().all()[0].client_broadcast);
  hub.PublishFrame("rooms/a", R"({"offset":)", "}", 0);
  hub.PublishFrame("rooms/a", R"({"offset":)", "}", 0);
  EXPECT_EQ(hub.History("rooms/a", 0, 0).frames.size(), 2u);
  // The same policies again: nothing changes.
  EXPECT_FALSE(*hub.ReplaceNamespacePolicies(
      *NamespaceRegistry::Parse("rooms:history=10:broadcast,feeds:history=5")));
  // Lowered: the history is trimmed at its next use.
  ASSERT_TRUE(
      *hub.ReplaceNamespacePolicies(*NamespaceRegistry::Parse("rooms:history=1,feeds:history=5")));
  EXPECT_EQ(hub.History("rooms/a", 0, 0).frames.size(), 1u);
}

TEST(HubNamespaceTest, OtherNamesOrAnotherOrderAreRefusedAndChangeNothing) {
  Metrics metrics;
  std::vector<Hub::Executor> executors{[](std::function<void()> t) { t(); }};
  Hub hub(std::move(executors), *NamespaceRegistry::Parse("rooms,feeds"), metrics);
  for (const char* spec : {"rooms:history=3", "rooms:history=3,feeds,more", "feeds,rooms:history=3",
                           "rooms:history=3,logs"}) {
    auto r = hub.ReplaceNamespacePolicies(*NamespaceRegistry::Parse(spec));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << spec;
  }
  EXPECT_EQ(hub.namespaces().Find("rooms")->history_size, 0u);
  EXPECT_EQ(hub.namespaces().all().size(), 2u);
}

TEST(HubNamespaceTest, PresenceTurnedOnOrOffKeepsJoinsAndLeavesInPairs) {
  Metrics metrics;
  std::vector<Hub::Executor> executors{[](std::function<void()> t) { t(); }};
  Hub hub(std::move(executors), *NamespaceRegistry::Parse("rooms"), metrics);
  RecordingSubscriber observer(1), alice(2, "alice"), bob(3, "bob");
  hub.Subscribe(0, "rooms/r", &observer, std::nullopt);
  hub.Subscribe(0, "rooms/r", &alice, std::nullopt);  // not announced: no presence yet
  ASSERT_TRUE(*hub.ReplaceNamespacePolicies(*NamespaceRegistry::Parse("rooms:presence")));
  hub.Subscribe(0, "rooms/r", &bob, std::nullopt);  // announced
  ASSERT_TRUE(*hub.ReplaceNamespacePolicies(*NamespaceRegistry::Parse("rooms")));
  hub.Unsubscribe(0, "rooms/r", &alice, "closed");  // joined unannounced: no agent_left
  hub.Unsubscribe(0, "rooms/r", &bob, "closed");    // joined announced: its agent_left
  ASSERT_EQ(observer.frames.size(), 2u);
  EXPECT_NE(observer.frames[0]->text.find(R"("type":"agent_joined")"), std::string::npos);
  EXPECT_NE(observer.frames[0]->text.find(R"("identity":"bob")"), std::string::npos);
  EXPECT_NE(observer.frames[1]->text.find(R"("type":"agent_left")"), std::string::npos);
  EXPECT_NE(observer.frames[1]->text.find(R"("identity":"bob")"), std::string::npos);
  hub.Unsubscribe(0, "rooms/r", &observer);
}

class RecordingSink : public ClientMessageSink {
 public:
  void OnClientMessage(const ClientMessagePtr& m) override { got.push_back(m); }
  std::vector<ClientMessagePtr> got;
};

TEST_F(HubTest, ForwardsClientMessagesToMatchingSinks) {
  auto all = std::make_shared<RecordingSink>();
  auto circles = std::make_shared<RecordingSink>();
  auto exact = std::make_shared<RecordingSink>();
  hub_.AddSink({"*"}, all);
  hub_.AddSink({"circles/*"}, circles);
  hub_.AddSink({"workspace/1"}, exact);
  auto m = std::make_shared<ClientMessageRecord>();
  m->channel = "circles/a";
  hub_.ForwardToBackends(m);
  EXPECT_EQ(all->got.size(), 1u);
  EXPECT_EQ(circles->got.size(), 1u);
  EXPECT_EQ(exact->got.size(), 0u);
  hub_.RemoveSink(all.get());
  hub_.ForwardToBackends(m);
  EXPECT_EQ(all->got.size(), 1u);
  EXPECT_EQ(hub_.sink_count(), 2u);
}

TEST_F(HubTest, ClientMessagesReachExactlyTheMatchingSinksOnce) {
  struct Case {
    std::vector<std::string> patterns;
    bool lifecycle;
  };
  std::vector<Case> cases = {
      {{"*"}, false},                           // 0: everything
      {{"circles/*"}, false},                   // 1
      {{"circles/a"}, false},                   // 2
      {{"workspace/*", "circles/a"}, false},    // 3: two namespaces, one sink
      {{"circles/a", "*", "circles/*"}, true},  // 4: overlapping patterns, once each
      {{"workspace/1"}, false},                 // 5
      {{"nope/x"}, false},                      // 6: unknown namespace: matches nothing
      {{"circles/b", "agents/*"}, false},       // 7
      {{"circles/a/*"}, false},                 // 8: deeper channels only
  };
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (const auto& c : cases) {
    sinks.push_back(std::make_shared<RecordingSink>());
    hub_.AddSink(c.patterns, sinks.back(), c.lifecycle);
  }
  EXPECT_EQ(hub_.sink_count(), cases.size());
  auto counts = [&] {
    std::vector<size_t> n;
    for (const auto& s : sinks) n.push_back(s->got.size());
    return n;
  };
  auto send = [&](const std::string& channel,
                  ClientMessageRecord::Kind kind = ClientMessageRecord::Kind::kMessage) {
    auto m = std::make_shared<ClientMessageRecord>();
    m->channel = channel;
    m->kind = kind;
    hub_.ForwardToBackends(m);
  };
  send("circles/a");
  EXPECT_EQ(counts(), (std::vector<size_t>{1, 1, 1, 1, 1, 0, 0, 0, 0}));
  send("workspace/1");
  EXPECT_EQ(counts(), (std::vector<size_t>{2, 1, 1, 2, 2, 1, 0, 0, 0}));
  send("agents/7");
  EXPECT_EQ(counts(), (std::vector<size_t>{3, 1, 1, 2, 3, 1, 0, 1, 0}));
  send("circles/a/b");
  EXPECT_EQ(counts(), (std::vector<size_t>{4, 2, 1, 2, 4, 1, 0, 1, 1}));
  // Lifecycle records reach lifecycle sinks only.
  send("circles/a", ClientMessageRecord::Kind::kSubscribed);
  EXPECT_EQ(counts(), (std::vector<size_t>{4, 2, 1, 2, 5, 1, 0, 1, 1}));
  // Removal takes a sink out of every namespace's list.
  hub_.RemoveSink(sinks[3].get());
  hub_.RemoveSink(sinks[4].get());
  hub_.RemoveSink(sinks[6].get());
  EXPECT_EQ(hub_.sink_count(), cases.size() - 3);
  send("circles/a");
  send("workspace/1");
  EXPECT_EQ(counts(), (std::vector<size_t>{6, 3, 2, 2, 5, 2, 0, 1, 1}));
}

// A hub over namespaces given as a spec, with shards that run their tasks when told.
class HubLimitsTest : public testing::Test {
 protected:
  static constexpr const char* kSpec =
      "rooms:history=0,logs:history=10:ttl=1,small:history=100:history_bytes=350,"
      "circles:history=100:presence";

  // Idle channels go at once (idle_timeout 0).
  HubLimitsTest()
      : hub_(MakeExecutors(), *NamespaceRegistry::Parse(kSpec), metrics_, 16,
             std::chrono::milliseconds(0)) {}

  std::vector<Hub::Executor> MakeExecutors() {
    std::vector<Hub::Executor> e;
    for (int i = 0; i < 2; ++i) {
      e.push_back([this, i](std::function<void()> t) { pending_[i].push_back(std::move(t)); });
    }
    return e;
  }
  void RunAll() {
    for (auto& q : pending_) {
      while (!q.empty()) {
        auto t = std::move(q.front());
        q.pop_front();
        t();
      }
    }
  }
  // A frame of exactly 100 bytes for offsets 1..9.
  PublishResult Publish100(const std::string& channel) {
    std::string head = R"({"type":"t","pad":")" + std::string(100 - 32, 'x') + R"(","offset":)";
    return hub_.PublishFrame(channel, head, "}", 0);
  }

  Metrics metrics_;
  std::deque<std::function<void()>> pending_[2];
  Hub hub_;
};

TEST_F(HubLimitsTest, SubscribeUnsubscribeLoopsDoNotFillTheChannelLimit) {
  for (int i = 0; i < 200; ++i) {
    RecordingSubscriber s(1);
    std::string channel = "rooms/loop-" + std::to_string(i);
    ASSERT_FALSE(hub_.Subscribe(0, channel, &s, std::nullopt).refused) << i;
    EXPECT_EQ(metrics_.channels_current.load(), 1);
    hub_.Unsubscribe(0, channel, &s);
  }
  EXPECT_EQ(metrics_.channels_current.load(), 0);
  EXPECT_EQ(metrics_.channels_evicted_total.load(), 200u);
  EXPECT_EQ(metrics_.channels_refused_total.load(), 0u);
}

TEST_F(HubLimitsTest, ChannelWithHistoryStaysAfterItsLastUnsubscribe) {
  RecordingSubscriber s(1);
  hub_.Subscribe(0, "logs/a", &s, std::nullopt);
  Publish100("logs/a");
  hub_.Unsubscribe(0, "logs/a", &s);
  RunAll();
  EXPECT_EQ(metrics_.channels_current.load(), 1);
  EXPECT_EQ(hub_.History("logs/a", 0, 0).frames.size(), 1u);
}

TEST_F(HubLimitsTest, RecreatedChannelHasANewEpochAndRecoveryFails) {
  RecordingSubscriber a(1);
  auto first = hub_.Subscribe(0, "rooms/x", &a, std::nullopt);
  PublishResult p1 = Publish100("rooms/x");
  EXPECT_EQ(p1.offset, 1u);
  EXPECT_EQ(p1.epoch, first.epoch);
  EXPECT_EQ(p1.epoch.size(), 12u);
  hub_.Unsubscribe(0, "rooms/x", &a);
  RunAll();
  EXPECT_EQ(metrics_.channels_current.load(), 0);

  PublishResult p2 = Publish100("rooms/x");  // created again
  EXPECT_EQ(p2.offset, 1u);
  EXPECT_NE(p2.epoch, p1.epoch);
  auto r = hub_.Subscribe(0, "rooms/x", &a, RecoveryRequest{1, p1.epoch});
  EXPECT_FALSE(r.recovered);
  EXPECT_EQ(r.epoch, p2.epoch);
  EXPECT_TRUE(r.missed.empty());
  // Epochs are per channel.
  EXPECT_NE(Publish100("rooms/y").epoch, p2.epoch);
  hub_.Unsubscribe(0, "rooms/x", &a);
}

TEST_F(HubLimitsTest, FramesOfAnEarlierIncarnationAreNotDelivered) {
  RecordingSubscriber a(1), b(2);
  hub_.Subscribe(0, "rooms/x", &a, std::nullopt);
  Publish100("rooms/x");  // offset 1, queued for shard 0
  hub_.Unsubscribe(0, "rooms/x", &a);
  hub_.Subscribe(0, "rooms/x", &b, std::nullopt);  // a new channel, offsets from 1 again
  RunAll();
  EXPECT_TRUE(a.frames.empty());
  EXPECT_TRUE(b.frames.empty()) << "a frame of the freed channel reached its successor";
  Publish100("rooms/x");
  RunAll();
  ASSERT_EQ(b.frames.size(), 1u);
  EXPECT_EQ(b.frames[0]->offset, 1u);
  hub_.Unsubscribe(0, "rooms/x", &b);
}

TEST_F(HubLimitsTest, SweepFreesChannelsWithNeitherSubscribersNorHistory) {
  RecordingSubscriber s(1);
  Publish100("rooms/a");  // no history: idle at once
  Publish100("rooms/b");
  hub_.Subscribe(1, "rooms/b", &s, std::nullopt);
  EXPECT_EQ(metrics_.channels_current.load(), 2);
  EXPECT_EQ(hub_.Sweep(std::chrono::steady_clock::now(), SIZE_MAX), 1u);
  EXPECT_EQ(metrics_.channels_current.load(), 1);
  EXPECT_EQ(metrics_.channels_evicted_total.load(), 1u);
  EXPECT_EQ(hub_.Presence("rooms/b").connection_count, 1u);
  hub_.Unsubscribe(1, "rooms/b", &s);
  RunAll();
  EXPECT_EQ(metrics_.channels_current.load(), 0);
}

TEST_F(HubLimitsTest, SweepFreesExpiredHistoryWithoutTheChannelBeingTouched) {
  RecordingSubscriber s(1);
  for (int i = 0; i < 3; ++i) Publish100("logs/idle");
  hub_.Subscribe(0, "logs/busy", &s, std::nullopt);
  Publish100("logs/busy");
  EXPECT_EQ(metrics_.history_bytes_current.load(), 400);
  EXPECT_EQ(hub_.Sweep(std::chrono::steady_clock::now(), SIZE_MAX), 0u);  // not yet expired
  EXPECT_EQ(metrics_.channels_current.load(), 2);

  auto later = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  EXPECT_EQ(hub_.Sweep(later, SIZE_MAX), 1u);
  EXPECT_EQ(metrics_.history_bytes_current.load(), 0);
  EXPECT_EQ(metrics_.channels_current.load(), 1);  // logs/busy keeps its subscriber
  HistoryResult h = hub_.History("logs/idle", 0, 0);
  EXPECT_TRUE(h.frames.empty());
  EXPECT_TRUE(h.epoch.empty());
  EXPECT_EQ(h.offset, 0u);
  EXPECT_TRUE(hub_.History("logs/busy", 0, 0).frames.empty());
  hub_.Unsubscribe(0, "logs/busy", &s);
  RunAll();
}

TEST_F(HubLimitsTest, SweepDoesBoundedWorkPerCallAndResumes) {
  for (int i = 0; i < 12; ++i) Publish100("rooms/" + std::to_string(i));
  size_t evicted = 0;
  int calls = 0;
  while (metrics_.channels_current.load() > 0 && calls < 1000) {
    size_t n = hub_.Sweep(std::chrono::steady_clock::now(), 3);
    EXPECT_LE(n, 3u);
    evicted += n;
    ++calls;
  }
  EXPECT_EQ(evicted, 12u);
  EXPECT_GT(calls, 4);
}

TEST_F(HubLimitsTest, HistoryKeepsOnlyWhatFitsInItsBytes) {
  std::string epoch;
  for (int i = 0; i < 9; ++i) {
    PublishResult r = Publish100("small/x");
    ASSERT_EQ(r.offset, static_cast<uint64_t>(i + 1));
    epoch = r.epoch;
  }
  EXPECT_EQ(metrics_.history_bytes_current.load(), 300);  // 3 of 100 bytes fit in 350
  HistoryResult h = hub_.History("small/x", 0, 0);
  ASSERT_EQ(h.frames.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(h.frames[i]->offset, 7 + i);
  EXPECT_FALSE(h.complete);
  EXPECT_EQ(h.epoch, epoch);

  RecordingSubscriber a(1);
  auto fell_out = hub_.Subscribe(0, "small/x", &a, RecoveryRequest{5, epoch});
  EXPECT_FALSE(fell_out.recovered);  // 6 is gone
  ASSERT_EQ(fell_out.missed.size(), 3u);
  EXPECT_EQ(fell_out.missed[0]->offset, 7u);
  RecordingSubscriber b(2);
  auto covered = hub_.Subscribe(0, "small/x", &b, RecoveryRequest{6, epoch});
  EXPECT_TRUE(covered.recovered);
  EXPECT_EQ(covered.missed.size(), 3u);

  // A frame larger than the whole bound is not kept, and neither is anything before it.
  std::string big(400, 'x');
  hub_.PublishFrame("small/x", R"({"big":")" + big + R"(","offset":)", "}", 0);
  EXPECT_TRUE(hub_.History("small/x", 0, 0).frames.empty());
  EXPECT_EQ(metrics_.history_bytes_current.load(), 0);
  EXPECT_FALSE(hub_.Subscribe(0, "small/x", &a, RecoveryRequest{9, epoch}).recovered);
  hub_.Unsubscribe(0, "small/x", &a);
  hub_.Unsubscribe(0, "small/x", &b);
  RunAll();
}

TEST(HubIdleTest, AnIdleChannelKeepsItsEpochForAReconnectUntilItsIdleTimeout) {
  Metrics metrics;
  std::vector<Hub::Executor> executors{[](std::function<void()> t) { t(); }};
  Hub hub(std::move(executors), NamespaceRegistry::Defaults(), metrics, 1000,
          std::chrono::hours(1));
  RecordingSubscriber s(1);
  auto first = hub.Subscribe(0, "circles/quiet", &s, std::nullopt);
  hub.Unsubscribe(0, "circles/quiet", &s, "closed");
  EXPECT_EQ(hub.Sweep(std::chrono::steady_clock::now(), SIZE_MAX), 0u);
  auto again = hub.Subscribe(0, "circles/quiet", &s, RecoveryRequest{0, first.epoch});
  EXPECT_EQ(again.epoch, first.epoch);
  EXPECT_TRUE(again.recovered);
  hub.Unsubscribe(0, "circles/quiet", &s, "closed");
  auto later = std::chrono::steady_clock::now() + std::chrono::hours(2);
  EXPECT_EQ(hub.Sweep(later, SIZE_MAX), 1u);
  EXPECT_EQ(metrics.channels_current.load(), 0);
}

TEST(HubIdleTest, UnderPressureIdleChannelsGoAtOnce) {
  Metrics metrics;
  std::vector<Hub::Executor> executors{[](std::function<void()> t) { t(); }};
  Hub hub(std::move(executors), NamespaceRegistry::Defaults(), metrics, /*max_channels=*/16,
          std::chrono::hours(1));
  RecordingSubscriber s(1);
  for (int i = 0; i < 200; ++i) {
    std::string channel = "circles/loop-" + std::to_string(i);
    ASSERT_FALSE(hub.Subscribe(0, channel, &s, std::nullopt).refused) << i;
    hub.Unsubscribe(0, channel, &s);
    ASSERT_LE(metrics.channels_current.load(), 8) << i;
  }
  EXPECT_EQ(metrics.channels_refused_total.load(), 0u);
}

TEST(HubIdleTest, UnderPressurePresenceHistoryDoesNotKeepChannels) {
  // An identified subscriber on a presence namespace leaves agent_joined/agent_left in history;
  // under pressure that must not keep invented channels alive for the history's ttl.
  Metrics metrics;
  std::vector<Hub::Executor> executors{[](std::function<void()> t) { t(); }};
  Hub hub(std::move(executors), NamespaceRegistry::Defaults(), metrics, /*max_channels=*/16,
          std::chrono::hours(1));
  RecordingSubscriber s(1, "flooder");
  for (int i = 0; i < 200; ++i) {
    std::string channel = "circles/presence-loop-" + std::to_string(i);
    ASSERT_FALSE(hub.Subscribe(0, channel, &s, std::nullopt).refused) << i;
    hub.Unsubscribe(0, channel, &s);
    ASSERT_LE(metrics.channels_current.load(), 8) << i;
  }
  EXPECT_EQ(metrics.channels_refused_total.load(), 0u);
}

TEST(HubGaugeTest, GaugesReturnToZeroWhenTheHubGoes) {
  Metrics metrics;
  std::vector<Hub::Executor> executors{[](std::function<void()> t) { t(); }};
  auto hub = std::make_unique<Hub>(std::move(executors), NamespaceRegistry::Defaults(), metrics);
  hub->PublishFrame("circles/a", R"({"offset":)", "}", 0);
  EXPECT_EQ(metrics.channels_current.load(), 1);
  EXPECT_GT(metrics.history_bytes_current.load(), 0);
  hub.reset();
  EXPECT_EQ(metrics.channels_current.load(), 0);
  EXPECT_EQ(metrics.history_bytes_current.load(), 0);
}

}  // namespace
}  // namespace bridge::core
