// Test fixture for RedisConnection tests: a real redis-server per test and an io_context
// driven on the test thread by RunUntil (so no locks are needed and every wait is bounded).
#ifndef BRIDGE_TESTS_BROKER_REDIS_TEST_FIXTURE_H_
#define BRIDGE_TESTS_BROKER_REDIS_TEST_FIXTURE_H_

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "broker/redis_connection.h"
#include "redis_server.h"

namespace bridge::broker {

class RedisConnectionTest : public ::testing::Test {
 protected:
  using State = RedisConnectionState;
  using ms = std::chrono::milliseconds;

  void TearDown() override {
    for (auto& c : connections_) c->Stop();
    io_.run_for(ms(50));  // let the stopped connections' handlers finish
    server_.Stop();
  }

  // Starts the server; fails the test (fatally) when it cannot.
  void StartServer(std::vector<std::string> args = {}) {
    absl::Status s = server_.Start(std::move(args));
    ASSERT_TRUE(s.ok()) << s;
  }

  RedisConnectionOptions Options(const std::string& url) {
    RedisConnectionOptions o;
    auto parsed = ParseRedisUrl(url);
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    if (parsed.ok()) o.url = *parsed;
    o.reconnect_min = ms(20);
    o.reconnect_max = ms(300);
    return o;
  }

  // Creates and starts a connection that records its states (and pushes, for subscribers).
  std::shared_ptr<RedisConnection> Connect(RedisConnectionOptions o) {
    auto c = RedisConnection::Create(io_.get_executor(), std::move(o));
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) return nullptr;
    auto conn = *c;
    conn->SetStateHandler([this](State s, const absl::Status& why) {
      states_.push_back(s);
      reasons_.push_back(why);
    });
    conn->SetPushHandler([this](RedisReply r) { pushes_.push_back(std::move(r)); });
    conn->Start();
    connections_.push_back(conn);
    return conn;
  }

  // Runs the loop until `done()` or `timeout`; false (with the loop stopped) on timeout.
  bool RunUntil(const std::function<bool()>& done, ms timeout = ms(5000)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      if (io_.stopped()) io_.restart();  // it stops whenever it runs out of work
      io_.run_one_for(ms(10));
    }
    return true;
  }

  // Waits until the connection reports `s` after the state event number `from`.
  bool AwaitState(State s, size_t from = 0, ms timeout = ms(5000)) {
    return RunUntil(
        [&] {
          for (size_t i = from; i < states_.size(); ++i) {
            if (states_[i] == s) return true;
          }
          return false;
        },
        timeout);
  }

  std::string StatesString() const {
    std::string out;
    for (size_t i = 0; i < states_.size(); ++i) {
      out += std::string(RedisConnectionStateName(states_[i])) +
             (reasons_[i].ok() ? "" : "(" + reasons_[i].ToString() + ")") + " ";
    }
    return out;
  }

  // Sends one command and waits for its result.
  absl::StatusOr<RedisReply> Call(RedisConnection& c, std::vector<std::string> args,
                                  ms timeout = ms(5000)) {
    std::optional<absl::StatusOr<RedisReply>> result;
    c.Command(std::move(args), [&](absl::StatusOr<RedisReply> r) { result = std::move(r); });
    if (!RunUntil([&] { return result.has_value(); }, timeout)) {
      return absl::DeadlineExceededError("test: no callback within the bounded wait");
    }
    return *result;
  }

  std::shared_ptr<RedisConnection> ConnectReady(RedisConnectionOptions o) {
    auto c = Connect(std::move(o));
    EXPECT_TRUE(c != nullptr);
    EXPECT_TRUE(AwaitState(State::kReady)) << "never ready: " << StatesString();
    return c;
  }

  testing::SyncRedis Sync(const std::string& password = "") {
    testing::SyncRedis s;
    absl::Status st = s.Connect(server_.port(), password);
    EXPECT_TRUE(st.ok()) << st;
    return s;
  }

  boost::asio::io_context io_;
  testing::RedisServer server_;
  std::vector<std::shared_ptr<RedisConnection>> connections_;
  std::vector<State> states_;
  std::vector<absl::Status> reasons_;
  std::vector<RedisReply> pushes_;
};

}  // namespace bridge::broker

#endif  // BRIDGE_TESTS_BROKER_REDIS_TEST_FIXTURE_H_
