// ScriptRunner against a real redis-server per test: scripts loaded at each handshake, and the
// call order kept when the script cache is emptied under a live connection.
#include "broker/redis_script_runner.h"

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "redis_test_fixture.h"

namespace bridge::broker {
namespace {

using namespace std::chrono_literals;

// Appends its argument to a list and returns the list's length: the position it ran at.
const RedisScript& AppendScript() {
  static const std::string_view kBody =
      "redis.call('RPUSH', KEYS[1], ARGV[1]) return redis.call('LLEN', KEYS[1])";
  static const RedisScript* script = new RedisScript{kBody, Sha1Hex(kBody)};
  return *script;
}

class ScriptRunnerTest : public RedisConnectionTest {
 protected:
  // A connection with a runner of the append script made before its Start(), then ready.
  std::shared_ptr<ScriptRunner> ReadyRunner(RedisConnectionOptions o) {
    auto conn = RedisConnection::Create(io_.get_executor(), std::move(o));
    EXPECT_TRUE(conn.ok()) << conn.status();
    if (!conn.ok()) return nullptr;
    auto c = *conn;
    auto runner = ScriptRunner::Create(*c, {&AppendScript()});
    c->SetStateHandler([this](State s, const absl::Status& why) {
      states_.push_back(s);
      reasons_.push_back(why);
    });
    c->Start();
    connections_.push_back(c);
    if (!AwaitState(State::kReady)) {
      ADD_FAILURE() << "never ready: " << StatesString();
      return nullptr;
    }
    return runner;
  }

  // Runs the append script for `n`; its reply lands in replies_[n].
  void Append(ScriptRunner& runner, int n) {
    calls_.push_back(n);
    runner.Run(AppendScript(), {"1", "order", std::to_string(n)}, 5s,
               [this, n](absl::StatusOr<RedisReply> r) {
                 if (!r.ok()) {
                   failures_.push_back(r.status());
                 } else {
                   replies_[n] = *r;
                 }
               });
  }

  std::vector<std::string> Order(RedisConnection& c) {
    auto list = Call(c, {"LRANGE", "order", "0", "-1"});
    EXPECT_TRUE(list.ok()) << list.status();
    std::vector<std::string> out;
    if (list.ok()) {
      for (const auto& e : list->elements) out.push_back(e.str);
    }
    return out;
  }

  std::vector<std::string> CallOrder() const {
    std::vector<std::string> out;
    for (int n : calls_) out.push_back(std::to_string(n));
    return out;
  }

  std::vector<int> calls_;
  std::map<int, RedisReply> replies_;
  std::vector<absl::Status> failures_;
};

TEST_F(ScriptRunnerTest, ScriptsAreLoadedAtEveryHandshake) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  auto runner = ReadyRunner(Options(server_.Url()));
  ASSERT_TRUE(runner);
  auto exists = Sync().Command({"SCRIPT", "EXISTS", AppendScript().sha1});
  ASSERT_TRUE(exists.ok() && exists->elements.size() == 1);
  EXPECT_EQ(exists->elements[0].integer, 1) << "cached before the first call";

  const size_t before = states_.size();
  server_.Kill9();
  ASSERT_TRUE(AwaitState(State::kDown, before)) << StatesString();
  ASSERT_TRUE(server_.Restart().ok());
  ASSERT_TRUE(AwaitState(State::kReady, before, 10s)) << StatesString();
  exists = Sync().Command({"SCRIPT", "EXISTS", AppendScript().sha1});
  ASSERT_TRUE(exists.ok() && exists->elements.size() == 1);
  EXPECT_EQ(exists->elements[0].integer, 1) << "cached again after the restart";
  Append(*runner, 0);
  ASSERT_TRUE(RunUntil([&] { return replies_.size() + failures_.size() == 1; }));
  ASSERT_TRUE(failures_.empty()) << failures_[0];
  EXPECT_EQ(replies_[0].integer, 1);
  EXPECT_EQ(runner->reloads(), 0u) << "no NOSCRIPT after a connect";
}

// SCRIPT FLUSH under a live connection: every EVALSHA behind it answers NOSCRIPT. A call made
// while those replies are still arriving (here: from a PING's callback, between two of them)
// must still run after the earlier calls' retries.
TEST_F(ScriptRunnerTest, AFlushedCacheIsRefilledInCallOrder) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  auto runner = ReadyRunner(Options(server_.Url()));
  ASSERT_TRUE(runner);
  auto& c = connections_.back();

  c->Command({"SCRIPT", "FLUSH"}, [](absl::StatusOr<RedisReply>) {});
  for (int n = 0; n < 5; ++n) Append(*runner, n);
  c->Command({"PING"}, [&](absl::StatusOr<RedisReply>) {
    for (int n = 10; n < 15; ++n) Append(*runner, n);
    EXPECT_EQ(runner->held(), 5u) << "the reload is under way: the new calls wait";
  });
  for (int n = 5; n < 10; ++n) Append(*runner, n);
  ASSERT_TRUE(RunUntil([&] { return replies_.size() + failures_.size() == 15; }))
      << replies_.size() << " replies, " << failures_.size() << " failures";
  ASSERT_TRUE(failures_.empty()) << failures_[0];
  EXPECT_EQ(Order(*c), CallOrder());
  for (size_t i = 0; i < calls_.size(); ++i) {
    EXPECT_EQ(replies_[calls_[i]].integer, static_cast<int64_t>(i + 1)) << "call " << i;
  }
  EXPECT_EQ(runner->reloads(), 1u);
  EXPECT_EQ(runner->held(), 0u);
}

// An ACL that refuses SCRIPT (but allows EVAL/EVALSHA): the handshake's SCRIPT LOAD fails
// without failing the connection, and scripts still run (NOSCRIPT, then EVAL) in call order.
TEST_F(ScriptRunnerTest, RefusedScriptLoadIsNotFatal) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  {
    auto sync = Sync();
    auto acl =
        sync.Command({"ACL", "SETUSER", "noscript", "on", ">pw", "~*", "&*", "+@all", "-script"});
    ASSERT_TRUE(acl.ok() && !acl->is_error()) << (acl.ok() ? acl->DebugString() : "");
  }
  RedisConnectionOptions o = Options(server_.Url());
  o.url.user = "noscript";
  o.url.password = "pw";
  auto runner = ReadyRunner(o);
  ASSERT_TRUE(runner);
  auto& c = connections_.back();
  auto denied = Call(*c, {"SCRIPT", "LOAD", "return 1"});
  ASSERT_TRUE(denied.ok());
  EXPECT_TRUE(denied->is_error()) << "the ACL refuses SCRIPT: " << denied->DebugString();
  for (int n = 0; n < 8; ++n) Append(*runner, n);
  ASSERT_TRUE(RunUntil([&] { return replies_.size() + failures_.size() == 8; }));
  ASSERT_TRUE(failures_.empty()) << failures_[0];
  EXPECT_EQ(Order(*c), CallOrder());
  for (int n = 0; n < 8; ++n) EXPECT_EQ(replies_[n].integer, n + 1);
}

}  // namespace
}  // namespace bridge::broker
