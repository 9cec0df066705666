#include "admin/counters.h"

namespace bridge::admin {

CounterSnapshot ReadCounters(const core::Metrics& m) {
  constexpr auto r = std::memory_order_relaxed;
  CounterSnapshot s;
  s.connections = m.connections_current.load(r);
  s.http_connections = m.http_connections_current.load(r);
  s.subscriptions = m.subscriptions_current.load(r);
  s.channels = m.channels_current.load(r);
  s.backend_streams = m.backend_streams_current.load(r);
  s.queued_bytes = m.queued_bytes_current.load(r);
  s.connections_opened = m.connections_total.load(r);
  s.published = m.events_published_total.load(r);
  s.client_messages = m.client_messages_total.load(r);
  s.frames_sent = m.frames_sent_total.load(r);
  s.bytes_sent = m.bytes_sent_total.load(r);
  s.slow_consumer_closes = m.slow_consumer_closes_total.load(r);
  s.auth_failures = m.auth_failures_total.load(r);
  s.rate_limited = m.rate_limited_total.load(r);
  s.publish_rejected = m.publish_rejected_total.load(r);
  return s;
}

}  // namespace bridge::admin
