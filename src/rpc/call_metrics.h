// Counts every finished gRPC call by method and status code (bridge_grpc_calls_total): a server
// interceptor, so every service (EventService, health, reflection) is counted in one place and
// no handler can forget to. Method names map onto the fixed core::RpcMethod set, so a client
// calling made-up methods cannot add series.
#ifndef BRIDGE_RPC_CALL_METRICS_H_
#define BRIDGE_RPC_CALL_METRICS_H_

#include <grpcpp/support/server_interceptor.h>

#include <memory>

#include "core/metrics.h"

namespace bridge::rpc {

// `metrics` outlives the server the factory is given to.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeCallMetricsFactory(
    core::Metrics& metrics);

}  // namespace bridge::rpc

#endif  // BRIDGE_RPC_CALL_METRICS_H_
