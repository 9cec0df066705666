#include "ws/write_queue.h"

#include <algorithm>
#include <chrono>

#include "core/protocol.h"

namespace bridge::ws {

WriteQueue::WriteQueue(Limits limits, core::Hub& hub, core::Metrics& metrics)
    : limits_(limits), hub_(hub), metrics_(metrics) {}

WriteQueue::~WriteQueue() {
  for (const auto& f : frames_) Account(*f, false);
  if (!frames_.empty()) {
    metrics_.frames_dropped_total.fetch_add(frames_.size(), std::memory_order_relaxed);
  }
}

void WriteQueue::Account(const core::Frame& frame, bool add) {
  auto n = static_cast<int64_t>(frame.text.size());
  if (add) {
    queued_bytes_ += frame.text.size();
  } else {
    queued_bytes_ -= frame.text.size();
    n = -n;
  }
  metrics_.queued_bytes_current.fetch_add(n, std::memory_order_relaxed);
  if (frame.ns >= 0) {
    hub_.namespace_stats(frame.ns).queued_bytes.fetch_add(n, std::memory_order_relaxed);
  }
}

WriteQueue::Push WriteQueue::PushFrame(const core::FramePtr& frame) {
  if (close_queued_) {
    metrics_.frames_dropped_total.fetch_add(1, std::memory_order_relaxed);
    return Push::kQueued;
  }
  const size_t size = frame->text.size();
  // Over the server-wide budget, the connections holding the most pay first.
  const bool over_budget =
      static_cast<size_t>(metrics_.queued_bytes_current.load(std::memory_order_relaxed)) + size >
          limits_.max_total_bytes &&
      queued_bytes_ > limits_.budget_floor;
  if (queued_bytes_ + size > limits_.max_bytes || over_budget) {
    const bool fits = frame->is_control()
                          ? queued_bytes_ + size <= limits_.max_bytes + limits_.control_allowance
                          : MakeRoom(*frame);
    if (!fits) return Push::kSlow;
  }
  Account(*frame, true);
  frames_.push_back(frame);
  return Push::kQueued;
}

WriteQueue::Push WriteQueue::PushRaw(std::string frame) {
  if (close_queued_) return Push::kQueued;
  const size_t cost = frame.size() + sizeof(std::string);
  if (control_bytes_ + cost > limits_.control_allowance) return Push::kSlow;
  control_bytes_ += cost;
  raw_.push_back(std::move(frame));
  return Push::kQueued;
}

bool WriteQueue::MakeRoom(const core::Frame& frame) {
  const auto& namespaces = hub_.namespaces().all();
  if (frame.ns < 0 || static_cast<size_t>(frame.ns) >= namespaces.size()) return false;
  const core::SlowPolicy policy = namespaces[frame.ns].slow_policy;
  if (policy == core::SlowPolicy::kDisconnect) return false;
  core::NamespaceStats& stats = hub_.namespace_stats(frame.ns);
  // The frames being written stay.
  const size_t first = writing_ ? writing_frames_ : 0;
  std::deque<core::FramePtr> kept(frames_.begin(), frames_.begin() + first);
  struct Gap {
    std::string channel;
    uint64_t from, to;
  };
  std::vector<Gap> gaps;
  for (size_t i = first; i < frames_.size(); ++i) {
    const core::FramePtr& f = frames_[i];
    bool drop = false;
    if (!f->is_control()) {
      if (policy == core::SlowPolicy::kLatestOnly) {
        drop = f->channel == frame.channel;
      } else {
        drop = queued_bytes_ + frame.text.size() > limits_.max_bytes;
      }
    }
    if (!drop) {
      kept.push_back(f);
      continue;
    }
    Account(*f, false);
    stats.dropped.fetch_add(1, std::memory_order_relaxed);
    metrics_.frames_dropped_total.fetch_add(1, std::memory_order_relaxed);
    if (policy == core::SlowPolicy::kDropOldest) {
      auto g = std::find_if(gaps.begin(), gaps.end(),
                            [&](const Gap& x) { return x.channel == f->channel; });
      if (g == gaps.end()) {
        gaps.push_back({f->channel, f->offset, f->offset});
      } else {
        g->from = std::min(g->from, f->offset);
        g->to = std::max(g->to, f->offset);
      }
    }
  }
  frames_ = std::move(kept);
  // Gap frames are control frames: they may use the control allowance, not the event's room.
  const bool fits = queued_bytes_ + frame.text.size() <= limits_.max_bytes;
  // Gap frames go where the dropped frames were: before what is left of the queue.
  for (auto it = gaps.rbegin(); it != gaps.rend(); ++it) {
    auto gap = core::GapFrame(it->channel, it->from, it->to);
    Account(*gap, true);
    frames_.insert(frames_.begin() + first, gap);
    stats.gaps.fetch_add(1, std::memory_order_relaxed);
  }
  return fits;
}

size_t WriteQueue::Close(std::string close_frame, bool keep_events) {
  if (close_queued_) return 0;
  close_queued_ = true;
  if (keep_events) {
    close_frame_ = std::move(close_frame);
    return 0;
  }
  // Events not yet handed to the socket are dropped; control frames (an error saying why) and
  // the write in flight go out before the close frame.
  const size_t keep = writing_ ? writing_frames_ : 0;
  std::deque<core::FramePtr> kept(frames_.begin(), frames_.begin() + keep);
  size_t dropped = 0;
  for (size_t i = keep; i < frames_.size(); ++i) {
    if (frames_[i]->is_control()) {
      kept.push_back(frames_[i]);
    } else {
      Account(*frames_[i], false);
      ++dropped;
    }
  }
  frames_ = std::move(kept);
  metrics_.frames_dropped_total.fetch_add(dropped, std::memory_order_relaxed);
  close_frame_ = std::move(close_frame);
  return dropped;
}

bool WriteQueue::Prepare(std::vector<boost::asio::const_buffer>& buffers) {
  if (writing_ || close_sent_) return false;
  constexpr size_t kMaxFrames = 64;
  constexpr size_t kMaxBytes = 256 * 1024;
  buffers.clear();
  headers_.clear();
  writing_raw_.clear();
  writing_raw_.swap(raw_);
  control_bytes_ = 0;
  for (const auto& c : writing_raw_) buffers.emplace_back(c.data(), c.size());
  size_t bytes = 0;
  size_t n = 0;
  while (n < frames_.size() && n < kMaxFrames && (n == 0 || bytes < kMaxBytes)) {
    headers_.push_back(core::BuildWsHeader(core::WsOpcode::kText, frames_[n]->text.size()));
    bytes += frames_[n]->text.size();
    ++n;
  }
  for (size_t i = 0; i < n; ++i) {
    buffers.emplace_back(headers_[i].bytes.data(), headers_[i].size);
    buffers.emplace_back(frames_[i]->text.data(), frames_[i]->text.size());
  }
  // The close frame goes last, once every frame still queued (errors, pongs) is out.
  writing_close_ = !close_frame_.empty() && n == frames_.size();
  if (writing_close_) buffers.emplace_back(close_frame_.data(), close_frame_.size());
  if (buffers.empty()) return false;
  writing_frames_ = n;
  writing_ = true;
  return true;
}

WriteQueue::Done WriteQueue::Written() {
  Done done;
  writing_ = false;
  // One clock read for the whole write, and only when it carried frames.
  int64_t now = 0;
  if (latency_ != nullptr && writing_frames_ != 0) {
    now = std::chrono::duration_cast<std::chrono::nanoseconds>(
              std::chrono::steady_clock::now().time_since_epoch())
              .count();
  }
  for (size_t i = 0; i < writing_frames_ && !frames_.empty(); ++i) {
    const core::Frame& f = *frames_.front();
    if (now != 0 && f.accepted_nanos >= latency_not_before_ && f.accepted_nanos != 0 && f.ns >= 0) {
      latency_->Observe(latency_shard_, static_cast<size_t>(f.ns), now - f.accepted_nanos);
    }
    Account(f, false);
    frames_.pop_front();
  }
  done.frames = writing_frames_;
  done.close = writing_close_;
  if (writing_close_) close_sent_ = true;
  writing_frames_ = 0;
  writing_close_ = false;
  writing_raw_.clear();
  return done;
}

}  // namespace bridge::ws
