#include "core/metrics.h"

#include <cmath>
#include <cstdio>

#include "core/protocol.h"
#include "core/strings.h"

namespace bridge::core {
namespace {

template <typename T>
void Add(MetricFamilies& out, const char* name, const char* type, const char* help,
         const std::atomic<T>& v) {
  out.push_back({Cat("bridge_", name),
                 type,
                 help,
                 {{"", {}, static_cast<double>(v.load(std::memory_order_relaxed))}}});
}

MetricFamily& Family(MetricFamilies& out, const char* name, const char* type, const char* help) {
  out.push_back({Cat("bridge_", name), type, help, {}});
  return out.back();
}

void AppendNumber(std::string& out, double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9.0e15) {
    internal::AppendPiece(out, static_cast<int64_t>(v));
    return;
  }
  if (std::isnan(v)) {
    out.append("NaN");
    return;
  }
  if (std::isinf(v)) {
    out.append(v > 0 ? "+Inf" : "-Inf");
    return;
  }
  char buf[32];
  int n = std::snprintf(buf, sizeof(buf), "%.9g", v);
  out.append(buf, n > 0 ? static_cast<size_t>(n) : 0);
}

// Label values: backslash, quote and newline escaped (the text format's rule).
void AppendLabelValue(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
}

void AppendSeries(std::string& out, const MetricFamily& f, const MetricSample& s) {
  out += f.name;
  out += s.suffix;
  if (!s.labels.empty()) {
    out.push_back('{');
    for (size_t i = 0; i < s.labels.size(); ++i) {
      if (i != 0) out.push_back(',');
      out += s.labels[i].first;
      out += "=\"";
      AppendLabelValue(out, s.labels[i].second);
      out.push_back('"');
    }
    out.push_back('}');
  }
}

constexpr std::string_view kGrpcCodeNames[kGrpcCodes] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

}  // namespace

std::string RenderPrometheus(const MetricFamilies& families) {
  std::string out;
  out.reserve(families.size() * 160);
  for (const MetricFamily& f : families) {
    out += Cat("# HELP ", f.name, " ", f.help, "\n# TYPE ", f.name, " ", f.type, "\n");
    for (const MetricSample& s : f.samples) {
      AppendSeries(out, f, s);
      out.push_back(' ');
      AppendNumber(out, s.value);
      out.push_back('\n');
    }
  }
  return out;
}

std::map<std::string, double> Snapshot(const MetricFamilies& families) {
  std::map<std::string, double> out;
  for (const MetricFamily& f : families) {
    for (const MetricSample& s : f.samples) {
      std::string key;
      AppendSeries(key, f, s);
      out[key] = s.value;
    }
  }
  return out;
}

std::string_view AuthFailureName(AuthFailure f) {
  switch (f) {
    case AuthFailure::kMissing:
      return "missing";
    case AuthFailure::kMalformed:
      return "malformed";
    case AuthFailure::kExpired:
      return "expired";
    case AuthFailure::kInvalid:
      return "invalid";
    case AuthFailure::kUnknownKey:
      return "unknown_key";
    case AuthFailure::kTimeout:
      return "timeout";
    case AuthFailure::kForbidden:
      return "forbidden";
    case AuthFailure::kNotOwner:
      return "not_owner";
    case AuthFailure::kNamespaceReads:
      return "namespace_reads";
    case AuthFailure::kCount:
      break;
  }
  return "other";
}

AuthFailure ClassifyAuthFailure(std::string_view message) {
  if (message == "token expired") return AuthFailure::kExpired;
  if (message == "malformed token" || message == "token too large") return AuthFailure::kMalformed;
  return AuthFailure::kInvalid;
}

std::string_view LimitName(Limit l) {
  switch (l) {
    case Limit::kMaxConnections:
      return "max_connections";
    case Limit::kPerIpConnections:
      return "max_connections_per_ip";
    case Limit::kMaxChannels:
      return "max_channels";
    case Limit::kChannelsPerConnection:
      return "max_channels_per_connection";
    case Limit::kClientMessageRate:
      return "client_message_rate";
    case Limit::kSubscribeRate:
      return "subscribe_rate";
    case Limit::kPublishRate:
      return "publish_rate";
    case Limit::kFrameSize:
      return "max_frame_bytes";
    case Limit::kQueueBytes:
      return "max_queue_bytes";
    case Limit::kBackendStreams:
      return "backend_streams";
    case Limit::kBackendQueue:
      return "subscribe_queue_messages";
    case Limit::kNamespaceMessageBytes:
      return "namespace_max_message_bytes";
    case Limit::kNamespaceMessageRate:
      return "namespace_client_message_rate";
    case Limit::kCount:
      break;
  }
  return "other";
}

std::string_view RpcMethodName(RpcMethod m) {
  switch (m) {
    case RpcMethod::kPublish:
      return "Publish";
    case RpcMethod::kPublishStream:
      return "PublishStream";
    case RpcMethod::kSubscribe:
      return "Subscribe";
    case RpcMethod::kHistory:
      return "History";
    case RpcMethod::kPresence:
      return "Presence";
    case RpcMethod::kHealthCheck:
      return "grpc.health.v1.Health/Check";
    case RpcMethod::kHealthWatch:
      return "grpc.health.v1.Health/Watch";
    case RpcMethod::kOther:
    case RpcMethod::kCount:
      break;
  }
  return "other";
}

RpcMethod RpcMethodFromPath(std::string_view path) {
  constexpr std::string_view kService = "/gathering.bridge.v1.EventService/";
  if (path.substr(0, kService.size()) == kService) {
    std::string_view m = path.substr(kService.size());
    for (size_t i = 0; i < static_cast<size_t>(RpcMethod::kHealthCheck); ++i) {
      if (m == RpcMethodName(static_cast<RpcMethod>(i))) return static_cast<RpcMethod>(i);
    }
    return RpcMethod::kOther;
  }
  if (path == "/grpc.health.v1.Health/Check") return RpcMethod::kHealthCheck;
  if (path == "/grpc.health.v1.Health/Watch") return RpcMethod::kHealthWatch;
  return RpcMethod::kOther;
}

std::string_view GrpcCodeName(size_t code) {
  return code < kGrpcCodes ? kGrpcCodeNames[code] : "UNKNOWN";
}

size_t CloseCodeCell(uint16_t code) {
  if (code >= 1000 && code <= 1015) return code - 1000;
  if (code >= 4000 && code <= 4999) return 16 + (code - 4000);
  return kCloseCodeCells - 1;
}

namespace {

std::string CloseCodeLabel(size_t cell) {
  if (cell < 16) return Cat(1000 + cell);
  if (cell < kCloseCodeCells - 1) return Cat(4000 + (cell - 16));
  return "other";
}

}  // namespace

// The labelled families. Label values with a meaning of their own (the bridge's close codes,
// OK, every cause and limit) are always present, at zero too, so a rate() over them works from
// the first scrape; the rest appear once counted.
void AddLabelled(MetricFamilies& o, const Metrics& m);

void Metrics::Collect(MetricFamilies& o) const {
  Add(o, "connections_current", "gauge", "Open WebSocket connections.", connections_current);
  Add(o, "connections_total", "counter", "WebSocket connections accepted.", connections_total);
  Add(o, "connections_rejected_total", "counter", "Connections refused 503 over --max_connections.",
      connections_rejected_total);
  Add(o, "subscriptions_current", "gauge", "Channel subscriptions of open connections.",
      subscriptions_current);
  Add(o, "events_published_total", "counter", "Events accepted from backends.",
      events_published_total);
  Add(o, "publish_rejected_total", "counter", "Publishes refused (bad channel, payload...).",
      publish_rejected_total);
  Add(o, "client_messages_total", "counter", "Client frames accepted as messages.",
      client_messages_total);
  Add(o, "client_errors_total", "counter", "Client frames answered with an error frame.",
      client_errors_total);
  Add(o, "frames_sent_total", "counter", "WebSocket frames written.", frames_sent_total);
  Add(o, "bytes_sent_total", "counter", "WebSocket payload bytes written.", bytes_sent_total);
  Add(o, "frames_dropped_total", "counter", "Frames discarded from closing sessions' queues.",
      frames_dropped_total);
  Add(o, "slow_consumer_closes_total", "counter",
      "Connections closed 4008 for a full write queue (events or control frames).",
      slow_consumer_closes_total);
  Add(o, "frame_too_big_total", "counter", "Connections closed 1009 for an oversized frame.",
      frame_too_big_total);
  Add(o, "idle_timeouts_total", "counter", "Connections closed for silence.", idle_timeouts_total);
  Add(o, "http_requests_total", "counter", "HTTP requests (including upgrades).",
      http_requests_total);
  Add(o, "http_errors_total", "counter", "HTTP requests answered 4xx/5xx.", http_errors_total);
  Add(o, "backend_streams_current", "gauge", "Open Subscribe streams.", backend_streams_current);
  Add(o, "backend_messages_total", "counter", "Client messages queued to backend streams.",
      backend_messages_total);
  Add(o, "backend_dropped_total", "counter", "Client messages dropped for a slow backend.",
      backend_dropped_total);
  Add(o, "queued_bytes_current", "gauge", "Bytes waiting in session write queues.",
      queued_bytes_current);
  Add(o, "auth_failures_total", "counter", "Refused tokens (4001 / UNAUTHENTICATED).",
      auth_failures_total);
  Add(o, "auth_forbidden_total", "counter", "Channels outside grants (4003 / PERMISSION_DENIED).",
      auth_forbidden_total);
  Add(o, "rate_limited_total", "counter", "Client messages and publishes over their rate.",
      rate_limited_total);
  Add(o, "origin_rejected_total", "counter", "Upgrades refused 403 for their Origin.",
      origin_rejected_total);
  Add(o, "tls_handshake_failures_total", "counter",
      "Client TLS handshakes that failed (plain HTTP, bad certificate) or timed out.",
      tls_handshake_failures_total);
  Add(o, "per_ip_rejected_total", "counter", "Connections refused 429 over the per-address limit.",
      per_ip_rejected_total);
  Add(o, "channels_current", "gauge", "Channels with state (offsets, history, presence).",
      channels_current);
  Add(o, "channels_refused_total", "counter", "New channels refused at the channel limit.",
      channels_refused_total);
  Add(o, "channels_evicted_total", "counter",
      "Channels freed with no subscribers and no history left.", channels_evicted_total);
  Add(o, "history_bytes_current", "gauge", "Bytes of frames retained in channel histories.",
      history_bytes_current);
  Add(o, "backend_streams_refused_total", "counter",
      "Subscribe calls refused RESOURCE_EXHAUSTED over the stream limits.",
      backend_streams_refused_total);
  Add(o, "protocol_errors_total", "counter",
      "WebSocket connections closed 1002 (protocol error) or 1007 (invalid UTF-8).",
      protocol_errors_total);
  Add(o, "http_connections_current", "gauge",
      "Connections not upgraded to WebSocket (requests, keep-alive, handshakes in progress).",
      http_connections_current);
  Add(o, "http_connections_rejected_total", "counter",
      "Connections refused at accept over --max_connections or the per-address limit.",
      http_connections_rejected_total);
  Add(o, "identity_rejected_total", "counter",
      "Upgrades refused 400 for a ?client= identity that is not valid UTF-8 or too long.",
      identity_rejected_total);
  Add(o, "rate_limited_closes_total", "counter",
      "Connections closed 4008 because a burst of rate-limit refusals went on.",
      rate_limited_closes_total);
  Add(o, "publish_type_rejected_total", "counter",
      "Publishes refused for a type their channel's namespace does not carry (typed channels).",
      publish_type_rejected_total);
  AddLabelled(o, *this);
}

std::string Metrics::RenderPrometheus() const {
  MetricFamilies f;
  Collect(f);
  return core::RenderPrometheus(f);
}

}  // namespace bridge::core

namespace bridge::core {

void AddLabelled(MetricFamilies& o, const Metrics& m) {
  auto load = [](const Metrics::Counter& c) {
    return static_cast<double>(c.load(std::memory_order_relaxed));
  };
  Add(o, "frames_received_total", "counter", "WebSocket messages received from clients.",
      m.frames_received_total);
  Add(o, "bytes_received_total", "counter", "Bytes read from WebSocket connections.",
      m.bytes_received_total);
  {
    MetricFamily& f = Family(o, "connections_closed_total", "counter",
                             "WebSocket connections ended, by close code (1006: no close "
                             "handshake, the socket was cut or reset).");
    std::array<bool, kCloseCodeCells> always{};
    for (const CloseCodeInfo& c : CloseCodes()) always[CloseCodeCell(CloseValue(c.code))] = true;
    always[CloseCodeCell(1006)] = true;
    for (size_t i = 0; i < kCloseCodeCells; ++i) {
      double v = load(m.connections_closed[i]);
      if (v != 0 || always[i]) f.samples.push_back({"", {{"code", CloseCodeLabel(i)}}, v});
    }
  }
  {
    MetricFamily& f = Family(o, "publishes_total", "counter",
                             "Backend publishes (Publish and each PublishStream message), by "
                             "gRPC status code.");
    for (size_t i = 0; i < kGrpcCodes; ++i) {
      double v = load(m.publishes[i]);
      if (v != 0 || i == 0) f.samples.push_back({"", {{"code", std::string(GrpcCodeName(i))}}, v});
    }
  }
  {
    MetricFamily& f =
        Family(o, "grpc_calls_total", "counter", "Finished gRPC calls, by method and status code.");
    for (size_t mi = 0; mi < static_cast<size_t>(RpcMethod::kCount); ++mi) {
      for (size_t i = 0; i < kGrpcCodes; ++i) {
        double v = load(m.rpc_calls[mi][i]);
        bool always = i == 0 && static_cast<RpcMethod>(mi) < RpcMethod::kOther;
        if (v == 0 && !always) continue;
        f.samples.push_back({"",
                             {{"method", std::string(RpcMethodName(static_cast<RpcMethod>(mi)))},
                              {"code", std::string(GrpcCodeName(i))}},
                             v});
      }
    }
  }
  {
    MetricFamily& f = Family(o, "auth_refusals_total", "counter",
                             "Refused authentications and authorisations (WebSocket and gRPC), "
                             "by reason.");
    for (size_t i = 0; i < static_cast<size_t>(AuthFailure::kCount); ++i) {
      f.samples.push_back({"",
                           {{"reason", std::string(AuthFailureName(static_cast<AuthFailure>(i)))}},
                           load(m.auth_failures[i])});
    }
  }
  {
    MetricFamily& f = Family(o, "limit_hits_total", "counter",
                             "Times a configured limit refused or cut something, by limit.");
    for (size_t i = 0; i < static_cast<size_t>(Limit::kCount); ++i) {
      f.samples.push_back(
          {"", {{"limit", std::string(LimitName(static_cast<Limit>(i)))}}, load(m.limit_hits[i])});
    }
  }
}

}  // namespace bridge::core
