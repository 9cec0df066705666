// The WebSocket subscribers of bridge-load: `subscribers` minimal WebSocket clients spread over
// `io_threads` io_contexts (one thread each), subscriber j on channel j % channels and thread j %
// io_threads.
//
// With `tls`, every subscriber connects over TLS (SNI and certificate verification against
// tls_ca_file for tls_server_name) before its upgrade; the plain path is a separate
// instantiation of the same client, so it does no per-read TLS check.
//
// Connecting is ramped: each thread keeps at most connect_concurrency / io_threads handshakes
// pending. A subscriber is ready when its handshake completed, or, with wait_subscribed, when the
// server's `subscribed` frame arrived. Slow subscribers (an even share `slow_fraction`) shrink
// their receive buffer and stop reading once ready, until ResumeSlow().
//
// Each measured subscriber keeps a bitmap of the events of its channel it has seen (event seq is
// published to channel seq % channels as that channel's (seq / channels)-th event): a second copy
// counts as duplicated, a missing one as lost. Latency is receipt minus the event's `t`.
//
// Thread use: the constructor, Start, the progress getters, SnapshotMeasured, ResumeSlow and Stop
// are for the one driving thread; Collect only after Stop.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "error_log.h"
#include "histogram.h"

namespace bench {

struct ClientPoolConfig {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::vector<std::string> channel_paths;  // the upgrade target per channel
  int subscribers = 0;
  uint64_t events_per_channel = 0;  // bitmap size
  double slow_fraction = 0;
  int slow_rcvbuf = 4096;
  bool wait_subscribed = false;
  int io_threads = 1;
  int connect_concurrency = 200;
  bool tls = false;
  std::string tls_ca_file;                    // PEM the subscribers trust
  std::string tls_server_name = "localhost";  // SNI and the name the certificate must carry
  std::chrono::steady_clock::time_point t0;
};

struct PoolResults {
  LatencyHistogram latency;  // publish -> receipt, measured subscribers
  LatencyHistogram connect;  // connect start -> ready
  uint64_t ready = 0;
  uint64_t failed = 0;
  uint64_t measured = 0;   // healthy subscribers ready when publishing began
  uint64_t slow = 0;       // slow subscribers that got ready
  uint64_t expected = 0;   // sum over measured subscribers of accepted events of their channel
  uint64_t delivered = 0;  // unique events received by measured subscribers
  uint64_t lost = 0;
  uint64_t duplicated = 0;
  uint64_t misrouted = 0;       // an event of another channel, or a seq out of range
  uint64_t control_frames = 0;  // frames without seq (subscribed, ping, ...)
  uint64_t late_frames = 0;     // events received by subscribers not measured
  uint64_t slow_frames = 0;     // events slow subscribers received (after resuming)
  uint64_t disconnects = 0;     // measured subscribers whose connection ended during the run
  uint64_t slow_ended = 0;      // slow subscribers whose connection the server ended
  std::map<std::string, uint64_t> end_reasons;  // "close_4008", "End of file", "slow:..."
  std::string tls_version;  // as negotiated by the first TLS handshake ("" without TLS)
  std::string tls_cipher;
};

class ClientPool {
 public:
  ClientPool(ClientPoolConfig config, ErrorLog* errors);
  ~ClientPool();

  // Why the pool cannot run (the TLS context could not be set up); empty when it can.
  const std::string& InitError() const;

  void Start();
  uint64_t Ready() const;
  uint64_t Failed() const;
  uint64_t Delivered() const;
  int64_t LastDeliveryNs() const;  // since t0; 0 before the first
  uint64_t SlowEnded() const;

  // Marks every ready healthy subscriber as measured (events reaching the others are not
  // counted); returns how many there are per channel.
  std::vector<uint64_t> SnapshotMeasured();
  void ResumeSlow();
  // Closes every connection (RST: no TIME_WAIT) and joins the threads.
  void Stop();
  // accepted_per_channel: how many events of each channel the server accepted.
  PoolResults Collect(const std::vector<uint64_t>& accepted_per_channel);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bench
