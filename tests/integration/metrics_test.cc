// /metrics read back from a real bridge and parsed as the Prometheus text format: counters,
// per-namespace gauges, the delivery latency histogram, closes by code, and that every family
// the bridge renders is documented in docs/operations.md.
#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace bridge::testing {
namespace {

// One scrape: samples keyed by name and their labels, and what HELP/TYPE said.
struct Scrape {
  struct Sample {
    std::string name;
    std::map<std::string, std::string> labels;
    double value = 0;
  };
  std::vector<Sample> samples;
  std::map<std::string, std::string> types;  // family -> type
  std::set<std::string> helps;
  std::string error;  // the first malformed line, if any

  // The value of the sample `name` whose labels include `labels`; -1 when absent.
  double Get(const std::string& name, const std::map<std::string, std::string>& labels = {}) const {
    for (const Sample& s : samples) {
      if (s.name != name) continue;
      bool match = true;
      for (const auto& [k, v] : labels) {
        auto it = s.labels.find(k);
        if (it == s.labels.end() || it->second != v) match = false;
      }
      if (match) return s.value;
    }
    return -1;
  }
  // The family a sample belongs to: histograms' _bucket/_sum/_count suffixes removed.
  std::string FamilyOf(const std::string& name) const {
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      std::string sfx(suffix);
      if (name.size() > sfx.size() && name.ends_with(sfx)) {
        std::string base = name.substr(0, name.size() - sfx.size());
        auto it = types.find(base);
        if (it != types.end() && it->second == "histogram") return base;
      }
    }
    return name;
  }
};

Scrape Parse(const std::string& text) {
  Scrape out;
  std::istringstream in(text);
  std::string line;
  auto fail = [&](const std::string& l) {
    if (out.error.empty()) out.error = l;
  };
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.starts_with("# HELP ")) {
      std::string rest = line.substr(7);
      out.helps.insert(rest.substr(0, rest.find(' ')));
      continue;
    }
    if (line.starts_with("# TYPE ")) {
      std::istringstream t(line.substr(7));
      std::string name, type;
      t >> name >> type;
      if (type != "counter" && type != "gauge" && type != "histogram") fail(line);
      out.types[name] = type;
      continue;
    }
    if (line[0] == '#') continue;
    Scrape::Sample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        size_t eq = line.find('=', i);
        if (eq == std::string::npos || eq + 1 >= line.size() || line[eq + 1] != '"') {
          fail(line);
          break;
        }
        std::string key = line.substr(i, eq - i);
        std::string value;
        size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\' && j + 1 < line.size()) {
            ++j;
            value.push_back(line[j] == 'n' ? '\n' : line[j]);
          } else {
            value.push_back(line[j]);
          }
        }
        s.labels[key] = value;
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      ++i;  // '}'
    }
    if (i >= line.size() || line[i] != ' ') {
      fail(line);
      continue;
    }
    std::string v = line.substr(i + 1);
    try {
      s.value = v == "+Inf" ? 1e308 : std::stod(v);
    } catch (...) {
      fail(line);
      continue;
    }
    out.samples.push_back(std::move(s));
  }
  return out;
}

Scrape ScrapeBridge(uint16_t port) {
  std::string body;
  if (HttpStatus(port, "/metrics", false, &body) != 200) return Scrape{{}, {}, {}, "no /metrics"};
  return Parse(body);
}

// Checks the histogram of `ns` is well formed: cumulative buckets ending in +Inf == _count.
void ExpectHistogramConsistent(const Scrape& m, const std::string& ns) {
  std::vector<std::pair<double, double>> buckets;  // le, count
  for (const auto& s : m.samples) {
    if (s.name != "bridge_delivery_latency_seconds_bucket" || s.labels.at("namespace") != ns) {
      continue;
    }
    const std::string& le = s.labels.at("le");
    buckets.push_back({le == "+Inf" ? 1e308 : std::stod(le), s.value});
  }
  ASSERT_GT(buckets.size(), 5u) << ns;
  EXPECT_EQ(buckets.back().first, 1e308) << "the last bucket is +Inf";
  for (size_t i = 1; i < buckets.size(); ++i) {
    EXPECT_LT(buckets[i - 1].first, buckets[i].first) << "bounds ascend";
    EXPECT_LE(buckets[i - 1].second, buckets[i].second) << "buckets are cumulative";
  }
  EXPECT_EQ(buckets.back().second,
            m.Get("bridge_delivery_latency_seconds_count", {{"namespace", ns}}));
}

TEST(MetricsTest, CountsPublishesDeliveriesLatencyAndClosesByCode) {
  app::ServerConfig config;
  config.ws.max_frame_bytes = 4096;
  auto server = StartBridge(config);
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->ws_port();

  // Two subscribers of circles/dev, one of workspace/w1.
  auto a = WsClient::Connect(port, "/ws/circles/dev?ack=1");
  auto b = WsClient::Connect(port, "/ws/circles/dev?ack=1");
  auto w = WsClient::Connect(port, "/ws/workspace/w1?ack=1");
  ASSERT_TRUE(a && b && w);
  for (auto* c : {a.get(), b.get(), w.get()}) ASSERT_EQ(c->RecvJson().at("type"), "subscribed");

  Scrape before = ScrapeBridge(port);
  ASSERT_TRUE(before.error.empty()) << before.error;
  EXPECT_EQ(before.Get("bridge_namespace_subscriptions", {{"namespace", "circles"}}), 2);
  EXPECT_EQ(before.Get("bridge_namespace_subscriptions", {{"namespace", "workspace"}}), 1);
  EXPECT_EQ(before.Get("bridge_namespace_subscriptions", {{"namespace", "agents"}}), 0);

  constexpr int kCircles = 20;
  constexpr int kWorkspace = 7;
  auto stub = MakeStub(server->grpc_port());
  for (int i = 0; i < kCircles; ++i) {
    ASSERT_TRUE(PublishMessage(*stub, "circles/dev", i, "c").ok());
  }
  for (int i = 0; i < kWorkspace; ++i) {
    ASSERT_TRUE(PublishMessage(*stub, "workspace/w1", i, "w").ok());
  }
  EXPECT_EQ(PublishMessage(*stub, "not a channel", 1, "x").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  for (int i = 0; i < kCircles; ++i) {
    ASSERT_EQ(a->RecvEvent().at("type"), "agent_message");
    ASSERT_EQ(b->RecvEvent().at("type"), "agent_message");
  }
  for (int i = 0; i < kWorkspace; ++i) ASSERT_EQ(w->RecvEvent().at("type"), "agent_message");

  // A socket write completes before its bytes are read, but the completion handler may run a
  // moment after: wait for the counts rather than read them once.
  Scrape m;
  bool counted = WaitFor([&] {
    m = ScrapeBridge(port);
    return m.Get("bridge_delivery_latency_seconds_count", {{"namespace", "circles"}}) ==
               2 * kCircles &&
           m.Get("bridge_delivery_latency_seconds_count", {{"namespace", "workspace"}}) ==
               kWorkspace;
  });
  ASSERT_TRUE(m.error.empty()) << m.error;
  EXPECT_TRUE(counted) << "histogram counts: circles "
                       << m.Get("bridge_delivery_latency_seconds_count", {{"namespace", "circles"}})
                       << ", workspace "
                       << m.Get("bridge_delivery_latency_seconds_count",
                                {{"namespace", "workspace"}});
  EXPECT_EQ(m.Get("bridge_delivery_latency_seconds_count", {{"namespace", "agents"}}), 0);
  ExpectHistogramConsistent(m, "circles");
  ExpectHistogramConsistent(m, "workspace");
  EXPECT_GT(m.Get("bridge_delivery_latency_seconds_sum", {{"namespace", "circles"}}), 0);
  // Loopback deliveries take well under 10 s: nothing lands in +Inf only.
  EXPECT_EQ(
      m.Get("bridge_delivery_latency_seconds_bucket", {{"namespace", "circles"}, {"le", "10"}}),
      2 * kCircles);

  EXPECT_EQ(m.Get("bridge_publishes_total", {{"code", "OK"}}), kCircles + kWorkspace);
  EXPECT_EQ(m.Get("bridge_publishes_total", {{"code", "INVALID_ARGUMENT"}}), 1);
  EXPECT_EQ(m.Get("bridge_grpc_calls_total", {{"method", "Publish"}, {"code", "OK"}}),
            kCircles + kWorkspace);
  EXPECT_EQ(m.Get("bridge_grpc_calls_total", {{"method", "Publish"}, {"code", "INVALID_ARGUMENT"}}),
            1);
  EXPECT_EQ(m.Get("bridge_events_published_total"), kCircles + kWorkspace);
  EXPECT_GE(m.Get("bridge_frames_sent_total"), 2 * kCircles + kWorkspace);
  EXPECT_EQ(m.Get("bridge_connections_current"), 3);

  // Closes by code: a client's normal close (1000, echoed) and a frame over the limit (1009, the
  // bridge's); a socket cut without a close frame (1006) is the next test.
  const double received = m.Get("bridge_frames_received_total");
  w->Send(R"({"type":"ping"})");
  ASSERT_EQ(w->RecvEvent().at("type"), "pong");
  m = ScrapeBridge(port);
  EXPECT_EQ(m.Get("bridge_frames_received_total"), received + 1);
  EXPECT_GE(m.Get("bridge_bytes_received_total"), 15 + 6) << "the message and its frame header";
  a->Close(1000);
  b->Send(std::string(8192, 'x'));
  EXPECT_EQ(b->AwaitClose(), 1009);
  bool closed = WaitFor([&] {
    m = ScrapeBridge(port);
    return m.Get("bridge_connections_closed_total", {{"code", "1009"}}) == 1 &&
           m.Get("bridge_connections_closed_total", {{"code", "1000"}}) == 1;
  });
  EXPECT_TRUE(closed) << "1000: " << m.Get("bridge_connections_closed_total", {{"code", "1000"}})
                      << ", 1009: " << m.Get("bridge_connections_closed_total", {{"code", "1009"}});
  EXPECT_EQ(m.Get("bridge_limit_hits_total", {{"limit", "max_frame_bytes"}}), 1);
  EXPECT_EQ(m.Get("bridge_frame_too_big_total"), 1);
  EXPECT_EQ(m.Get("bridge_connections_closed_total", {{"code", "4008"}}), 0)
      << "the bridge's own codes are present at zero";
}

TEST(MetricsTest, ASocketCutWithoutCloseCountsAs1006) {
  auto server = StartBridge();
  ASSERT_NE(server, nullptr);
  {
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::socket s(ioc);
    s.connect({boost::asio::ip::make_address("127.0.0.1"), server->ws_port()});
    std::string req =
        "GET /ws/circles/x HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    boost::asio::write(s, boost::asio::buffer(req));
    ASSERT_TRUE(WaitFor([&] { return server->metrics().connections_current.load() == 1; }));
    // SO_LINGER 0: close sends a RST, no close frame.
    s.set_option(boost::asio::socket_base::linger(true, 0));
    s.close();
  }
  Scrape m;
  EXPECT_TRUE(WaitFor([&] {
    m = ScrapeBridge(server->ws_port());
    return m.Get("bridge_connections_closed_total", {{"code", "1006"}}) == 1;
  })) << m.Get("bridge_connections_closed_total", {{"code", "1006"}});
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Every family the bridge renders (broker mode included, for bridge_broker_*) has HELP and
// TYPE lines and is named in docs/operations.md.
TEST(MetricsTest, EveryFamilyHasHelpTypeAndIsDocumented) {
  const std::string docs = ReadFile(std::string(BRIDGE_SOURCE_DIR) + "/docs/operations.md");
  ASSERT_FALSE(docs.empty());
  for (const char* broker : {"", "memory"}) {
    app::ServerConfig config;
    config.broker = broker;
    auto server = StartBridge(config);
    ASSERT_NE(server, nullptr);
    Scrape m = ScrapeBridge(server->ws_port());
    ASSERT_TRUE(m.error.empty()) << m.error;
    ASSERT_FALSE(m.samples.empty());
    std::set<std::string> families;
    for (const auto& s : m.samples) families.insert(m.FamilyOf(s.name));
    if (std::string(broker) == "memory") {
      EXPECT_TRUE(families.count("bridge_broker_up"));
    }
    for (const std::string& f : families) {
      EXPECT_TRUE(m.types.count(f)) << f << " has no TYPE line";
      EXPECT_TRUE(m.helps.count(f)) << f << " has no HELP line";
      EXPECT_NE(docs.find("`" + f + "`"), std::string::npos)
          << f << " is not documented in docs/operations.md (as `" << f << "`)";
    }
  }
}

}  // namespace
}  // namespace bridge::testing
