// TLS helpers for tests on real sockets: throwaway certificates made with openssl at test time,
// a wss:// client and an https:// GET that trust only the test CA.
#ifndef BRIDGE_TESTS_INTEGRATION_TLS_SUPPORT_H_
#define BRIDGE_TESTS_INTEGRATION_TLS_SUPPORT_H_

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "test_support.h"

namespace bridge::testing {

// Writes into `dir` (which must exist) a CA (ca.pem, ca.key) and, signed by it, a server and a
// client certificate for localhost and 127.0.0.1 (server.pem/.key, client.pem/.key; server.ext
// holds their subjectAltName, for more certificates). False when openssl failed.
bool MakeTestCertificates(const std::filesystem::path& dir);

// The contents of a file ("" when it cannot be read).
std::string Slurp(const std::filesystem::path& p);

// A wss:// client that trusts only `ca_file` and checks the name "localhost".
class WssClient {
 public:
  static std::unique_ptr<WssClient> Connect(uint16_t port, const std::string& target,
                                            const std::string& ca_file, std::string* error);

  void Send(const std::string& text);
  // The next frame that is not a heartbeat, as JSON; null on close or after `timeout`.
  boost::json::value RecvEvent(std::chrono::milliseconds timeout = 5s);
  int close_code() const { return close_code_; }

 private:
  explicit WssClient(const std::string& ca_file);
  boost::asio::io_context ioc_;
  boost::asio::ssl::context ctx_;
  boost::beast::websocket::stream<boost::beast::ssl_stream<boost::beast::tcp_stream>> ws_;
  int close_code_ = 0;
};

// GET `target` over https://; the status, or 0 when TLS or HTTP failed.
int HttpsStatus(uint16_t port, const std::string& target, const std::string& ca_file,
                std::string* body);

}  // namespace bridge::testing

#endif  // BRIDGE_TESTS_INTEGRATION_TLS_SUPPORT_H_
