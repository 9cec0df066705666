// One HTTP connection before (or instead of) a WebSocket upgrade: the TLS handshake when the
// listener serves TLS, then routing of /ws/..., /healthz, /metrics and the demo page, with bounded
// header size and one deadline (WsOptions::handshake_timeout) for each request and its answer.
// An accepted upgrade is answered here (101) and the transport handed to a WsSession.
//
// A refused WebSocket upgrade is answered, when the request is a valid upgrade, with a 101 and at
// once a close frame whose code and reason say why (core::CloseCode 4004, 4400, 4429, 4503):
// browsers see only 1006 for an HTTP status. The connection then waits for the client's close
// frame (bounded by --close_timeout; at accept, by the handshake deadline already running) and
// ends; it never becomes a WsSession. Plain HTTP requests, malformed upgrades and a refused
// Origin (403: a cross-site page must not get a WebSocket at all) keep their HTTP statuses;
// docs/protocol.md "Errors before and right after the upgrade" has the table.
//
// Every connection counts against --max_connections (with the open WebSockets) and the per-address
// limit from accept on, so idle keep-alive connections cannot exhaust the server; an upgrade
// hands its slot to the WsSession, a refused one keeps it until it ends.
//
// Owns itself; runs on its shard's io thread.
#ifndef BRIDGE_WS_HTTP_SESSION_H_
#define BRIDGE_WS_HTTP_SESSION_H_

#include <array>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <memory>
#include <optional>

#include "core/protocol.h"
#include "core/upgrade_refusal.h"
#include "core/uri.h"
#include "ws/server_state.h"
#include "ws/transport.h"
#include "ws/ws_session.h"

namespace bridge::ws {

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  // Under TLS (state.tls set) the transport starts with the TLS handshake.
  HttpSession(boost::asio::ip::tcp::socket&& socket, ServerState& state, size_t shard);
  ~HttpSession();
  // Counts the connection against --max_connections and the per-address limit (refused with
  // 503/429 past them, keep-alive connections included), then reads requests.
  void Run();

 private:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  using Response = boost::beast::http::response<boost::beast::http::string_body>;

  // Refuses a connection over a limit before reading anything from it. Plain TCP: the request
  // head is sniffed through discard_ (core::UpgradeSniffer: no parser, no buffer growth) and a
  // WebSocket upgrade gets a 101 and close `code`, anything else the plain-text `reply`; both
  // under the one deadline armed here. TLS connections are just closed: no handshake is spent
  // on a refusal.
  void RefuseAtAccept(core::CloseCode code, std::string_view reason, std::string_view reply);
  void SniffForUpgrade(core::CloseCode code, std::string_view reason, std::string_view reply);
  // Answers a valid upgrade request with its 101 and a close frame (`code`, `reason` cut to 123
  // bytes between characters), then waits for the client's close frame. `rearm`: bound the wait
  // by --close_timeout (after a request was read; at accept the running deadline bounds it).
  // `pipelined`: bytes the client sent after its request head (frames it did not wait to send).
  void RefuseAfterUpgrade(std::string_view accept, core::CloseCode code, std::string_view reason,
                          bool rearm, std::string_view pipelined);
  void AwaitPeerClose();
  // TLS: the first byte decides between the handshake and a plain-text 400.
  void OnFirstBytes(boost::beast::error_code ec);
  void DrainAfterPlainReply();
  void OnHandshake(boost::beast::error_code ec);
  // Bounds what follows (a read and the answer to it, or a refusal's close handshake).
  void ArmDeadline(std::chrono::milliseconds timeout);
  void DoRead();
  void OnRead(boost::beast::error_code ec, size_t bytes);
  void Route(Request req);
  // `target` is req's parsed target (Route parsed it already); null when it did not parse.
  void Upgrade(Request req, const core::RequestTarget* target);
  void Reply(Response res);
  Response MakeResponse(unsigned status, std::string content_type, std::string body,
                        const Request& req) const;
  void OnWrite(bool close, boost::beast::error_code ec, size_t bytes);
  void OnUpgradeWritten(boost::beast::error_code ec, size_t bytes);

  Transport transport_;
  boost::asio::steady_timer deadline_;
  boost::beast::flat_buffer buffer_;
  ServerState& state_;
  // The limits this connection was accepted under (read once; a reload changes later ones).
  const std::shared_ptr<const WsOptions> options_;
  const size_t shard_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  std::shared_ptr<Response> pending_;
  std::array<char, 256> discard_;  // input read and dropped after a plain-text refusal
  std::string refusal_;            // the 101 and close frame of a refused upgrade, being written
  std::optional<core::UpgradeSniffer> sniffer_;  // at accept: is the refused request an upgrade?
  core::CloseWaiter close_waiter_;
  // What the WebSocket session gets once its 101 is written.
  struct PendingUpgrade {
    WsSession::InitialSubscription initial;
    std::string identity;
    std::string token;
    std::string counted_ip;
  };
  std::optional<PendingUpgrade> upgrade_;
  std::string counted_ip_;  // the per-address slot this connection holds ("" when none)
};

}  // namespace bridge::ws

#endif  // BRIDGE_WS_HTTP_SESSION_H_
