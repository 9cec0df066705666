// bridge-load: WebSocket subscribers + a publisher against the bridge, nchan, or a built-in sink;
// prints one JSON line per run. See docs/benchmarks.md for the scenarios and the fields.
#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/strings/str_split.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <thread>

#include "error_log.h"
#include "json_line.h"
#include "proc_stats.h"
#include "publishers.h"
#include "sink_server.h"
#include "ws_clients.h"

ABSL_FLAG(std::string, target, "bridge", "bridge | nchan | sink (built-in broadcaster)");
ABSL_FLAG(std::string, scenario, "custom", "label copied to the output");
ABSL_FLAG(std::string, host, "127.0.0.1", "server address (loopback)");
ABSL_FLAG(int, ws_port, 0, "WebSocket port (bridge, nchan)");
ABSL_FLAG(int, grpc_port, 0, "gRPC port (bridge)");
ABSL_FLAG(int, http_port, 0, "HTTP publish port (nchan); 0: the WebSocket port");
ABSL_FLAG(bool, tls, false,
          "subscribers connect over TLS (wss://), verifying the server against --tls_ca_file");
ABSL_FLAG(std::string, tls_ca_file, "", "PEM certificate(s) the TLS subscribers trust");
ABSL_FLAG(std::string, tls_server_name, "localhost",
          "SNI and the name the server's certificate must carry (--tls)");
ABSL_FLAG(std::string, publish, "auto", "unary | stream (bridge), http (nchan), sink; auto");
ABSL_FLAG(int, subscribers, 100, "WebSocket subscribers");
ABSL_FLAG(int, channels, 1, "channels; subscriber j and event i go to channel j % C, i % C");
ABSL_FLAG(int64_t, events, 1000, "events to publish (0: connect only)");
ABSL_FLAG(double, rate, 0, "events per second; 0 = as fast as the server accepts");
ABSL_FLAG(int, window, 32, "publish calls in flight (HTTP: keep-alive connections)");
ABSL_FLAG(int, payload_bytes, 0, "extra bytes in data.pad");
ABSL_FLAG(int, io_threads, 1, "subscriber io threads");
ABSL_FLAG(int, connect_concurrency, 200, "handshakes pending at once (all threads)");
ABSL_FLAG(double, connect_timeout_s, 60, "give up connecting after this");
ABSL_FLAG(std::string, ready_on, "auto",
          "subscribed (ask for the bridge's subscribed frame with ?ack=1 and wait for it) | "
          "handshake; auto: subscribed for the bridge");
ABSL_FLAG(double, slow_fraction, 0, "share of subscribers that stop reading once ready");
ABSL_FLAG(int, slow_rcvbuf, 4096, "SO_RCVBUF of slow subscribers");
ABSL_FLAG(double, idle_s, 0, "hold the connections this long before measuring RSS");
ABSL_FLAG(double, drain_timeout_s, 120, "max wait for deliveries after the last publish");
ABSL_FLAG(double, drain_quiet_s, 3, "stop draining after this long without a delivery");
ABSL_FLAG(double, max_s, 240, "hard limit for the whole run");
ABSL_FLAG(std::string, server_pids, "", "comma-separated pids whose CPU/RSS to report");
ABSL_FLAG(std::string, channel_prefix, "", "channel name prefix; default unique per run");

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
double Ms(uint64_t ns) { return static_cast<double>(ns) / 1e6; }

void RaiseFdLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

// Runs the publish loop: paces to `rate`, keeps at most `window` calls in flight, records which
// events the server accepted.
struct DriveResult {
  std::vector<uint8_t> accepted;  // per seq
  double max_lag_s = 0;           // worst lateness against the schedule
  double publish_s = 0;
  bool timed_out = false;
};

DriveResult Drive(bench::Publisher& publisher, int64_t events, int channels, double rate,
                  int window, Clock::time_point t0, Clock::time_point deadline) {
  DriveResult r;
  r.accepted.assign(static_cast<size_t>(events), 0);
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  Clock::time_point start = Clock::now();
  for (int64_t i = 0; i < events; ++i) {
    if (rate > 0) {
      auto scheduled = start + std::chrono::nanoseconds(static_cast<int64_t>(1e9 * i / rate));
      auto now = Clock::now();
      if (now < scheduled) {
        std::this_thread::sleep_until(scheduled);
      } else {
        r.max_lag_s = std::max(r.max_lag_s, Seconds(now - scheduled));
      }
    }
    {
      std::unique_lock lock(mu);
      if (!cv.wait_until(lock, deadline, [&] { return in_flight < window; })) {
        r.timed_out = true;
        break;
      }
      ++in_flight;
    }
    uint64_t t_ns = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
    publisher.Publish(static_cast<uint64_t>(i), static_cast<int>(i % channels), t_ns,
                      [&, i](bool ok) {
                        std::lock_guard lock(mu);
                        r.accepted[static_cast<size_t>(i)] = ok ? 1 : 0;
                        --in_flight;
                        cv.notify_all();
                      });
  }
  std::unique_lock lock(mu);
  // Calls in flight hold references to this frame: wait for every one, however long.
  if (!cv.wait_until(lock, deadline, [&] { return in_flight == 0; })) r.timed_out = true;
  cv.wait(lock, [&] { return in_flight == 0; });
  r.publish_s = Seconds(Clock::now() - start);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  RaiseFdLimit();
  const Clock::time_point t0 = Clock::now();
  const Clock::time_point deadline =
      t0 + std::chrono::milliseconds(static_cast<int64_t>(absl::GetFlag(FLAGS_max_s) * 1000));

  const std::string target = absl::GetFlag(FLAGS_target);
  std::string publish = absl::GetFlag(FLAGS_publish);
  if (publish == "auto")
    publish = target == "bridge" ? "unary" : target == "nchan" ? "http" : "sink";
  if (absl::GetFlag(FLAGS_tls)) {
    // Only the subscribers speak TLS; publishing stays on the server's plain listener.
    const char* problem = target == "sink" ? "the built-in sink does not serve TLS"
                          : publish == "http" && absl::GetFlag(FLAGS_http_port) == 0
                              ? "--publish=http needs --http_port (the plain publish listener)"
                              : nullptr;
    if (problem != nullptr) {
      std::cerr << "bridge-load: --tls: " << problem << std::endl;
      return 2;
    }
  }
  const int subscribers = absl::GetFlag(FLAGS_subscribers);
  const int channels = std::max(1, absl::GetFlag(FLAGS_channels));
  const int64_t events = absl::GetFlag(FLAGS_events);
  const double rate = absl::GetFlag(FLAGS_rate);
  std::string prefix = absl::GetFlag(FLAGS_channel_prefix);
  if (prefix.empty()) {
    prefix = "bench-" + std::to_string(getpid()) + "-" +
             std::to_string(std::chrono::system_clock::now().time_since_epoch().count() % 100000);
  }

  bench::ErrorLog errors;
  std::unique_ptr<bench::SinkServer> sink;
  bench::ProcSet server;
  uint16_t ws_port = static_cast<uint16_t>(absl::GetFlag(FLAGS_ws_port));
  if (target == "sink") {
    sink = std::make_unique<bench::SinkServer>();
    ws_port = sink->Start();
    while (sink->tid() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    server.paths.push_back("self/task/" + std::to_string(sink->tid()));
  }
  for (auto pid : absl::StrSplit(absl::GetFlag(FLAGS_server_pids), ',', absl::SkipEmpty())) {
    server.paths.emplace_back(pid);
  }
  const std::string self_path = "self";

  std::vector<std::string> names, ws_paths, pub_paths;
  for (int c = 0; c < channels; ++c) {
    std::string id = prefix + "-" + std::to_string(c);
    names.push_back("circles/" + id);
    ws_paths.push_back("/ws/circles/" + id);
    pub_paths.push_back("/pub/circles/" + id);
  }

  bench::ClientPoolConfig pool_config;
  pool_config.host = absl::GetFlag(FLAGS_host);
  pool_config.port = ws_port;
  std::string ready_on = absl::GetFlag(FLAGS_ready_on);
  pool_config.wait_subscribed =
      ready_on == "subscribed" || (ready_on == "auto" && target == "bridge");
  // The bridge acknowledges the path's subscription only when asked (?ack=1).
  pool_config.channel_paths = ws_paths;
  if (pool_config.wait_subscribed) {
    for (auto& p : pool_config.channel_paths) p += "?ack=1";
  }
  pool_config.subscribers = subscribers;
  pool_config.events_per_channel = static_cast<uint64_t>((events + channels - 1) / channels);
  pool_config.slow_fraction = absl::GetFlag(FLAGS_slow_fraction);
  pool_config.slow_rcvbuf = absl::GetFlag(FLAGS_slow_rcvbuf);

  pool_config.io_threads = absl::GetFlag(FLAGS_io_threads);
  pool_config.connect_concurrency = absl::GetFlag(FLAGS_connect_concurrency);
  pool_config.tls = absl::GetFlag(FLAGS_tls);
  pool_config.tls_ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  pool_config.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  pool_config.t0 = t0;

  const uint64_t rss_base = server.RssKib();
  const double connect_cpu0 = server.CpuSeconds();

  // Connect phase.
  bench::ClientPool pool(pool_config, &errors);
  if (!pool.InitError().empty()) {
    std::cerr << "bridge-load: " << pool.InitError() << std::endl;
    return 2;
  }
  const Clock::time_point connect_start = Clock::now();
  const Clock::time_point connect_deadline =
      std::min(deadline, connect_start + std::chrono::milliseconds(static_cast<int64_t>(
                                             absl::GetFlag(FLAGS_connect_timeout_s) * 1000)));
  pool.Start();
  while (pool.Ready() + pool.Failed() < static_cast<uint64_t>(subscribers) &&
         Clock::now() < connect_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const double connect_s = Seconds(Clock::now() - connect_start);
  const uint64_t ready_after_connect = pool.Ready();
  const uint64_t connect_failures = static_cast<uint64_t>(subscribers) - ready_after_connect;
  const double connect_server_cpu = server.CpuSeconds() - connect_cpu0;

  double idle_s = absl::GetFlag(FLAGS_idle_s);
  if (idle_s > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(idle_s * 1000)));
  }
  const uint64_t rss_connected = server.RssKib();
  const uint64_t tool_rss_connected = bench::ProcStatusKib(self_path, "VmRSS");

  // Publish phase.
  std::vector<uint64_t> measured_per_channel = pool.SnapshotMeasured();
  bench::PublisherConfig pub_config;
  pub_config.host = absl::GetFlag(FLAGS_host);
  pub_config.channel_names = names;
  pub_config.payload_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_payload_bytes));
  pub_config.window = std::max(1, absl::GetFlag(FLAGS_window));
  pub_config.errors = &errors;
  std::unique_ptr<bench::Publisher> publisher;
  if (events > 0) {
    if (publish == "unary" || publish == "stream") {
      pub_config.port = static_cast<uint16_t>(absl::GetFlag(FLAGS_grpc_port));
      publisher = publish == "unary" ? bench::MakeGrpcUnaryPublisher(pub_config)
                                     : bench::MakeGrpcStreamPublisher(pub_config);
    } else if (publish == "http") {
      int http_port = absl::GetFlag(FLAGS_http_port);
      pub_config.port = http_port > 0 ? static_cast<uint16_t>(http_port) : ws_port;
      pub_config.channel_paths = pub_paths;
      publisher = bench::MakeHttpPublisher(pub_config);
    } else {
      pub_config.channel_paths = ws_paths;
      publisher = bench::MakeSinkPublisher(pub_config, sink.get());
    }
  }

  const double cpu0 = server.CpuSeconds();
  const double tool_cpu0 = bench::ProcCpuSeconds(self_path);
  const int64_t publish_start_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
  DriveResult drive;
  std::vector<uint64_t> accepted_per_channel(static_cast<size_t>(channels), 0);
  uint64_t accepted = 0;
  uint64_t expected_now = 0;
  if (publisher) {
    drive = Drive(*publisher, events, channels, rate, pub_config.window, t0, deadline);
    if (drive.timed_out) errors.Add("publish: run deadline reached");
    for (uint64_t seq : publisher->Finish()) {
      if (seq < drive.accepted.size()) drive.accepted[seq] = 0;
    }
    for (size_t i = 0; i < drive.accepted.size(); ++i) {
      if (drive.accepted[i]) {
        ++accepted_per_channel[i % static_cast<size_t>(channels)];
        ++accepted;
      }
    }
    for (size_t c = 0; c < accepted_per_channel.size(); ++c) {
      expected_now += accepted_per_channel[c] * measured_per_channel[c];
    }
    // Drain: until everything arrived, nothing arrived for drain_quiet_s, or the timeout.
    const auto drain_start = Clock::now();
    const auto drain_deadline =
        std::min(deadline, drain_start + std::chrono::milliseconds(static_cast<int64_t>(
                                             absl::GetFlag(FLAGS_drain_timeout_s) * 1000)));
    uint64_t last = pool.Delivered();
    auto last_change = Clock::now();
    while (Clock::now() < drain_deadline) {
      uint64_t now_delivered = pool.Delivered();
      if (now_delivered >= expected_now) break;
      if (now_delivered != last) {
        last = now_delivered;
        last_change = Clock::now();
      } else if (Seconds(Clock::now() - last_change) > absl::GetFlag(FLAGS_drain_quiet_s)) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  const double server_cpu = server.CpuSeconds() - cpu0;
  const double tool_cpu = bench::ProcCpuSeconds(self_path) - tool_cpu0;
  const uint64_t rss_end = server.RssKib();
  const int64_t last_delivery_ns = pool.LastDeliveryNs();

  // Slow subscribers: read again, to see what the server did with them.
  uint64_t slow_ready = 0;
  if (absl::GetFlag(FLAGS_slow_fraction) > 0) {
    pool.ResumeSlow();
    std::this_thread::sleep_for(std::chrono::seconds(2));
  }
  pool.Stop();
  bench::PoolResults r = pool.Collect(accepted_per_channel);
  slow_ready = r.slow;
  sink.reset();

  const double delivery_window_s =
      last_delivery_ns > publish_start_ns ? (last_delivery_ns - publish_start_ns) / 1e9 : 0;
  double load1[1] = {0};
  if (getloadavg(load1, 1) != 1) load1[0] = 0;
  bench::JsonLine out;
  out.Add("scenario", absl::GetFlag(FLAGS_scenario))
      .Add("target", target)
      .Add("publish", events > 0 ? publish : std::string("none"))
      .Add("subscribers", subscribers)
      .Add("channels", channels)
      .Add("events", events)
      .Add("rate", rate)
      .Add("tool_io_threads", absl::GetFlag(FLAGS_io_threads))
      .Add("tls", pool_config.tls)
      .Add("tls_version", r.tls_version)
      .Add("tls_cipher", r.tls_cipher)
      .Add("connections_ready", ready_after_connect)
      .Add("connect_seconds", connect_s)
      .Add("connect_failures", connect_failures)
      .Add("connects_per_sec", connect_s > 0 ? ready_after_connect / connect_s : 0.0)
      .Add("connect_p50_ms", Ms(r.connect.Quantile(0.5)))
      .Add("connect_p99_ms", Ms(r.connect.Quantile(0.99)))
      .Add("connect_max_ms", Ms(r.connect.max()))
      .Add("connect_server_cpu_seconds", connect_server_cpu)
      .Add("published", accepted)
      .Add("publish_seconds", drive.publish_s)
      .Add("publish_rate", drive.publish_s > 0 ? accepted / drive.publish_s : 0.0)
      .Add("publisher_lag_ms", drive.max_lag_s * 1000)
      .Add("expected", r.expected)
      .Add("delivered", r.delivered)
      .Add("lost", r.lost)
      .Add("duplicated", r.duplicated)
      .Add("misrouted", r.misrouted)
      .Add("deliveries_per_sec",
           delivery_window_s > 0 ? static_cast<double>(r.delivered) / delivery_window_s : 0.0)
      .Add("p50_ms", Ms(r.latency.Quantile(0.5)))
      .Add("p90_ms", Ms(r.latency.Quantile(0.9)))
      .Add("p99_ms", Ms(r.latency.Quantile(0.99)))
      .Add("p999_ms", Ms(r.latency.Quantile(0.999)))
      .Add("max_ms", Ms(r.latency.max()))
      .Add("server_cpu_seconds", server_cpu)
      .Add("cpu_per_delivery_us",
           r.delivered > 0 ? server_cpu * 1e6 / static_cast<double>(r.delivered) : 0.0)
      .Add("tool_cpu_seconds", tool_cpu - (target == "sink" ? server_cpu : 0.0))
      .Add("server_rss_kib", rss_end)
      .Add("server_rss_base_kib", rss_base)
      .Add("server_rss_connected_kib", rss_connected)
      .Add("rss_per_connection_kib",
           ready_after_connect > 0 && rss_connected > rss_base
               ? static_cast<double>(rss_connected - rss_base) / ready_after_connect
               : 0.0)
      .Add("tool_rss_kib", tool_rss_connected)
      .Add("measured_subscribers", r.measured)
      .Add("slow_subscribers", slow_ready)
      .Add("slow_ended_by_server", r.slow_ended)
      .Add("slow_frames", r.slow_frames)
      .Add("disconnects", r.disconnects)
      .Add("control_frames", r.control_frames)
      .Add("late_frames", r.late_frames)
      .AddCounts("end_reasons", r.end_reasons)
      .Add("errors", errors.count())
      .AddStrings("error_samples", errors.samples())
      .Add("load_1m", load1[0]);
  std::cout << out.str() << std::endl;
  std::fflush(stdout);
  // gRPC's thread pools can take a while to wind down; the result is out.
  std::_Exit(0);
}
