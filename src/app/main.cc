// gathering-bridge: gRPC EventService in, JSON WebSocket channels out.
// Flags are listed by --help; docs/operations.md explains each.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "app/bridge_server.h"
#include "auth/api_keys.h"
#include "auth/mint.h"
#include "auth/verifier.h"
#include "core/strings.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "Address both listeners bind (0.0.0.0 for all).");
ABSL_FLAG(uint16_t, ws_port, 8080, "WebSocket/HTTP port; 0 picks a free one.");
ABSL_FLAG(uint16_t, grpc_port, 50051, "gRPC port; 0 picks a free one.");
ABSL_FLAG(uint32_t, io_threads, 0,
          "io threads, each owning a shard of connections; 0: one per core.");
ABSL_FLAG(std::string, namespaces, "",
          "Channel namespaces and their behaviour, e.g. "
          "'circles:broadcast:history=100:ttl=300:presence,workspace:history=100:ttl=300,"
          "agents:history=50:ttl=120' (empty: these GatheRing defaults).");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(30),
          "Period of the JSON {\"type\":\"ping\"} frame sent to every client.");
ABSL_FLAG(absl::Duration, idle_timeout, absl::Seconds(75),
          "Close a WebSocket from which nothing (frame or pong) arrived for this long.");
ABSL_FLAG(absl::Duration, handshake_timeout, absl::Seconds(10),
          "Deadline for an HTTP request / WebSocket upgrade to arrive.");
ABSL_FLAG(absl::Duration, close_timeout, absl::Seconds(5),
          "How long a WebSocket close handshake may take before the socket is cut.");
ABSL_FLAG(absl::Duration, shutdown_timeout, absl::Seconds(5),
          "Bound on the graceful drain at SIGTERM/SIGINT.");
ABSL_FLAG(uint64_t, max_frame_bytes, 64 * 1024, "Largest client frame; larger ones close 1009.");
ABSL_FLAG(uint64_t, max_queue_bytes, 4 * 1024 * 1024,
          "Per-connection write queue bound; a client past it is closed 4008 (slow consumer).");
ABSL_FLAG(uint64_t, max_connections, 100000,
          "Connections at most (WebSockets and plain HTTP, from accept); more get HTTP 503.");
ABSL_FLAG(uint64_t, max_total_queue_bytes, 1ull << 30,
          "Bytes queued for all connections together; past it, connections holding more than "
          "64 KiB get their slow-consumer policy.");
ABSL_FLAG(uint64_t, max_channels_per_connection, 64, "Channels one socket may subscribe to.");
ABSL_FLAG(uint64_t, max_channels, 1000000,
          "Channels the bridge keeps state for; new ones past it are refused.");
ABSL_FLAG(absl::Duration, channel_idle_timeout, absl::Seconds(30),
          "How long a channel with no subscribers and no history keeps its offsets and epoch.");
ABSL_FLAG(uint64_t, max_header_bytes, 8 * 1024, "Largest HTTP request header (431 above).");
ABSL_FLAG(uint64_t, grpc_max_message_bytes, 4 * 1024 * 1024, "Largest gRPC request.");
ABSL_FLAG(uint64_t, subscribe_queue_messages, 1024,
          "Per Subscribe stream queue; a slower backend loses messages past it (counted).");
ABSL_FLAG(std::string, ready_file, "",
          "Once both listeners are up, write {\"ws_port\":N,\"grpc_port\":M,\"pid\":P} here.");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off.");

// Who may connect (docs/security.md).
ABSL_FLAG(std::string, auth, "none",
          "none (anyone may connect: local development only) or token (JWT for WebSocket "
          "clients; JWT or API key for gRPC backends).");
ABSL_FLAG(std::string, auth_hs256_secret_file, "", "File holding the HS256 secret (>= 32 bytes).");
ABSL_FLAG(std::string, auth_public_keys, "",
          "Comma-separated PEM public key files (RS256/ES256); a file's name is its kid.");
ABSL_FLAG(std::string, auth_jwks, "", "A JWK Set file (RS256/ES256 keys with kids).");
ABSL_FLAG(std::string, auth_issuer, "", "Required `iss` claim (empty: not checked).");
ABSL_FLAG(std::string, auth_audience, "", "Required `aud` claim (empty: not checked).");
ABSL_FLAG(absl::Duration, auth_leeway, absl::Seconds(30), "Clock skew allowed on exp/nbf.");
ABSL_FLAG(absl::Duration, auth_timeout, absl::Seconds(5),
          "Without ?token=, the {\"type\":\"auth\"} frame must arrive within this.");
ABSL_FLAG(std::string, api_keys_file, "",
          "Static API keys for gRPC backends: lines of '<key> <name> <pattern>[,<pattern>...]'.");
ABSL_FLAG(std::string, allowed_origins, "",
          "Comma-separated Origins allowed to upgrade ('*' for any). Empty: with --auth=none "
          "same-host and localhost only; with tokens, any.");
ABSL_FLAG(uint64_t, max_connections_per_ip, 1000,
          "Connections per client address (from accept); more get HTTP 429 (0: no limit).");
ABSL_FLAG(bool, per_ip_exempt_loopback, true,
          "Do not apply --max_connections_per_ip to loopback clients (a local reverse proxy).");
ABSL_FLAG(double, client_message_rate, 100,
          "Client messages per second per connection (token bucket; 0: no limit).");
ABSL_FLAG(double, client_message_burst, 200, "Burst of the client message bucket.");
ABSL_FLAG(double, subscribe_rate, 20,
          "subscribe/unsubscribe frames per second per connection (0: no limit); a burst of "
          "refusals larger than --subscribe_burst closes 4008.");
ABSL_FLAG(double, subscribe_burst, 128, "Burst of the subscribe/unsubscribe frame bucket.");
ABSL_FLAG(double, publish_rate_per_key, 50000,
          "Publishes per second per backend identity (0: no limit); over it RESOURCE_EXHAUSTED.");
ABSL_FLAG(double, publish_burst_per_key, 100000, "Burst of the publish bucket.");
ABSL_FLAG(uint64_t, publish_bucket_keys, 100000,
          "Backend identities with a publish bucket; past it the least recent is forgotten.");
ABSL_FLAG(uint64_t, max_backend_streams_per_identity, 64,
          "Open gRPC Subscribe streams per backend identity; more get RESOURCE_EXHAUSTED.");
ABSL_FLAG(uint64_t, max_backend_streams, 1024,
          "Open gRPC Subscribe streams in all; more get RESOURCE_EXHAUSTED.");
ABSL_FLAG(std::string, ws_tls_cert_file, "",
          "PEM certificate chain: serve wss:// and https:// on --ws_port instead of ws://.");
ABSL_FLAG(std::string, ws_tls_key_file, "", "PEM private key for --ws_tls_cert_file.");
ABSL_FLAG(std::string, grpc_tls_cert_file, "", "PEM certificate chain for gRPC TLS.");
ABSL_FLAG(std::string, grpc_tls_key_file, "", "PEM private key for gRPC TLS.");
ABSL_FLAG(std::string, grpc_client_ca_file, "",
          "PEM CA bundle: require and verify backend client certificates (mTLS).");

// Many bridges, one set of channels (docs/broker.md).
ABSL_FLAG(std::string, broker, "",
          "Where channels live: empty (this process only, the embedded default), 'memory' (the "
          "same through the broker seam) or redis://[user:password@]host:port[/db] "
          "(rediss:// for TLS) to share every channel with the other bridges on that Redis.");
ABSL_FLAG(std::string, broker_tls_ca_file, "", "PEM CA bundle that verifies a rediss:// server.");
ABSL_FLAG(std::string, node_id, "",
          "This bridge's name among the nodes on one broker (empty: host name and pid).");

// `gathering-bridge token ...`: mint a development token (HS256, --auth_hs256_secret_file).
ABSL_FLAG(std::string, sub, "", "token: the subject (identity).");
ABSL_FLAG(std::string, channels, "", "token: comma-separated channel patterns to subscribe.");
ABSL_FLAG(std::string, publish, "", "token: comma-separated channel patterns to publish.");
ABSL_FLAG(absl::Duration, ttl, absl::Hours(1), "token: lifetime.");

namespace {

std::chrono::milliseconds Ms(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  for (auto piece : bridge::core::SplitNonEmpty(s, ',')) out.emplace_back(piece);
  return out;
}

bool ReadSecret(const std::string& path, std::string& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  out = ss.str();
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return true;
}

bridge::auth::VerifierConfig VerifierConfigFromFlags(std::string& error) {
  bridge::auth::VerifierConfig v;
  const std::string secret_file = absl::GetFlag(FLAGS_auth_hs256_secret_file);
  if (!secret_file.empty() && !ReadSecret(secret_file, v.hs256_secret)) {
    error = "cannot read --auth_hs256_secret_file " + secret_file;
  }
  v.public_key_pem_files = SplitList(absl::GetFlag(FLAGS_auth_public_keys));
  v.jwks_file = absl::GetFlag(FLAGS_auth_jwks);
  v.issuer = absl::GetFlag(FLAGS_auth_issuer);
  v.audience = absl::GetFlag(FLAGS_auth_audience);
  v.leeway = std::chrono::seconds(absl::ToInt64Seconds(absl::GetFlag(FLAGS_auth_leeway)));
  return v;
}

int MintCommand() {
  std::string error;
  bridge::auth::VerifierConfig v = VerifierConfigFromFlags(error);
  if (!error.empty() || v.hs256_secret.empty()) {
    std::fprintf(stderr, "token: needs --auth_hs256_secret_file=FILE (%s)\n", error.c_str());
    return 2;
  }
  bridge::auth::MintOptions m;
  m.subject = absl::GetFlag(FLAGS_sub);
  m.channels = SplitList(absl::GetFlag(FLAGS_channels));
  m.publish = SplitList(absl::GetFlag(FLAGS_publish));
  m.ttl = std::chrono::seconds(absl::ToInt64Seconds(absl::GetFlag(FLAGS_ttl)));
  m.hs256_secret = v.hs256_secret;
  m.issuer = v.issuer;
  m.audience = v.audience;
  auto token = bridge::auth::MintToken(m, std::chrono::system_clock::now());
  if (!token.ok()) {
    std::fprintf(stderr, "token: %s\n", std::string(token.status().message()).c_str());
    return 2;
  }
  std::printf("%s\n", token->c_str());
  return 0;
}

// Fills the auth parts of `c` from the flags; false (and logged) on a bad configuration.
bool ConfigureAuth(bridge::app::ServerConfig& c) {
  const std::string mode = absl::GetFlag(FLAGS_auth);
  c.auth.auth_timeout = Ms(absl::GetFlag(FLAGS_auth_timeout));
  c.ws.origins.allowed = SplitList(absl::GetFlag(FLAGS_allowed_origins));
  if (mode == "none") {
    spdlog::warn(
        "--auth=none: anyone who can reach this bridge may read every channel and "
        "publish anything. Use --auth=token outside local development.");
    return true;
  }
  if (mode != "token") {
    spdlog::error("--auth must be none or token, not '{}'", mode);
    return false;
  }
  std::string error;
  bridge::auth::VerifierConfig v = VerifierConfigFromFlags(error);
  if (!error.empty()) {
    spdlog::error("{}", error);
    return false;
  }
  auto verifier = bridge::auth::TokenVerifier::Create(v);
  if (!verifier.ok()) {
    spdlog::error("auth: {}", std::string(verifier.status().message()));
    return false;
  }
  std::shared_ptr<const bridge::auth::TokenVerifier> shared(std::move(*verifier));
  c.auth.verifier = shared;
  c.rpc.auth.verifier = shared;
  c.ws.origins.auth_enabled = true;
  const std::string keys_file = absl::GetFlag(FLAGS_api_keys_file);
  if (!keys_file.empty()) {
    auto keys = bridge::auth::ApiKeys::LoadFile(keys_file);
    if (!keys.ok()) {
      spdlog::error("--api_keys_file: {}", std::string(keys.status().message()));
      return false;
    }
    spdlog::info("auth: {} API keys for gRPC backends", keys->size());
    c.rpc.auth.api_keys = std::make_shared<const bridge::auth::ApiKeys>(std::move(*keys));
  }
  spdlog::info("auth: tokens required ({} public keys{})", shared->public_key_count(),
               v.hs256_secret.empty() ? "" : ", HS256");
  return true;
}

bool WriteReadyFile(const std::string& path, uint16_t ws, uint16_t grpc) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << bridge::core::Cat(R"({"ws_port":)", ws, R"(,"grpc_port":)", grpc, R"(,"pid":)",
                           static_cast<int64_t>(getpid()), "}\n");
    if (!f) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "gathering-bridge: publish typed events over gRPC, receive them as JSON over WebSocket.\n"
      "  gathering-bridge [--flags]        run the bridge (see --help)\n"
      "  gathering-bridge token --auth_hs256_secret_file=F --sub=alice --channels='circles/*' "
      "--ttl=1h\n"
      "                                    mint a development token");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  // Debian's Abseil checks every mutex acquisition for lock-order cycles (gRPC's locks go
  // through it): a profile of unary Publish showed it among the top costs. It is a debugging aid.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (args.size() > 1 && std::string(args[1]) == "token") return MintCommand();
  if (args.size() > 1) {
    std::fprintf(stderr, "unknown command '%s' (see --help)\n", args[1]);
    return 2;
  }

  auto logger = spdlog::stderr_color_mt("bridge");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  auto level = spdlog::level::from_str(absl::GetFlag(FLAGS_log_level));
  spdlog::set_level(level);

  bridge::app::ServerConfig c;
  c.host = absl::GetFlag(FLAGS_host);
  c.ws_port = absl::GetFlag(FLAGS_ws_port);
  c.grpc_port = absl::GetFlag(FLAGS_grpc_port);
  c.io_threads = absl::GetFlag(FLAGS_io_threads);
  auto ns = bridge::core::NamespaceRegistry::Parse(absl::GetFlag(FLAGS_namespaces));
  if (!ns.ok()) {
    spdlog::error("--namespaces: {}", std::string(ns.status().message()));
    return 2;
  }
  c.namespaces = std::move(*ns);
  c.ws.heartbeat_interval = Ms(absl::GetFlag(FLAGS_heartbeat_interval));
  c.ws.idle_timeout = Ms(absl::GetFlag(FLAGS_idle_timeout));
  c.ws.handshake_timeout = Ms(absl::GetFlag(FLAGS_handshake_timeout));
  c.ws.close_timeout = Ms(absl::GetFlag(FLAGS_close_timeout));
  c.ws.max_frame_bytes = absl::GetFlag(FLAGS_max_frame_bytes);
  c.ws.max_queue_bytes = absl::GetFlag(FLAGS_max_queue_bytes);
  c.ws.max_total_queue_bytes = absl::GetFlag(FLAGS_max_total_queue_bytes);
  c.ws.max_connections = absl::GetFlag(FLAGS_max_connections);
  c.ws.max_channels_per_connection = absl::GetFlag(FLAGS_max_channels_per_connection);
  c.max_channels = absl::GetFlag(FLAGS_max_channels);
  c.channel_idle_timeout = Ms(absl::GetFlag(FLAGS_channel_idle_timeout));
  c.ws.max_header_bytes = absl::GetFlag(FLAGS_max_header_bytes);
  c.grpc_max_message_bytes = absl::GetFlag(FLAGS_grpc_max_message_bytes);
  c.rpc.subscribe_queue_messages = absl::GetFlag(FLAGS_subscribe_queue_messages);
  c.shutdown_timeout = Ms(absl::GetFlag(FLAGS_shutdown_timeout));
  c.ws.max_connections_per_ip = absl::GetFlag(FLAGS_max_connections_per_ip);
  c.ws.per_ip_exempt_loopback = absl::GetFlag(FLAGS_per_ip_exempt_loopback);
  c.ws.client_message_rate = absl::GetFlag(FLAGS_client_message_rate);
  c.ws.client_message_burst = absl::GetFlag(FLAGS_client_message_burst);
  c.ws.subscribe_rate = absl::GetFlag(FLAGS_subscribe_rate);
  c.ws.subscribe_burst = absl::GetFlag(FLAGS_subscribe_burst);
  c.rpc.publish_rate_per_key = absl::GetFlag(FLAGS_publish_rate_per_key);
  c.rpc.publish_burst_per_key = absl::GetFlag(FLAGS_publish_burst_per_key);
  c.rpc.publish_bucket_keys = absl::GetFlag(FLAGS_publish_bucket_keys);
  c.rpc.max_subscribe_streams_per_identity = absl::GetFlag(FLAGS_max_backend_streams_per_identity);
  c.rpc.max_subscribe_streams = absl::GetFlag(FLAGS_max_backend_streams);
  c.ws_tls_cert_file = absl::GetFlag(FLAGS_ws_tls_cert_file);
  c.ws_tls_key_file = absl::GetFlag(FLAGS_ws_tls_key_file);
  c.grpc_tls_cert_file = absl::GetFlag(FLAGS_grpc_tls_cert_file);
  c.grpc_tls_key_file = absl::GetFlag(FLAGS_grpc_tls_key_file);
  c.grpc_client_ca_file = absl::GetFlag(FLAGS_grpc_client_ca_file);
  c.broker = absl::GetFlag(FLAGS_broker);
  c.broker_tls_ca_file = absl::GetFlag(FLAGS_broker_tls_ca_file);
  c.node_id = absl::GetFlag(FLAGS_node_id);
  if (!ConfigureAuth(c)) return 2;
  if (c.ws.heartbeat_interval.count() <= 0 || c.ws.idle_timeout.count() <= 0) {
    spdlog::error("--heartbeat_interval and --idle_timeout must be positive");
    return 2;
  }

  // Block the signals in every thread; the main thread waits for them below.
  boost::asio::io_context signals_ioc(1);
  boost::asio::signal_set signals(signals_ioc, SIGINT, SIGTERM, SIGHUP);
  std::signal(SIGPIPE, SIG_IGN);

  auto server = bridge::app::BridgeServer::Start(std::move(c));
  if (!server.ok()) {
    spdlog::error("{}", std::string(server.status().message()));
    return 1;
  }
  const std::string ready = absl::GetFlag(FLAGS_ready_file);
  if (!ready.empty() && !WriteReadyFile(ready, (*server)->ws_port(), (*server)->grpc_port())) {
    spdlog::error("cannot write --ready_file {}", ready);
    return 1;
  }

  // SIGHUP reloads the WebSocket TLS certificate (renewals without a restart); SIGINT/SIGTERM
  // drain and exit.
  int signal_number = 0;
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      if (sig != SIGHUP) {
        signal_number = sig;
        return;
      }
      absl::Status s = (*server)->ReloadTls();
      if (s.ok()) {
        spdlog::info("SIGHUP: TLS certificate reloaded");
      } else {
        spdlog::warn("SIGHUP: TLS certificate not reloaded: {}", std::string(s.message()));
      }
      wait_signal();
    });
  };
  wait_signal();
  signals_ioc.run();
  spdlog::info("received signal {}", signal_number);
  (*server)->Shutdown();
  return 0;
}
