// RedisBroker: core::Broker on one Redis server, for many bridge nodes sharing it.
//
// Two RedisConnections on one strand of the given executor: a command connection (publish and
// history scripts, pipelined) and a subscriber connection (SUBSCRIBE/UNSUBSCRIBE and the
// messages). Keys, scripts and the pub/sub payload: broker/redis_scripts.h, docs/broker.md.
//
// Threading. Every public method may be called from any thread: it posts its work to the strand
// and returns. EVERY callback, and the handler's on_message and on_state, run on that strand
// (an io thread; never inline in the calling method). They must not block.
//
// Publish is one EVALSHA round trip, in call order (ScriptRunner: the scripts are loaded at each
// connect, and an emptied script cache is refilled without reordering). While the command
// connection is not ready, Publish and History fail at once with UNAVAILABLE; a publish in flight
// when the link breaks also gets UNAVAILABLE (it may have been stored). OK means the script ran:
// the event is in the stream and was PUBLISHed.
//
// Subscriptions. The broker keeps the set of channels this node is interested in. After the
// subscriber connection comes back it subscribes to all of them again; on_state reports kDown
// as soon as either connection breaks and kUp once both are ready and every interest is active
// again. Between the two, pub/sub messages may have been lost: the node repairs from History.
//
// Lifetime. Create() returns a shared_ptr; call Start() once and Stop() before dropping it.
#ifndef BRIDGE_BROKER_REDIS_BROKER_H_
#define BRIDGE_BROKER_REDIS_BROKER_H_

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/redis_connection.h"
#include "broker/redis_script_runner.h"
#include "broker/redis_scripts.h"
#include "core/broker.h"

namespace bridge::broker {

struct RedisBrokerOptions {
  // URL, timeouts, TLS, bounds for both connections; `subscriber` and `client_name` are set by
  // the broker (client names `<node_id>:cmd` and `<node_id>:sub`).
  RedisConnectionOptions connection;
  std::string node_id = "bridge";
  std::string prefix = "gb";  // every key and topic starts with `<prefix>:{`
  // The meta hash (epoch, offset) expires this long after the channel's last publish; 0: never.
  // Must be >= every policy's ttl, and policies must have a ttl when it is set (ValidatePolicy):
  // a stream outliving its meta would be served under a new epoch.
  std::chrono::seconds meta_ttl{0};
  std::chrono::milliseconds history_timeout{5000};  // per History command (ranges can be big)
};

class RedisBroker final : public core::Broker, public std::enable_shared_from_this<RedisBroker> {
 public:
  // Fails only for a TLS configuration that cannot be loaded. Any thread.
  static absl::StatusOr<std::shared_ptr<RedisBroker>> Create(boost::asio::any_io_executor executor,
                                                             RedisBrokerOptions options);
  ~RedisBroker() override;
  RedisBroker(const RedisBroker&) = delete;
  RedisBroker& operator=(const RedisBroker&) = delete;

  // Starts both connections. SetHandler first.
  void Start();
  // Stops both connections: pending publishes and histories get UNAVAILABLE, waiting subscribes
  // CANCELLED; later calls get CANCELLED. No handler call after Stop's task ran. Idempotent.
  void Stop();

  void SetHandler(core::BrokerHandler handler) override;
  absl::Status ValidatePolicy(const core::HistoryPolicy& policy) const override;
  void Publish(const std::string& channel, std::string_view head, std::string_view tail,
               const core::HistoryPolicy& policy, std::string_view origin,
               PublishCallback done) override;
  void History(const std::string& channel, uint64_t since, size_t limit,
               HistoryCallback done) override;
  void Open(const std::string& channel, uint64_t since, size_t limit,
            HistoryCallback done) override;
  void RotateEpoch(const std::string& channel, const std::string& from_epoch,
                   PublishCallback done) override;
  void Subscribe(const std::string& channel, StatusCallback done) override;
  void Unsubscribe(const std::string& channel) override;
  void PublishBackendMessage(std::string_view origin, std::string_view payload) override;
  void SetBackendInterest(bool on) override;
  // The directory: NodesAnnounceScript on the command connection (keys: NodeKeysFor).
  void AnnounceNode(std::string_view node, std::string_view info, std::chrono::milliseconds ttl,
                    NodesCallback done) override;
  void WithdrawNode(std::string_view node, StatusCallback done) override;
  core::BrokerHealth Health() const override;
  const core::BrokerStats& stats() const override { return stats_; }

  const RedisBrokerOptions& options() const { return options_; }

 private:
  struct Interest {
    uint64_t generation = 0;  // bumped per (re)subscription; stale acks carry an older one
    bool active = false;      // SUBSCRIBE acknowledged on the current subscriber link
    bool in_flight = false;
    bool restoring = false;  // re-subscribed after a reconnect, not yet acknowledged
    std::vector<StatusCallback> waiting;
  };
  using State = RedisConnectionState;

  RedisBroker(boost::asio::any_io_executor executor, RedisBrokerOptions options);

  // Strand only, below.
  void DoPublish(const std::string& channel, const std::string& head, const std::string& tail,
                 const core::HistoryPolicy& policy, const std::string& origin,
                 PublishCallback done);
  void DoHistory(const std::string& channel, uint64_t since, size_t limit, bool create,
                 HistoryCallback done);
  void DoSubscribe(const std::string& channel, StatusCallback done);
  void DoUnsubscribe(const std::string& channel);
  void SendSubscribe(const std::string& channel, Interest& interest);
  void OnSubscribed(const std::string& channel, uint64_t generation,
                    absl::StatusOr<RedisReply> reply);
  void OnCommandState(State s, const absl::Status& why);
  void OnSubscriberState(State s, const absl::Status& why);
  void OnPush(const RedisReply& push);
  // Reports kUp/kDown to the handler when the combined state changed; updates Health.
  void UpdateState(const absl::Status& why);
  void DoStop();

  boost::asio::strand<boost::asio::any_io_executor> strand_;
  const RedisBrokerOptions options_;
  std::shared_ptr<RedisConnection> cmd_;
  std::shared_ptr<RedisConnection> sub_;
  std::shared_ptr<ScriptRunner> scripts_;  // on cmd_
  core::BrokerHandler handler_;

  // Strand only.
  bool started_ = false;
  bool stopped_ = false;
  bool cmd_ready_ = false;
  bool sub_ready_ = false;
  bool backend_interest_ = false;
  size_t restoring_ = 0;  // interests re-subscribed after a reconnect, not yet acknowledged
  std::optional<core::BrokerState> reported_;
  uint64_t next_generation_ = 1;
  std::unordered_map<std::string, Interest> interests_;

  mutable std::mutex health_mu_;
  core::BrokerHealth health_;
  core::BrokerStats stats_;
};

}  // namespace bridge::broker

#endif  // BRIDGE_BROKER_REDIS_BROKER_H_
