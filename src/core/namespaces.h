// Per-namespace behaviour: what clients may send, how much history is kept, presence.
//
// Built at start-up from the configuration. The set of names and their order never change
// afterwards (indexes into all() are stable: frames, metrics and sinks keep them); the policies
// may, at a reload (ReplacePolicies). Any thread may read.
#ifndef BRIDGE_CORE_NAMESPACES_H_
#define BRIDGE_CORE_NAMESPACES_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace bridge::core {

// What to do with a client whose write queue is full (docs/protocol.md, "Slow consumers").
enum class SlowPolicy {
  kDisconnect,  // close 4008; the client reconnects and recovers from history
  kDropOldest,  // drop the oldest queued events, then tell the client with a `gap` frame
  kLatestOnly,  // keep only the newest queued event per channel (state-like channels)
};

// Who may send a client frame that reads a channel (`history`, `presence`).
enum class ClientReads {
  kGranted,     // a connection whose token grants the channel, subscribed or not
  kSubscribed,  // only a connection subscribed to the channel
  kNobody,      // refused to every client (backends read through gRPC)
};

struct NamespaceConfig {
  std::string name;
  // Whether a client's frame on a channel of this namespace is relayed to the channel's other
  // subscribers (it always reaches backends' Subscribe streams).
  bool client_broadcast = false;
  // Retained messages per channel for recovery; 0 keeps none.
  size_t history_size = 0;
  // How long a retained message stays recoverable; zero means no age limit.
  std::chrono::seconds history_ttl{0};
  // Whether identified connections produce agent_joined/agent_left events.
  bool presence = false;
  SlowPolicy slow_policy = SlowPolicy::kDisconnect;
  // Bytes of retained frames per channel (their JSON text); the oldest are dropped past it, and
  // a frame larger than the whole bound is not retained (nor is anything before it). 0 keeps
  // none. Kept last so that positional initialisers of the fields above stay valid.
  size_t history_max_bytes = kDefaultHistoryMaxBytes;

  // Channels "<name>/<identity>[/...]" are only for the connection with that identity (auth on;
  // in addition to the token's grants).
  bool personal_channels = false;
  ClientReads client_history = ClientReads::kGranted;
  ClientReads client_presence = ClientReads::kGranted;
  // Largest client message on the namespace's channels; 0: only the global frame limit.
  size_t max_message_bytes = 0;
  // Per-connection client message bucket for the namespace; a rate of 0: none.
  double client_message_rate = 0;
  double client_message_burst = 0;

  static constexpr size_t kDefaultHistoryMaxBytes = 1 << 20;

  // Whether `identity` owns `channel` (of this namespace) when personal_channels is set: the
  // segment after the namespace is the identity. True when personal_channels is off.
  bool Owns(std::string_view identity, std::string_view channel) const;
};

class NamespaceRegistry {
 public:
  NamespaceRegistry();
  // A copy holds the other's current policies (and none of its earlier versions).
  NamespaceRegistry(const NamespaceRegistry& other);
  NamespaceRegistry& operator=(const NamespaceRegistry& other);
  ~NamespaceRegistry();

  // GatheRing's defaults: circles (broadcast, history 100/5 min, presence), workspace
  // (history 100/5 min), agents (history 50/2 min); each history at most 1 MiB per channel.
  static NamespaceRegistry Defaults();

  // Parses a spec such as
  // "circles:broadcast:history=100:ttl=300:history_bytes=65536:presence,workspace:slow=drop_oldest,
  // agents" (history_bytes: NamespaceConfig::history_max_bytes, 1 MiB when not given). The
  // other options: personal, history_frames=granted|subscribed|nobody, presence_frames=(same),
  // max_message_bytes=N, message_rate=N, message_burst=N.
  // An empty spec gives the defaults.
  static absl::StatusOr<NamespaceRegistry> Parse(std::string_view spec);
  // The given namespaces (the configuration file's); empty gives the defaults. Refuses a
  // malformed or repeated name.
  static absl::StatusOr<NamespaceRegistry> FromList(std::vector<NamespaceConfig> list);

  // Any thread. The namespace's current config, or nullptr when the namespace is not
  // configured. The pointer stays valid for the registry's lifetime (a later ReplacePolicies
  // does not change what it points to: it is the policy as it was when read).
  const NamespaceConfig* Find(std::string_view ns) const;
  // The namespace's position in all(), or -1. Stable for the registry's lifetime.
  int IndexOf(std::string_view ns) const;
  // Any thread. The current policies, in configuration order; valid for the registry's
  // lifetime, like Find's pointers. One acquire load: no lock, no allocation.
  const std::vector<NamespaceConfig>& all() const {
    return *current_.load(std::memory_order_acquire);
  }

  // True when `other` has the same names in the same order (so its policies may replace these).
  bool SameNames(const NamespaceRegistry& other) const;
  // Any thread (a reload). Readers from now on see `next`'s policies; readers holding a pointer
  // or a reference keep the version they read. FAILED_PRECONDITION, and nothing changes, unless
  // `next` has the same names in the same order. Returns whether anything changed. Every version
  // is kept until the registry is destroyed (a few hundred bytes per namespace per reload that
  // changed something): that is what lets readers go without a lock or a reference count.
  absl::StatusOr<bool> ReplacePolicies(const NamespaceRegistry& next);

 private:
  using Version = std::vector<NamespaceConfig>;
  explicit NamespaceRegistry(Version list);

  std::atomic<const Version*> current_;
  std::mutex mu_;                                   // writers
  std::vector<std::unique_ptr<Version>> versions_;  // mu_; every version, current_ the last
};

}  // namespace bridge::core

#endif  // BRIDGE_CORE_NAMESPACES_H_
