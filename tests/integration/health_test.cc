// The gRPC health service (grpc.health.v1) through a real health client: NOT_SERVING until the
// bridge is ready (its broker connected), SERVING then, NOT_SERVING while it drains.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <thread>

#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "redis_server.h"
#include "test_support.h"

namespace bridge::testing {
namespace {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

std::unique_ptr<Health::Stub> HealthStub(uint16_t port) {
  return Health::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
}

// The status of `service`, or -1 when the call failed.
int Check(Health::Stub& stub, const std::string& service) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  HealthCheckRequest req;
  req.set_service(service);
  HealthCheckResponse res;
  if (!stub.Check(&ctx, req, &res).ok()) return -1;
  return res.status();
}

TEST(HealthTest, ServingWhenReadyAndNotServingWhileDraining) {
  auto server = StartBridge();
  ASSERT_NE(server, nullptr);
  auto stub = HealthStub(server->grpc_port());
  EXPECT_EQ(Check(*stub, ""), HealthCheckResponse::SERVING);
  EXPECT_EQ(Check(*stub, "gathering.bridge.v1.EventService"), HealthCheckResponse::SERVING);
  {
    grpc::ClientContext ctx;
    HealthCheckRequest req;
    HealthCheckResponse res;
    req.set_service("no.such.Service");
    EXPECT_EQ(stub->Check(&ctx, req, &res).error_code(), grpc::StatusCode::NOT_FOUND);
  }

  // A Watch sees the drain begin, before the server stops answering.
  grpc::ClientContext watch_ctx;
  watch_ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  HealthCheckRequest req;
  auto watch = stub->Watch(&watch_ctx, req);
  HealthCheckResponse res;
  ASSERT_TRUE(watch->Read(&res));
  EXPECT_EQ(res.status(), HealthCheckResponse::SERVING);
  std::thread stopper([&] { server->Shutdown(); });
  bool not_serving = false;
  while (watch->Read(&res)) {
    if (res.status() == HealthCheckResponse::NOT_SERVING) {
      not_serving = true;
      break;
    }
  }
  EXPECT_TRUE(not_serving) << "the Watch stream never said NOT_SERVING";
  watch_ctx.TryCancel();
  watch->Finish();
  stopper.join();
  EXPECT_GE(
      server->metrics().rpc_calls[static_cast<size_t>(core::RpcMethod::kHealthCheck)][0].load(),
      2u);
}

TEST(HealthTest, NotServingUntilTheBrokerIsConnected) {
  broker::testing::RedisServer redis;
  absl::Status started = redis.Start();
  if (absl::IsFailedPrecondition(started)) GTEST_SKIP() << started.message();
  ASSERT_TRUE(started.ok()) << started.message();
  redis.Kill9();  // the port is known and nothing listens on it

  app::ServerConfig config;
  config.broker = redis.Url();
  auto server = StartBridge(config);
  ASSERT_NE(server, nullptr) << "the bridge starts while its broker is down";
  auto stub = HealthStub(server->grpc_port());
  EXPECT_EQ(Check(*stub, ""), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Check(*stub, "gathering.bridge.v1.EventService"), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(HttpStatus(server->ws_port(), "/readyz"), 503);
  EXPECT_EQ(HttpStatus(server->ws_port(), "/healthz"), 200);

  ASSERT_TRUE(redis.Restart().ok());
  EXPECT_TRUE(WaitFor([&] { return Check(*stub, "") == HealthCheckResponse::SERVING; }, 15s))
      << "still not serving once Redis is back";
  EXPECT_EQ(HttpStatus(server->ws_port(), "/readyz"), 200);

  redis.Kill9();
  EXPECT_TRUE(WaitFor([&] { return Check(*stub, "") == HealthCheckResponse::NOT_SERVING; }, 15s))
      << "still serving with Redis gone";
  server->Shutdown();
}

}  // namespace
}  // namespace bridge::testing
