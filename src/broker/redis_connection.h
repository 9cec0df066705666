// RedisConnection: one pipelined connection to one Redis server, under our own Asio socket
// (optionally TLS), with hiredis 0.14 used only as the RESP codec (redisFormatCommandArgv to
// encode, redisReader* to decode). It reconnects by itself with bounded, jittered exponential
// backoff and reports every state change.
//
// Threading. A connection lives on ONE executor (an io_context, or a strand of one). Every
// public method, including Create, must be called on that executor's thread; stats() is the only
// exception (plain atomics, readable anywhere). Callbacks and handlers run on that thread too.
//
// Ownership. Create() returns a shared_ptr; outstanding I/O holds a reference, so the owner must
// call Stop() before dropping its last pointer (otherwise the reconnect loop keeps the
// connection alive). Timers hold weak pointers only.
//
// Commands. Command() queues a command and returns at once. Replies complete in FIFO order;
// everything queued before the connection gets to write leaves in one write. A Redis error reply
// ("-ERR ...") is a successful RedisReply of type kError, not a failed Status. Failed Statuses:
//   UNAVAILABLE        the connection is not ready (connecting, down, stopped) or broke while the
//                      command was pending; the command may or may not have been executed.
//   DEADLINE_EXCEEDED  this command's timeout passed. Any timeout breaks the connection (a late
//                      reply can then never be matched to the wrong command): every other pending
//                      command fails with UNAVAILABLE and the connection reconnects.
//   RESOURCE_EXHAUSTED max_pending commands or max_output_bytes are already queued.
//   INVALID_ARGUMENT / FAILED_PRECONDITION  empty command; a (P|S)(UN)SUBSCRIBE on a connection
//                      that is not a subscriber connection.
// Commands issued while not kReady fail fast (never queue): after Start(), wait for the state
// handler's kReady. Each callback is called exactly once, possibly after Stop() returned.
//
// Reentrancy. Callbacks are never called from inside a public method: failures detected inside
// Command()/Stop() are posted to the executor. Replies, pushes and state changes are delivered
// from the connection's own I/O handlers, and those callbacks may call any public method
// (Command, Stop) of this connection.
//
// Pub/sub. With `subscriber = true`, arrays starting with "message", "pmessage" or "smessage" go
// to the push handler, as do the acks "subscribe", "unsubscribe", "psubscribe", "punsubscribe",
// "ssubscribe" and "sunsubscribe". A (P|S)(UN)SUBSCRIBE command completes when its acks have
// arrived (one per channel argument; for an argument-less UNSUBSCRIBE, one per channel the
// connection will be subscribed to at that point, or one nil ack), with an array of those acks.
// Subscriptions are not restored after a reconnect: the state handler's kReady tells the owner
// to subscribe again (and kDown that pushes may have been lost).
#ifndef BRIDGE_BROKER_REDIS_CONNECTION_H_
#define BRIDGE_BROKER_REDIS_CONNECTION_H_

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "broker/redis_reply.h"
#include "broker/redis_url.h"

struct redisReader;

namespace bridge::broker {

// Every default in one place. Values are used as given (a zero timeout times out at once).
struct RedisConnectionOptions {
  RedisUrl url;             // host, port, tls, user/password (AUTH), db (SELECT)
  std::string client_name;  // CLIENT SETNAME after connecting; empty: not sent
  bool subscriber = false;  // a pub/sub connection (see the header comment)
  std::chrono::milliseconds command_timeout{2000};  // per command, unless Command() says other
  std::chrono::milliseconds connect_timeout{2000};  // resolve + TCP + TLS + AUTH/SELECT/SETNAME
  std::chrono::milliseconds reconnect_min{100};     // first retry after [min/2, min]
  std::chrono::milliseconds reconnect_max{5000};    // the doubling stops here
  size_t max_pending = 1'000'000;                   // commands awaiting a reply, queued included
  size_t max_output_bytes = 64u << 20;              // encoded commands not yet written
  size_t max_reply_bytes = 512u << 20;              // one reply larger than this breaks the link

  // TLS, for rediss:// URLs.
  std::string tls_ca_file;      // PEM; empty: the system's default verify paths
  std::string tls_cert_file;    // client certificate (PEM); empty: none
  std::string tls_key_file;     // its key (PEM)
  bool tls_verify_peer = true;  // verify the chain and the host name
  std::string tls_server_name;  // SNI and name to verify; empty: url.host
};

enum class RedisConnectionState {
  kConnecting,  // resolving, connecting, TLS handshake, AUTH/SELECT/SETNAME/SCRIPT LOAD in flight
  kReady,       // commands are accepted
  kDown,        // broke or failed to connect (the Status says why); a retry is scheduled
  kStopped,     // Stop() was called; final. Not reported to the state handler.
};

const char* RedisConnectionStateName(RedisConnectionState s);

// Counters since Create(). Plain atomics: any thread may read them.
struct RedisConnectionStats {
  std::atomic<uint64_t> connects{0};         // handshakes that reached kReady
  std::atomic<uint64_t> reconnects{0};       // connection attempts after the first
  std::atomic<uint64_t> commands_sent{0};    // accepted by Command() (queued for writing)
  std::atomic<uint64_t> commands_failed{0};  // callbacks that got a non-OK Status
  std::atomic<uint64_t> timeouts{0};         // commands that got DEADLINE_EXCEEDED
  std::atomic<uint64_t> pushes{0};           // pub/sub messages and acks delivered
  std::atomic<uint64_t> bytes_read{0};
  std::atomic<uint64_t> bytes_written{0};
};

class RedisConnection : public std::enable_shared_from_this<RedisConnection> {
 public:
  using ReplyCallback = absl::AnyInvocable<void(absl::StatusOr<RedisReply>)>;
  using PushHandler = absl::AnyInvocable<void(RedisReply)>;
  // kConnecting and kReady come with OK; kDown with the reason (e.g. UNAVAILABLE "read: End of
  // file", PERMISSION_DENIED "AUTH: WRONGPASS ...", DEADLINE_EXCEEDED "command timed out").
  using StateHandler = absl::AnyInvocable<void(RedisConnectionState, const absl::Status&)>;

  // Fails only for a TLS configuration that cannot be loaded (CA, certificate, key).
  static absl::StatusOr<std::shared_ptr<RedisConnection>> Create(
      boost::asio::any_io_executor executor, RedisConnectionOptions options);

  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;
  ~RedisConnection();

  // Set before Start(); replaced handlers take effect for the next event.
  void SetPushHandler(PushHandler handler);
  void SetStateHandler(StateHandler handler);
  // Adds Lua script bodies to load (SCRIPT LOAD) at every handshake, before kReady: an EVALSHA
  // of one of them never finds the server's cache empty after a connect (a fresh server, a
  // restart, a fail-over). An error reply (e.g. an ACL without SCRIPT) is not fatal: EVALSHA then
  // answers NOSCRIPT, as without it. Call before Start() (later: from the next handshake on).
  void LoadScriptsOnConnect(const std::vector<std::string_view>& bodies);

  // Starts connecting (kConnecting). Call once.
  void Start();
  // Closes the socket, stops reconnecting, fails every pending command with UNAVAILABLE (posted)
  // and drops the push and state handlers. Idempotent.
  void Stop();

  // Queues `args` (args[0] is the command name; binary-safe). `done` gets the reply or a Status
  // (see the header comment). `timeout` overrides options.command_timeout for this command.
  void Command(std::vector<std::string> args, ReplyCallback done);
  void Command(std::vector<std::string> args, std::chrono::milliseconds timeout,
               ReplyCallback done);

  RedisConnectionState state() const { return state_; }
  // Why the connection last went down; OK if it never did.
  const absl::Status& last_error() const { return last_error_; }
  // Commands awaiting a reply (queued or written).
  size_t pending() const { return pending_.size(); }
  const RedisConnectionOptions& options() const { return options_; }
  const RedisConnectionStats& stats() const { return stats_; }

 private:
  struct Link;
  enum class SubKind {
    kNone,
    kSubscribe,
    kUnsubscribe,
    kPSubscribe,
    kPUnsubscribe,
    kSSubscribe,
    kSUnsubscribe
  };
  using Clock = std::chrono::steady_clock;
  struct Pending {
    ReplyCallback done;
    Clock::time_point deadline;
    std::chrono::milliseconds timeout{0};
    SubKind kind = SubKind::kNone;
    size_t acks_left = 0;
    std::vector<RedisReply> acks;
  };
  struct ReaderDeleter {
    void operator()(redisReader* r) const;
  };

  RedisConnection(boost::asio::any_io_executor executor, RedisConnectionOptions options);

  void Connect();
  void OnResolved(uint64_t gen, const boost::system::error_code& ec,
                  boost::asio::ip::tcp::resolver::results_type results);
  void OnConnected(uint64_t gen, const boost::system::error_code& ec);
  void OnTlsHandshake(uint64_t gen, const boost::system::error_code& ec);
  void StartSession();
  void OnHandshakeReply(uint64_t gen, const char* what, bool required, bool last,
                        const absl::StatusOr<RedisReply>& reply);
  void SetReady();

  absl::Status Enqueue(std::vector<std::string>& args, std::chrono::milliseconds timeout,
                       SubKind kind, ReplyCallback done);
  size_t ExpectedAcks(SubKind kind, const std::vector<std::string>& args);
  void ScheduleFlush();
  void DoWrite();
  void OnWrite(uint64_t gen, const boost::system::error_code& ec, size_t n);
  void DoRead();
  void OnRead(uint64_t gen, const boost::system::error_code& ec, size_t n);
  void Feed(const char* data, size_t n);
  void ProcessReplies();
  void FailOversized();
  void HandleReply(RedisReply reply);
  void Complete(Pending& p, absl::StatusOr<RedisReply> result);

  void ArmDeadline(Clock::time_point deadline);
  void OnDeadline(uint64_t gen, Clock::time_point fired);
  // Breaks the current connection: fails every pending command (with `timeout`, those past their
  // deadline with DEADLINE_EXCEEDED; the rest with UNAVAILABLE), reports kDown, schedules a
  // reconnect.
  void Fail(absl::Status why, bool timeout = false);
  void CloseLink();
  void ScheduleReconnect();
  void SetState(RedisConnectionState s, const absl::Status& why);
  void Push(RedisReply reply);
  void PostFailure(ReplyCallback done, absl::Status status);

  boost::asio::any_io_executor executor_;
  RedisConnectionOptions options_;
  std::vector<std::string> scripts_;                    // LoadScriptsOnConnect
  std::unique_ptr<boost::asio::ssl::context> ssl_ctx_;  // null unless url.tls
  boost::asio::ip::tcp::resolver resolver_;
  boost::asio::steady_timer deadline_timer_;
  boost::asio::steady_timer connect_timer_;
  boost::asio::steady_timer backoff_timer_;
  bool deadline_armed_ = false;
  Clock::time_point armed_at_;

  RedisConnectionState state_ = RedisConnectionState::kDown;
  bool started_ = false;
  absl::Status last_error_;
  uint64_t generation_ = 0;  // bumped by every connect attempt and every Fail/Stop
  std::shared_ptr<Link> link_;
  std::unique_ptr<redisReader, ReaderDeleter> reader_;
  uint64_t fed_bytes_ = 0;    // fed to reader_ on this link
  uint64_t reply_start_ = 0;  // fed_bytes_ at the end of the last complete reply

  std::deque<Pending> pending_;
  std::string out_;           // encoded commands waiting for the next write
  size_t out_in_flight_ = 0;  // bytes of the write in flight
  bool writing_ = false;
  bool flush_posted_ = false;

  // What the server's subscription sets will be once every queued command ran (for the ack
  // count of an argument-less UNSUBSCRIBE).
  std::set<std::string> channels_, patterns_, shard_channels_;

  int attempt_ = 0;
  bool ever_attempted_ = false;
  std::minstd_rand rng_;

  PushHandler push_handler_;
  StateHandler state_handler_;
  RedisConnectionStats stats_;
};

}  // namespace bridge::broker

#endif  // BRIDGE_BROKER_REDIS_CONNECTION_H_
