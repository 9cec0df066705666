// The configuration schema (config.proto) as the server reads it: defaults, the JSON file, flags,
// validation with field paths, reload diffs, and the generated reference in docs/operations.md.
#include "config/config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include "app/configure.h"

namespace bridge::config {
namespace {

std::string Joined(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += s + "\n";
  return out;
}

// Errors of `json` (merged over defaults) with `flags` applied; empty when valid.
std::vector<std::string> ErrorsOf(std::string_view json,
                                  std::vector<std::pair<std::string, std::string>> flags = {}) {
  Config c;
  if (absl::Status s = MergeJson(json, c); !s.ok()) return {std::string(s.message())};
  for (const auto& [f, v] : flags) {
    if (absl::Status s = ApplyFlag(f, v, c); !s.ok()) return {std::string(s.message())};
  }
  return Validate(Effective(c));
}

bool HasError(const std::vector<std::string>& errors, std::string_view needle) {
  for (const std::string& e : errors) {
    if (e.find(needle) != std::string::npos) return true;
  }
  return false;
}

TEST(ConfigSchema, EveryFieldIsDocumentedAndHasOneFlag) {
  std::set<std::string> flags;
  ASSERT_GT(Fields().size(), 50u);
  for (const Field& f : Fields()) {
    EXPECT_FALSE(f.help.empty()) << f.path << " has no comment in config.proto";
    EXPECT_TRUE(flags.insert(f.flag).second) << "--" << f.flag << " names two fields";
    EXPECT_EQ(FindFlag(f.flag), &f);
    if (f.duration) {
      absl::Duration d;
      EXPECT_TRUE(absl::ParseDuration(f.default_text, &d)) << f.path << " default";
    }
  }
  for (const Section& s : Sections()) EXPECT_FALSE(s.title.empty()) << s.field->name();
  // The flags the command line had before the configuration file keep their names.
  for (const char* legacy : {"host",
                             "ws_port",
                             "grpc_port",
                             "namespaces",
                             "auth",
                             "auth_hs256_secret_file",
                             "auth_public_keys",
                             "allowed_origins",
                             "api_keys_file",
                             "ws_tls_cert_file",
                             "broker",
                             "broker_tls_ca_file",
                             "node_id",
                             "presence_lease",
                             "log_level",
                             "max_frame_bytes",
                             "max_backend_streams",
                             "publish_rate_per_key",
                             "shutdown_timeout",
                             "ready_file"}) {
    EXPECT_NE(FindFlag(legacy), nullptr) << "--" << legacy;
  }
  EXPECT_EQ(FindFlag("no_such_flag"), nullptr);
}

// The library's structs have defaults too (tests and embedders build ServerConfig directly):
// they must be the proto's.
TEST(ConfigSchema, DefaultsAreTheLibrarysDefaults) {
  auto from_proto = app::ServerConfigFrom(Effective(Config()));
  ASSERT_TRUE(from_proto.ok()) << from_proto.status();
  const app::ServerConfig lib;
  const app::ServerConfig& p = *from_proto;
  EXPECT_EQ(p.host, lib.host);
  EXPECT_EQ(p.ws_port, lib.ws_port);
  EXPECT_EQ(p.grpc_port, lib.grpc_port);
  EXPECT_EQ(p.io_threads, lib.io_threads);
  EXPECT_EQ(p.max_channels, lib.max_channels);
  EXPECT_EQ(p.channel_idle_timeout, lib.channel_idle_timeout);
  EXPECT_EQ(p.max_pending_frames, lib.max_pending_frames);
  EXPECT_EQ(p.broker_link_linger, lib.broker_link_linger);
  EXPECT_EQ(p.grpc_max_message_bytes, lib.grpc_max_message_bytes);
  EXPECT_EQ(p.shutdown_timeout, lib.shutdown_timeout);
  EXPECT_EQ(p.drain_window, lib.drain_window);
  EXPECT_EQ(p.sweep_interval, lib.sweep_interval);
  EXPECT_EQ(p.presence_lease, lib.presence_lease);
  EXPECT_EQ(p.broker_meta_ttl, lib.broker_meta_ttl);
  EXPECT_EQ(p.auth.auth_timeout, lib.auth.auth_timeout);
  EXPECT_EQ(p.auth.verifier, nullptr);
  const ws::WsOptions& w = p.ws;
  const ws::WsOptions& lw = lib.ws;
  EXPECT_EQ(w.max_frame_bytes, lw.max_frame_bytes);
  EXPECT_EQ(w.max_queue_bytes, lw.max_queue_bytes);
  EXPECT_EQ(w.max_total_queue_bytes, lw.max_total_queue_bytes);
  EXPECT_EQ(w.max_connections, lw.max_connections);
  EXPECT_EQ(w.max_channels_per_connection, lw.max_channels_per_connection);
  EXPECT_EQ(w.max_header_bytes, lw.max_header_bytes);
  EXPECT_EQ(w.handshake_timeout, lw.handshake_timeout);
  EXPECT_EQ(w.heartbeat_interval, lw.heartbeat_interval);
  EXPECT_EQ(w.idle_timeout, lw.idle_timeout);
  EXPECT_EQ(w.close_timeout, lw.close_timeout);
  EXPECT_EQ(w.max_connections_per_ip, lw.max_connections_per_ip);
  EXPECT_EQ(w.per_ip_exempt_loopback, lw.per_ip_exempt_loopback);
  EXPECT_EQ(w.client_message_rate, lw.client_message_rate);
  EXPECT_EQ(w.client_message_burst, lw.client_message_burst);
  EXPECT_EQ(w.subscribe_rate, lw.subscribe_rate);
  EXPECT_EQ(w.subscribe_burst, lw.subscribe_burst);
  EXPECT_EQ(w.origins.allowed, lw.origins.allowed);
  const rpc::RpcOptions& r = p.rpc;
  const rpc::RpcOptions& lr = lib.rpc;
  EXPECT_EQ(r.subscribe_queue_messages, lr.subscribe_queue_messages);
  EXPECT_EQ(r.publish_rate_per_key, lr.publish_rate_per_key);
  EXPECT_EQ(r.publish_burst_per_key, lr.publish_burst_per_key);
  EXPECT_EQ(r.publish_bucket_keys, lr.publish_bucket_keys);
  EXPECT_EQ(r.max_subscribe_streams_per_identity, lr.max_subscribe_streams_per_identity);
  EXPECT_EQ(r.max_subscribe_streams, lr.max_subscribe_streams);
  EXPECT_EQ(r.publish_stream_in_flight, lr.publish_stream_in_flight);
  ASSERT_EQ(p.namespaces.all().size(), lib.namespaces.all().size());
  for (size_t i = 0; i < lib.namespaces.all().size(); ++i) {
    const core::NamespaceConfig& a = p.namespaces.all()[i];
    const core::NamespaceConfig& b = lib.namespaces.all()[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.client_broadcast, b.client_broadcast);
    EXPECT_EQ(a.history_size, b.history_size);
    EXPECT_EQ(a.history_ttl, b.history_ttl);
    EXPECT_EQ(a.history_max_bytes, b.history_max_bytes);
    EXPECT_EQ(a.presence, b.presence);
    EXPECT_EQ(a.slow_policy, b.slow_policy);
  }
}

TEST(ConfigJson, FileFieldsAndFlagsOverrideInOrder) {
  Config c;
  ASSERT_TRUE(MergeJson(R"({"listeners":{"ws_port":9000,"host":"0.0.0.0"},
                            "limits":{"idle_timeout":"2m","client_message_rate":5.5},
                            "auth":{"allowed_origins":["https://a.example"]},
                            "namespaces":[{"name":"rooms","client_messages":"BROADCAST",
                                           "history_size":10,"history_ttl":"90s",
                                           "slow_consumer":"DROP_OLDEST"}]})",
                        c)
                  .ok());
  ASSERT_TRUE(ApplyFlag("ws_port", "0", c).ok());
  ASSERT_TRUE(ApplyFlag("per_ip_exempt_loopback", "false", c).ok());
  const Config e = Effective(c);
  EXPECT_EQ(e.listeners().ws_port(), 0u);        // the flag won
  EXPECT_EQ(e.listeners().host(), "0.0.0.0");    // the file
  EXPECT_EQ(e.listeners().grpc_port(), 50051u);  // the default
  EXPECT_EQ(e.limits().idle_timeout(), "2m");
  EXPECT_EQ(e.limits().client_message_rate(), 5.5);
  EXPECT_FALSE(e.limits().per_ip_exempt_loopback());
  ASSERT_EQ(e.namespaces_size(), 1);
  EXPECT_EQ(e.namespaces(0).history_bytes(), 1048576u);  // a namespace's own default
  EXPECT_TRUE(Validate(e).empty()) << Joined(Validate(e));
  auto ns = Namespaces(e);
  ASSERT_TRUE(ns.ok());
  ASSERT_NE(ns->Find("rooms"), nullptr);
  EXPECT_TRUE(ns->Find("rooms")->client_broadcast);
  EXPECT_EQ(ns->Find("rooms")->history_ttl, std::chrono::seconds(90));
  EXPECT_EQ(ns->Find("rooms")->slow_policy, core::SlowPolicy::kDropOldest);
  EXPECT_EQ(ns->Find("circles"), nullptr);  // a list replaces the defaults
}

TEST(ConfigJson, MistakesNameTheFieldsPath) {
  auto errors = ErrorsOf(R"({"listeners":{"wsport":1},"limits":{"max_frame_bytes":"big"},
                            "namespaces":[{"name":"a","slow_consumer":"SOMETIMES"}],
                            "auth":{"allowed_origins":"https://a"}})");
  ASSERT_EQ(errors.size(), 1u);  // one status, one line per mistake
  const std::string& e = errors[0];
  EXPECT_NE(e.find("listeners.wsport: unknown field"), std::string::npos) << e;
  EXPECT_NE(e.find("ws_port"), std::string::npos) << "the known fields are listed: " << e;
  EXPECT_NE(e.find("limits.max_frame_bytes: must be an integer"), std::string::npos) << e;
  EXPECT_NE(e.find("namespaces[0].slow_consumer: must be one of DISCONNECT"), std::string::npos)
      << e;
  EXPECT_NE(e.find("auth.allowed_origins: must be a JSON array"), std::string::npos) << e;
  EXPECT_FALSE(ErrorsOf("{not json").empty());
  EXPECT_TRUE(HasError(ErrorsOf("[1]"), "must be a JSON object"));
}

TEST(ConfigFlags, ValuesAreCheckedByType) {
  Config c;
  EXPECT_FALSE(ApplyFlag("ws_port", "eighty", c).ok());
  EXPECT_FALSE(ApplyFlag("ws_port", "-1", c).ok());
  EXPECT_FALSE(ApplyFlag("per_ip_exempt_loopback", "maybe", c).ok());
  EXPECT_FALSE(ApplyFlag("client_message_rate", "fast", c).ok());
  EXPECT_FALSE(ApplyFlag("nope", "1", c).ok());
  absl::Status s = ApplyFlag("max_frame_bytes", "1e9", c);
  EXPECT_NE(std::string(s.message()).find("--max_frame_bytes (limits.max_frame_bytes)"),
            std::string::npos)
      << s;
  ASSERT_TRUE(ApplyFlag("auth_public_keys", "a.pem,b.pem", c).ok());
  EXPECT_EQ(c.auth().public_keys_size(), 2);
  ASSERT_TRUE(ApplyFlag("auth_public_keys", "c.pem", c).ok());  // a list is replaced, not added to
  EXPECT_EQ(c.auth().public_keys_size(), 1);
}

TEST(ConfigFlags, NamespacesOneLineFormRoundTrips) {
  Config c;
  const std::string line =
      "circles:broadcast:history=100:ttl=300:presence,workspace:history=5:ttl=60:history_bytes="
      "4096:slow=drop_oldest,agents:slow=latest_only";
  ASSERT_TRUE(ApplyFlag("namespaces", line, c).ok());
  ASSERT_EQ(c.namespaces_size(), 3);
  EXPECT_EQ(c.namespaces(1).history_bytes(), 4096u);
  EXPECT_EQ(ValueText(Effective(c), *FindFlag("namespaces")), line);
  EXPECT_FALSE(ApplyFlag("namespaces", "circles:loud", c).ok());
  ASSERT_TRUE(ApplyFlag("namespaces", "", c).ok());  // back to the defaults
  EXPECT_EQ(Effective(c).namespaces_size(), 3);
  EXPECT_EQ(Effective(c).namespaces(0).name(), "circles");
}

TEST(ConfigValidate, NamespaceAuthRequirementsAndLimitsAreChecked) {
  // Today's behaviour is the default: none of the new fields set is valid.
  EXPECT_TRUE(ErrorsOf(R"({"namespaces":[{"name":"a"}]})").empty());
  // A personal namespace needs verified identities.
  EXPECT_TRUE(HasError(ErrorsOf(R"({"namespaces":[{"name":"a","personal_channels":true}]})"),
                       "namespaces[0].personal_channels: needs auth.mode token"));
  // Reader policies for what the namespace does not keep.
  auto errors = ErrorsOf(
      R"({"namespaces":[{"name":"a","client_presence":"SUBSCRIBED"},
                        {"name":"b","client_history":"NOBODY"},
                        {"name":"c","presence":true,"history_size":3,"client_presence":"NOBODY",
                         "client_history":"SUBSCRIBED"}]})");
  EXPECT_TRUE(HasError(errors, "namespaces[0].client_presence: is set while presence is false"))
      << Joined(errors);
  EXPECT_TRUE(HasError(errors, "namespaces[1].client_history: is set while history_size is 0"))
      << Joined(errors);
  EXPECT_FALSE(HasError(errors, "namespaces[2]")) << Joined(errors);
  // Limits above the global ones, and a rate without a burst.
  errors = ErrorsOf(
      R"({"limits":{"max_frame_bytes":1000,"client_message_rate":10},
          "namespaces":[{"name":"a","max_message_bytes":2000},
                        {"name":"b","client_message_rate":20,"client_message_burst":5},
                        {"name":"c","client_message_rate":5},
                        {"name":"d","client_message_burst":5},
                        {"name":"e","client_message_rate":-1},
                        {"name":"f","max_message_bytes":1000,"client_message_rate":2.5,
                         "client_message_burst":4}]})");
  EXPECT_TRUE(HasError(errors,
                       "namespaces[0].max_message_bytes: 2000 is above "
                       "limits.max_frame_bytes 1000"))
      << Joined(errors);
  EXPECT_TRUE(HasError(errors,
                       "namespaces[1].client_message_rate: 20 is above "
                       "limits.client_message_rate 10"))
      << Joined(errors);
  EXPECT_TRUE(HasError(errors, "namespaces[2].client_message_burst: must be at least 1"))
      << Joined(errors);
  EXPECT_TRUE(HasError(errors, "namespaces[3].client_message_burst: is set while"))
      << Joined(errors);
  EXPECT_TRUE(HasError(errors, "namespaces[4].client_message_rate: must be a non-negative"))
      << Joined(errors);
  EXPECT_FALSE(HasError(errors, "namespaces[5]")) << Joined(errors);
  // With auth on, a personal namespace is fine; the file's values reach the registry.
  Config c;
  ASSERT_TRUE(MergeJson(R"({"namespaces":[{"name":"inbox","personal_channels":true,
      "history_size":5,"client_history":"SUBSCRIBED","max_message_bytes":512,
      "client_message_rate":2.5,"client_message_burst":4}]})",
                        c)
                  .ok());
  auto reg = Namespaces(Effective(c));
  ASSERT_TRUE(reg.ok()) << reg.status();
  const core::NamespaceConfig* inbox = reg->Find("inbox");
  ASSERT_NE(inbox, nullptr);
  EXPECT_TRUE(inbox->personal_channels);
  EXPECT_EQ(inbox->client_history, core::ClientReads::kSubscribed);
  EXPECT_EQ(inbox->client_presence, core::ClientReads::kGranted);
  EXPECT_EQ(inbox->max_message_bytes, 512u);
  EXPECT_EQ(inbox->client_message_rate, 2.5);
  EXPECT_EQ(inbox->client_message_burst, 4);
}

TEST(ConfigFlags, NamespacesOneLineFormTakesTheRequirementsAndLimits) {
  Config c;
  const std::string line =
      "inbox:history=5:personal:history_frames=subscribed:max_message_bytes=512,room:presence:"
      "presence_frames=nobody:message_rate=5:message_burst=10";
  ASSERT_TRUE(ApplyFlag("namespaces", line, c).ok());
  ASSERT_EQ(c.namespaces_size(), 2);
  EXPECT_TRUE(c.namespaces(0).personal_channels());
  EXPECT_EQ(c.namespaces(0).client_history(), gathering::bridge::v1::Namespace::SUBSCRIBED);
  EXPECT_EQ(c.namespaces(1).client_presence(), gathering::bridge::v1::Namespace::NOBODY);
  EXPECT_EQ(c.namespaces(1).client_message_rate(), 5);
  EXPECT_EQ(ValueText(Effective(c), *FindFlag("namespaces")), line);
  EXPECT_FALSE(ApplyFlag("namespaces", "inbox:history_frames=maybe", c).ok());
}

TEST(ConfigValidate, ContradictionsAreRefusedWithTheirPaths) {
  EXPECT_TRUE(ErrorsOf("{}").empty()) << Joined(ErrorsOf("{}"));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"limits":{"idle_timeout":"soon"}})"),
                       "limits.idle_timeout (--idle_timeout): 'soon' is not a duration"));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"listeners":{"ws_port":70000}})"), "listeners.ws_port"));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"listeners":{"ws_port":9000,"grpc_port":9000}})"),
                       "listeners.grpc_port (--grpc_port): is the same port"));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"limits":{"max_frame_bytes":10}})"), "at least 125"));
  EXPECT_TRUE(
      HasError(ErrorsOf(R"({"limits":{"client_message_rate":10,"client_message_burst":0}})"),
               "limits.client_message_burst"));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"limits":{"heartbeat_interval":"0s"}})"),
                       "limits.heartbeat_interval (--heartbeat_interval): must be positive"));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"limits":{"drain_window":"5s"}})"),
                       "limits.drain_window (--drain_window): must be shorter"));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"auth":{"mode":"tokens"}})"), "auth.mode (--auth)"));
  EXPECT_TRUE(
      HasError(ErrorsOf(R"({"auth":{"mode":"token"}})"), "token needs auth.hs256_secret_file"));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"auth":{"issuer":"me"}})"), "while auth.mode is none"));
  EXPECT_TRUE(
      HasError(ErrorsOf(R"({"auth":{"allowed_origins":["example.com"]}})"), "is not an origin"));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"auth":{"mode":"token","hs256_secret_file":"/nonexistent"}})"),
                       "auth.hs256_secret_file (--auth_hs256_secret_file): cannot read"));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"tls":{"ws_cert_file":"/etc/hostname"}})"), "tls.ws_key_file"));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"broker":{"url":"memcached://x"}})"), "broker.url"));
  EXPECT_TRUE(
      HasError(ErrorsOf(R"({"broker":{"url":"redis://h:1","tls_ca_file":"/etc/hostname"}})"),
               "broker.tls_ca_file (--broker_tls_ca_file): needs a rediss://"));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"logging":{"level":"loud"}})"), "logging.level"));
  // Shadowing: two entries for one namespace.
  EXPECT_TRUE(HasError(ErrorsOf(R"({"namespaces":[{"name":"a"},{"name":"b"},{"name":"a"}]})"),
                       "namespaces[2].name: 'a' is already namespaces[0]"));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"namespaces":[{"name":"a/b"}]})"), "namespaces[0].name"));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"namespaces":[{}]})"), "namespaces[0].name: must be set"));
  // History that would outlive the broker's meta.
  const std::string meta =
      R"({"broker":{"url":"redis://h:1","meta_ttl":"10m"},
          "namespaces":[{"name":"a","history_size":5,"history_ttl":"1h"},
                        {"name":"b","history_size":5},
                        {"name":"c","history_size":5,"history_ttl":"5m"}]})";
  auto errors = ErrorsOf(meta);
  EXPECT_TRUE(HasError(errors, "namespaces[0].history_ttl: 1h must be set and at most"))
      << Joined(errors);
  EXPECT_TRUE(HasError(errors, "namespaces[1].history_ttl: 0s (no limit)")) << Joined(errors);
  EXPECT_FALSE(HasError(errors, "namespaces[2]")) << Joined(errors);
}

// The admin listener's TLS: a pair, readable, and only with an admin listener to serve it.
TEST(ConfigValidate, AdminTlsContradictionsAreRefused) {
  const std::string ok = R"({"admin":{"port":0,"tls_cert_file":"/etc/hostname",
                                      "tls_key_file":"/etc/hostname"}})";
  EXPECT_TRUE(ErrorsOf(ok).empty()) << Joined(ErrorsOf(ok));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"admin":{"port":0,"tls_cert_file":"/etc/hostname"}})"),
                       "admin.tls_key_file (--admin_tls_key_file): is needed with"));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"admin":{"port":0,"tls_key_file":"/etc/hostname"}})"),
                       "admin.tls_cert_file (--admin_tls_cert_file): is needed with"));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"admin":{"port":0,"tls_cert_file":"/nonexistent/admin.pem",
                                             "tls_key_file":"/etc/hostname"}})"),
                       "admin.tls_cert_file (--admin_tls_cert_file): cannot read"));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"admin":{"port":0,"tls_cert_file":"/etc/hostname",
                                             "tls_key_file":"/nonexistent/admin.key"}})"),
                       "admin.tls_key_file (--admin_tls_key_file): cannot read"));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"admin":{"tls_cert_file":"/etc/hostname",
                                             "tls_key_file":"/etc/hostname"}})"),
                       "admin.tls_cert_file (--admin_tls_cert_file): is set while the admin "
                       "listener is off"));
  EXPECT_TRUE(HasError(ErrorsOf("{}", {{"admin_tls_from_ws", "true"}}),
                       "admin.tls_from_ws (--admin_tls_from_ws): is set while the admin"));
  // The WebSocket listener's certificate: only when it has one, and not besides another.
  EXPECT_TRUE(HasError(ErrorsOf(R"({"admin":{"port":0,"tls_from_ws":true}})"),
                       "admin.tls_from_ws (--admin_tls_from_ws): needs tls.ws_cert_file"));
  const std::string from_ws = R"({"admin":{"port":0,"tls_from_ws":true},
      "tls":{"ws_cert_file":"/etc/hostname","ws_key_file":"/etc/hostname"}})";
  EXPECT_TRUE(ErrorsOf(from_ws).empty()) << Joined(ErrorsOf(from_ws));
  EXPECT_TRUE(HasError(ErrorsOf(R"({"admin":{"port":0,"tls_from_ws":true,
      "tls_cert_file":"/etc/hostname","tls_key_file":"/etc/hostname"},
      "tls":{"ws_cert_file":"/etc/hostname","ws_key_file":"/etc/hostname"}})"),
                       "admin.tls_from_ws (--admin_tls_from_ws): and admin.tls_cert_file"));
}

TEST(ConfigReload, ChangedListsTheFieldsThatDiffer) {
  Config a = Effective(Config());
  Config b = a;
  b.mutable_limits()->set_max_connections(5);
  b.mutable_listeners()->set_ws_port(1);
  b.mutable_namespaces(0)->set_history_ttl("301s");
  std::vector<std::string> paths;
  for (const Field* f : Changed(a, b)) paths.push_back(f->path);
  EXPECT_EQ(paths, (std::vector<std::string>{"listeners.ws_port", "limits.max_connections",
                                             "namespaces"}));
  EXPECT_TRUE(FindFlag("allowed_origins")->reloadable);
  EXPECT_TRUE(FindFlag("auth_hs256_secret_file")->reloadable);
  EXPECT_FALSE(FindFlag("ws_port")->reloadable);
  EXPECT_TRUE(Changed(a, a).empty());
}

TEST(ConfigReload, TheHubAndStreamLimitsAreReloadableAndTheServerBuildersAreNot) {
  for (const char* flag :
       {"max_channels", "channel_idle_timeout", "max_pending_frames", "broker_link_linger",
        "sweep_interval", "subscribe_queue_messages", "max_backend_streams_per_identity",
        "max_backend_streams", "publish_stream_in_flight", "publish_bucket_keys", "auth_timeout"}) {
    ASSERT_NE(FindFlag(flag), nullptr) << flag;
    EXPECT_TRUE(FindFlag(flag)->reloadable) << flag;
  }
  // Fixed in the gRPC server builder at start.
  EXPECT_FALSE(FindFlag("grpc_max_message_bytes")->reloadable);
  // The list as a whole is not: its policies are (DiffNamespaces), its names are not.
  EXPECT_FALSE(FindFlag("namespaces")->reloadable);
}

TEST(ConfigReload, DiffNamespacesNamesEachChangedPolicyWhenTheNamesStay) {
  Config a = Effective(Config());  // circles, workspace, agents
  Config b = a;
  b.mutable_namespaces(1)->set_history_size(10);
  b.mutable_namespaces(1)->set_client_messages(gathering::bridge::v1::Namespace::BROADCAST);
  b.mutable_namespaces(2)->set_history_ttl("1m");
  NamespaceDiff d = DiffNamespaces(a, b);
  EXPECT_TRUE(d.same_names);
  std::vector<std::string> changes;
  for (const auto& c : d.changes) {
    changes.push_back(c.path + " " + c.name + " " + c.before + " -> " + c.after);
  }
  EXPECT_EQ(changes, (std::vector<std::string>{
                         "namespaces[1].client_messages workspace BACKENDS -> BROADCAST",
                         "namespaces[1].history_size workspace 100 -> 10",
                         "namespaces[2].history_ttl agents 2m -> 1m"}));
  EXPECT_TRUE(DiffNamespaces(a, a).changes.empty());
}

TEST(ConfigReload, DiffNamespacesTellsAddedRemovedRenamedAndReorderedNamespaces) {
  const Config a = Effective(Config());
  Config added = a;
  added.add_namespaces()->set_name("rooms");
  Config removed = a;
  removed.mutable_namespaces()->RemoveLast();
  Config renamed = a;
  renamed.mutable_namespaces(0)->set_name("circle");
  Config reordered = a;
  reordered.mutable_namespaces()->SwapElements(0, 1);
  for (const Config* c : {&added, &removed, &renamed, &reordered}) {
    NamespaceDiff d = DiffNamespaces(a, Effective(*c));
    EXPECT_FALSE(d.same_names);
    EXPECT_TRUE(d.changes.empty());
    EXPECT_EQ(d.names_before, (std::vector<std::string>{"circles", "workspace", "agents"}));
  }
  EXPECT_EQ(DiffNamespaces(a, Effective(added)).names_after,
            (std::vector<std::string>{"circles", "workspace", "agents", "rooms"}));
}

TEST(ConfigReference, DocsOperationsHoldsTheGeneratedReference) {
  std::ifstream in(std::string(BRIDGE_SOURCE_DIR) + "/docs/operations.md");
  ASSERT_TRUE(in) << "docs/operations.md";
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  const std::string begin = "<!-- config-reference:begin -->\n";
  const std::string end = "<!-- config-reference:end -->";
  const size_t b = doc.find(begin);
  const size_t e = doc.find(end);
  ASSERT_NE(b, std::string::npos) << "docs/operations.md lacks " << begin;
  ASSERT_NE(e, std::string::npos);
  EXPECT_EQ(doc.substr(b + begin.size(), e - b - begin.size()), ReferenceMarkdown())
      << "regenerate: gathering-bridge config-reference, between the markers of "
         "docs/operations.md";
}

}  // namespace
}  // namespace bridge::config
