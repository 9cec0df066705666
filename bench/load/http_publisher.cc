// Publishes by HTTP POST on keep-alive connections (nchan's publisher location), on its own io
// thread. `window` connections; the driver never has more calls in flight, so a call always
// finds an idle connection.
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <deque>
#include <thread>

#include "frame.h"
#include "publishers.h"

namespace bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

class HttpPublisher;

class HttpConnection {
 public:
  HttpConnection(HttpPublisher& owner, asio::io_context& ioc) : owner_(owner), stream_(ioc) {}

  void Send(std::string target, std::string body, DoneFn done);

 private:
  void Write();
  void OnWrite(beast::error_code ec);
  void OnRead(beast::error_code ec);
  void Complete(bool ok, const char* what, beast::error_code ec);

  HttpPublisher& owner_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
  DoneFn done_;
  bool connected_ = false;
};

class HttpPublisher : public Publisher {
 public:
  explicit HttpPublisher(const PublisherConfig& config)
      : config_(config),
        pad_(config.payload_bytes, 'x'),
        guard_(asio::make_work_guard(ioc_)),
        endpoint_(asio::ip::make_address(config.host), config.port) {
    for (int i = 0; i < config.window; ++i) {
      connections_.push_back(std::make_unique<HttpConnection>(*this, ioc_));
      idle_.push_back(connections_.back().get());
    }
    thread_ = std::thread([this] { ioc_.run(); });
  }

  ~HttpPublisher() override {
    // Handlers still queued hold raw pointers: stop the loop in the same step as closing.
    guard_.reset();
    asio::post(ioc_, [this] {
      connections_.clear();
      ioc_.stop();
    });
    thread_.join();
  }

  void Publish(uint64_t seq, int channel, uint64_t t_ns, DoneFn done) override {
    size_t c = static_cast<size_t>(channel);
    size_t channels = config_.channel_names.size();
    std::string body =
        BuildBenchBody(config_.channel_names[c], seq / channels + 1, seq, t_ns, pad_);
    asio::post(ioc_, [this, target = config_.channel_paths[c], body = std::move(body),
                      done = std::move(done)]() mutable {
      if (idle_.empty()) {
        config_.errors->Add("http: no idle connection (window exceeded)");
        return done(false);
      }
      HttpConnection* conn = idle_.back();
      idle_.pop_back();
      conn->Send(std::move(target), std::move(body), std::move(done));
    });
  }

  void Release(HttpConnection* conn) { idle_.push_back(conn); }
  const PublisherConfig& config() const { return config_; }
  const tcp::endpoint& endpoint() const { return endpoint_; }

 private:
  PublisherConfig config_;
  std::string pad_;
  asio::io_context ioc_{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  tcp::endpoint endpoint_;
  std::vector<std::unique_ptr<HttpConnection>> connections_;
  std::vector<HttpConnection*> idle_;
  std::thread thread_;
};

void HttpConnection::Send(std::string target, std::string body, DoneFn done) {
  done_ = std::move(done);
  req_ = {};
  req_.method(http::verb::post);
  req_.target(target);
  req_.version(11);
  req_.set(http::field::host, owner_.config().host);
  req_.set(http::field::content_type, "application/json");
  req_.keep_alive(true);
  req_.body() = std::move(body);
  req_.prepare_payload();
  stream_.expires_after(std::chrono::seconds(30));
  if (connected_) return Write();
  stream_.async_connect(owner_.endpoint(), [this](beast::error_code ec) {
    if (ec) return Complete(false, "connect", ec);
    connected_ = true;
    stream_.socket().set_option(tcp::no_delay(true));
    Write();
  });
}

void HttpConnection::Write() {
  http::async_write(stream_, req_, [this](beast::error_code ec, size_t) { OnWrite(ec); });
}

void HttpConnection::OnWrite(beast::error_code ec) {
  if (ec) return Complete(false, "write", ec);
  res_ = {};
  http::async_read(stream_, buffer_, res_, [this](beast::error_code ec, size_t) { OnRead(ec); });
}

void HttpConnection::OnRead(beast::error_code ec) {
  if (ec) return Complete(false, "read", ec);
  unsigned status = res_.result_int();
  if (status < 200 || status > 299) {
    owner_.config().errors->Add("http: status " + std::to_string(status));
    if (!res_.keep_alive()) {
      beast::error_code ignored;
      stream_.socket().close(ignored);
      connected_ = false;
    }
    return Complete(false, nullptr, {});
  }
  if (!res_.keep_alive()) {
    beast::error_code ignored;
    stream_.socket().close(ignored);
    connected_ = false;
  }
  Complete(true, nullptr, {});
}

void HttpConnection::Complete(bool ok, const char* what, beast::error_code ec) {
  if (what != nullptr) {
    owner_.config().errors->Add(std::string("http ") + what + ": " + ec.message());
    beast::error_code ignored;
    stream_.socket().close(ignored);
    connected_ = false;
    buffer_.clear();
  }
  DoneFn done = std::move(done_);
  owner_.Release(this);
  done(ok);
}

}  // namespace

std::unique_ptr<Publisher> MakeHttpPublisher(const PublisherConfig& config) {
  return std::make_unique<HttpPublisher>(config);
}

}  // namespace bench
