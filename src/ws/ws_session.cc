#include "ws/ws_session.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "core/channel.h"
#include "core/client_frame.h"
#include "core/frame.h"
#include "core/log.h"
#include "core/protocol.h"
#include "core/strings.h"
#include "core/utf8.h"

namespace bridge::ws {

namespace beast = boost::beast;
using core::CloseCode;
using core::CloseValue;
using core::ErrorCode;

namespace {

constexpr size_t kInitialReadBuffer = 512;
// After a message, a read buffer larger than this with little left in it goes back to the
// initial size: a connection keeps its peak only while it uses it.
constexpr size_t kKeepReadBuffer = 4096;
// A burst of refusals ends after this long without one.
constexpr auto kRefusalBurstGap = std::chrono::seconds(1);

WriteQueue::Limits QueueLimits(const WsOptions& o) {
  WriteQueue::Limits l;
  l.max_bytes = o.max_queue_bytes;
  l.max_total_bytes = o.max_total_queue_bytes;
  return l;
}

}  // namespace

WsSession::WsSession(Transport&& transport, std::string_view buffered, ServerState& state,
                     std::shared_ptr<const WsOptions> options, size_t shard,
                     InitialSubscription initial, std::string identity, std::string token,
                     std::string counted_ip)
    : transport_(std::move(transport)),
      state_(state),
      options_(std::move(options)),
      shard_(shard),
      id_(state.next_connection_id.fetch_add(1, std::memory_order_relaxed)),
      connection_id_(core::Cat("c-", id_)),
      identity_(std::move(identity)),
      initial_(std::move(initial)),
      decoder_(options_->max_frame_bytes),
      queue_(QueueLimits(*options_), state.hub, state.metrics),
      token_(std::move(token)),
      counted_ip_(std::move(counted_ip)),
      authenticated_(!state.auth.enabled()),
      message_gate_(options_->client_message_rate, options_->client_message_burst, "messages"),
      subscribe_gate_(options_->subscribe_rate, options_->subscribe_burst,
                      "subscribe/unsubscribe frames"),
      heartbeat_timer_(transport_.get_executor()),
      close_timer_(transport_.get_executor()),
      auth_timer_(transport_.get_executor()) {
  // Small to start: most connections only ever send pings and subscribes; DoRead grows it.
  read_buffer_.resize(std::max(kInitialReadBuffer, buffered.size()));
  if (!buffered.empty()) std::memcpy(read_buffer_.data(), buffered.data(), buffered.size());
  read_size_ = buffered.size();
  state_.metrics.connections_current.fetch_add(1, std::memory_order_relaxed);
  boost::system::error_code ec;
  auto remote = transport_.lowest().remote_endpoint(ec);
  if (!ec) remote_ = core::Cat(remote.address().to_string(), ":", remote.port());
  opened_at_ = std::chrono::steady_clock::now();
  queue_.MeasureLatency(
      &state.hub.delivery_latency(), shard,
      std::chrono::duration_cast<std::chrono::nanoseconds>(opened_at_.time_since_epoch()).count());
}

WsSession::~WsSession() {
  if (open_ && !close_recorded_) state_.closes.Record(1006, "connection lost", connection_id_);
  for (const auto& ch : channels_) state_.hub.Unsubscribe(shard_, ch, this, leave_reason_);
  if (open_) state_.registries[shard_].erase(this);
  if (!counted_ip_.empty()) state_.ReleaseIp(counted_ip_);
  state_.metrics.connections_current.fetch_sub(1, std::memory_order_relaxed);
  if (!open_) return;
  state_.metrics.CountClose(close_code_);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - opened_at_)
                      .count();
  core::log::Write(spdlog::level::info, "connection closed",
                   {{"conn", connection_id_},
                    {"remote", remote_},
                    {"identity", identity_},
                    {"channels", channels_.size()},
                    {"code", close_code_},
                    {"reason", close_reason_},
                    {"cause", leave_reason_},
                    {"by", close_code_ == 1006 ? "network" : (peer_closed_ ? "client" : "server")},
                    {"duration_ms", ms}});
}

void WsSession::Start() {
  open_ = true;
  last_read_ = std::chrono::steady_clock::now();
  state_.registries[shard_].insert(this);
  state_.metrics.connections_total.fetch_add(1, std::memory_order_relaxed);
  core::log::Write(spdlog::level::info, "connection opened",
                   {{"conn", connection_id_},
                    {"remote", remote_},
                    {"identity", identity_},
                    {"channel", initial_.channel},
                    {"tls", transport_.is_tls()}});
  if (state_.draining.load()) {
    Close(CloseValue(CloseCode::kGoingAway), "server shutting down");
    return;
  }
  ScheduleHeartbeat();
  if (authenticated_) {
    OnAuthenticated();
  } else if (!token_.empty()) {
    Authenticate(std::exchange(token_, ""));
  } else {
    auth_timer_.expires_after(state_.auth_timeout.load(std::memory_order_relaxed));
    auth_timer_.async_wait([weak = weak_from_this()](beast::error_code ec) {
      auto self = weak.lock();
      if (ec || !self || self->authenticated_) return;
      self->state_.metrics.CountAuthFailure(core::AuthFailure::kTimeout);
      self->Close(CloseValue(CloseCode::kUnauthenticated), "authentication timeout");
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
    state_.metrics.CountAuthFailure(
        core::ClassifyAuthFailure(std::string(principal.status().message())));
    std::string why(principal.status().message());
    if (!authenticated_) return Close(CloseValue(CloseCode::kUnauthenticated), why);
    return SendError(ErrorCode::kUnauthenticated, why);  // a failed refresh keeps the old token
  }
  if (authenticated_ && principal->subject != identity_) {
    return SendError(ErrorCode::kUnauthenticated, "a refreshed token must have the same subject");
  }
  principal_ = std::move(*principal);
  identity_ = principal_->subject;
  auth_timer_.cancel();
  // The session ends where verification would start refusing the token: its expiry plus the
  // verifier's leeway. The frame tells the client that deadline.
  const auto& deadline = principal_->deadline;
  if (deadline && *deadline != std::chrono::system_clock::time_point::max()) {
    auto left = *deadline - std::chrono::system_clock::now();
    auth_timer_.expires_after(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(left));
    auth_timer_.async_wait([weak = weak_from_this()](beast::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      self->leave_reason_ = "auth_expired";
      self->Close(CloseValue(CloseCode::kUnauthenticated), "token expired");
    });
  }
  Send(core::WithContext(core::AuthenticatedFrame(identity_, deadline), answer_));
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
  const size_t free = read_buffer_.size() - read_size_;
  const size_t wanted = decoder_.wanted();
  // Grow with what actually arrives: when the buffer is full, or the last read filled it and the
  // current frame wants more, double it, up to what the frame still needs (never to a length a
  // header merely announced). The decoder refuses frames over the message limit first.
  if (free == 0 || (last_read_filled_ && wanted > free)) {
    size_t grown = read_buffer_.size() * 2;
    if (wanted > 0) grown = std::min(grown, std::max(read_size_ + wanted, read_size_ + 1));
    read_buffer_.resize(std::max(grown, read_size_ + 1));
  }
  read_request_ = read_buffer_.size() - read_size_;
  transport_.async_read_some(boost::asio::buffer(read_buffer_.data() + read_size_, read_request_),
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
  state_.metrics.bytes_received_total.fetch_add(bytes, std::memory_order_relaxed);
  last_read_filled_ = bytes == read_request_;
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
  auto fail = [&](CloseCode code, const char* reason, const char* why) {
    leave_reason_ = why;
    Close(CloseValue(code), reason);
    discard_input_ = true;
    read_size_ = 0;
    return false;
  };
  for (;;) {
    size_t consumed = 0;
    auto event = decoder_.Feed(read_buffer_.data() + offset, read_size_ - offset, consumed);
    offset += consumed;
    switch (event) {
      case core::WsDecoder::Event::kNeedMore:
        read_size_ -= offset;
        if (read_buffer_.size() > kKeepReadBuffer && read_size_ <= kInitialReadBuffer &&
            decoder_.wanted() <= kInitialReadBuffer) {
          // The large message is done: give its memory back.
          std::vector<uint8_t> small(kInitialReadBuffer);
          std::memcpy(small.data(), read_buffer_.data() + offset, read_size_);
          read_buffer_.swap(small);
        } else {
          std::memmove(read_buffer_.data(), read_buffer_.data() + offset, read_size_);
        }
        return true;
      case core::WsDecoder::Event::kMessage:
        state_.metrics.frames_received_total.fetch_add(1, std::memory_order_relaxed);
        if (closing_) break;
        if (!decoder_.message_is_text()) {
          SendError(ErrorCode::kBinaryNotSupported, "send JSON text frames");
        } else {
          HandleText(decoder_.message());
        }
        break;
      case core::WsDecoder::Event::kPing:
        if (!closing_) {
          SendControl(core::BuildWsControlFrame(core::WsOpcode::kPong, decoder_.control_payload()));
        }
        break;
      case core::WsDecoder::Event::kPong:
        break;
      case core::WsDecoder::Event::kClose: {
        // The peer closes: answer with its code (1000 when it gave none); its EOF ends us. The
        // decoder refused codes a peer may not send.
        uint16_t code = decoder_.close_code();
        if (code == 1005) code = CloseValue(CloseCode::kNormal);
        if (!queue_.closed()) peer_closed_ = true;
        Close(code, "");
        discard_input_ = true;
        read_size_ = 0;
        return false;
      }
      case core::WsDecoder::Event::kTooBig:
        state_.metrics.frame_too_big_total.fetch_add(1, std::memory_order_relaxed);
        state_.metrics.CountLimit(core::Limit::kFrameSize);
        spdlog::debug("{}: closed 1009, frame over {} bytes", connection_id_,
                      options_->max_frame_bytes);
        return fail(CloseCode::kTooBig, "frame too big", "frame_too_big");
      case core::WsDecoder::Event::kProtocolError:
        state_.metrics.protocol_errors_total.fetch_add(1, std::memory_order_relaxed);
        return fail(CloseCode::kProtocolError, "protocol error", "protocol_error");
      case core::WsDecoder::Event::kInvalidUtf8:
        state_.metrics.protocol_errors_total.fetch_add(1, std::memory_order_relaxed);
        return fail(CloseCode::kInvalidData, "invalid UTF-8", "invalid_utf8");
    }
  }
}

void WsSession::HandleText(std::string_view text) {
  core::ClientFrameError error;
  auto frame = core::ParseClientFrame(text, error);
  if (!frame) {
    // A refused frame costs the client a message token like an accepted one: garbage cannot buy
    // an unlimited stream of error frames.
    if (!Admit(message_gate_)) return;
    return SendError(error.code, error.message);
  }
  if (!authenticated_ && frame->kind != core::ClientFrame::Kind::kAuth &&
      frame->kind != core::ClientFrame::Kind::kPing) {
    state_.metrics.CountAuthFailure(core::AuthFailure::kMissing);
    return Close(CloseValue(CloseCode::kUnauthenticated), "authenticate first");
  }
  // Whatever answers this frame carries its id and channel; cleared once it is handled.
  answer_ = core::AnswerContext{frame->id, frame->channel};
  struct Clear {
    core::AnswerContext& a;
    ~Clear() { a = {}; }
  } clear{answer_};
  switch (frame->kind) {
    case core::ClientFrame::Kind::kPing:
      Send(core::WithContext(core::PongFrame(), answer_));
      return;
    case core::ClientFrame::Kind::kPong:
      return;
    case core::ClientFrame::Kind::kAuth:
      if (state_.auth.enabled()) Authenticate(frame->token);  // ignored while auth is off
      return;
    case core::ClientFrame::Kind::kSubscribe: {
      if (!Admit(subscribe_gate_)) return;
      std::optional<core::RecoveryRequest> recovery;
      if (frame->since.has_value()) recovery = core::RecoveryRequest{*frame->since, frame->epoch};
      HandleSubscribe(frame->channel, recovery, true);
      return;
    }
    case core::ClientFrame::Kind::kUnsubscribe:
      if (!Admit(subscribe_gate_)) return;
      HandleUnsubscribe(frame->channel);
      return;
    case core::ClientFrame::Kind::kHistory:
      if (!Admit(subscribe_gate_)) return;
      HandleHistory(*frame);
      return;
    case core::ClientFrame::Kind::kPresence:
      if (!Admit(subscribe_gate_)) return;
      HandlePresence(*frame);
      return;
    case core::ClientFrame::Kind::kMessage:
      HandleMessage(*frame);
      return;
  }
}

absl::AnyInvocable<void(absl::AnyInvocable<void(WsSession&)>)> WsSession::OnSessionThread() {
  std::weak_ptr<WsSession> weak = weak_from_this();
  boost::asio::io_context* ioc = state_.shards[shard_];
  return [weak, ioc](absl::AnyInvocable<void(WsSession&)> task) mutable {
    if (ioc->get_executor().running_in_this_thread()) {
      if (auto self = weak.lock()) task(*self);
      return;
    }
    boost::asio::post(*ioc, [weak, task = std::move(task)]() mutable {
      if (auto self = weak.lock()) task(*self);
    });
  };
}

bool WsSession::MayRead(const std::string& channel) {
  if (absl::Status s = core::ValidateChannel(channel); !s.ok()) {
    SendError(ErrorCode::kInvalidChannel, std::string(s.message()));
    return false;
  }
  if (state_.hub.namespaces().Find(core::NamespaceOf(channel)) == nullptr) {
    SendError(ErrorCode::kInvalidChannel,
              core::Cat("unknown namespace '", core::NamespaceOf(channel), "'"));
    return false;
  }
  if (principal_ && !principal_->CanSubscribe(channel)) {
    state_.metrics.CountAuthFailure(core::AuthFailure::kForbidden);
    SendError(ErrorCode::kForbidden, "token does not grant " + channel);
    return false;
  }
  return OwnsIfPersonal(channel);
}

bool WsSession::OwnsIfPersonal(const std::string& channel) {
  const core::NamespaceConfig* ns = state_.hub.namespaces().Find(core::NamespaceOf(channel));
  if (ns == nullptr || ns->Owns(identity_, channel)) return true;
  state_.metrics.CountAuthFailure(core::AuthFailure::kNotOwner);
  SendError(ErrorCode::kForbidden, core::Cat("namespace '", ns->name, "' has personal channels: ",
                                             channel, " is not this connection's"));
  return false;
}

bool WsSession::NamespaceReadAllowed(const core::NamespaceConfig& ns, const std::string& channel,
                                     core::ClientReads who, std::string_view what) {
  if (who == core::ClientReads::kGranted) return true;
  if (who == core::ClientReads::kSubscribed && Subscribed(channel)) return true;
  state_.metrics.CountAuthFailure(core::AuthFailure::kNamespaceReads);
  SendError(
      ErrorCode::kForbidden,
      who == core::ClientReads::kNobody
          ? core::Cat("namespace '", ns.name, "' does not answer ", what, " frames")
          : core::Cat("namespace '", ns.name, "' answers ", what,
                      " frames only on a subscribed channel: subscribe to ", channel, " first"));
  return false;
}

void WsSession::HandleHistory(const core::ClientFrame& frame) {
  if (!MayRead(frame.channel)) return;
  const core::NamespaceConfig* ns = state_.hub.namespaces().Find(core::NamespaceOf(frame.channel));
  if (!NamespaceReadAllowed(*ns, frame.channel, ns->client_history, "history")) return;
  // At most the namespace's history size per answer (0 or none asked: that many).
  size_t limit = ns->history_size;
  if (frame.limit.has_value() && *frame.limit != 0 && *frame.limit < limit) limit = *frame.limit;
  if (limit == 0) {
    return Send(core::HistoryAnswerFrame(answer_, "", 0, false, {}));
  }
  state_.hub.HistoryAsync(
      frame.channel, frame.since.value_or(0), limit,
      [context = answer_, on = OnSessionThread()](absl::StatusOr<core::HistoryResult> h) mutable {
        on([context, h = std::move(h)](WsSession& self) mutable {
          if (!h.ok()) {
            return self.SendError(context, ErrorCode::kUnavailable,
                                  core::Cat("history unavailable: ", h.status().message()));
          }
          self.Send(core::HistoryAnswerFrame(context, h->epoch, h->offset, h->complete, h->frames));
        });
      });
}

void WsSession::HandlePresence(const core::ClientFrame& frame) {
  if (!MayRead(frame.channel)) return;
  const core::NamespaceConfig* ns = state_.hub.namespaces().Find(core::NamespaceOf(frame.channel));
  if (!ns->presence) {
    return SendError(ErrorCode::kInvalidChannel,
                     core::Cat("namespace '", ns->name, "' keeps no presence"));
  }
  if (!NamespaceReadAllowed(*ns, frame.channel, ns->client_presence, "presence")) return;
  state_.hub.PresenceAsync(frame.channel, [context = answer_, on = OnSessionThread()](
                                              absl::StatusOr<core::PresenceResult> p) mutable {
    on([context, p = std::move(p)](WsSession& self) mutable {
      if (!p.ok()) {
        return self.SendError(context, ErrorCode::kUnavailable,
                              core::Cat("presence unavailable: ", p.status().message()));
      }
      std::vector<core::PresenceAnswerMember> members;
      for (auto& m : p->members) {
        members.push_back({std::move(m.identity), m.connections, m.joined_at});
      }
      self.Send(core::PresenceAnswerFrame(context, members, p->connection_count));
    });
  });
}

bool WsSession::Admit(RateGate& gate) {
  auto now = std::chrono::steady_clock::now();
  if (gate.bucket.Take(now)) return true;
  state_.metrics.rate_limited_total.fetch_add(1, std::memory_order_relaxed);
  state_.metrics.CountLimit(&gate == &message_gate_     ? core::Limit::kClientMessageRate
                            : &gate == &subscribe_gate_ ? core::Limit::kSubscribeRate
                                                        : core::Limit::kNamespaceMessageRate);
  // Accepted frames between refusals do not end a burst; a second without refusals does.
  if (gate.refusals > 0 && now - gate.last_refusal > kRefusalBurstGap) gate.refusals = 0;
  gate.last_refusal = now;
  if (gate.refusals++ == 0) {
    SendError(ErrorCode::kRateLimited, core::Cat("at most ", static_cast<uint64_t>(gate.rate), " ",
                                                 gate.what, " per second"));
  }
  if (gate.refusals > gate.burst) {
    leave_reason_ = "rate_limited";
    state_.metrics.rate_limited_closes_total.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("{}: rate limited ({}); closing 4008", connection_id_, gate.what);
    Close(CloseValue(CloseCode::kSlowConsumer), "rate limited");
  }
  return false;
}

bool WsSession::Subscribed(const std::string& channel) const {
  return std::find(channels_.begin(), channels_.end(), channel) != channels_.end();
}

void WsSession::HandleSubscribe(const std::string& channel,
                                const std::optional<core::RecoveryRequest>& recovery, bool ack,
                                bool initial) {
  if (absl::Status s = core::ValidateChannel(channel); !s.ok()) {
    return SendError(ErrorCode::kInvalidChannel, std::string(s.message()));
  }
  if (state_.hub.namespaces().Find(core::NamespaceOf(channel)) == nullptr) {
    return SendError(ErrorCode::kInvalidChannel,
                     core::Cat("unknown namespace '", core::NamespaceOf(channel), "'"));
  }
  if (principal_ && !principal_->CanSubscribe(channel)) {
    state_.metrics.CountAuthFailure(core::AuthFailure::kForbidden);
    if (initial) return Close(CloseValue(CloseCode::kForbidden), "token does not grant " + channel);
    return SendError(ErrorCode::kForbidden, "token does not grant " + channel);
  }
  if (initial &&
      !state_.hub.namespaces().Find(core::NamespaceOf(channel))->Owns(identity_, channel)) {
    state_.metrics.CountAuthFailure(core::AuthFailure::kNotOwner);
    return Close(CloseValue(CloseCode::kForbidden), "a personal channel of another identity");
  }
  if (!OwnsIfPersonal(channel)) return;
  if (!Subscribed(channel) && channels_.size() >= options_->max_channels_per_connection) {
    state_.metrics.CountLimit(core::Limit::kChannelsPerConnection);
    return SendError(
        ErrorCode::kTooManyChannels,
        core::Cat("at most ", options_->max_channels_per_connection, " channels per connection"));
  }
  // Answered at once (embedded, or a live channel) or once the broker has answered; never
  // after this session left the channel (the destructor unsubscribes everything in channels_).
  const bool already = Subscribed(channel);
  if (!already) channels_.push_back(channel);
  state_.hub.SubscribeAsync(
      shard_, channel, this, recovery,
      [this, channel, ack, recovering = recovery.has_value(),
       context = answer_](core::SubscribeResult r) {
        if (r.refused || !r.error.ok()) {
          // Nothing was subscribed: forget the channel (the hub may hold a failed entry).
          state_.hub.Unsubscribe(shard_, channel, this, "refused");
          ForgetChannel(channel);
          if (r.refused) {
            return SendError(context, ErrorCode::kTooManyChannels,
                             "the bridge holds too many channels");
          }
          return SendError(context, ErrorCode::kUnavailable,
                           core::Cat("channel ", channel, " is unavailable: ", r.error.message(),
                                     "; subscribe again later"));
        }
        NoteEpoch(channel, r.epoch);
        if (ack) {
          std::optional<bool> recovered;
          if (recovering) recovered = r.recovered;
          Send(core::WithContext(core::SubscribedFrame(channel, r.epoch, r.offset, recovered),
                                 context));
        }
        for (const auto& f : r.missed) Send(f);
      });
}

void WsSession::HandleUnsubscribe(const std::string& channel) {
  if (!Subscribed(channel)) {
    return SendError(ErrorCode::kNotSubscribed, "not subscribed to " + channel);
  }
  state_.hub.Unsubscribe(shard_, channel, this, "unsubscribed");
  ForgetChannel(channel);
  Send(core::WithContext(core::UnsubscribedFrame(channel), answer_));
}

bool WsSession::NamespaceAdmits(const std::string& channel) {
  const int index = state_.hub.namespaces().IndexOf(core::NamespaceOf(channel));
  if (index < 0) return true;
  const core::NamespaceConfig& ns = state_.hub.namespaces().all()[index];
  if (ns.max_message_bytes > 0 && decoder_.message().size() > ns.max_message_bytes) {
    state_.metrics.CountLimit(core::Limit::kNamespaceMessageBytes);
    SendError(ErrorCode::kMessageTooBig,
              core::Cat("namespace '", ns.name, "' takes messages of at most ",
                        ns.max_message_bytes, " bytes"));
    return false;
  }
  if (ns.client_message_rate <= 0) return true;
  // One bucket per namespace this connection sends on, made at its first message: at most as
  // many as there are namespaces.
  if (namespace_gates_.size() <= static_cast<size_t>(index)) namespace_gates_.resize(index + 1);
  auto& gate = namespace_gates_[index];
  // Made again (full) when a reload changed the namespace's rate.
  if (!gate || gate->rate != ns.client_message_rate || gate->burst != ns.client_message_burst) {
    gate = std::make_unique<RateGate>(ns.client_message_rate, ns.client_message_burst,
                                      "messages on this namespace");
  }
  return Admit(*gate);
}

void WsSession::HandleMessage(core::ClientFrame& frame) {
  // Taken first: refused messages (no channel, not subscribed, forbidden) count too.
  if (!Admit(message_gate_)) return;
  std::string channel = frame.channel;
  if (channel.empty()) {
    if (channels_.size() != 1) {
      return SendError(ErrorCode::kInvalidChannel,
                       channels_.empty() ? "subscribe to a channel before sending messages"
                                         : "name the \"channel\" of the message");
    }
    channel = channels_.front();
  } else if (!Subscribed(channel)) {
    return SendError(ErrorCode::kNotSubscribed, "not subscribed to " + channel);
  }
  // With auth on, the token's `publish` grants gate every client message (broadcast and
  // forwarding to backends alike); no grant means none.
  if (principal_ && !principal_->CanPublish(channel)) {
    state_.metrics.CountAuthFailure(core::AuthFailure::kForbidden);
    return SendError(ErrorCode::kForbidden, "token does not grant publishing to " + channel);
  }
  if (!NamespaceAdmits(channel)) return;
  answer_.channel = channel;  // the one the message went to (a socket's only channel)
  state_.metrics.client_messages_total.fetch_add(1, std::memory_order_relaxed);
  auto now = std::chrono::system_clock::now();
  std::string timestamp = core::FormatTimestamp(now);

  if (state_.hub.backends_may_listen()) {
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
    // The answer (an ack with the offset, or the refusal) may come back on the broker's thread.
    state_.hub.PublishFrameAsync(
        channel, head, tail, id_,
        [context = answer_, on = OnSessionThread(),
         channel](absl::StatusOr<core::PublishResult> r) mutable {
          if (r.ok() && context.id.empty()) return;
          on([context, channel, r = std::move(r)](WsSession& self) {
            if (r.ok()) return self.Send(core::AckFrame(context, r->offset));
            if (r.status().code() == absl::StatusCode::kResourceExhausted) {
              return self.SendError(context, ErrorCode::kTooManyChannels,
                                    "the bridge holds too many channels");
            }
            self.SendError(
                context, ErrorCode::kUnavailable,
                core::Cat("message to ", channel, " not delivered: ", r.status().message()));
          });
        });
    return;
  }
  if (!answer_.id.empty()) Send(core::AckFrame(answer_, 0));
}

void WsSession::SendError(ErrorCode code, std::string_view message) {
  SendError(answer_, code, message);
}

void WsSession::SendError(const core::AnswerContext& context, ErrorCode code,
                          std::string_view message) {
  state_.metrics.client_errors_total.fetch_add(1, std::memory_order_relaxed);
  Send(core::WithContext(core::ErrorFrame(code, message), context));
}

void WsSession::Deliver(const core::FramePtr& frame) {
  // The broker's state of a channel changed: the offsets that follow are of this epoch.
  if (frame->is_control() && !frame->epoch.empty()) NoteEpoch(frame->channel, frame->epoch);
  Send(frame);
}

void WsSession::NoteEpoch(const std::string& channel, const std::string& epoch) {
  if (!Subscribed(channel)) return;
  for (auto& [c, e] : epochs_) {
    if (c == channel) {
      e = epoch;
      return;
    }
  }
  epochs_.emplace_back(channel, epoch);
}

void WsSession::ForgetChannel(const std::string& channel) {
  std::erase(channels_, channel);
  std::erase_if(epochs_, [&](const auto& p) { return p.first == channel; });
}

void WsSession::Send(const core::FramePtr& frame) {
  if (closing_ || !open_) {
    state_.metrics.frames_dropped_total.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (queue_.PushFrame(frame) == WriteQueue::Push::kSlow) return CloseSlow(frame->ns);
  if (!queue_.writing()) DoWrite();
}

void WsSession::SendControl(std::string frame) {
  if (queue_.closed() || !open_) return;
  if (queue_.PushRaw(std::move(frame)) == WriteQueue::Push::kSlow) {
    // Pongs piling up behind a socket the client does not read: a ping flood.
    return CloseSlow(-1);
  }
  if (!queue_.writing()) DoWrite();
}

void WsSession::CloseSlow(int ns) {
  state_.metrics.slow_consumer_closes_total.fetch_add(1, std::memory_order_relaxed);
  state_.metrics.CountLimit(core::Limit::kQueueBytes);
  if (ns >= 0) state_.hub.namespace_stats(ns).slow_closes.fetch_add(1, std::memory_order_relaxed);
  spdlog::debug("{}: slow consumer, {} bytes queued, {} control bytes; closing 4008",
                connection_id_, queue_.queued_bytes(), queue_.control_bytes());
  leave_reason_ = "slow_consumer";
  Close(CloseValue(CloseCode::kSlowConsumer), "slow consumer");
}

void WsSession::DoWrite() {
  if (!queue_.Prepare(buffers_)) return;
  transport_.WriteGather(buffers_,
                         beast::bind_front_handler(&WsSession::OnWrite, shared_from_this()));
}

void WsSession::OnWrite(beast::error_code ec, size_t bytes) {
  transport_.WriteDone();
  WriteQueue::Done done = queue_.Written();
  state_.metrics.frames_sent_total.fetch_add(done.frames, std::memory_order_relaxed);
  state_.metrics.bytes_sent_total.fetch_add(bytes, std::memory_order_relaxed);
  if (ec) {
    closing_ = true;
    CutSocket();
    return;
  }
  if (done.close) {
    // The close handshake: no more frames; wait (bounded by close_timer_) for the peer's close
    // or EOF, which ends the read loop.
    transport_.ShutdownSend();
    return;
  }
  if (queue_.has_pending()) DoWrite();
}

void WsSession::CutSocket() { transport_.Cut(); }

void WsSession::ScheduleHeartbeat() {
  // Ticks every heartbeat interval, or every half idle timeout when that is shorter: sends the
  // JSON ping (for browsers, whose API hides ping frames) and a WebSocket ping, and closes a
  // connection from which nothing arrived for the idle timeout.
  auto tick =
      std::min(options_->heartbeat_interval,
               std::chrono::duration_cast<std::chrono::milliseconds>(options_->idle_timeout / 2));
  heartbeat_timer_.expires_after(tick);
  heartbeat_timer_.async_wait([weak = weak_from_this(), tick](beast::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || self->closing_) return;
    auto now = std::chrono::steady_clock::now();
    if (now - self->last_read_ >= self->options_->idle_timeout) {
      self->leave_reason_ = "idle_timeout";
      self->state_.metrics.idle_timeouts_total.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("{}: idle timeout", self->connection_id_);
      self->Close(CloseValue(CloseCode::kGoingAway), "idle timeout");
      return;
    }
    self->SendControl(core::BuildWsControlFrame(core::WsOpcode::kPing, ""));
    self->heartbeat_elapsed_ += tick;
    if (self->heartbeat_elapsed_ >= self->options_->heartbeat_interval) {
      self->heartbeat_elapsed_ = std::chrono::milliseconds(0);
      self->Send(core::PingFrame());
    }
    self->ScheduleHeartbeat();
  });
}

void WsSession::CloseForShutdown() {
  if (queue_.closed() || !open_) return;
  constexpr std::string_view kReason = "server shutting down";
  // On this thread, the hub's record of each subscription is exactly what was queued so far:
  // the frame goes behind it, so a client that reads it has every event before the positions.
  std::vector<core::ResumePosition> positions;
  for (const std::string& channel : channels_) {
    auto epoch = std::find_if(epochs_.begin(), epochs_.end(),
                              [&](const auto& p) { return p.first == channel; });
    if (epoch == epochs_.end() || epoch->second.empty()) continue;
    std::optional<uint64_t> offset = state_.hub.DeliveredOffset(shard_, channel, this);
    if (!offset) continue;  // still waiting for the broker: the client's own since stands
    positions.push_back(core::ResumePosition{channel, epoch->second, *offset});
  }
  Send(core::ReconnectFrame(kReason, positions));
  Close(CloseValue(CloseCode::kGoingAway), std::string(kReason), /*flush=*/true);
}

void WsSession::Close(uint16_t code, std::string reason, bool flush) {
  if (queue_.closed() || !open_) return;
  // A close frame carries at most 123 bytes of reason, cut between characters.
  reason.resize(core::TruncateUtf8(reason, 120).size());
  closing_ = true;
  close_code_ = code;
  close_reason_ = reason;
  state_.closes.Record(code, reason, connection_id_);
  close_recorded_ = true;
  if (code == CloseValue(CloseCode::kGoingAway) && leave_reason_ == "closed") {
    leave_reason_ = "shutdown";
  }
  heartbeat_timer_.cancel();
  auth_timer_.cancel();
  queue_.Close(core::BuildWsCloseFrame(code, reason), flush);
  if (!queue_.writing()) DoWrite();
  // A peer that reads nothing never lets the close frame out: cut the socket after a bound.
  close_timer_.expires_after(options_->close_timeout);
  close_timer_.async_wait([weak = weak_from_this()](beast::error_code ec) {
    auto self = weak.lock();
    if (ec || !self) return;
    self->CutSocket();
  });
}

}  // namespace bridge::ws
