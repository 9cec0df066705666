#include "cluster.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"

namespace bridge::multinode {
namespace {

namespace pb = gathering::bridge::v1;
using Clock = std::chrono::steady_clock;

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::filesystem::path MakeScratchDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "bridge-multinode-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) return {};
  return tmpl;
}

std::string RunAndCapture(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

}  // namespace

const char* BridgeBinary() { return BRIDGE_BINARY; }

std::optional<std::string> BinaryFlagDefault(const std::string& name) {
  // `gathering-bridge flagfile` lists every configuration flag as "# --name=default".
  static const std::string flags =
      "\n" + RunAndCapture(absl::StrCat("'", BridgeBinary(), "' flagfile 2>&1"));
  const std::string key = absl::StrCat("\n# --", name, "=");
  const size_t at = flags.find(key);
  if (at == std::string::npos) return std::nullopt;
  const size_t start = at + key.size();
  return flags.substr(start, flags.find('\n', start) - start);
}

BridgeProcess::BridgeProcess(std::string name, std::vector<std::string> flags,
                             std::filesystem::path dir)
    : name_(std::move(name)),
      flags_(std::move(flags)),
      dir_(std::move(dir)),
      ready_path_(dir_ / "ready.json"),
      log_path_(dir_ / "bridge.log") {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
}

BridgeProcess::~BridgeProcess() { Kill9(); }

absl::Status BridgeProcess::Start(std::chrono::milliseconds timeout) {
  absl::Status s = Spawn();
  if (s.ok()) s = AwaitReady(timeout);
  return s;
}

absl::Status BridgeProcess::Spawn() {
  if (pid_ > 0) return absl::FailedPreconditionError(absl::StrCat(name_, " is already running"));
  std::error_code ec;
  std::filesystem::remove(ready_path_, ec);
  ws_port_ = 0;
  grpc_port_ = 0;
  admin_port_ = 0;
  {
    std::ofstream log(log_path_, std::ios::app);
    log << "==== start " << name_ << ":";
    for (const auto& f : flags_) log << ' ' << f;
    log << '\n';
  }
  std::vector<std::string> args = {BridgeBinary(), "--ws_port=0", "--grpc_port=0",
                                   "--ready_file=" + ready_path_.string()};
  args.insert(args.end(), flags_.begin(), flags_.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string log = log_path_.string();
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    // Only async-signal-safe calls until exec. The bridge dies with the test process.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    const int null_in = ::open("/dev/null", O_RDONLY);
    if (null_in >= 0) ::dup2(null_in, 0);
    // Not the test's sockets: a client the test closes must really close (FIN), not stay open
    // in a bridge started after it.
    ::close_range(3, ~0U, 0);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  pid_ = pid;
  return absl::OkStatus();
}

absl::Status BridgeProcess::AwaitReady(std::chrono::milliseconds timeout, bool ready) {
  const auto deadline = Clock::now() + timeout;
  auto fail = [&](std::string why) {
    Kill9();
    return absl::UnavailableError(
        absl::StrCat(name_, ": ", why, "\n--- log tail ---\n", LogTail(), "\n--- end of log ---"));
  };
  // The ready file is written (renamed into place) once both listeners are up. A child's file
  // appearing has no event to wait on short of inotify: poll, and notice an early exit.
  while (!std::filesystem::exists(ready_path_)) {
    if (!running()) return fail("exited before writing its ready file");
    if (Clock::now() > deadline) {
      return fail(absl::StrCat("no ready file within ", timeout.count(), " ms"));
    }
    std::this_thread::sleep_for(5ms);
  }
  boost::system::error_code ec;
  auto v = boost::json::parse(ReadAll(ready_path_), ec);
  if (ec || !v.is_object() || !v.as_object().contains("ws_port") ||
      !v.as_object().contains("grpc_port")) {
    return fail("unreadable ready file: " + ReadAll(ready_path_));
  }
  ws_port_ = static_cast<uint16_t>(v.at("ws_port").to_number<int>());
  grpc_port_ = static_cast<uint16_t>(v.at("grpc_port").to_number<int>());
  if (const auto* a = v.as_object().if_contains("admin_port")) {
    admin_port_ = static_cast<uint16_t>(a->to_number<int>());
  }
  if (!ready) return absl::OkStatus();
  // Ready to serve: /readyz 200 (with a broker: Redis reachable for publishes and pub/sub), or
  // /healthz 200 from a binary without /readyz.
  std::string path = "/readyz";
  std::string body;
  int status = 0;
  while ((status = testing::HttpStatus(ws_port_, path, false, &body)) != 200) {
    if (status == 404 && path == "/readyz") {
      path = "/healthz";
      continue;
    }
    if (!running()) return fail(absl::StrCat("exited before ", path, " answered 200"));
    if (Clock::now() > deadline) {
      return fail(absl::StrCat(path, " still answers ", status, " ", body, " after ",
                               timeout.count(), " ms"));
    }
    std::this_thread::sleep_for(20ms);
  }
  return absl::OkStatus();
}

void BridgeProcess::Kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

int BridgeProcess::Stop(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  const auto deadline = Clock::now() + timeout;
  int status = 0;
  while (Clock::now() < deadline) {
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || r < 0) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(5ms);
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return 128 + SIGKILL;
}

absl::Status BridgeProcess::Restart(std::chrono::milliseconds timeout) {
  Kill9();
  return Start(timeout);
}

bool BridgeProcess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  pid_ = -1;
  return false;
}

std::string BridgeProcess::LogTail(size_t bytes) const {
  std::string log = ReadAll(log_path_);
  if (log.size() > bytes) log = "..." + log.substr(log.size() - bytes);
  return log.empty() ? "(empty log)" : log;
}

Cluster::Cluster() : dir_(MakeScratchDir()) {}

Cluster::~Cluster() {
  for (auto& n : nodes_) n->Kill9();
  nodes_.clear();
  if (redis_ != nullptr) redis_->Stop();
  redis_.reset();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

absl::Status Cluster::Start(ClusterOptions options) {
  if (dir_.empty()) return absl::InternalError("cannot create a scratch directory");
  if (!nodes_.empty()) return absl::FailedPreconditionError("cluster already started");
  if (options.redis) {
    redis_ = std::make_unique<broker::testing::RedisServer>();
    absl::Status s = redis_->Start();
    if (!s.ok()) {
      redis_.reset();
      return s;
    }
  }
  for (int i = 0; i < options.nodes; ++i) {
    const std::string name = absl::StrCat("node", i);
    std::vector<std::string> flags = {"--log_level=warn"};
    if (options.redis) {
      flags.push_back("--broker=" + broker_url());
      flags.push_back("--node_id=" + name);
    }
    flags.insert(flags.end(), options.extra_flags.begin(), options.extra_flags.end());
    nodes_.push_back(std::make_unique<BridgeProcess>(name, std::move(flags), dir_ / name));
  }
  absl::Status s;
  for (auto& n : nodes_) {
    if (s.ok()) s = n->Spawn();
  }
  for (auto& n : nodes_) {
    if (s.ok()) s = n->AwaitReady();
  }
  if (!s.ok()) {
    for (auto& n : nodes_) n->Kill9();
  }
  return s;
}

std::string Cluster::broker_url() const { return redis_ != nullptr ? redis_->Url() : ""; }

std::unique_ptr<pb::EventService::Stub> Cluster::Stub(int i) {
  return testing::MakeStub(node(i).grpc_port());
}

std::unique_ptr<testing::WsClient> Cluster::Connect(int i, const std::string& target,
                                                    std::string* error) {
  return testing::WsClient::Connect(node(i).ws_port(), target, error);
}

absl::StatusOr<broker::RedisReply> Cluster::RedisCommand(const std::vector<std::string>& args) {
  if (redis_ == nullptr) return absl::FailedPreconditionError("the cluster has no redis-server");
  broker::testing::SyncRedis conn;
  absl::Status s = conn.Connect(redis_->port());
  if (!s.ok()) return s;
  return conn.Command(args);
}

int Cluster::Http(int i, const std::string& path, std::string* body) {
  return testing::HttpStatus(node(i).ws_port(), path, false, body);
}

int Cluster::AdminHttp(int i, const std::string& path, std::string* body) {
  if (node(i).admin_port() == 0) return 0;
  return testing::HttpStatus(node(i).admin_port(), path, false, body);
}

std::optional<double> Cluster::Metric(int i, const std::string& metric) {
  std::string body;
  if (Http(i, "/metrics", &body) != 200) return std::nullopt;
  std::istringstream lines(body);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#' || line.rfind(metric, 0) != 0) continue;
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    try {
      return std::stod(line.substr(space + 1));
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

std::string Cluster::Diagnostics(size_t bytes_per_node) {
  std::string out;
  for (const auto& n : nodes_) {
    absl::StrAppend(&out, "\n--- ", n->name(), " (ws ", n->ws_port(), ", grpc ", n->grpc_port(),
                    ") log tail ---\n", n->LogTail(bytes_per_node));
    if (!n->running()) {
      absl::StrAppend(&out, "(not running)\n");
      continue;
    }
    std::string body;
    const int ready = testing::HttpStatus(n->ws_port(), "/readyz", false, &body);
    absl::StrAppend(&out, "/readyz ", ready, " ", body, "\n");
    std::string metrics;
    testing::HttpStatus(n->ws_port(), "/metrics", false, &metrics);
    std::istringstream lines(metrics);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.rfind("bridge_broker_", 0) == 0 && line.substr(line.rfind(' ') + 1) != "0") {
        absl::StrAppend(&out, line, "\n");
      }
    }
  }
  return out;
}

std::string TypeOf(const boost::json::value& frame) {
  if (!frame.is_object()) return "";
  const auto* t = frame.as_object().if_contains("type");
  return t != nullptr && t->is_string() ? std::string(t->as_string()) : "";
}

bool IsControl(const boost::json::value& frame) {
  static const char* const kControl[] = {"ping",          "pong",  "subscribed", "unsubscribed",
                                         "authenticated", "error", "gap",        "reconnect"};
  const std::string t = TypeOf(frame);
  for (const char* c : kControl) {
    if (t == c) return true;
  }
  return false;
}

uint64_t OffsetOf(const boost::json::value& frame) {
  if (!frame.is_object()) return 0;
  const auto* o = frame.as_object().if_contains("offset");
  if (o == nullptr || !o->is_number()) return 0;
  boost::system::error_code ec;
  const auto v = o->to_number<uint64_t>(ec);
  return ec ? 0 : v;
}

std::string ContentOf(const boost::json::value& frame) {
  if (!frame.is_object()) return "";
  const auto* d = frame.as_object().if_contains("data");
  if (d == nullptr || !d->is_object()) return "";
  const auto* c = d->as_object().if_contains("content");
  return c != nullptr && c->is_string() ? std::string(c->as_string()) : "";
}

std::string Describe(const std::vector<boost::json::object>& frames, size_t max) {
  std::string out;
  const size_t from = frames.size() > max ? frames.size() - max : 0;
  if (from > 0) absl::StrAppend(&out, "  ... ", from, " earlier frames\n");
  for (size_t i = from; i < frames.size(); ++i) {
    absl::StrAppend(&out, "  ", boost::json::serialize(frames[i]), "\n");
  }
  return out.empty() ? "  (none)\n" : out;
}

std::string Received::Summary() const {
  std::vector<boost::json::object> tail(events.end() - std::min<size_t>(events.size(), 5),
                                        events.end());
  return absl::StrCat(events.size(), " events, ", controls.size(), " control frames",
                      closed ? absl::StrCat(", connection closed (code ", close_code, ")") : "",
                      timed_out ? ", timed out" : "", "\nlast events:\n", Describe(tail),
                      "control frames:\n", Describe(controls));
}

namespace {

// The next frame as an object within what is left until `deadline`; an empty object on close,
// timeout, or a frame that is not a JSON object (kept as {"unparsed": text}).
std::optional<boost::json::object> NextFrame(testing::WsClient& ws, Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) return std::nullopt;
  auto text = ws.Recv(left);
  if (!text) return std::nullopt;
  boost::system::error_code ec;
  auto v = boost::json::parse(*text, ec);
  if (ec || !v.is_object()) return boost::json::object{{"unparsed", *text}};
  return std::move(v.as_object());
}

}  // namespace

Received CollectEvents(testing::WsClient& ws, size_t n, std::chrono::milliseconds timeout) {
  Received r;
  const auto deadline = Clock::now() + timeout;
  while (r.events.size() < n) {
    auto f = NextFrame(ws, deadline);
    if (!f) break;
    (IsControl(*f) ? r.controls : r.events).push_back(std::move(*f));
  }
  r.closed = ws.closed();
  r.timed_out = r.events.size() < n && !r.closed;
  r.close_code = ws.close_code();
  return r;
}

boost::json::object NextEvent(testing::WsClient& ws, std::chrono::milliseconds timeout,
                              std::vector<boost::json::object>* controls) {
  const auto deadline = Clock::now() + timeout;
  while (auto f = NextFrame(ws, deadline)) {
    if (!IsControl(*f)) return std::move(*f);
    if (controls != nullptr) controls->push_back(std::move(*f));
  }
  return {};
}

boost::json::object NextOfType(testing::WsClient& ws, const std::string& type,
                               std::chrono::milliseconds timeout,
                               std::vector<boost::json::object>* skipped) {
  const auto deadline = Clock::now() + timeout;
  while (auto f = NextFrame(ws, deadline)) {
    if (TypeOf(*f) == type) return std::move(*f);
    if (skipped != nullptr) skipped->push_back(std::move(*f));
  }
  return {};
}

bool PingPong(testing::WsClient& ws, std::chrono::milliseconds timeout,
              std::vector<boost::json::object>* skipped) {
  if (ws.closed() || ws.timed_out()) return false;
  ws.Send(R"({"type":"ping"})");
  return !NextOfType(ws, "pong", timeout, skipped).empty();
}

grpc::Status Publish(pb::EventService::Stub& stub, const std::string& channel, int agent_id,
                     const std::string& content, pb::PublishResponse* response,
                     std::chrono::milliseconds deadline) {
  pb::PublishRequest req;
  req.mutable_event()->set_channel(channel);
  req.mutable_event()->mutable_agent_message()->set_agent_id(agent_id);
  req.mutable_event()->mutable_agent_message()->set_content(content);
  pb::PublishResponse local;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  return stub.Publish(&ctx, req, response != nullptr ? response : &local);
}

BackendStream::BackendStream(std::unique_ptr<pb::EventService::Stub> stub,
                             std::vector<std::string> channels, bool lifecycle,
                             std::chrono::milliseconds deadline)
    : stub_(std::move(stub)) {
  ctx_.set_deadline(std::chrono::system_clock::now() + deadline);
  pb::SubscribeRequest req;
  for (auto& c : channels) req.add_channels(c);
  req.set_lifecycle(lifecycle);
  reader_ = std::thread([this, req] {
    auto reader = stub_->Subscribe(&ctx_, req);
    pb::ClientMessage m;
    while (reader->Read(&m)) {
      std::lock_guard lock(mu_);
      messages_.push_back(m);
      cv_.notify_all();
    }
    grpc::Status s = reader->Finish();
    std::lock_guard lock(mu_);
    ended_ = true;
    status_ = s;
    cv_.notify_all();
  });
}

BackendStream::~BackendStream() {
  ctx_.TryCancel();
  reader_.join();
}

std::vector<pb::ClientMessage> BackendStream::messages() const {
  std::lock_guard lock(mu_);
  return messages_;
}

bool BackendStream::WaitUntil(
    const std::function<bool(const std::vector<pb::ClientMessage>&)>& pred,
    std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return pred(messages_) || ended_; }) && pred(messages_);
}

bool BackendStream::ended() const {
  std::lock_guard lock(mu_);
  return ended_;
}

grpc::Status BackendStream::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

}  // namespace bridge::multinode
