// Publishers over the bridge's gRPC EventService.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <string>

#include "gathering/bridge/v1/events.grpc.pb.h"
#include "publishers.h"

namespace bench {
namespace {

namespace v1 = gathering::bridge::v1;

void FillRequest(const PublisherConfig& config, const std::string& pad, uint64_t seq, int channel,
                 uint64_t t_ns, v1::PublishRequest* req) {
  v1::Event* event = req->mutable_event();
  event->set_channel(config.channel_names[static_cast<size_t>(channel)]);
  v1::Custom* custom = event->mutable_custom();
  custom->set_type("bench");
  auto& fields = *custom->mutable_data()->mutable_fields();
  if (!pad.empty()) fields["pad"].set_string_value(pad);
  fields["seq"].set_number_value(static_cast<double>(seq));
  fields["t"].set_number_value(static_cast<double>(t_ns));
}

std::shared_ptr<grpc::Channel> Connect(const PublisherConfig& config) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  auto channel = grpc::CreateCustomChannel(config.host + ":" + std::to_string(config.port),
                                           grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5))) {
    config.errors->Add("grpc: channel not connected within 5 s");
  }
  return channel;
}

class GrpcUnaryPublisher : public Publisher {
 public:
  explicit GrpcUnaryPublisher(const PublisherConfig& config)
      : config_(config),
        pad_(config.payload_bytes, 'x'),
        channel_(Connect(config)),
        stub_(v1::EventService::NewStub(channel_)) {}

  void Publish(uint64_t seq, int channel, uint64_t t_ns, DoneFn done) override {
    auto* call = new Call;
    call->done = std::move(done);
    FillRequest(config_, pad_, seq, channel, t_ns, &call->req);
    call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    stub_->async()->Publish(&call->ctx, &call->req, &call->resp, [this, call](grpc::Status s) {
      if (!s.ok()) {
        config_.errors->Add("grpc Publish: " + std::to_string(s.error_code()) + " " +
                            s.error_message());
      }
      call->done(s.ok());
      delete call;
    });
  }

 private:
  struct Call {
    grpc::ClientContext ctx;
    v1::PublishRequest req;
    v1::PublishResponse resp;
    DoneFn done;
  };

  PublisherConfig config_;
  std::string pad_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::EventService::Stub> stub_;
};

// One PublishStream; Write() blocks under HTTP/2 flow control, which is the backpressure.
class GrpcStreamPublisher : public Publisher {
 public:
  explicit GrpcStreamPublisher(const PublisherConfig& config)
      : config_(config),
        pad_(config.payload_bytes, 'x'),
        channel_(Connect(config)),
        stub_(v1::EventService::NewStub(channel_)),
        writer_(stub_->PublishStream(&ctx_, &resp_)) {}

  void Publish(uint64_t seq, int channel, uint64_t t_ns, DoneFn done) override {
    if (broken_) return done(false);
    req_.Clear();
    FillRequest(config_, pad_, seq, channel, t_ns, &req_);
    if (!writer_->Write(req_)) {
      broken_ = true;
      config_.errors->Add("grpc PublishStream: write failed (stream closed)");
      return done(false);
    }
    done(true);
  }

  std::vector<uint64_t> Finish() override {
    writer_->WritesDone();
    grpc::Status s = writer_->Finish();
    std::vector<uint64_t> rejected;
    if (!s.ok()) {
      config_.errors->Add("grpc PublishStream: " + std::to_string(s.error_code()) + " " +
                          s.error_message());
    }
    if (resp_.rejected() > 0) {
      config_.errors->Add(
          "grpc PublishStream: " + std::to_string(resp_.rejected()) + " rejected" +
          (resp_.rejections_size() > 0 ? ": " + resp_.rejections(0).message() : std::string()));
      for (const auto& r : resp_.rejections()) rejected.push_back(r.index());
    }
    return rejected;
  }

 private:
  PublisherConfig config_;
  std::string pad_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::EventService::Stub> stub_;
  grpc::ClientContext ctx_;
  v1::PublishStreamResponse resp_;
  std::unique_ptr<grpc::ClientWriter<v1::PublishRequest>> writer_;
  v1::PublishRequest req_;
  bool broken_ = false;
};

}  // namespace

std::unique_ptr<Publisher> MakeGrpcUnaryPublisher(const PublisherConfig& config) {
  return std::make_unique<GrpcUnaryPublisher>(config);
}

std::unique_ptr<Publisher> MakeGrpcStreamPublisher(const PublisherConfig& config) {
  return std::make_unique<GrpcStreamPublisher>(config);
}

}  // namespace bench
