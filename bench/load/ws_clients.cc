#include "ws_clients.h"

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <cstring>
#include <deque>
#include <future>
#include <string_view>
#include <thread>

#include "frame.h"

namespace bench {

namespace asio = boost::asio;
namespace beast = boost::beast;
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
  std::atomic<bool> stopping{false};

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

// A WebSocket client reduced to what a subscriber needs, on a plain socket: a fixed upgrade
// request, then frames parsed in place from a 16 KiB buffer (grown for bigger frames), so one
// recv can carry many frames and the receive path costs far less than the server's send path.
// Answers pings; reports the close code. (Beast's websocket::stream costs a composed operation
// per message: measured against the sink, 7.8 us of the tool's CPU per delivery, against 0.7 us
// here.)
class WsClient : public std::enable_shared_from_this<WsClient> {
 public:
  WsClient(ThreadCtx& tc, Shared& shared, int channel, bool slow)
      : tc_(tc),
        shared_(shared),
        socket_(tc.ioc),
        channel_(channel),
        slow_(slow),
        seen_((shared.config.events_per_channel + 63) / 64, 0) {}

  int channel() const { return channel_; }
  bool slow() const { return slow_; }
  bool ready() const { return ready_; }
  bool dead() const { return dead_; }
  bool measured() const { return measured_; }
  uint64_t unique() const { return unique_; }
  void set_measured() { measured_ = true; }

  void Start() {
    start_ns_ = shared_.NowNs();
    beast::error_code ec;
    socket_.open(tcp::v4(), ec);
    if (ec) return ConnectFailed("open", ec);
    if (slow_) {
      socket_.set_option(asio::socket_base::receive_buffer_size(shared_.config.slow_rcvbuf), ec);
    }
    socket_.async_connect(shared_.endpoint, [self = shared_from_this()](beast::error_code ec) {
      self->OnConnect(ec);
    });
  }

  void Resume() {
    if (!paused_ || dead_) return;
    paused_ = false;
    resumed_ = true;
    DoRead();
  }

  void Abort() {
    beast::error_code ignored;
    if (!socket_.is_open()) return;
    socket_.set_option(asio::socket_base::linger(true, 0), ignored);
    socket_.close(ignored);
  }

 private:
  static constexpr size_t kBufferSize = 16 * 1024;
  static constexpr size_t kMaxFrame = 1 << 20;

  void OnConnect(beast::error_code ec) {
    if (ec) return ConnectFailed("connect", ec);
    beast::error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
    request_ = "GET " + shared_.config.channel_paths[static_cast<size_t>(channel_)] +
               " HTTP/1.1\r\nHost: " + shared_.host_header +
               "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    buf_.resize(kBufferSize);
    asio::async_write(socket_, asio::buffer(request_),
                      [self = shared_from_this()](beast::error_code ec, size_t) {
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
    socket_.async_read_some(
        asio::buffer(buf_.data() + end_, buf_.size() - end_),
        [self = shared_from_this()](beast::error_code ec, size_t n) { self->OnRead(ec, n); });
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
    asio::async_write(socket_, asio::buffer(writes_.front()),
                      [self = shared_from_this()](beast::error_code ec, size_t) {
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
    socket_.close(ignored);
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
  tcp::socket socket_;
  std::string request_;
  std::vector<char> buf_;
  size_t begin_ = 0, end_ = 0;
  std::string partial_;
  std::deque<std::string> writes_;
  int channel_;
  bool slow_;
  bool upgraded_ = false, ready_ = false, dead_ = false, measured_ = false;
  bool paused_ = false, resumed_ = false;
  int64_t start_ns_ = 0;
  std::vector<uint64_t> seen_;
  uint64_t unique_ = 0;
};

void ThreadCtx::LaunchMore() {
  while (pending < concurrency && next_to_launch < clients.size()) {
    ++pending;
    clients[next_to_launch++]->Start();
  }
}

}  // namespace

struct ClientPool::Impl {
  Shared shared;
  std::vector<std::unique_ptr<ThreadCtx>> threads;
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
    tc.clients.push_back(std::make_shared<WsClient>(
        tc, s, static_cast<int>(static_cast<uint64_t>(j) % s.channels), slow));
  }
}

ClientPool::~ClientPool() { Stop(); }

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
