#include "ws_clients.h"

#include <openssl/ssl.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <string_view>
#include <thread>
#include <type_traits>

#include "frame.h"

namespace bench {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

class WsClient;

// Read-only during the run, except the atomics.
struct Shared {
  ClientPoolConfig config;
  ErrorLog* errors = nullptr;
  tcp::endpoint endpoint;
  std::string host_header;
  uint64_t channels = 1;
  std::unique_ptr<ssl::context> tls;  // null: plain subscribers
  std::atomic<bool> stopping{false};
  // What the first TLS handshake negotiated.
  std::once_flag tls_seen;
  std::string tls_version, tls_cipher;

  int64_t NowNs() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                                config.t0)
        .count();
  }
};

// One io thread and what only it touches (plain fields) or the driver reads (atomics).
struct ThreadCtx {
  asio::io_context ioc{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard{asio::make_work_guard(ioc)};
  std::thread thread;
  std::vector<std::shared_ptr<WsClient>> clients;
  size_t next_to_launch = 0;
  int pending = 0;
  int concurrency = 1;

  LatencyHistogram latency;
  LatencyHistogram connect;
  uint64_t duplicated = 0, misrouted = 0, control_frames = 0, late_frames = 0, slow_frames = 0;
  uint64_t disconnects = 0;
  std::map<std::string, uint64_t> end_reasons;

  std::atomic<uint64_t> ready{0}, failed{0}, delivered{0}, slow_ended{0};
  std::atomic<int64_t> last_delivery_ns{0};

  void LaunchMore();
  void AttemptDone() {
    --pending;
    LaunchMore();
  }
};

// What the pool and its snapshots see of a subscriber, whichever its transport.
class WsClient {
 public:
  WsClient(int channel, bool slow) : channel_(channel), slow_(slow) {}
  virtual ~WsClient() = default;

  int channel() const { return channel_; }
  bool slow() const { return slow_; }
  bool ready() const { return ready_; }
  bool dead() const { return dead_; }
  bool measured() const { return measured_; }
  uint64_t unique() const { return unique_; }
  void set_measured() { measured_ = true; }

  virtual void Start() = 0;
  virtual void Resume() = 0;
  virtual void Abort() = 0;

 protected:
  const int channel_;
  const bool slow_;
  bool ready_ = false, dead_ = false, measured_ = false;
  uint64_t unique_ = 0;
};

// A WebSocket client reduced to what a subscriber needs, on a plain socket or a TLS stream over
// one (Stream: tcp::socket or ssl::stream<tcp::socket>, fixed at compile time so that the plain
// client's read path is the same as before TLS existed): a fixed upgrade request, then frames
// parsed in place from a 16 KiB buffer (grown for bigger frames), so one read can carry many
// frames and the receive path costs far less than the server's send path. Answers pings;
// reports the close code. (Beast's websocket::stream costs a composed operation per message:
// measured against the sink, 7.8 us of the tool's CPU per delivery, against 0.7 us here.)
template <class Stream>
class WsClientOn final : public WsClient, public std::enable_shared_from_this<WsClientOn<Stream>> {
 public:
  static constexpr bool kTls = !std::is_same_v<Stream, tcp::socket>;

  WsClientOn(ThreadCtx& tc, Shared& shared, int channel, bool slow)
      : WsClient(channel, slow),
        tc_(tc),
        shared_(shared),
        stream_(MakeStream(tc.ioc, shared.tls.get())),
        seen_((shared.config.events_per_channel + 63) / 64, 0) {}

  void Start() override {
    start_ns_ = shared_.NowNs();
    beast::error_code ec;
    Socket().open(tcp::v4(), ec);
    if (ec) return ConnectFailed("open", ec);
    if (slow_) {
      Socket().set_option(asio::socket_base::receive_buffer_size(shared_.config.slow_rcvbuf), ec);
    }
    Socket().async_connect(shared_.endpoint, [self = this->shared_from_this()](
                                                 beast::error_code ec) { self->OnConnect(ec); });
  }

  void Resume() override {
    if (!paused_ || dead_) return;
    paused_ = false;
    resumed_ = true;
    DoRead();
  }

  // RST: no close_notify, no TIME_WAIT.
  void Abort() override {
    beast::error_code ignored;
    if (!Socket().is_open()) return;
    Socket().set_option(asio::socket_base::linger(true, 0), ignored);
    Socket().close(ignored);
  }

 private:
  static constexpr size_t kBufferSize = 16 * 1024;
  static constexpr size_t kMaxFrame = 1 << 20;

  static Stream MakeStream(asio::io_context& ioc, ssl::context* tls) {
    if constexpr (kTls) {
      return Stream(ioc, *tls);
    } else {
      (void)tls;
      return Stream(ioc);
    }
  }

  tcp::socket& Socket() {
    if constexpr (kTls) {
      return stream_.next_layer();
    } else {
      return stream_;
    }
  }

  void OnConnect(beast::error_code ec) {
    if (ec) return ConnectFailed("connect", ec);
    beast::error_code ignored;
    Socket().set_option(tcp::no_delay(true), ignored);
    if constexpr (kTls) {
      // SNI, and the name the certificate must carry (checked by OpenSSL during the handshake).
      const std::string& name = shared_.config.tls_server_name;
      SSL* ssl = stream_.native_handle();
      if (SSL_set_tlsext_host_name(ssl, name.c_str()) != 1 || SSL_set1_host(ssl, name.c_str()) != 1)
        return ConnectFailed("tls server name", {});
      stream_.async_handshake(ssl::stream_base::client,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (ec) return self->ConnectFailed("tls handshake", ec);
                                self->NoteTls();
                                self->SendUpgrade();
                              });
    } else {
      SendUpgrade();
    }
  }

  void NoteTls() {
    std::call_once(shared_.tls_seen, [this] {
      SSL* ssl = stream_.native_handle();
      shared_.tls_version = SSL_get_version(ssl);
      shared_.tls_cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl));
    });
  }

  void SendUpgrade() {
    request_ = "GET " + shared_.config.channel_paths[static_cast<size_t>(channel_)] +
               " HTTP/1.1\r\nHost: " + shared_.host_header +
               "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    buf_.resize(kBufferSize);
    asio::async_write(stream_, asio::buffer(request_),
                      [self = this->shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) return self->ConnectFailed("upgrade write", ec);
                        self->DoRead();
                      });
  }

  void DoRead() {
    if (slow_ && ready_ && !resumed_) {
      paused_ = true;
      return;
    }
    if (end_ == buf_.size()) {
      // Compact; grow only for a frame larger than the buffer.
      if (begin_ > 0) {
        std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      } else if (buf_.size() < kMaxFrame + 16) {
        buf_.resize(buf_.size() * 2);
      } else {
        return Ended("frame too big");
      }
    }
    stream_.async_read_some(
        asio::buffer(buf_.data() + end_, buf_.size() - end_),
        [self = this->shared_from_this()](beast::error_code ec, size_t n) { self->OnRead(ec, n); });
  }

  void OnRead(beast::error_code ec, size_t n) {
    if (ec) {
      if (shared_.stopping.load()) return;
      if (!upgraded_) return ConnectFailed("upgrade read", ec);
      return Ended(ec.message());
    }
    end_ += n;
    if (!upgraded_ && !ParseUpgrade()) return;
    if (!ParseFrames()) return;
    if (begin_ == end_) begin_ = end_ = 0;
    DoRead();
  }

  // Returns false when the read loop must stop (failed, or waiting for more of the response).
  bool ParseUpgrade() {
    std::string_view data(buf_.data() + begin_, end_ - begin_);
    size_t head_end = data.find("\r\n\r\n");
    if (head_end == std::string_view::npos) {
      if (data.size() > 16 * 1024)
        ConnectFailed("upgrade response", {});
      else
        DoRead();
      return false;
    }
    if (data.substr(0, 12) != "HTTP/1.1 101") {
      std::string status(data.substr(0, std::min<size_t>(data.find("\r\n"), 40)));
      ConnectFailed(("upgrade refused: " + status).c_str(), {});
      return false;
    }
    upgraded_ = true;
    begin_ += head_end + 4;
    if (!shared_.config.wait_subscribed) MarkReady();
    return true;
  }

  bool ParseFrames() {
    while (end_ - begin_ >= 2) {
      const auto* p = reinterpret_cast<const unsigned char*>(buf_.data() + begin_);
      size_t avail = end_ - begin_;
      bool fin = (p[0] & 0x80) != 0;
      int opcode = p[0] & 0x0f;
      bool masked = (p[1] & 0x80) != 0;
      uint64_t len = p[1] & 0x7f;
      size_t header = 2;
      if (len == 126) {
        if (avail < 4) break;
        len = (uint64_t{p[2]} << 8) | p[3];
        header = 4;
      } else if (len == 127) {
        if (avail < 10) break;
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | p[2 + i];
        header = 10;
      }
      if (masked) header += 4;  // servers must not mask; tolerate it
      if (len > kMaxFrame) {
        Ended("frame too big");
        return false;
      }
      if (avail < header + len) break;
      std::string_view payload(buf_.data() + begin_ + header, static_cast<size_t>(len));
      if (masked) {
        char* q = buf_.data() + begin_ + header;
        const unsigned char* key = p + header - 4;
        for (size_t i = 0; i < len; ++i) q[i] = static_cast<char>(q[i] ^ key[i % 4]);
      }
      begin_ += header + static_cast<size_t>(len);
      if (opcode == 0x8) {
        uint16_t code = len >= 2
                            ? static_cast<uint16_t>((static_cast<unsigned char>(payload[0]) << 8) |
                                                    static_cast<unsigned char>(payload[1]))
                            : 1005;
        Ended("close_" + std::to_string(code));
        return false;
      }
      if (opcode == 0x9) {
        SendControl(0xA, payload);
        continue;
      }
      if (opcode == 0xA) continue;
      // Data: text, binary or continuation.
      if (!fin || opcode == 0x0) {
        partial_.append(payload);
        if (!fin) continue;
        HandleFrame(partial_);
        partial_.clear();
        continue;
      }
      HandleFrame(payload);
    }
    return true;
  }

  // A masked (zero key) control frame; small, so a queue of strings is enough.
  void SendControl(int opcode, std::string_view payload) {
    std::string frame;
    frame += static_cast<char>(0x80 | opcode);
    frame += static_cast<char>(0x80 | static_cast<int>(std::min<size_t>(payload.size(), 125)));
    frame.append(4, '\0');
    frame.append(payload.substr(0, 125));
    writes_.push_back(std::move(frame));
    if (writes_.size() == 1) DoWrite();
  }

  void DoWrite() {
    asio::async_write(stream_, asio::buffer(writes_.front()),
                      [self = this->shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) return;
                        self->writes_.pop_front();
                        if (!self->writes_.empty()) self->DoWrite();
                      });
  }

  void MarkReady() {
    ready_ = true;
    tc_.connect.Record(static_cast<uint64_t>(shared_.NowNs() - start_ns_));
    tc_.ready.fetch_add(1, std::memory_order_relaxed);
    tc_.AttemptDone();
  }

  void ConnectFailed(const char* what, beast::error_code ec) {
    dead_ = true;
    if (shared_.stopping.load()) return;
    shared_.errors->Add(std::string("ws ") + what + (ec ? ": " + ec.message() : ""));
    tc_.failed.fetch_add(1, std::memory_order_relaxed);
    tc_.AttemptDone();
  }

  void HandleFrame(std::string_view frame) {
    if (!ready_) {
      if (frame.find("\"subscribed\"") != std::string_view::npos) return MarkReady();
      ++tc_.control_frames;
      return;
    }
    ParsedFrame parsed = ParseBenchFrame(frame);
    if (parsed.seq < 0) {
      ++tc_.control_frames;
      return;
    }
    if (slow_) {
      ++tc_.slow_frames;
      return;
    }
    if (!measured_) {
      ++tc_.late_frames;
      return;
    }
    uint64_t seq = static_cast<uint64_t>(parsed.seq);
    uint64_t k = seq / shared_.channels;
    if (seq % shared_.channels != static_cast<uint64_t>(channel_) ||
        k >= shared_.config.events_per_channel) {
      ++tc_.misrouted;
      return;
    }
    uint64_t& word = seen_[k / 64];
    uint64_t mask = uint64_t{1} << (k % 64);
    if (word & mask) {
      ++tc_.duplicated;
      return;
    }
    word |= mask;
    ++unique_;
    int64_t now = shared_.NowNs();
    double latency = static_cast<double>(now) - parsed.t_ns;
    tc_.latency.Record(latency > 0 ? static_cast<uint64_t>(latency) : 0);
    tc_.delivered.fetch_add(1, std::memory_order_relaxed);
    tc_.last_delivery_ns.store(now, std::memory_order_relaxed);
  }

  // The connection ended after the upgrade (close frame, EOF, reset).
  void Ended(const std::string& reason) {
    if (shared_.stopping.load()) return;
    if (!ready_) return ConnectFailed(("ended before subscribed: " + reason).c_str(), {});
    dead_ = true;
    beast::error_code ignored;
    Socket().close(ignored);
    if (slow_) {
      ++tc_.end_reasons["slow:" + reason];
      tc_.slow_ended.fetch_add(1, std::memory_order_relaxed);
    } else {
      ++tc_.end_reasons[reason];
      ++tc_.disconnects;
    }
  }

  ThreadCtx& tc_;
  Shared& shared_;
  Stream stream_;
  std::string request_;
  std::vector<char> buf_;
  size_t begin_ = 0, end_ = 0;
  std::string partial_;
  std::deque<std::string> writes_;
  bool upgraded_ = false;
  bool paused_ = false, resumed_ = false;
  int64_t start_ns_ = 0;
  std::vector<uint64_t> seen_;
};

void ThreadCtx::LaunchMore() {
  while (pending < concurrency && next_to_launch < clients.size()) {
    ++pending;
    clients[next_to_launch++]->Start();
  }
}

// The subscribers' TLS context: TLS 1.2 or later, the peer verified against `ca_file`.
std::unique_ptr<ssl::context> MakeTlsContext(const std::string& ca_file, std::string* error) {
  if (ca_file.empty()) {
    *error = "--tls needs --tls_ca_file";
    return nullptr;
  }
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  beast::error_code ec;
  ctx->load_verify_file(ca_file, ec);
  if (ec) {
    *error = "--tls_ca_file " + ca_file + ": " + ec.message();
    return nullptr;
  }
  ctx->set_verify_mode(ssl::verify_peer, ec);
  if (ec) {
    *error = "tls verify mode: " + ec.message();
    return nullptr;
  }
  return ctx;
}

}  // namespace

struct ClientPool::Impl {
  Shared shared;
  std::vector<std::unique_ptr<ThreadCtx>> threads;
  std::string init_error;
  bool stopped = false;
};

ClientPool::ClientPool(ClientPoolConfig config, ErrorLog* errors)
    : impl_(std::make_unique<Impl>()) {
  Shared& s = impl_->shared;
  s.config = std::move(config);
  s.errors = errors;
  s.endpoint = tcp::endpoint(asio::ip::make_address(s.config.host), s.config.port);
  s.host_header = s.config.host + ":" + std::to_string(s.config.port);
  s.channels = s.config.channel_paths.size();
  if (s.config.tls) {
    s.tls = MakeTlsContext(s.config.tls_ca_file, &impl_->init_error);
    if (!s.tls) return;
  }
  int threads = std::max(1, s.config.io_threads);
  for (int i = 0; i < threads; ++i) {
    auto tc = std::make_unique<ThreadCtx>();
    tc->concurrency = std::max(1, s.config.connect_concurrency / threads);
    impl_->threads.push_back(std::move(tc));
  }
  // Spread slow subscribers evenly: subscriber j is slow when floor((j+1)f) > floor(jf).
  double f = s.config.slow_fraction;
  for (int j = 0; j < s.config.subscribers; ++j) {
    bool slow = f > 0 && static_cast<int64_t>((j + 1) * f) > static_cast<int64_t>(j * f);
    ThreadCtx& tc = *impl_->threads[static_cast<size_t>(j % threads)];
    int channel = static_cast<int>(static_cast<uint64_t>(j) % s.channels);
    if (s.tls) {
      tc.clients.push_back(
          std::make_shared<WsClientOn<ssl::stream<tcp::socket>>>(tc, s, channel, slow));
    } else {
      tc.clients.push_back(std::make_shared<WsClientOn<tcp::socket>>(tc, s, channel, slow));
    }
  }
}

ClientPool::~ClientPool() { Stop(); }

const std::string& ClientPool::InitError() const { return impl_->init_error; }

void ClientPool::Start() {
  for (auto& tc : impl_->threads) {
    ThreadCtx* raw = tc.get();
    asio::post(raw->ioc, [raw] { raw->LaunchMore(); });
    raw->thread = std::thread([raw] { raw->ioc.run(); });
  }
}

uint64_t ClientPool::Ready() const {
  uint64_t n = 0;
  for (auto& tc : impl_->threads) n += tc->ready.load(std::memory_order_relaxed);
  return n;
}

uint64_t ClientPool::Failed() const {
  uint64_t n = 0;
  for (auto& tc : impl_->threads) n += tc->failed.load(std::memory_order_relaxed);
  return n;
}

uint64_t ClientPool::Delivered() const {
  uint64_t n = 0;
  for (auto& tc : impl_->threads) n += tc->delivered.load(std::memory_order_relaxed);
  return n;
}

int64_t ClientPool::LastDeliveryNs() const {
  int64_t t = 0;
  for (auto& tc : impl_->threads) t = std::max(t, tc->last_delivery_ns.load());
  return t;
}

uint64_t ClientPool::SlowEnded() const {
  uint64_t n = 0;
  for (auto& tc : impl_->threads) n += tc->slow_ended.load(std::memory_order_relaxed);
  return n;
}

std::vector<uint64_t> ClientPool::SnapshotMeasured() {
  std::vector<uint64_t> per_channel(impl_->shared.channels, 0);
  for (auto& tc : impl_->threads) {
    std::promise<std::vector<uint64_t>> promise;
    auto future = promise.get_future();
    ThreadCtx* raw = tc.get();
    size_t channels = impl_->shared.channels;
    asio::post(raw->ioc, [raw, channels, &promise] {
      std::vector<uint64_t> counts(channels, 0);
      for (auto& c : raw->clients) {
        if (c->ready() && !c->dead() && !c->slow()) {
          c->set_measured();
          ++counts[static_cast<size_t>(c->channel())];
        }
      }
      promise.set_value(std::move(counts));
    });
    if (future.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
      impl_->shared.errors->Add("snapshot: io thread did not answer in 30 s");
      // The lambda still references the promise: wait for it rather than leave it dangling.
      future.wait();
    }
    auto counts = future.get();
    for (size_t i = 0; i < channels; ++i) per_channel[i] += counts[i];
  }
  return per_channel;
}

void ClientPool::ResumeSlow() {
  for (auto& tc : impl_->threads) {
    ThreadCtx* raw = tc.get();
    asio::post(raw->ioc, [raw] {
      for (auto& c : raw->clients) c->Resume();
    });
  }
}

void ClientPool::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->shared.stopping.store(true);
  for (auto& tc : impl_->threads) {
    ThreadCtx* raw = tc.get();
    asio::post(raw->ioc, [raw] {
      for (auto& c : raw->clients) c->Abort();
      raw->guard.reset();
    });
  }
  for (auto& tc : impl_->threads) {
    if (tc->thread.joinable()) tc->thread.join();
  }
}

PoolResults ClientPool::Collect(const std::vector<uint64_t>& accepted_per_channel) {
  PoolResults r;
  // The io threads are joined: the handshakes' writes happened before.
  r.tls_version = impl_->shared.tls_version;
  r.tls_cipher = impl_->shared.tls_cipher;
  for (auto& tc : impl_->threads) {
    r.latency.Merge(tc->latency);
    r.connect.Merge(tc->connect);
    r.ready += tc->ready.load();
    r.failed += tc->failed.load();
    r.duplicated += tc->duplicated;
    r.misrouted += tc->misrouted;
    r.control_frames += tc->control_frames;
    r.late_frames += tc->late_frames;
    r.slow_frames += tc->slow_frames;
    r.disconnects += tc->disconnects;
    r.slow_ended += tc->slow_ended.load();
    for (const auto& [k, v] : tc->end_reasons) r.end_reasons[k] += v;
    for (auto& c : tc->clients) {
      if (c->slow() && c->ready()) ++r.slow;
      if (!c->measured()) continue;
      ++r.measured;
      uint64_t expected = accepted_per_channel[static_cast<size_t>(c->channel())];
      uint64_t got = std::min(c->unique(), expected);
      r.expected += expected;
      r.delivered += c->unique();
      r.lost += expected - got;
    }
  }
  return r;
}

}  // namespace bench
