#include "ws/http_session.h"

#include <spdlog/spdlog.h>

#include <boost/beast/websocket/rfc6455.hpp>

#include "core/channel.h"
#include "core/origin.h"
#include "core/strings.h"
#include "core/uri.h"
#include "core/utf8.h"
#include "core/websocket_codec.h"
#include "ws/page.h"
#include "ws/ws_session.h"

namespace bridge::ws {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = boost::asio::ip::tcp;

namespace {

// Longest ?client= identity, as long as a token subject may be.
constexpr size_t kMaxIdentityBytes = auth::kMaxSubjectBytes;
// Longest ?epoch=: the bridge's epochs are 12 hex digits (core/epoch.h); room for other nodes'.
constexpr size_t kMaxEpochBytes = 64;

// "/ws", "/ws/...", "/ws?...": the WebSocket endpoints.
bool IsWsTarget(std::string_view raw) {
  return raw == "/ws" || raw.starts_with("/ws/") || raw.starts_with("/ws?");
}

Transport MakeTransport(tcp::socket&& socket, ServerState& state) {
  if (auto tls = state.tls()) return Transport(std::move(socket), std::move(tls));
  return Transport(std::move(socket));
}

}  // namespace

HttpSession::HttpSession(tcp::socket&& socket, ServerState& state, size_t shard)
    : transport_(MakeTransport(std::move(socket), state)),
      deadline_(transport_.get_executor()),
      state_(state),
      options_(state.options()),
      shard_(shard) {}

HttpSession::~HttpSession() {
  state_.metrics.http_connections_current.fetch_sub(1, std::memory_order_relaxed);
  if (!counted_ip_.empty()) state_.ReleaseIp(counted_ip_);
}

void HttpSession::Run() {
  const auto open = state_.metrics.http_connections_current.fetch_add(1) + 1 +
                    state_.metrics.connections_current.load(std::memory_order_relaxed);
  if (static_cast<size_t>(open) > options_->max_connections) {
    state_.metrics.connections_rejected_total.fetch_add(1, std::memory_order_relaxed);
    state_.metrics.CountLimit(core::Limit::kMaxConnections);
    state_.metrics.http_connections_rejected_total.fetch_add(1, std::memory_order_relaxed);
    return RefuseAtAccept(
        core::CloseCode::kUnavailable, "too many connections",
        "HTTP/1.1 503 Service Unavailable\r\nServer: gathering-bridge\r\n"
        "Content-Type: text/plain\r\nContent-Length: 21\r\nConnection: close\r\n\r\n"
        "too many connections\n");
  }
  beast::error_code ec;
  auto remote = transport_.lowest().remote_endpoint(ec);
  if (ec) return;
  std::string ip = remote.address().to_string();
  if (!state_.AcquireIp(*options_, ip, remote.address().is_loopback())) {
    state_.metrics.per_ip_rejected_total.fetch_add(1, std::memory_order_relaxed);
    state_.metrics.CountLimit(core::Limit::kPerIpConnections);
    state_.metrics.http_connections_rejected_total.fetch_add(1, std::memory_order_relaxed);
    return RefuseAtAccept(
        core::CloseCode::kTooManyFromIp, "too many connections from this address",
        "HTTP/1.1 429 Too Many Requests\r\nServer: gathering-bridge\r\n"
        "Content-Type: text/plain\r\nContent-Length: 39\r\nConnection: close\r\n\r\n"
        "too many connections from this address\n");
  }
  if (options_->max_connections_per_ip != 0 &&
      !(remote.address().is_loopback() && options_->per_ip_exempt_loopback)) {
    counted_ip_ = std::move(ip);
  }
  if (!transport_.is_tls()) return DoRead();
  ArmDeadline(options_->handshake_timeout);
  transport_.lowest().async_wait(
      tcp::socket::wait_read,
      beast::bind_front_handler(&HttpSession::OnFirstBytes, shared_from_this()));
}

void HttpSession::OnFirstBytes(beast::error_code ec) {
  if (ec) {  // cut at the deadline (nothing sent), or reset
    state_.metrics.tls_handshake_failures_total.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // A TLS connection opens with a handshake record (content type 22). Anything else is most
  // likely plain HTTP sent to the TLS port: it gets a 400 it can read instead of a TLS alert.
  unsigned char first = 0;
  auto& socket = transport_.lowest();
  socket.non_blocking(true, ec);  // the peek must never wait on the io thread
  size_t n = ec ? 0 : socket.receive(boost::asio::buffer(&first, 1), tcp::socket::message_peek, ec);
  if (ec == boost::asio::error::would_block) {
    return socket.async_wait(
        tcp::socket::wait_read,
        beast::bind_front_handler(&HttpSession::OnFirstBytes, shared_from_this()));
  }
  if (ec || n == 0) return;
  if (first == 0x16) {
    transport_.Handshake(beast::bind_front_handler(&HttpSession::OnHandshake, shared_from_this()));
    return;
  }
  state_.metrics.tls_handshake_failures_total.fetch_add(1, std::memory_order_relaxed);
  state_.metrics.http_errors_total.fetch_add(1, std::memory_order_relaxed);
  static constexpr std::string_view kReply =
      "HTTP/1.1 400 Bad Request\r\nServer: gathering-bridge\r\nContent-Type: text/plain\r\n"
      "Content-Length: 45\r\nConnection: close\r\n\r\n"
      "this port speaks TLS: use https:// or wss://\n";
  boost::asio::async_write(transport_.lowest(), boost::asio::buffer(kReply),
                           [self = shared_from_this()](beast::error_code e, size_t) {
                             if (e) return;
                             self->transport_.ShutdownSend();
                             self->DrainAfterPlainReply();
                           });
}

void HttpSession::RefuseAtAccept(core::CloseCode code, std::string_view reason,
                                 std::string_view reply) {
  state_.metrics.http_errors_total.fetch_add(1, std::memory_order_relaxed);
  if (transport_.is_tls()) return transport_.Cut();
  // The one deadline bounds the whole refusal (request, answer, close handshake), as it bounded
  // the plain-text answer and its drain before refusals were readable by browsers.
  ArmDeadline(options_->handshake_timeout);
  sniffer_.emplace(options_->max_header_bytes);
  SniffForUpgrade(code, reason, reply);
}

void HttpSession::SniffForUpgrade(core::CloseCode code, std::string_view reason,
                                  std::string_view reply) {
  transport_.lowest().async_read_some(
      boost::asio::buffer(discard_),
      [self = shared_from_this(), code, reason, reply](beast::error_code ec, size_t n) {
        if (ec) return;  // gone, or the deadline
        size_t used = 0;
        auto result = self->sniffer_->Feed(std::string_view(self->discard_.data(), n), used);
        if (result == core::UpgradeSniffer::Result::kNeedMore) {
          return self->SniffForUpgrade(code, reason, reply);
        }
        if (result == core::UpgradeSniffer::Result::kUpgrade) {
          std::string accept = self->sniffer_->accept();
          self->sniffer_.reset();
          return self->RefuseAfterUpgrade(accept, code, reason, /*rearm=*/false,
                                          std::string_view(self->discard_.data() + used, n - used));
        }
        self->sniffer_.reset();
        boost::asio::async_write(self->transport_.lowest(), boost::asio::buffer(reply),
                                 [self](beast::error_code e, size_t) {
                                   if (e) return;
                                   self->transport_.ShutdownSend();
                                   self->DrainAfterPlainReply();
                                 });
      });
}

void HttpSession::RefuseAfterUpgrade(std::string_view accept, core::CloseCode code,
                                     std::string_view reason, bool rearm,
                                     std::string_view pipelined) {
  state_.metrics.http_errors_total.fetch_add(1, std::memory_order_relaxed);
  if (rearm) ArmDeadline(options_->close_timeout);
  // Frames the client sent without waiting for the 101 may already hold its close.
  const bool peer_closed =
      close_waiter_.Feed(reinterpret_cast<const uint8_t*>(pipelined.data()), pipelined.size());
  // No subprotocol and no extension: the refusal is the only frame the connection carries.
  refusal_ = core::Cat(
      "HTTP/1.1 101 Switching Protocols\r\nServer: gathering-bridge\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Accept: ",
      accept, "\r\n\r\n");
  refusal_ += core::BuildWsCloseFrame(core::CloseValue(code),
                                      core::TruncateUtf8(reason, core::kMaxCloseReasonBytes));
  boost::asio::async_write(transport_, boost::asio::buffer(refusal_),
                           [self = shared_from_this(), peer_closed](beast::error_code ec, size_t) {
                             self->refusal_ = std::string();
                             if (ec) return;
                             if (!peer_closed) return self->AwaitPeerClose();
                             self->transport_.ShutdownSend();
                             self->DrainAfterPlainReply();
                           });
}

void HttpSession::AwaitPeerClose() {
  // RFC 6455 section 7.1.1: the server closes the TCP connection once the close handshake is
  // done; a client that never answers is cut at the deadline.
  transport_.async_read_some(
      boost::asio::buffer(discard_), [self = shared_from_this()](beast::error_code ec, size_t n) {
        if (ec) return;
        if (!self->close_waiter_.Feed(reinterpret_cast<const uint8_t*>(self->discard_.data()), n)) {
          return self->AwaitPeerClose();
        }
        self->transport_.ShutdownSend();
        self->DrainAfterPlainReply();
      });
}

void HttpSession::DrainAfterPlainReply() {
  // Closing with unread input would reset the connection and could destroy the reply before the
  // client reads it: read until the client closes (bounded by the deadline).
  transport_.lowest().async_read_some(boost::asio::buffer(discard_),
                                      [self = shared_from_this()](beast::error_code e, size_t) {
                                        if (!e) self->DrainAfterPlainReply();
                                      });
}

void HttpSession::OnHandshake(beast::error_code ec) {
  if (ec) {
    // Plain HTTP to the TLS port, an untrusted certificate, a client too slow: counted, dropped.
    state_.metrics.tls_handshake_failures_total.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("TLS handshake failed: {}", ec.message());
    return;
  }
  DoRead();
}

void HttpSession::ArmDeadline(std::chrono::milliseconds timeout) {
  deadline_.expires_after(timeout);
  deadline_.async_wait([weak = weak_from_this()](beast::error_code ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->transport_.Cut();  // the pending operation fails
  });
}

void HttpSession::DoRead() {
  parser_.emplace();
  parser_->header_limit(static_cast<uint32_t>(options_->max_header_bytes));
  parser_->body_limit(4096);
  ArmDeadline(options_->handshake_timeout);
  http::async_read(transport_, buffer_, *parser_,
                   beast::bind_front_handler(&HttpSession::OnRead, shared_from_this()));
}

void HttpSession::OnRead(beast::error_code ec, size_t) {
  if (ec == http::error::end_of_stream) {
    transport_.ShutdownSend();
    return;
  }
  if (ec == http::error::header_limit) {
    Request dummy;
    auto res = MakeResponse(431, "text/plain", "request header too large\n", dummy);
    res.keep_alive(false);
    return Reply(std::move(res));
  }
  if (ec == http::error::body_limit) {
    Request dummy;
    auto res = MakeResponse(413, "text/plain", "request body too large\n", dummy);
    res.keep_alive(false);
    return Reply(std::move(res));
  }
  if (ec) return;  // timeout (slow client) or reset: drop the connection
  Route(parser_->release());
}

HttpSession::Response HttpSession::MakeResponse(unsigned status, std::string content_type,
                                                std::string body, const Request& req) const {
  Response res{static_cast<http::status>(status), req.version() ? req.version() : 11};
  res.set(http::field::server, "gathering-bridge");
  res.set(http::field::content_type, content_type);
  res.set(http::field::cache_control, "no-store");
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  if (status >= 400) state_.metrics.http_errors_total.fetch_add(1, std::memory_order_relaxed);
  return res;
}

void HttpSession::Route(Request req) {
  state_.metrics.http_requests_total.fetch_add(1, std::memory_order_relaxed);
  const std::string_view raw(req.target().data(), req.target().size());
  auto target = core::ParseRequestTarget(raw);
  if (!target) {
    // A WebSocket upgrade of a /ws target that does not parse still learns why, after its 101.
    if (IsWsTarget(raw) && websocket::is_upgrade(req)) return Upgrade(std::move(req), nullptr);
    return Reply(MakeResponse(400, "text/plain", "malformed request target\n", req));
  }

  if (auto channel = core::ChannelFromWsPath(target->path)) {
    if (!websocket::is_upgrade(req)) {
      // Plain HTTP keeps its statuses. A namespace that is not configured is a path that does
      // not exist.
      if (!channel->empty() &&
          state_.hub.namespaces().Find(core::NamespaceOf(*channel)) == nullptr) {
        return Reply(MakeResponse(
            404, "text/plain", core::Cat("unknown namespace '", core::NamespaceOf(*channel), "'\n"),
            req));
      }
      auto res = MakeResponse(426, "text/plain", "this path takes a WebSocket upgrade\n", req);
      res.set(http::field::upgrade, "websocket");
      return Reply(std::move(res));
    }
    return Upgrade(std::move(req), &*target);
  }
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    auto res = MakeResponse(405, "text/plain", "method not allowed\n", req);
    res.set(http::field::allow, "GET, HEAD");
    return Reply(std::move(res));
  }
  if (target->path == "/healthz" || target->path == "/readyz") {
    // /healthz: the process is alive (200 unless draining); the broker's state is told but
    // does not fail it. /readyz: 200 only when this node can serve, i.e. its broker is up too.
    const bool draining = state_.draining.load();
    const core::BrokerHealth broker = state_.hub.broker_health();
    const bool ready = !draining && broker.ok();
    std::string body =
        core::Cat(R"({"status":")", draining ? "draining" : (ready ? "ok" : "degraded"), R"(")");
    if (state_.hub.clustered()) {
      body += core::Cat(R"(,"node":)", core::JsonQuote(state_.hub.node_id()),
                        R"(,"broker":{"publish":)", broker.publish_up ? "true" : "false",
                        R"(,"pubsub":)", broker.pubsub_up ? "true" : "false");
      if (!broker.detail.empty())
        body += core::Cat(R"(,"detail":)", core::JsonQuote(broker.detail));
      body += "}";
    }
    body += "}\n";
    const bool ok = target->path == "/healthz" ? !draining : ready;
    return Reply(MakeResponse(ok ? 200 : 503, "application/json", body, req));
  }
  if (target->path == "/metrics") {
    return Reply(MakeResponse(200, "text/plain; version=0.0.4",
                              core::RenderPrometheus(state_.hub.CollectMetrics()), req));
  }
  if (target->path == "/" || target->path == "/index.html") {
    return Reply(MakeResponse(200, "text/html; charset=utf-8", std::string(IndexHtml()), req));
  }
  Reply(MakeResponse(404, "text/plain", "not found\n", req));
}

void HttpSession::Upgrade(Request req, const core::RequestTarget* target) {
  // The RFC 6455 handshake checks (GET, HTTP/1.1, Connection and Upgrade were checked by
  // is_upgrade). Without a valid key and version there is no WebSocket to refuse: HTTP statuses.
  auto key = req[http::field::sec_websocket_key];
  auto accept = core::WebSocketAccept(std::string_view(key.data(), key.size()));
  if (!accept) {
    return Reply(MakeResponse(400, "text/plain", "missing or malformed Sec-WebSocket-Key\n", req));
  }
  if (req[http::field::sec_websocket_version] != "13") {
    auto res = MakeResponse(426, "text/plain", "unsupported WebSocket version; use 13\n", req);
    res.set(http::field::sec_websocket_version, "13");
    return Reply(std::move(res));
  }
  // A page of another site gets no WebSocket at all, not even one that closes at once
  // (cross-site WebSocket hijacking): 403 before any upgrade. The bridge's own page and allowed
  // origins never see it.
  std::string origin(req[http::field::origin]);
  std::string host(req[http::field::host]);
  if (!core::OriginAllowed(*state_.origins(), origin, host)) {
    state_.metrics.origin_rejected_total.fetch_add(1, std::memory_order_relaxed);
    return Reply(MakeResponse(403, "text/plain", "origin not allowed\n", req));
  }
  // From here on the request is a valid upgrade from an allowed origin: a refusal is a close
  // code after the 101, which a browser can read.
  auto refuse = [&](core::CloseCode code, std::string_view reason) {
    const auto pipelined = buffer_.data();
    RefuseAfterUpgrade(
        *accept, code, reason, /*rearm=*/true,
        std::string_view(static_cast<const char*>(pipelined.data()), pipelined.size()));
  };
  if (target == nullptr) return refuse(core::CloseCode::kBadRequest, "malformed request target");
  WsSession::InitialSubscription initial;
  initial.channel = *core::ChannelFromWsPath(target->path);
  if (!initial.channel.empty()) {
    if (absl::Status s = core::ValidateChannel(initial.channel); !s.ok()) {
      return refuse(core::CloseCode::kBadRequest,
                    std::string_view(s.message().data(), s.message().size()));
    }
    if (state_.hub.namespaces().Find(core::NamespaceOf(initial.channel)) == nullptr) {
      return refuse(core::CloseCode::kNotFound,
                    core::Cat("unknown namespace '", core::NamespaceOf(initial.channel), "'"));
    }
  }
  initial.ack = target->Param("ack").value_or("") == "1";
  if (auto since = target->Param("since")) {
    uint64_t n = 0;
    if (!core::ParseUint(*since, n)) {
      return refuse(core::CloseCode::kBadRequest, "since must be a non-negative integer");
    }
    std::string epoch = target->Param("epoch").value_or("");
    if (epoch.size() > kMaxEpochBytes || !core::IsValidUtf8(epoch)) {
      return refuse(core::CloseCode::kBadRequest,
                    core::Cat("epoch must be valid UTF-8 of at most ", kMaxEpochBytes, " bytes"));
    }
    initial.recovery = core::RecoveryRequest{n, std::move(epoch)};
  }
  if (state_.draining.load()) {
    return refuse(core::CloseCode::kUnavailable, "server shutting down");
  }
  std::string identity;
  std::string token;
  if (state_.auth.enabled()) {
    token = target->Param("token").value_or("");
  } else {
    // The identity reaches other clients' frames (agent_joined) and backends' protos.
    identity = target->Param("client").value_or("");
    if (!core::IsValidUtf8(identity)) {
      state_.metrics.identity_rejected_total.fetch_add(1, std::memory_order_relaxed);
      return refuse(core::CloseCode::kBadRequest, "client must be valid UTF-8");
    }
    if (identity.size() > kMaxIdentityBytes) {
      state_.metrics.identity_rejected_total.fetch_add(1, std::memory_order_relaxed);
      return refuse(core::CloseCode::kBadRequest,
                    core::Cat("client is longer than ", kMaxIdentityBytes, " bytes"));
    }
  }
  upgrade_ = PendingUpgrade{std::move(initial), std::move(identity), std::move(token),
                            std::exchange(counted_ip_, "")};
  // No subprotocol and no extension (permessage-deflate) is negotiated.
  auto res = std::make_shared<Response>(http::status::switching_protocols, 11);
  res->set(http::field::server, "gathering-bridge");
  res->set(http::field::upgrade, "websocket");
  res->set(http::field::connection, "Upgrade");
  res->set(http::field::sec_websocket_accept, *accept);
  pending_ = std::move(res);
  http::async_write(transport_, *pending_,
                    beast::bind_front_handler(&HttpSession::OnUpgradeWritten, shared_from_this()));
}

void HttpSession::OnUpgradeWritten(beast::error_code ec, size_t) {
  pending_.reset();
  deadline_.cancel();
  PendingUpgrade up = std::move(*upgrade_);
  upgrade_.reset();
  if (ec) {
    // The client left (or hit the deadline) before the 101 was out: nothing was opened.
    spdlog::debug("upgrade not completed: {}", ec.message());
    counted_ip_ = std::move(up.counted_ip);  // released with this session
    return;
  }
  // Bytes the client sent after its request (frames it did not wait to send) go with it.
  auto buffered = buffer_.data();
  auto session = std::make_shared<WsSession>(
      std::move(transport_),
      std::string_view(static_cast<const char*>(buffered.data()), buffered.size()), state_,
      options_, shard_, std::move(up.initial), std::move(up.identity), std::move(up.token),
      std::move(up.counted_ip));
  session->Start();
}

void HttpSession::Reply(Response res) {
  pending_ = std::make_shared<Response>(std::move(res));
  bool close = pending_->need_eof();
  http::async_write(transport_, *pending_,
                    beast::bind_front_handler(&HttpSession::OnWrite, shared_from_this(), close));
}

void HttpSession::OnWrite(bool close, beast::error_code ec, size_t) {
  pending_.reset();
  if (ec) return;
  if (close) {
    transport_.ShutdownSend();
    return;
  }
  DoRead();
}

}  // namespace bridge::ws
