// gathering-bridge: gRPC EventService in, JSON WebSocket channels out.
//
// The server's settings are the fields of proto/gathering/bridge/v1/config.proto: a JSON file
// (--config=FILE), each field also a flag (--ws_port=0). This file only reads the command line
// (config::ApplyFlag does the fields), prints help from the proto's comments, and runs the server
// or a subcommand. docs/operations.md#configuration explains each field.
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
#include <cstdlib>
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
#include "app/configure.h"
#include "auth/mint.h"
#include "config/config.h"
#include "core/log.h"
#include "core/strings.h"

ABSL_FLAG(std::string, config, "",
          "The configuration file: JSON whose schema is proto/gathering/bridge/v1/config.proto. "
          "Flags given on the command line override its fields; SIGHUP reads it again.");

// `gathering-bridge token ...`: mint a development token (HS256, --auth_hs256_secret_file).
ABSL_FLAG(std::string, sub, "", "token: the subject (identity).");
ABSL_FLAG(std::string, channels, "", "token: comma-separated channel patterns to subscribe.");
ABSL_FLAG(std::string, publish, "", "token: comma-separated channel patterns to publish.");
ABSL_FLAG(absl::Duration, ttl, absl::Hours(1), "token: lifetime.");
ABSL_FLAG(bool, admin, false, "token: grant the admin dashboard (the \"admin\": true claim).");

// `gathering-bridge healthcheck`: GET a health URL, exit 0 on HTTP 200 (docker HEALTHCHECK).
ABSL_FLAG(std::string, url, "http://127.0.0.1:8080/healthz",
          "healthcheck: the http:// URL to GET.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(3),
          "healthcheck: give up (exit 1) after this long.");

namespace {

using bridge::core::Cat;

int MintCommand();
int HealthcheckCommand();
int FlagfileCommand();
int CheckConfigCommand();
int ReferenceCommand();

struct Subcommand {
  std::string_view name;
  std::string_view usage;  // after "gathering-bridge <name> "
  std::string_view what;
  std::vector<std::string_view> flags;  // absl flags; configuration flags are listed by --help
  int (*run)();
};

const std::vector<Subcommand>& Subcommands() {
  static const auto* commands = new std::vector<Subcommand>{
      {"token",
       "--auth_hs256_secret_file=F --sub=alice --channels='circles/*' --ttl=1h",
       "Mint a development token (HS256) and print it. Reads auth.hs256_secret_file, "
       "auth.issuer and auth.audience from --config or their flags.",
       {"config", "sub", "channels", "publish", "ttl", "admin"},
       MintCommand},
      {"healthcheck",
       "[--url=http://127.0.0.1:8080/healthz] [--timeout=3s]",
       "GET a health URL: exit 0 on HTTP 200, else 1 and the reason.",
       {"url", "timeout"},
       HealthcheckCommand},
      {"check-config",
       "FILE [--flag=value...]",
       "Validate a configuration file (with any flags given) and print the effective "
       "configuration as JSON: every field, defaults included. Exit 2 with each problem and its "
       "field's path when it cannot be started.",
       {"config"},
       CheckConfigCommand},
      {"config-reference",
       "> reference.md",
       "Print every configuration field with its flag, default and documentation (Markdown: "
       "docs/operations.md#configuration-reference).",
       {},
       ReferenceCommand},
      {"flagfile",
       "> gathering-bridge.flags",
       "Print a flag file: every configuration flag with its default, commented out.",
       {},
       FlagfileCommand},
  };
  return *commands;
}

constexpr std::string_view kFlagSources =
    "The configuration: --config=FILE (JSON; `gathering-bridge check-config FILE` checks one),\n"
    "then the flags above, later ones winning. --flagfile=FILE reads one --flag=value per line\n"
    "(# starts a comment), --fromenv=host,ws_port reads FLAGS_host and FLAGS_ws_port\n"
    "(--tryfromenv: when set). [SIGHUP]: a changed value applies at `kill -HUP` without a\n"
    "restart. --version prints the version, commit and build type.";

// Debian's Abseil has its own string_view.
const absl::CommandLineFlag* FindAbslFlag(std::string_view name) {
  return absl::FindCommandLineFlag(absl::string_view(name.data(), name.size()));
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

std::string Shown(const std::string& value) { return value.empty() ? "''" : value; }

void AppendAbslFlag(std::string& out, std::string_view name) {
  const absl::CommandLineFlag* f = FindAbslFlag(name);
  if (f == nullptr) return;
  out += Cat("  --", name, "=", Shown(f->DefaultValue()), "\n");
  AppendWrapped(out, f->Help(), "      ");
}

void AppendField(std::string& out, const bridge::config::Field& f) {
  out += Cat("  --", f.flag, "=", Shown(f.default_text), f.reloadable ? "  [SIGHUP]" : "", "\n");
  AppendWrapped(out, Cat("(", f.path, ") ", f.help), "      ");
}

std::string ServerHelp() {
  std::string out = Cat(absl::ProgramUsageMessage(), "\n\n");
  AppendAbslFlag(out, "config");
  out += "\n";
  for (const bridge::config::Section& s : bridge::config::Sections()) {
    AppendWrapped(out, Cat(s.field->name(), ": ", s.title), "");
    for (const bridge::config::Field* f : s.fields) AppendField(out, *f);
    out += "\n";
  }
  out += Cat(kFlagSources, "\n");
  return out;
}

std::string SubcommandHelp(const Subcommand& s) {
  std::string out = Cat("gathering-bridge ", s.name, " ", s.usage, "\n");
  AppendWrapped(out, s.what, "  ");
  if (!s.flags.empty()) {
    out += "\nFlags:\n";
    for (std::string_view f : s.flags) AppendAbslFlag(out, f);
  }
  return out;
}

std::string UsageMessage() {
  std::string out =
      "gathering-bridge: publish typed events over gRPC, receive them as JSON over WebSocket.\n";
  auto row = [&out](std::string left, std::string_view what) {
    left.resize(std::max<size_t>(left.size() + 2, 44), ' ');
    out += Cat(left, what, "\n");
  };
  row("  gathering-bridge [--config=FILE] [--flag=value...]", "Run the bridge.");
  for (const Subcommand& s : Subcommands()) {
    std::string what(s.what);
    what = what.substr(0, what.find(". ") == std::string::npos ? what.size() : what.find(". ") + 1);
    row(Cat("  gathering-bridge ", s.name, " --help"), what);
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
  return Cat("gathering-bridge ", BRIDGE_VERSION, "\ncommit ", BRIDGE_GIT_COMMIT, "\n",
             BRIDGE_BUILD_TYPE, " build (", assertions, ")\n");
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

// The command line, read: configuration flags (in order) apart from Abseil's.
struct CommandLine {
  std::vector<std::pair<std::string, std::string>> overrides;  // flag, value
  std::vector<std::string> rest;                               // for absl::ParseCommandLine
  bool help = false;
};

bool ReadFlagFile(const std::string& path, std::vector<std::string>& out, std::string& error) {
  std::ifstream f(path);
  if (!f) {
    error = Cat("--flagfile: cannot read ", path);
    return false;
  }
  std::string line;
  while (std::getline(f, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    out.push_back(line.substr(start));
  }
  return true;
}

// Expands --flagfile, --fromenv and --tryfromenv in place (the configuration's flags are not
// Abseil flags, so Abseil cannot), then sorts the configuration's flags from the others.
bool ReadCommandLine(int argc, char** argv, CommandLine& cl, std::string& error) {
  std::vector<std::string> pending;
  for (int i = argc - 1; i >= 1; --i) pending.emplace_back(argv[i]);  // a stack: last first
  cl.rest.emplace_back(argv[0]);
  size_t expansions = 0;
  while (!pending.empty()) {
    std::string arg = std::move(pending.back());
    pending.pop_back();
    if (arg == "--") {
      cl.rest.push_back(arg);
      while (!pending.empty()) {
        cl.rest.push_back(std::move(pending.back()));
        pending.pop_back();
      }
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      cl.rest.push_back(std::move(arg));
      continue;
    }
    std::string_view body = arg;
    body.remove_prefix(body.substr(0, 2) == "--" ? 2 : 1);
    const size_t eq = body.find('=');
    const std::string name(body.substr(0, eq));
    const bool has_value = eq != std::string_view::npos;
    const std::string value = has_value ? std::string(body.substr(eq + 1)) : "";
    if (name == "help" || name == "h") {
      if (!has_value || value == "true") {
        cl.help = true;
        continue;
      }
    }
    if (name == "flagfile" || name == "fromenv" || name == "tryfromenv") {
      if (++expansions > 1000) {
        error = "--flagfile: too many nested flag files";
        return false;
      }
      std::string v = value;
      if (!has_value) {
        if (pending.empty()) {
          error = Cat("--", name, " needs a value");
          return false;
        }
        v = std::move(pending.back());
        pending.pop_back();
      }
      std::vector<std::string> added;
      if (name == "flagfile") {
        for (std::string_view file : bridge::core::SplitNonEmpty(v, ',')) {
          if (!ReadFlagFile(std::string(file), added, error)) return false;
        }
      } else {
        for (std::string_view flag : bridge::core::SplitNonEmpty(v, ',')) {
          const std::string env = Cat("FLAGS_", flag);
          const char* set = std::getenv(env.c_str());
          if (set == nullptr) {
            if (name == "tryfromenv") continue;
            error = Cat("--fromenv: ", env, " is not set");
            return false;
          }
          added.push_back(Cat("--", flag, "=", set));
        }
      }
      for (auto it = added.rbegin(); it != added.rend(); ++it) pending.push_back(std::move(*it));
      continue;
    }
    const bridge::config::Field* field = bridge::config::FindFlag(name);
    const bool is_bool = [](const bridge::config::Field* f) {
      return f != nullptr &&
             f->field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_BOOL;
    }(field);
    if (field == nullptr && name.size() > 2 && name.substr(0, 2) == "no" && !has_value) {
      const bridge::config::Field* negated = bridge::config::FindFlag(name.substr(2));
      if (negated != nullptr &&
          negated->field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_BOOL) {
        cl.overrides.emplace_back(negated->flag, "false");
        continue;
      }
    }
    if (field == nullptr) {
      cl.rest.push_back(std::move(arg));
      continue;
    }
    if (has_value) {
      cl.overrides.emplace_back(field->flag, value);
    } else if (is_bool) {
      cl.overrides.emplace_back(field->flag, "true");
    } else if (!pending.empty()) {
      cl.overrides.emplace_back(field->flag, std::move(pending.back()));
      pending.pop_back();
    } else {
      error = Cat("--", name, " needs a value");
      return false;
    }
  }
  return true;
}

CommandLine& TheCommandLine() {
  static auto* cl = new CommandLine();
  return *cl;
}

// Defaults, then the file, then the command line's flags; every problem in `errors`.
// The file, then the command line's flags, over the defaults: no validation. Every problem goes
// to `errors`.
bool MergeFileAndFlags(const std::string& file, bridge::config::Config& c,
                       std::vector<std::string>& errors) {
  if (!file.empty()) {
    if (absl::Status s = bridge::config::MergeJsonFile(file, c); !s.ok()) {
      const std::string message(s.message());
      for (std::string_view line : bridge::core::SplitNonEmpty(message, '\n')) {
        errors.emplace_back(line);
      }
      return false;
    }
  }
  for (const auto& [flag, value] : TheCommandLine().overrides) {
    if (absl::Status s = bridge::config::ApplyFlag(flag, value, c); !s.ok()) {
      errors.emplace_back(s.message());
    }
  }
  return errors.empty();
}

// Defaults, then the file, then the command line's flags, validated; every problem in `errors`.
bool LoadConfig(const std::string& file, bridge::config::Config& effective,
                std::vector<std::string>& errors) {
  bridge::config::Config c;
  if (!MergeFileAndFlags(file, c, errors)) return false;
  effective = bridge::config::Effective(c);
  errors = bridge::config::Validate(effective);
  return errors.empty();
}

void PrintErrors(std::string_view what, const std::vector<std::string>& errors) {
  std::fprintf(stderr, "%.*s:\n", static_cast<int>(what.size()), what.data());
  for (const std::string& e : errors) std::fprintf(stderr, "  %s\n", e.c_str());
}

std::vector<std::string> Positional() {
  std::vector<std::string> out;
  const CommandLine& cl = TheCommandLine();
  for (size_t i = 1; i < cl.rest.size(); ++i) {
    if (cl.rest[i].empty() || cl.rest[i][0] != '-') out.push_back(cl.rest[i]);
  }
  return out;
}

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  for (auto piece : bridge::core::SplitNonEmpty(s, ',')) out.emplace_back(piece);
  return out;
}

int MintCommand() {
  bridge::config::Config c;
  std::vector<std::string> errors;
  // Only the auth fields matter here: a partial configuration is fine, so no Validate.
  if (!MergeFileAndFlags(absl::GetFlag(FLAGS_config), c, errors)) {
    PrintErrors("token", errors);
    return 2;
  }
  c = bridge::config::Effective(c);
  auto v = bridge::app::VerifierConfigFrom(c);
  if (!v.ok() || v->hs256_secret.empty()) {
    std::fprintf(stderr, "token: needs --auth_hs256_secret_file=FILE (%s)\n",
                 v.ok() ? "not set" : std::string(v.status().message()).c_str());
    return 2;
  }
  bridge::auth::MintOptions m;
  m.subject = absl::GetFlag(FLAGS_sub);
  m.channels = SplitList(absl::GetFlag(FLAGS_channels));
  m.publish = SplitList(absl::GetFlag(FLAGS_publish));
  m.admin = absl::GetFlag(FLAGS_admin);
  m.ttl = std::chrono::seconds(absl::ToInt64Seconds(absl::GetFlag(FLAGS_ttl)));
  m.hs256_secret = v->hs256_secret;
  m.issuer = v->issuer;
  m.audience = v->audience;
  auto token = bridge::auth::MintToken(m, std::chrono::system_clock::now());
  if (!token.ok()) {
    std::fprintf(stderr, "token: %s\n", std::string(token.status().message()).c_str());
    return 2;
  }
  std::printf("%s\n", token->c_str());
  return 0;
}

// `gathering-bridge check-config FILE`: the effective configuration, or every problem.
int CheckConfigCommand() {
  std::vector<std::string> args = Positional();
  std::string file = absl::GetFlag(FLAGS_config);
  if (args.size() > 2) {
    std::fprintf(stderr, "check-config: one FILE at most (see check-config --help)\n");
    return 2;
  }
  if (args.size() == 2) file = args[1];
  bridge::config::Config effective;
  std::vector<std::string> errors;
  if (!LoadConfig(file, effective, errors)) {
    PrintErrors(Cat("check-config: ", file.empty() ? "the flags" : file, " cannot be started"),
                errors);
    return 2;
  }
  if (auto s = bridge::app::ServerConfigFrom(effective); !s.ok()) {
    PrintErrors(Cat("check-config: ", file.empty() ? "the flags" : file, " cannot be started"),
                {std::string(s.status().message())});
    return 2;
  }
  std::printf("%s\n", bridge::config::ToJson(effective).c_str());
  std::fprintf(stderr, "check-config: %s is valid\n",
               file.empty() ? "(defaults and flags)" : file.c_str());
  return 0;
}

int ReferenceCommand() {
  std::fputs(bridge::config::ReferenceMarkdown().c_str(), stdout);
  return 0;
}

// `gathering-bridge flagfile`: every configuration flag by section, commented out with its
// default.
int FlagfileCommand() {
  std::string out =
      "# gathering-bridge flag file (--flagfile=FILE): one --flag=value per line; lines starting\n"
      "# with # are comments. Every configuration flag is listed below with its default,\n"
      "# commented out: uncomment a line to change it. Flags given after --flagfile on the\n"
      "# command line win. Check a file with: gathering-bridge check-config --flagfile=FILE\n";
  for (const bridge::config::Section& s : bridge::config::Sections()) {
    out += Cat("\n# ==== ", s.field->name(), ": ", s.title.substr(0, s.title.find(". ") + 1), "\n");
    for (const bridge::config::Field* f : s.fields) {
      out += "#\n";
      AppendWrapped(out, f->help, "# ");
      out += Cat("# --", f->flag, "=", f->default_text, "\n");
    }
  }
  std::fputs(out.c_str(), stdout);
  return 0;
}

// `admin` 0: no admin listener (no "admin_port").
bool WriteReadyFile(const std::string& path, uint16_t ws, uint16_t grpc, uint16_t admin) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << bridge::core::Cat(R"({"ws_port":)", ws, R"(,"grpc_port":)", grpc,
                           admin != 0 ? bridge::core::Cat(R"(,"admin_port":)", admin) : "",
                           R"(,"pid":)", static_cast<int64_t>(getpid()), "}\n");
    if (!f) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

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
// How an address is shown in a URL, and a note when it binds every interface.
std::string ShownHost(const std::string& host, std::string* note) {
  std::string shown = host;
  if (host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]") {
    shown = host.find(':') == std::string::npos && !host.empty() ? "127.0.0.1" : "[::1]";
    *note = bridge::core::Cat(" (bound to all interfaces, ", host.empty() ? "any" : host, ")");
  } else if (host.find(':') != std::string::npos && host.front() != '[') {
    shown = bridge::core::Cat("[", host, "]");
  }
  return shown;
}

// `admin_port` 0: no admin listener.
void LogAddresses(const std::string& host, uint16_t ws_port, uint16_t grpc_port, bool ws_tls,
                  bool grpc_tls, const std::string& admin_host, uint16_t admin_port,
                  bool admin_tls) {
  std::string note;
  const std::string shown = ShownHost(host, &note);
  const std::string web = bridge::core::Cat(shown, ":", ws_port);
  const char* http = ws_tls ? "https" : "http";
  spdlog::info(
      "page {0}://{1}/ · ws {2}://{1}/ws/<channel> · grpc {3}:{4}{5} · metrics "
      "{0}://{1}/metrics · health {0}://{1}/healthz{6}",
      http, web, ws_tls ? "wss" : "ws", shown, grpc_port, grpc_tls ? " (TLS)" : "", note);
  if (admin_port != 0) {
    std::string admin_note;
    const std::string admin =
        bridge::core::Cat(ShownHost(admin_host, &admin_note), ":", admin_port);
    spdlog::info("admin {2}://{0}/admin · metrics {2}://{0}/metrics · health {2}://{0}/healthz{1}",
                 admin, admin_note, admin_tls ? "https" : "http");
  }
}

std::string Joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += out.empty() ? n : Cat(",", n);
  return out;
}

// SIGHUP: the file and the command line again; what may change applies, the rest is logged.
void Reload(bridge::app::BridgeServer& server, const std::string& file,
            bridge::config::Config& running) {
  bridge::config::Config next;
  std::vector<std::string> errors;
  if (!LoadConfig(file, next, errors)) {
    for (const std::string& e : errors) spdlog::error("SIGHUP: {}", e);
    spdlog::error("SIGHUP: {} refused: the running configuration is kept",
                  file.empty() ? "the configuration" : file);
    return;
  }
  bridge::config::Config merged = running;
  // Logged once the new configuration is known to apply (CheckReload).
  std::vector<std::string> applied_lines;
  std::vector<std::string> restart_lines;
  for (const bridge::config::Field* f : bridge::config::Changed(running, next)) {
    const std::string before = bridge::config::ValueText(running, *f);
    const std::string after = bridge::config::ValueText(next, *f);
    if (f->path == "namespaces") {
      // Policies apply when the names and their order stay (config.proto, Config.namespaces).
      const bridge::config::NamespaceDiff d = bridge::config::DiffNamespaces(running, next);
      if (!d.same_names) {
        restart_lines.push_back(Cat(
            "SIGHUP: namespaces changed (names '", Joined(d.names_before), "' -> '",
            Joined(d.names_after),
            "') but adding, removing, renaming or reordering a namespace needs a restart; running "
            "with '",
            before, "' (no namespace policy applied)"));
        continue;
      }
      *merged.mutable_namespaces() = next.namespaces();
      for (const auto& c : d.changes) {
        applied_lines.push_back(Cat("SIGHUP: ", c.path, " (namespace '", c.name, "') is now '",
                                    c.after, "' (was '", c.before, "')"));
      }
      continue;
    }
    if (!f->reloadable) {
      restart_lines.push_back(Cat("SIGHUP: ", f->path, " changed ('", before, "' -> '", after,
                                  "') but needs a restart; running with '", before, "'"));
      continue;
    }
    (void)bridge::config::ApplyFlag(f->flag, after, merged);
    applied_lines.push_back(Cat("SIGHUP: ", f->path, " is now '", after, "' (was '", before, "')"));
  }
  auto server_config = bridge::app::ServerConfigFrom(merged);
  if (!server_config.ok()) {
    spdlog::error("SIGHUP: {}; the running configuration is kept",
                  std::string(server_config.status().message()));
    return;
  }
  if (absl::Status check = server.CheckReload(*server_config); !check.ok()) {
    spdlog::error("SIGHUP: {}", std::string(check.message()));
    spdlog::error("SIGHUP: {} refused: the running configuration is kept",
                  file.empty() ? "the configuration" : file);
    return;
  }
  for (const std::string& line : restart_lines) spdlog::warn("{}", line);
  for (const std::string& line : applied_lines) spdlog::info("{}", line);
  const size_t applied = applied_lines.size();
  absl::Status s = server.Reload(*server_config);
  if (!s.ok()) spdlog::warn("SIGHUP: TLS certificate not reloaded: {}", std::string(s.message()));
  spdlog::set_level(spdlog::level::from_str(merged.logging().level()));
  running = std::move(merged);
  spdlog::info(
      "SIGHUP: reloaded ({} changed field{} applied; certificates and key files read "
      "again)",
      applied, applied == 1 ? "" : "s");
}

}  // namespace

int main(int argc, char** argv) {
  ConfigureUsage();
  CommandLine& cl = TheCommandLine();
  std::string error;
  if (!ReadCommandLine(argc, argv, cl, error)) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 2;
  }
  std::vector<char*> rest;
  for (std::string& a : cl.rest) rest.push_back(a.data());
  std::vector<char*> args = absl::ParseCommandLine(static_cast<int>(rest.size()), rest.data());
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
  if (cl.help) {
    std::fputs(command != nullptr ? SubcommandHelp(*command).c_str() : ServerHelp().c_str(),
               stdout);
    return 0;
  }
  if (command != nullptr) return command->run();

  // Text until the configuration says otherwise: its own errors must be readable.
  bridge::core::log::Setup(bridge::core::log::Format::kText, spdlog::level::info);

  const std::string file = absl::GetFlag(FLAGS_config);
  bridge::config::Config running;
  std::vector<std::string> errors;
  if (!LoadConfig(file, running, errors)) {
    for (const std::string& e : errors) spdlog::error("configuration: {}", e);
    spdlog::error("not started: {} (gathering-bridge check-config shows the same)",
                  errors.size() == 1 ? "one problem" : Cat(errors.size(), " problems"));
    return 2;
  }
  bridge::core::log::Setup(bridge::core::log::ParseFormat(running.logging().format())
                               .value_or(bridge::core::log::Format::kText),
                           spdlog::level::from_str(running.logging().level()));
  if (!file.empty()) spdlog::info("configuration: {}", file);
  if (running.auth().mode() == "none") {
    spdlog::warn(
        "auth.mode none: anyone who can reach this bridge may read every channel and publish "
        "anything. Use --auth=token outside local development.");
  }
  auto c = bridge::app::ServerConfigFrom(running);
  if (!c.ok()) {
    spdlog::error("{}", std::string(c.status().message()));
    return 2;
  }
  if (c->auth.verifier != nullptr) {
    spdlog::info("auth: tokens required ({} public keys{}){}", c->auth.verifier->public_key_count(),
                 running.auth().hs256_secret_file().empty() ? "" : ", HS256",
                 c->rpc.auth.api_keys != nullptr
                     ? Cat(", ", c->rpc.auth.api_keys->size(), " API keys for gRPC backends")
                     : std::string());
  }

  // Block the signals in every thread; the main thread waits for them below.
  boost::asio::io_context signals_ioc(1);
  boost::asio::signal_set signals(signals_ioc, SIGINT, SIGTERM, SIGHUP);
  std::signal(SIGPIPE, SIG_IGN);

  auto server = bridge::app::BridgeServer::Start(*c);
  if (!server.ok()) {
    spdlog::error("{}", std::string(server.status().message()));
    return 1;
  }
  LogAddresses(running.listeners().host(), (*server)->ws_port(), (*server)->grpc_port(),
               !running.tls().ws_cert_file().empty(), !running.tls().grpc_cert_file().empty(),
               running.admin().host(), (*server)->admin_port(), !c->admin_tls_cert_file.empty());
  const std::string ready = running.listeners().ready_file();
  if (!ready.empty() && !WriteReadyFile(ready, (*server)->ws_port(), (*server)->grpc_port(),
                                        (*server)->admin_port())) {
    spdlog::error("cannot write listeners.ready_file {}", ready);
    return 1;
  }

  // SIGHUP reloads (Reload above); SIGINT/SIGTERM drain and exit.
  int signal_number = 0;
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      if (sig != SIGHUP) {
        signal_number = sig;
        return;
      }
      Reload(**server, file, running);
      wait_signal();
    });
  };
  wait_signal();
  signals_ioc.run();
  spdlog::info("received signal {}", signal_number);
  (*server)->Shutdown();
  return 0;
}
