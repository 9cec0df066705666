// Process-wide counters and gauges, rendered in the Prometheus text format at /metrics.
//
// Every field is a relaxed atomic: any thread may update or read it. Counters only grow;
// gauges (`_current`) go up and down.
#ifndef BRIDGE_CORE_METRICS_H_
#define BRIDGE_CORE_METRICS_H_

#include <atomic>
#include <cstdint>
#include <string>

namespace bridge::core {

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
  Counter identity_rejected_total{0};
  Counter rate_limited_closes_total{0};  // connections closed 4008 for a burst of refusals //
                                         // upgrades refused 400 for a bad ?client= identity
  // Publishes refused because their channel's namespace does not carry their type (typed
  // channels); also counted in publish_rejected_total.
  Counter publish_type_rejected_total{0};

  std::string RenderPrometheus() const;
};

}  // namespace bridge::core

#endif  // BRIDGE_CORE_METRICS_H_
