#include "raw_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/parse.hpp>

#include "app/bridge_server.h"
#include "test_support.h"

namespace bridge::conformance {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

std::string Frame(uint8_t first_byte, std::string_view payload, bool masked, uint32_t key) {
  std::string f;
  f.push_back(static_cast<char>(first_byte));
  const uint8_t mask_bit = masked ? 0x80 : 0;
  const uint64_t n = payload.size();
  if (n < 126) {
    f.push_back(static_cast<char>(mask_bit | n));
  } else if (n <= 0xFFFF) {
    f.push_back(static_cast<char>(mask_bit | 126));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n & 0xFF));
  } else {
    f.push_back(static_cast<char>(mask_bit | 127));
    for (int shift = 56; shift >= 0; shift -= 8)
      f.push_back(static_cast<char>((n >> shift) & 0xFF));
  }
  const uint8_t k[4] = {static_cast<uint8_t>(key >> 24), static_cast<uint8_t>(key >> 16),
                        static_cast<uint8_t>(key >> 8), static_cast<uint8_t>(key)};
  if (masked) f.append(reinterpret_cast<const char*>(k), 4);
  const size_t start = f.size();
  f.append(payload);
  if (masked) {
    for (size_t i = 0; i < payload.size(); ++i)
      f[start + i] = static_cast<char>(f[start + i] ^ k[i & 3]);
  }
  return f;
}

std::string ClosePayload(uint16_t code, std::string_view reason) {
  std::string p;
  p.push_back(static_cast<char>(code >> 8));
  p.push_back(static_cast<char>(code & 0xFF));
  p.append(reason);
  return p;
}

std::string JsonPing(size_t size) {
  const std::string head = R"({"type":"ping","pad":")";
  const std::string tail = "\"}";
  EXPECT_GE(size, head.size() + tail.size());
  std::string s = head;
  s.append(size - head.size() - tail.size(), 'x');
  s += tail;
  return s;
}

uint16_t ServerFrame::close_code() const {
  if (payload.size() < 2) return 1005;
  return static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                               static_cast<uint8_t>(payload[1]));
}

RawClient::RawClient() : socket_(ioc_) {}

RawClient::~RawClient() {
  boost::system::error_code ignored;
  socket_.close(ignored);
}

std::unique_ptr<RawClient> RawClient::Connect(uint16_t port, const std::string& target) {
  std::unique_ptr<RawClient> c(new RawClient());
  boost::system::error_code ec;
  c->socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  if (ec) {
    ADD_FAILURE() << "connect: " << ec.message();
    return nullptr;
  }
  c->socket_.set_option(tcp::no_delay(true), ec);
  // RFC 6455 section 1.3's sample key and its accept value.
  const std::string request = "GET " + target +
                              " HTTP/1.1\r\n"
                              "Host: 127.0.0.1:" +
                              std::to_string(port) +
                              "\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13\r\n\r\n";
  if (!c->Send(request)) {
    ADD_FAILURE() << "upgrade request not written";
    return nullptr;
  }
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  size_t end;
  while ((end = c->input_.find("\r\n\r\n")) == std::string::npos) {
    if (c->input_.size() > 16 * 1024 || !c->ReadMore(deadline)) {
      ADD_FAILURE() << "no upgrade response: " << c->input_;
      return nullptr;
    }
  }
  std::string head = c->input_.substr(0, end + 2);
  c->input_.erase(0, end + 4);
  for (auto& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (head.rfind("http/1.1 101 ", 0) != 0 ||
      head.find("\r\nsec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n") ==
          std::string::npos ||
      head.find("\r\nupgrade: websocket\r\n") == std::string::npos) {
    ADD_FAILURE() << "bad upgrade response: " << head;
    return nullptr;
  }
  return c;
}

bool RawClient::Send(std::string_view bytes, std::chrono::milliseconds timeout) {
  boost::system::error_code ec;
  bool done = false;
  asio::async_write(socket_, asio::buffer(bytes.data(), bytes.size()),
                    [&](boost::system::error_code e, size_t) {
                      ec = e;
                      done = true;
                    });
  ioc_.restart();
  ioc_.run_for(timeout);
  if (!done) {
    socket_.cancel(ec);
    ioc_.restart();
    ioc_.run();
    return false;
  }
  return !ec;
}

bool RawClient::ReadMore(std::chrono::steady_clock::time_point deadline) {
  if (eof_) return false;
  char buf[64 * 1024];
  boost::system::error_code ec;
  size_t n = 0;
  bool done = false;
  socket_.async_read_some(asio::buffer(buf), [&](boost::system::error_code e, size_t bytes) {
    ec = e;
    n = bytes;
    done = true;
  });
  ioc_.restart();
  ioc_.run_until(deadline);
  if (!done) {
    boost::system::error_code ignored;
    socket_.cancel(ignored);
    ioc_.restart();
    ioc_.run();  // the read completes, aborted (or with what raced in)
  }
  input_.append(buf, n);
  if (!done) {
    timed_out_ = n == 0;
    return n > 0;
  }
  if (ec) {
    eof_ = true;  // EOF or a reset: the connection ended
    return n > 0;
  }
  return true;
}

std::optional<ServerFrame> RawClient::Read(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    // Parses one whole frame from input_, if there is one.
    if (input_.size() >= 2) {
      const auto* p = reinterpret_cast<const uint8_t*>(input_.data());
      uint64_t len = p[1] & 0x7F;
      size_t header = 2;
      bool have_header = true;
      if (len == 126) {
        have_header = input_.size() >= 4;
        if (have_header) len = (uint64_t{p[2]} << 8) | p[3];
        header = 4;
      } else if (len == 127) {
        have_header = input_.size() >= 10;
        if (have_header) {
          len = 0;
          for (int i = 2; i < 10; ++i) len = (len << 8) | p[i];
        }
        header = 10;
      }
      const bool masked = (p[1] & 0x80) != 0;
      if (masked) header += 4;
      if (have_header && input_.size() >= header + len) {
        ServerFrame f;
        f.fin = (p[0] & 0x80) != 0;
        f.rsv = static_cast<uint8_t>((p[0] >> 4) & 0x7);
        f.opcode = p[0] & 0x0F;
        f.masked = masked;
        f.payload = input_.substr(header, len);
        if (masked) {
          for (size_t i = 0; i < len; ++i) {
            f.payload[i] = static_cast<char>(f.payload[i] ^ p[header - 4 + (i & 3)]);
          }
        }
        input_.erase(0, header + len);
        // RFC 6455 section 5.1: a server MUST NOT mask; 5.2: RSV bits are 0 without extensions.
        EXPECT_FALSE(f.masked) << "the server masked a frame";
        EXPECT_EQ(f.rsv, 0) << "the server set reserved bits";
        return f;
      }
    }
    if (!ReadMore(deadline)) return std::nullopt;
  }
}

bool RawClient::AwaitEof(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (input_.empty() && !eof_) {
    if (!ReadMore(deadline)) break;
  }
  if (!input_.empty()) ADD_FAILURE() << input_.size() << " bytes after the close frame";
  return eof_ && input_.empty();
}

void RawClient::ShutdownSend() {
  boost::system::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
}

ConformanceTest::ConformanceTest() = default;
ConformanceTest::~ConformanceTest() = default;

void ConformanceTest::SetUp() {
  app::ServerConfig config;
  config.io_threads = 1;
  // Heartbeats (WebSocket and JSON pings) an hour apart: every frame the server sends answers
  // the test.
  config.ws.heartbeat_interval = std::chrono::hours(1);
  config.ws.idle_timeout = std::chrono::hours(2);
  max_frame_bytes_ = config.ws.max_frame_bytes;
  server_ = testing::StartBridge(std::move(config));
  ASSERT_NE(server_, nullptr);
}

std::unique_ptr<RawClient> ConformanceTest::Connect() {
  return RawClient::Connect(server_->ws_port());
}

::testing::AssertionResult IsJsonPong(const std::optional<ServerFrame>& frame) {
  if (!frame) return ::testing::AssertionFailure() << "no frame";
  if (frame->opcode != kText || !frame->fin) {
    return ::testing::AssertionFailure()
           << "opcode " << int{frame->opcode} << " fin " << frame->fin << ": " << frame->payload;
  }
  if (frame->payload != kJsonPong) return ::testing::AssertionFailure() << frame->payload;
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult IsErrorFrame(const std::optional<ServerFrame>& frame,
                                        std::string_view code) {
  if (!frame) return ::testing::AssertionFailure() << "no frame";
  if (frame->opcode != kText) {
    return ::testing::AssertionFailure() << "opcode " << int{frame->opcode};
  }
  boost::system::error_code ec;
  auto v = boost::json::parse(frame->payload, ec);
  const boost::json::object* o = ec ? nullptr : v.if_object();
  const boost::json::value* type = o != nullptr ? o->if_contains("type") : nullptr;
  const boost::json::value* data = o != nullptr ? o->if_contains("data") : nullptr;
  const boost::json::value* got =
      data != nullptr && data->is_object() ? data->as_object().if_contains("code") : nullptr;
  if (type == nullptr || *type != "error" || got == nullptr || !got->is_string() ||
      std::string_view(got->as_string()) != code) {
    return ::testing::AssertionFailure() << frame->payload;
  }
  return ::testing::AssertionSuccess();
}

namespace {

::testing::AssertionResult CloseThenEof(RawClient& client, const std::optional<ServerFrame>& f) {
  if (!f) {
    return ::testing::AssertionFailure()
           << (client.eof() ? "the connection ended without a close frame" : "no close frame");
  }
  if (f->opcode != kClose) {
    return ::testing::AssertionFailure()
           << "got opcode " << int{f->opcode} << " (" << f->payload << ") instead of a close";
  }
  if (!client.AwaitEof()) {
    return ::testing::AssertionFailure() << "the server did not close the TCP connection";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace

::testing::AssertionResult ClosesWith(RawClient& client, uint16_t code) {
  auto f = client.Read();
  if (f && f->opcode == kClose && f->close_code() != code) {
    return ::testing::AssertionFailure()
           << "closed with " << f->close_code() << " instead of " << code;
  }
  return CloseThenEof(client, f);
}

::testing::AssertionResult AnswersClose(RawClient& client, uint16_t code) {
  auto f = client.Read();
  if (f && f->opcode == kClose) {
    const uint16_t got = f->close_code();
    const bool ok = code == 1005 ? (got == 1005 || got == 1000) : (got == code || got == 1000);
    if (!ok) return ::testing::AssertionFailure() << "answered " << got << " to " << code;
  }
  return CloseThenEof(client, f);
}

}  // namespace bridge::conformance
