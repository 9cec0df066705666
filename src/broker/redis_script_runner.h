// ScriptRunner: the server-side Lua scripts of one RedisConnection, run by EVALSHA in the order
// they were asked for.
//
// Order is the point. A channel's publishes are scripts, and their offsets are taken in the
// order the server runs them, so a publisher's messages keep their order only if the scripts
// reach the server in call order. Two things keep it:
//   - Create() has the connection load every script at each handshake (SCRIPT LOAD before
//     kReady): after a connect (a fresh server, a restart, a fail-over) EVALSHA never answers
//     NOSCRIPT.
//   - When the cache is emptied under a live connection (SCRIPT FLUSH), every EVALSHA already
//     sent answers NOSCRIPT without running. Each is sent again as EVAL as its reply arrives, and
//     the scripts asked for meanwhile wait until the last of those replies is in (a SCRIPT LOAD
//     of every script behind the first EVAL marks it), then leave in call order.
// One gap is left: another client that reloads a script between two of the failed EVALSHAs lets
// the later one run before the retry of the earlier.
//
// Threading: the connection's executor, like the connection; `done` runs there, exactly once,
// never inside Run().
#ifndef BRIDGE_BROKER_REDIS_SCRIPT_RUNNER_H_
#define BRIDGE_BROKER_REDIS_SCRIPT_RUNNER_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "broker/redis_connection.h"
#include "broker/redis_scripts.h"

namespace bridge::broker {

class ScriptRunner : public std::enable_shared_from_this<ScriptRunner> {
 public:
  // `scripts` (which outlive the runner) are loaded at each of the connection's handshakes:
  // create the runner before the connection's Start().
  static std::shared_ptr<ScriptRunner> Create(RedisConnection& connection,
                                              std::vector<const RedisScript*> scripts);

  ScriptRunner(const ScriptRunner&) = delete;
  ScriptRunner& operator=(const ScriptRunner&) = delete;

  // EVALSHA script.sha1 keys_and_args... (numkeys first); `done` gets the reply as
  // RedisConnection::Command gives it. While a reload is under way the call waits, up to the
  // connection's max_pending calls; past that it is sent at once.
  void Run(const RedisScript& script, std::vector<std::string> keys_and_args,
           std::chrono::milliseconds timeout, RedisConnection::ReplyCallback done);

  // Times the cache was found empty under a live connection.
  uint64_t reloads() const { return reloads_; }
  // Calls waiting for a reload to finish.
  size_t held() const { return held_.size(); }

 private:
  struct Call {
    const RedisScript* script;
    std::vector<std::string> args;
    std::chrono::milliseconds timeout;
    RedisConnection::ReplyCallback done;
  };

  ScriptRunner(RedisConnection& connection, std::vector<const RedisScript*> scripts);
  void Send(Call call);
  void Retry(Call call);
  void Release();

  RedisConnection& conn_;
  const std::vector<const RedisScript*> scripts_;
  bool reloading_ = false;
  std::deque<Call> held_;
  uint64_t reloads_ = 0;
};

}  // namespace bridge::broker

#endif  // BRIDGE_BROKER_REDIS_SCRIPT_RUNNER_H_
