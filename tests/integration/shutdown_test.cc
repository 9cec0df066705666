// Graceful shutdown: WebSockets close 1001, Subscribe streams finish, the process exits 0.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "test_support.h"

namespace bridge::testing {
namespace {

namespace pb = gathering::bridge::v1;

TEST(ShutdownTest, InProcessShutdownClosesWith1001AndFinishesStreams) {
  auto server = StartBridge();
  ASSERT_NE(server, nullptr);
  auto c = WsClient::Connect(server->ws_port(), "/ws/circles/a?ack=1");
  ASSERT_NE(c, nullptr);
  c->RecvJson();
  auto stub = MakeStub(server->grpc_port());
  grpc::ClientContext ctx;
  pb::SubscribeRequest req;
  req.add_channels("*");
  auto reader = stub->Subscribe(&ctx, req);
  ASSERT_TRUE(WaitFor([&] { return server->metrics().backend_streams_current.load() == 1; }));

  auto start = std::chrono::steady_clock::now();
  std::thread stopper([&] { server->Shutdown(); });
  EXPECT_EQ(c->AwaitClose(), 1001);
  pb::ClientMessage m;
  EXPECT_FALSE(reader->Read(&m));
  EXPECT_TRUE(reader->Finish().ok());
  stopper.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

// limits.drain_window: the closes are spread over the window (not all in the first instant, not
// all at its end), every client gets 1001, and Shutdown returns well before its deadline.
TEST(ShutdownTest, DrainSpreadsTheClosesOverTheWindow) {
  app::ServerConfig config;
  config.io_threads = 2;
  config.drain_window = 1000ms;
  config.shutdown_timeout = 4000ms;
  auto server = StartBridge(config);
  ASSERT_NE(server, nullptr);
  constexpr size_t kClients = 80;
  std::vector<std::unique_ptr<WsClient>> clients;
  for (size_t i = 0; i < kClients; ++i) {
    clients.push_back(WsClient::Connect(server->ws_port(), "/ws/circles/drain"));
    ASSERT_NE(clients.back(), nullptr) << i;
  }
  ASSERT_TRUE(WaitFor([&] { return server->metrics().connections_current.load() == kClients; }));

  std::vector<std::chrono::steady_clock::duration> closed_after(kClients);
  std::vector<int> codes(kClients);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> readers;
  for (size_t i = 0; i < kClients; ++i) {
    readers.emplace_back([&, i] {
      codes[i] = clients[i]->AwaitClose(5s);
      closed_after[i] = std::chrono::steady_clock::now() - start;
    });
  }
  std::thread stopper([&] { server->Shutdown(); });
  for (auto& t : readers) t.join();
  stopper.join();
  const auto took = std::chrono::steady_clock::now() - start;

  std::array<size_t, 12> per_100ms{};
  for (size_t i = 0; i < kClients; ++i) {
    EXPECT_EQ(codes[i], 1001) << "client " << i;
    per_100ms[std::min<size_t>(closed_after[i] / 100ms, per_100ms.size() - 1)]++;
  }
  const auto [first, last] = std::minmax_element(closed_after.begin(), closed_after.end());
  EXPECT_LT(*first, 300ms) << "the drain starts at once";
  EXPECT_GT(*last, 700ms) << "the closes are spread over the window, not all at once";
  EXPECT_LT(*last, 1600ms) << "and end with it";
  for (size_t b = 0; b < per_100ms.size(); ++b) {
    EXPECT_LE(per_100ms[b], kClients / 4)
        << "closes in [" << b * 100 << ", " << (b + 1) * 100 << ") ms: the spread is uneven";
  }
  EXPECT_LT(took, 3s) << "Shutdown returns once the last close is done, before its deadline";
}

// At shutdown a connection gets every event already queued for it (a backlog is not dropped),
// then a `reconnect` frame with the position of each of its channels, then the close 1001.
TEST(ShutdownTest, QueuedEventsThenResumePositionsThenTheClose) {
  app::ServerConfig config;
  config.ws.max_queue_bytes = 32 * 1024 * 1024;
  auto server = StartBridge(config);
  ASSERT_NE(server, nullptr);
  // A small receive buffer: what the kernel does not take waits in the session's queue.
  auto c = WsClient::Connect(server->ws_port(), "/ws/circles/backlog?ack=1", nullptr, 4096);
  ASSERT_NE(c, nullptr);
  auto sub = c->RecvJson();
  ASSERT_EQ(sub.at("type"), "subscribed") << boost::json::serialize(sub);
  c->Send(R"({"type":"subscribe","channel":"circles/quiet"})");
  auto sub2 = c->RecvEvent();
  ASSERT_EQ(sub2.at("type"), "subscribed") << boost::json::serialize(sub2);
  auto stub = MakeStub(server->grpc_port());
  const std::string content(1500, 'x');
  size_t published = 0;
  // Published until a backlog of several megabytes waits in the queue (the kernel's buffers
  // hold some too).
  while (server->metrics().queued_bytes_current.load() < 4 * 1024 * 1024) {
    ASSERT_TRUE(PublishMessage(*stub, "circles/backlog", 1, content).ok());
    ASSERT_LT(++published, 40000u) << "no backlog builds up in the session's queue";
  }

  std::thread stopper([&] { server->Shutdown(); });
  size_t events = 0;
  uint64_t last = 0;
  boost::json::value reconnect;
  for (;;) {
    auto f = c->RecvJson(10s);
    if (f.is_null()) break;
    const auto type = f.at("type").as_string();
    if (type == "ping") continue;
    if (type == "reconnect") {
      reconnect = f;
      continue;
    }
    EXPECT_TRUE(reconnect.is_null())
        << "a frame after the reconnect frame: " << boost::json::serialize(f);
    ASSERT_EQ(type, "agent_message") << boost::json::serialize(f);
    ++events;
    last = f.at("offset").to_number<uint64_t>();
  }
  EXPECT_EQ(c->close_code(), 1001);
  stopper.join();
  EXPECT_EQ(events, published) << "queued events were dropped at the close";
  EXPECT_EQ(last, published);
  ASSERT_FALSE(reconnect.is_null()) << "no reconnect frame before the close";
  EXPECT_EQ(reconnect.at("reason"), "server shutting down");
  const auto& positions = reconnect.at("positions").as_object();
  ASSERT_EQ(positions.size(), 2u) << boost::json::serialize(reconnect);
  EXPECT_EQ(positions.at("circles/backlog").at("offset").to_number<uint64_t>(), published);
  EXPECT_EQ(positions.at("circles/backlog").at("epoch"), sub.at("epoch"));
  EXPECT_EQ(positions.at("circles/quiet").at("offset").to_number<uint64_t>(), 0u);
  EXPECT_EQ(positions.at("circles/quiet").at("epoch"), sub2.at("epoch"));
}

class ProcessTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::filesystem::remove_all(dir_);
  }
  void Spawn() {
    dir_ = std::filesystem::temp_directory_path() /
           ("bridge-test-" + std::to_string(getpid()) + "-" + std::to_string(rand()));
    std::filesystem::create_directories(dir_);
    std::string ready = (dir_ / "ready.json").string();
    std::string ready_flag = "--ready_file=" + ready;
    pid_ = fork();
    if (pid_ == 0) {
      execl(BRIDGE_BINARY, BRIDGE_BINARY, "--ws_port=0", "--grpc_port=0", ready_flag.c_str(),
            "--log_level=warn", static_cast<char*>(nullptr));
      _exit(127);
    }
    ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(ready); }, 10s))
        << "bridge did not write its ready file";
    std::ifstream f(ready);
    std::stringstream ss;
    ss << f.rdbuf();
    auto v = boost::json::parse(ss.str());
    ws_port_ = static_cast<uint16_t>(v.at("ws_port").to_number<int>());
    grpc_port_ = static_cast<uint16_t>(v.at("grpc_port").to_number<int>());
    EXPECT_EQ(v.at("pid").to_number<int>(), pid_);
  }
  int WaitExit(std::chrono::milliseconds timeout) {
    int status = 0;
    bool exited = WaitFor([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, timeout);
    if (!exited) return -1;
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  std::filesystem::path dir_;
  pid_t pid_ = -1;
  uint16_t ws_port_ = 0;
  uint16_t grpc_port_ = 0;
};

TEST_F(ProcessTest, SigtermDrainsAndExitsZero) {
  Spawn();
  auto c = WsClient::Connect(ws_port_, "/ws/circles/dev-team?ack=1");
  ASSERT_NE(c, nullptr);
  c->RecvJson();
  auto stub = MakeStub(grpc_port_);
  ASSERT_TRUE(PublishMessage(*stub, "circles/dev-team", 7, "hi").ok());
  EXPECT_EQ(c->RecvEvent().at("data").at("content"), "hi");
  ASSERT_EQ(kill(pid_, SIGTERM), 0);
  EXPECT_EQ(c->AwaitClose(), 1001);
  EXPECT_EQ(WaitExit(10s), 0);
}

TEST_F(ProcessTest, SigintExitsZeroWithNoClients) {
  Spawn();
  ASSERT_EQ(kill(pid_, SIGINT), 0);
  EXPECT_EQ(WaitExit(10s), 0);
}

}  // namespace
}  // namespace bridge::testing
