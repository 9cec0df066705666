#include "broker/redis_connection.h"

#include <hiredis/hiredis.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/log.h"
#include "spdlog/spdlog.h"

namespace bridge::broker {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr size_t kReadBuffer = 64 * 1024;
// One readiness drains at most this much before yielding the thread to other handlers.
constexpr size_t kMaxDrainPerRead = 4u << 20;

std::string Describe(const error_code& ec) { return ec.message(); }

}  // namespace

// The socket of one connection attempt. Handlers of its operations hold it, so an abandoned link
// (closed by Fail) stays alive until they have run: Asio's SSL operations touch the stream when
// they resume, even after a close.
struct RedisConnection::Link {
  Link(const asio::any_io_executor& ex, asio::ssl::context* ctx) {
    if (ctx != nullptr) {
      tls.emplace(ex, *ctx);
    } else {
      plain.emplace(ex);
    }
  }
  tcp::socket& lowest() { return tls ? tls->next_layer() : *plain; }

  std::optional<tcp::socket> plain;
  std::optional<asio::ssl::stream<tcp::socket>> tls;
  std::vector<char> rbuf = std::vector<char>(kReadBuffer);
  std::string writing;  // the write in flight
};

void RedisConnection::ReaderDeleter::operator()(redisReader* r) const { redisReaderFree(r); }

const char* RedisConnectionStateName(RedisConnectionState s) {
  switch (s) {
    case RedisConnectionState::kConnecting:
      return "connecting";
    case RedisConnectionState::kReady:
      return "ready";
    case RedisConnectionState::kDown:
      return "down";
    case RedisConnectionState::kStopped:
      return "stopped";
  }
  return "?";
}

absl::StatusOr<std::shared_ptr<RedisConnection>> RedisConnection::Create(
    asio::any_io_executor executor, RedisConnectionOptions options) {
  std::shared_ptr<RedisConnection> c(new RedisConnection(std::move(executor), std::move(options)));
  if (c->options_.url.tls) {
    auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    error_code ec;
    const auto& o = c->options_;
    if (o.tls_ca_file.empty()) {
      ctx->set_default_verify_paths(ec);
    } else {
      ctx->load_verify_file(o.tls_ca_file, ec);
    }
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("redis tls: CA ", o.tls_ca_file.empty() ? "(default paths)" : o.tls_ca_file,
                       ": ", Describe(ec)));
    }
    if (!o.tls_cert_file.empty()) {
      ctx->use_certificate_chain_file(o.tls_cert_file, ec);
      if (ec) {
        return absl::InvalidArgumentError(
            absl::StrCat("redis tls: certificate ", o.tls_cert_file, ": ", Describe(ec)));
      }
      ctx->use_private_key_file(o.tls_key_file, asio::ssl::context::pem, ec);
      if (ec) {
        return absl::InvalidArgumentError(
            absl::StrCat("redis tls: key ", o.tls_key_file, ": ", Describe(ec)));
      }
    }
    ctx->set_verify_mode(o.tls_verify_peer ? asio::ssl::verify_peer : asio::ssl::verify_none);
    c->ssl_ctx_ = std::move(ctx);
  }
  return c;
}

RedisConnection::RedisConnection(asio::any_io_executor executor, RedisConnectionOptions options)
    : executor_(std::move(executor)),
      options_(std::move(options)),
      resolver_(executor_),
      deadline_timer_(executor_),
      connect_timer_(executor_),
      backoff_timer_(executor_),
      rng_(std::random_device{}()) {}

RedisConnection::~RedisConnection() = default;

void RedisConnection::SetPushHandler(PushHandler handler) { push_handler_ = std::move(handler); }
void RedisConnection::SetStateHandler(StateHandler handler) { state_handler_ = std::move(handler); }

void RedisConnection::Start() {
  if (started_ || state_ == RedisConnectionState::kStopped) return;
  started_ = true;
  Connect();
}

void RedisConnection::Stop() {
  if (state_ == RedisConnectionState::kStopped) return;
  state_ = RedisConnectionState::kStopped;
  ++generation_;
  CloseLink();
  backoff_timer_.cancel();
  std::deque<Pending> failed = std::move(pending_);
  pending_.clear();
  for (Pending& p : failed) {
    PostFailure(std::move(p.done), absl::UnavailableError("redis connection stopped"));
  }
  push_handler_ = nullptr;
  state_handler_ = nullptr;
}

// ---- connecting -------------------------------------------------------------------------------

void RedisConnection::Connect() {
  if (state_ == RedisConnectionState::kStopped) return;
  if (ever_attempted_) ++stats_.reconnects;
  ever_attempted_ = true;
  const uint64_t gen = ++generation_;
  link_ = std::make_shared<Link>(executor_, ssl_ctx_.get());
  reader_.reset(redisReaderCreate());
  fed_bytes_ = 0;
  reply_start_ = 0;
  channels_.clear();
  patterns_.clear();
  shard_channels_.clear();
  SetState(RedisConnectionState::kConnecting, absl::OkStatus());
  if (gen != generation_) return;  // the state handler stopped us

  connect_timer_.expires_after(options_.connect_timeout);
  connect_timer_.async_wait([weak = weak_from_this(), gen](const error_code& ec) {
    auto self = weak.lock();
    if (!self || ec || gen != self->generation_) return;
    if (self->state_ != RedisConnectionState::kConnecting) return;
    self->Fail(absl::DeadlineExceededError(
        absl::StrCat("redis connect to ", RedactedUrl(self->options_.url), " timed out after ",
                     self->options_.connect_timeout.count(), "ms")));
  });
  resolver_.async_resolve(
      options_.url.host, std::to_string(options_.url.port),
      [self = shared_from_this(), gen](const error_code& ec, tcp::resolver::results_type r) {
        self->OnResolved(gen, ec, std::move(r));
      });
}

void RedisConnection::OnResolved(uint64_t gen, const error_code& ec,
                                 tcp::resolver::results_type results) {
  if (gen != generation_) return;
  if (ec) {
    return Fail(absl::UnavailableError(
        absl::StrCat("redis resolve ", options_.url.host, ": ", Describe(ec))));
  }
  asio::async_connect(
      link_->lowest(), results,
      [self = shared_from_this(), gen, link = link_](const error_code& ec, const tcp::endpoint&) {
        self->OnConnected(gen, ec);
      });
}

void RedisConnection::OnConnected(uint64_t gen, const error_code& ec) {
  if (gen != generation_) return;
  if (ec) {
    return Fail(absl::UnavailableError(
        absl::StrCat("redis connect ", RedactedUrl(options_.url), ": ", Describe(ec))));
  }
  error_code ignored;
  link_->lowest().set_option(tcp::no_delay(true), ignored);
  if (!link_->tls) return StartSession();

  const std::string& name =
      options_.tls_server_name.empty() ? options_.url.host : options_.tls_server_name;
  auto& stream = *link_->tls;
  // SNI is meaningless (and refused by some servers) for IP literals.
  error_code addr_ec;
  asio::ip::make_address(name, addr_ec);
  if (addr_ec) SSL_set_tlsext_host_name(stream.native_handle(), name.c_str());
  if (options_.tls_verify_peer) stream.set_verify_callback(asio::ssl::host_name_verification(name));
  stream.async_handshake(asio::ssl::stream_base::client,
                         [self = shared_from_this(), gen, link = link_](const error_code& ec) {
                           self->OnTlsHandshake(gen, ec);
                         });
}

void RedisConnection::OnTlsHandshake(uint64_t gen, const error_code& ec) {
  if (gen != generation_) return;
  if (ec) return Fail(absl::UnavailableError(absl::StrCat("redis tls handshake: ", Describe(ec))));
  StartSession();
}

void RedisConnection::StartSession() {
  DoRead();
  const uint64_t gen = generation_;
  struct Step {
    const char* what;
    std::vector<std::string> args;
    bool required = true;  // an error reply fails the handshake
  };
  std::vector<Step> steps;
  const RedisUrl& url = options_.url;
  if (!url.password.empty()) {
    if (url.user.empty()) {
      steps.push_back({"AUTH", {"AUTH", url.password}});
    } else {
      steps.push_back({"AUTH", {"AUTH", url.user, url.password}});
    }
  }
  if (url.db != 0) steps.push_back({"SELECT", {"SELECT", std::to_string(url.db)}});
  if (!options_.client_name.empty()) {
    steps.push_back({"CLIENT SETNAME", {"CLIENT", "SETNAME", options_.client_name}});
  }
  for (const std::string& body : scripts_) {
    steps.push_back({"SCRIPT LOAD", {"SCRIPT", "LOAD", body}, /*required=*/false});
  }
  if (steps.empty()) return SetReady();
  for (size_t i = 0; i < steps.size(); ++i) {
    const char* what = steps[i].what;
    const bool required = steps[i].required;
    const bool last = i + 1 == steps.size();
    absl::Status s =
        Enqueue(steps[i].args, options_.connect_timeout, SubKind::kNone,
                [weak = weak_from_this(), gen, what, required, last](absl::StatusOr<RedisReply> r) {
                  if (auto self = weak.lock()) self->OnHandshakeReply(gen, what, required, last, r);
                });
    if (!s.ok()) return Fail(s);
  }
}

void RedisConnection::OnHandshakeReply(uint64_t gen, const char* what, bool required, bool last,
                                       const absl::StatusOr<RedisReply>& reply) {
  // A failed Status means the link already broke and Fail() reported why.
  if (gen != generation_ || !reply.ok()) return;
  if (reply->is_error()) {
    if (!required) {
      // The first EVALSHA will answer NOSCRIPT and load it then (ScriptRunner).
      // Rate-limited: every reconnect would say it again.
      core::log::WriteLimited(
          spdlog::level::warn, "redis_script_load", "redis refused a script load at connect",
          {{"url", RedactedUrl(options_.url)}, {"command", what}, {"error", reply->str}});
    } else {
      absl::Status s = ReplyToStatus(*reply);
      return Fail(absl::Status(s.code(), absl::StrCat(what, ": ", reply->str)));
    }
  }
  if (last) SetReady();
}

void RedisConnection::SetReady() {
  connect_timer_.cancel();
  attempt_ = 0;
  ++stats_.connects;
  SetState(RedisConnectionState::kReady, absl::OkStatus());
}

// ---- commands ---------------------------------------------------------------------------------

void RedisConnection::LoadScriptsOnConnect(const std::vector<std::string_view>& bodies) {
  for (std::string_view body : bodies) {
    if (std::find(scripts_.begin(), scripts_.end(), body) == scripts_.end()) {
      scripts_.emplace_back(body);
    }
  }
}

void RedisConnection::Command(std::vector<std::string> args, ReplyCallback done) {
  Command(std::move(args), options_.command_timeout, std::move(done));
}

void RedisConnection::Command(std::vector<std::string> args, std::chrono::milliseconds timeout,
                              ReplyCallback done) {
  if (args.empty()) {
    return PostFailure(std::move(done), absl::InvalidArgumentError("redis: empty command"));
  }
  if (state_ != RedisConnectionState::kReady) {
    std::string why = state_ == RedisConnectionState::kDown && !last_error_.ok()
                          ? absl::StrCat(": ", last_error_.message())
                          : "";
    return PostFailure(std::move(done),
                       absl::UnavailableError(absl::StrCat("redis connection ",
                                                           RedisConnectionStateName(state_), why)));
  }
  const std::string name = absl::AsciiStrToUpper(args[0]);
  SubKind kind = SubKind::kNone;
  if (name == "SUBSCRIBE") kind = SubKind::kSubscribe;
  if (name == "UNSUBSCRIBE") kind = SubKind::kUnsubscribe;
  if (name == "PSUBSCRIBE") kind = SubKind::kPSubscribe;
  if (name == "PUNSUBSCRIBE") kind = SubKind::kPUnsubscribe;
  if (name == "SSUBSCRIBE") kind = SubKind::kSSubscribe;
  if (name == "SUNSUBSCRIBE") kind = SubKind::kSUnsubscribe;
  if (kind != SubKind::kNone && !options_.subscriber) {
    return PostFailure(
        std::move(done),
        absl::FailedPreconditionError(
            absl::StrCat("redis: ", name, " needs a subscriber connection (options.subscriber)")));
  }
  if (pending_.size() >= options_.max_pending) {
    return PostFailure(std::move(done), absl::ResourceExhaustedError(absl::StrCat(
                                            "redis: ", pending_.size(), " commands pending")));
  }
  absl::Status s = Enqueue(args, timeout, kind, nullptr);
  if (!s.ok()) return PostFailure(std::move(done), std::move(s));
  pending_.back().done = std::move(done);
}

absl::Status RedisConnection::Enqueue(std::vector<std::string>& args,
                                      std::chrono::milliseconds timeout, SubKind kind,
                                      ReplyCallback done) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  char* cmd = nullptr;
  const int len =
      redisFormatCommandArgv(&cmd, static_cast<int>(args.size()), argv.data(), lens.data());
  if (len < 0 || cmd == nullptr) return absl::ResourceExhaustedError("redis: cannot encode");
  if (out_.size() + out_in_flight_ + static_cast<size_t>(len) > options_.max_output_bytes) {
    redisFreeCommand(cmd);
    return absl::ResourceExhaustedError(absl::StrCat(
        "redis: output buffer full (", out_.size() + out_in_flight_, " bytes queued)"));
  }
  out_.append(cmd, static_cast<size_t>(len));
  redisFreeCommand(cmd);

  Pending p;
  p.done = std::move(done);
  p.timeout = timeout;
  p.deadline = Clock::now() + timeout;
  p.kind = kind;
  if (kind != SubKind::kNone) p.acks_left = ExpectedAcks(kind, args);
  pending_.push_back(std::move(p));
  ++stats_.commands_sent;
  ArmDeadline(pending_.back().deadline);
  ScheduleFlush();
  return absl::OkStatus();
}

size_t RedisConnection::ExpectedAcks(SubKind kind, const std::vector<std::string>& args) {
  std::set<std::string>* set = nullptr;
  bool subscribe = false;
  switch (kind) {
    case SubKind::kSubscribe:
      subscribe = true;
      [[fallthrough]];
    case SubKind::kUnsubscribe:
      set = &channels_;
      break;
    case SubKind::kPSubscribe:
      subscribe = true;
      [[fallthrough]];
    case SubKind::kPUnsubscribe:
      set = &patterns_;
      break;
    case SubKind::kSSubscribe:
      subscribe = true;
      [[fallthrough]];
    case SubKind::kSUnsubscribe:
      set = &shard_channels_;
      break;
    case SubKind::kNone:
      return 0;
  }
  if (args.size() > 1) {
    // Redis acks every argument, duplicates included.
    for (size_t i = 1; i < args.size(); ++i) {
      if (subscribe) {
        set->insert(args[i]);
      } else {
        set->erase(args[i]);
      }
    }
    return args.size() - 1;
  }
  if (subscribe) return 1;  // Redis answers an arity error: one reply
  const size_t n = std::max<size_t>(1, set->size());
  set->clear();
  return n;
}

void RedisConnection::PostFailure(ReplyCallback done, absl::Status status) {
  ++stats_.commands_failed;
  if (!done) return;
  asio::post(executor_, [done = std::move(done), status = std::move(status)]() mutable {
    done(std::move(status));
  });
}

// ---- writing ----------------------------------------------------------------------------------

void RedisConnection::ScheduleFlush() {
  if (flush_posted_ || writing_) return;
  flush_posted_ = true;
  // Posting lets every command queued by the current handler leave in the same write.
  asio::post(executor_, [self = shared_from_this()] {
    self->flush_posted_ = false;
    if (self->link_ && !self->writing_ && !self->out_.empty()) self->DoWrite();
  });
}

void RedisConnection::DoWrite() {
  writing_ = true;
  link_->writing.clear();
  link_->writing.swap(out_);
  out_in_flight_ = link_->writing.size();
  auto handler = [self = shared_from_this(), gen = generation_, link = link_](
                     const error_code& ec, size_t n) { self->OnWrite(gen, ec, n); };
  if (link_->tls) {
    asio::async_write(*link_->tls, asio::buffer(link_->writing), std::move(handler));
  } else {
    asio::async_write(*link_->plain, asio::buffer(link_->writing), std::move(handler));
  }
}

void RedisConnection::OnWrite(uint64_t gen, const error_code& ec, size_t n) {
  if (gen != generation_) return;
  writing_ = false;
  out_in_flight_ = 0;
  if (ec) return Fail(absl::UnavailableError(absl::StrCat("redis write: ", Describe(ec))));
  stats_.bytes_written += n;
  if (!out_.empty()) DoWrite();
}

// ---- reading ----------------------------------------------------------------------------------

void RedisConnection::DoRead() {
  auto handler = [self = shared_from_this(), gen = generation_, link = link_](
                     const error_code& ec, size_t n) { self->OnRead(gen, ec, n); };
  auto buf = asio::buffer(link_->rbuf);
  if (link_->tls) {
    link_->tls->async_read_some(buf, std::move(handler));
  } else {
    link_->plain->async_read_some(buf, std::move(handler));
  }
}

void RedisConnection::OnRead(uint64_t gen, const error_code& ec, size_t n) {
  if (gen != generation_) return;
  if (ec) {
    const bool closed = ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
    return Fail(absl::UnavailableError(closed
                                           ? std::string("redis: connection closed by the server")
                                           : absl::StrCat("redis read: ", Describe(ec))));
  }
  Feed(link_->rbuf.data(), n);
  ProcessReplies();
  if (gen != generation_) return;
  if (link_->plain) {
    // Drain what the kernel already holds, so one readiness never leaves a complete reply
    // sitting in the socket (the edge-triggered epoll pitfall).
    size_t drained = n;
    error_code rec;
    while (drained < kMaxDrainPerRead && link_->plain->available(rec) > 0 && !rec) {
      const size_t m = link_->plain->read_some(asio::buffer(link_->rbuf), rec);
      if (rec) break;
      Feed(link_->rbuf.data(), m);
      drained += m;
      ProcessReplies();
      if (gen != generation_) return;
    }
  }
  DoRead();
}

void RedisConnection::Feed(const char* data, size_t n) {
  stats_.bytes_read += n;
  fed_bytes_ += n;
  if (redisReaderFeed(reader_.get(), data, n) != REDIS_OK) {
    spdlog::warn("redis: reader feed failed: {}", reader_->errstr);
  }
}

void RedisConnection::ProcessReplies() {
  const uint64_t gen = generation_;
  for (;;) {
    void* raw = nullptr;
    if (redisReaderGetReply(reader_.get(), &raw) != REDIS_OK) {
      return Fail(absl::InternalError(absl::StrCat("redis protocol error: ", reader_->errstr)));
    }
    if (raw == nullptr) break;
    const uint64_t end = fed_bytes_ - (reader_->len - reader_->pos);
    const uint64_t size = end - reply_start_;
    reply_start_ = end;
    if (size > options_.max_reply_bytes) {
      freeReplyObject(raw);
      return FailOversized();
    }
    RedisReply reply = RedisReply::FromHiredis(*static_cast<redisReply*>(raw));
    freeReplyObject(raw);
    HandleReply(std::move(reply));
    if (gen != generation_) return;  // a callback stopped us, or the reply broke the link
  }
  // A reply still arriving counts too, so a huge one fails before it is all buffered.
  if (fed_bytes_ - reply_start_ > options_.max_reply_bytes) FailOversized();
}

void RedisConnection::FailOversized() {
  Fail(absl::ResourceExhaustedError(
      absl::StrCat("redis: reply larger than max_reply_bytes (", options_.max_reply_bytes, ")")));
}

void RedisConnection::HandleReply(RedisReply reply) {
  if (options_.subscriber && reply.is_array() && !reply.elements.empty() &&
      reply.elements[0].is_text()) {
    const std::string& kind_name = reply.elements[0].str;
    if (kind_name == "message" || kind_name == "pmessage" || kind_name == "smessage") {
      ++stats_.pushes;
      Push(std::move(reply));
      return;
    }
    SubKind kind = SubKind::kNone;
    if (kind_name == "subscribe") kind = SubKind::kSubscribe;
    if (kind_name == "unsubscribe") kind = SubKind::kUnsubscribe;
    if (kind_name == "psubscribe") kind = SubKind::kPSubscribe;
    if (kind_name == "punsubscribe") kind = SubKind::kPUnsubscribe;
    if (kind_name == "ssubscribe") kind = SubKind::kSSubscribe;
    if (kind_name == "sunsubscribe") kind = SubKind::kSUnsubscribe;
    if (kind != SubKind::kNone) {
      ++stats_.pushes;
      // An ack of another kind than the front command is unsolicited (e.g. a server-side
      // sunsubscribe after a slot move): it is a push only.
      std::optional<Pending> done;
      if (!pending_.empty() && pending_.front().kind == kind && pending_.front().acks_left > 0) {
        Pending& front = pending_.front();
        front.acks.push_back(reply);
        if (--front.acks_left == 0) {
          done.emplace(std::move(front));
          pending_.pop_front();
        }
      }
      const uint64_t gen = generation_;
      Push(std::move(reply));
      if (done && gen == generation_) {
        Complete(*done, RedisReply::Array(std::move(done->acks)));
      } else if (done) {
        Complete(*done, absl::UnavailableError("redis connection stopped"));
      }
      return;
    }
  }
  if (pending_.empty()) {
    return Fail(absl::InternalError(
        absl::StrCat("redis: reply with no command pending: ", reply.DebugString())));
  }
  Pending p = std::move(pending_.front());
  pending_.pop_front();
  Complete(p, std::move(reply));
}

void RedisConnection::Complete(Pending& p, absl::StatusOr<RedisReply> result) {
  if (!result.ok()) ++stats_.commands_failed;
  if (p.done) p.done(std::move(result));
}

// ---- deadlines, failure, reconnect ------------------------------------------------------------

void RedisConnection::ArmDeadline(Clock::time_point deadline) {
  if (deadline_armed_ && armed_at_ <= deadline) return;
  deadline_armed_ = true;
  armed_at_ = deadline;
  deadline_timer_.expires_at(deadline);
  deadline_timer_.async_wait(
      [weak = weak_from_this(), gen = generation_, deadline](const error_code& ec) {
        if (ec) return;  // re-armed earlier, or cancelled
        if (auto self = weak.lock()) self->OnDeadline(gen, deadline);
      });
}

void RedisConnection::OnDeadline(uint64_t gen, Clock::time_point fired) {
  // A wait that had already expired when it was re-armed still runs; only the armed one counts.
  if (!deadline_armed_ || fired != armed_at_) return;
  deadline_armed_ = false;
  if (gen != generation_ || pending_.empty()) return;
  const auto now = Clock::now();
  auto earliest = Clock::time_point::max();
  for (const Pending& p : pending_) {
    if (p.deadline <= now) {
      return Fail(absl::DeadlineExceededError(
                      absl::StrCat("redis command timed out after ", p.timeout.count(), "ms")),
                  /*timeout=*/true);
    }
    earliest = std::min(earliest, p.deadline);
  }
  ArmDeadline(earliest);
}

void RedisConnection::CloseLink() {
  if (link_) {
    error_code ignored;
    link_->lowest().close(ignored);
    link_.reset();
  }
  resolver_.cancel();
  deadline_timer_.cancel();
  deadline_armed_ = false;
  connect_timer_.cancel();
  out_.clear();
  out_in_flight_ = 0;
  writing_ = false;
}

void RedisConnection::Fail(absl::Status why, bool timeout) {
  if (state_ == RedisConnectionState::kStopped) return;
  ++generation_;
  CloseLink();
  last_error_ = why;
  // Every failed reconnect ends here: rate-limited, so a long outage is a few lines, not one
  // per backoff step.
  core::log::WriteLimited(spdlog::level::warn, "redis_down", "redis connection down",
                          {{"url", RedactedUrl(options_.url)}, {"error", why.ToString()}});
  std::deque<Pending> failed = std::move(pending_);
  pending_.clear();
  ScheduleReconnect();
  SetState(RedisConnectionState::kDown, why);

  const auto now = Clock::now();
  const absl::Status reset = absl::UnavailableError(absl::StrCat("redis: ", why.message()));
  for (Pending& p : failed) {
    if (timeout && p.deadline <= now) {
      ++stats_.timeouts;
      Complete(p, absl::DeadlineExceededError(
                      absl::StrCat("redis command timed out after ", p.timeout.count(), "ms")));
    } else {
      Complete(p, reset);
    }
  }
}

void RedisConnection::ScheduleReconnect() {
  if (state_ == RedisConnectionState::kStopped) return;
  using std::chrono::milliseconds;
  if (attempt_ == 0) {
    // A link that worked broke (a server-side kill, an output-buffer cut, a fail-over): try again
    // at once, since every millisecond of a pub/sub outage is events to read back; if the server
    // is really gone, the next attempts back off.
    ++attempt_;
    asio::post(executor_, [weak = weak_from_this()] {
      if (auto self = weak.lock(); self && self->state_ == RedisConnectionState::kDown) {
        self->Connect();
      }
    });
    return;
  }
  const int shift = std::min(attempt_ - 1, 20);
  ++attempt_;
  const auto base = std::max<int64_t>(1, options_.reconnect_min.count());
  const int64_t cap = std::min<int64_t>(options_.reconnect_max.count(), base << shift);
  // "Equal jitter": at least half the step, so retries neither synchronise nor spin.
  std::uniform_int_distribution<int64_t> jitter(cap / 2, std::max<int64_t>(cap / 2, cap));
  backoff_timer_.expires_after(milliseconds(jitter(rng_)));
  backoff_timer_.async_wait([weak = weak_from_this()](const error_code& ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->Connect();
  });
}

// The handlers are moved out while they run, so one may Stop() (which drops them) or replace
// itself without destroying the function that is executing.
void RedisConnection::SetState(RedisConnectionState s, const absl::Status& why) {
  state_ = s;
  if (!state_handler_) return;
  StateHandler handler = std::move(state_handler_);
  state_handler_ = nullptr;
  handler(s, why);
  if (!state_handler_ && state_ != RedisConnectionState::kStopped) {
    state_handler_ = std::move(handler);
  }
}

void RedisConnection::Push(RedisReply reply) {
  if (!push_handler_) return;
  PushHandler handler = std::move(push_handler_);
  push_handler_ = nullptr;
  handler(std::move(reply));
  if (!push_handler_ && state_ != RedisConnectionState::kStopped) {
    push_handler_ = std::move(handler);
  }
}

}  // namespace bridge::broker
