#include "rpc/call_metrics.h"

namespace bridge::rpc {
namespace {

namespace gx = grpc::experimental;

class CallMetrics : public gx::Interceptor {
 public:
  CallMetrics(core::Metrics& metrics, core::RpcMethod method)
      : metrics_(metrics), method_(method) {}

  void Intercept(gx::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(gx::InterceptionHookPoints::PRE_SEND_STATUS)) {
      metrics_.CountRpc(method_, methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  core::Metrics& metrics_;
  const core::RpcMethod method_;
};

class CallMetricsFactory : public gx::ServerInterceptorFactoryInterface {
 public:
  explicit CallMetricsFactory(core::Metrics& metrics) : metrics_(metrics) {}
  gx::Interceptor* CreateServerInterceptor(gx::ServerRpcInfo* info) override {
    const char* method = info->method();
    return new CallMetrics(metrics_, core::RpcMethodFromPath(method != nullptr ? method : ""));
  }

 private:
  core::Metrics& metrics_;
};

}  // namespace

std::unique_ptr<gx::ServerInterceptorFactoryInterface> MakeCallMetricsFactory(
    core::Metrics& metrics) {
  return std::make_unique<CallMetricsFactory>(metrics);
}

}  // namespace bridge::rpc
