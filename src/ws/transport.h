// A client connection's byte stream: a TCP socket (ws://, http://) or TLS over it (wss://,
// https://), behind one interface so that the HTTP and WebSocket sessions are written once.
//
// Meets Asio's AsyncReadStream/AsyncWriteStream for callback handlers, so Beast's HTTP parser and
// serializer run over it; WriteGather is the session's many-frames write. Not thread-safe: like
// the socket, it belongs to its shard's io thread.
#ifndef BRIDGE_WS_TRANSPORT_H_
#define BRIDGE_WS_TRANSPORT_H_

#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace bridge::ws {

class Transport {
 public:
  using tcp = boost::asio::ip::tcp;
  using TlsStream = boost::asio::ssl::stream<tcp::socket>;
  using executor_type = tcp::socket::executor_type;

  // Plain TCP.
  explicit Transport(tcp::socket socket) : plain_(std::move(socket)) {}
  // TLS with `context` (kept alive with the connection); the handshake is Handshake().
  Transport(tcp::socket socket, std::shared_ptr<boost::asio::ssl::context> context)
      : plain_(socket.get_executor()),
        tls_(std::make_unique<TlsStream>(std::move(socket), *context)),
        context_(std::move(context)) {}

  Transport(Transport&&) = default;
  Transport& operator=(Transport&&) = default;

  bool is_tls() const { return tls_ != nullptr; }
  executor_type get_executor() { return plain_.get_executor(); }
  tcp::socket& lowest() { return tls_ ? tls_->next_layer() : plain_; }

  // The server side of the TLS handshake (TLS transports only).
  template <class Handler>
  void Handshake(Handler&& handler) {
    tls_->async_handshake(boost::asio::ssl::stream_base::server, std::forward<Handler>(handler));
  }

  template <class MutableBuffers, class Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_read_some(buffers, std::forward<Handler>(handler));
    } else {
      plain_.async_read_some(buffers, std::forward<Handler>(handler));
    }
  }

  template <class ConstBuffers, class Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_write_some(buffers, std::forward<Handler>(handler));
    } else {
      plain_.async_write_some(buffers, std::forward<Handler>(handler));
    }
  }

  // Writes all of `buffers` (which must stay valid until `handler` runs). Over TCP it is one
  // gather write; TLS writes one buffer per record, so the pieces are first copied into one
  // buffer and leave as few full records.
  template <class Handler>
  void WriteGather(const std::vector<boost::asio::const_buffer>& buffers, Handler&& handler) {
    if (!tls_) {
      boost::asio::async_write(plain_, buffers, std::forward<Handler>(handler));
      return;
    }
    staging_.clear();
    for (const auto& b : buffers) staging_.append(static_cast<const char*>(b.data()), b.size());
    boost::asio::async_write(*tls_, boost::asio::buffer(staging_), std::forward<Handler>(handler));
  }

  // After a WriteGather completes: a large staging buffer is not kept by an idle connection.
  void WriteDone() {
    if (staging_.capacity() > kMaxIdleStaging) std::string().swap(staging_);
  }

  // Half-closes (FIN) after the last frame. Under TLS no close_notify is sent: the WebSocket
  // close frame already ended the conversation, and peers treat the FIN as the end.
  void ShutdownSend() {
    boost::system::error_code ignored;
    lowest().shutdown(tcp::socket::shutdown_send, ignored);
  }

  // Closes the socket; pending operations complete with operation_aborted.
  void Cut() {
    boost::system::error_code ignored;
    lowest().shutdown(tcp::socket::shutdown_both, ignored);
    lowest().close(ignored);
  }

 private:
  static constexpr size_t kMaxIdleStaging = 64 * 1024;

  tcp::socket plain_;  // the socket itself, or (under TLS) an unopened one for its executor
  std::unique_ptr<TlsStream> tls_;
  std::shared_ptr<boost::asio::ssl::context> context_;  // TLS: the context tls_ was made from
  std::string staging_;  // TLS only: WriteGather's pieces in one buffer
};

}  // namespace bridge::ws

#endif  // BRIDGE_WS_TRANSPORT_H_
