// Multi-node end-to-end harness: one real redis-server on a free port and N real
// `gathering-bridge` processes sharing it through `--broker`, each on kernel-picked ports read
// back from its `--ready_file`. Every process is a child of the test: it dies with the test
// process (PR_SET_PDEATHSIG) and the Cluster's destructor kills and reaps whatever is left, so
// no process outlives a test, even one that failed an assertion.
//
// Single-threaded use: start, kill and restart processes from the test's main thread only (a
// child's death signal is tied to the thread that forked it).
#ifndef BRIDGE_TESTS_MULTINODE_CLUSTER_H_
#define BRIDGE_TESTS_MULTINODE_CLUSTER_H_

#include <sys/types.h>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "broker/redis_reply.h"
#include "gathering/bridge/v1/events.grpc.pb.h"
#include "redis_server.h"
#include "test_support.h"

namespace bridge::multinode {

using namespace std::chrono_literals;

// The `gathering-bridge` binary under test (BRIDGE_BINARY).
const char* BridgeBinary();

// `--flag` of the binary as listed by `gathering-bridge flagfile` (read once): its default value
// as printed ("10s", "0", ""), or nullopt when the binary has no such configuration flag.
std::optional<std::string> BinaryFlagDefault(const std::string& name);

// One `gathering-bridge` child process with fixed flags; ports change on every start.
class BridgeProcess {
 public:
  BridgeProcess(std::string name, std::vector<std::string> flags, std::filesystem::path dir);
  BridgeProcess(const BridgeProcess&) = delete;
  BridgeProcess& operator=(const BridgeProcess&) = delete;
  ~BridgeProcess();  // Kill9()

  // Spawns the process and waits (bounded) for its ready file, then for `GET /readyz` to
  // answer 200 (a broker node is ready only once Redis is reachable; a binary without /readyz:
  // `GET /healthz`). An error carries the tail
  // of the process's log; the process is killed then.
  absl::Status Start(std::chrono::milliseconds timeout = 15s);
  // The two halves of Start, for starting several processes at once.
  absl::Status Spawn();
  // With `ready` false only the ready file is awaited (a node whose broker is unreachable
  // serves, but is not ready).
  absl::Status AwaitReady(std::chrono::milliseconds timeout = 15s, bool ready = true);
  // SIGKILL and reap. Idempotent.
  void Kill9();
  // SIGTERM, wait up to `timeout` for the exit, SIGKILL after that. Returns the exit status
  // (128 + signal when killed), or -1 when it was not running.
  int Stop(std::chrono::milliseconds timeout = 10s);
  // Stop (SIGKILL) if running, then Start with the same flags (new ports).
  absl::Status Restart(std::chrono::milliseconds timeout = 15s);

  // True while the child has not exited (reaps it when it has).
  bool running();
  pid_t pid() const { return pid_; }
  uint16_t ws_port() const { return ws_port_; }
  uint16_t grpc_port() const { return grpc_port_; }
  uint16_t admin_port() const { return admin_port_; }  // 0: no admin listener
  const std::string& name() const { return name_; }
  const std::vector<std::string>& flags() const { return flags_; }
  // The last `bytes` of the process's stdout+stderr (every start appends to one log).
  std::string LogTail(size_t bytes = 4000) const;

 private:
  std::string name_;
  std::vector<std::string> flags_;
  std::filesystem::path dir_;
  std::filesystem::path ready_path_;
  std::filesystem::path log_path_;
  pid_t pid_ = -1;
  uint16_t ws_port_ = 0;
  uint16_t grpc_port_ = 0;
  uint16_t admin_port_ = 0;
};

struct ClusterOptions {
  int nodes = 3;
  // Start a redis-server and give every node `--broker=<its url> --node_id=nodeK`. Without it
  // each node is a standalone (embedded) bridge.
  bool redis = true;
  // Added to every node's command line (e.g. "--presence_lease=2s").
  std::vector<std::string> extra_flags;
};

class Cluster {
 public:
  Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;
  // Kills every node (SIGKILL, reaped), stops redis-server, removes the scratch directory.
  ~Cluster();

  // Starts redis (when asked) and then every node; the nodes start concurrently and are awaited
  // together. On an error everything started so far is stopped again.
  absl::Status Start(ClusterOptions options);

  int size() const { return static_cast<int>(nodes_.size()); }
  BridgeProcess& node(int i) { return *nodes_.at(i); }
  bool has_redis() const { return redis_ != nullptr; }
  broker::testing::RedisServer& redis() { return *redis_; }
  std::string broker_url() const;

  // A new gRPC stub for node i (its current port).
  std::unique_ptr<gathering::bridge::v1::EventService::Stub> Stub(int i);
  // A WebSocket client on node i; nullptr (with the reason in `error`) when refused.
  std::unique_ptr<testing::WsClient> Connect(int i, const std::string& target,
                                             std::string* error = nullptr);
  // One command on a fresh blocking connection to the cluster's redis-server.
  absl::StatusOr<broker::RedisReply> RedisCommand(const std::vector<std::string>& args);

  // `GET path` on node i: the status (0 when the connection failed) and the body.
  int Http(int i, const std::string& path, std::string* body = nullptr);
  // `GET path` on node i's admin listener (0 when it has none or the connection failed).
  int AdminHttp(int i, const std::string& path, std::string* body = nullptr);
  // A gauge or counter from node i's /metrics (the first sample whose name and labels start
  // with `metric`), or nullopt when absent.
  std::optional<double> Metric(int i, const std::string& metric);

  // Every node's log tail, /readyz and non-zero bridge_broker_* metrics, for failure messages.
  std::string Diagnostics(size_t bytes_per_node = 2500);

 private:
  std::filesystem::path dir_;
  std::unique_ptr<broker::testing::RedisServer> redis_;
  std::vector<std::unique_ptr<BridgeProcess>> nodes_;
};

// ---- Frames and streams ----

// The JSON "type" of a frame ("" when it has none).
std::string TypeOf(const boost::json::value& frame);
// Frames the bridge sends itself rather than events: ping, pong, subscribed, unsubscribed,
// authenticated, error, gap, reconnect.
bool IsControl(const boost::json::value& frame);
// An event's "offset" (0 when missing) and its data.content ("" when missing).
uint64_t OffsetOf(const boost::json::value& frame);
std::string ContentOf(const boost::json::value& frame);
// Frames for a failure message, one per line.
std::string Describe(const std::vector<boost::json::object>& frames, size_t max = 20);

struct Received {
  std::vector<boost::json::object> events;    // in arrival order
  std::vector<boost::json::object> controls;  // every control frame seen meanwhile
  bool closed = false;                        // the connection ended
  bool timed_out = false;
  int close_code = 0;
  std::string Summary() const;  // counts, end state and the last frames
};
// Reads frames until `n` events arrived (or the connection ended, or `timeout` passed).
Received CollectEvents(testing::WsClient& ws, size_t n, std::chrono::milliseconds timeout = 20s);
// The next event (control frames are skipped, and appended to `controls` when given); an empty
// object on close or timeout.
boost::json::object NextEvent(testing::WsClient& ws, std::chrono::milliseconds timeout = 10s,
                              std::vector<boost::json::object>* controls = nullptr);
// The next frame of type `type`, skipping (and keeping in `skipped`) everything before it.
boost::json::object NextOfType(testing::WsClient& ws, const std::string& type,
                               std::chrono::milliseconds timeout = 10s,
                               std::vector<boost::json::object>* skipped = nullptr);
// Sends {"type":"ping"} and waits for the bridge's pong: the socket is open and served.
bool PingPong(testing::WsClient& ws, std::chrono::milliseconds timeout = 5s,
              std::vector<boost::json::object>* skipped = nullptr);

// Publishes an agent_message {agent_id, content} with a bounded deadline.
grpc::Status Publish(gathering::bridge::v1::EventService::Stub& stub, const std::string& channel,
                     int agent_id, const std::string& content,
                     gathering::bridge::v1::PublishResponse* response = nullptr,
                     std::chrono::milliseconds deadline = 10s);

// A backend's Subscribe stream, read by its own thread into a list. The destructor cancels the
// call and joins the thread.
class BackendStream {
 public:
  BackendStream(std::unique_ptr<gathering::bridge::v1::EventService::Stub> stub,
                std::vector<std::string> channels, bool lifecycle = false,
                std::chrono::milliseconds deadline = 60s);
  BackendStream(const BackendStream&) = delete;
  BackendStream& operator=(const BackendStream&) = delete;
  ~BackendStream();

  std::vector<gathering::bridge::v1::ClientMessage> messages() const;
  // Waits (bounded) until `pred(messages)` holds or the stream ended.
  bool WaitUntil(
      const std::function<bool(const std::vector<gathering::bridge::v1::ClientMessage>&)>& pred,
      std::chrono::milliseconds timeout);
  bool ended() const;
  // The call's status once it ended (OK before).
  grpc::Status status() const;

 private:
  std::unique_ptr<gathering::bridge::v1::EventService::Stub> stub_;
  grpc::ClientContext ctx_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<gathering::bridge::v1::ClientMessage> messages_;
  bool ended_ = false;
  grpc::Status status_;
  std::thread reader_;
};

}  // namespace bridge::multinode

#endif  // BRIDGE_TESTS_MULTINODE_CLUSTER_H_
