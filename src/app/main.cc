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
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/time.h"
#include "app/bridge_server.h"
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
ABSL_FLAG(uint64_t, max_connections, 100000, "Open WebSockets at most; more get HTTP 503.");
ABSL_FLAG(uint64_t, max_channels_per_connection, 64, "Channels one socket may subscribe to.");
ABSL_FLAG(uint64_t, max_header_bytes, 8 * 1024, "Largest HTTP request header (431 above).");
ABSL_FLAG(uint64_t, grpc_max_message_bytes, 4 * 1024 * 1024, "Largest gRPC request.");
ABSL_FLAG(uint64_t, subscribe_queue_messages, 1024,
          "Per Subscribe stream queue; a slower backend loses messages past it (counted).");
ABSL_FLAG(std::string, ready_file, "",
          "Once both listeners are up, write {\"ws_port\":N,\"grpc_port\":M,\"pid\":P} here.");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off.");

namespace {

std::chrono::milliseconds Ms(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
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
      "  gathering-bridge [--flags]        run the bridge (see --help)");
  absl::ParseCommandLine(argc, argv);

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
  c.ws.max_connections = absl::GetFlag(FLAGS_max_connections);
  c.ws.max_channels_per_connection = absl::GetFlag(FLAGS_max_channels_per_connection);
  c.ws.max_header_bytes = absl::GetFlag(FLAGS_max_header_bytes);
  c.grpc_max_message_bytes = absl::GetFlag(FLAGS_grpc_max_message_bytes);
  c.rpc.subscribe_queue_messages = absl::GetFlag(FLAGS_subscribe_queue_messages);
  c.shutdown_timeout = Ms(absl::GetFlag(FLAGS_shutdown_timeout));
  if (c.ws.heartbeat_interval.count() <= 0 || c.ws.idle_timeout.count() <= 0) {
    spdlog::error("--heartbeat_interval and --idle_timeout must be positive");
    return 2;
  }

  // Block the signals in every thread; the main thread waits for them below.
  boost::asio::io_context signals_ioc(1);
  boost::asio::signal_set signals(signals_ioc, SIGINT, SIGTERM);
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

  int signal_number = 0;
  signals.async_wait([&](const boost::system::error_code&, int sig) { signal_number = sig; });
  signals_ioc.run();
  spdlog::info("received signal {}", signal_number);
  (*server)->Shutdown();
  return 0;
}
