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
  for (int i = 0; i < 5; ++i) (void)PublishMessage("circles/x", "m");
  RecordingSubscriber a(1);
  // Frames 1..5 are still queued for the shard when the subscription recovers from 2.
  auto r = hub_.Subscribe(0, "circles/x", &a, RecoveryRequest{2, hub_.epoch()});
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
  for (int i = 0; i < 150; ++i) (void)PublishMessage("circles/x", "m");  // history keeps 100
  EXPECT_FALSE(hub_.Subscribe(0, "circles/x", &a, RecoveryRequest{10, hub_.epoch()}).recovered);
  EXPECT_FALSE(hub_.Subscribe(0, "circles/x", &a, RecoveryRequest{140, "other"}).recovered);
  EXPECT_TRUE(hub_.Subscribe(0, "circles/x", &a, RecoveryRequest{50, hub_.epoch()}).recovered);
  EXPECT_FALSE(hub_.Subscribe(0, "circles/x", &a, RecoveryRequest{151, hub_.epoch()}).recovered);
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

}  // namespace
}  // namespace bridge::core
