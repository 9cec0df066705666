// A WebSocket session's outgoing frames: a queue bounded in bytes, its slow-consumer policy, and
// the gather write that sends everything queued in one call.
//
// What it holds:
//   - JSON frames (events and the bridge's control frames), shared with every other subscriber;
//     events count against `max_bytes`, and when one does not fit its namespace's policy decides
//     (disconnect, drop_oldest with a gap frame, latest_only). JSON control frames (pong,
//     subscribed, error, gap) are never dropped but may pass the bound only by
//     `control_allowance`;
//   - raw WebSocket control frames (pong answers to pings, our pings), which count against
//     `control_allowance` too: a client that pings without reading is a slow consumer;
//   - at most one close frame, which goes last.
// A push that cannot fit answers kSlow: the session closes 4008. Nothing here grows without a
// bound, and nothing blocks.
//
// Not thread-safe: owned by one session and used on its io thread only. Plain data: no sockets,
// so it is tested on its own (tests/unit/ws/write_queue_test.cc).
#ifndef BRIDGE_WS_WRITE_QUEUE_H_
#define BRIDGE_WS_WRITE_QUEUE_H_

#include <boost/asio/buffer.hpp>
#include <cstddef>
#include <deque>
#include <string>
#include <vector>

#include "core/frame.h"
#include "core/hub.h"
#include "core/metrics.h"
#include "core/websocket_codec.h"

namespace bridge::ws {

class WriteQueue {
 public:
  struct Limits {
    size_t max_bytes = 4 * 1024 * 1024;  // events waiting for this connection
    // Bytes control frames (JSON or raw) may add beyond `max_bytes` before the client counts as
    // stalled.
    size_t control_allowance = 64 * 1024;
    // All connections' queues together (Metrics::queued_bytes_current): past it, a queue holding
    // over `budget_floor` bytes applies its policy as if full.
    size_t max_total_bytes = size_t{1} << 30;
    size_t budget_floor = 64 * 1024;
  };
  enum class Push { kQueued, kSlow };

  // `hub` gives the namespaces' policies and counters; both outlive the queue.
  WriteQueue(Limits limits, core::Hub& hub, core::Metrics& metrics);
  ~WriteQueue();
  WriteQueue(const WriteQueue&) = delete;
  WriteQueue& operator=(const WriteQueue&) = delete;

  // A JSON frame for the client (an event, or a control frame when frame->is_control()).
  Push PushFrame(const core::FramePtr& frame);
  // A raw WebSocket control frame (ping, pong); kSlow past the control allowance.
  Push PushRaw(std::string frame);
  // Queues the close frame: events not yet being written are dropped (returned), control frames
  // stay and go first; with `keep_events` (shutdown) every frame queued goes out before it.
  // Later pushes are refused (kQueued, counted as dropped).
  size_t Close(std::string close_frame, bool keep_events = false);

  // Fills `buffers` with the next write (raw control frames, then up to 64 frames / 256 KiB,
  // then the close frame once nothing else is left); false when there is nothing to write or a
  // write is in flight. The buffers stay valid until Written().
  bool Prepare(std::vector<boost::asio::const_buffer>& buffers);
  struct Done {
    size_t frames = 0;   // JSON frames that left
    bool close = false;  // the close frame left: nothing more will be written
  };
  // The write Prepare() described completed (or failed: the session ends either way).
  Done Written();

  // Observes each event frame that leaves through Written() in `latency` (cell `shard`, the
  // frame's namespace): the time from its Frame::accepted_nanos to Written(), read once per
  // write. Frames accepted before `not_before_nanos` (history replayed to a recovering
  // client) are not observed. `latency` outlives the queue; nullptr: nothing observed.
  void MeasureLatency(core::ShardedHistogram* latency, size_t shard, int64_t not_before_nanos) {
    latency_ = latency;
    latency_shard_ = shard;
    latency_not_before_ = not_before_nanos;
  }

  bool writing() const { return writing_; }
  bool has_pending() const {
    return !frames_.empty() || !raw_.empty() || (!close_frame_.empty() && !close_sent_);
  }
  bool closed() const { return close_queued_; }
  size_t queued_bytes() const { return queued_bytes_; }
  size_t control_bytes() const { return control_bytes_; }
  size_t queued_frames() const { return frames_.size(); }

 private:
  // Applies the frame's namespace policy; false when the frame still cannot fit.
  bool MakeRoom(const core::Frame& frame);
  void Account(const core::Frame& frame, bool add);

  const Limits limits_;
  core::Hub& hub_;
  core::Metrics& metrics_;
  std::deque<core::FramePtr> frames_;
  std::vector<std::string> raw_;  // raw control frames waiting
  // The write in flight: the first writing_frames_ of frames_ and these raw frames.
  std::vector<std::string> writing_raw_;
  size_t writing_frames_ = 0;
  bool writing_close_ = false;
  std::vector<core::WsHeader> headers_;
  std::string close_frame_;
  bool close_queued_ = false;
  bool close_sent_ = false;
  bool writing_ = false;
  size_t queued_bytes_ = 0;   // events and JSON control frames in frames_
  size_t control_bytes_ = 0;  // raw control frames waiting in raw_ (with their string's size)
  core::ShardedHistogram* latency_ = nullptr;
  size_t latency_shard_ = 0;
  int64_t latency_not_before_ = 0;
};

}  // namespace bridge::ws

#endif  // BRIDGE_WS_WRITE_QUEUE_H_
