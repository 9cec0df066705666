// One HTTP connection before (or instead of) a WebSocket upgrade: the TLS handshake when the
// listener serves TLS, then routing of /ws/..., /healthz, /metrics and the demo page, with bounded
// header size and one deadline (WsOptions::handshake_timeout) for each request and its answer.
// An accepted upgrade is answered here (101) and the transport handed to a WsSession.
//
// Every connection counts against --max_connections (with the open WebSockets) and the per-address
// limit from accept on, so idle keep-alive connections cannot exhaust the server; an upgrade
// hands its slot to the WsSession.
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

  // A plain-text answer, then the connection ends (TLS connections are just closed: no
  // handshake is spent on a refusal).
  void RefuseAtAccept(std::string_view reply);
  // TLS: the first byte decides between the handshake and a plain-text 400.
  void OnFirstBytes(boost::beast::error_code ec);
  void DrainAfterPlainReply();
  void OnHandshake(boost::beast::error_code ec);
  // Bounds what follows (a read, the answer to it) by the handshake timeout.
  void ArmDeadline();
  void DoRead();
  void OnRead(boost::beast::error_code ec, size_t bytes);
  void Route(Request req);
  // `target` is req's parsed target (Route parsed it already).
  void Upgrade(Request req, const core::RequestTarget& target);
  void Reply(Response res);
  Response MakeResponse(unsigned status, std::string content_type, std::string body,
                        const Request& req) const;
  void OnWrite(bool close, boost::beast::error_code ec, size_t bytes);
  void OnUpgradeWritten(boost::beast::error_code ec, size_t bytes);

  Transport transport_;
  boost::asio::steady_timer deadline_;
  boost::beast::flat_buffer buffer_;
  ServerState& state_;
  const size_t shard_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  std::shared_ptr<Response> pending_;
  std::array<char, 256> discard_;  // input read and dropped after a plain-text refusal
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
