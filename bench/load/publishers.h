// The ways bridge-load publishes benchmark events: gRPC Publish (unary, callback API), gRPC
// PublishStream, HTTP POST to nchan, or straight into the built-in sink server.
//
// The driver (main.cc) calls Publish() from one thread, never with more than `window` calls
// whose `done` has not run yet; `done` runs exactly once, on any thread, true when the server
// accepted the event.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "error_log.h"

namespace bench {

class SinkServer;

using DoneFn = std::function<void(bool ok)>;

struct PublisherConfig {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  // Channel i's full name ("circles/bench-x-3"): the gRPC event's channel, the frame's channel.
  std::vector<std::string> channel_names;
  // Channel i's HTTP publish path (nchan) or WebSocket path (sink).
  std::vector<std::string> channel_paths;
  // Extra bytes carried in data.pad (0: none).
  size_t payload_bytes = 0;
  // Maximum calls in flight (HTTP: keep-alive connections).
  int window = 32;
  ErrorLog* errors = nullptr;
};

class Publisher {
 public:
  virtual ~Publisher() = default;
  // Publishes event `seq` to channel index `channel`, stamped `t_ns`.
  virtual void Publish(uint64_t seq, int channel, uint64_t t_ns, DoneFn done) = 0;
  // Ends the run after every `done` ran (PublishStream: half-close and read the summary).
  // Returns the sequence numbers the server reported as rejected, as far as it said.
  virtual std::vector<uint64_t> Finish() { return {}; }
};

std::unique_ptr<Publisher> MakeGrpcUnaryPublisher(const PublisherConfig& config);
std::unique_ptr<Publisher> MakeGrpcStreamPublisher(const PublisherConfig& config);
std::unique_ptr<Publisher> MakeHttpPublisher(const PublisherConfig& config);
std::unique_ptr<Publisher> MakeSinkPublisher(const PublisherConfig& config, SinkServer* sink);

}  // namespace bench
