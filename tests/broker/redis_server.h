// Test support: a real redis-server child process on a free 127.0.0.1 port, and a blocking
// hiredis client for the test's side of a conversation (publisher, CLIENT KILL, checks).
// Single-threaded test code; neither class is thread-safe.
#ifndef BRIDGE_TESTS_BROKER_REDIS_SERVER_H_
#define BRIDGE_TESTS_BROKER_REDIS_SERVER_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "broker/redis_reply.h"

struct redisContext;

namespace bridge::broker::testing {

// A 127.0.0.1 TCP port that was free a moment ago (0 if none could be probed).
uint16_t ProbeFreePort();

// Owns one redis-server process (and its scratch directory). The destructor stops it.
class RedisServer {
 public:
  RedisServer() = default;
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;
  ~RedisServer();

  // Starts `redis-server --port P --bind 127.0.0.1 --save '' --appendonly no <extra_args>` on a
  // free port (probing, and retrying on "address in use"), and waits (bounded) until it answers
  // PING. FAILED_PRECONDITION when redis-server is not installed.
  absl::Status Start(std::vector<std::string> extra_args = {});
  // Starts it again on the same port with the same arguments (after Kill9 or Stop).
  absl::Status Restart();
  // SIGKILL and reap; the port is free again afterwards.
  void Kill9();
  // SIGTERM, bounded wait, then SIGKILL. Idempotent.
  void Stop();

  bool running() const { return pid_ > 0; }
  uint16_t port() const { return port_; }
  // "redis://127.0.0.1:<port>" plus `suffix` (e.g. "/3"); `userinfo` like ":secret" goes before
  // the host.
  std::string Url(const std::string& userinfo = "", const std::string& suffix = "") const;

 private:
  absl::Status Spawn();
  absl::Status WaitReady();
  std::string LogTail() const;

  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::vector<std::string> extra_args_;
  std::string dir_;
  std::string log_path_;
};

// A blocking hiredis connection for tests.
class SyncRedis {
 public:
  SyncRedis() = default;
  SyncRedis(const SyncRedis&) = delete;
  SyncRedis& operator=(const SyncRedis&) = delete;
  SyncRedis(SyncRedis&& other) noexcept : ctx_(std::exchange(other.ctx_, nullptr)) {}
  ~SyncRedis();

  absl::Status Connect(uint16_t port, const std::string& password = "");
  // One command, its reply (Redis errors are kError replies).
  absl::StatusOr<RedisReply> Command(const std::vector<std::string>& args);
  // Pipelines all commands in one write, then reads every reply.
  absl::StatusOr<std::vector<RedisReply>> Pipeline(
      const std::vector<std::vector<std::string>>& commands);

 private:
  redisContext* ctx_ = nullptr;
};

}  // namespace bridge::broker::testing

#endif  // BRIDGE_TESTS_BROKER_REDIS_SERVER_H_
