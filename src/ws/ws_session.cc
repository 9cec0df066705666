#include "ws/ws_session.h"

#include <spdlog/spdlog.h>

#include "core/channel.h"
#include "core/client_frame.h"
#include "core/frame.h"
#include "core/strings.h"

namespace bridge::ws {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

namespace {

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

WsSession::WsSession(tcp::socket&& socket, ServerState& state, size_t shard,
                     InitialSubscription initial, std::string identity, std::string token,
                     std::string counted_ip)
    : ws_(std::move(socket)),
      state_(state),
      shard_(shard),
      id_(state.next_connection_id.fetch_add(1, std::memory_order_relaxed)),
      connection_id_(core::Cat("c-", id_)),
      identity_(std::move(identity)),
      initial_(std::move(initial)),
      token_(std::move(token)),
      counted_ip_(std::move(counted_ip)),
      authenticated_(!state.auth.enabled()),
      message_bucket_(state.options.client_message_rate, state.options.client_message_burst),
      heartbeat_timer_(ws_.get_executor()),
      close_timer_(ws_.get_executor()),
      auth_timer_(ws_.get_executor()) {
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

void WsSession::Run(http::request<http::string_body> req) {
  const auto& o = state_.options;
  websocket::stream_base::timeout t{};
  t.handshake_timeout = o.close_timeout;
  t.idle_timeout = o.idle_timeout;
  t.keep_alive_pings = true;
  beast::get_lowest_layer(ws_).expires_never();
  ws_.set_option(t);
  ws_.read_message_max(o.max_frame_bytes);
  ws_.auto_fragment(false);
  ws_.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& res) { res.set(http::field::server, "gathering-bridge"); }));
  ws_.async_accept(req, beast::bind_front_handler(&WsSession::OnAccept, shared_from_this()));
}

void WsSession::OnAccept(beast::error_code ec) {
  if (ec) {
    spdlog::debug("{}: upgrade failed: {}", connection_id_, ec.message());
    return;
  }
  open_ = true;
  state_.registries[shard_].insert(this);
  state_.metrics.connections_total.fetch_add(1, std::memory_order_relaxed);
  ws_.text(true);
  if (state_.draining.load()) {
    Close(1001, "server shutting down");
    return;
  }
  ScheduleHeartbeat();
  DoRead();
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
  ws_.async_read(buffer_, beast::bind_front_handler(&WsSession::OnRead, shared_from_this()));
}

void WsSession::OnRead(beast::error_code ec, size_t) {
  if (ec) {
    if (ec == websocket::error::message_too_big) {
      leave_reason_ = "frame_too_big";
      state_.metrics.frame_too_big_total.fetch_add(1, std::memory_order_relaxed);
      spdlog::info("{}: closed 1009, frame over {} bytes", connection_id_,
                   state_.options.max_frame_bytes);
    } else if (ec == beast::error::timeout) {
      leave_reason_ = "idle_timeout";
      state_.metrics.idle_timeouts_total.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("{}: idle timeout", connection_id_);
    }
    closing_ = true;
    heartbeat_timer_.cancel();
    close_timer_.cancel();
    return;  // the session ends when its last handler returns
  }
  if (!ws_.got_text()) {
    SendError("binary_not_supported", "send JSON text frames");
  } else if (!closing_) {
    auto data = buffer_.cdata();
    HandleText(std::string_view(static_cast<const char*>(data.data()), data.size()));
  }
  buffer_.consume(buffer_.size());
  DoRead();
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
    auto data = buffer_.cdata();
    record->json.assign(static_cast<const char*>(data.data()), data.size());
    state_.hub.ForwardToBackends(record);
  }
  const core::NamespaceConfig* ns = state_.hub.namespaces().Find(core::NamespaceOf(channel));
  if (ns != nullptr && ns->client_broadcast) {
    std::string head, tail;
    core::BuildClientMessageFrame(std::move(frame.object), channel, timestamp, connection_id_, head,
                                  tail);
    state_.hub.PublishFrame(channel, head, tail, id_);
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
  if (queued_bytes_ + frame->text.size() > max) {
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
  // The frame at the front is being written when writing_: it stays.
  const size_t first = writing_ ? 1 : 0;
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

void WsSession::DoWrite() {
  writing_ = true;
  const auto& text = queue_.front()->text;
  ws_.async_write(boost::asio::buffer(text.data(), text.size()),
                  beast::bind_front_handler(&WsSession::OnWrite, shared_from_this()));
}

void WsSession::OnWrite(beast::error_code ec, size_t bytes) {
  writing_ = false;
  if (!queue_.empty()) {
    Account(*queue_.front(), false);
    queue_.pop_front();
  }
  if (ec) {
    closing_ = true;
    return;
  }
  state_.metrics.frames_sent_total.fetch_add(1, std::memory_order_relaxed);
  state_.metrics.bytes_sent_total.fetch_add(bytes, std::memory_order_relaxed);
  if (!queue_.empty() && !closing_) DoWrite();
}

void WsSession::ScheduleHeartbeat() {
  heartbeat_timer_.expires_after(state_.options.heartbeat_interval);
  heartbeat_timer_.async_wait([weak = weak_from_this()](beast::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || self->closing_) return;
    self->Send(core::PingFrame());
    self->ScheduleHeartbeat();
  });
}

void WsSession::Close(uint16_t code, std::string reason) {
  if (closing_ || !open_) return;
  if (reason.size() > 120) reason.resize(120);  // a close frame carries at most 123 bytes
  closing_ = true;
  heartbeat_timer_.cancel();
  auth_timer_.cancel();
  // Frames not yet handed to the socket are dropped; a write in flight finishes first.
  size_t dropped = writing_ ? queue_.size() - 1 : queue_.size();
  while (queue_.size() > (writing_ ? 1u : 0u)) {
    queued_bytes_ -= queue_.back()->text.size();
    state_.metrics.queued_bytes_current.fetch_sub(static_cast<int64_t>(queue_.back()->text.size()),
                                                  std::memory_order_relaxed);
    queue_.pop_back();
  }
  state_.metrics.frames_dropped_total.fetch_add(dropped, std::memory_order_relaxed);
  ws_.async_close(websocket::close_reason(static_cast<websocket::close_code>(code), reason),
                  [self = shared_from_this()](beast::error_code) { self->close_timer_.cancel(); });
  // A peer that reads nothing never lets the close frame out: cut the socket after a bound.
  close_timer_.expires_after(state_.options.close_timeout);
  close_timer_.async_wait([weak = weak_from_this()](beast::error_code ec) {
    auto self = weak.lock();
    if (ec || !self) return;
    beast::error_code ignored;
    beast::get_lowest_layer(self->ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(self->ws_).socket().close(ignored);
  });
}

}  // namespace bridge::ws
