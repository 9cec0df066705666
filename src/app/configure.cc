#include "app/configure.h"

#include <fstream>
#include <sstream>

#include "core/strings.h"

namespace bridge::app {
namespace {

std::chrono::milliseconds Ms(const std::string& duration) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(config::DurationOf(duration)));
}

std::vector<std::string> List(const google::protobuf::RepeatedPtrField<std::string>& r) {
  return std::vector<std::string>(r.begin(), r.end());
}

}  // namespace

absl::StatusOr<auth::VerifierConfig> VerifierConfigFrom(const config::Config& c) {
  const auto& a = c.auth();
  auth::VerifierConfig v;
  if (!a.hs256_secret_file().empty()) {
    std::ifstream f(a.hs256_secret_file(), std::ios::binary);
    if (!f) {
      return absl::NotFoundError(
          core::Cat("auth.hs256_secret_file: cannot read ", a.hs256_secret_file()));
    }
    std::stringstream ss;
    ss << f.rdbuf();
    v.hs256_secret = ss.str();
    while (!v.hs256_secret.empty() &&
           (v.hs256_secret.back() == '\n' || v.hs256_secret.back() == '\r')) {
      v.hs256_secret.pop_back();
    }
  }
  v.public_key_pem_files = List(a.public_keys());
  v.jwks_file = a.jwks();
  v.issuer = a.issuer();
  v.audience = a.audience();
  v.leeway = std::chrono::seconds(absl::ToInt64Seconds(config::DurationOf(a.leeway())));
  return v;
}

absl::StatusOr<AuthParts> AuthFrom(const config::Config& c) {
  AuthParts parts;
  if (c.auth().mode() != "token") return parts;
  auto v = VerifierConfigFrom(c);
  if (!v.ok()) return v.status();
  auto verifier = auth::TokenVerifier::Create(*v);
  if (!verifier.ok())
    return absl::InvalidArgumentError(core::Cat("auth: ", verifier.status().message()));
  parts.verifier = std::shared_ptr<const auth::TokenVerifier>(std::move(*verifier));
  if (!c.auth().api_keys_file().empty()) {
    auto keys = auth::ApiKeys::LoadFile(c.auth().api_keys_file());
    if (!keys.ok()) {
      return absl::InvalidArgumentError(core::Cat("auth.api_keys_file: ", keys.status().message()));
    }
    parts.api_keys = std::make_shared<const auth::ApiKeys>(std::move(*keys));
  }
  return parts;
}

absl::StatusOr<ServerConfig> ServerConfigFrom(const config::Config& c) {
  ServerConfig s;
  const auto& l = c.listeners();
  const auto& lim = c.limits();
  s.host = l.host();
  s.ws_port = static_cast<uint16_t>(l.ws_port());
  s.grpc_port = static_cast<uint16_t>(l.grpc_port());
  s.io_threads = l.io_threads();
  auto ns = config::Namespaces(c);
  if (!ns.ok()) return absl::InvalidArgumentError(core::Cat("namespaces: ", ns.status().message()));
  s.namespaces = std::move(*ns);

  s.ws.max_connections = lim.max_connections();
  s.ws.max_connections_per_ip = lim.max_connections_per_ip();
  s.ws.per_ip_exempt_loopback = lim.per_ip_exempt_loopback();
  s.ws.max_channels_per_connection = lim.max_channels_per_connection();
  s.ws.max_frame_bytes = lim.max_frame_bytes();
  s.ws.max_header_bytes = lim.max_header_bytes();
  s.ws.max_queue_bytes = lim.max_queue_bytes();
  s.ws.max_total_queue_bytes = lim.max_total_queue_bytes();
  s.ws.client_message_rate = lim.client_message_rate();
  s.ws.client_message_burst = lim.client_message_burst();
  s.ws.subscribe_rate = lim.subscribe_rate();
  s.ws.subscribe_burst = lim.subscribe_burst();
  s.ws.heartbeat_interval = Ms(lim.heartbeat_interval());
  s.ws.idle_timeout = Ms(lim.idle_timeout());
  s.ws.handshake_timeout = Ms(lim.handshake_timeout());
  s.ws.close_timeout = Ms(lim.close_timeout());
  s.grpc_max_message_bytes = lim.grpc_max_message_bytes();
  s.max_channels = lim.max_channels();
  s.channel_idle_timeout = Ms(lim.channel_idle_timeout());
  s.max_pending_frames = lim.max_pending_frames();
  s.broker_link_linger = Ms(lim.broker_link_linger());
  s.rpc.subscribe_queue_messages = lim.subscribe_queue_messages();
  s.rpc.max_subscribe_streams_per_identity = lim.max_backend_streams_per_identity();
  s.rpc.max_subscribe_streams = lim.max_backend_streams();
  s.rpc.publish_stream_in_flight = lim.publish_stream_in_flight();
  s.rpc.publish_rate_per_key = lim.publish_rate_per_key();
  s.rpc.publish_burst_per_key = lim.publish_burst_per_key();
  s.rpc.publish_bucket_keys = lim.publish_bucket_keys();
  s.shutdown_timeout = Ms(lim.shutdown_timeout());
  s.drain_window = Ms(lim.drain_window());
  s.sweep_interval = Ms(lim.sweep_interval());

  const auto& t = c.tls();
  s.ws_tls_cert_file = t.ws_cert_file();
  s.ws_tls_key_file = t.ws_key_file();
  s.grpc_tls_cert_file = t.grpc_cert_file();
  s.grpc_tls_key_file = t.grpc_key_file();
  s.grpc_client_ca_file = t.grpc_client_ca_file();

  const auto& b = c.broker();
  s.broker = b.url();
  s.broker_tls_ca_file = b.tls_ca_file();
  s.node_id = b.node_id();
  s.presence_lease = Ms(b.presence_lease());
  s.node_announce_interval = Ms(b.node_announce_interval());
  s.broker_meta_ttl = std::chrono::seconds(absl::ToInt64Seconds(config::DurationOf(b.meta_ttl())));

  s.auth.auth_timeout = Ms(c.auth().timeout());
  s.ws.origins.allowed = List(c.auth().allowed_origins());
  auto parts = AuthFrom(c);
  if (!parts.ok()) return parts.status();
  s.auth.verifier = parts->verifier;
  s.rpc.auth.verifier = parts->verifier;
  s.rpc.auth.api_keys = parts->api_keys;
  s.ws.origins.auth_enabled = parts->verifier != nullptr;

  if (const auto& a = c.admin(); a.port() >= 0) {
    if (a.port() > 65535) return absl::InvalidArgumentError("admin.port: -1 (off), 0 or a port");
    admin::AdminOptions admin;
    admin.host = a.host();
    admin.port = static_cast<uint16_t>(a.port());
    admin.max_header_bytes = s.ws.max_header_bytes;
    admin.handshake_timeout = s.ws.handshake_timeout;
    s.admin = admin;
    s.admin_tls_cert_file = a.tls_from_ws() ? t.ws_cert_file() : a.tls_cert_file();
    s.admin_tls_key_file = a.tls_from_ws() ? t.ws_key_file() : a.tls_key_file();
  }
  return s;
}

}  // namespace bridge::app
