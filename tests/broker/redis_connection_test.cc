// RedisConnection against a real redis-server per test. Everything runs on the test thread: the
// io_context is driven by RunUntil, so no locks are needed and every wait is bounded.
#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "redis_test_fixture.h"

namespace bridge::broker {
namespace {

using namespace std::chrono_literals;
using testing::SyncRedis;
using State = RedisConnectionState;

TEST_F(RedisConnectionTest, SetGetRoundTrip) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  auto c = ConnectReady(Options(server_.Url()));
  ASSERT_TRUE(c);
  auto set = Call(*c, {"SET", "k", std::string("v\0\r\nx", 5)});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_TRUE(set->Is("OK")) << set->DebugString();
  auto get = Call(*c, {"GET", "k"});
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(*get, RedisReply::String(std::string("v\0\r\nx", 5)));
  auto missing = Call(*c, {"GET", "nope"});
  ASSERT_TRUE(missing.ok());
  EXPECT_TRUE(missing->is_nil());
  auto err = Call(*c, {"INCR", "k"});
  ASSERT_TRUE(err.ok()) << "a Redis error is a reply, not a failed Status";
  EXPECT_TRUE(err->is_error()) << err->DebugString();
}

TEST_F(RedisConnectionTest, TenThousandPipelinedIncrsCompleteInOrder) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  auto c = ConnectReady(Options(server_.Url()));
  ASSERT_TRUE(c);
  constexpr int kN = 10000;
  int completed = 0;
  int out_of_order = 0;
  for (int i = 0; i < kN; ++i) {
    c->Command({"INCR", "counter"}, [&, i](absl::StatusOr<RedisReply> r) {
      if (!r.ok() || r->integer != i + 1 || completed != i) ++out_of_order;
      ++completed;
    });
  }
  EXPECT_EQ(c->pending(), static_cast<size_t>(kN));
  ASSERT_TRUE(RunUntil([&] { return completed == kN; }, 20s)) << completed << " of " << kN;
  EXPECT_EQ(out_of_order, 0);
  EXPECT_EQ(c->pending(), 0u);
  EXPECT_EQ(c->stats().commands_sent.load(), static_cast<uint64_t>(kN));
}

TEST_F(RedisConnectionTest, CommandsIssuedFromCallbacksWork) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  auto c = ConnectReady(Options(server_.Url()));
  ASSERT_TRUE(c);
  int remaining = 100;
  std::function<void(absl::StatusOr<RedisReply>)> next = [&](absl::StatusOr<RedisReply> r) {
    ASSERT_TRUE(r.ok()) << r.status();
    if (--remaining > 0) c->Command({"INCR", "chain"}, next);
  };
  c->Command({"INCR", "chain"}, next);
  ASSERT_TRUE(RunUntil([&] { return remaining == 0; }));
  auto v = Call(*c, {"GET", "chain"});
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->str, "100");
}

TEST_F(RedisConnectionTest, OneMebibyteReplyArrivesWhole) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  const std::string big(1 << 20, 'b');
  {
    SyncRedis sync = Sync();
    ASSERT_TRUE(sync.Command({"SET", "big", big}).ok());
  }
  auto c = ConnectReady(Options(server_.Url()));
  ASSERT_TRUE(c);
  auto get = Call(*c, {"GET", "big"});
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(get->str.size(), big.size());
  EXPECT_TRUE(get->str == big);
  // The connection is still usable afterwards.
  auto ping = Call(*c, {"PING"});
  ASSERT_TRUE(ping.ok());
  EXPECT_TRUE(ping->Is("PONG"));
}

TEST_F(RedisConnectionTest, ReplyLargerThanTheLimitBreaksTheConnection) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  {
    SyncRedis sync = Sync();
    ASSERT_TRUE(sync.Command({"SET", "big", std::string(1 << 20, 'b')}).ok());
  }
  RedisConnectionOptions o = Options(server_.Url());
  o.max_reply_bytes = 64 * 1024;
  auto c = ConnectReady(o);
  ASSERT_TRUE(c);
  const size_t before = states_.size();
  auto get = Call(*c, {"GET", "big"});
  ASSERT_FALSE(get.ok());
  EXPECT_EQ(get.status().code(), absl::StatusCode::kUnavailable) << get.status();
  EXPECT_NE(get.status().ToString().find("max_reply_bytes"), std::string::npos) << get.status();
  ASSERT_TRUE(AwaitState(State::kDown, before));
  EXPECT_EQ(reasons_[before].code(), absl::StatusCode::kResourceExhausted) << StatesString();
  // Small replies still work after the reconnect.
  ASSERT_TRUE(AwaitState(State::kReady, before)) << StatesString();
  auto ping = Call(*c, {"PING"});
  ASSERT_TRUE(ping.ok()) << ping.status();
}

TEST_F(RedisConnectionTest, PendingAndOutputBytesAreBounded) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  RedisConnectionOptions o = Options(server_.Url());
  o.max_pending = 10;
  o.max_output_bytes = 1024;
  auto c = ConnectReady(o);
  ASSERT_TRUE(c);
  std::vector<absl::StatusCode> codes;
  for (int i = 0; i < 11; ++i) {
    c->Command({"PING"}, [&](absl::StatusOr<RedisReply> r) { codes.push_back(r.status().code()); });
  }
  ASSERT_TRUE(RunUntil([&] { return codes.size() == 11; }));
  // The overflow fails at once (posted), before the ten replies arrive.
  EXPECT_EQ(codes.front(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(std::count(codes.begin(), codes.end(), absl::StatusCode::kOk), 10);

  auto big = Call(*c, {"SET", "k", std::string(2048, 'x')});
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted) << big.status();
  EXPECT_EQ(c->state(), State::kReady) << "a refused command does not break the connection";
}

TEST_F(RedisConnectionTest, AuthWithPassword) {
  ASSERT_NO_FATAL_FAILURE(StartServer({"--requirepass", "s3cret"}));
  auto c = ConnectReady(Options(server_.Url(":s3cret")));
  ASSERT_TRUE(c);
  auto ping = Call(*c, {"PING"});
  ASSERT_TRUE(ping.ok()) << ping.status();
  EXPECT_TRUE(ping->Is("PONG")) << ping->DebugString();

  // User + password (the ACL "default" user) works too.
  auto c2 = Connect(Options(server_.Url("default:s3cret")));
  ASSERT_TRUE(c2);
  ASSERT_TRUE(RunUntil([&] { return c2->state() == State::kReady; })) << StatesString();
  EXPECT_TRUE(Call(*c2, {"PING"}).ok());
}

TEST_F(RedisConnectionTest, WrongPasswordGivesAClearError) {
  ASSERT_NO_FATAL_FAILURE(StartServer({"--requirepass", "s3cret"}));
  auto c = Connect(Options(server_.Url(":wrong")));
  ASSERT_TRUE(c);
  ASSERT_TRUE(AwaitState(State::kDown)) << StatesString();
  auto down = std::find(states_.begin(), states_.end(), State::kDown) - states_.begin();
  const absl::Status& why = reasons_[down];
  EXPECT_EQ(why.code(), absl::StatusCode::kPermissionDenied) << why;
  EXPECT_NE(why.ToString().find("AUTH: WRONGPASS"), std::string::npos) << why;
  if (c->state() == State::kDown) {
    auto r = Call(*c, {"PING"});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_NE(r.status().ToString().find("WRONGPASS"), std::string::npos) << r.status();
  }
  EXPECT_NE(c->state(), State::kReady);
}

TEST_F(RedisConnectionTest, SelectDb) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  RedisConnectionOptions o = Options(server_.Url("", "/3"));
  o.client_name = "bridge-test";
  auto c = ConnectReady(o);
  ASSERT_TRUE(c);
  ASSERT_TRUE(Call(*c, {"SET", "where", "db3"}).ok());
  auto name = Call(*c, {"CLIENT", "GETNAME"});
  ASSERT_TRUE(name.ok());
  EXPECT_EQ(name->str, "bridge-test");

  SyncRedis sync = Sync();
  auto in0 = sync.Command({"GET", "where"});
  ASSERT_TRUE(in0.ok());
  EXPECT_TRUE(in0->is_nil()) << in0->DebugString();
  ASSERT_TRUE(sync.Command({"SELECT", "3"}).ok());
  auto in3 = sync.Command({"GET", "where"});
  ASSERT_TRUE(in3.ok());
  EXPECT_EQ(in3->str, "db3");
}

TEST_F(RedisConnectionTest, SubscribeReceiveUnsubscribe) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  RedisConnectionOptions o = Options(server_.Url());
  o.subscriber = true;
  auto sub = ConnectReady(o);
  ASSERT_TRUE(sub);

  auto acks = Call(*sub, {"SUBSCRIBE", "a", "b"});
  ASSERT_TRUE(acks.ok()) << acks.status();
  ASSERT_EQ(acks->elements.size(), 2u) << acks->DebugString();
  EXPECT_EQ(acks->elements[0].elements[0].str, "subscribe");
  EXPECT_EQ(acks->elements[1].elements[1].str, "b");
  ASSERT_TRUE(Call(*sub, {"PSUBSCRIBE", "p.*"}).ok());
  ASSERT_TRUE(Call(*sub, {"SSUBSCRIBE", "s1"}).ok());
  auto ping = Call(*sub, {"PING"});
  ASSERT_TRUE(ping.ok());
  EXPECT_TRUE(ping->is_array()) << "PING in subscribed mode: " << ping->DebugString();
  pushes_.clear();  // the acks were pushes too

  SyncRedis pub = Sync();
  auto published =
      pub.Pipeline({{"PUBLISH", "a", "m1"}, {"PUBLISH", "p.x", "m2"}, {"SPUBLISH", "s1", "m3"}});
  ASSERT_TRUE(published.ok()) << published.status();
  ASSERT_TRUE(RunUntil([&] { return pushes_.size() == 3; })) << pushes_.size();
  EXPECT_EQ(pushes_[0], RedisReply::Array({RedisReply::String("message"), RedisReply::String("a"),
                                           RedisReply::String("m1")}));
  EXPECT_EQ(pushes_[1].elements[0].str, "pmessage");
  EXPECT_EQ(pushes_[1].elements[3].str, "m2");
  EXPECT_EQ(pushes_[2].elements[0].str, "smessage");
  EXPECT_EQ(pushes_[2].elements[2].str, "m3");

  // Argument-less UNSUBSCRIBE: one ack per subscribed channel.
  auto unsub = Call(*sub, {"UNSUBSCRIBE"});
  ASSERT_TRUE(unsub.ok()) << unsub.status();
  EXPECT_EQ(unsub->elements.size(), 2u) << unsub->DebugString();
  auto receivers = pub.Command({"PUBLISH", "a", "after"});
  ASSERT_TRUE(receivers.ok());
  EXPECT_EQ(receivers->integer, 0);
  EXPECT_TRUE(Call(*sub, {"PUNSUBSCRIBE", "p.*"}).ok());
  EXPECT_TRUE(Call(*sub, {"SUNSUBSCRIBE"}).ok());
  EXPECT_EQ(sub->pending(), 0u);
}

TEST_F(RedisConnectionTest, SubscribeNeedsASubscriberConnection) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  auto c = ConnectReady(Options(server_.Url()));
  ASSERT_TRUE(c);
  auto r = Call(*c, {"subscribe", "x"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(RedisConnectionTest, PubSubBurstOnAnIdleConnection) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  RedisConnectionOptions o = Options(server_.Url());
  o.subscriber = true;
  auto sub = ConnectReady(o);
  ASSERT_TRUE(sub);
  ASSERT_TRUE(Call(*sub, {"SUBSCRIBE", "burst"}).ok());
  pushes_.clear();

  // The publisher blocks this thread, so the whole burst (far more than 16 KiB) is waiting in
  // the subscriber's socket before its loop runs again.
  constexpr int kN = 3000;
  std::vector<std::vector<std::string>> cmds;
  for (int i = 0; i < kN; ++i) {
    cmds.push_back({"PUBLISH", "burst", std::to_string(i) + ":" + std::string(100, 'p')});
  }
  SyncRedis pub = Sync();
  auto published = pub.Pipeline(cmds);
  ASSERT_TRUE(published.ok()) << published.status();

  ASSERT_TRUE(RunUntil([&] { return pushes_.size() == kN; })) << pushes_.size() << " of " << kN;
  for (int i = 0; i < kN; ++i) {
    ASSERT_EQ(pushes_[i].elements[2].str.substr(0, pushes_[i].elements[2].str.find(':')),
              std::to_string(i));
  }
}

TEST_F(RedisConnectionTest, KillNineFailsEveryPendingCommandOnceWithUnavailable) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  RedisConnectionOptions o = Options(server_.Url());
  o.command_timeout = 30s;
  auto c = ConnectReady(o);
  ASSERT_TRUE(c);
  constexpr int kN = 100;
  std::vector<int> calls(kN, 0);
  std::vector<absl::StatusCode> codes(kN, absl::StatusCode::kOk);
  // BLPOP blocks; everything behind it waits in the server's input buffer.
  c->Command({"BLPOP", "never", "0"}, [&](absl::StatusOr<RedisReply> r) {
    ++calls[0];
    codes[0] = r.status().code();
  });
  for (int i = 1; i < kN; ++i) {
    c->Command({"GET", "x"}, [&, i](absl::StatusOr<RedisReply> r) {
      ++calls[i];
      codes[i] = r.status().code();
    });
  }
  ASSERT_TRUE(RunUntil([&] { return c->stats().bytes_written.load() > 0; }));
  const size_t before = states_.size();
  server_.Kill9();
  ASSERT_TRUE(AwaitState(State::kDown, before)) << StatesString();
  ASSERT_TRUE(RunUntil([&] { return std::count(calls.begin(), calls.end(), 1) == kN; }));
  // Wait for the next reconnect attempt before checking nobody was called twice.
  ASSERT_TRUE(AwaitState(State::kConnecting, before)) << StatesString();
  for (int i = 0; i < kN; ++i) {
    EXPECT_EQ(calls[i], 1) << i;
    EXPECT_EQ(codes[i], absl::StatusCode::kUnavailable) << i;
  }
  EXPECT_EQ(c->pending(), 0u);
}

TEST_F(RedisConnectionTest, CommandWhileDownFailsFast) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  RedisConnectionOptions o = Options(server_.Url());
  o.command_timeout = 30s;
  auto c = ConnectReady(o);
  ASSERT_TRUE(c);
  const size_t before = states_.size();
  server_.Kill9();
  ASSERT_TRUE(AwaitState(State::kDown, before)) << StatesString();
  ASSERT_NE(c->state(), State::kReady);
  const auto start = std::chrono::steady_clock::now();
  auto r = Call(*c, {"GET", "x"}, 1s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 500ms);
}

TEST_F(RedisConnectionTest, ReconnectsByItselfAfterARestart) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  auto c = ConnectReady(Options(server_.Url()));
  ASSERT_TRUE(c);
  ASSERT_TRUE(Call(*c, {"SET", "k", "1"}).ok());
  size_t before = states_.size();
  server_.Kill9();
  ASSERT_TRUE(AwaitState(State::kDown, before)) << StatesString();
  // Let at least one attempt fail against the dead port.
  ASSERT_TRUE(AwaitState(State::kConnecting, before)) << StatesString();
  before = states_.size();
  absl::Status restarted = server_.Restart();
  ASSERT_TRUE(restarted.ok()) << restarted;
  ASSERT_TRUE(AwaitState(State::kReady, before, 10s)) << StatesString();
  auto r = Call(*c, {"SET", "k", "2"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->Is("OK"));
  EXPECT_GE(c->stats().reconnects.load(), 1u);
  EXPECT_EQ(c->stats().connects.load(), 2u);
}

TEST_F(RedisConnectionTest, ClientKillPubsubMakesTheSubscriberReconnect) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  RedisConnectionOptions o = Options(server_.Url());
  o.subscriber = true;
  auto sub = ConnectReady(o);
  ASSERT_TRUE(sub);
  ASSERT_TRUE(Call(*sub, {"SUBSCRIBE", "ch"}).ok());
  const size_t before = states_.size();

  SyncRedis admin = Sync();
  auto killed = admin.Command({"CLIENT", "KILL", "TYPE", "pubsub"});
  ASSERT_TRUE(killed.ok()) << killed.status();
  EXPECT_EQ(killed->integer, 1) << killed->DebugString();
  ASSERT_TRUE(AwaitState(State::kDown, before)) << StatesString();
  ASSERT_TRUE(AwaitState(State::kReady, before)) << StatesString();

  // Re-subscribing is the owner's job; after it, messages flow again.
  ASSERT_TRUE(Call(*sub, {"SUBSCRIBE", "ch"}).ok());
  pushes_.clear();
  ASSERT_TRUE(admin.Command({"PUBLISH", "ch", "again"}).ok());
  ASSERT_TRUE(RunUntil([&] { return !pushes_.empty(); }));
  EXPECT_EQ(pushes_[0].elements[2].str, "again");
}

TEST_F(RedisConnectionTest, TimeoutFailsWithDeadlineExceededAndTheConnectionRecovers) {
  ASSERT_NO_FATAL_FAILURE(StartServer({"--enable-debug-command", "yes"}));
  RedisConnectionOptions o = Options(server_.Url());
  o.command_timeout = 200ms;
  auto c = ConnectReady(o);
  ASSERT_TRUE(c);
  const size_t before = states_.size();
  std::optional<absl::StatusOr<RedisReply>> slept, behind;
  c->Command({"DEBUG", "SLEEP", "1"}, [&](absl::StatusOr<RedisReply> r) { slept = r; });
  c->Command({"GET", "x"}, [&](absl::StatusOr<RedisReply> r) { behind = r; });
  ASSERT_TRUE(RunUntil([&] { return slept && behind; }, 2s));
  EXPECT_EQ(slept->status().code(), absl::StatusCode::kDeadlineExceeded) << slept->status();
  // The command behind it never gets the sleeper's late reply.
  EXPECT_FALSE(behind->ok());
  EXPECT_EQ(c->stats().timeouts.load(),
            behind->status().code() == absl::StatusCode::kDeadlineExceeded ? 2u : 1u);
  ASSERT_TRUE(AwaitState(State::kDown, before));
  EXPECT_EQ(reasons_[before].code(), absl::StatusCode::kDeadlineExceeded) << StatesString();
  ASSERT_TRUE(AwaitState(State::kReady, before, 10s)) << StatesString();
  // The server may still be asleep: give this command a longer timeout of its own.
  std::optional<absl::StatusOr<RedisReply>> later;
  c->Command({"PING"}, 5s, [&](absl::StatusOr<RedisReply> r) { later = r; });
  ASSERT_TRUE(RunUntil([&] { return later.has_value(); }, 6s));
  ASSERT_TRUE(later->ok()) << later->status();
  EXPECT_TRUE((*later)->Is("PONG"));
}

TEST_F(RedisConnectionTest, StopFailsPendingCommandsOnce) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  RedisConnectionOptions o = Options(server_.Url());
  auto c = ConnectReady(o);
  ASSERT_TRUE(c);
  int calls = 0;
  absl::StatusCode code = absl::StatusCode::kOk;
  c->Command({"BLPOP", "never", "0"}, [&](absl::StatusOr<RedisReply> r) {
    ++calls;
    code = r.status().code();
  });
  c->Stop();
  EXPECT_EQ(calls, 0) << "never called from inside Stop()";
  ASSERT_TRUE(RunUntil([&] { return calls == 1; }));
  EXPECT_EQ(code, absl::StatusCode::kUnavailable);
  EXPECT_EQ(c->state(), State::kStopped);
  auto r = Call(*c, {"PING"});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace bridge::broker
