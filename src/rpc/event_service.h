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
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "auth/api_keys.h"
#include "auth/principal.h"
#include "auth/verifier.h"
#include "core/hub.h"
#include "core/token_bucket.h"
#include "core/typed_channels.h"
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
  // Identities with a publish bucket; past it the least recently publishing one is forgotten
  // (its bucket starts full again when it comes back). At least 1.
  size_t publish_bucket_keys = 100000;
  // Open Subscribe streams per identity (the token's `sub` or the API key's name; every
  // caller is one identity "" when auth is off) and in all; past either, Subscribe fails
  // RESOURCE_EXHAUSTED. 0 allows none.
  size_t max_subscribe_streams_per_identity = 64;
  size_t max_subscribe_streams = 1024;
  // Publishes one PublishStream keeps in flight; reading pauses past it. At least 1.
  size_t publish_stream_in_flight = 64;
  RpcAuth auth;
};

// The RpcOptions a reload may change (EventService::SetStreamLimits).
struct StreamLimits {
  size_t subscribe_queue_messages = 1024;
  size_t max_subscribe_streams_per_identity = 64;
  size_t max_subscribe_streams = 1024;
  size_t publish_stream_in_flight = 64;
  size_t publish_bucket_keys = 100000;
  static StreamLimits Of(const RpcOptions& o) {
    return {o.subscribe_queue_messages, o.max_subscribe_streams_per_identity,
            o.max_subscribe_streams, o.publish_stream_in_flight, o.publish_bucket_keys};
  }
};

// Per-identity publish token buckets, at most `capacity` of them, forgetting the least recently
// used one past it; every operation O(1). Not thread-safe: the owner locks.
class PublishBuckets {
 public:
  PublishBuckets(double rate, double burst, size_t capacity);
  // Takes a token from `key`'s bucket, created full if `key` has none.
  bool Take(const std::string& key);
  size_t size() const { return index_.size(); }
  // At most `capacity` buckets from now on (at least 1); past it the least recently used go at
  // once. The others keep their tokens.
  void SetCapacity(size_t capacity);
  size_t capacity() const { return capacity_; }
  // New rate and burst; every bucket starts again full (a reload is not a punishment).
  void SetRate(double rate, double burst);
  bool limited() const { return rate_ > 0; }

 private:
  struct Node {
    std::string key;
    core::TokenBucket bucket;
  };
  double rate_;
  double burst_;
  size_t capacity_;
  std::list<Node> lru_;  // most recently used first
  std::unordered_map<std::string_view, std::list<Node>::iterator> index_;  // views of Node::key
};

class EventService final : public gathering::bridge::v1::EventService::CallbackService {
 public:
  // `typed`: the typed channels publishes are checked against (none: every type passes).
  EventService(core::Hub& hub, RpcOptions options, core::TypedChannels typed = {});
  ~EventService() override;

  // Any thread. Refuses new calls with UNAVAILABLE and finishes open Subscribe streams (OK).
  void BeginShutdown();
  // Any thread (a reload): the per-identity publish rate and burst from now on; 0: no limit.
  void SetPublishRate(double rate, double burst);
  // Any thread (a reload). Streams opened from now on get the new subscribe queue and
  // PublishStream in-flight bound (an open stream keeps the ones it started with); Subscribe
  // streams are counted against the new maxima from now on: lowering one does not end open
  // streams, it refuses new ones (RESOURCE_EXHAUSTED) until the count is under it. The bucket
  // count applies at once, forgetting the least recently publishing identities past it.
  void SetStreamLimits(const StreamLimits& limits);
  StreamLimits stream_limits() const;

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

  // Any thread. Validates and publishes one request; `done` gets the status the unary call
  // returns, once the hub (and the broker) answered: inline, or on the broker's thread. It
  // fills `response` first; `request` and `response` must live until then. `principal` null:
  // auth is off.
  using PublishDone = absl::AnyInvocable<void(grpc::Status)>;
  void PublishOne(const gathering::bridge::v1::PublishRequest& request,
                  const auth::Principal* principal,
                  gathering::bridge::v1::PublishResponse* response, PublishDone done);

  // INVALID_ARGUMENT for a bad channel or an unknown namespace, then UNAUTHENTICATED, or
  // PERMISSION_DENIED unless the caller may read `channel`.
  grpc::Status CheckRead(const grpc::CallbackServerContext* ctx, const std::string& channel);

  // The caller's principal from its metadata: nullopt when auth is off, UNAUTHENTICATED when
  // the credentials are missing or bad.
  absl::StatusOr<std::optional<auth::Principal>> Authenticate(
      const grpc::CallbackServerContext* ctx);

  // As constructed: the reloadable limits are stream_limits().
  const RpcOptions& options() const { return options_; }
  // A reload of the API key file (SIGHUP): calls that authenticate after it use `keys`. Any
  // thread.
  void ReplaceApiKeys(std::shared_ptr<const auth::ApiKeys> keys);

 private:
  class SubscribeReactor;
  friend class SubscribeReactor;

  // The checks before a publish: OK when it may go to the hub.
  grpc::Status CheckPublish(const gathering::bridge::v1::PublishRequest& request,
                            const auth::Principal* principal);
  // INVALID_ARGUMENT unless `channel` is a valid name in a configured namespace.
  grpc::Status ValidateChannel(const std::string& channel) const;
  // Counts a new Subscribe stream of `identity`; RESOURCE_EXHAUSTED past the limits.
  grpc::Status AcquireStream(const std::string& identity);
  void ReleaseStream(const std::string& identity);

  core::Hub& hub_;
  const RpcOptions options_;  // the reloadable limits are the members below
  std::mutex api_keys_mu_;
  std::shared_ptr<const auth::ApiKeys> api_keys_;  // api_keys_mu_; options_.auth's at first
  const core::TypedChannels typed_;
  std::atomic<bool> shutting_down_{false};
  mutable std::mutex streams_mu_;
  std::vector<std::weak_ptr<core::ClientMessageSink>> streams_;
  size_t stream_count_ = 0;          // streams_mu_
  size_t max_streams_per_identity_;  // streams_mu_
  size_t max_streams_;               // streams_mu_
  std::atomic<size_t> subscribe_queue_messages_;
  std::atomic<size_t> publish_stream_in_flight_;
  std::unordered_map<std::string, size_t> streams_per_identity_;  // streams_mu_; no zeros
  mutable std::mutex buckets_mu_;
  PublishBuckets buckets_;  // per backend identity; buckets_mu_
  // Whether buckets_ limits at all, read without the lock (the default is to limit).
  std::atomic<bool> publish_limited_;
};

}  // namespace bridge::rpc

#endif  // BRIDGE_RPC_EVENT_SERVICE_H_
