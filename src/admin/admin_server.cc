#include "admin/admin_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>

#include "admin/admin_auth.h"
#include "admin/dashboard_page.h"
#include "admin/health.h"
#include "admin/node_info.h"
#include "core/frame.h"
#include "core/origin.h"
#include "core/strings.h"
#include "core/uri.h"
#include "core/websocket_codec.h"
#include "ws/transport.h"

namespace bridge::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using FramePtr = std::shared_ptr<const std::string>;
using Transport = ws::Transport;

namespace {

// A whole unmasked text frame: every dashboard gets the same bytes.
FramePtr TextFrame(std::string_view payload) {
  core::WsHeader h = core::BuildWsHeader(core::WsOpcode::kText, payload.size());
  auto out = std::make_shared<std::string>();
  out->reserve(h.size + payload.size());
  out->append(reinterpret_cast<const char*>(h.bytes.data()), h.size);
  out->append(payload);
  return out;
}

}  // namespace

class HttpConn;
class FeedSession;

// Everything below runs on the admin io thread, except Start/Stop/SetNodes's posts.
struct AdminServer::Impl {
  Impl(AdminOptions o, AdminSources s)
      : options(std::move(o)),
        sources(std::move(s)),
        sampler(SamplerSources{sources.metrics, sources.hub, &sources.state->closes,
                               &sources.state->draining, sources.broker_mode,
                               sources.broker_stats}) {}

  void DoAccept();
  void Tick();
  void CloseAll();
  // The context new connections handshake with; null: plain HTTP. Any thread.
  std::shared_ptr<asio::ssl::context> tls() const {
    std::lock_guard lock(tls_mu);
    return tls_context;
  }

  const AdminOptions options;
  const AdminSources sources;
  Sampler sampler;
  FramePtr last_sample;
  size_t connections = 0;  // HTTP connections and feeds
  std::unordered_set<HttpConn*> conns;
  std::unordered_set<FeedSession*> feeds;
  // Feeds whose 101 is being written: they hold a slot, so two upgrades at once cannot both
  // pass the max_feeds check.
  size_t upgrading = 0;
  uint16_t port = 0;
  mutable std::mutex tls_mu;
  std::shared_ptr<asio::ssl::context> tls_context;  // tls_mu; set at Start, replaced by SetTls
  std::thread thread;
  bool stopped = false;  // the owner's thread
  // Destroyed first (reverse order): the sessions its pending handlers own unregister above.
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  asio::steady_timer timer{ioc};
  asio::steady_timer retry{ioc};
};

// A dashboard's live feed after the upgrade: samples out, only control frames in.
class FeedSession : public std::enable_shared_from_this<FeedSession> {
 public:
  FeedSession(Transport transport, AdminServer::Impl& impl, std::string who)
      : transport_(std::move(transport)), impl_(impl), who_(std::move(who)), decoder_(1024) {
    ++impl_.connections;
  }
  ~FeedSession() {
    impl_.feeds.erase(this);
    --impl_.connections;
  }

  void Start() {
    impl_.feeds.insert(this);
    spdlog::info("admin: dashboard feed opened{} ({} open)", who_, impl_.feeds.size());
    Send(TextFrame(impl_.sampler.HistoryFrame()));
    if (impl_.last_sample) Send(impl_.last_sample);
    DoRead();
  }

  // Queues a frame; a dashboard that let the queue fill is dropped (it never slows the others).
  void Send(FramePtr frame) {
    if (closing_) return;
    if (queue_.size() >= impl_.options.max_feed_queue_frames) {
      spdlog::info("admin: dashboard feed{} dropped: {} frames unread", who_, queue_.size());
      return Cut();
    }
    queue_.push_back(std::move(frame));
    if (!writing_) DoWrite();
  }

  void Cut() {
    closing_ = true;
    impl_.feeds.erase(this);
    transport_.Cut();
  }

 private:
  void SendClose(uint16_t code, std::string_view reason) {
    if (closing_) return;
    queue_.push_back(std::make_shared<std::string>(core::BuildWsCloseFrame(code, reason)));
    closing_ = true;  // nothing after the close frame; the socket goes once it is written
    impl_.feeds.erase(this);
    if (!writing_) DoWrite();
  }

  void DoWrite() {
    writing_ = true;
    asio::async_write(transport_, asio::buffer(*queue_.front()),
                      beast::bind_front_handler(&FeedSession::OnWrite, shared_from_this()));
  }

  void OnWrite(beast::error_code ec, size_t) {
    writing_ = false;
    if (ec) return Cut();
    queue_.pop_front();
    if (!queue_.empty()) return DoWrite();
    if (closing_) Cut();
  }

  void DoRead() {
    transport_.async_read_some(asio::buffer(in_.data() + in_size_, in_.size() - in_size_),
                               beast::bind_front_handler(&FeedSession::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t n) {
    if (ec) return Cut();
    in_size_ += n;
    size_t offset = 0;
    for (;;) {
      size_t used = 0;
      auto event = decoder_.Feed(in_.data() + offset, in_size_ - offset, used);
      offset += used;
      using E = core::WsDecoder::Event;
      if (event == E::kNeedMore) break;
      if (event == E::kPing) {
        Send(std::make_shared<std::string>(
            core::BuildWsControlFrame(core::WsOpcode::kPong, decoder_.control_payload())));
      } else if (event == E::kClose) {
        uint16_t code = decoder_.close_code();
        SendClose(code == 1005 ? 1000 : code, "");
      } else if (event == E::kTooBig) {
        SendClose(1009, "the feed takes no messages");
      } else if (event == E::kProtocolError) {
        SendClose(1002, "protocol error");
      } else if (event == E::kInvalidUtf8) {
        SendClose(1007, "invalid UTF-8");
      }  // kMessage, kPong: the feed ignores what a dashboard says
      if (closing_) break;
    }
    std::memmove(in_.data(), in_.data() + offset, in_size_ - offset);
    in_size_ -= offset;
    if (closing_ && !writing_ && queue_.empty()) return Cut();
    if (closing_) return;  // the close frame's write ends the session
    if (in_size_ == in_.size()) return SendClose(1009, "the feed takes no messages");
    DoRead();
  }

  Transport transport_;
  AdminServer::Impl& impl_;
  const std::string who_;  // " for <subject>" with auth, else ""
  core::WsDecoder decoder_;
  std::array<uint8_t, 2048> in_{};
  size_t in_size_ = 0;
  std::deque<FramePtr> queue_;
  bool writing_ = false;
  bool closing_ = false;
};

// One HTTP connection: requests until it closes, times out, or upgrades to a feed.
class HttpConn : public std::enable_shared_from_this<HttpConn> {
 public:
  HttpConn(Transport transport, AdminServer::Impl& impl)
      : transport_(std::move(transport)), impl_(impl), deadline_(impl.ioc) {
    ++impl_.connections;
    impl_.conns.insert(this);
  }
  ~HttpConn() {
    if (upgrading_) --impl_.upgrading;
    impl_.conns.erase(this);
    --impl_.connections;
  }

  void Run() {
    if (impl_.connections > impl_.options.max_connections) {
      // Over TLS, closed before the handshake: a 503 in clear would not be read, and a handshake
      // is the cost the bound is there to refuse.
      if (transport_.is_tls()) return Cut();
      Request none;
      auto res = MakeResponse(503, "text/plain", "too many admin connections\n", none);
      res.keep_alive(false);
      return Reply(std::move(res));
    }
    if (!transport_.is_tls()) return DoRead();
    ArmDeadline();
    transport_.Handshake(beast::bind_front_handler(&HttpConn::OnHandshake, shared_from_this()));
  }

  void Cut() {
    transport_.Cut();
    deadline_.cancel();
  }

 private:
  using Request = http::request<http::string_body>;
  using Response = http::response<http::string_body>;

  void ArmDeadline() {
    deadline_.expires_after(impl_.options.handshake_timeout);
    deadline_.async_wait([weak = weak_from_this()](beast::error_code ec) {
      if (ec) return;
      if (auto self = weak.lock()) self->transport_.Cut();  // the pending operation fails
    });
  }

  void OnHandshake(beast::error_code ec) {
    if (ec) {
      // Plain HTTP to the TLS port, an untrusted certificate, a client too slow: nothing was
      // said in clear; the connection goes with this object.
      spdlog::debug("admin: TLS handshake failed: {}", ec.message());
      return Cut();
    }
    DoRead();
  }

  void DoRead() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(impl_.options.max_header_bytes));
    parser_->body_limit(1024);
    ArmDeadline();
    http::async_read(transport_, buffer_, *parser_,
                     beast::bind_front_handler(&HttpConn::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t) {
    Request none;
    if (ec == http::error::header_limit || ec == http::error::body_limit) {
      auto res = ec == http::error::header_limit
                     ? MakeResponse(431, "text/plain", "request header too large\n", none)
                     : MakeResponse(413, "text/plain", "request body too large\n", none);
      res.keep_alive(false);
      return Reply(std::move(res));
    }
    if (ec) return;  // EOF, reset, or the deadline
    Route(parser_->release());
  }

  Response MakeResponse(unsigned status, std::string type, std::string body,
                        const Request& req) const {
    Response res{static_cast<http::status>(status), req.version() ? req.version() : 11};
    res.set(http::field::server, "gathering-bridge");
    res.set(http::field::content_type, type);
    res.set(http::field::cache_control, "no-store");
    res.keep_alive(req.keep_alive());
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
  }

  void Route(Request req) {
    auto target =
        core::ParseRequestTarget(std::string_view(req.target().data(), req.target().size()));
    if (!target) return Reply(MakeResponse(400, "text/plain", "malformed request target\n", req));
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      auto res = MakeResponse(405, "text/plain", "method not allowed\n", req);
      res.set(http::field::allow, "GET, HEAD");
      return Reply(std::move(res));
    }
    const std::string& path = target->path;
    if (path == "/healthz" || path == "/readyz") {
      Health h = CheckHealth(*impl_.sources.hub, impl_.sources.state->draining.load());
      const bool ok = path == "/healthz" ? h.alive : h.ready;
      return Reply(MakeResponse(ok ? 200 : 503, "application/json", std::move(h.body), req));
    }
    if (path == "/metrics") {
      core::Hub& hub = *impl_.sources.hub;
      return Reply(MakeResponse(200, "text/plain; version=0.0.4",
                                impl_.sources.metrics->RenderPrometheus() +
                                    hub.RenderNamespaceMetrics() + hub.RenderClusterMetrics(),
                                req));
    }
    if (path == "/") {
      auto res = MakeResponse(302, "text/plain", "see /admin\n", req);
      res.set(http::field::location, "/admin");
      return Reply(std::move(res));
    }
    if (path != "/admin" && path != "/admin/" && path != "/admin/ws" && path != "/admin/nodes") {
      return Reply(MakeResponse(404, "text/plain", "not found\n", req));
    }
    auto authorization = req[http::field::authorization];
    AdminAccess access = CheckAdminAccess(
        impl_.sources.verifier.get(), std::string_view(authorization.data(), authorization.size()),
        target->Param("token"), std::chrono::system_clock::now());
    if (access.status != 200) {
      auto res = MakeResponse(access.status, "text/plain", access.message + "\n", req);
      if (access.status == 401) res.set(http::field::www_authenticate, "Bearer realm=\"admin\"");
      return Reply(std::move(res));
    }
    if (path == "/admin/ws") return Upgrade(std::move(req), std::move(access.subject));
    if (path == "/admin/nodes") {
      // The node list of the last sample: what the dashboard's table shows.
      core::Hub& hub = *impl_.sources.hub;
      return Reply(MakeResponse(
          200, "application/json",
          core::Cat(R"({"node":)", core::JsonQuote(hub.clustered() ? hub.node_id() : ""),
                    R"(,"mode":")", impl_.sources.broker_mode, R"(","nodes":)",
                    NodesJson(impl_.sampler.Nodes()), "}\n"),
          req));
    }
    auto res = MakeResponse(200, "text/html; charset=utf-8", std::string(DashboardHtml()), req);
    // The page is one file: its script and styles inline, its only connection the feed. The
    // token may be in the URL: no referrer leaves the page, and no one frames it.
    res.set("Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            "connect-src 'self'; img-src data:; frame-ancestors 'none'");
    res.set("Referrer-Policy", "no-referrer");
    res.set("X-Content-Type-Options", "nosniff");
    Reply(std::move(res));
  }

  void Upgrade(Request req, std::string subject) {
    if (!beast::websocket::is_upgrade(req)) {
      auto res = MakeResponse(426, "text/plain", "/admin/ws takes a WebSocket upgrade\n", req);
      res.set(http::field::upgrade, "websocket");
      return Reply(std::move(res));
    }
    auto key = req[http::field::sec_websocket_key];
    auto accept = core::WebSocketAccept(std::string_view(key.data(), key.size()));
    if (!accept) {
      return Reply(
          MakeResponse(400, "text/plain", "missing or malformed Sec-WebSocket-Key\n", req));
    }
    if (req[http::field::sec_websocket_version] != "13") {
      auto res = MakeResponse(426, "text/plain", "unsupported WebSocket version; use 13\n", req);
      res.set(http::field::sec_websocket_version, "13");
      return Reply(std::move(res));
    }
    // Only the dashboard's own page (same host) or a non-browser client may read the feed: a
    // page elsewhere must not read it through an operator's browser.
    auto origin = req[http::field::origin];
    auto host = req[http::field::host];
    if (!core::OriginAllowed(core::OriginPolicy{}, std::string_view(origin.data(), origin.size()),
                             std::string_view(host.data(), host.size()))) {
      return Reply(MakeResponse(403, "text/plain", "origin not allowed\n", req));
    }
    if (impl_.feeds.size() + impl_.upgrading >= impl_.options.max_feeds) {
      return Reply(MakeResponse(503, "text/plain", "too many dashboards open\n", req));
    }
    auto res =
        std::make_shared<http::response<http::empty_body>>(http::status::switching_protocols, 11);
    res->set(http::field::server, "gathering-bridge");
    res->set(http::field::upgrade, "websocket");
    res->set(http::field::connection, "Upgrade");
    res->set(http::field::sec_websocket_accept, *accept);
    who_ = subject.empty() ? "" : core::Cat(" for ", subject);
    upgrading_ = true;
    ++impl_.upgrading;
    http::async_write(
        transport_, *res, [self = shared_from_this(), res](beast::error_code ec, size_t) {
          self->deadline_.cancel();
          self->upgrading_ = false;
          --self->impl_.upgrading;
          if (ec) return;
          // A client that sent frames before the 101 breaks no rule we rely on,
          // but the feed reads none: drop them.
          auto feed =
              std::make_shared<FeedSession>(std::move(self->transport_), self->impl_, self->who_);
          feed->Start();
        });
  }

  void Reply(Response res) {
    auto shared = std::make_shared<Response>(std::move(res));
    const bool close = shared->need_eof();
    http::async_write(transport_, *shared,
                      [self = shared_from_this(), shared, close](beast::error_code ec, size_t) {
                        if (ec) return;
                        if (close) {
                          self->transport_.ShutdownSend();
                          self->deadline_.cancel();
                          return;
                        }
                        self->DoRead();
                      });
  }

  Transport transport_;
  AdminServer::Impl& impl_;
  asio::steady_timer deadline_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string who_;
  bool upgrading_ = false;  // holds one of impl_.upgrading
};

void AdminServer::Impl::DoAccept() {
  acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (!acceptor.is_open()) return;
    if (ec) {
      // EMFILE and friends: back off briefly instead of spinning on the error.
      spdlog::warn("admin: accept failed: {}; retrying in 100 ms", ec.message());
      retry.expires_after(std::chrono::milliseconds(100));
      retry.async_wait([this](beast::error_code e) {
        if (!e) DoAccept();
      });
      return;
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto context = tls();
    Transport transport =
        context ? Transport(std::move(socket), std::move(context)) : Transport(std::move(socket));
    std::make_shared<HttpConn>(std::move(transport), *this)->Run();
    DoAccept();
  });
}

void AdminServer::Impl::Tick() {
  timer.expires_after(options.sample_interval);
  timer.async_wait([this](beast::error_code ec) {
    if (ec || !acceptor.is_open()) return;
    last_sample = TextFrame(
        sampler.Sample(std::chrono::steady_clock::now(), std::chrono::system_clock::now()));
    // Send may drop a feed (erasing it from the set): iterate over a copy.
    std::vector<std::weak_ptr<FeedSession>> targets;
    for (FeedSession* f : feeds) targets.push_back(f->weak_from_this());
    for (auto& weak : targets) {
      if (auto f = weak.lock()) f->Send(last_sample);
    }
    Tick();
  });
}

void AdminServer::Impl::CloseAll() {
  beast::error_code ec;
  acceptor.close(ec);
  timer.cancel();
  retry.cancel();
  std::vector<HttpConn*> c(conns.begin(), conns.end());
  for (HttpConn* h : c) h->Cut();
  std::vector<FeedSession*> f(feeds.begin(), feeds.end());
  for (FeedSession* s : f) s->Cut();
}

AdminServer::AdminServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

AdminServer::~AdminServer() { Stop(); }

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Start(AdminOptions options,
                                                                AdminSources sources) {
  auto impl = std::make_shared<Impl>(std::move(options), std::move(sources));
  boost::system::error_code ec;
  auto address = asio::ip::make_address(impl->options.host, ec);
  if (ec)
    return absl::InvalidArgumentError(core::Cat("bad --admin_host '", impl->options.host, "'"));
  tcp::endpoint endpoint(address, impl->options.port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(core::Cat("cannot listen for admin on ", impl->options.host, ":",
                                            impl->options.port, ": ", ec.message()));
  }
  impl->port = impl->acceptor.local_endpoint().port();
  impl->tls_context = impl->options.tls;
  impl->sources.hub->EnableChannelCounts();
  // A first sample at once: the rates start from here, and a dashboard opened in the first
  // second has its gauges.
  impl->last_sample = TextFrame(
      impl->sampler.Sample(std::chrono::steady_clock::now(), std::chrono::system_clock::now()));
  impl->DoAccept();
  impl->Tick();
  impl->thread = std::thread([raw = impl.get()] { raw->ioc.run(); });
  return std::unique_ptr<AdminServer>(new AdminServer(std::move(impl)));
}

uint16_t AdminServer::port() const { return impl_->port; }

void AdminServer::SetNodes(std::vector<NodeInfo> nodes) {
  asio::post(impl_->ioc, [impl = impl_.get(), nodes = std::move(nodes)]() mutable {
    impl->sampler.SetNodes(std::move(nodes));
  });
}

bool AdminServer::tls() const { return impl_->options.tls != nullptr; }

bool AdminServer::SetTls(std::shared_ptr<boost::asio::ssl::context> context) {
  if (!tls() || context == nullptr) return false;
  std::lock_guard lock(impl_->tls_mu);
  impl_->tls_context = std::move(context);
  return true;
}

void AdminServer::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  asio::post(impl_->ioc, [impl = impl_.get()] {
    impl->CloseAll();
    // What the closes left pending is destroyed with the context, unrun.
    impl->ioc.stop();
  });
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace bridge::admin
