#include "admin/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "admin/health.h"
#include "admin/node_info.h"
#include "core/frame.h"
#include "core/strings.h"

namespace bridge::admin {

namespace {

int64_t Millis(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// {"count":N,"mean":ms,"p99":ms} of what the histogram gained since `last` (which it updates).
std::string LatencyJson(const core::ShardedHistogram& h, core::ShardedHistogram::Totals& last) {
  using H = core::ShardedHistogram;
  const H::Totals now = h.Sum(0);
  H::Totals d;
  for (size_t b = 0; b < H::kBuckets; ++b) {
    d.buckets[b] = now.buckets[b] >= last.buckets[b] ? now.buckets[b] - last.buckets[b] : 0;
    d.count += d.buckets[b];
  }
  d.sum_nanos = now.sum_nanos - last.sum_nanos;
  last = now;
  double mean = 0, p99 = 0;
  if (d.count > 0) {
    mean = static_cast<double>(d.sum_nanos) / static_cast<double>(d.count) / 1e6;
    const uint64_t want = (d.count * 99 + 99) / 100;
    uint64_t seen = 0;
    for (size_t b = 0; b < H::kBuckets; ++b) {
      seen += d.buckets[b];
      if (seen >= want) {
        p99 = static_cast<double>(H::kBoundsNanos[std::min(b, H::kBoundsNanos.size() - 1)]) / 1e6;
        break;
      }
    }
  }
  char buf[96];
  std::snprintf(buf, sizeof(buf), R"({"count":%llu,"mean":%.3f,"p99":%.3f})",
                static_cast<unsigned long long>(d.count), mean, p99);
  return buf;
}

}  // namespace

Sampler::Sampler(SamplerSources sources) : sources_(std::move(sources)) {}

std::string Sampler::Sample(std::chrono::steady_clock::time_point now,
                            std::chrono::system_clock::time_point wall) {
  const CounterSnapshot c = ReadCounters(*sources_.metrics);
  double seconds = 0;
  if (!first_) {
    seconds = std::chrono::duration<double>(now - last_at_).count();
    interval_ = std::chrono::duration_cast<std::chrono::milliseconds>(now - last_at_);
  }
  auto rate = [&](uint64_t cur, uint64_t prev) {
    return seconds > 0 && cur >= prev ? static_cast<double>(cur - prev) / seconds : 0.0;
  };
  const double published = rate(c.published, last_.published);
  const double client_messages = rate(c.client_messages, last_.client_messages);
  const double frames_sent = rate(c.frames_sent, last_.frames_sent);
  const double bytes_sent = rate(c.bytes_sent, last_.bytes_sent);
  const double opened = rate(c.connections_opened, last_.connections_opened);
  last_ = c;
  last_at_ = now;
  first_ = false;

  core::Hub& hub = *sources_.hub;
  const Health health = CheckHealth(hub, sources_.draining->load(std::memory_order_relaxed));
  const std::string node = hub.clustered() ? hub.node_id() : "";
  std::string o = core::Cat(
      R"({"type":"sample","time":)", Millis(wall), R"(,"interval_ms":)", interval_.count(),
      R"(,"node":)", core::JsonQuote(node), R"(,"status":")", health.status, R"(","connections":)",
      c.connections, R"(,"http_connections":)", c.http_connections, R"(,"subscriptions":)",
      c.subscriptions, R"(,"channels":)", c.channels, R"(,"backend_streams":)", c.backend_streams,
      R"(,"queued_bytes":)", c.queued_bytes);
  o += core::Cat(R"(,"rates":{"published":)", JsonRate(published), R"(,"client_messages":)",
                 JsonRate(client_messages), R"(,"frames_sent":)", JsonRate(frames_sent),
                 R"(,"bytes_sent":)", JsonRate(bytes_sent), R"(,"connections_opened":)",
                 JsonRate(opened), "}");
  o += core::Cat(R"(,"totals":{"published":)", c.published, R"(,"client_messages":)",
                 c.client_messages, R"(,"frames_sent":)", c.frames_sent, R"(,"bytes_sent":)",
                 c.bytes_sent, R"(,"connections_opened":)", c.connections_opened,
                 R"(,"slow_consumer_closes":)", c.slow_consumer_closes, R"(,"auth_failures":)",
                 c.auth_failures, R"(,"rate_limited":)", c.rate_limited, R"(,"publish_rejected":)",
                 c.publish_rejected, R"(,"closes":)", sources_.closes->total(), "}");

  o += R"(,"busiest":[)";
  bool comma = false;
  for (const core::ChannelCount& b : hub.TakeBusiestChannels(kBusiest)) {
    o += core::Cat(comma ? "," : "", R"({"channel":)", core::JsonQuote(b.channel),
                   R"(,"messages":)", b.messages, R"(,"rate":)",
                   JsonRate(seconds > 0 ? static_cast<double>(b.messages) / seconds : 0), "}");
    comma = true;
  }
  o += R"(],"closes":[)";
  comma = false;
  std::vector<ws::CloseLog::Entry> closes = sources_.closes->Recent();
  for (auto it = closes.rbegin(); it != closes.rend(); ++it) {
    o += core::Cat(comma ? "," : "", R"({"code":)", it->code, R"(,"reason":)",
                   core::JsonQuote(it->reason), R"(,"connection":)",
                   core::JsonQuote(it->connection_id), R"(,"time":")",
                   core::FormatTimestamp(it->at), R"("})");
    comma = true;
  }
  const core::BrokerHealth broker = hub.broker_health();
  o += core::Cat(R"(],"broker":{"mode":")", sources_.broker_mode, R"(","publish_up":)",
                 broker.publish_up ? "true" : "false", R"(,"pubsub_up":)",
                 broker.pubsub_up ? "true" : "false", R"(,"detail":)",
                 core::JsonQuote(broker.detail), R"(,"linked_channels":)",
                 hub.cluster_stats().linked_channels.load(std::memory_order_relaxed));
  if (sources_.broker_stats != nullptr) {
    o += core::Cat(R"(,"publish_ms":)",
                   LatencyJson(sources_.broker_stats->publish_latency, last_publish_),
                   R"(,"lag_ms":)", LatencyJson(sources_.broker_stats->delivery_lag, last_lag_));
  }
  o += "}";
  self_ = NodeInfo{};
  self_.node = node;
  self_.connections = c.connections;
  self_.subscriptions = c.subscriptions;
  self_.channels = c.channels;
  self_.published = published;
  self_.client_messages = client_messages;
  self_.frames_sent = frames_sent;
  self_.broker_up = broker.ok();
  self_.self = true;
  o += core::Cat(R"(,"nodes":)", NodesJson(Nodes()), "}");

  history_.push_back(Point{static_cast<double>(Millis(wall)), static_cast<double>(c.connections),
                           static_cast<double>(c.subscriptions), static_cast<double>(c.channels),
                           published, client_messages, frames_sent});
  if (history_.size() > kHistoryPoints) history_.pop_front();
  return o;
}

std::vector<NodeInfo> Sampler::Nodes() const {
  if (!nodes_.empty()) return nodes_;
  return {self_};
}

std::string Sampler::HistoryFrame() const {
  std::string o =
      core::Cat(R"({"type":"history","interval_ms":)", interval_.count(), R"(,"points":[)");
  bool comma = false;
  for (const Point& p : history_) {
    o += comma ? ",[" : "[";
    comma = true;
    o += core::Cat(static_cast<int64_t>(p[0]));
    for (size_t i = 1; i < 4; ++i) o += core::Cat(",", static_cast<int64_t>(p[i]));
    for (size_t i = 4; i < p.size(); ++i) o += core::Cat(",", JsonRate(p[i]));
    o += "]";
  }
  o += "]}";
  return o;
}

}  // namespace bridge::admin
