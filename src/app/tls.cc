#include "app/tls.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <system_error>

#include "core/strings.h"

namespace bridge::app {

namespace asio = boost::asio;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(core::Cat("cannot read ", path));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

absl::StatusOr<std::shared_ptr<asio::ssl::context>> ServerTlsContext(const std::string& cert_file,
                                                                     const std::string& key_file,
                                                                     std::string_view cert_flag,
                                                                     std::string_view key_flag) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                   asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use |
                   asio::ssl::context::no_compression);
  // No renegotiation (a client could make the server redo handshakes at will).
  SSL_CTX_set_options(ctx->native_handle(), SSL_OP_NO_RENEGOTIATION);
  // Idle connections give their record buffers back (most WebSockets are idle most of the time).
  SSL_CTX_set_mode(ctx->native_handle(), SSL_MODE_RELEASE_BUFFERS);
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        core::Cat("--", cert_flag, " ", cert_file, ": ", ec.message()));
  }
  ctx->use_private_key_file(key_file, asio::ssl::context::pem, ec);
  if (ec) {
    return absl::InvalidArgumentError(core::Cat("--", key_flag, " ", key_file, ": ", ec.message()));
  }
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    return absl::InvalidArgumentError(core::Cat("--", key_flag, " does not match --", cert_flag));
  }
  return ctx;
}

namespace {

// Writes `text` to `path` (owner-only), to be renamed into place.
absl::Status WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return absl::InternalError(core::Cat("cannot write ", path.string()));
  std::error_code ec;
  std::filesystem::permissions(
      path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write, ec);
  f << text;
  f.flush();
  if (!f || ec) return absl::InternalError(core::Cat("cannot write ", path.string()));
  return absl::OkStatus();
}

absl::Status Rename(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::error_code ec;
  std::filesystem::rename(from, to, ec);
  if (ec)
    return absl::InternalError(core::Cat("cannot rename ", from.string(), ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcTls>> GrpcTls::Create(const GrpcTlsFiles& files) {
  std::string pattern = (std::filesystem::temp_directory_path() / "gathering-bridge-grpc-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {  // mode 0700
    return absl::InternalError(core::Cat("cannot create a directory like ", pattern));
  }
  std::unique_ptr<GrpcTls> tls(new GrpcTls(pattern));
  tls->mutual_ = !files.client_ca_file.empty();
  if (absl::Status s = tls->Write(files); !s.ok()) return s;
  // One file holds the key and the chain (PEM readers skip the other blocks): replaced by one
  // rename, gRPC never reads a key from one renewal with a certificate from another.
  const std::string identity = (tls->dir_ / "identity.pem").string();
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      identity, identity, tls->mutual_ ? (tls->dir_ / "client-ca.pem").string() : "",
      kRefreshSeconds);
  grpc::experimental::TlsServerCredentialsOptions opts(provider);
  opts.watch_identity_key_cert_pairs();
  if (tls->mutual_) {
    opts.watch_root_certs();
    opts.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  tls->credentials_ = grpc::experimental::TlsServerCredentials(opts);
  return tls;
}

GrpcTls::~GrpcTls() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

absl::Status GrpcTls::Reload(const GrpcTlsFiles& files) {
  if (files.client_ca_file.empty() == mutual_) {
    return absl::FailedPreconditionError(
        "tls.grpc_client_ca_file: turning mTLS on or off needs a restart");
  }
  return Write(files);
}

absl::Status GrpcTls::Write(const GrpcTlsFiles& files) {
  std::lock_guard lock(mu_);
  if (files.cert_file.empty() || files.key_file.empty()) {
    return absl::InvalidArgumentError("--grpc_tls_cert_file and --grpc_tls_key_file go together");
  }
  auto cert = ReadFile(files.cert_file);
  if (!cert.ok()) return cert.status();
  auto key = ReadFile(files.key_file);
  if (!key.ok()) return key.status();
  std::string ca;
  if (!files.client_ca_file.empty()) {
    auto read = ReadFile(files.client_ca_file);
    if (!read.ok()) return read.status();
    ca = std::move(*read);
    // A bundle without a certificate would refuse every backend.
    if (ca.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      return absl::InvalidArgumentError(
          core::Cat("--grpc_client_ca_file ", files.client_ca_file, ": no PEM certificate"));
    }
  }
  std::string identity = *key;
  if (!identity.empty() && identity.back() != '\n') identity += '\n';
  identity += *cert;
  // What is checked is exactly what gRPC will read: the new copy, before it is renamed in.
  const std::filesystem::path next = dir_ / "identity.pem.next";
  if (absl::Status s = WriteFile(next, identity); !s.ok()) return s;
  if (!ServerTlsContext(next.string(), next.string(), "grpc_tls_cert_file", "grpc_tls_key_file")
           .ok()) {
    std::error_code ec;
    std::filesystem::remove(next, ec);
    // The same check on the configured files says which one is wrong.
    auto named = ServerTlsContext(files.cert_file, files.key_file, "grpc_tls_cert_file",
                                  "grpc_tls_key_file");
    return named.ok() ? absl::UnavailableError(
                            "the gRPC certificate files changed while being "
                            "read; the current certificate is kept")
                      : named.status();
  }
  // The CA first: during a renewal of both, clients are checked against the new bundle as soon
  // as the new identity is served.
  if (!ca.empty()) {
    const std::filesystem::path ca_next = dir_ / "client-ca.pem.next";
    if (absl::Status s = WriteFile(ca_next, ca); !s.ok()) return s;
    if (absl::Status s = Rename(ca_next, dir_ / "client-ca.pem"); !s.ok()) return s;
  }
  return Rename(next, dir_ / "identity.pem");
}

}  // namespace bridge::app
