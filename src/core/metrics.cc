#include "core/metrics.h"

#include "core/strings.h"

namespace bridge::core {
namespace {

template <typename T>
void Add(std::string& out, const char* name, const char* type, const char* help,
         const std::atomic<T>& v) {
  out += Cat("# HELP bridge_", name, " ", help, "\n# TYPE bridge_", name, " ", type, "\nbridge_",
             name, " ", v.load(std::memory_order_relaxed), "\n");
}

}  // namespace

std::string Metrics::RenderPrometheus() const {
  std::string o;
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
  return o;
}

}  // namespace bridge::core
