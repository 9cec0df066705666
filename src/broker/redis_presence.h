// RedisPresence: core::PresenceManager on one Redis server shared by many bridge nodes, with
// leases (see docs/broker.md, "Presence").
//
// Layout, per channel, every key hash-tagged `{<channel>}` like the broker's:
//   <prefix>:{<channel>}:presence          hash  connection -> "<node>\n<joined ms>\n<identity>"
//   <prefix>:{<channel>}:presence:lease    zset  connection -> lease expiry (ms, server clock)
//   <prefix>:{<channel>}:presence:members  hash  identity -> "<connections>:<joined ms>"
// Every change is one Lua script (join, leave, renew, expire; list reads with one more). Scripts
// use the server's clock (TIME), never the node's.
//
// The connection. RedisPresence issues its scripts on a RedisConnection it is given (normally the
// broker's command connection) and does not own it: the connection must outlive it, and the
// executor passed to Create must be the connection's own (the same strand). The connection has one
// state handler and its owner holds it, so the owner forwards state changes to
// OnConnectionState(); without that, the next call (Join, Leave, List) or tick notices a new link
// anyway (at most one renew interval later).
//
// Threading. Every PresenceManager method, Watch/Unwatch, Start and Stop may be called from any
// thread: they post to the executor and return. EVERY callback and both handlers run on that
// executor (never inline in the calling method). OnConnectionState: on the executor only.
//
// Leases. This node's connections are held under `lease`, pushed forward every `renew_interval`
// by one renew script per channel (connection ids in batches of `renew_batch`), pipelined across
// channels. Each tick also runs the expiry script for every channel this node has members in or
// Watches: it removes every connection whose lease passed and returns the identities whose count
// reached 0; being atomic, two nodes racing get disjoint results, so each is reported once.
//
// Redis loss. Commands fail with UNAVAILABLE while the connection is down (DEADLINE_EXCEEDED when
// one timed out). A Join that fails keeps the connection as this node's member: it is
// registered when the connection is back, not to be retried by the caller; a Leave that fails
// forgets it here, and its lease runs out in Redis (a sweeper then reports it as expired). On
// every new link the node re-runs Join for each local member (pipelined, with its original
// joined_at); each one that makes an identity a member again goes to the restored handler, not to
// a Join callback. The renew script also returns connections that are no longer there (swept by
// another node while this one could not renew): they are re-registered the same way.
//
// Lifetime. Create() returns a shared_ptr; Start() once; Stop() before dropping it.
#ifndef BRIDGE_BROKER_REDIS_PRESENCE_H_
#define BRIDGE_BROKER_REDIS_PRESENCE_H_

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/redis_connection.h"
#include "broker/redis_script_runner.h"
#include "core/presence.h"

namespace bridge::broker {

struct RedisPresenceOptions {
  std::string node_id = "bridge";  // stored with each connection; no '\n'
  std::string prefix = "gb";       // keys start with `<prefix>:{`, as the broker's
  std::chrono::milliseconds lease{30000};
  std::chrono::milliseconds renew_interval{0};  // 0: lease / 3; must be < lease
  std::chrono::milliseconds key_ttl{0};         // refreshed by join and renew; 0: 3 * lease
  size_t renew_batch = 1000;                    // connection ids per renew script call
  size_t expire_batch = 1000;                   // connections removed per expiry run at most
};

// Counters since Create(). Plain atomics: any thread may read them.
struct RedisPresenceStats {
  std::atomic<uint64_t> joins{0};        // join scripts that ran (callers' and restores)
  std::atomic<uint64_t> leaves{0};       // leave scripts that ran
  std::atomic<uint64_t> renews{0};       // renew script calls sent
  std::atomic<uint64_t> expiry_runs{0};  // expiry script calls sent
  std::atomic<uint64_t> expired{0};      // identities reported to the expired handler
  std::atomic<uint64_t> restored{0};     // identities reported to the restored handler
  std::atomic<uint64_t> resyncs{0};      // re-registrations after a new link
  std::atomic<uint64_t> failures{0};     // scripts that got a non-OK Status or error reply
};

class RedisPresence final : public core::PresenceManager,
                            public std::enable_shared_from_this<RedisPresence> {
 public:
  // INVALID_ARGUMENT for options that cannot work (empty node id or one with '\n', lease <= 0,
  // renew_interval >= lease, zero batches). Any thread.
  static absl::StatusOr<std::shared_ptr<RedisPresence>> Create(
      boost::asio::any_io_executor executor, RedisConnection& connection,
      RedisPresenceOptions options);
  ~RedisPresence() override;
  RedisPresence(const RedisPresence&) = delete;
  RedisPresence& operator=(const RedisPresence&) = delete;

  // Starts the renew/expiry ticks. Call once.
  void Start();
  // Stops the ticks and releases this node's leases (one renew script per channel with lease 0,
  // so the next sweep anywhere reports its members within a renew interval, not a lease); later
  // calls get CANCELLED, and replies arriving after Stop's task ran are dropped (handlers are not
  // called). Commands in flight still complete their callbacks. Idempotent.
  void Stop();
  // Tests: like kill -9. Stops ticking and forgets the local members without telling Redis, so
  // their leases run out there. Later calls get CANCELLED.
  void AbandonForTesting();

  // The connection's state, forwarded by its owner (executor only): a new kReady link triggers
  // the re-registration of this node's members.
  void OnConnectionState(RedisConnectionState state, const absl::Status& why);

  void SetExpiredHandler(ExpiredHandler handler) override;
  void SetRestoredHandler(RestoredHandler handler) override;
  void Join(const std::string& channel, const std::string& identity,
            const std::string& connection_id, ChangeCallback done) override;
  void Leave(const std::string& channel, const std::string& identity,
             const std::string& connection_id, ChangeCallback done) override;
  // Members with their connections on every node, by identity ascending (byte order). The
  // contributions of connections whose lease passed but that were not swept yet are left out
  // (List does not sweep: only the expiry script removes, so only it reports).
  void List(const std::string& channel, ListCallback done) override;
  void Watch(const std::string& channel) override;
  void Unwatch(const std::string& channel) override;

  const RedisPresenceOptions& options() const { return options_; }
  const RedisPresenceStats& stats() const { return stats_; }

 private:
  struct Local {
    std::string identity;
    int64_t joined_ms = 0;  // the connection's join time on the server; 0 until a Join ran
  };
  struct Channel {
    std::map<std::string, Local> connections;  // this node's, by connection id
    bool watched = false;
  };
  struct Keys {
    std::string info, lease, members;
  };

  RedisPresence(boost::asio::any_io_executor executor, RedisConnection& connection,
                RedisPresenceOptions options);

  // Executor only, below.
  Keys KeysOf(const std::string& channel) const;
  void RunScript(int which, const std::string& channel, std::vector<std::string> args,
                 RedisConnection::ReplyCallback done);
  void DoJoin(const std::string& channel, const std::string& identity,
              const std::string& connection_id, ChangeCallback done);
  void DoLeave(const std::string& channel, const std::string& connection_id, ChangeCallback done);
  void DoList(const std::string& channel, ListCallback done);
  // Runs the join script for a local member again; the restored handler hears of a 0->1.
  void Restore(const std::string& channel, const std::string& connection_id);
  void Renew(const std::string& channel, const Channel& ch, std::chrono::milliseconds lease);
  void Expire(const std::string& channel);
  void CheckLink();
  void ScheduleTick();
  void Tick();
  void DropIfIdle(const std::string& channel);
  void DoStop(bool release);

  boost::asio::any_io_executor executor_;
  RedisConnection& conn_;
  std::shared_ptr<ScriptRunner> scripts_;  // on conn_
  const RedisPresenceOptions options_;
  boost::asio::steady_timer timer_;
  ExpiredHandler expired_;
  RestoredHandler restored_;

  // Executor only.
  bool started_ = false;
  bool stopped_ = false;
  uint64_t seen_connects_ = 0;  // conn_.stats().connects when this node last (re)registered
  std::unordered_map<std::string, Channel> channels_;

  RedisPresenceStats stats_;
};

}  // namespace bridge::broker

#endif  // BRIDGE_BROKER_REDIS_PRESENCE_H_
