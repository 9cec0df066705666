// The whole bridge in one object: io threads, hub, WebSocket listener and gRPC server.
//
// Start() binds both listeners (port 0 picks free ports) and returns a running server; Shutdown()
// drains it gracefully: it stops accepting, closes WebSockets with 1001, finishes open gRPC calls
// and joins the io threads, each step bounded by `shutdown_timeout`. Shutdown() may be called
// from any thread but not from an io thread; the destructor calls it. Used by main() and, in
// process, by the integration tests.
#ifndef BRIDGE_APP_BRIDGE_SERVER_H_
#define BRIDGE_APP_BRIDGE_SERVER_H_

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "admin/admin_server.h"
#include "core/hub.h"
#include "core/metrics.h"
#include "core/namespaces.h"
#include "rpc/event_service.h"
#include "ws/server_state.h"

namespace bridge::app {

struct ServerConfig {
  std::string host = "127.0.0.1";
  uint16_t ws_port = 8080;
  uint16_t grpc_port = 50051;
  size_t io_threads = 0;  // 0: one per core
  size_t max_channels = core::Hub::kDefaultMaxChannels;
  std::chrono::milliseconds channel_idle_timeout = core::Hub::kDefaultIdleTimeout;
  core::NamespaceRegistry namespaces = core::NamespaceRegistry::Defaults();
  ws::WsOptions ws;
  rpc::RpcOptions rpc;
  size_t grpc_max_message_bytes = 4 * 1024 * 1024;
  ws::AuthSettings auth;  // WebSocket clients; rpc.auth holds the backends' side
  // WebSocket/HTTP TLS (PEM files): wss:// and https://; empty: plain ws://.
  std::string ws_tls_cert_file;
  std::string ws_tls_key_file;
  // gRPC TLS (PEM files); empty: plaintext. With `grpc_client_ca_file`, backends must present a
  // certificate signed by it (mTLS).
  std::string grpc_tls_cert_file;
  std::string grpc_tls_key_file;
  std::string grpc_client_ca_file;
  // Where channels live (docs/broker.md): "" embedded in this process; "memory" the same through
  // the broker seam; "redis://..." / "rediss://..." shared with every bridge on that Redis.
  std::string broker;
  std::string broker_tls_ca_file;  // rediss://: verifies the server
  std::string node_id;             // empty: host name and pid
  // Redis: how long a node's presence members outlive it when it dies without leaving.
  std::chrono::milliseconds presence_lease{30000};
  // With a Redis broker: how long a channel's offsets and epoch outlive its last publish (0: for
  // ever); namespaces with history then need a ttl of at most this.
  std::chrono::seconds broker_meta_ttl{0};
  // With a broker: the node directory's announce interval (admin/node_directory.h).
  std::chrono::milliseconds node_announce_interval{2000};
  // Broker mode: frames a pending subscription buffers; how long an unused channel link stays.
  size_t max_pending_frames = 8192;
  std::chrono::milliseconds broker_link_linger{2000};
  std::chrono::milliseconds shutdown_timeout{5000};
  // Closes at shutdown spread evenly over this (0: all at once); within shutdown_timeout.
  std::chrono::milliseconds drain_window{0};
  // How often Hub::Sweep runs (expired history, idle channels' state); on its own thread.
  std::chrono::milliseconds sweep_interval{1000};
  // The admin listener (metrics, health, the dashboard): nullopt, off. Its verifier is
  // `auth.verifier`.
  std::optional<admin::AdminOptions> admin;
  // The admin listener's TLS (PEM files): https:// and wss://; empty: plain http://. With
  // admin.tls_from_ws these are the WebSocket listener's files. Its `tls` context is made from
  // them at Start.
  std::string admin_tls_cert_file;
  std::string admin_tls_key_file;
};

class BridgeServer {
 public:
  static absl::StatusOr<std::unique_ptr<BridgeServer>> Start(ServerConfig config);
  ~BridgeServer();

  uint16_t ws_port() const;
  uint16_t grpc_port() const;
  uint16_t admin_port() const;  // 0: no admin listener
  core::Metrics& metrics();
  // Reads --ws_tls_cert_file/--ws_tls_key_file again (any thread): new connections use the new
  // certificate, open ones keep theirs. On error the current certificate stays.
  absl::Status ReloadTls();
  // Whether Reload(next) may go ahead: INVALID_ARGUMENT when `next`'s namespace policies (with
  // the running names) could not have started the bridge: a history the broker cannot keep, or
  // a policy events.proto's typed channels do not allow. Any thread but an io thread.
  absl::Status CheckReload(const ServerConfig& next) const;
  // Reads the admin listener's TLS files of `next` again (as ReloadTls; Reload calls it). Turning
  // admin TLS on or off is refused: that needs a restart.
  absl::Status ReloadAdminTls(const ServerConfig& next);
  // SIGHUP: applies what can change while running from `next` (built like the running
  // configuration): the WebSocket TLS files read again, the token verifier's keys and claims, the
  // API keys, the allowed origins, the connection and rate limits, the hub's channel limits, the
  // sweep interval, the gRPC stream limits, the auth timeout and, when `next` has the running
  // namespaces' names in the same order, their policies (CheckReload's failure: not them). A TLS
  // failure leaves the running certificate and is returned; the rest applies. Call from one
  // thread at a time, not from an io thread.
  absl::Status Reload(const ServerConfig& next);
  void Shutdown();

 private:
  struct Impl;
  struct BrokerParts;
  explicit BridgeServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bridge::app

#endif  // BRIDGE_APP_BRIDGE_SERVER_H_
