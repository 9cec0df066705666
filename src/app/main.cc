// gathering-bridge: gRPC EventService in, JSON WebSocket channels out.
// Flags are listed by --help; docs/operations.md explains each.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
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
ABSL_FLAG(absl::Duration, presence_lease, absl::Seconds(30),
          "With a Redis --broker: how long the presence members of a node that died without "
          "leaving stay listed before the other nodes remove them (one agent_left each).");
ABSL_FLAG(std::string, node_id, "",
          "This bridge's name among the nodes on one broker (empty: host name and pid).");

// `gathering-bridge token ...`: mint a development token (HS256, --auth_hs256_secret_file).
ABSL_FLAG(std::string, sub, "", "token: the subject (identity).");
ABSL_FLAG(std::string, channels, "", "token: comma-separated channel patterns to subscribe.");
ABSL_FLAG(std::string, publish, "", "token: comma-separated channel patterns to publish.");
ABSL_FLAG(absl::Duration, ttl, absl::Hours(1), "token: lifetime.");

// `gathering-bridge healthcheck`: GET a health URL, exit 0 on HTTP 200 (docker HEALTHCHECK).
ABSL_FLAG(std::string, url, "http://127.0.0.1:8080/healthz",
          "healthcheck: the http:// URL to GET.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(3),
          "healthcheck: give up (exit 1) after this long.");

namespace {

// --help: the server's flags by area, in this order. A flag of this file in no area (and no
// subcommand) is listed under "Other", so a new flag shows up before it is filed here.
struct FlagArea {
  std::string_view title;
  std::vector<std::string_view> flags;
};

const std::vector<FlagArea>& ServerFlagAreas() {
  static const auto* areas = new std::vector<FlagArea>{
      {"Listeners", {"host", "ws_port", "grpc_port", "io_threads", "ready_file"}},
      {"TLS (docs/security.md)",
       {"ws_tls_cert_file", "ws_tls_key_file", "grpc_tls_cert_file", "grpc_tls_key_file",
        "grpc_client_ca_file"}},
      {"Channels", {"namespaces", "max_channels", "channel_idle_timeout"}},
      {"Timeouts",
       {"heartbeat_interval", "idle_timeout", "handshake_timeout", "close_timeout",
        "shutdown_timeout"}},
      {"Limits (docs/security.md#every-limit)",
       {"max_connections", "max_connections_per_ip", "per_ip_exempt_loopback",
        "max_channels_per_connection", "max_frame_bytes", "max_header_bytes", "max_queue_bytes",
        "max_total_queue_bytes", "grpc_max_message_bytes", "subscribe_queue_messages",
        "max_backend_streams_per_identity", "max_backend_streams"}},
      {"Rates",
       {"client_message_rate", "client_message_burst", "subscribe_rate", "subscribe_burst",
        "publish_rate_per_key", "publish_burst_per_key", "publish_bucket_keys"}},
      {"Auth (docs/security.md)",
       {"auth", "auth_hs256_secret_file", "auth_public_keys", "auth_jwks", "auth_issuer",
        "auth_audience", "auth_leeway", "auth_timeout", "api_keys_file", "allowed_origins"}},
      {"Many bridges (docs/broker.md)",
       {"broker", "broker_tls_ca_file", "node_id", "presence_lease"}},
      {"Logging", {"log_level"}},
  };
  return *areas;
}

int MintCommand();
int HealthcheckCommand();
int FlagfileCommand();

struct Subcommand {
  std::string_view name;
  std::string_view usage;  // after "gathering-bridge <name> "
  std::string_view what;
  std::vector<std::string_view> flags;
  int (*run)();
};

const std::vector<Subcommand>& Subcommands() {
  static const auto* commands = new std::vector<Subcommand>{
      {"token",
       "--auth_hs256_secret_file=F --sub=alice --channels='circles/*' --ttl=1h",
       "Mint a development token (HS256) and print it.",
       {"auth_hs256_secret_file", "sub", "channels", "publish", "ttl", "auth_issuer",
        "auth_audience"},
       MintCommand},
      {"healthcheck",
       "[--url=http://127.0.0.1:8080/healthz] [--timeout=3s]",
       "GET a health URL: exit 0 on HTTP 200, else 1 and the reason.",
       {"url", "timeout"},
       HealthcheckCommand},
      {"flagfile",
       "> gathering-bridge.flags",
       "Print a flag file: every server flag with its default, commented out.",
       {},
       FlagfileCommand},
  };
  return *commands;
}

constexpr std::string_view kFlagSources =
    "Flags also come from files and the environment: --flagfile=FILE reads one --flag=value per\n"
    "line (# starts a comment; `gathering-bridge flagfile` prints one with every default), and\n"
    "--fromenv=host,ws_port reads FLAGS_host and FLAGS_ws_port (--tryfromenv: when set). Later\n"
    "flags override earlier ones. --helpfull lists every flag, the libraries' included;\n"
    "--version prints the version, commit and build type.";

// Debian's Abseil has its own string_view.
const absl::CommandLineFlag* FindFlag(std::string_view name) {
  return absl::FindCommandLineFlag(absl::string_view(name.data(), name.size()));
}

bool IsOurFlag(const absl::CommandLineFlag& f) {
  std::string_view file = f.Filename();
  return file.size() >= 11 && file.substr(file.size() - 11) == "app/main.cc";
}

bool IsSubcommandFlag(std::string_view name) {
  for (const Subcommand& s : Subcommands()) {
    for (std::string_view f : s.flags) {
      if (f == name) return true;
    }
  }
  return false;
}

// Appends `text` wrapped at 100 columns, each line starting with `indent`.
void AppendWrapped(std::string& out, std::string_view text, std::string_view indent) {
  std::string line(indent);
  size_t words = 0;
  for (std::string_view word : bridge::core::SplitNonEmpty(text, ' ')) {
    if (words > 0 && line.size() + 1 + word.size() > 100) {
      out += line + "\n";
      line = std::string(indent);
      words = 0;
    }
    if (words > 0) line += ' ';
    line += word;
    ++words;
  }
  if (words > 0) out += line + "\n";
}

std::string DefaultOf(const absl::CommandLineFlag& f) {
  std::string d = f.DefaultValue();
  return d.empty() ? "''" : d;
}

void AppendFlag(std::string& out, std::string_view name) {
  const absl::CommandLineFlag* f = FindFlag(name);
  if (f == nullptr) return;
  out += bridge::core::Cat("  --", name, "=", DefaultOf(*f), "\n");
  AppendWrapped(out, f->Help(), "      ");
}

// The flags of this file that are neither in an area nor a subcommand's, sorted.
std::vector<std::string> UnfiledFlags() {
  std::vector<std::string> out;
  for (const auto& [key, flag] : absl::GetAllFlags()) {
    const std::string_view name(key.data(), key.size());
    if (!IsOurFlag(*flag) || IsSubcommandFlag(name)) continue;
    bool filed = false;
    for (const FlagArea& a : ServerFlagAreas()) {
      for (std::string_view f : a.flags) filed = filed || f == name;
    }
    if (!filed) out.emplace_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string ServerHelp() {
  std::string out = bridge::core::Cat(absl::ProgramUsageMessage(), "\n\n");
  for (const FlagArea& a : ServerFlagAreas()) {
    out += bridge::core::Cat(a.title, ":\n");
    for (std::string_view f : a.flags) AppendFlag(out, f);
    out += "\n";
  }
  std::vector<std::string> other = UnfiledFlags();
  if (!other.empty()) {
    out += "Other:\n";
    for (const std::string& f : other) AppendFlag(out, f);
    out += "\n";
  }
  out += bridge::core::Cat(kFlagSources, "\n");
  return out;
}

std::string SubcommandHelp(const Subcommand& s) {
  std::string out = bridge::core::Cat("gathering-bridge ", s.name, " ", s.usage, "\n");
  AppendWrapped(out, s.what, "  ");
  if (!s.flags.empty()) {
    out += "\nFlags:\n";
    for (std::string_view f : s.flags) AppendFlag(out, f);
  }
  return out;
}

std::string UsageMessage() {
  std::string out =
      "gathering-bridge: publish typed events over gRPC, receive them as JSON over WebSocket.\n";
  auto row = [&out](std::string left, std::string_view what) {
    left.resize(std::max<size_t>(left.size() + 2, 40), ' ');
    out += bridge::core::Cat(left, what, "\n");
  };
  row("  gathering-bridge [--flag=value...]", "Run the bridge (its flags by area: --help).");
  for (const Subcommand& s : Subcommands()) {
    row(bridge::core::Cat("  gathering-bridge ", s.name, " --help"), s.what);
  }
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::string VersionString() {
  std::string assertions;
#ifdef NDEBUG
  assertions = "assertions off";
#else
  assertions = "assertions on";
#endif
#ifdef BRIDGE_SANITIZE_BUILD
  assertions += ", ASan+UBSan";
#endif
  return bridge::core::Cat("gathering-bridge ", BRIDGE_VERSION, "\ncommit ", BRIDGE_GIT_COMMIT,
                           "\n", BRIDGE_BUILD_TYPE, " build (", assertions, ")\n");
}

// "…/src/app/main.cc" -> "src/app/main.cc" in --helpfull.
std::string NormalizeFilename(absl::string_view file) {
  const size_t at = file.rfind("/src/");
  if (at != absl::string_view::npos) return std::string(file.substr(at + 1));
  return std::string(file);
}

void ConfigureUsage() {
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view file) {
    return file.size() >= 11 && file.substr(file.size() - 11) == "app/main.cc";
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  config.version_string = VersionString;
  config.normalize_filename = NormalizeFilename;
  absl::SetFlagsUsageConfig(std::move(config));
  absl::SetProgramUsageMessage(UsageMessage());
}

// Takes --help (also -help, -h) out of argv: Abseil's own --help lists flags per source file.
bool TakeHelpFlag(int& argc, char** argv) {
  bool help = false;
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--") {
      for (; i < argc; ++i) argv[out++] = argv[i];
      break;
    }
    if (a == "--help" || a == "-help" || a == "-h" || a == "--help=true") {
      help = true;
      continue;
    }
    argv[out++] = argv[i];
  }
  argc = out;
  return help;
}

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

// `gathering-bridge flagfile`: every server flag by area, commented out with its default.
int FlagfileCommand() {
  std::string out =
      "# gathering-bridge flag file (--flagfile=FILE): one --flag=value per line; lines starting\n"
      "# with # are comments. Every server flag is listed below with its default, commented out:\n"
      "# uncomment a line to change it. Flags given after --flagfile on the command line win.\n"
      "# Check a file with: gathering-bridge --flagfile=FILE --only_check_args\n";
  auto add = [&out](std::string_view name) {
    const absl::CommandLineFlag* f = FindFlag(name);
    if (f == nullptr) return;
    out += "#\n";
    AppendWrapped(out, f->Help(), "# ");
    out += bridge::core::Cat("# --", name, "=", f->DefaultValue(), "\n");
  };
  for (const FlagArea& a : ServerFlagAreas()) {
    out += bridge::core::Cat("\n# ==== ", a.title, "\n");
    for (std::string_view f : a.flags) add(f);
  }
  std::vector<std::string> other = UnfiledFlags();
  if (!other.empty()) out += "\n# ==== Other\n";
  for (const std::string& f : other) add(f);
  std::fputs(out.c_str(), stdout);
  return 0;
}

// One line, no newlines, at most 120 bytes: for the healthcheck's reason.
std::string OneLine(std::string_view s) {
  std::string out;
  for (char ch : s.substr(0, 120)) out += (ch == '\n' || ch == '\r') ? ' ' : ch;
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

int Unhealthy(const std::string& url, std::string_view why) {
  std::printf("unhealthy: %s: %s\n", url.c_str(), OneLine(why).c_str());
  return 1;
}

// `gathering-bridge healthcheck`: GET --url within --timeout; 0 on HTTP 200.
int HealthcheckCommand() {
  namespace asio = boost::asio;
  namespace http = boost::beast::http;
  const std::string url = absl::GetFlag(FLAGS_url);
  std::string_view rest = url;
  if (rest.substr(0, 7) != "http://") return Unhealthy(url, "only http:// URLs are supported");
  rest.remove_prefix(7);
  const size_t slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  const std::string target(slash == std::string_view::npos ? "/" : rest.substr(slash));
  std::string host(authority);
  std::string port = "80";
  const size_t colon = authority.rfind(':');
  const size_t bracket = authority.rfind(']');
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    host = std::string(authority.substr(0, colon));
    port = std::string(authority.substr(colon + 1));
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || port.empty()) return Unhealthy(url, "no host or port in the URL");

  asio::io_context ioc(1);
  asio::ip::tcp::resolver resolver(ioc);
  boost::beast::tcp_stream stream(ioc);
  boost::beast::flat_buffer buffer;
  http::request<http::empty_body> request{http::verb::get, target, 11};
  request.set(http::field::host, authority);
  request.set(http::field::user_agent, "gathering-bridge-healthcheck");
  request.set(http::field::connection, "close");
  http::response<http::string_body> response;
  std::string error;
  bool done = false;
  auto fail = [&](std::string_view what, const boost::system::error_code& ec) {
    error = bridge::core::Cat(what, ": ", ec.message());
    done = true;
  };
  const auto timeout = std::chrono::milliseconds(
      std::max<int64_t>(1, absl::ToInt64Milliseconds(absl::GetFlag(FLAGS_timeout))));
  stream.expires_after(timeout);
  resolver.async_resolve(
      host, port,
      [&](const boost::system::error_code& ec,
          const asio::ip::tcp::resolver::results_type& results) {
        if (ec) return fail("resolve " + host, ec);
        stream.async_connect(
            results, [&](const boost::system::error_code& ec, const asio::ip::tcp::endpoint&) {
              if (ec) return fail(bridge::core::Cat("connect ", host, ":", port), ec);
              http::async_write(stream, request, [&](const boost::system::error_code& ec, size_t) {
                if (ec) return fail("send", ec);
                http::async_read(stream, buffer, response,
                                 [&](const boost::system::error_code& ec, size_t) {
                                   if (ec) return fail("read", ec);
                                   done = true;
                                 });
              });
            });
      });
  ioc.run_for(timeout);
  if (!done) {
    return Unhealthy(url, bridge::core::Cat("no answer within ",
                                            absl::FormatDuration(absl::GetFlag(FLAGS_timeout))));
  }
  if (!error.empty()) return Unhealthy(url, error);
  if (response.result_int() != 200) {
    return Unhealthy(url, bridge::core::Cat("HTTP ", response.result_int(), " ", response.body()));
  }
  std::printf("healthy: %s: HTTP 200 %s\n", url.c_str(), OneLine(response.body()).c_str());
  return 0;
}

// "page http://127.0.0.1:8080/ · ws ws://127.0.0.1:8080/ws/<channel> · grpc ... · metrics ..."
void LogAddresses(const std::string& host, uint16_t ws_port, uint16_t grpc_port, bool ws_tls,
                  bool grpc_tls) {
  std::string shown = host;
  std::string note;
  if (host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]") {
    shown = host.find(':') == std::string::npos && !host.empty() ? "127.0.0.1" : "[::1]";
    note = bridge::core::Cat(" (bound to all interfaces, ", host.empty() ? "any" : host, ")");
  } else if (host.find(':') != std::string::npos && host.front() != '[') {
    shown = bridge::core::Cat("[", host, "]");
  }
  const std::string web = bridge::core::Cat(shown, ":", ws_port);
  const char* http = ws_tls ? "https" : "http";
  spdlog::info(
      "page {0}://{1}/ · ws {2}://{1}/ws/<channel> · grpc {3}:{4}{5} · metrics "
      "{0}://{1}/metrics · health {0}://{1}/healthz{6}",
      http, web, ws_tls ? "wss" : "ws", shown, grpc_port, grpc_tls ? " (TLS)" : "", note);
}

}  // namespace

int main(int argc, char** argv) {
  ConfigureUsage();
  const bool help = TakeHelpFlag(argc, argv);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  // Debian's Abseil checks every mutex acquisition for lock-order cycles (gRPC's locks go
  // through it): a profile of unary Publish showed it among the top costs. It is a debugging aid.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const Subcommand* command = nullptr;
  if (args.size() > 1) {
    for (const Subcommand& s : Subcommands()) {
      if (s.name == args[1]) command = &s;
    }
    if (command == nullptr) {
      std::fprintf(stderr, "unknown command '%s' (see --help)\n", args[1]);
      return 2;
    }
  }
  if (help) {
    std::fputs(command != nullptr ? SubcommandHelp(*command).c_str() : ServerHelp().c_str(),
               stdout);
    return 0;
  }
  if (command != nullptr) return command->run();

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
  c.presence_lease = Ms(absl::GetFlag(FLAGS_presence_lease));
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
  LogAddresses(absl::GetFlag(FLAGS_host), (*server)->ws_port(), (*server)->grpc_port(),
               !absl::GetFlag(FLAGS_ws_tls_cert_file).empty(),
               !absl::GetFlag(FLAGS_grpc_tls_cert_file).empty());
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
