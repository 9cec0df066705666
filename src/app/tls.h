// TLS for the two listeners: the WebSocket/HTTP context (Asio/OpenSSL) and gRPC's credentials.
//
// gRPC's certificate is served from a private copy that gRPC's file watcher reads every second:
// `GrpcTls::Reload` checks the configured files (the key matches the certificate) and only then
// replaces the copy, in one rename, so a renewal half written or a wrong key never reaches gRPC.
#ifndef BRIDGE_APP_TLS_H_
#define BRIDGE_APP_TLS_H_

#include <grpcpp/security/server_credentials.h>

#include <boost/asio/ssl/context.hpp>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bridge::app {

absl::StatusOr<std::string> ReadFile(const std::string& path);

// A server context: TLS 1.2 and later, no renegotiation, the chain and key checked here so that a
// wrong file fails start-up (or a reload) rather than every handshake. `*_flag` names the files
// in messages.
absl::StatusOr<std::shared_ptr<boost::asio::ssl::context>> ServerTlsContext(
    const std::string& cert_file, const std::string& key_file, std::string_view cert_flag,
    std::string_view key_flag);

// The files of gRPC's TLS: a certificate chain and its key, and for mTLS the client CA bundle.
struct GrpcTlsFiles {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // empty: no client certificates asked for
  bool operator==(const GrpcTlsFiles&) const = default;
};

class GrpcTls {
 public:
  // Checks `files` and writes the private copy (a 0700 directory under the temporary directory).
  static absl::StatusOr<std::unique_ptr<GrpcTls>> Create(const GrpcTlsFiles& files);
  ~GrpcTls();  // removes the copy
  GrpcTls(const GrpcTls&) = delete;
  GrpcTls& operator=(const GrpcTls&) = delete;

  // For the server builder: TLS (or mTLS) reading the copy.
  std::shared_ptr<grpc::ServerCredentials> credentials() const { return credentials_; }
  // Reads `files` again (any thread, one at a time): new gRPC connections get the new certificate
  // within a second; open ones keep theirs. On error the copy is left as it was.
  absl::Status Reload(const GrpcTlsFiles& files);

  // How often gRPC reads the copy.
  static constexpr unsigned kRefreshSeconds = 1;

 private:
  explicit GrpcTls(std::filesystem::path dir) : dir_(std::move(dir)) {}
  absl::Status Write(const GrpcTlsFiles& files);

  const std::filesystem::path dir_;
  std::mutex mu_;
  bool mutual_ = false;  // fixed at Create: mTLS on or off needs a restart
  std::shared_ptr<grpc::ServerCredentials> credentials_;
};

}  // namespace bridge::app

#endif  // BRIDGE_APP_TLS_H_
