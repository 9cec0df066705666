// Three real bridges on one real redis-server (issue #11, "Tests (real parts)"): fan-out across
// nodes in one order, client frames reaching a backend on another node, recovery on another
// node, History and Presence answering the same everywhere, presence after kill -9 of a node,
// Redis killed and restarted mid-stream, and the pub/sub connection killed mid-stream.
//
// Every wait is bounded and awaits an event (a frame, an RPC answer, a state an RPC reports);
// "exactly once" is checked with a sentinel: after the awaited frames, the next one must be a
// marker sent last, not a late duplicate.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cctype>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "cluster.h"

namespace bridge::multinode {
namespace {

namespace pb = gathering::bridge::v1;
using Clock = std::chrono::steady_clock;
using testing::WsClient;

std::string Ms(Clock::duration d) {
  return absl::StrCat(std::chrono::duration_cast<std::chrono::milliseconds>(d).count(), " ms");
}

std::string StringField(const boost::json::object& o, const char* key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : "";
}

std::string IdentityOf(const boost::json::object& frame) {
  const auto* d = frame.if_contains("data");
  if (d == nullptr || !d->is_object()) return "";
  return StringField(d->as_object(), "identity");
}

// "" when `events` carry exactly the offsets of `expected`, in ascending order, each with the
// content published at that offset; otherwise the first difference.
std::string CheckSequence(const std::vector<boost::json::object>& events,
                          const std::map<uint64_t, std::string>& expected) {
  size_t j = 0;
  for (const auto& [offset, content] : expected) {
    if (j >= events.size()) {
      return absl::StrCat("only ", events.size(), " of ", expected.size(),
                          " events; the first missing is offset ", offset, " (", content, ")");
    }
    const uint64_t got = OffsetOf(events[j]);
    if (got != offset || ContentOf(events[j]) != content) {
      return absl::StrCat("event #", j, " is offset ", got, " '", ContentOf(events[j]),
                          "', expected offset ", offset, " '", content,
                          "': ", boost::json::serialize(events[j]));
    }
    ++j;
  }
  if (j != events.size()) {
    return absl::StrCat(events.size() - j, " events more than published, the first: ",
                        boost::json::serialize(events[j]));
  }
  return "";
}

// "" when the publish responses' offsets are exactly 1..n; else what is wrong.
std::string CheckOffsetsDense(const std::map<uint64_t, std::string>& by_offset, size_t n) {
  if (by_offset.size() != n) {
    return absl::StrCat(by_offset.size(), " distinct offsets for ", n, " publishes");
  }
  if (n > 0 && (by_offset.begin()->first != 1 || by_offset.rbegin()->first != n)) {
    return absl::StrCat("offsets run ", by_offset.begin()->first, "..", by_offset.rbegin()->first,
                        ", expected 1..", n);
  }
  return "";
}

class MultiNodeTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) std::cerr << "cluster state at the failure:" << cluster_.Diagnostics();
  }

  void StartCluster(ClusterOptions options = {}) {
    absl::Status s = cluster_.Start(std::move(options));
    ASSERT_TRUE(s.ok()) << s;
  }

  // A client on `node` whose first frame is `subscribed` (the target asks ack=1 or since);
  // nullptr, with a failure recorded, otherwise.
  std::unique_ptr<WsClient> Join(int node, const std::string& target,
                                 boost::json::object* subscribed = nullptr) {
    std::string error;
    auto ws = cluster_.Connect(node, target, &error);
    if (ws == nullptr) {
      ADD_FAILURE() << "node" << node << " refused " << target << ": " << error;
      return nullptr;
    }
    std::vector<boost::json::object> before;
    auto sub = NextOfType(*ws, "subscribed", 10s, &before);
    if (sub.empty()) {
      ADD_FAILURE() << "no subscribed frame from node" << node << " for " << target << "; frames:\n"
                    << Describe(before);
      return nullptr;
    }
    if (!before.empty()) {
      ADD_FAILURE() << "frames before subscribed on " << target << ":\n" << Describe(before);
    }
    if (subscribed != nullptr) *subscribed = std::move(sub);
    return ws;
  }

  absl::StatusOr<pb::PresenceResponse> Presence(int node, const std::string& channel) {
    auto stub = cluster_.Stub(node);
    pb::PresenceRequest req;
    req.set_channel(channel);
    pb::PresenceResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 5s);
    grpc::Status s = stub->Presence(&ctx, req, &resp);
    if (!s.ok()) return absl::UnknownError(absl::StrCat("Presence: ", s.error_message()));
    return resp;
  }

  // Polls Presence on `node` (a state with no event to wait on) until `pred` holds.
  bool AwaitPresence(int node, const std::string& channel,
                     const std::function<bool(const pb::PresenceResponse&)>& pred,
                     std::string* last, std::chrono::milliseconds timeout = 5s) {
    return testing::WaitFor(
        [&] {
          auto p = Presence(node, channel);
          if (!p.ok()) {
            *last = p.status().ToString();
            return false;
          }
          *last = p->ShortDebugString();
          return pred(*p);
        },
        timeout);
  }

  absl::StatusOr<pb::HistoryResponse> History(int node, const std::string& channel, uint64_t since,
                                              uint32_t limit) {
    auto stub = cluster_.Stub(node);
    pb::HistoryRequest req;
    req.set_channel(channel);
    req.set_since(since);
    req.set_limit(limit);
    pb::HistoryResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 5s);
    grpc::Status s = stub->History(&ctx, req, &resp);
    if (!s.ok()) return absl::UnknownError(absl::StrCat("History: ", s.error_message()));
    return resp;
  }

  // Publishes `content` via `node` and expects every client in `clients` to receive it as its
  // next event (nothing else in between: no duplicate, no stray event).
  void ExpectNextEventEverywhere(int node, const std::string& channel, const std::string& content,
                                 const std::vector<WsClient*>& clients) {
    auto stub = cluster_.Stub(node);
    pb::PublishResponse resp;
    grpc::Status s = Publish(*stub, channel, 99, content, &resp);
    ASSERT_TRUE(s.ok()) << "publish of " << content << " via node" << node << ": "
                        << s.error_message();
    for (size_t i = 0; i < clients.size(); ++i) {
      auto ev = NextEvent(*clients[i]);
      EXPECT_EQ(ContentOf(ev), content)
          << "client #" << i << ": the next event after the checked ones is not the marker '"
          << content << "': " << boost::json::serialize(ev);
      EXPECT_EQ(OffsetOf(ev), resp.offset()) << "client #" << i;
    }
  }

  void RedisKill9AndRestart(bool await_every_node);

  Cluster cluster_;
};

// 1. Subscribers on every node, three publishers on three nodes racing on one channel: every
// subscriber gets every event once, all in the one order the publish responses' offsets give.
TEST_F(MultiNodeTest, CrossNodeFanOutOneOrderNoLossNoDuplicate) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const std::string channel = "workspace/fanout";
  constexpr int kPublishers = 3;
  constexpr int kPerPublisher = 100;
  constexpr size_t kTotal = kPublishers * kPerPublisher;
  const std::vector<int> sub_nodes = {0, 0, 1, 2};

  std::vector<std::unique_ptr<WsClient>> subs;
  for (int n : sub_nodes) {
    boost::json::object sub;
    subs.push_back(Join(n, "/ws/" + channel + "?ack=1", &sub));
    ASSERT_NE(subs.back(), nullptr);
    EXPECT_EQ(OffsetOf(sub), 0u) << "a fresh channel: " << boost::json::serialize(sub);
  }

  std::vector<Received> received(subs.size());
  std::vector<std::thread> collectors;
  for (size_t i = 0; i < subs.size(); ++i) {
    collectors.emplace_back([&, i] { received[i] = CollectEvents(*subs[i], kTotal, 15s); });
  }
  struct Result {
    grpc::Status status;
    pb::PublishResponse response;
    std::string content;
  };
  std::vector<std::vector<Result>> results(kPublishers);
  std::vector<std::thread> publishers;
  for (int p = 0; p < kPublishers; ++p) {
    publishers.emplace_back([&, p] {
      auto stub = cluster_.Stub(p % cluster_.size());
      for (int k = 0; k < kPerPublisher; ++k) {
        Result r;
        r.content = absl::StrCat("p", p, "-", k);
        r.status = Publish(*stub, channel, p + 1, r.content, &r.response);
        results[p].push_back(std::move(r));
      }
    });
  }
  for (auto& t : publishers) t.join();
  for (auto& t : collectors) t.join();

  std::map<uint64_t, std::string> by_offset;
  int failed = 0;
  int reused = 0;
  for (int p = 0; p < kPublishers; ++p) {
    uint64_t previous = 0;
    for (const Result& r : results[p]) {
      if (!r.status.ok()) {
        if (failed++ == 0) {
          ADD_FAILURE() << "publish " << r.content << " via node" << p % cluster_.size()
                        << " failed: " << r.status.error_code() << " " << r.status.error_message();
        }
        continue;
      }
      EXPECT_GT(r.response.offset(), previous) << "one publisher's offsets must grow";
      previous = r.response.offset();
      auto [it, fresh] = by_offset.emplace(r.response.offset(), r.content);
      if (!fresh && reused++ == 0) {
        ADD_FAILURE() << "offset " << r.response.offset() << " given to two publishes ("
                      << it->second << " and " << r.content
                      << "): the nodes do not share one channel";
      }
    }
  }
  ASSERT_EQ(failed, 0) << failed << " publishes failed";
  ASSERT_EQ(reused, 0) << reused << " publishes got an offset another publish already had";
  ASSERT_EQ(CheckOffsetsDense(by_offset, kTotal), "");

  for (size_t i = 0; i < subs.size(); ++i) {
    EXPECT_EQ(CheckSequence(received[i].events, by_offset), "")
        << "subscriber #" << i << " on node" << sub_nodes[i] << ": " << received[i].Summary();
  }
  std::vector<WsClient*> all;
  for (auto& s : subs) all.push_back(s.get());
  ExpectNextEventEverywhere(1, channel, "sentinel", all);
}

// 2. A client frame on node B reaches backend Subscribe streams held by nodes C and A exactly
// once, and (circles broadcast) a client subscribed on node A.
TEST_F(MultiNodeTest, ClientMessageReachesBackendsOnOtherNodesOnce) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const std::string channel = "circles/c2b";
  BackendStream on_c(cluster_.Stub(2), {"circles/*"});
  BackendStream on_a(cluster_.Stub(0), {channel});
  for (int n : {0, 2}) {
    ASSERT_TRUE(testing::WaitFor([&] {
      return cluster_.Metric(n, "bridge_backend_streams_current").value_or(0) == 1;
    })) << "node"
        << n << " never counted its Subscribe stream";
  }
  auto peer = Join(0, "/ws/" + channel + "?ack=1");
  ASSERT_NE(peer, nullptr);
  auto sender = Join(1, "/ws/" + channel + "?ack=1");
  ASSERT_NE(sender, nullptr);

  // Probes until both backends hear node B: how soon a new stream is known across nodes is
  // the implementation's business; what counts is exactly-once after that.
  auto has = [](const std::string& type) {
    return [type](const std::vector<pb::ClientMessage>& ms) {
      for (const auto& m : ms) {
        if (m.json().find("\"type\":\"" + type + "\"") != std::string::npos) return true;
      }
      return false;
    };
  };
  const auto probe_deadline = Clock::now() + 10s;
  int probes = 0;
  while (!(has("probe")(on_c.messages()) && has("probe")(on_a.messages()))) {
    ASSERT_TRUE(Clock::now() < probe_deadline)
        << probes << " probes from node1 in 10 s; the backend on node2 got "
        << on_c.messages().size() << " messages, the one on node0 " << on_a.messages().size()
        << " (stream ended: " << on_c.ended() << "/" << on_a.ended() << ")";
    sender->Send(absl::StrCat(R"({"type":"probe","n":)", probes++, "}"));
    // Wait on a backend that has none yet (at most 5 probes a second: far under the rate
    // limit).
    BackendStream& waiting = has("probe")(on_c.messages()) ? on_a : on_c;
    waiting.WaitUntil(has("probe"), 200ms);
  }
  const std::string the_one = R"({"type":"message","content":"the-one","n":1})";
  sender->Send(the_one);
  sender->Send(R"({"type":"marker"})");

  for (BackendStream* b : {&on_c, &on_a}) {
    const char* where = b == &on_c ? "node2 (circles/*)" : "node0 (exact)";
    ASSERT_TRUE(b->WaitUntil(has("marker"), 10s))
        << "the backend on " << where << " did not get the marker; ended " << b->ended() << " "
        << b->status().error_message();
    int count = 0;
    bool marker_seen = false;
    for (const auto& m : b->messages()) {
      if (m.json().find("\"marker\"") != std::string::npos) marker_seen = true;
      if (m.json().find("the-one") == std::string::npos) continue;
      ++count;
      EXPECT_FALSE(marker_seen) << where << ": the message arrived after the later marker";
      EXPECT_EQ(m.channel(), channel);
      EXPECT_EQ(m.kind(), pb::ClientMessage::MESSAGE);
      EXPECT_EQ(m.connection_id().rfind("c-", 0), 0u) << m.connection_id();
      EXPECT_EQ(boost::json::parse(m.json()), boost::json::parse(the_one)) << m.json();
    }
    EXPECT_EQ(count, 1) << "the backend on " << where << " got the client message " << count
                        << " times";
  }

  // The peer on node0 gets the broadcast once, then the marker.
  boost::json::object ev;
  std::vector<boost::json::object> seen;
  do {
    ev = NextEvent(*peer);
    seen.push_back(ev);
  } while (TypeOf(ev) == "probe");
  EXPECT_EQ(TypeOf(ev), "message") << "the broadcast did not reach node0:\n" << Describe(seen);
  EXPECT_EQ(StringField(ev, "content"), "the-one");
  EXPECT_EQ(StringField(ev, "channel"), channel);
  EXPECT_EQ(StringField(ev, "sender").rfind("c-", 0), 0u) << boost::json::serialize(ev);
  EXPECT_EQ(TypeOf(NextEvent(*peer)), "marker") << "a duplicate or a stray frame";
}

// 3. Disconnect from node A, publish via node C, resume on node B with since+epoch: recovered,
// exactly the missed events, then live ones.
TEST_F(MultiNodeTest, RecoveryOnAnotherNode) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const std::string channel = "circles/recovery";
  auto via_c = cluster_.Stub(2);
  for (int i = 0; i < 2; ++i)
    ASSERT_TRUE(Publish(*via_c, channel, 1, absl::StrCat("old-", i)).ok());

  boost::json::object sub;
  auto a = Join(0, "/ws/" + channel + "?ack=1", &sub);
  ASSERT_NE(a, nullptr);
  const std::string epoch = StringField(sub, "epoch");
  ASSERT_FALSE(epoch.empty()) << boost::json::serialize(sub);
  EXPECT_EQ(OffsetOf(sub), 2u) << "node0 does not see the 2 events published via node2: "
                               << boost::json::serialize(sub);
  auto via_b = cluster_.Stub(1);
  ASSERT_TRUE(Publish(*via_b, channel, 1, "live-1").ok());
  auto ev = NextEvent(*a);
  ASSERT_EQ(ContentOf(ev), "live-1")
      << "a publish via node1 did not reach a client on node0: " << boost::json::serialize(ev);
  const uint64_t last = OffsetOf(ev);
  ASSERT_EQ(last, 3u);
  a.reset();

  constexpr int kMissed = 5;
  std::map<uint64_t, std::string> missed;
  for (int i = 0; i < kMissed; ++i) {
    pb::PublishResponse resp;
    const std::string content = absl::StrCat("missed-", i);
    ASSERT_TRUE(Publish(*via_c, channel, 1, content, &resp).ok());
    EXPECT_EQ(resp.epoch(), epoch);
    missed[resp.offset()] = content;
  }

  boost::json::object resumed;
  auto b = Join(1, absl::StrCat("/ws/", channel, "?since=", last, "&epoch=", epoch), &resumed);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(boost::json::value(resumed["recovered"]), boost::json::value(true))
      << boost::json::serialize(resumed);
  EXPECT_EQ(StringField(resumed, "epoch"), epoch);
  EXPECT_EQ(OffsetOf(resumed), last + kMissed);
  Received r = CollectEvents(*b, kMissed, 10s);
  EXPECT_EQ(CheckSequence(r.events, missed), "") << r.Summary();
  ExpectNextEventEverywhere(0, channel, "live-2", {b.get()});
}

// A node shutting down tells each client where every channel of its resumes (after the last
// event it queued for it); the client resumes there on another node and misses nothing that was
// published while it moved.
TEST_F(MultiNodeTest, ShutdownTellsResumePositionsAnotherNodeResumesThere) {
  ASSERT_NO_FATAL_FAILURE(StartCluster({.nodes = 2}));
  const std::string first = "circles/moving-a";
  const std::string second = "circles/moving-b";
  boost::json::object sub;
  auto a = Join(0, "/ws/" + first + "?ack=1", &sub);
  ASSERT_NE(a, nullptr);
  a->Send(R"({"type":"subscribe","channel":")" + second + R"("})");
  auto sub2 = NextOfType(*a, "subscribed");
  ASSERT_FALSE(sub2.empty()) << "no subscribed frame for " << second;
  auto via_b = cluster_.Stub(1);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Publish(*via_b, first, 1, absl::StrCat("a-", i)).ok());
  ASSERT_TRUE(Publish(*via_b, second, 1, "b-0").ok());
  Received before = CollectEvents(*a, 4, 10s);
  ASSERT_EQ(before.events.size(), 4u) << before.Summary();

  // The node stops (SIGTERM) while the client reads on its own thread: the reconnect frame is
  // the last text frame, then the close 1001.
  boost::json::object reconnect;
  std::vector<boost::json::object> after;
  int code = 0;
  std::thread reader([&] {
    reconnect = NextOfType(*a, "reconnect", 15s, &after);
    code = a->AwaitClose(15s);
  });
  EXPECT_EQ(cluster_.node(0).Stop(15s), 0) << cluster_.node(0).LogTail();
  reader.join();
  ASSERT_FALSE(reconnect.empty()) << "no reconnect frame before the close; frames:\n"
                                  << Describe(after);
  EXPECT_EQ(code, 1001);
  EXPECT_TRUE(after.empty()) << "frames between the last event and the reconnect frame:\n"
                             << Describe(after);
  const auto* positions = reconnect.if_contains("positions");
  ASSERT_TRUE(positions != nullptr && positions->is_object()) << boost::json::serialize(reconnect);
  ASSERT_EQ(positions->as_object().size(), 2u) << boost::json::serialize(reconnect);
  const auto& pa = positions->as_object().at(first).as_object();
  const auto& pb2 = positions->as_object().at(second).as_object();
  EXPECT_EQ(StringField(pa, "epoch"), StringField(sub, "epoch"));
  EXPECT_EQ(pa.at("offset").to_number<uint64_t>(), 3u) << boost::json::serialize(reconnect);
  EXPECT_EQ(StringField(pb2, "epoch"), StringField(sub2, "epoch"));
  EXPECT_EQ(pb2.at("offset").to_number<uint64_t>(), 1u) << boost::json::serialize(reconnect);

  // Published while the client moves.
  std::map<uint64_t, std::string> missed;
  for (int i = 3; i < 5; ++i) {
    pb::PublishResponse resp;
    const std::string content = absl::StrCat("a-", i);
    ASSERT_TRUE(Publish(*via_b, first, 1, content, &resp).ok());
    missed[resp.offset()] = content;
  }
  boost::json::object resumed;
  auto b = Join(1,
                absl::StrCat("/ws/", first, "?since=", pa.at("offset").to_number<uint64_t>(),
                             "&epoch=", StringField(pa, "epoch")),
                &resumed);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(boost::json::value(resumed["recovered"]), boost::json::value(true))
      << boost::json::serialize(resumed);
  Received r = CollectEvents(*b, missed.size(), 10s);
  EXPECT_EQ(CheckSequence(r.events, missed), "") << r.Summary();
}

// 4. History answers the same on every node, including one that never touched the channel.
TEST_F(MultiNodeTest, HistoryIsTheSameOnEveryNode) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const std::string channel = "workspace/history";
  constexpr int kEvents = 6;
  std::string epoch;
  for (int i = 0; i < kEvents; ++i) {
    auto stub = cluster_.Stub(i % 2);  // nodes 0 and 1 only
    pb::PublishResponse resp;
    ASSERT_TRUE(Publish(*stub, channel, 1, absl::StrCat("h-", i), &resp).ok());
    EXPECT_EQ(resp.offset(), static_cast<uint64_t>(i + 1)) << "via node" << i % 2;
    if (i == 0) epoch = resp.epoch();
    EXPECT_EQ(resp.epoch(), epoch) << "the epoch changed between nodes";
  }

  auto reference = History(0, channel, 0, 0);
  ASSERT_TRUE(reference.ok()) << reference.status();
  EXPECT_EQ(reference->epoch(), epoch);
  EXPECT_EQ(reference->offset(), static_cast<uint64_t>(kEvents));
  EXPECT_TRUE(reference->complete());
  ASSERT_EQ(reference->messages_size(), kEvents) << reference->ShortDebugString();
  for (int i = 0; i < kEvents; ++i) {
    EXPECT_EQ(reference->messages(i).offset(), static_cast<uint64_t>(i + 1));
    EXPECT_EQ(ContentOf(boost::json::parse(reference->messages(i).json())), absl::StrCat("h-", i));
  }
  auto window = History(0, channel, 2, 2);
  ASSERT_TRUE(window.ok()) << window.status();
  ASSERT_EQ(window->messages_size(), 2) << window->ShortDebugString();
  EXPECT_EQ(window->messages(0).offset(), 3u);
  EXPECT_EQ(window->messages(1).offset(), 4u);

  for (int n = 1; n < cluster_.size(); ++n) {
    auto all = History(n, channel, 0, 0);
    ASSERT_TRUE(all.ok()) << all.status();
    EXPECT_EQ(all->SerializeAsString(), reference->SerializeAsString())
        << "node" << n << ": " << all->ShortDebugString()
        << "\nnode0: " << reference->ShortDebugString();
    auto w = History(n, channel, 2, 2);
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_EQ(w->SerializeAsString(), window->SerializeAsString())
        << "node" << n << ": " << w->ShortDebugString()
        << "\nnode0: " << window->ShortDebugString();
  }
}

// 5. An identity with connections on two nodes is one member with two connections on every
// node; agent_joined / agent_left are published once per real change.
TEST_F(MultiNodeTest, PresenceAcrossNodes) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const std::string channel = "circles/presence";
  const std::string path = "/ws/" + channel;
  auto observer = Join(2, path + "?ack=1");
  ASSERT_NE(observer, nullptr);

  auto tab1 = Join(0, path + "?client=alice&ack=1");
  ASSERT_NE(tab1, nullptr);
  auto joined = NextEvent(*observer);
  ASSERT_EQ(TypeOf(joined), "agent_joined") << boost::json::serialize(joined);
  EXPECT_EQ(IdentityOf(joined), "alice");

  auto tab2 = Join(1, path + "?client=alice&ack=1");
  ASSERT_NE(tab2, nullptr);
  std::string last;
  auto two_tabs = [](const pb::PresenceResponse& p) {
    return p.members_size() == 1 && p.members(0).connections() == 2;
  };
  for (int n = 0; n < cluster_.size(); ++n) {
    ASSERT_TRUE(AwaitPresence(n, channel, two_tabs, &last))
        << "node" << n << " does not list alice once with 2 connections: " << last;
    auto p = Presence(n, channel);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->members(0).identity(), "alice");
    EXPECT_EQ(p->member_count(), 1u) << "node" << n;
    EXPECT_EQ(p->connection_count(), 3u) << "node" << n << ": the observer and two tabs";
  }
  // No second agent_joined for the second tab: the next event is a marker.
  ASSERT_NO_FATAL_FAILURE(ExpectNextEventEverywhere(0, channel, "marker-1", {observer.get()}));

  tab1.reset();
  for (int n = 0; n < cluster_.size(); ++n) {
    ASSERT_TRUE(AwaitPresence(
        n, channel,
        [](const pb::PresenceResponse& p) {
          return p.members_size() == 1 && p.members(0).connections() == 1;
        },
        &last))
        << "node" << n << " after alice's tab on node0 closed: " << last;
  }
  // Alice is still a member: no agent_left.
  ASSERT_NO_FATAL_FAILURE(ExpectNextEventEverywhere(1, channel, "marker-2", {observer.get()}));

  tab2.reset();
  auto left = NextEvent(*observer);
  EXPECT_EQ(TypeOf(left), "agent_left") << boost::json::serialize(left);
  EXPECT_EQ(IdentityOf(left), "alice");
  for (int n = 0; n < cluster_.size(); ++n) {
    ASSERT_TRUE(AwaitPresence(
        n, channel, [](const pb::PresenceResponse& p) { return p.members_size() == 0; }, &last))
        << "node" << n << " still lists a member: " << last;
  }
  // Exactly one agent_left.
  ExpectNextEventEverywhere(2, channel, "marker-3", {observer.get()});
}

// 5b. A node killed with kill -9 cannot say goodbye: its members are removed after the
// presence lease, with one agent_left each, and the other nodes' members stay.
TEST_F(MultiNodeTest, PresenceLeaseRemovesMembersOfAKilledNode) {
  const auto lease_default = BinaryFlagDefault("presence_lease");
  if (!lease_default.has_value()) {
    GTEST_SKIP() << "gathering-bridge has no --presence_lease flag yet (issue #11: a dead "
                    "node's members are removed after a bounded lease); skipped until it has";
  }
  // A duration flag prints its default like "30s"; a plain number is taken as seconds.
  const bool duration = !lease_default->empty() && !std::isdigit(lease_default->back());
  constexpr int kLeaseSeconds = 2;
  ASSERT_NO_FATAL_FAILURE(StartCluster(
      {.extra_flags = {absl::StrCat("--presence_lease=", kLeaseSeconds, duration ? "s" : "")}}));
  const std::string channel = "circles/lease";
  const std::string path = "/ws/" + channel;
  auto observer = Join(2, path + "?ack=1");
  ASSERT_NE(observer, nullptr);
  auto bob = Join(0, path + "?client=bob&ack=1");
  ASSERT_NE(bob, nullptr);
  EXPECT_EQ(IdentityOf(NextOfType(*observer, "agent_joined")), "bob");
  auto carol = Join(1, path + "?client=carol&ack=1");
  ASSERT_NE(carol, nullptr);
  EXPECT_EQ(IdentityOf(NextOfType(*observer, "agent_joined")), "carol");
  auto own = NextEvent(*carol);
  EXPECT_EQ(TypeOf(own), "agent_joined") << "carol's own join: " << boost::json::serialize(own);
  std::string last;
  ASSERT_TRUE(AwaitPresence(
      2, channel, [](const pb::PresenceResponse& p) { return p.members_size() == 2; }, &last))
      << last;

  cluster_.node(0).Kill9();
  const auto killed = Clock::now();
  const auto bound = std::chrono::seconds(3 * kLeaseSeconds + 3);
  std::vector<boost::json::object> before;
  auto left = NextEvent(*observer, bound, &before);
  const auto took = Clock::now() - killed;
  ASSERT_EQ(TypeOf(left), "agent_left")
      << "no agent_left within " << Ms(bound) << " of kill -9 (lease " << kLeaseSeconds
      << " s): " << boost::json::serialize(left) << "\n"
      << Describe(before);
  EXPECT_EQ(IdentityOf(left), "bob");
  EXPECT_EQ(boost::json::serialize(left.at("data").as_object()["reason"]), "\"node_lost\"");
  EXPECT_LT(took, bound);
  auto seen_by_carol = NextEvent(*carol);
  EXPECT_EQ(TypeOf(seen_by_carol), "agent_left") << boost::json::serialize(seen_by_carol);
  EXPECT_EQ(IdentityOf(seen_by_carol), "bob");
  for (int n : {1, 2}) {
    ASSERT_TRUE(AwaitPresence(
        n, channel,
        [](const pb::PresenceResponse& p) {
          return p.members_size() == 1 && p.members(0).identity() == "carol";
        },
        &last))
        << "node" << n << " after node0's lease ran out: " << last;
  }
  // One agent_left for bob, none for carol.
  ExpectNextEventEverywhere(1, channel, "after-lease", {observer.get(), carol.get()});
}

// 6. Redis killed with kill -9 mid-stream, then restarted (empty: no persistence). With
// `await_every_node`, the first publish after the restart waits until every node is ready
// again; without, it goes as soon as one node (node2) accepts it, while the others may still be
// reconnecting: they must still deliver it (or tell their clients) once they are back.
void MultiNodeTest::RedisKill9AndRestart(bool await_every_node) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const std::string channel = "workspace/redis-kill";
  const std::string path = "/ws/" + channel;
  auto s0 = Join(0, path + "?ack=1");
  ASSERT_NE(s0, nullptr);
  auto s1 = Join(1, path + "?ack=1");
  ASSERT_NE(s1, nullptr);
  boost::json::object sub;
  auto resumer = Join(2, path + "?ack=1", &sub);
  ASSERT_NE(resumer, nullptr);

  auto via_c = cluster_.Stub(2);
  std::map<uint64_t, std::string> before_kill;
  std::string epoch;
  for (int i = 0; i < 3; ++i) {
    pb::PublishResponse resp;
    ASSERT_TRUE(Publish(*via_c, channel, 1, absl::StrCat("pre-", i), &resp).ok());
    before_kill[resp.offset()] = absl::StrCat("pre-", i);
    epoch = resp.epoch();
  }
  for (int n = 0; n < 3; ++n) {
    WsClient* c = n == 0 ? s0.get() : n == 1 ? s1.get() : resumer.get();
    Received r = CollectEvents(*c, before_kill.size(), 10s);
    ASSERT_EQ(CheckSequence(r.events, before_kill), "")
        << "before the kill, the client on node" << n << " (publishes via node2): " << r.Summary();
  }
  const uint64_t last = before_kill.rbegin()->first;
  resumer.reset();

  cluster_.redis().Kill9();
  // While Redis is gone: every publish fails fast with UNAVAILABLE, none reports success.
  for (int i = 0; i < 6; ++i) {
    auto stub = cluster_.Stub(i % cluster_.size());
    const auto start = Clock::now();
    grpc::Status s = Publish(*stub, channel, 1, absl::StrCat("down-", i), nullptr, 5s);
    const auto took = Clock::now() - start;
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE)
        << "publish #" << i << " via node" << i % cluster_.size()
        << " with Redis down: " << (s.ok() ? "OK" : s.error_message()) << " after " << Ms(took);
    EXPECT_LT(took, 2s) << "publish #" << i << " took " << Ms(took) << " with Redis down";
  }
  // The WebSocket clients stay connected and served.
  std::vector<boost::json::object> seen0, seen1;
  EXPECT_TRUE(PingPong(*s0, 5s, &seen0)) << "node0's client lost its socket with Redis down";
  EXPECT_TRUE(PingPong(*s1, 5s, &seen1)) << "node1's client lost its socket with Redis down";

  absl::Status restarted = cluster_.redis().Restart();
  ASSERT_TRUE(restarted.ok()) << restarted;
  const auto restarted_at = Clock::now();
  // Each node reconnects on its own backoff; /readyz says when it is back (polled: no event
  // is visible from outside).
  for (int n = 0; n < (await_every_node ? cluster_.size() : 0); ++n) {
    std::string body;
    ASSERT_TRUE(testing::WaitFor([&] { return cluster_.Http(n, "/readyz", &body) == 200; }, 15s))
        << "node" << n << " not ready 15 s after Redis came back: " << body;
  }
  const auto all_ready = Clock::now() - restarted_at;
  if (await_every_node) {
    EXPECT_LT(all_ready, 5s) << "the nodes took " << Ms(all_ready) << " to be ready again";
  }
  // Ready nodes publish: retry (bounded) only in case a link flaps once more.
  const auto up_deadline = Clock::now() + 15s;
  pb::PublishResponse after;
  std::string after_content;
  grpc::Status s;
  std::set<std::string> attempted;
  for (int i = 0;; ++i) {
    after_content = absl::StrCat("after-", i);
    attempted.insert(after_content);
    s = Publish(*via_c, channel, 1, after_content, &after, 5s);
    if (s.ok() || Clock::now() > up_deadline) break;
    std::this_thread::sleep_for(50ms);  // reconnect backoff: nothing to wait on from outside
  }
  ASSERT_TRUE(s.ok()) << "no publish succeeded within 15 s of Redis coming back: "
                      << s.error_message();
  EXPECT_NE(after.epoch(), epoch) << "Redis lost every key, yet the channel kept its epoch";

  for (auto [client, seen] : {std::pair{s0.get(), &seen0}, std::pair{s1.get(), &seen1}}) {
    const char* who = client == s0.get() ? "node0's client" : "node1's client";
    boost::json::object ev;
    std::vector<boost::json::object> events;
    do {
      ev = NextEvent(*client, 10s, seen);
      if (!ev.empty()) events.push_back(ev);
    } while (!ev.empty() && ContentOf(ev) != after_content &&
             attempted.count(ContentOf(ev)) > 0);  // a retried publish may have been stored
    ASSERT_EQ(ContentOf(ev), after_content)
        << who << " did not get the first publish after Redis returned; events:\n"
        << Describe(events) << "control frames:\n"
        << Describe(*seen);
    EXPECT_FALSE(client->closed()) << who;
    if (after.offset() <= last) {
      // The channel's offsets restarted: the client must be told before it sees a reused one.
      bool told = false;
      for (const auto& f : *seen) told = told || TypeOf(f) == "gap" || TypeOf(f) == "subscribed";
      EXPECT_TRUE(told) << who << " got offset " << after.offset() << " after offset " << last
                        << " with no gap or subscribed frame (silent rewind); control frames:\n"
                        << Describe(*seen);
    }
  }

  // Every node is back by now (it delivered); a client resuming with the old epoch learns its
  // history is gone.
  for (int n = 0; n < cluster_.size(); ++n) {
    std::string body;
    ASSERT_TRUE(testing::WaitFor([&] { return cluster_.Http(n, "/readyz", &body) == 200; }, 15s))
        << "node" << n << " not ready 15 s after Redis came back: " << body;
  }
  boost::json::object resumed;
  resumer = Join(0, absl::StrCat(path, "?since=", last, "&epoch=", epoch), &resumed);
  ASSERT_NE(resumer, nullptr);
  EXPECT_EQ(boost::json::value(resumed["recovered"]), boost::json::value(false))
      << boost::json::serialize(resumed);
  EXPECT_EQ(StringField(resumed, "epoch"), after.epoch());
  ExpectNextEventEverywhere(1, channel, "final", {s0.get(), s1.get(), resumer.get()});
}

TEST_F(MultiNodeTest, RedisKill9AndRestartMidStream) {
  RedisKill9AndRestart(/*await_every_node=*/true);
}

TEST_F(MultiNodeTest, RedisKill9AndRestartFirstPublishBeforeEveryNodeIsBack) {
  RedisKill9AndRestart(/*await_every_node=*/false);
}

// 7. The pub/sub connections killed (CLIENT KILL TYPE pubsub) twice while publishing goes on:
// the nodes repair from the stream, clients see every event once, in order.
TEST_F(MultiNodeTest, PubSubConnectionKilledMidStreamLosesNothing) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const std::string channel = "workspace/pubsub-kill";
  constexpr size_t kTotal = 400;
  std::vector<std::unique_ptr<WsClient>> subs;
  for (int n = 0; n < cluster_.size(); ++n) {
    subs.push_back(Join(n, "/ws/" + channel + "?ack=1"));
    ASSERT_NE(subs.back(), nullptr);
  }
  std::vector<Received> received(subs.size());
  std::vector<std::thread> collectors;
  for (size_t i = 0; i < subs.size(); ++i) {
    collectors.emplace_back([&, i] { received[i] = CollectEvents(*subs[i], kTotal, 15s); });
  }
  std::atomic<size_t> done{0};
  std::vector<std::pair<grpc::Status, pb::PublishResponse>> results(kTotal);
  std::thread publisher([&] {
    std::vector<std::unique_ptr<pb::EventService::Stub>> stubs;
    for (int n = 0; n < cluster_.size(); ++n) stubs.push_back(cluster_.Stub(n));
    for (size_t k = 0; k < kTotal; ++k) {
      results[k].first =
          Publish(*stubs[k % stubs.size()], channel, 1, absl::StrCat("e-", k), &results[k].second);
      done.store(k + 1);
    }
  });
  std::vector<int64_t> killed;
  for (size_t at : {kTotal / 4, kTotal * 5 / 8}) {
    EXPECT_TRUE(testing::WaitFor([&] { return done.load() >= at; }, 20s))
        << "publishing stalled at " << done.load();
    auto reply = cluster_.RedisCommand({"CLIENT", "KILL", "TYPE", "pubsub"});
    EXPECT_TRUE(reply.ok()) << reply.status();
    killed.push_back(reply.ok() && reply->is_integer() ? reply->integer : -1);
  }
  publisher.join();
  for (auto& t : collectors) t.join();

  for (size_t i = 0; i < killed.size(); ++i) {
    EXPECT_GE(killed[i], cluster_.size()) << "CLIENT KILL #" << i << " found " << killed[i]
                                          << " pub/sub connections; every node should hold one";
  }
  std::map<uint64_t, std::string> by_offset;
  for (size_t k = 0; k < kTotal; ++k) {
    ASSERT_TRUE(results[k].first.ok())
        << "publish #" << k << ": " << results[k].first.error_message()
        << " (only the pub/sub link was cut; the command link should stay up)";
    by_offset[results[k].second.offset()] = absl::StrCat("e-", k);
  }
  ASSERT_EQ(CheckOffsetsDense(by_offset, kTotal), "");
  for (size_t i = 0; i < subs.size(); ++i) {
    EXPECT_EQ(CheckSequence(received[i].events, by_offset), "")
        << "subscriber on node" << i << ": " << received[i].Summary();
  }
  std::vector<WsClient*> all;
  for (auto& s : subs) all.push_back(s.get());
  ExpectNextEventEverywhere(0, channel, "sentinel", all);
}

// 8. Redis unreachable at start-up: the node starts and serves, is alive (/healthz 200) but not
// ready (/readyz 503), Publish is UNAVAILABLE; it becomes ready once Redis is there (it retries by
// itself).
TEST_F(MultiNodeTest, RedisUnreachableAtStartUpThenReady) {
  ASSERT_NO_FATAL_FAILURE(StartCluster({.nodes = 1}));
  BridgeProcess& node = cluster_.node(0);
  node.Kill9();
  cluster_.redis().Kill9();
  ASSERT_TRUE(node.Spawn().ok());
  absl::Status s = node.AwaitReady(15s, /*ready=*/false);
  ASSERT_TRUE(s.ok()) << "the node should start without Redis: " << s;
  std::string body;
  EXPECT_EQ(cluster_.Http(0, "/healthz", &body), 200) << "alive, even with Redis gone: " << body;
  const int ready = cluster_.Http(0, "/readyz", &body);
  EXPECT_EQ(ready, 503) << "/readyz with the broker unreachable: " << body;
  auto stub = cluster_.Stub(0);
  const auto start = Clock::now();
  grpc::Status pub = Publish(*stub, "workspace/startup", 1, "x", nullptr, 5s);
  EXPECT_EQ(pub.error_code(), grpc::StatusCode::UNAVAILABLE)
      << (pub.ok() ? "OK" : pub.error_message());
  EXPECT_LT(Clock::now() - start, 2s);

  absl::Status restarted = cluster_.redis().Restart();
  ASSERT_TRUE(restarted.ok()) << restarted;
  // Polling the readiness endpoint: the node's reconnect has no event visible from outside.
  EXPECT_TRUE(testing::WaitFor([&] { return cluster_.Http(0, "/readyz", &body) == 200; }, 15s))
      << "still not ready 15 s after Redis came back: " << body;
  grpc::Status after = Publish(*stub, "workspace/startup", 1, "y", nullptr, 5s);
  EXPECT_TRUE(after.ok()) << after.error_message();
}

// 9. A fail-over to a replica that lacked the last writes puts a channel's offsets back under the
// same epoch (simulated: the meta hash's offset set back). The nodes notice at the first repeated
// offset and rotate the epoch: a client is told (a `subscribed` with a new epoch and
// recovered:false) before any reused offset, and resuming with the old epoch is not recovered.
TEST_F(MultiNodeTest, OffsetsRewoundUnderOneEpochRotateTheEpoch) {
  ASSERT_NO_FATAL_FAILURE(StartCluster({.nodes = 2}));
  const std::string channel = "workspace/rewind";
  boost::json::object sub;
  auto a = Join(1, "/ws/" + channel + "?ack=1", &sub);
  ASSERT_NE(a, nullptr);
  auto via_0 = cluster_.Stub(0);
  std::string epoch;
  for (int i = 1; i <= 5; ++i) {
    pb::PublishResponse resp;
    ASSERT_TRUE(Publish(*via_0, channel, 1, absl::StrCat("e-", i), &resp).ok());
    epoch = resp.epoch();
    ASSERT_EQ(OffsetOf(NextEvent(*a)), static_cast<uint64_t>(i));
  }
  // What a replica two writes behind holds: meta and stream both at offset 2.
  const std::string meta = "gb:{" + channel + "}:meta", stream = "gb:{" + channel + "}:stream";
  for (const std::vector<std::string>& cmd :
       {std::vector<std::string>{"HSET", meta, "o", "2"},
        std::vector<std::string>{"XDEL", stream, "3-0", "4-0", "5-0"},
        std::vector<std::string>{"XSETID", stream, "2-0"}}) {
    auto r = cluster_.RedisCommand(cmd);
    ASSERT_TRUE(r.ok() && !r->is_error())
        << cmd[0] << ": " << (r.ok() ? r->str : r.status().ToString());
  }
  // The publish that reuses offset 3: the node with the subscriber sees a repeat and checks.
  pb::PublishResponse reused;
  ASSERT_TRUE(Publish(*via_0, channel, 1, "reused", &reused).ok());
  EXPECT_EQ(reused.offset(), 3u);
  std::vector<boost::json::object> controls;
  std::string new_epoch;
  const auto deadline = Clock::now() + 10s;
  // Publishing on until the node rotated: every event that reaches the client after the rewind
  // must come after a reset that names another epoch.
  int n = 0;
  while (new_epoch.empty() && Clock::now() < deadline) {
    ASSERT_TRUE(Publish(*via_0, channel, 1, absl::StrCat("after-", n++)).ok());
    auto ev = NextEvent(*a, 2s, &controls);
    for (const auto& c : controls) {
      if (StringField(c, "type") == "subscribed" && StringField(c, "epoch") != epoch) {
        new_epoch = StringField(c, "epoch");
      }
    }
    if (!ev.empty()) {
      ASSERT_FALSE(new_epoch.empty())
          << "offset " << OffsetOf(ev)
          << " delivered after the rewind without a reset: " << boost::json::serialize(ev) << "\n"
          << Describe(controls);
    }
  }
  ASSERT_FALSE(new_epoch.empty()) << "no epoch rotation within 10 s\n" << cluster_.Diagnostics();
  EXPECT_TRUE(testing::WaitFor([&] {
    return cluster_.Metric(1, "bridge_broker_rewinds_total").value_or(0) >= 1;
  })) << cluster_.Diagnostics();
  pb::PublishResponse next;
  ASSERT_TRUE(Publish(*via_0, channel, 1, "next", &next).ok());
  EXPECT_EQ(next.epoch(), new_epoch) << "publishes carry the new epoch";
  boost::json::object resumed;
  auto b = Join(0, absl::StrCat("/ws/", channel, "?since=5&epoch=", epoch), &resumed);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(boost::json::value(resumed["recovered"]), boost::json::value(false))
      << boost::json::serialize(resumed);
  EXPECT_EQ(StringField(resumed, "epoch"), new_epoch);
}

}  // namespace
}  // namespace bridge::multinode
