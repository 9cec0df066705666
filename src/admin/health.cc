#include "admin/health.h"

#include "core/frame.h"
#include "core/strings.h"

namespace bridge::admin {

Health CheckHealth(const core::Hub& hub, bool draining) {
  const core::BrokerHealth broker = hub.broker_health();
  Health h;
  h.alive = !draining;
  h.ready = !draining && broker.ok();
  h.status = draining ? "draining" : (h.ready ? "ok" : "degraded");
  h.body = core::Cat(R"({"status":")", h.status, R"(")");
  if (hub.clustered()) {
    h.body += core::Cat(R"(,"node":)", core::JsonQuote(hub.node_id()), R"(,"broker":{"publish":)",
                        broker.publish_up ? "true" : "false", R"(,"pubsub":)",
                        broker.pubsub_up ? "true" : "false");
    if (!broker.detail.empty())
      h.body += core::Cat(R"(,"detail":)", core::JsonQuote(broker.detail));
    h.body += "}";
  }
  h.body += "}\n";
  return h;
}

}  // namespace bridge::admin
