// The real binary's logs with --log_format=json: every stderr line is one JSON object (time,
// level, message), and a connection's life is one "connection opened" and one
// "connection closed" line at info with its fields.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "test_support.h"

namespace bridge::testing {
namespace {

class LogsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::filesystem::remove_all(dir_);
  }
  // Starts the binary with `flags`, its stderr into a file; false when it did not get ready.
  bool Spawn(std::vector<std::string> flags) {
    dir_ = std::filesystem::temp_directory_path() /
           ("bridge-logs-" + std::to_string(getpid()) + "-" + std::to_string(rand()));
    std::filesystem::create_directories(dir_);
    const std::string ready = (dir_ / "ready.json").string();
    log_path_ = (dir_ / "stderr.log").string();
    flags.insert(flags.begin(), {"--ws_port=0", "--grpc_port=0", "--ready_file=" + ready});
    pid_ = fork();
    if (pid_ == 0) {
      int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(fd, 2);
      std::vector<char*> argv{const_cast<char*>(BRIDGE_BINARY)};
      for (auto& f : flags) argv.push_back(f.data());
      argv.push_back(nullptr);
      execv(BRIDGE_BINARY, argv.data());
      _exit(127);
    }
    if (!WaitFor([&] { return std::filesystem::exists(ready) || Exited() >= 0; }, 10s) ||
        Exited() >= 0) {
      return false;
    }
    // The ready file may be seen before it is complete: parse until it is.
    boost::json::value v;
    if (!WaitFor([&] {
          std::ifstream f(ready);
          std::stringstream ss;
          ss << f.rdbuf();
          boost::system::error_code ec;
          v = boost::json::parse(ss.str(), ec);
          return !ec && v.is_object();
        })) {
      return false;
    }
    ws_port_ = static_cast<uint16_t>(v.at("ws_port").to_number<int>());
    grpc_port_ = static_cast<uint16_t>(v.at("grpc_port").to_number<int>());
    return true;
  }
  // The exit code once exited, else -1.
  int Exited() {
    if (pid_ <= 0) return exit_code_;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return -1;
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_code_;
  }
  std::vector<std::string> Lines() const {
    std::ifstream f(log_path_);
    std::vector<std::string> out;
    std::string line;
    while (std::getline(f, line)) out.push_back(line);
    return out;
  }

  std::filesystem::path dir_;
  std::string log_path_;
  pid_t pid_ = -1;
  int exit_code_ = -1;
  uint16_t ws_port_ = 0;
  uint16_t grpc_port_ = 0;
};

TEST_F(LogsTest, JsonLinesWithConnectionLifecycleFields) {
  ASSERT_TRUE(Spawn({"--log_format=json", "--log_level=info"})) << "the bridge did not start";
  {
    auto c = WsClient::Connect(ws_port_, "/ws/circles/dev?client=alice&ack=1");
    ASSERT_NE(c, nullptr);
    ASSERT_EQ(c->RecvJson().at("type"), "subscribed");
    c->Close(1000);
  }
  // The closed line is written when the session ends, after the close handshake.
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& l : Lines()) {
      if (l.find("connection closed") != std::string::npos) return true;
    }
    return false;
  }));
  ASSERT_EQ(kill(pid_, SIGTERM), 0);
  ASSERT_TRUE(WaitFor([&] { return Exited() >= 0; }, 10s));
  EXPECT_EQ(Exited(), 0);

  std::vector<std::string> lines = Lines();
  ASSERT_FALSE(lines.empty());
  boost::json::object opened, closed;
  bool listening = false;
  for (const std::string& l : lines) {
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(l, ec);
    ASSERT_FALSE(ec) << "not JSON: " << l;
    ASSERT_TRUE(v.is_object()) << l;
    const auto& o = v.as_object();
    ASSERT_TRUE(o.contains("time") && o.at("time").is_string()) << l;
    ASSERT_TRUE(o.contains("level") && o.at("level").is_string()) << l;
    ASSERT_TRUE(o.contains("message") && o.at("message").is_string()) << l;
    EXPECT_TRUE(std::string(o.at("time").as_string()).ends_with("Z")) << l;
    const std::string message(o.at("message").as_string());
    if (message == "connection opened") opened = o;
    if (message == "connection closed") closed = o;
    if (message.find("listening") != std::string::npos) listening = true;
  }
  EXPECT_TRUE(listening) << "plain spdlog lines are JSON too";
  ASSERT_FALSE(opened.empty()) << "no connection opened line";
  ASSERT_FALSE(closed.empty()) << "no connection closed line";
  EXPECT_EQ(opened.at("level"), "info");
  EXPECT_EQ(opened.at("identity"), "alice");
  EXPECT_EQ(opened.at("channel"), "circles/dev");
  EXPECT_TRUE(std::string(opened.at("remote").as_string()).starts_with("127.0.0.1:"));
  EXPECT_EQ(closed.at("conn"), opened.at("conn"));
  EXPECT_EQ(closed.at("level"), "info");
  EXPECT_EQ(closed.at("identity"), "alice");
  EXPECT_EQ(closed.at("code").to_number<int>(), 1000);
  EXPECT_EQ(closed.at("by"), "client");
  EXPECT_EQ(closed.at("channels").to_number<int>(), 1);
  EXPECT_TRUE(closed.contains("reason"));
  EXPECT_GE(closed.at("duration_ms").to_number<int64_t>(), 0);
}

TEST_F(LogsTest, AnUnknownLogFormatIsRefused) {
  ASSERT_FALSE(Spawn({"--log_format=xml"}));
  ASSERT_TRUE(WaitFor([&] { return Exited() >= 0; }, 10s));
  EXPECT_EQ(Exited(), 2);
  bool said = false;
  for (const auto& l : Lines()) said |= l.find("must be text or json") != std::string::npos;
  EXPECT_TRUE(said);
}

}  // namespace
}  // namespace bridge::testing
