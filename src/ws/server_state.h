// What the WebSocket/HTTP front end shares: the hub, the limits, the io threads' contexts and
// each shard's open sessions.
//
// Owned by the app, which outlives every session. `registries[i]` is touched only on shard i's
// thread; the atomics from any thread.
#ifndef BRIDGE_WS_SERVER_STATE_H_
#define BRIDGE_WS_SERVER_STATE_H_

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "auth/verifier.h"
#include "core/hub.h"
#include "core/metrics.h"
#include "core/origin.h"
#include "ws/close_log.h"

namespace bridge::ws {

class WsSession;

// Every limit of the front end in one place; app/ fills it from flags. Zero never means
// "unlimited" here: each has a finite default.
struct WsOptions {
  size_t max_frame_bytes = 64 * 1024;        // larger client frames close with 1009
  size_t max_queue_bytes = 4 * 1024 * 1024;  // per-session write queue; over it: the policy
  // All sessions' queues together: past it, sessions holding over 64 KiB get their policy.
  size_t max_total_queue_bytes = size_t{1} << 30;
  size_t max_connections = 100000;                      // over it: HTTP 503
  size_t max_channels_per_connection = 64;              // over it: error frame too_many_channels
  size_t max_header_bytes = 8 * 1024;                   // HTTP request header limit (431)
  std::chrono::milliseconds handshake_timeout{10000};   // HTTP request and WS upgrade
  std::chrono::milliseconds heartbeat_interval{30000};  // JSON {"type":"ping"} period
  std::chrono::milliseconds idle_timeout{75000};        // nothing received for this long: close
  std::chrono::milliseconds close_timeout{5000};        // a close handshake may take this long
  size_t max_connections_per_ip = 1000;                 // over it: HTTP 429
  bool per_ip_exempt_loopback = true;  // local reverse proxies make every client 127.0.0.1
  double client_message_rate = 100;    // client messages per second per connection (0: no limit)
  double client_message_burst = 200;
  // subscribe/unsubscribe frames per second per connection (0: no limit); past the burst they
  // are refused with rate_limited, and a connection that keeps going is closed 4008.
  double subscribe_rate = 20;
  double subscribe_burst = 128;
  core::OriginPolicy origins;
};

// Who may connect. `verifier` null means auth is off (the embedded default): identities come
// from `?client=` and every channel is open.
struct AuthSettings {
  std::shared_ptr<const auth::TokenVerifier> verifier;
  std::chrono::milliseconds auth_timeout{5000};  // the first-frame `auth` must arrive within it
  bool enabled() const { return verifier != nullptr; }
};

struct ServerState {
  ServerState(core::Hub& hub, core::Metrics& metrics, WsOptions options, AuthSettings auth,
              std::vector<boost::asio::io_context*> shards)
      : hub(hub),
        metrics(metrics),
        auth(std::move(auth)),
        auth_timeout(this->auth.auth_timeout),
        shards(std::move(shards)),
        registries(this->shards.size()),
        options_(std::make_shared<const WsOptions>(std::move(options))),
        origins_(std::make_shared<const core::OriginPolicy>(options_->origins)) {}

  core::Hub& hub;
  core::Metrics& metrics;
  const AuthSettings auth;
  // auth.auth_timeout at first; a reload sets it (any thread). A connection reads it when it
  // starts waiting for its auth frame.
  std::atomic<std::chrono::milliseconds> auth_timeout;
  const std::vector<boost::asio::io_context*> shards;
  std::vector<std::unordered_set<WsSession*>> registries;
  // TLS for every client connection (wss://, https://); null: plain ws://. Set before the
  // listener runs; replaced (any thread) when the certificate is reloaded: connections keep the
  // context they started with.
  std::shared_ptr<boost::asio::ssl::context> tls() const {
    std::lock_guard lock(tls_mu_);
    return tls_;
  }
  void set_tls(std::shared_ptr<boost::asio::ssl::context> context) {
    std::lock_guard lock(tls_mu_);
    tls_ = std::move(context);
  }
  // Who may upgrade; replaced (any thread) at a reload: an upgrade checks the one it read.
  std::shared_ptr<const core::OriginPolicy> origins() const {
    std::lock_guard lock(tls_mu_);
    return origins_;
  }
  void set_origins(core::OriginPolicy policy) {
    auto p = std::make_shared<const core::OriginPolicy>(std::move(policy));
    std::lock_guard lock(tls_mu_);
    origins_ = std::move(p);
  }
  // The limits; replaced (any thread) at a reload. A connection reads them once, when it is
  // accepted, and keeps that snapshot: new connections get the new limits, open ones keep theirs
  // (a limit never changes under a session that has already been admitted by it).
  std::shared_ptr<const WsOptions> options() const {
    std::lock_guard lock(tls_mu_);
    return options_;
  }
  void set_options(WsOptions next) {
    auto p = std::make_shared<const WsOptions>(std::move(next));
    std::lock_guard lock(tls_mu_);
    options_ = std::move(p);
  }
  std::atomic<bool> draining{false};
  CloseLog closes;  // the last WebSocket closes (the admin dashboard)
  std::atomic<uint64_t> next_connection_id{1};

  // Open WebSockets per client address (any thread, under the mutex).
  std::mutex per_ip_mu;
  std::unordered_map<std::string, size_t> per_ip;

 private:
  mutable std::mutex tls_mu_;
  std::shared_ptr<boost::asio::ssl::context> tls_;
  std::shared_ptr<const WsOptions> options_;           // tls_mu_
  std::shared_ptr<const core::OriginPolicy> origins_;  // tls_mu_

 public:
  // Takes a slot for `ip` under `options`' per-address limit; false when the address is at it.
  bool AcquireIp(const WsOptions& options, const std::string& ip, bool loopback);
  void ReleaseIp(const std::string& ip);
};

inline bool ServerState::AcquireIp(const WsOptions& options, const std::string& ip, bool loopback) {
  if (options.max_connections_per_ip == 0 || (loopback && options.per_ip_exempt_loopback)) {
    return true;
  }
  std::lock_guard lock(per_ip_mu);
  size_t& n = per_ip[ip];
  if (n >= options.max_connections_per_ip) return false;
  ++n;
  return true;
}

inline void ServerState::ReleaseIp(const std::string& ip) {
  std::lock_guard lock(per_ip_mu);
  auto it = per_ip.find(ip);
  if (it == per_ip.end()) return;
  if (--it->second == 0) per_ip.erase(it);
}

}  // namespace bridge::ws

#endif  // BRIDGE_WS_SERVER_STATE_H_
