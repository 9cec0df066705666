#include "redis_server.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"

namespace bridge::broker::testing {
namespace {

constexpr auto kReadyTimeout = std::chrono::seconds(10);
constexpr int kPortAttempts = 10;

std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

}  // namespace

// Bind an ephemeral socket, read its port, close it. Redis cannot bind port 0 itself, so the
// caller retries when it loses the race.
uint16_t ProbeFreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

RedisServer::~RedisServer() {
  Stop();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

absl::Status RedisServer::Start(std::vector<std::string> extra_args) {
  if (FindOnPath("redis-server").empty()) {
    return absl::FailedPreconditionError(
        "redis-server is not installed (not found on PATH); scripts/setup.sh installs "
        "redis-server and libhiredis-dev");
  }
  extra_args_ = std::move(extra_args);
  if (dir_.empty()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "bridge-redis-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) return absl::InternalError("mkdtemp failed");
    dir_ = tmpl;
    log_path_ = dir_ + "/redis.log";
  }
  absl::Status last;
  for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
    port_ = ProbeFreePort();
    if (port_ == 0) return absl::InternalError("cannot probe a free port");
    last = Spawn();
    if (last.ok()) last = WaitReady();
    if (last.ok()) return last;
    Stop();
    if (LogTail().find("in use") == std::string::npos) return last;  // not a port race
  }
  return last;
}

absl::Status RedisServer::Restart() {
  Stop();
  absl::Status s = Spawn();
  if (s.ok()) s = WaitReady();
  return s;
}

absl::Status RedisServer::Spawn() {
  std::vector<std::string> args = {"redis-server",
                                   "--port",
                                   std::to_string(port_),
                                   "--bind",
                                   "127.0.0.1",
                                   "--save",
                                   "",
                                   "--appendonly",
                                   "no",
                                   "--dir",
                                   dir_,
                                   "--daemonize",
                                   "no"};
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string log = log_path_;
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    // Only async-signal-safe calls until exec. The server dies with the test process.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execvp("redis-server", argv.data());
    ::_exit(127);
  }
  pid_ = pid;
  return absl::OkStatus();
}

absl::Status RedisServer::WaitReady() {
  const auto deadline = std::chrono::steady_clock::now() + kReadyTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::UnavailableError(
          absl::StrCat("redis-server on port ", port_, " exited at start-up: ", LogTail()));
    }
    timeval tv{0, 200 * 1000};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
    if (c != nullptr && c->err == 0) {
      // Any answer will do (NOAUTH from a password-protected server is an answer).
      void* reply = redisCommand(c, "PING");
      const bool answered = reply != nullptr;
      if (reply != nullptr) freeReplyObject(reply);
      redisFree(c);
      if (answered) return absl::OkStatus();
    } else if (c != nullptr) {
      redisFree(c);
    }
    // Polling a child's readiness: there is no event to wait for.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat("redis-server on port ", port_,
                                                  " did not answer PING within 10 s: ", LogTail()));
}

void RedisServer::Kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

void RedisServer::Stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Kill9();
}

std::string RedisServer::Url(const std::string& userinfo, const std::string& suffix) const {
  return absl::StrCat("redis://", userinfo, userinfo.empty() ? "" : "@", "127.0.0.1:", port_,
                      suffix);
}

std::string RedisServer::LogTail() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string log = ss.str();
  if (log.size() > 2000) log = log.substr(log.size() - 2000);
  return log.empty() ? "(empty log)" : log;
}

SyncRedis::~SyncRedis() {
  if (ctx_ != nullptr) redisFree(ctx_);
}

absl::Status SyncRedis::Connect(uint16_t port, const std::string& password) {
  timeval tv{5, 0};
  ctx_ = redisConnectWithTimeout("127.0.0.1", port, tv);
  if (ctx_ == nullptr || ctx_->err != 0) {
    return absl::UnavailableError(
        absl::StrCat("sync connect to ", port, ": ", ctx_ ? ctx_->errstr : "alloc"));
  }
  redisSetTimeout(ctx_, tv);
  if (!password.empty()) {
    auto r = Command({"AUTH", password});
    if (!r.ok()) return r.status();
    if (r->is_error()) return absl::PermissionDeniedError(r->str);
  }
  return absl::OkStatus();
}

absl::StatusOr<RedisReply> SyncRedis::Command(const std::vector<std::string>& args) {
  auto replies = Pipeline({args});
  if (!replies.ok()) return replies.status();
  return std::move(replies->front());
}

absl::StatusOr<std::vector<RedisReply>> SyncRedis::Pipeline(
    const std::vector<std::vector<std::string>>& commands) {
  if (ctx_ == nullptr) return absl::FailedPreconditionError("not connected");
  for (const auto& args : commands) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(ctx_, static_cast<int>(args.size()), argv.data(), lens.data()) !=
        REDIS_OK) {
      return absl::InternalError(absl::StrCat("append: ", ctx_->errstr));
    }
  }
  std::vector<RedisReply> out;
  out.reserve(commands.size());
  for (size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(ctx_, &raw) != REDIS_OK || raw == nullptr) {
      return absl::UnavailableError(absl::StrCat("sync reply: ", ctx_->errstr));
    }
    out.push_back(RedisReply::FromHiredis(*static_cast<redisReply*>(raw)));
    freeReplyObject(raw);
  }
  return out;
}

}  // namespace bridge::broker::testing
