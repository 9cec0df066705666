// The admin listener: /metrics, /healthz, /readyz (as on the public listener), the dashboard
// page at /admin and its live feed at /admin/ws, on an address and port of their own, served by
// one io thread of their own so that nothing here can slow the public edge (and a busy public
// edge does not starve the operator's view).
//
// Bounds: `max_connections` open connections (503 past it), request headers of
// `max_header_bytes` (431), one deadline per request (`handshake_timeout`), `max_feeds` open
// feeds (503), and per feed a write queue of `max_feed_queue_frames` frames: a dashboard that
// does not read is dropped, it never holds more. With a TLS context (`AdminOptions::tls`) every
// connection does the TLS handshake first, within `handshake_timeout`: https:// and wss:// only,
// and a client speaking plain HTTP gets no answer (its handshake fails, the connection is
// closed). Without one it is plain HTTP: bind it to a private address. With an auth verifier,
// /admin and /admin/ws need an admin token (admin_auth.h), and so does /admin/nodes (the node list
// as JSON, NodesJson); /metrics and the health endpoints never do.
//
// Start() binds (port 0 picks a free one) and runs; Stop() (any thread but the admin thread;
// idempotent, the destructor calls it) closes every connection and joins the thread.
#ifndef BRIDGE_ADMIN_ADMIN_SERVER_H_
#define BRIDGE_ADMIN_ADMIN_SERVER_H_

#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "admin/sampler.h"
#include "auth/verifier.h"
#include "core/hub.h"
#include "core/metrics.h"
#include "ws/server_state.h"

namespace bridge::admin {

struct AdminOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0: a free port
  size_t max_connections = 64;
  size_t max_feeds = 8;
  size_t max_header_bytes = 8 * 1024;
  std::chrono::milliseconds handshake_timeout{10000};
  std::chrono::milliseconds sample_interval{1000};
  size_t max_feed_queue_frames = 8;  // ~8 s of samples; more: the dashboard is dropped
  // TLS for every connection (https://, wss://); null: plain http://.
  std::shared_ptr<boost::asio::ssl::context> tls;
};

// What the admin listener reads; all outlive the AdminServer.
struct AdminSources {
  const core::Metrics* metrics = nullptr;
  core::Hub* hub = nullptr;
  ws::ServerState* state = nullptr;  // draining, the close log
  // Null: no auth (the dashboard is open).
  std::shared_ptr<const auth::TokenVerifier> verifier;
  std::string broker_mode = "embedded";
  const core::BrokerStats* broker_stats = nullptr;  // the broker's lag histograms; null: none
};

class AdminServer {
 public:
  static absl::StatusOr<std::unique_ptr<AdminServer>> Start(AdminOptions options,
                                                            AdminSources sources);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  uint16_t port() const;
  // Any thread: the node list of the next samples (NodeDirectory).
  void SetNodes(std::vector<NodeInfo> nodes);
  bool tls() const;  // serving https:// (fixed at Start)
  // Any thread: connections accepted from now on handshake with `context` (a renewed
  // certificate); open ones keep theirs. Ignored (false) when the listener started without TLS.
  bool SetTls(std::shared_ptr<boost::asio::ssl::context> context);
  void Stop();

  struct Impl;

 private:
  explicit AdminServer(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace bridge::admin

#endif  // BRIDGE_ADMIN_ADMIN_SERVER_H_
