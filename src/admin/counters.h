// The counters the admin dashboard charts, read in one place from core::Metrics (and the hub).
//
// The dashboard reads counters only through ReadCounters, so a change in how Metrics stores
// them (labelled families, say) is absorbed here. Any thread: every field is a relaxed read.
#ifndef BRIDGE_ADMIN_COUNTERS_H_
#define BRIDGE_ADMIN_COUNTERS_H_

#include <cstdint>

#include "core/hub.h"
#include "core/metrics.h"

namespace bridge::admin {

struct CounterSnapshot {
  // Gauges.
  int64_t connections = 0;       // open WebSockets
  int64_t http_connections = 0;  // connections not upgraded (requests, keep-alive)
  int64_t subscriptions = 0;
  int64_t channels = 0;  // channels the hub keeps state for
  int64_t backend_streams = 0;
  int64_t queued_bytes = 0;
  // Counters (since start-up).
  uint64_t connections_opened = 0;
  uint64_t published = 0;        // events from backends
  uint64_t client_messages = 0;  // client frames accepted as messages
  uint64_t frames_sent = 0;
  uint64_t bytes_sent = 0;
  uint64_t slow_consumer_closes = 0;
  uint64_t auth_failures = 0;
  uint64_t rate_limited = 0;
  uint64_t publish_rejected = 0;
};

CounterSnapshot ReadCounters(const core::Metrics& m);

}  // namespace bridge::admin

#endif  // BRIDGE_ADMIN_COUNTERS_H_
