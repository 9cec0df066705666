#include "tls_support.h"

#include <boost/asio/ssl.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/json/parse.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace bridge::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

bool MakeTestCertificates(const std::filesystem::path& dir) {
  std::string script = "set -e; cd '" + dir.string() + "'; " +
                       "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem "
                       "-days 1 -subj /CN=test-ca 2>/dev/null; "
                       "for n in server client; do "
                       "openssl req -newkey rsa:2048 -nodes -keyout $n.key -out $n.csr "
                       "-subj /CN=localhost 2>/dev/null; "
                       "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1' > $n.ext; "
                       "openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
                       "-out $n.pem -days 1 -extfile $n.ext 2>/dev/null; done";
  std::ofstream(dir / "make-certs.sh") << script << "\n";
  return std::system(("bash '" + (dir / "make-certs.sh").string() + "'").c_str()) == 0;
}

std::string Slurp(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

WssClient::WssClient(const std::string& ca_file) : ctx_(ssl::context::tls_client), ws_(ioc_, ctx_) {
  ctx_.load_verify_file(ca_file);
}

std::unique_ptr<WssClient> WssClient::Connect(uint16_t port, const std::string& target,
                                              const std::string& ca_file, std::string* error) {
  std::unique_ptr<WssClient> c(new WssClient(ca_file));
  beast::error_code ec;
  auto& tcp_layer = beast::get_lowest_layer(c->ws_);
  tcp_layer.expires_after(5s);
  tcp_layer.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  if (!ec) {
    // The stream's SSL object copied the context's settings when it was made: set them here.
    c->ws_.next_layer().set_verify_mode(ssl::verify_peer);
    SSL_set_tlsext_host_name(c->ws_.next_layer().native_handle(), "localhost");
    c->ws_.next_layer().set_verify_callback(ssl::host_name_verification("localhost"));
    c->ws_.next_layer().handshake(ssl::stream_base::client, ec);
  }
  if (!ec) c->ws_.handshake("localhost:" + std::to_string(port), target, ec);
  if (ec) {
    *error = ec.message();
    return nullptr;
  }
  tcp_layer.expires_never();
  return c;
}

void WssClient::Send(const std::string& text) {
  beast::error_code ec;
  ws_.write(asio::buffer(text), ec);
}

boost::json::value WssClient::RecvEvent(std::chrono::milliseconds timeout) {
  for (;;) {
    beast::flat_buffer buf;
    auto ec = ReadMessage(ioc_, ws_, buf, timeout);
    if (!ec) return nullptr;
    if (*ec) {
      close_code_ = ws_.reason().code;
      return nullptr;
    }
    boost::system::error_code parse_error;
    auto v = boost::json::parse(beast::buffers_to_string(buf.data()), parse_error);
    if (parse_error) return nullptr;
    if (v.is_object() && v.as_object().contains("type") && v.at("type") == "ping") continue;
    return v;
  }
}

int HttpsStatus(uint16_t port, const std::string& target, const std::string& ca_file,
                std::string* body) {
  asio::io_context ioc;
  ssl::context ctx(ssl::context::tls_client);
  ctx.load_verify_file(ca_file);
  ctx.set_verify_mode(ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
  beast::error_code ec;
  beast::get_lowest_layer(stream).expires_after(5s);
  beast::get_lowest_layer(stream).connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                                          ec);
  if (!ec) stream.handshake(ssl::stream_base::client, ec);
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "localhost");
  if (!ec) http::write(stream, req, ec);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  if (!ec) http::read(stream, buf, res, ec);
  if (ec) return 0;
  *body = res.body();
  return static_cast<int>(res.result_int());
}

}  // namespace bridge::testing
