#include "app/bridge_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "admin/node_directory.h"
#include "app/tls.h"
#include "broker/memory_broker.h"
#include "broker/memory_presence.h"
#include "broker/redis_broker.h"
#include "broker/redis_connection.h"
#include "broker/redis_presence.h"
#include "broker/redis_url.h"
#include "core/hub.h"
#include "core/strings.h"
#include "core/typed_channels.h"
#include "rpc/call_metrics.h"
#include "ws/listener.h"
#include "ws/shutdown.h"

namespace bridge::app {

namespace asio = boost::asio;

namespace {

// The client listener's TLS context; null for plain ws://.
absl::StatusOr<std::shared_ptr<asio::ssl::context>> WsTlsContext(const ServerConfig& c) {
  if (c.ws_tls_cert_file.empty() && c.ws_tls_key_file.empty()) return nullptr;
  if (c.ws_tls_cert_file.empty() || c.ws_tls_key_file.empty()) {
    return absl::InvalidArgumentError("--ws_tls_cert_file and --ws_tls_key_file go together");
  }
  return ServerTlsContext(c.ws_tls_cert_file, c.ws_tls_key_file, "ws_tls_cert_file",
                          "ws_tls_key_file");
}

// The admin listener's TLS context; null for plain http://.
absl::StatusOr<std::shared_ptr<asio::ssl::context>> AdminTlsContext(const ServerConfig& c) {
  if (c.admin_tls_cert_file.empty() && c.admin_tls_key_file.empty()) return nullptr;
  if (c.admin_tls_cert_file.empty() || c.admin_tls_key_file.empty()) {
    return absl::InvalidArgumentError("--admin_tls_cert_file and --admin_tls_key_file go together");
  }
  return ServerTlsContext(c.admin_tls_cert_file, c.admin_tls_key_file, "admin_tls_cert_file",
                          "admin_tls_key_file");
}

GrpcTlsFiles GrpcFiles(const ServerConfig& c) {
  return {c.grpc_tls_cert_file, c.grpc_tls_key_file, c.grpc_client_ca_file};
}

// This node's name on the broker: no ':' (the pub/sub payload's separator) nor '/'.
std::string NodeId(const std::string& configured) {
  std::string id = configured;
  if (id.empty()) {
    char host[256] = {0};
    gethostname(host, sizeof(host) - 1);
    id = core::Cat(host, "-", static_cast<int64_t>(getpid()));
  }
  for (char& ch : id) {
    if (ch == ':' || ch == '/' || ch == '\n' || static_cast<unsigned char>(ch) < 0x20) ch = '_';
  }
  return id;
}

}  // namespace

// Where channels live (ServerConfig::broker): nothing (embedded), or a broker and a presence
// manager, with an io thread of their own for Redis.
struct BridgeServer::BrokerParts {
  std::unique_ptr<broker::MemoryBroker> memory;
  std::unique_ptr<broker::MemoryPresence> memory_presence;
  std::unique_ptr<asio::io_context> ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  std::thread thread;
  std::shared_ptr<broker::RedisBroker> redis;
  std::shared_ptr<broker::RedisConnection> presence_connection;
  std::shared_ptr<broker::RedisPresence> redis_presence;
  core::ClusterOptions cluster;
  bool stopped = false;

  static absl::StatusOr<std::unique_ptr<BrokerParts>> Create(const ServerConfig& c) {
    auto parts = std::make_unique<BrokerParts>();
    if (c.broker.empty()) return parts;
    parts->cluster.node_id = NodeId(c.node_id);
    parts->cluster.max_pending_frames = c.max_pending_frames;
    parts->cluster.link_linger = c.broker_link_linger;
    if (c.broker == "memory") {
      broker::MemoryBrokerOptions mo;
      mo.max_channels = c.max_channels;
      mo.meta_ttl = c.broker_meta_ttl;
      parts->memory = std::make_unique<broker::MemoryBroker>(mo);
      parts->memory_presence = std::make_unique<broker::MemoryPresence>();
      parts->cluster.broker = parts->memory.get();
      parts->cluster.presence = parts->memory_presence.get();
      return parts;
    }
    auto url = broker::ParseRedisUrl(c.broker);
    if (!url.ok()) {
      return absl::InvalidArgumentError(
          core::Cat("--broker: ", url.status().message(),
                    " (expected empty, 'memory' or redis://[user:password@]host:port[/db])"));
    }
    parts->ioc = std::make_unique<asio::io_context>(1);
    parts->guard.emplace(asio::make_work_guard(*parts->ioc));
    broker::RedisBrokerOptions options;
    options.connection.url = *url;
    options.connection.tls_ca_file = c.broker_tls_ca_file;
    options.node_id = parts->cluster.node_id;
    options.meta_ttl = c.broker_meta_ttl;
    auto b = broker::RedisBroker::Create(parts->ioc->get_executor(), options);
    if (!b.ok()) return b.status();
    parts->redis = *b;
    broker::RedisConnectionOptions pc = options.connection;
    pc.client_name = parts->cluster.node_id + ":presence";
    auto conn = broker::RedisConnection::Create(parts->ioc->get_executor(), pc);
    if (!conn.ok()) return conn.status();
    parts->presence_connection = *conn;
    broker::RedisPresenceOptions po;
    po.node_id = parts->cluster.node_id;
    po.lease = c.presence_lease;
    auto p =
        broker::RedisPresence::Create(parts->ioc->get_executor(), *parts->presence_connection, po);
    if (!p.ok()) return p.status();
    parts->redis_presence = *p;
    std::weak_ptr<broker::RedisPresence> weak = parts->redis_presence;
    parts->presence_connection->SetStateHandler(
        [weak](broker::RedisConnectionState state, const absl::Status& why) {
          if (auto presence = weak.lock()) presence->OnConnectionState(state, why);
        });
    parts->cluster.broker = parts->redis.get();
    parts->cluster.presence = parts->redis_presence.get();
    return parts;
  }

  // After the hub set its handlers.
  void Start() {
    if (!redis) return;
    redis->Start();
    presence_connection->Start();
    redis_presence->Start();
    thread = std::thread([this] { ioc->run(); });
  }

  // After the sessions are gone: the broker's callbacks must not outlive the hub. Idempotent.
  void Stop() {
    if (!redis || stopped) return;
    stopped = true;
    redis->Stop();
    redis_presence->Stop();
    asio::post(*ioc, [this] {
      presence_connection->Stop();
      // Stop's own completions run first; then the thread ends.
      asio::post(*ioc, [this] { ioc->stop(); });
    });
    guard.reset();
    if (thread.joinable()) thread.join();
  }
};

struct BridgeServer::Impl {
  // A start-up that failed after the broker started: stop it before the hub goes.
  ~Impl() {
    if (broker) broker->Stop();
  }
  ServerConfig config;
  core::Metrics metrics;
  // Before the hub: destroyed after it.
  std::unique_ptr<BridgeServer::BrokerParts> broker;
  std::vector<std::unique_ptr<asio::io_context>> iocs;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::unique_ptr<core::Hub> hub;
  std::unique_ptr<ws::ServerState> state;
  std::shared_ptr<ws::Listener> listener;
  std::unique_ptr<rpc::EventService> service;
  std::unique_ptr<GrpcTls> grpc_tls;  // before the gRPC server: its files outlive it
  std::unique_ptr<grpc::Server> grpc_server;
  std::unique_ptr<admin::AdminServer> admin;    // with config.admin
  std::unique_ptr<admin::NodeDirectory> nodes;  // with a broker (after admin: its sink)
  std::vector<std::thread> threads;
  uint16_t grpc_port = 0;
  bool stopped = false;
  // Calls hub->Sweep every sweep_interval until StopSweeper.
  std::thread sweeper;
  std::mutex sweeper_mu;
  std::condition_variable sweeper_cv;
  bool sweeper_stop = false;                 // sweeper_mu
  std::chrono::milliseconds sweep_interval;  // sweeper_mu; config.sweep_interval at first
  uint64_t sweep_interval_changes = 0;       // sweeper_mu: wakes the sweeper to wait anew

  // The gRPC health service (grpc.health.v1) follows /readyz: SERVING while the listeners are
  // up, the broker (if any) is connected and the server is not draining. Called at start, by
  // the health thread and at shutdown; it only writes when the state changes.
  std::mutex health_mu;
  std::optional<bool> serving;
  void UpdateHealth(bool draining) {
    const bool ready = !draining && hub->broker_health().ok();
    std::lock_guard lock(health_mu);
    if (serving == ready || grpc_server == nullptr) return;
    serving = ready;
    grpc::HealthCheckServiceInterface* health = grpc_server->GetHealthCheckService();
    if (health == nullptr) return;
    health->SetServingStatus("", ready);
    health->SetServingStatus(gathering::bridge::v1::EventService::service_full_name(), ready);
    spdlog::info("grpc health: {}", ready ? "SERVING" : "NOT_SERVING");
  }

  void StartSweeper() {
    sweep_interval = config.sweep_interval;
    sweeper = std::thread([this] {
      std::unique_lock lock(sweeper_mu);
      while (!sweeper_stop) {
        const uint64_t changes = sweep_interval_changes;
        const auto interval = std::max(sweep_interval, std::chrono::milliseconds(10));
        // A new interval (a reload) starts a new wait at once: a long one shortened applies now.
        if (sweeper_cv.wait_for(lock, interval, [&] {
              return sweeper_stop || sweep_interval_changes != changes;
            })) {
          continue;
        }
        lock.unlock();
        hub->Sweep(std::chrono::steady_clock::now());
        lock.lock();
      }
    });
    // Broker state changes are seen within 100 ms: the sweep interval may be long.
    health_thread = std::thread([this] {
      std::unique_lock lock(sweeper_mu);
      while (!sweeper_cv.wait_for(lock, std::chrono::milliseconds(100),
                                  [this] { return sweeper_stop; })) {
        lock.unlock();
        UpdateHealth(state->draining.load());
        lock.lock();
      }
    });
  }
  std::thread health_thread;
  void SetSweepInterval(std::chrono::milliseconds interval) {
    {
      std::lock_guard lock(sweeper_mu);
      if (interval == sweep_interval) return;
      sweep_interval = interval;
      ++sweep_interval_changes;
    }
    sweeper_cv.notify_all();
  }
  void StopSweeper() {
    {
      std::lock_guard lock(sweeper_mu);
      sweeper_stop = true;
    }
    sweeper_cv.notify_all();
    if (sweeper.joinable()) sweeper.join();
    if (health_thread.joinable()) health_thread.join();
  }

  void JoinThreads() {
    guards.clear();
    for (auto& t : threads) {
      if (t.joinable()) t.join();
    }
    threads.clear();
  }
};

BridgeServer::BridgeServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

BridgeServer::~BridgeServer() {
  Shutdown();
  // Pending handlers own sessions, which unsubscribe from the hub: destroy them first.
  impl_->listener.reset();
  impl_->iocs.clear();
  impl_->broker->Stop();
}

uint16_t BridgeServer::ws_port() const { return impl_->listener->port(); }
uint16_t BridgeServer::grpc_port() const { return impl_->grpc_port; }
uint16_t BridgeServer::admin_port() const { return impl_->admin ? impl_->admin->port() : 0; }
core::Metrics& BridgeServer::metrics() { return impl_->metrics; }

absl::StatusOr<std::unique_ptr<BridgeServer>> BridgeServer::Start(ServerConfig config) {
  auto impl = std::make_unique<Impl>();
  impl->config = std::move(config);
  const ServerConfig& c = impl->config;
  size_t n = c.io_threads != 0 ? c.io_threads : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::string> typed_warnings;
  auto typed = core::TypedChannels::Load(c.namespaces, &typed_warnings);
  if (!typed.ok()) return typed.status();
  for (const auto& w : typed_warnings) spdlog::warn("typed channels: {}", w);

  std::vector<core::Hub::Executor> executors;
  std::vector<asio::io_context*> shards;
  for (size_t i = 0; i < n; ++i) {
    impl->iocs.push_back(std::make_unique<asio::io_context>(1));
    asio::io_context* ioc = impl->iocs.back().get();
    impl->guards.push_back(asio::make_work_guard(*ioc));
    shards.push_back(ioc);
    executors.push_back([ioc](std::function<void()> task) { asio::post(*ioc, std::move(task)); });
  }
  auto broker = BrokerParts::Create(c);
  if (!broker.ok()) return broker.status();
  impl->broker = std::move(*broker);
  if (impl->broker->cluster.broker != nullptr) {
    for (const auto& ns : c.namespaces.all()) {
      core::HistoryPolicy p{ns.history_size, ns.history_ttl, ns.history_max_bytes};
      if (absl::Status s = impl->broker->cluster.broker->ValidatePolicy(p); !s.ok()) {
        return absl::InvalidArgumentError(core::Cat(
            "namespace ", ns.name, ": the broker cannot keep its history: ", s.message()));
      }
    }
  }
  impl->hub =
      std::make_unique<core::Hub>(std::move(executors), c.namespaces, impl->metrics, c.max_channels,
                                  c.channel_idle_timeout, impl->broker->cluster);
  impl->broker->Start();
  impl->state = std::make_unique<ws::ServerState>(*impl->hub, impl->metrics, c.ws, c.auth, shards);
  auto tls = WsTlsContext(c);
  if (!tls.ok()) return tls.status();
  impl->state->set_tls(*tls);

  boost::system::error_code ec;
  auto address = asio::ip::make_address(c.host, ec);
  if (ec) return absl::InvalidArgumentError(core::Cat("bad --host '", c.host, "'"));
  auto listener = ws::Listener::Create(*impl->state, asio::ip::tcp::endpoint(address, c.ws_port));
  if (!listener.ok()) return listener.status();
  impl->listener = *listener;

  // The admin listener: before any io thread runs, so that a failure to bind it stops nothing.
  if (c.admin) {
    admin::AdminSources sources;
    sources.metrics = &impl->metrics;
    sources.hub = impl->hub.get();
    sources.state = impl->state.get();
    sources.verifier = c.auth.verifier;
    sources.broker_mode =
        c.broker.empty() ? "embedded" : (c.broker == "memory" ? "memory" : "redis");
    if (impl->broker->cluster.broker != nullptr) {
      sources.broker_stats = &impl->broker->cluster.broker->stats();
    }
    admin::AdminOptions options = *c.admin;
    auto admin_tls = AdminTlsContext(c);
    if (!admin_tls.ok()) return admin_tls.status();
    options.tls = *admin_tls;
    auto admin = admin::AdminServer::Start(std::move(options), std::move(sources));
    if (!admin.ok()) return admin.status();
    impl->admin = std::move(*admin);
  }

  impl->service = std::make_unique<rpc::EventService>(*impl->hub, c.rpc, std::move(*typed));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int selected = 0;
  std::string grpc_host = address.is_v6() ? core::Cat("[", c.host, "]") : c.host;
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!c.grpc_tls_cert_file.empty() || !c.grpc_tls_key_file.empty()) {
    auto tls = GrpcTls::Create(GrpcFiles(c));
    if (!tls.ok()) return tls.status();
    impl->grpc_tls = std::move(*tls);
    credentials = impl->grpc_tls->credentials();
  } else if (!c.grpc_client_ca_file.empty()) {
    return absl::InvalidArgumentError("--grpc_client_ca_file needs --grpc_tls_cert_file");
  }
  builder.AddListeningPort(core::Cat(grpc_host, ":", c.grpc_port), credentials, &selected);
  builder.RegisterService(impl->service.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(c.grpc_max_message_bytes));
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(rpc::MakeCallMetricsFactory(impl->metrics));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  impl->grpc_server = builder.BuildAndStart();
  if (impl->grpc_server == nullptr || selected == 0) {
    impl->JoinThreads();
    return absl::UnavailableError(
        core::Cat("cannot listen for gRPC on ", grpc_host, ":", c.grpc_port));
  }
  impl->grpc_port = static_cast<uint16_t>(selected);

  for (size_t i = 0; i < n; ++i) {
    asio::io_context* ioc = impl->iocs[i].get();
    impl->threads.emplace_back([ioc] { ioc->run(); });
  }
  impl->listener->Run();
  impl->UpdateHealth(false);
  impl->StartSweeper();
  spdlog::info("gathering-bridge listening: {}://{}:{}/ws/..., grpc{} {}:{}, {} io threads",
               impl->state->tls() ? "wss" : "ws", c.host, impl->listener->port(),
               c.grpc_tls_cert_file.empty() ? "" : " (TLS)", c.host, impl->grpc_port, n);
  if (impl->hub->clustered()) {
    spdlog::info("broker: {} as node '{}'{}", c.broker == "memory" ? "memory" : "redis",
                 impl->hub->node_id(),
                 impl->hub->broker_health().ok() ? "" : " (not ready yet: connecting)");
  }
  // The node directory (admin/node_directory.h): every node of a broker announces itself, and
  // the dashboard lists them all.
  if (impl->broker->cluster.broker != nullptr) {
    admin::NodeDirectoryOptions nd;
    nd.node_id = impl->hub->node_id();
    nd.interval = c.node_announce_interval;
    const std::string host = address.is_v6() ? core::Cat("[", c.host, "]") : c.host;
    nd.ws = core::Cat(host, ":", impl->listener->port());
    nd.grpc = core::Cat(host, ":", impl->grpc_port);
    if (impl->admin) nd.admin = core::Cat(c.admin->host, ":", impl->admin->port());
    std::function<void(std::vector<admin::NodeInfo>)> sink;
    if (impl->admin) {
      sink = [a = impl->admin.get()](std::vector<admin::NodeInfo> n) { a->SetNodes(std::move(n)); };
    }
    impl->nodes = std::make_unique<admin::NodeDirectory>(
        std::move(nd), *impl->broker->cluster.broker, impl->metrics, *impl->hub, std::move(sink));
    impl->nodes->Start();
  }
  return std::unique_ptr<BridgeServer>(new BridgeServer(std::move(impl)));
}

absl::Status BridgeServer::ReloadTls() {
  if (!impl_->state->tls()) return absl::FailedPreconditionError("TLS is not enabled");
  auto tls = WsTlsContext(impl_->config);
  if (!tls.ok()) return tls.status();
  impl_->state->set_tls(*tls);
  return absl::OkStatus();
}

absl::Status BridgeServer::CheckReload(const ServerConfig& next) const {
  const Impl& s = *impl_;
  if (!s.config.namespaces.SameNames(next.namespaces)) return absl::OkStatus();  // not applied
  if (s.broker->cluster.broker != nullptr) {
    for (const auto& ns : next.namespaces.all()) {
      core::HistoryPolicy p{ns.history_size, ns.history_ttl, ns.history_max_bytes};
      if (absl::Status st = s.broker->cluster.broker->ValidatePolicy(p); !st.ok()) {
        return absl::InvalidArgumentError(core::Cat(
            "namespace ", ns.name, ": the broker cannot keep its history: ", st.message()));
      }
    }
  }
  // Warnings were logged at start: the names, which they are about, are the same.
  if (auto typed = core::TypedChannels::Load(next.namespaces, nullptr); !typed.ok()) {
    return absl::InvalidArgumentError(typed.status().message());
  }
  return absl::OkStatus();
}

absl::Status BridgeServer::ReloadAdminTls(const ServerConfig& next) {
  const bool on = impl_->admin != nullptr && impl_->admin->tls();
  if (on != (!next.admin_tls_cert_file.empty() || !next.admin_tls_key_file.empty())) {
    return absl::FailedPreconditionError(
        core::Cat("admin listener: turning TLS ", on ? "off" : "on", " needs a restart"));
  }
  if (!on) return absl::OkStatus();
  auto tls = AdminTlsContext(next);
  if (!tls.ok())
    return absl::Status(tls.status().code(), core::Cat("admin: ", tls.status().message()));
  impl_->admin->SetTls(*tls);
  impl_->config.admin_tls_cert_file = next.admin_tls_cert_file;
  impl_->config.admin_tls_key_file = next.admin_tls_key_file;
  return absl::OkStatus();
}

absl::Status BridgeServer::Reload(const ServerConfig& next) {
  Impl& s = *impl_;
  absl::Status result;
  // Namespace policies first: CheckReload's refusal applies none of them (main refuses the whole
  // file before calling this).
  if (s.config.namespaces.SameNames(next.namespaces)) {
    if (absl::Status check = CheckReload(next); !check.ok()) {
      result.Update(check);
    } else {
      auto changed = s.hub->ReplaceNamespacePolicies(next.namespaces);
      if (changed.ok() && *changed) s.config.namespaces = next.namespaces;
    }
  }
  // The hub's limits (atomics it reads where they apply) and the sweeper's period.
  s.hub->SetLimits(core::HubLimits{next.max_channels, next.channel_idle_timeout,
                                   next.max_pending_frames, next.broker_link_linger});
  if (s.broker->memory) s.broker->memory->SetMaxChannels(next.max_channels);
  s.config.max_channels = next.max_channels;
  s.config.channel_idle_timeout = next.channel_idle_timeout;
  s.config.max_pending_frames = next.max_pending_frames;
  s.config.broker_link_linger = next.broker_link_linger;
  s.SetSweepInterval(next.sweep_interval);
  s.config.sweep_interval = next.sweep_interval;
  // gRPC streams opened from now on.
  s.service->SetStreamLimits(rpc::StreamLimits::Of(next.rpc));
  s.config.rpc.subscribe_queue_messages = next.rpc.subscribe_queue_messages;
  s.config.rpc.max_subscribe_streams_per_identity = next.rpc.max_subscribe_streams_per_identity;
  s.config.rpc.max_subscribe_streams = next.rpc.max_subscribe_streams;
  s.config.rpc.publish_stream_in_flight = next.rpc.publish_stream_in_flight;
  s.config.rpc.publish_bucket_keys = next.rpc.publish_bucket_keys;
  s.state->auth_timeout.store(next.auth.auth_timeout, std::memory_order_relaxed);
  if (s.state->tls()) {
    s.config.ws_tls_cert_file = next.ws_tls_cert_file;
    s.config.ws_tls_key_file = next.ws_tls_key_file;
    result = ReloadTls();
  }
  result.Update(ReloadAdminTls(next));
  if (s.grpc_tls != nullptr) {
    if (absl::Status g = s.grpc_tls->Reload(GrpcFiles(next)); !g.ok()) {
      result.Update(absl::Status(g.code(), core::Cat("gRPC: ", g.message())));
    } else {
      s.config.grpc_tls_cert_file = next.grpc_tls_cert_file;
      s.config.grpc_tls_key_file = next.grpc_tls_key_file;
      s.config.grpc_client_ca_file = next.grpc_client_ca_file;
    }
  }
  // Auth stays on or off (a restart changes that); its keys and claims follow the files.
  if (s.config.auth.verifier != nullptr && next.auth.verifier != nullptr) {
    s.config.auth.verifier->Replace(*next.auth.verifier);
  }
  if (s.config.auth.verifier != nullptr) s.service->ReplaceApiKeys(next.rpc.auth.api_keys);
  core::OriginPolicy origins = next.ws.origins;
  origins.auth_enabled = s.config.ws.origins.auth_enabled;
  // The WebSocket limits: connections accepted from now on read the new set.
  ws::WsOptions limits = next.ws;
  limits.origins = origins;
  s.state->set_origins(std::move(origins));
  s.state->set_options(limits);
  s.config.ws = std::move(limits);
  // A new rate fills every bucket again; an unchanged one (a SIGHUP for a certificate) must not.
  if (next.rpc.publish_rate_per_key != s.config.rpc.publish_rate_per_key ||
      next.rpc.publish_burst_per_key != s.config.rpc.publish_burst_per_key) {
    s.service->SetPublishRate(next.rpc.publish_rate_per_key, next.rpc.publish_burst_per_key);
  }
  s.config.rpc.publish_rate_per_key = next.rpc.publish_rate_per_key;
  s.config.rpc.publish_burst_per_key = next.rpc.publish_burst_per_key;
  // Read by Shutdown, on this same thread.
  s.config.shutdown_timeout = next.shutdown_timeout;
  s.config.drain_window = next.drain_window;
  return result;
}

void BridgeServer::Shutdown() {
  Impl& s = *impl_;
  if (s.stopped) return;
  s.stopped = true;
  s.StopSweeper();
  // Load balancers polling grpc.health.v1 stop sending before anything closes.
  s.UpdateHealth(true);
  auto deadline = std::chrono::steady_clock::now() + s.config.shutdown_timeout;
  spdlog::info("shutting down: closing {} WebSocket connections (over {} ms), draining gRPC",
               s.metrics.connections_current.load(), s.config.drain_window.count());
  s.listener->Stop();
  ws::CloseAllSessions(*s.state, s.config.drain_window);
  s.service->BeginShutdown();
  s.grpc_server->Shutdown(std::chrono::system_clock::now() + s.config.shutdown_timeout);
  // Close handshakes are bounded by the sessions' close timeout; wait for them, bounded too.
  while (s.metrics.connections_current.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // Out of the other nodes' lists now; it feeds the dashboards, so it goes first.
  if (s.nodes) s.nodes->Stop();
  // The dashboards watched the drain; they go before the hub stops.
  if (s.admin) s.admin->Stop();
  for (auto& ioc : s.iocs) ioc->stop();
  s.JoinThreads();
  s.hub->Stop();  // sessions destroyed with the io contexts must not post to them
  s.grpc_server->Wait();
  spdlog::info("shutdown complete");
}

}  // namespace bridge::app
