// Delivery you can trust: recovery after reconnect, ordering under concurrency, presence,
// slow-consumer policies, History. Real server, real sockets, real gRPC.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/json/parse.hpp>
#include <set>
#include <thread>

#include "test_support.h"

namespace bridge::testing {
namespace {

namespace pb = gathering::bridge::v1;

class DeliveryTest : public ::testing::Test {
 protected:
  void Start(const std::string& namespaces = "", size_t max_queue_bytes = 256 * 1024) {
    app::ServerConfig cfg;
    auto ns = core::NamespaceRegistry::Parse(namespaces);
    ASSERT_TRUE(ns.ok()) << ns.status();
    cfg.namespaces = *ns;
    cfg.ws.max_queue_bytes = max_queue_bytes;
    server_ = StartBridge(cfg);
    ASSERT_NE(server_, nullptr);
    stub_ = MakeStub(server_->grpc_port());
  }
  std::unique_ptr<WsClient> Connect(const std::string& target, int rcvbuf = 0) {
    auto c = WsClient::Connect(server_->ws_port(), target, nullptr, rcvbuf);
    EXPECT_NE(c, nullptr) << target;
    return c;
  }
  void Publish(const std::string& channel, int n, const std::string& content = "m") {
    for (int i = 0; i < n; ++i) ASSERT_TRUE(PublishMessage(*stub_, channel, i, content).ok());
  }

  std::unique_ptr<app::BridgeServer> server_;
  std::unique_ptr<pb::EventService::Stub> stub_;
};

TEST_F(DeliveryTest, ReconnectWithSinceRecoversMissedEventsThenLive) {
  ASSERT_NO_FATAL_FAILURE(Start());
  auto c = Connect("/ws/circles/r?ack=1");
  auto sub = c->RecvJson();
  ASSERT_EQ(sub.at("type"), "subscribed");
  std::string epoch(sub.at("epoch").as_string());
  Publish("circles/r", 5);
  for (int i = 1; i <= 5; ++i) ASSERT_EQ(c->RecvEvent().at("offset").to_number<int>(), i);
  c.reset();  // the client goes away
  Publish("circles/r", 5);

  auto back = Connect("/ws/circles/r?since=5&epoch=" + epoch);
  auto first = back->RecvJson();
  EXPECT_EQ(first.at("type"), "subscribed");
  EXPECT_EQ(first.at("recovered"), true);
  EXPECT_EQ(first.at("offset"), 10);
  for (int i = 6; i <= 10; ++i) ASSERT_EQ(back->RecvEvent().at("offset").to_number<int>(), i);
  Publish("circles/r", 1);
  EXPECT_EQ(back->RecvEvent().at("offset"), 11);
}

TEST_F(DeliveryTest, GapOlderThanHistoryIsNotRecovered) {
  ASSERT_NO_FATAL_FAILURE(Start("rooms:history=3"));
  Publish("rooms/a", 10);
  auto c = Connect("/ws/rooms/a?ack=1");
  std::string epoch(c->RecvJson().at("epoch").as_string());
  auto back = Connect("/ws/rooms/a?since=2&epoch=" + epoch);
  auto first = back->RecvJson();
  EXPECT_EQ(first.at("recovered"), false);
  // What is still retained follows.
  for (int i = 8; i <= 10; ++i) ASSERT_EQ(back->RecvEvent().at("offset").to_number<int>(), i);
}

TEST_F(DeliveryTest, ChangedEpochIsNotRecovered) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Publish("circles/e", 3);
  auto c = Connect("/ws/circles/e?since=1&epoch=from-an-old-run");
  auto first = c->RecvJson();
  EXPECT_EQ(first.at("type"), "subscribed");
  EXPECT_EQ(first.at("recovered"), false);
  Publish("circles/e", 1);
  EXPECT_EQ(c->RecvEvent().at("offset"), 4);  // nothing replayed, live goes on
}

TEST_F(DeliveryTest, SubscribeFrameRecovers) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Publish("circles/s", 4);
  auto c = Connect("/ws");
  c->Send(R"({"type":"subscribe","channel":"circles/s","since":0})");
  auto first = c->RecvJson();
  EXPECT_EQ(first.at("recovered"), true);
  for (int i = 1; i <= 4; ++i) ASSERT_EQ(c->RecvEvent().at("offset").to_number<int>(), i);
}

TEST_F(DeliveryTest, ReconnectLoopUnderFullRatePublishingLosesAndDoublesNothing) {
  ASSERT_NO_FATAL_FAILURE(Start("loop:history=100000"));
  constexpr int kEvents = 3000;
  std::atomic<bool> publish_ok{true};
  std::atomic<int> published{0};
  std::thread publisher([&] {
    auto stub = MakeStub(server_->grpc_port());
    for (int i = 0; i < kEvents; ++i) {
      if (!PublishMessage(*stub, "loop/x", i, "m").ok()) publish_ok = false;
      ++published;
    }
  });
  // A failed assertion below returns early: the publisher is joined either way.
  struct Joiner {
    std::thread& t;
    ~Joiner() { t.join(); }
  } joiner{publisher};
  std::vector<int> seen;
  std::string epoch;
  int reconnects = 0;
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (static_cast<int>(seen.size()) < kEvents && std::chrono::steady_clock::now() < deadline) {
    // The publisher may run ahead of the first subscription: start from offset 0 (the history
    // holds every event), then resume from the last offset seen.
    std::string target = "/ws/loop/x?since=0";
    if (!seen.empty())
      target = "/ws/loop/x?since=" + std::to_string(seen.back()) + "&epoch=" + epoch;
    auto c = Connect(target);
    ASSERT_NE(c, nullptr);
    auto sub = c->RecvJson();
    ASSERT_EQ(sub.at("type"), "subscribed");
    if (!seen.empty()) {
      ASSERT_EQ(sub.at("recovered"), true);
    }
    epoch = std::string(sub.at("epoch").as_string());
    // Read a few, then drop the connection abruptly.
    for (int k = 0; k < 97 && static_cast<int>(seen.size()) < kEvents; ++k) {
      auto v = c->RecvEvent(10s);
      auto first_gap = [&] {
        for (size_t i = 0; i < seen.size(); ++i) {
          if (seen[i] != static_cast<int>(i) + 1) return static_cast<int>(i);
        }
        return -1;
      };
      ASSERT_TRUE(v.is_object()) << "stalled after " << seen.size()
                                 << " events (first gap at index " << first_gap() << " offset "
                                 << (first_gap() >= 0 ? seen[first_gap()] : 0) << "; "
                                 << published.load() << " published, " << reconnects
                                 << " reconnects, this connection's target " << target
                                 << "; server: " << server_->metrics().connections_current.load()
                                 << " connections, "
                                 << server_->metrics().subscriptions_current.load()
                                 << " subscriptions, "
                                 << server_->metrics().frames_dropped_total.load()
                                 << " frames dropped)";
      seen.push_back(v.at("offset").to_number<int>());
    }
    ++reconnects;
  }
  EXPECT_TRUE(publish_ok.load());
  ASSERT_EQ(static_cast<int>(seen.size()), kEvents);
  for (int i = 0; i < kEvents; ++i) ASSERT_EQ(seen[i], i + 1) << "at " << i;
  EXPECT_GT(reconnects, 10);
}

TEST_F(DeliveryTest, ConcurrentPublishersAreSeenInOneOrderByEverySubscriber) {
  ASSERT_NO_FATAL_FAILURE(Start("", 16 * 1024 * 1024));
  auto a = Connect("/ws/circles/o?ack=1");
  auto b = Connect("/ws/circles/o?ack=1");
  a->RecvJson();
  b->RecvJson();
  constexpr int kPerPublisher = 500;
  std::vector<std::thread> publishers;
  for (int p = 0; p < 3; ++p) {
    publishers.emplace_back([&, p] {
      auto stub = MakeStub(server_->grpc_port());
      for (int i = 0; i < kPerPublisher; ++i) {
        // +1: an agent_id of 0 is a default value, which proto3 JSON omits.
        PublishMessage(*stub, "circles/o", p * kPerPublisher + i + 1, "m");
      }
    });
  }
  for (auto& t : publishers) t.join();
  std::vector<int> order_a, order_b;
  for (int i = 0; i < 3 * kPerPublisher; ++i) {
    auto va = a->RecvEvent();
    auto vb = b->RecvEvent();
    ASSERT_TRUE(va.is_object() && vb.is_object()) << "missing at " << i;
    ASSERT_EQ(va.at("offset").to_number<int>(), i + 1);
    order_a.push_back(va.at("data").at("agent_id").to_number<int>());
    order_b.push_back(vb.at("data").at("agent_id").to_number<int>());
  }
  EXPECT_EQ(order_a, order_b);
  EXPECT_EQ(std::set<int>(order_a.begin(), order_a.end()).size(), 3u * kPerPublisher);
}

TEST_F(DeliveryTest, PresenceCountsTwoTabsAsOneMember) {
  ASSERT_NO_FATAL_FAILURE(Start());
  auto observer = Connect("/ws/circles/p?ack=1");
  observer->RecvJson();
  auto tab1 = Connect("/ws/circles/p?client=alice&ack=1");
  tab1->RecvJson();
  auto joined = observer->RecvEvent();
  EXPECT_EQ(joined.at("type"), "agent_joined");
  EXPECT_EQ(joined.at("data").at("identity"), "alice");
  auto tab2 = Connect("/ws/circles/p?client=alice&ack=1");
  tab2->RecvJson();

  pb::PresenceRequest req;
  req.set_channel("circles/p");
  pb::PresenceResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->Presence(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.members_size(), 1);
  EXPECT_EQ(resp.members(0).identity(), "alice");
  EXPECT_EQ(resp.members(0).connections(), 2u);
  EXPECT_EQ(resp.member_count(), 1u);
  EXPECT_EQ(resp.connection_count(), 3u);

  tab1.reset();
  ASSERT_TRUE(WaitFor([&] { return server_->metrics().connections_current.load() == 2; }));
  tab2.reset();
  auto left = observer->RecvEvent();
  EXPECT_EQ(left.at("type"), "agent_left") << "a second join or an early leave arrived";
  EXPECT_EQ(left.at("data").at("identity"), "alice");
  EXPECT_EQ(left.at("data").at("reason"), "closed");
}

TEST_F(DeliveryTest, LifecycleStreamReportsJoinsAndLeavesWithReasons) {
  ASSERT_NO_FATAL_FAILURE(Start());
  grpc::ClientContext ctx;
  pb::SubscribeRequest req;
  req.add_channels("circles/*");
  req.set_lifecycle(true);
  auto reader = stub_->Subscribe(&ctx, req);
  ASSERT_TRUE(WaitFor([&] { return server_->metrics().backend_streams_current.load() == 1; }));
  auto c = Connect("/ws/circles/l?client=bob&ack=1");
  c->RecvJson();
  pb::ClientMessage m;
  ASSERT_TRUE(reader->Read(&m));
  EXPECT_EQ(m.kind(), pb::ClientMessage::SUBSCRIBED);
  EXPECT_EQ(m.identity(), "bob");
  EXPECT_EQ(m.channel(), "circles/l");
  c->Send(R"({"type":"unsubscribe","channel":"circles/l"})");
  ASSERT_TRUE(reader->Read(&m));
  EXPECT_EQ(m.kind(), pb::ClientMessage::UNSUBSCRIBED);
  EXPECT_EQ(m.reason(), "unsubscribed");
  ctx.TryCancel();
  reader->Finish();
}

TEST_F(DeliveryTest, HistoryRpcReturnsRetainedFrames) {
  ASSERT_NO_FATAL_FAILURE(Start("rooms:history=5"));
  Publish("rooms/h", 8);
  pb::HistoryRequest req;
  req.set_channel("rooms/h");
  req.set_since(2);
  pb::HistoryResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->History(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.offset(), 8u);
  EXPECT_FALSE(resp.complete());  // 3 was evicted
  ASSERT_EQ(resp.messages_size(), 5);
  EXPECT_EQ(resp.messages(0).offset(), 4u);
  EXPECT_EQ(boost::json::parse(resp.messages(4).json()).at("offset"), 8);

  pb::HistoryRequest bad;
  bad.set_channel("nope");
  grpc::ClientContext ctx2;
  EXPECT_EQ(stub_->History(&ctx2, bad, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// A stalled reader on a namespace with `policy`, next to a healthy one; returns the stalled
// reader once the burst is published.
class SlowPolicyTest : public DeliveryTest {
 protected:
  static constexpr int kEvents = 3000;
  std::unique_ptr<WsClient> Burst(const std::string& channel) {
    auto stalled = Connect("/ws/" + channel + "?ack=1", 4096);
    auto healthy = Connect("/ws/" + channel + "?ack=1");
    EXPECT_EQ(stalled->RecvJson().at("type"), "subscribed");
    EXPECT_EQ(healthy->RecvJson().at("type"), "subscribed");
    std::atomic<int> received{0};
    std::thread reader([&] {
      for (int i = 1; i <= kEvents; ++i) {
        auto v = healthy->RecvEvent(10s);
        if (!v.is_object() || !v.as_object().contains("offset") ||
            v.at("offset").to_number<int>() != i) {
          return;
        }
        received = i;
      }
    });
    Publish(channel, kEvents, std::string(4096, 'p'));
    reader.join();
    EXPECT_EQ(received.load(), kEvents) << "the healthy reader missed events";
    return stalled;
  }
};

TEST_F(SlowPolicyTest, DropOldestSendsGapsAndKeepsTheConnection) {
  ASSERT_NO_FATAL_FAILURE(Start("feed:slow=drop_oldest", 2 * 1024 * 1024));
  auto stalled = Burst("feed/x");
  EXPECT_EQ(server_->metrics().slow_consumer_closes_total.load(), 0u);
  std::set<int> covered;
  int gaps = 0;
  int last = 0;
  while (last < kEvents) {
    auto v = stalled->RecvJson(10s);
    ASSERT_TRUE(v.is_object()) << "stalled reader lost the stream after " << last;
    if (v.at("type") == "gap") {
      ++gaps;
      for (int i = v.at("from").to_number<int>(); i <= v.at("to").to_number<int>(); ++i) {
        ASSERT_TRUE(covered.insert(i).second) << "offset " << i << " twice";
      }
      continue;
    }
    last = v.at("offset").to_number<int>();
    ASSERT_TRUE(covered.insert(last).second) << "offset " << last << " twice";
  }
  EXPECT_GT(gaps, 0);
  EXPECT_EQ(covered.size(), static_cast<size_t>(kEvents))
      << "an offset was neither sent nor in a gap";
  std::string body;
  HttpStatus(server_->ws_port(), "/metrics", false, &body);
  EXPECT_NE(body.find("bridge_namespace_gaps_total{namespace=\"feed\"}"), std::string::npos);
}

TEST_F(SlowPolicyTest, LatestOnlyKeepsTheNewestAndKeepsTheConnection) {
  ASSERT_NO_FATAL_FAILURE(Start("state:slow=latest_only", 2 * 1024 * 1024));
  auto stalled = Burst("state/x");
  EXPECT_EQ(server_->metrics().slow_consumer_closes_total.load(), 0u);
  int last = 0;
  int frames = 0;
  while (last < kEvents) {
    auto v = stalled->RecvEvent(10s);
    ASSERT_TRUE(v.is_object()) << "stalled reader lost the stream after " << last;
    int offset = v.at("offset").to_number<int>();
    ASSERT_GT(offset, last);
    last = offset;
    ++frames;
  }
  EXPECT_LT(frames, kEvents);  // some were replaced by newer ones
}

}  // namespace
}  // namespace bridge::testing
