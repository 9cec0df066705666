// One WebSocket connection: its channels, its bounded write queue, its heartbeat.
//
// Owns itself (shared_from_this in every pending handler) and lives on one io thread, its shard:
// every method runs there, including Deliver, which the hub calls. One write is in flight at a
// time; frames wait in a queue bounded in bytes (WsOptions::max_queue_bytes), and a connection
// whose queue overflows is handled by its namespace's slow-consumer policy (by default closed
// with 4008) rather than allowed to grow or slow anyone else.
//
// What is queued for the client and how a slow one is handled lives in ws/write_queue.h.
//
// HttpSession answers the upgrade; the session then frames the transport itself
// (core/websocket_codec.h) so that every frame queued when the socket becomes writable leaves in
// one gather write: one syscall for many frames instead of one per frame (over TLS: one buffer,
// sealed in as few records as fit).
#ifndef BRIDGE_WS_WS_SESSION_H_
#define BRIDGE_WS_WS_SESSION_H_

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/error.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "auth/principal.h"
#include "core/client_frame.h"
#include "core/hub.h"
#include "core/token_bucket.h"
#include "core/websocket_codec.h"
#include "ws/server_state.h"
#include "ws/transport.h"
#include "ws/write_queue.h"

namespace bridge::ws {

class WsSession : public std::enable_shared_from_this<WsSession>, public core::Subscriber {
 public:
  struct InitialSubscription {
    std::string channel;  // "" for /ws (no channel yet)
    std::optional<core::RecoveryRequest> recovery;
    // Whether to confirm with a `subscribed` frame: always for subscribe frames; for the path's
    // channel only when asked (`?ack=1`) or recovering, so plain clients see only events.
    bool ack = false;
  };

  // `identity` is the `?client=` name (auth off); `token` the `?token=` (auth on; "" to wait for
  // an auth frame); `counted_ip` the address holding a per-IP slot ("" when none). `buffered`:
  // bytes the client sent after its upgrade request, read before the transport's. `options`: the
  // limits the connection was accepted under, kept for its whole life.
  WsSession(Transport&& transport, std::string_view buffered, ServerState& state,
            std::shared_ptr<const WsOptions> options, size_t shard, InitialSubscription initial,
            std::string identity, std::string token, std::string counted_ip);
  ~WsSession() override;

  // Starts the session on its upgraded transport (the 101 is written).
  void Start();

  // Closes with `code`: what is being written and the control frames queued go first, events
  // not yet written are dropped; with `flush`, every frame queued goes out before the close.
  void Close(uint16_t code, std::string reason, bool flush = false);
  // Shutdown: after every frame already queued, a `reconnect` frame telling where each channel
  // resumes (core::ReconnectFrame), then the close 1001.
  void CloseForShutdown();

  // core::Subscriber
  void Deliver(const core::FramePtr& frame) override;
  uint64_t subscriber_id() const override { return id_; }
  const std::string& identity() const override { return identity_; }
  const std::string& connection_id() const override { return connection_id_; }

 private:
  void DoRead();
  void OnRead(boost::beast::error_code ec, size_t bytes);
  // Handles what the decoder finds in the read buffer; false when the connection is done.
  bool ProcessInput();
  // Queues a raw WebSocket control frame (pong, ping).
  void SendControl(std::string frame);
  void CutSocket();
  void HandleText(std::string_view text);
  void HandleSubscribe(const std::string& channel,
                       const std::optional<core::RecoveryRequest>& recovery, bool ack,
                       bool initial = false);
  // Verifies `token`; the first success subscribes the path's channel.
  void Authenticate(const std::string& token);
  void OnAuthenticated();
  void HandleUnsubscribe(const std::string& channel);
  void HandleMessage(core::ClientFrame& frame);
  void HandleHistory(const core::ClientFrame& frame);
  void HandlePresence(const core::ClientFrame& frame);
  // Checks a channel a history/presence frame may read; false (and answered) when it may not.
  bool MayRead(const std::string& channel);
  // The channel's namespace requirements (core/namespaces.h); each false is answered with an
  // error frame and counted. Personal channels: only the owner's identity.
  bool OwnsIfPersonal(const std::string& channel);
  // A history/presence frame's reader policy (`who`) for `channel`.
  bool NamespaceReadAllowed(const core::NamespaceConfig& ns, const std::string& channel,
                            core::ClientReads who, std::string_view what);
  // The namespace's client message limits for the message being handled (size, rate).
  bool NamespaceAdmits(const std::string& channel);
  // Runs `task` on this session's thread if it still exists (inline when already there): for
  // completions that may come back on the broker's thread.
  absl::AnyInvocable<void(absl::AnyInvocable<void(WsSession&)>)> OnSessionThread();
  // Error frames answer the frame being handled (answer_: its id and channel).
  void SendError(core::ErrorCode code, std::string_view message);
  void SendError(const core::AnswerContext& context, core::ErrorCode code,
                 std::string_view message);

  void Send(const core::FramePtr& frame);
  void CloseSlow(int ns);
  void DoWrite();
  void OnWrite(boost::beast::error_code ec, size_t bytes);
  void ScheduleHeartbeat();
  bool Subscribed(const std::string& channel) const;

  Transport transport_;
  ServerState& state_;
  const std::shared_ptr<const WsOptions> options_;
  const size_t shard_;
  const uint64_t id_;
  const std::string connection_id_;
  std::string identity_;  // fixed before the first subscription
  InitialSubscription initial_;
  std::vector<uint8_t> read_buffer_;
  size_t read_size_ = 0;           // bytes of read_buffer_ holding input
  size_t read_request_ = 0;        // the free space the read in flight was given
  bool last_read_filled_ = false;  // it filled all of it: more is likely waiting
  core::WsDecoder decoder_;
  std::chrono::steady_clock::time_point last_read_;
  WriteQueue queue_;
  std::vector<boost::asio::const_buffer> buffers_;  // the write in flight
  bool closing_ = false;
  bool close_recorded_ = false;          // in state_.closes (the admin dashboard)
  bool discard_input_ = false;           // closing: input is read only to see the peer's EOF
  bool open_ = false;                    // the upgrade succeeded and the session is registered
  std::string leave_reason_ = "closed";  // told to backends and presence when we leave
  // For the lifecycle log lines and bridge_connections_closed_total: the close code we sent
  // (ours, or the peer's echoed; 1006 while none was), its reason, and who closed first.
  uint16_t close_code_ = 1006;
  std::string close_reason_;
  bool peer_closed_ = false;
  std::string remote_;  // "address:port" of the peer
  std::chrono::steady_clock::time_point opened_at_;
  std::string token_;
  const std::string counted_ip_;
  bool authenticated_ = false;
  std::optional<auth::Principal> principal_;  // set when auth is on and the token verified
  // Client messages and subscribe/unsubscribe frames, each with its own rate.
  struct RateGate {
    RateGate(double rate, double burst, std::string_view what)
        : bucket(rate, burst), rate(rate), burst(burst), what(what) {}
    core::TokenBucket bucket;
    const double rate;
    const double burst;     // also the refusals a burst may have before the close
    std::string_view what;  // for the error frame and the log ("messages")
    uint32_t refusals = 0;  // in the current burst of refusals
    std::chrono::steady_clock::time_point last_refusal;
  };
  // True when `gate` admits one more frame; otherwise tells the client (one error frame per burst
  // of refusals) and closes 4008 when the burst has more refusals than the gate's burst.
  bool Admit(RateGate& gate);
  RateGate message_gate_;
  RateGate subscribe_gate_;
  // Per namespace (by its index), for namespaces with a client_message_rate; made when first
  // needed.
  std::vector<std::unique_ptr<RateGate>> namespace_gates_;

  std::vector<std::string> channels_;
  // The epoch each subscribed channel's stream follows, as told to the client (subscribe answers,
  // and `subscribed` frames when the broker's state of the channel changed); for the positions
  // of CloseForShutdown. A channel waiting for its answer has none yet.
  std::vector<std::pair<std::string, std::string>> epochs_;
  void NoteEpoch(const std::string& channel, const std::string& epoch);
  void ForgetChannel(const std::string& channel);
  core::AnswerContext answer_;  // the id and channel of the client frame being handled
  boost::asio::steady_timer heartbeat_timer_;
  std::chrono::milliseconds heartbeat_elapsed_{0};
  boost::asio::steady_timer close_timer_;
  boost::asio::steady_timer auth_timer_;  // auth deadline, then token expiry
};

}  // namespace bridge::ws

#endif  // BRIDGE_WS_WS_SESSION_H_
