#include "rpc/event_service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <iterator>

#include "core/channel.h"
#include "core/strings.h"

namespace bridge::rpc {

namespace pb = gathering::bridge::v1;

namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "INTERNAL";
  }
}

// A read reactor that fails the call at once (bad credentials).
class FailedReadReactor : public grpc::ServerReadReactor<pb::PublishRequest> {
 public:
  explicit FailedReadReactor(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

// True when the grant `grant` covers every channel the pattern `pattern` can match.
bool Covers(const std::string& grant, const std::string& pattern) {
  if (grant == "*" || grant == pattern) return true;
  if (grant.size() > 2 && grant.compare(grant.size() - 2, 2, "/*") == 0) {
    return pattern.compare(0, grant.size() - 1, grant, 0, grant.size() - 1) == 0 &&
           pattern.size() > grant.size() - 1;
  }
  return false;
}

bool MayRead(const auth::Principal& p, const std::string& pattern) {
  for (const auto& g : p.channels) {
    if (Covers(g, pattern)) return true;
  }
  for (const auto& g : p.publish) {
    if (Covers(g, pattern)) return true;
  }
  return false;
}

grpc::Status Unauthenticated(const absl::Status& s) {
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(s.message()));
}

// A write reactor that fails the call at once (bad request).
class FailedWriteReactor : public grpc::ServerWriteReactor<pb::ClientMessage> {
 public:
  explicit FailedWriteReactor(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

// Events of one stream are published in the order they arrive; with a broker their publishes
// are pipelined (at most RpcOptions::publish_stream_in_flight at a time: reading pauses past it)
// and the stream finishes once every one has been answered.
class PublishStreamReactor : public grpc::ServerReadReactor<pb::PublishRequest> {
 public:
  PublishStreamReactor(EventService* service, pb::PublishStreamResponse* response,
                       std::optional<auth::Principal> principal, size_t max_in_flight)
      : service_(service),
        response_(response),
        principal_(std::move(principal)),
        max_in_flight_(max_in_flight) {
    Read();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      std::unique_lock lock(mu_);
      reading_ = false;
      MaybeFinish(lock);
      return;
    }
    auto slot = std::make_unique<Slot>();
    slot->request = std::move(*request_);
    Slot* raw = slot.get();
    uint64_t index = 0;
    {
      std::lock_guard lock(mu_);
      index = index_++;
      ++in_flight_;
      slots_.push_back(std::move(slot));
    }
    service_->PublishOne(raw->request, principal_ ? &*principal_ : nullptr, &raw->response,
                         [this, raw, index](grpc::Status s) { OnPublished(raw, index, s); });
    std::unique_lock lock(mu_);
    if (in_flight_ < max_in_flight_) {
      lock.unlock();
      Read();
    } else {
      paused_ = true;
    }
  }

  void OnDone() override { delete this; }

 private:
  struct Slot {
    pb::PublishRequest request;
    pb::PublishResponse response;
  };

  void Read() {
    request_ = std::make_unique<pb::PublishRequest>();
    StartRead(request_.get());
  }

  void OnPublished(Slot* slot, uint64_t index, const grpc::Status& s) {
    std::unique_lock lock(mu_);
    if (s.ok()) {
      response_->set_accepted(response_->accepted() + 1);
    } else {
      response_->set_rejected(response_->rejected() + 1);
      if (response_->rejections_size() < 10) {
        auto* r = response_->add_rejections();
        r->set_index(index);
        r->set_code(CodeName(s.error_code()));
        r->set_message(s.error_message());
      }
    }
    std::erase_if(slots_, [slot](const std::unique_ptr<Slot>& p) { return p.get() == slot; });
    --in_flight_;
    if (paused_ && reading_) {
      paused_ = false;
      lock.unlock();
      Read();
      return;
    }
    MaybeFinish(lock);
  }

  void MaybeFinish(std::unique_lock<std::mutex>& lock) {
    if (reading_ || in_flight_ != 0 || finished_) return;
    finished_ = true;
    lock.unlock();
    Finish(grpc::Status::OK);
  }

  EventService* service_;
  pb::PublishStreamResponse* response_;
  std::unique_ptr<pb::PublishRequest> request_;
  std::optional<auth::Principal> principal_;
  const size_t max_in_flight_;  // the service's when the stream opened
  std::mutex mu_;
  std::vector<std::unique_ptr<Slot>> slots_;  // requests being published
  uint64_t index_ = 0;
  size_t in_flight_ = 0;
  bool reading_ = true;
  bool paused_ = false;
  bool finished_ = false;
};

}  // namespace

// One backend Subscribe stream. The Sink half is shared with the hub (io threads push into it);
// the reactor half belongs to gRPC and dies in OnDone, after which the sink only drops.
class EventService::SubscribeReactor : public grpc::ServerWriteReactor<pb::ClientMessage> {
 public:
  class Sink : public core::ClientMessageSink {
   public:
    Sink(SubscribeReactor* reactor, size_t max, core::Metrics& metrics)
        : reactor_(reactor), max_(max), metrics_(metrics) {}

    void OnClientMessage(const core::ClientMessagePtr& m) override {
      SubscribeReactor* start = nullptr;
      {
        std::lock_guard lock(mu_);
        if (finishing_ || reactor_ == nullptr) return;
        if (queue_.size() >= max_) {
          metrics_.backend_dropped_total.fetch_add(1, std::memory_order_relaxed);
          metrics_.CountLimit(core::Limit::kBackendQueue);
          return;
        }
        metrics_.backend_messages_total.fetch_add(1, std::memory_order_relaxed);
        queue_.push_back(m);
        if (!writing_) start = PrepareNextLocked();
      }
      if (start != nullptr) start->StartWrite(&start->current_);
    }

    // Any thread. Finishes the call once the write in flight (if any) is done.
    void Finish(grpc::Status status) {
      SubscribeReactor* finish = nullptr;
      {
        std::lock_guard lock(mu_);
        if (finishing_ || reactor_ == nullptr) return;
        finishing_ = true;
        final_status_ = std::move(status);
        if (!writing_) finish = reactor_;
      }
      if (finish != nullptr) finish->Finish(final_status_);
    }

    void OnWriteDone(bool ok) {
      SubscribeReactor* next = nullptr;
      SubscribeReactor* finish = nullptr;
      {
        std::lock_guard lock(mu_);
        writing_ = false;
        if (!ok && !finishing_) {
          finishing_ = true;
          final_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "stream broken");
        }
        if (finishing_) {
          finish = reactor_;
        } else if (!queue_.empty()) {
          next = PrepareNextLocked();
        }
      }
      if (finish != nullptr) finish->Finish(final_status_);
      if (next != nullptr) next->StartWrite(&next->current_);
    }

    void Detach() {
      std::lock_guard lock(mu_);
      reactor_ = nullptr;
      queue_.clear();
    }

   private:
    SubscribeReactor* PrepareNextLocked() {
      core::ToProto(*queue_.front(), &reactor_->current_);
      queue_.pop_front();
      writing_ = true;
      return reactor_;
    }

    std::mutex mu_;
    SubscribeReactor* reactor_;
    const size_t max_;
    core::Metrics& metrics_;
    std::deque<core::ClientMessagePtr> queue_;
    bool writing_ = false;
    bool finishing_ = false;
    grpc::Status final_status_;
  };

  // The stream was counted for `identity` (AcquireStream); OnDone releases it.
  SubscribeReactor(EventService* service, std::vector<std::string> patterns, bool lifecycle,
                   std::string identity)
      : service_(service),
        identity_(std::move(identity)),
        sink_(std::make_shared<Sink>(
            this, service->subscribe_queue_messages_.load(std::memory_order_relaxed),
            service->hub_.metrics())) {
    service_->hub_.metrics().backend_streams_current.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard lock(service_->streams_mu_);
      std::erase_if(service_->streams_, [](const auto& w) { return w.expired(); });
      service_->streams_.push_back(sink_);
    }
    service_->hub_.AddSink(std::move(patterns), sink_, lifecycle);
    if (service_->shutting_down_.load()) sink_->Finish(grpc::Status::OK);
  }

  void OnWriteDone(bool ok) override { sink_->OnWriteDone(ok); }
  void OnCancel() override {
    sink_->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }
  void OnDone() override {
    service_->hub_.RemoveSink(sink_.get());
    sink_->Detach();
    service_->hub_.metrics().backend_streams_current.fetch_sub(1, std::memory_order_relaxed);
    service_->ReleaseStream(identity_);
    delete this;
  }

 private:
  EventService* service_;
  const std::string identity_;
  std::shared_ptr<Sink> sink_;
  pb::ClientMessage current_;
};

PublishBuckets::PublishBuckets(double rate, double burst, size_t capacity)
    : rate_(rate), burst_(burst), capacity_(std::max<size_t>(capacity, 1)) {}

void PublishBuckets::SetRate(double rate, double burst) {
  rate_ = rate;
  burst_ = burst;
  index_.clear();
  lru_.clear();
}

void PublishBuckets::SetCapacity(size_t capacity) {
  capacity_ = std::max<size_t>(capacity, 1);
  while (index_.size() > capacity_) {
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
}

bool PublishBuckets::Take(const std::string& key) {
  auto it = index_.find(key);
  if (it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->bucket.Take();
  }
  if (index_.size() >= capacity_) {
    // Reuse the least recently used node for the new key.
    index_.erase(lru_.back().key);
    lru_.splice(lru_.begin(), lru_, std::prev(lru_.end()));
    lru_.front().key = key;
    lru_.front().bucket = core::TokenBucket(rate_, burst_);
  } else {
    lru_.push_front(Node{key, core::TokenBucket(rate_, burst_)});
  }
  index_.emplace(lru_.front().key, lru_.begin());
  return lru_.front().bucket.Take();
}

EventService::EventService(core::Hub& hub, RpcOptions options, core::TypedChannels typed)
    : hub_(hub),
      options_(options),
      api_keys_(options_.auth.api_keys),
      typed_(std::move(typed)),
      max_streams_per_identity_(options.max_subscribe_streams_per_identity),
      max_streams_(options.max_subscribe_streams),
      subscribe_queue_messages_(options.subscribe_queue_messages),
      publish_stream_in_flight_(options.publish_stream_in_flight),
      buckets_(options.publish_rate_per_key, options.publish_burst_per_key,
               options.publish_bucket_keys),
      publish_limited_(buckets_.limited()) {}

grpc::Status EventService::ValidateChannel(const std::string& channel) const {
  if (absl::Status s = core::ValidateChannel(channel); !s.ok()) return ToGrpc(s);
  if (hub_.namespaces().Find(core::NamespaceOf(channel)) == nullptr) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        core::Cat("unknown namespace '", core::NamespaceOf(channel), "'"));
  }
  return grpc::Status::OK;
}

grpc::Status EventService::AcquireStream(const std::string& identity) {
  std::lock_guard lock(streams_mu_);
  const char* refusal = nullptr;
  size_t limit = 0;
  auto it = streams_per_identity_.find(identity);
  size_t mine = it == streams_per_identity_.end() ? 0 : it->second;
  if (mine >= max_streams_per_identity_) {
    refusal = "too many Subscribe streams for this identity";
    limit = max_streams_per_identity_;
  } else if (stream_count_ >= max_streams_) {
    refusal = "the bridge has too many Subscribe streams";
    limit = max_streams_;
  }
  if (refusal != nullptr) {
    hub_.metrics().backend_streams_refused_total.fetch_add(1, std::memory_order_relaxed);
    hub_.metrics().CountLimit(core::Limit::kBackendStreams);
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        core::Cat(refusal, " (at most ", limit, "); close one first"));
  }
  ++stream_count_;
  ++streams_per_identity_[identity];
  return grpc::Status::OK;
}

void EventService::ReleaseStream(const std::string& identity) {
  std::lock_guard lock(streams_mu_);
  --stream_count_;
  auto it = streams_per_identity_.find(identity);
  if (it != streams_per_identity_.end() && --it->second == 0) streams_per_identity_.erase(it);
}

EventService::~EventService() = default;

void EventService::ReplaceApiKeys(std::shared_ptr<const auth::ApiKeys> keys) {
  std::lock_guard lock(api_keys_mu_);
  api_keys_ = std::move(keys);
}

void EventService::SetPublishRate(double rate, double burst) {
  std::lock_guard lock(buckets_mu_);
  buckets_.SetRate(rate, burst);
  publish_limited_.store(buckets_.limited(), std::memory_order_relaxed);
}

void EventService::SetStreamLimits(const StreamLimits& limits) {
  subscribe_queue_messages_.store(limits.subscribe_queue_messages, std::memory_order_relaxed);
  publish_stream_in_flight_.store(std::max<size_t>(limits.publish_stream_in_flight, 1),
                                  std::memory_order_relaxed);
  {
    std::lock_guard lock(streams_mu_);
    max_streams_per_identity_ = limits.max_subscribe_streams_per_identity;
    max_streams_ = limits.max_subscribe_streams;
  }
  std::lock_guard lock(buckets_mu_);
  buckets_.SetCapacity(limits.publish_bucket_keys);
}

StreamLimits EventService::stream_limits() const {
  StreamLimits l;
  l.subscribe_queue_messages = subscribe_queue_messages_.load(std::memory_order_relaxed);
  l.publish_stream_in_flight = publish_stream_in_flight_.load(std::memory_order_relaxed);
  {
    std::lock_guard lock(streams_mu_);
    l.max_subscribe_streams_per_identity = max_streams_per_identity_;
    l.max_subscribe_streams = max_streams_;
  }
  std::lock_guard lock(buckets_mu_);
  l.publish_bucket_keys = buckets_.capacity();
  return l;
}

void EventService::BeginShutdown() {
  shutting_down_.store(true);
  std::vector<std::shared_ptr<core::ClientMessageSink>> open;
  {
    std::lock_guard lock(streams_mu_);
    for (auto& w : streams_) {
      if (auto s = w.lock()) open.push_back(std::move(s));
    }
  }
  for (auto& s : open) static_cast<SubscribeReactor::Sink*>(s.get())->Finish(grpc::Status::OK);
}

absl::StatusOr<std::optional<auth::Principal>> EventService::Authenticate(
    const grpc::CallbackServerContext* ctx) {
  if (!options_.auth.enabled()) return std::optional<auth::Principal>();
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    hub_.metrics().CountAuthFailure(core::AuthFailure::kMissing);
    return absl::UnauthenticatedError("missing authorization: Bearer <token> metadata");
  }
  std::string value(it->second.data(), it->second.size());
  constexpr std::string_view kBearer = "Bearer ";
  if (value.compare(0, kBearer.size(), kBearer) != 0) {
    hub_.metrics().CountAuthFailure(core::AuthFailure::kMalformed);
    return absl::UnauthenticatedError("authorization must be 'Bearer <token>'");
  }
  std::string token = value.substr(kBearer.size());
  bool looks_like_jwt = std::count(token.begin(), token.end(), '.') == 2;
  if (looks_like_jwt && options_.auth.verifier != nullptr) {
    auto p = options_.auth.verifier->Verify(token, std::chrono::system_clock::now());
    if (!p.ok()) {
      hub_.metrics().CountAuthFailure(core::ClassifyAuthFailure(std::string(p.status().message())));
      return p.status();
    }
    return std::optional<auth::Principal>(std::move(*p));
  }
  std::shared_ptr<const auth::ApiKeys> api_keys;
  {
    std::lock_guard lock(api_keys_mu_);
    api_keys = api_keys_;
  }
  if (api_keys != nullptr) {
    if (auto p = api_keys->Lookup(token)) return std::optional<auth::Principal>(*p);
  }
  hub_.metrics().CountAuthFailure(core::AuthFailure::kUnknownKey);
  return absl::UnauthenticatedError("unknown API key or token");
}

grpc::Status EventService::CheckPublish(const pb::PublishRequest& request,
                                        const auth::Principal* principal) {
  if (shutting_down_.load()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down");
  }
  if (!request.has_event()) {
    hub_.metrics().publish_rejected_total.fetch_add(1, std::memory_order_relaxed);
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "request has no event");
  }
  // What the request is comes before whether the caller may make it: a bad name is
  // INVALID_ARGUMENT whatever the grants (the payload is checked by the hub, after the grants).
  if (grpc::Status s = ValidateChannel(request.event().channel()); !s.ok()) {
    hub_.metrics().publish_rejected_total.fetch_add(1, std::memory_order_relaxed);
    return s;
  }
  if (principal != nullptr && !principal->CanPublish(request.event().channel())) {
    hub_.metrics().CountAuthFailure(core::AuthFailure::kForbidden);
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        "not allowed to publish to '" + request.event().channel() + "'");
  }
  if (publish_limited_.load(std::memory_order_relaxed)) {
    static const std::string kAnonymous;
    std::lock_guard lock(buckets_mu_);
    if (!buckets_.Take(principal != nullptr ? principal->subject : kAnonymous)) {
      hub_.metrics().rate_limited_total.fetch_add(1, std::memory_order_relaxed);
      hub_.metrics().CountLimit(core::Limit::kPublishRate);
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "publish rate limit exceeded");
    }
  }
  // With the payload checks (the hub's), after the grants: whether the caller may publish here
  // at all comes first.
  if (absl::Status s = typed_.Check(request.event()); !s.ok()) {
    hub_.metrics().publish_rejected_total.fetch_add(1, std::memory_order_relaxed);
    hub_.metrics().publish_type_rejected_total.fetch_add(1, std::memory_order_relaxed);
    return ToGrpc(s);
  }
  return grpc::Status::OK;
}

void EventService::PublishOne(const pb::PublishRequest& request, const auth::Principal* principal,
                              pb::PublishResponse* response, PublishDone done) {
  core::Metrics& metrics = hub_.metrics();
  if (grpc::Status s = CheckPublish(request, principal); !s.ok()) {
    metrics.CountPublish(s.error_code());
    return done(std::move(s));
  }
  hub_.PublishAsync(request.event(), [&request, response, &metrics, done = std::move(done)](
                                         absl::StatusOr<core::PublishResult> result) mutable {
    metrics.CountPublish(static_cast<int>(result.status().code()));
    if (!result.ok()) return done(ToGrpc(result.status()));
    response->set_offset(result->offset);
    response->set_epoch(result->epoch);
    if (request.event().has_timestamp()) {
      *response->mutable_timestamp() = request.event().timestamp();
    }
    done(grpc::Status::OK);
  });
}

grpc::ServerUnaryReactor* EventService::Publish(grpc::CallbackServerContext* ctx,
                                                const pb::PublishRequest* request,
                                                pb::PublishResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  auto principal = Authenticate(ctx);
  if (!principal.ok()) {
    hub_.metrics().CountPublish(grpc::StatusCode::UNAUTHENTICATED);
    reactor->Finish(Unauthenticated(principal.status()));
    return reactor;
  }
  PublishOne(*request, *principal ? &**principal : nullptr, response,
             [reactor](grpc::Status s) { reactor->Finish(std::move(s)); });
  return reactor;
}

grpc::ServerReadReactor<pb::PublishRequest>* EventService::PublishStream(
    grpc::CallbackServerContext* ctx, pb::PublishStreamResponse* response) {
  auto principal = Authenticate(ctx);
  if (!principal.ok()) return new FailedReadReactor(Unauthenticated(principal.status()));
  return new PublishStreamReactor(this, response, std::move(*principal),
                                  publish_stream_in_flight_.load(std::memory_order_relaxed));
}

grpc::ServerWriteReactor<pb::ClientMessage>* EventService::Subscribe(
    grpc::CallbackServerContext* ctx, const pb::SubscribeRequest* request) {
  auto principal = Authenticate(ctx);
  if (!principal.ok()) return new FailedWriteReactor(Unauthenticated(principal.status()));
  if (shutting_down_.load()) {
    return new FailedWriteReactor(
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"));
  }
  if (request->channels_size() == 0) {
    return new FailedWriteReactor(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "name at least one channel or pattern"));
  }
  if (request->channels_size() > 256) {
    return new FailedWriteReactor(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "at most 256 channels or patterns"));
  }
  // Every pattern is checked before any grant, so a bad request is INVALID_ARGUMENT whatever
  // the caller may read.
  for (const auto& p : request->channels()) {
    if (absl::Status s = core::ValidatePattern(p); !s.ok()) {
      return new FailedWriteReactor(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                       core::Cat("bad channel pattern '", p, "': ", s.message())));
    }
    if (p != "*" && hub_.namespaces().Find(core::NamespaceOf(p)) == nullptr) {
      return new FailedWriteReactor(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                       core::Cat("bad channel pattern '", p, "': unknown namespace '",
                                 core::NamespaceOf(p), "'")));
    }
  }
  std::vector<std::string> patterns;
  for (const auto& p : request->channels()) {
    if (*principal && !MayRead(**principal, p)) {
      hub_.metrics().CountAuthFailure(core::AuthFailure::kForbidden);
      return new FailedWriteReactor(
          grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "not allowed to read '" + p + "'"));
    }
    patterns.push_back(p);
  }
  std::string identity = *principal ? (*principal)->subject : std::string();
  if (grpc::Status s = AcquireStream(identity); !s.ok()) return new FailedWriteReactor(s);
  return new SubscribeReactor(this, std::move(patterns), request->lifecycle(), std::move(identity));
}

namespace {

void SetTimestamp(std::chrono::system_clock::time_point t, google::protobuf::Timestamp* ts) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  ts->set_seconds(ns / 1000000000);
  ts->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

}  // namespace

grpc::Status EventService::CheckRead(const grpc::CallbackServerContext* ctx,
                                     const std::string& channel) {
  if (grpc::Status s = ValidateChannel(channel); !s.ok()) return s;
  auto principal = Authenticate(ctx);
  if (!principal.ok()) return Unauthenticated(principal.status());
  if (*principal && !MayRead(**principal, channel)) {
    hub_.metrics().CountAuthFailure(core::AuthFailure::kForbidden);
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        "not allowed to read '" + channel + "'");
  }
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* EventService::History(grpc::CallbackServerContext* ctx,
                                                const pb::HistoryRequest* request,
                                                pb::HistoryResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  if (grpc::Status s = CheckRead(ctx, request->channel()); !s.ok()) {
    reactor->Finish(s);
    return reactor;
  }
  hub_.HistoryAsync(request->channel(), request->since(), request->limit(),
                    [reactor, response](absl::StatusOr<core::HistoryResult> h) {
                      if (!h.ok()) return reactor->Finish(ToGrpc(h.status()));
                      response->set_epoch(h->epoch);
                      response->set_offset(h->offset);
                      response->set_complete(h->complete);
                      for (const auto& f : h->frames) {
                        auto* m = response->add_messages();
                        m->set_offset(f->offset);
                        m->set_json(f->text);
                      }
                      reactor->Finish(grpc::Status::OK);
                    });
  return reactor;
}

grpc::ServerUnaryReactor* EventService::Presence(grpc::CallbackServerContext* ctx,
                                                 const pb::PresenceRequest* request,
                                                 pb::PresenceResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  if (grpc::Status s = CheckRead(ctx, request->channel()); !s.ok()) {
    reactor->Finish(s);
    return reactor;
  }
  hub_.PresenceAsync(request->channel(),
                     [reactor, response](absl::StatusOr<core::PresenceResult> p) {
                       if (!p.ok()) return reactor->Finish(ToGrpc(p.status()));
                       for (const auto& m : p->members) {
                         auto* out = response->add_members();
                         out->set_identity(m.identity);
                         out->set_connections(m.connections);
                         SetTimestamp(m.joined_at, out->mutable_joined_at());
                       }
                       response->set_member_count(static_cast<uint32_t>(p->members.size()));
                       response->set_connection_count(p->connection_count);
                       reactor->Finish(grpc::Status::OK);
                     });
  return reactor;
}

}  // namespace bridge::rpc
