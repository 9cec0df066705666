// The gRPC EventService (proto/gathering/bridge/v1/events.proto) on the callback API.
//
// Reactions never block: Publish hands the event to the hub (a lock held for a string
// concatenation and a few posts) and answers; Subscribe streams drain a bounded queue that client
// frames are pushed into from io threads. Shared by gRPC's threads; owned by the app, which
// shuts the gRPC server down before destroying it.
#ifndef BRIDGE_RPC_EVENT_SERVICE_H_
#define BRIDGE_RPC_EVENT_SERVICE_H_

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "auth/api_keys.h"
#include "auth/principal.h"
#include "auth/verifier.h"
#include "core/hub.h"
#include "core/token_bucket.h"
#include "gathering/bridge/v1/events.grpc.pb.h"

namespace bridge::rpc {

// Backend authentication: `authorization: Bearer <token>` metadata holding a JWT (verified by
// `verifier`, grants from its `publish` and `channels` claims) or a static API key. Both null:
// auth is off and every call is allowed.
struct RpcAuth {
  std::shared_ptr<const auth::TokenVerifier> verifier;
  std::shared_ptr<const auth::ApiKeys> api_keys;
  bool enabled() const { return verifier != nullptr || api_keys != nullptr; }
};

struct RpcOptions {
  size_t subscribe_queue_messages = 1024;  // per Subscribe stream; over it messages are dropped
  double publish_rate_per_key = 50000;     // events per second per backend identity (0: no limit)
  double publish_burst_per_key = 100000;
  RpcAuth auth;
};

class EventService final : public gathering::bridge::v1::EventService::CallbackService {
 public:
  EventService(core::Hub& hub, RpcOptions options);
  ~EventService() override;

  // Any thread. Refuses new calls with UNAVAILABLE and finishes open Subscribe streams (OK).
  void BeginShutdown();

  grpc::ServerUnaryReactor* Publish(grpc::CallbackServerContext* ctx,
                                    const gathering::bridge::v1::PublishRequest* request,
                                    gathering::bridge::v1::PublishResponse* response) override;
  grpc::ServerReadReactor<gathering::bridge::v1::PublishRequest>* PublishStream(
      grpc::CallbackServerContext* ctx,
      gathering::bridge::v1::PublishStreamResponse* response) override;
  grpc::ServerWriteReactor<gathering::bridge::v1::ClientMessage>* Subscribe(
      grpc::CallbackServerContext* ctx,
      const gathering::bridge::v1::SubscribeRequest* request) override;

  grpc::ServerUnaryReactor* History(grpc::CallbackServerContext* ctx,
                                    const gathering::bridge::v1::HistoryRequest* request,
                                    gathering::bridge::v1::HistoryResponse* response) override;
  grpc::ServerUnaryReactor* Presence(grpc::CallbackServerContext* ctx,
                                     const gathering::bridge::v1::PresenceRequest* request,
                                     gathering::bridge::v1::PresenceResponse* response) override;

  // Any thread. Validates and publishes one request; the status the unary call would return.
  // `principal` null: auth is off.
  grpc::Status PublishOne(const gathering::bridge::v1::PublishRequest& request,
                          const auth::Principal* principal,
                          gathering::bridge::v1::PublishResponse* response);

  // INVALID_ARGUMENT for a bad channel, UNAUTHENTICATED, or PERMISSION_DENIED unless the caller
  // may read `channel`.
  grpc::Status CheckRead(const grpc::CallbackServerContext* ctx, const std::string& channel);

  // The caller's principal from its metadata: nullopt when auth is off, UNAUTHENTICATED when
  // the credentials are missing or bad.
  absl::StatusOr<std::optional<auth::Principal>> Authenticate(
      const grpc::CallbackServerContext* ctx);

 private:
  class SubscribeReactor;
  friend class SubscribeReactor;

  core::Hub& hub_;
  const RpcOptions options_;
  std::atomic<bool> shutting_down_{false};
  std::mutex streams_mu_;
  std::vector<std::weak_ptr<core::ClientMessageSink>> streams_;
  std::mutex buckets_mu_;
  std::unordered_map<std::string, core::TokenBucket> buckets_;  // per backend identity
};

}  // namespace bridge::rpc

#endif  // BRIDGE_RPC_EVENT_SERVICE_H_
