// The /healthz and /readyz answers, as the public listener gives them (ws/http_session.cc):
// /healthz is 200 unless the bridge is draining; /readyz is 200 only when it can serve (not
// draining, broker up). The body tells the status and, in broker mode, the broker's state.
// Any thread.
#ifndef BRIDGE_ADMIN_HEALTH_H_
#define BRIDGE_ADMIN_HEALTH_H_

#include <string>

#include "core/hub.h"

namespace bridge::admin {

struct Health {
  bool alive = false;  // /healthz's 200
  bool ready = false;  // /readyz's 200
  std::string status;  // "ok", "degraded" (broker down) or "draining"
  std::string body;    // the JSON both endpoints answer, with a trailing newline
};

Health CheckHealth(const core::Hub& hub, bool draining);

}  // namespace bridge::admin

#endif  // BRIDGE_ADMIN_HEALTH_H_
