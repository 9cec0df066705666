#include "ws/ws_session.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "core/channel.h"
#include "core/client_frame.h"
#include "core/frame.h"
#include "core/strings.h"

namespace bridge::ws {

namespace beast = boost::beast;

namespace {

constexpr size_t kInitialReadBuffer = 512;
constexpr uint16_t kCloseUnauthenticated = 4001;
constexpr uint16_t kCloseForbidden = 4003;
constexpr uint16_t kCloseSlowConsumer = 4008;

std::string SubscribedFrame(const std::string& channel, const core::SubscribeResult& r,
                            bool with_recovery) {
  std::string s = core::Cat(R"({"type":"subscribed","channel":")", channel, R"(","epoch":")",
                            r.epoch, R"(","offset":)", r.offset);
  if (with_recovery) s += r.recovered ? R"(,"recovered":true)" : R"(,"recovered":false)";
  s += "}";
  return s;
}

}  // namespace

WsSession::WsSession(Transport&& transport, std::string_view buffered, ServerState& state,
                     size_t shard, InitialSubscription initial, std::string identity,
                     std::string token, std::string counted_ip)
    : transport_(std::move(transport)),
      state_(state),
      shard_(shard),
      id_(state.next_connection_id.fetch_add(1, std::memory_order_relaxed)),
      connection_id_(core::Cat("c-", id_)),
      identity_(std::move(identity)),
      initial_(std::move(initial)),
      decoder_(state.options.max_frame_bytes),
      token_(std::move(token)),
      counted_ip_(std::move(counted_ip)),
      authenticated_(!state.auth.enabled()),
      message_bucket_(state.options.client_message_rate, state.options.client_message_burst),
      heartbeat_timer_(transport_.get_executor()),
      close_timer_(transport_.get_executor()),
      auth_timer_(transport_.get_executor()) {
  // Small to start: most connections only ever send pings and subscribes; DoRead grows it.
  read_buffer_.resize(std::max(kInitialReadBuffer, buffered.size()));
  std::memcpy(read_buffer_.data(), buffered.data(), buffered.size());
  read_size_ = buffered.size();
  state_.metrics.connections_current.fetch_add(1, std::memory_order_relaxed);
}

WsSession::~WsSession() {
  for (const auto& ch : channels_) state_.hub.Unsubscribe(shard_, ch, this, leave_reason_);
  if (open_) state_.registries[shard_].erase(this);
  if (!counted_ip_.empty()) state_.ReleaseIp(counted_ip_);
  state_.metrics.connections_current.fetch_sub(1, std::memory_order_relaxed);
  for (const auto& f : queue_) Account(*f, false);
  if (!queue_.empty()) {
    state_.metrics.frames_dropped_total.fetch_add(queue_.size(), std::memory_order_relaxed);
  }
}

void WsSession::Start() {
  open_ = true;
  last_read_ = std::chrono::steady_clock::now();
  state_.registries[shard_].insert(this);
  state_.metrics.connections_total.fetch_add(1, std::memory_order_relaxed);
  if (state_.draining.load()) {
    Close(1001, "server shutting down");
    return;
  }
  ScheduleHeartbeat();
  if (authenticated_) {
    OnAuthenticated();
  } else if (!token_.empty()) {
    Authenticate(std::exchange(token_, ""));
  } else {
    auth_timer_.expires_after(state_.auth.auth_timeout);
    auth_timer_.async_wait([weak = weak_from_this()](beast::error_code ec) {
      auto self = weak.lock();
      if (ec || !self || self->authenticated_) return;
      self->Close(kCloseUnauthenticated, "authentication timeout");
    });
  }
  if (read_size_ > 0) {
    if (discard_input_) {
      read_size_ = 0;
    } else {
      ProcessInput();
    }
  }
  DoRead();
}

void WsSession::Authenticate(const std::string& token) {
  auto principal = state_.auth.verifier->Verify(token, std::chrono::system_clock::now());
  if (!principal.ok()) {
    state_.metrics.auth_failures_total.fetch_add(1, std::memory_order_relaxed);
    std::string why(principal.status().message());
    if (!authenticated_) return Close(kCloseUnauthenticated, why);
    return SendError("unauthenticated", why);  // a failed refresh keeps the current token
  }
  if (authenticated_ && principal->subject != identity_) {
    return SendError("unauthenticated", "a refreshed token must have the same subject");
  }
  principal_ = std::move(*principal);
  identity_ = principal_->subject;
  auth_timer_.cancel();
  if (principal_->expires_at) {
    auto left = *principal_->expires_at - std::chrono::system_clock::now();
    auth_timer_.expires_after(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(left));
    auth_timer_.async_wait([weak = weak_from_this()](beast::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      self->leave_reason_ = "auth_expired";
      self->Close(kCloseUnauthenticated, "token expired");
    });
  }
  std::string frame =
      core::Cat(R"({"type":"authenticated","identity":)", core::JsonQuote(identity_));
  if (principal_->expires_at) {
    frame += core::Cat(R"(,"expires_at":")", core::FormatTimestamp(*principal_->expires_at), "\"");
  }
  frame += "}";
  Send(core::MakeControlFrame(std::move(frame)));
  if (!authenticated_) {
    authenticated_ = true;
    OnAuthenticated();
  }
}

void WsSession::OnAuthenticated() {
  if (!initial_.channel.empty()) {
    HandleSubscribe(initial_.channel, initial_.recovery,
                    initial_.ack || initial_.recovery.has_value(), /*initial=*/true);
  }
}

void WsSession::DoRead() {
  if (read_size_ == read_buffer_.size()) {
    // A frame larger than the buffer: grow up to what the frame needs (bounded by the decoder's
    // message limit, which refuses larger frames before they are buffered).
    read_buffer_.resize(std::max(read_buffer_.size() * 2, decoder_.wanted()));
  }
  transport_.async_read_some(
      boost::asio::buffer(read_buffer_.data() + read_size_, read_buffer_.size() - read_size_),
      beast::bind_front_handler(&WsSession::OnRead, shared_from_this()));
}

void WsSession::OnRead(beast::error_code ec, size_t bytes) {
  if (ec) {
    // EOF after our close frame, or a reset: the session ends with its last handler.
    closing_ = true;
    heartbeat_timer_.cancel();
    close_timer_.cancel();
    auth_timer_.cancel();
    CutSocket();
    return;
  }
  read_size_ += bytes;
  last_read_ = std::chrono::steady_clock::now();
  if (discard_input_) {
    read_size_ = 0;  // closing: read only to see the peer's EOF
  } else {
    ProcessInput();
  }
  DoRead();
}

bool WsSession::ProcessInput() {
  size_t offset = 0;
  for (;;) {
    size_t consumed = 0;
    auto event = decoder_.Feed(read_buffer_.data() + offset, read_size_ - offset, consumed);
    offset += consumed;
    switch (event) {
      case core::WsDecoder::Event::kNeedMore:
        std::memmove(read_buffer_.data(), read_buffer_.data() + offset, read_size_ - offset);
        read_size_ -= offset;
        if (decoder_.wanted() > read_buffer_.size()) read_buffer_.resize(decoder_.wanted());
        if (read_size_ == 0 && read_buffer_.size() > 64 * 1024) {
          read_buffer_.resize(kInitialReadBuffer);
          read_buffer_.shrink_to_fit();
        }
        return true;
      case core::WsDecoder::Event::kMessage:
        if (closing_) break;
        if (!decoder_.message_is_text()) {
          SendError("binary_not_supported", "send JSON text frames");
        } else {
          HandleText(decoder_.message());
        }
        break;
      case core::WsDecoder::Event::kPing:
        if (!closing_)
          SendControl(core::BuildWsControlFrame(core::WsOpcode::kPong, decoder_.control_payload()));
        break;
      case core::WsDecoder::Event::kPong:
        break;
      case core::WsDecoder::Event::kClose:
        // The peer closes: answer with its code (1000 when it gave none); its EOF ends us.
        if (!close_queued_) {
          uint16_t code = decoder_.close_code();
          if (code == 1005 || code < 1000 || code == 1006 || code == 1015) code = 1000;
          Close(code, "");
        }
        discard_input_ = true;
        read_size_ = 0;
        return false;
      case core::WsDecoder::Event::kTooBig:
        leave_reason_ = "frame_too_big";
        state_.metrics.frame_too_big_total.fetch_add(1, std::memory_order_relaxed);
        spdlog::info("{}: closed 1009, frame over {} bytes", connection_id_,
                     state_.options.max_frame_bytes);
        Close(1009, "frame too big");
        discard_input_ = true;
        read_size_ = 0;
        return false;
      case core::WsDecoder::Event::kProtocolError:
        leave_reason_ = "protocol_error";
        Close(1002, "protocol error");
        discard_input_ = true;
        read_size_ = 0;
        return false;
    }
  }
}

void WsSession::HandleText(std::string_view text) {
  core::ClientFrameError error;
  auto frame = core::ParseClientFrame(text, error);
  if (!frame) {
    SendError(error.code, error.message);
    return;
  }
  if (!authenticated_ && frame->kind != core::ClientFrame::Kind::kAuth &&
      frame->kind != core::ClientFrame::Kind::kPing) {
    return Close(kCloseUnauthenticated, "authenticate first");
  }
  switch (frame->kind) {
    case core::ClientFrame::Kind::kPing:
      Send(core::PongFrame());
      return;
    case core::ClientFrame::Kind::kPong:
      return;
    case core::ClientFrame::Kind::kAuth:
      if (state_.auth.enabled()) Authenticate(frame->token);  // ignored while auth is off
      return;
    case core::ClientFrame::Kind::kSubscribe: {
      std::optional<core::RecoveryRequest> recovery;
      if (frame->since.has_value()) recovery = core::RecoveryRequest{*frame->since, frame->epoch};
      HandleSubscribe(frame->channel, recovery, true);
      return;
    }
    case core::ClientFrame::Kind::kUnsubscribe:
      HandleUnsubscribe(frame->channel);
      return;
    case core::ClientFrame::Kind::kMessage:
      HandleMessage(*frame);
      return;
  }
}

bool WsSession::Subscribed(const std::string& channel) const {
  return std::find(channels_.begin(), channels_.end(), channel) != channels_.end();
}

void WsSession::HandleSubscribe(const std::string& channel,
                                const std::optional<core::RecoveryRequest>& recovery, bool ack,
                                bool initial) {
  if (absl::Status s = core::ValidateChannel(channel); !s.ok()) {
    return SendError("invalid_channel", std::string(s.message()));
  }
  if (state_.hub.namespaces().Find(core::NamespaceOf(channel)) == nullptr) {
    return SendError("invalid_channel",
                     core::Cat("unknown namespace '", core::NamespaceOf(channel), "'"));
  }
  if (principal_ && !principal_->CanSubscribe(channel)) {
    state_.metrics.auth_forbidden_total.fetch_add(1, std::memory_order_relaxed);
    if (initial) return Close(kCloseForbidden, "token does not grant " + channel);
    return SendError("forbidden", "token does not grant " + channel);
  }
  if (!Subscribed(channel) && channels_.size() >= state_.options.max_channels_per_connection) {
    return SendError("too_many_channels",
                     core::Cat("at most ", state_.options.max_channels_per_connection,
                               " channels per connection"));
  }
  core::SubscribeResult r = state_.hub.Subscribe(shard_, channel, this, recovery);
  if (r.refused) return SendError("too_many_channels", "the bridge holds too many channels");
  if (!Subscribed(channel)) channels_.push_back(channel);
  if (ack) Send(core::MakeControlFrame(SubscribedFrame(channel, r, recovery.has_value())));
  for (const auto& f : r.missed) Send(f);
}

void WsSession::HandleUnsubscribe(const std::string& channel) {
  if (!Subscribed(channel)) return SendError("not_subscribed", "not subscribed to " + channel);
  state_.hub.Unsubscribe(shard_, channel, this, "unsubscribed");
  std::erase(channels_, channel);
  Send(core::MakeControlFrame(
      core::Cat(R"({"type":"unsubscribed","channel":)", core::JsonQuote(channel), "}")));
}

void WsSession::HandleMessage(core::ClientFrame& frame) {
  std::string channel = frame.channel;
  if (channel.empty()) {
    if (channels_.size() != 1) {
      return SendError("invalid_channel", channels_.empty()
                                              ? "subscribe to a channel before sending messages"
                                              : "name the \"channel\" of the message");
    }
    channel = channels_.front();
  } else if (!Subscribed(channel)) {
    return SendError("not_subscribed", "not subscribed to " + channel);
  }
  if (!message_bucket_.Take()) {
    state_.metrics.rate_limited_total.fetch_add(1, std::memory_order_relaxed);
    // One error frame per burst of refusals; a client that keeps going is closed.
    if (rate_violations_++ == 0) {
      SendError("rate_limited",
                core::Cat("at most ", static_cast<uint64_t>(state_.options.client_message_rate),
                          " messages per second"));
    }
    if (rate_violations_ > state_.options.client_message_burst) {
      leave_reason_ = "rate_limited";
      Close(kCloseSlowConsumer, "rate limited");
    }
    return;
  }
  rate_violations_ = 0;
  state_.metrics.client_messages_total.fetch_add(1, std::memory_order_relaxed);
  auto now = std::chrono::system_clock::now();
  std::string timestamp = core::FormatTimestamp(now);

  if (state_.hub.sink_count() > 0) {
    auto record = std::make_shared<core::ClientMessageRecord>();
    record->channel = channel;
    record->connection_id = connection_id_;
    record->identity = identity_;
    record->received_at = now;
    record->json = decoder_.message();
    state_.hub.ForwardToBackends(record);
  }
  const core::NamespaceConfig* ns = state_.hub.namespaces().Find(core::NamespaceOf(channel));
  if (ns != nullptr && ns->client_broadcast) {
    std::string head, tail;
    core::BuildClientMessageFrame(std::move(frame.object), channel, timestamp, connection_id_, head,
                                  tail);
    if (state_.hub.PublishFrame(channel, head, tail, id_).offset == 0) {
      SendError("too_many_channels", "the bridge holds too many channels");
    }
  }
}

void WsSession::SendError(std::string_view code, std::string_view message) {
  state_.metrics.client_errors_total.fetch_add(1, std::memory_order_relaxed);
  Send(core::ErrorFrame(code, message));
}

void WsSession::Deliver(const core::FramePtr& frame) { Send(frame); }

void WsSession::Account(const core::Frame& frame, bool add) {
  auto n = static_cast<int64_t>(frame.text.size());
  if (add) {
    queued_bytes_ += frame.text.size();
  } else {
    queued_bytes_ -= frame.text.size();
    n = -n;
  }
  state_.metrics.queued_bytes_current.fetch_add(n, std::memory_order_relaxed);
  if (frame.ns >= 0) {
    state_.hub.namespace_stats(frame.ns).queued_bytes.fetch_add(n, std::memory_order_relaxed);
  }
}

void WsSession::Send(const core::FramePtr& frame) {
  if (closing_ || !open_) {
    state_.metrics.frames_dropped_total.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const size_t max = state_.options.max_queue_bytes;
  // Over the server-wide budget, the connections holding the most pay first.
  const bool over_budget =
      static_cast<size_t>(state_.metrics.queued_bytes_current.load(std::memory_order_relaxed)) +
              frame->text.size() >
          state_.options.max_total_queue_bytes &&
      queued_bytes_ > 64 * 1024;
  if (queued_bytes_ + frame->text.size() > max || over_budget) {
    // Control frames (pong, subscribed, error, gap) are never dropped: they may pass the bound
    // by a small allowance before the client counts as stalled.
    constexpr size_t kControlAllowance = 64 * 1024;
    bool fits = frame->is_control() ? queued_bytes_ + frame->text.size() <= max + kControlAllowance
                                    : MakeRoom(*frame);
    if (!fits) return CloseSlow(frame->ns);
  }
  Account(*frame, true);
  queue_.push_back(frame);
  if (!writing_) DoWrite();
}

bool WsSession::MakeRoom(const core::Frame& frame) {
  const auto& namespaces = state_.hub.namespaces().all();
  if (frame.ns < 0 || static_cast<size_t>(frame.ns) >= namespaces.size()) return false;
  const core::SlowPolicy policy = namespaces[frame.ns].slow_policy;
  if (policy == core::SlowPolicy::kDisconnect) return false;
  const size_t max = state_.options.max_queue_bytes;
  core::NamespaceStats& stats = state_.hub.namespace_stats(frame.ns);
  // The frames being written stay.
  const size_t first = writing_ ? writing_frames_ : 0;
  std::deque<core::FramePtr> kept(queue_.begin(), queue_.begin() + first);
  struct Gap {
    std::string channel;
    uint64_t from, to;
  };
  std::vector<Gap> gaps;
  for (size_t i = first; i < queue_.size(); ++i) {
    const core::FramePtr& f = queue_[i];
    bool drop = false;
    if (!f->is_control()) {
      if (policy == core::SlowPolicy::kLatestOnly) {
        drop = f->channel == frame.channel;
      } else {
        drop = queued_bytes_ + frame.text.size() > max;
      }
    }
    if (!drop) {
      kept.push_back(f);
      continue;
    }
    Account(*f, false);
    stats.dropped.fetch_add(1, std::memory_order_relaxed);
    state_.metrics.frames_dropped_total.fetch_add(1, std::memory_order_relaxed);
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
  queue_ = std::move(kept);
  // Gap frames are control frames: they may use the control allowance, not the event's room.
  const bool fits = queued_bytes_ + frame.text.size() <= max;
  // Gap frames go where the dropped frames were: before what is left of the queue.
  for (auto it = gaps.rbegin(); it != gaps.rend(); ++it) {
    auto gap = core::MakeControlFrame(core::Cat(R"({"type":"gap","channel":)",
                                                core::JsonQuote(it->channel), R"(,"from":)",
                                                it->from, R"(,"to":)", it->to, "}"));
    Account(*gap, true);
    queue_.insert(queue_.begin() + first, gap);
    stats.gaps.fetch_add(1, std::memory_order_relaxed);
  }
  return fits;
}

void WsSession::CloseSlow(int ns) {
  state_.metrics.slow_consumer_closes_total.fetch_add(1, std::memory_order_relaxed);
  if (ns >= 0) state_.hub.namespace_stats(ns).slow_closes.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("{}: slow consumer, {} bytes queued; closing 4008", connection_id_, queued_bytes_);
  leave_reason_ = "slow_consumer";
  Close(kCloseSlowConsumer, "slow consumer");
}

void WsSession::SendControl(std::string frame) {
  if (close_queued_ || !open_) return;
  control_queue_.push_back(std::move(frame));
  if (!writing_) DoWrite();
}

void WsSession::DoWrite() {
  // Everything queued leaves in one gather write: control frames first, then up to 64 data
  // frames or 256 KiB, each behind its own header.
  constexpr size_t kMaxFrames = 64;
  constexpr size_t kMaxBytes = 256 * 1024;
  buffers_.clear();
  headers_.clear();
  writing_control_.clear();
  writing_control_.swap(control_queue_);
  for (const auto& c : writing_control_) buffers_.emplace_back(c.data(), c.size());
  size_t bytes = 0;
  size_t n = 0;
  if (!close_sent_) {
    while (n < queue_.size() && n < kMaxFrames && (n == 0 || bytes < kMaxBytes)) {
      headers_.push_back(core::BuildWsHeader(core::WsOpcode::kText, queue_[n]->text.size()));
      bytes += queue_[n]->text.size();
      ++n;
    }
    for (size_t i = 0; i < n; ++i) {
      buffers_.emplace_back(headers_[i].bytes.data(), headers_[i].size);
      buffers_.emplace_back(queue_[i]->text.data(), queue_[i]->text.size());
    }
  }
  // The close frame goes last, once every frame still queued (errors, pongs) is out.
  writing_close_ = false;
  if (!close_frame_.empty() && !close_sent_ && n == queue_.size()) {
    buffers_.emplace_back(close_frame_.data(), close_frame_.size());
    writing_close_ = true;
  }
  if (buffers_.empty()) return;
  writing_frames_ = n;
  writing_ = true;
  transport_.WriteGather(buffers_,
                         beast::bind_front_handler(&WsSession::OnWrite, shared_from_this()));
}

void WsSession::OnWrite(beast::error_code ec, size_t bytes) {
  writing_ = false;
  transport_.WriteDone();
  for (size_t i = 0; i < writing_frames_ && !queue_.empty(); ++i) {
    Account(*queue_.front(), false);
    queue_.pop_front();
  }
  state_.metrics.frames_sent_total.fetch_add(writing_frames_, std::memory_order_relaxed);
  state_.metrics.bytes_sent_total.fetch_add(bytes, std::memory_order_relaxed);
  writing_frames_ = 0;
  bool wrote_close = writing_close_;
  writing_close_ = false;
  writing_control_.clear();
  if (ec) {
    closing_ = true;
    CutSocket();
    return;
  }
  if (wrote_close) {
    // The close handshake: no more frames; wait (bounded by close_timer_) for the peer's close
    // or EOF, which ends the read loop.
    close_sent_ = true;
    transport_.ShutdownSend();
    return;
  }
  if (!queue_.empty() || !control_queue_.empty() || !close_frame_.empty()) DoWrite();
}

void WsSession::CutSocket() { transport_.Cut(); }

void WsSession::ScheduleHeartbeat() {
  // Ticks every heartbeat interval, or every half idle timeout when that is shorter: sends the
  // JSON ping (for browsers, whose API hides ping frames) and a WebSocket ping, and closes a
  // connection from which nothing arrived for the idle timeout.
  auto tick = std::min(
      state_.options.heartbeat_interval,
      std::chrono::duration_cast<std::chrono::milliseconds>(state_.options.idle_timeout / 2));
  heartbeat_timer_.expires_after(tick);
  heartbeat_timer_.async_wait([weak = weak_from_this(), tick](beast::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || self->closing_) return;
    auto now = std::chrono::steady_clock::now();
    if (now - self->last_read_ >= self->state_.options.idle_timeout) {
      self->leave_reason_ = "idle_timeout";
      self->state_.metrics.idle_timeouts_total.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("{}: idle timeout", self->connection_id_);
      self->Close(1001, "idle timeout");
      return;
    }
    self->SendControl(core::BuildWsControlFrame(core::WsOpcode::kPing, ""));
    self->heartbeat_elapsed_ += tick;
    if (self->heartbeat_elapsed_ >= self->state_.options.heartbeat_interval) {
      self->heartbeat_elapsed_ = std::chrono::milliseconds(0);
      self->Send(core::PingFrame());
    }
    self->ScheduleHeartbeat();
  });
}

void WsSession::Close(uint16_t code, std::string reason) {
  if (close_queued_ || !open_) return;
  if (reason.size() > 120) reason.resize(120);  // a close frame carries at most 123 bytes
  closing_ = true;
  close_queued_ = true;
  if (code == 1001 && leave_reason_ == "closed") leave_reason_ = "shutdown";
  heartbeat_timer_.cancel();
  auth_timer_.cancel();
  // Events not yet handed to the socket are dropped; control frames (an error saying why) and
  // the write in flight go out before the close frame.
  size_t keep = writing_ ? writing_frames_ : 0;
  std::deque<core::FramePtr> kept(queue_.begin(), queue_.begin() + keep);
  size_t dropped = 0;
  for (size_t i = keep; i < queue_.size(); ++i) {
    if (queue_[i]->is_control()) {
      kept.push_back(queue_[i]);
    } else {
      Account(*queue_[i], false);
      ++dropped;
    }
  }
  queue_ = std::move(kept);
  state_.metrics.frames_dropped_total.fetch_add(dropped, std::memory_order_relaxed);
  close_frame_ = core::BuildWsCloseFrame(code, reason);
  if (!writing_) DoWrite();
  // A peer that reads nothing never lets the close frame out: cut the socket after a bound.
  close_timer_.expires_after(state_.options.close_timeout);
  close_timer_.async_wait([weak = weak_from_this()](beast::error_code ec) {
    auto self = weak.lock();
    if (ec || !self) return;
    self->CutSocket();
  });
}

}  // namespace bridge::ws
