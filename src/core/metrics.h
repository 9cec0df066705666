// Process-wide counters and gauges, rendered in the Prometheus text format at /metrics.
//
// Every field is a relaxed atomic: any thread may update or read it. Counters only grow;
// gauges (`_current`) go up and down. Labelled families have a fixed, small set of label values
// (close codes, gRPC codes and methods, causes, limits; namespaces in core::Hub), held in arrays
// indexed by the value: never a channel name or an identity, so the number of series is bounded
// whatever clients do.
//
// Rendering goes through MetricFamilies: every part of the bridge (this struct, the hub's
// per-namespace and broker families) appends its families, and RenderPrometheus prints them
// with their HELP and TYPE lines. The same families feed the admin dashboard (Snapshot).
#ifndef BRIDGE_CORE_METRICS_H_
#define BRIDGE_CORE_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bridge::core {

// One value of a family: `name + suffix{labels} value`.
struct MetricSample {
  std::string suffix;  // "", or "_bucket", "_sum", "_count" for histograms
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
};
struct MetricFamily {
  std::string name;  // "bridge_connections_current"
  std::string type;  // "counter", "gauge" or "histogram"
  std::string help;
  std::vector<MetricSample> samples;
};
using MetricFamilies = std::vector<MetricFamily>;

// The Prometheus text exposition format (version 0.0.4) of `families`, label values escaped.
std::string RenderPrometheus(const MetricFamilies& families);

// Why an authentication or authorisation was refused (the `reason` label).
enum class AuthFailure : uint8_t {
  kMissing,     // no token / no authorization metadata
  kMalformed,   // not a token (bad header form, not a JWT, too large)
  kExpired,     // a token past its expiry (or a session whose token expired)
  kInvalid,     // any other verification failure: signature, issuer, audience, key id...
  kUnknownKey,  // gRPC: neither a valid token nor a known API key
  kTimeout,     // WebSocket: no auth frame within --auth_timeout
  kForbidden,   // a channel outside the grants (4003 / PERMISSION_DENIED)
  // Authorisation refusals by a namespace's own requirements (error frame `forbidden`):
  kNotOwner,        // a personal channel of another identity (Namespace.personal_channels)
  kNamespaceReads,  // a history/presence frame the namespace does not allow (client_history…)
  kCount,
};
std::string_view AuthFailureName(AuthFailure f);
// The cause of a verifier's UNAUTHENTICATED status, from its message.
AuthFailure ClassifyAuthFailure(std::string_view message);

// A configured bound a client or backend ran into (the `limit` label).
enum class Limit : uint8_t {
  kMaxConnections,         // --max_connections (503 / refused at accept)
  kPerIpConnections,       // --max_connections_per_ip (429)
  kMaxChannels,            // --max_channels (new channels refused)
  kChannelsPerConnection,  // --max_channels_per_connection (error frame)
  kClientMessageRate,      // --client_message_rate (error frame, then 4008)
  kSubscribeRate,          // --subscribe_rate (error frame, then 4008)
  kPublishRate,            // --publish_rate_per_key (RESOURCE_EXHAUSTED)
  kFrameSize,              // --max_frame_bytes (1009)
  kQueueBytes,             // --max_queue_bytes / control allowance (slow consumer, 4008)
  kBackendStreams,         // Subscribe stream limits (RESOURCE_EXHAUSTED)
  kBackendQueue,           // --subscribe_queue_messages (message dropped)
  kNamespaceMessageBytes,  // a namespace's max_message_bytes (error frame)
  kNamespaceMessageRate,   // a namespace's client_message_rate (error frame, then 4008)
  kCount,
};
std::string_view LimitName(Limit l);

// The gRPC methods counted by `method` label; everything else (reflection, unknown) is kOther.
enum class RpcMethod : uint8_t {
  kPublish,
  kPublishStream,
  kSubscribe,
  kHistory,
  kPresence,
  kHealthCheck,
  kHealthWatch,
  kOther,
  kCount,
};
std::string_view RpcMethodName(RpcMethod m);
// From the full method path ("/gathering.bridge.v1.EventService/Publish").
RpcMethod RpcMethodFromPath(std::string_view path);
// gRPC status codes are 0..16 (absl::StatusCode has the same numbering).
inline constexpr size_t kGrpcCodes = 17;
std::string_view GrpcCodeName(size_t code);

// WebSocket close codes counted by `code` label: 1000-1015 and 4000-4999 each have a cell,
// anything else counts as "other".
inline constexpr size_t kCloseCodeCells = 16 + 1000 + 1;  // 1000-1015, 4000-4999, other
size_t CloseCodeCell(uint16_t code);

struct Metrics {
  using Counter = std::atomic<uint64_t>;
  using Gauge = std::atomic<int64_t>;

  Gauge connections_current{0};
  Counter connections_total{0};
  Counter connections_rejected_total{0};  // over --max_connections
  Gauge subscriptions_current{0};
  Counter events_published_total{0};  // from backends (gRPC)
  Counter publish_rejected_total{0};  // INVALID_ARGUMENT and friends
  Counter client_messages_total{0};   // client frames accepted as messages
  Counter client_errors_total{0};     // client frames answered with an error frame
  Counter frames_sent_total{0};
  Counter bytes_sent_total{0};
  Counter frames_dropped_total{0};        // discarded from queues of closing sessions
  Counter slow_consumer_closes_total{0};  // closed with 4008 for a full write queue
  Counter frame_too_big_total{0};         // closed with 1009
  Counter idle_timeouts_total{0};
  Counter http_requests_total{0};
  Counter http_errors_total{0};  // 4xx/5xx answers
  Gauge backend_streams_current{0};
  Counter backend_messages_total{0};
  Counter backend_dropped_total{0};  // a backend Subscribe stream's queue was full
  Gauge queued_bytes_current{0};     // bytes waiting in every session's write queue
  Counter auth_failures_total{0};    // bad, expired or missing tokens (4001, UNAUTHENTICATED)
  Counter auth_forbidden_total{0};   // channels outside the grants (4003, PERMISSION_DENIED)
  Counter rate_limited_total{0};     // client messages or publishes over their rate
  Counter origin_rejected_total{0};  // upgrades refused 403 for their Origin
  Counter tls_handshake_failures_total{0};  // client TLS handshakes that failed or timed out
  Counter per_ip_rejected_total{0};         // upgrades refused 429 over the per-address limit
  Gauge channels_current{0};                // channels the hub keeps state for
  Counter channels_refused_total{0};        // new channels refused at the channel limit
  // Bounds on what clients and backends make the hub and the gRPC service hold.
  Counter channels_evicted_total{0};         // idle channels whose state was freed
  Gauge history_bytes_current{0};            // bytes of frames retained in channel histories
  Counter backend_streams_refused_total{0};  // Subscribe calls over the stream limits
  // The WebSocket edge (ws/).
  Counter protocol_errors_total{0};   // closed 1002 (RFC 6455 violations) or 1007 (bad UTF-8)
  Gauge http_connections_current{0};  // TCP connections not (yet) upgraded, keep-alive included
  Counter http_connections_rejected_total{0};  // refused over --max_connections or per address
  Counter identity_rejected_total{0};          // upgrades refused 400 for a bad ?client= identity
  Counter rate_limited_closes_total{0};        // connections closed 4008 for a burst of refusals
  // Publishes refused because their channel's namespace does not carry their type (typed
  // channels); also counted in publish_rejected_total.
  Counter publish_type_rejected_total{0};

  // Labelled families.
  Counter frames_received_total{0};  // client WebSocket messages (text, binary; not control)
  Counter bytes_received_total{0};   // bytes read from WebSocket sockets
  std::array<Counter, kCloseCodeCells> connections_closed{};  // by CloseCodeCell
  std::array<Counter, kGrpcCodes> publishes{};                // events published, by gRPC code
  std::array<std::array<Counter, kGrpcCodes>, static_cast<size_t>(RpcMethod::kCount)>
      rpc_calls{};  // finished gRPC calls, by method and code
  std::array<Counter, static_cast<size_t>(AuthFailure::kCount)> auth_failures{};
  std::array<Counter, static_cast<size_t>(Limit::kCount)> limit_hits{};

  void CountClose(uint16_t code) {
    connections_closed[CloseCodeCell(code)].fetch_add(1, std::memory_order_relaxed);
  }
  void CountPublish(int grpc_code) {
    if (grpc_code >= 0 && static_cast<size_t>(grpc_code) < kGrpcCodes) {
      publishes[grpc_code].fetch_add(1, std::memory_order_relaxed);
    }
  }
  void CountRpc(RpcMethod m, int grpc_code) {
    if (grpc_code >= 0 && static_cast<size_t>(grpc_code) < kGrpcCodes) {
      rpc_calls[static_cast<size_t>(m)][grpc_code].fetch_add(1, std::memory_order_relaxed);
    }
  }
  // Counts the cause; the authorisation refusals (kForbidden, kNotOwner, kNamespaceReads) also
  // count auth_forbidden_total, the others auth_failures_total.
  void CountAuthFailure(AuthFailure f) {
    auth_failures[static_cast<size_t>(f)].fetch_add(1, std::memory_order_relaxed);
    const bool forbidden = f == AuthFailure::kForbidden || f == AuthFailure::kNotOwner ||
                           f == AuthFailure::kNamespaceReads;
    (forbidden ? auth_forbidden_total : auth_failures_total)
        .fetch_add(1, std::memory_order_relaxed);
  }
  void CountLimit(Limit l) {
    limit_hits[static_cast<size_t>(l)].fetch_add(1, std::memory_order_relaxed);
  }

  // Appends this struct's families (everything but the per-namespace and broker ones, which
  // core::Hub adds).
  void Collect(MetricFamilies& out) const;
  // Collect() rendered: the families of this struct only.
  std::string RenderPrometheus() const;
};

// Every sample of `families` keyed `name{label="value",...}` (suffix included, labels in
// their order), for dashboards and tests that sample values rather than parse text.
std::map<std::string, double> Snapshot(const MetricFamilies& families);

}  // namespace bridge::core

#endif  // BRIDGE_CORE_METRICS_H_
