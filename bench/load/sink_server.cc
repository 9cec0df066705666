#include "sink_server.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <deque>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "frame.h"
#include "publishers.h"

namespace bench {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

constexpr size_t kMaxQueue = 100000;

class SinkSession;
using Registry = std::unordered_map<std::string, std::unordered_set<SinkSession*>>;

// Beast does the upgrade; afterwards frames are written pre-encoded on the plain socket, up to
// 64 queued frames per writev, as a fast server would.
class SinkSession : public std::enable_shared_from_this<SinkSession> {
 public:
  SinkSession(tcp::socket socket, Registry& registry)
      : ws_(std::move(socket)), registry_(registry) {}

  ~SinkSession() {
    if (!path_.empty()) registry_[path_].erase(this);
  }

  void Start() {
    http::async_read(
        ws_.next_layer(), buffer_, req_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRequest(ec); });
  }

  void Send(std::shared_ptr<const std::string> frame) {
    if (queue_.size() >= kMaxQueue) {
      beast::error_code ignored;
      ws_.next_layer().close(ignored);
      return;
    }
    queue_.push_back(std::move(frame));
    if (accepted_ && in_flight_ == 0) Write();
  }

 private:
  void OnRequest(beast::error_code ec) {
    if (ec || !websocket::is_upgrade(req_)) return;
    // Registered before the 101 goes out, so a client that saw its handshake complete is
    // already a subscriber.
    path_ = std::string(req_.target());
    registry_[path_].insert(this);
    ws_.next_layer().set_option(tcp::no_delay(true));
    ws_.async_accept(req_,
                     [self = shared_from_this()](beast::error_code ec) { self->OnAccept(ec); });
  }

  void OnAccept(beast::error_code ec) {
    if (ec) return;
    accepted_ = true;
    DoRead();
    if (!queue_.empty()) Write();
  }

  // Reads only to notice the end of the connection.
  void DoRead() {
    ws_.next_layer().async_read_some(asio::buffer(scratch_),
                                     [self = shared_from_this()](beast::error_code ec, size_t) {
                                       if (ec) {
                                         beast::error_code ignored;
                                         self->ws_.next_layer().close(ignored);
                                         return;
                                       }
                                       self->DoRead();
                                     });
  }

  void Write() {
    std::vector<asio::const_buffer> buffers;
    size_t n = std::min<size_t>(queue_.size(), 64);
    buffers.reserve(n);
    for (size_t i = 0; i < n; ++i) buffers.push_back(asio::buffer(*queue_[i]));
    in_flight_ = n;
    asio::async_write(ws_.next_layer(), buffers,
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) return;
                        for (size_t i = 0; i < self->in_flight_; ++i) self->queue_.pop_front();
                        self->in_flight_ = 0;
                        if (!self->queue_.empty()) self->Write();
                      });
  }

  websocket::stream<tcp::socket> ws_;
  Registry& registry_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
  std::string path_;
  std::deque<std::shared_ptr<const std::string>> queue_;
  size_t in_flight_ = 0;
  bool accepted_ = false;
  char scratch_[512];
};

// A server-to-client text frame: FIN + opcode 1, unmasked.
std::shared_ptr<const std::string> EncodeTextFrame(const std::string& body) {
  auto frame = std::make_shared<std::string>();
  frame->reserve(body.size() + 10);
  frame->push_back(static_cast<char>(0x81));
  if (body.size() < 126) {
    frame->push_back(static_cast<char>(body.size()));
  } else if (body.size() < 65536) {
    frame->push_back(static_cast<char>(126));
    frame->push_back(static_cast<char>(body.size() >> 8));
    frame->push_back(static_cast<char>(body.size() & 0xff));
  } else {
    frame->push_back(static_cast<char>(127));
    for (int i = 7; i >= 0; --i)
      frame->push_back(static_cast<char>((body.size() >> (8 * i)) & 0xff));
  }
  frame->append(body);
  return frame;
}

}  // namespace

struct SinkServer::Impl {
  // Declared first: sessions destroyed with the io_context's pending handlers unregister here.
  Registry registry;
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  std::thread thread;
  // Sessions are owned by their handlers; the registry only points at them.
  void DoAccept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (!ec) std::make_shared<SinkSession>(std::move(socket), registry)->Start();
      if (acceptor.is_open()) DoAccept();
    });
  }
};

SinkServer::SinkServer() : impl_(std::make_unique<Impl>()) {}

SinkServer::~SinkServer() {
  if (impl_->thread.joinable()) {
    asio::post(impl_->ioc, [this] {
      beast::error_code ignored;
      impl_->acceptor.close(ignored);
      impl_->ioc.stop();
    });
    impl_->thread.join();
  }
}

uint16_t SinkServer::Start() {
  tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
  impl_->acceptor.open(endpoint.protocol());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor.bind(endpoint);
  impl_->acceptor.listen(4096);
  uint16_t port = impl_->acceptor.local_endpoint().port();
  impl_->DoAccept();
  impl_->thread = std::thread([this] {
    tid_.store(static_cast<pid_t>(syscall(SYS_gettid)));
    impl_->ioc.run();
  });
  return port;
}

void SinkServer::Broadcast(const std::string& path, const std::string& body) {
  asio::post(impl_->ioc, [this, path, frame = EncodeTextFrame(body)] {
    auto it = impl_->registry.find(path);
    if (it == impl_->registry.end()) return;
    // Send may close a session, which leaves the registry on destruction only (later).
    for (SinkSession* s : it->second) s->Send(frame);
  });
}

namespace {

class SinkPublisher : public Publisher {
 public:
  SinkPublisher(const PublisherConfig& config, SinkServer* sink)
      : config_(config), pad_(config.payload_bytes, 'x'), sink_(sink) {}

  void Publish(uint64_t seq, int channel, uint64_t t_ns, DoneFn done) override {
    size_t c = static_cast<size_t>(channel);
    size_t channels = config_.channel_names.size();
    sink_->Broadcast(config_.channel_paths[c],
                     BuildBenchBody(config_.channel_names[c], seq / channels + 1, seq, t_ns, pad_));
    done(true);
  }

 private:
  PublisherConfig config_;
  std::string pad_;
  SinkServer* sink_;
};

}  // namespace

std::unique_ptr<Publisher> MakeSinkPublisher(const PublisherConfig& config, SinkServer* sink) {
  return std::make_unique<SinkPublisher>(config, sink);
}

}  // namespace bench
