#include "core/namespaces.h"

#include "core/strings.h"

namespace bridge::core {
namespace {

bool ParseClientReads(std::string_view text, ClientReads& out) {
  if (text == "granted") {
    out = ClientReads::kGranted;
  } else if (text == "subscribed") {
    out = ClientReads::kSubscribed;
  } else if (text == "nobody") {
    out = ClientReads::kNobody;
  } else {
    return false;
  }
  return true;
}

}  // namespace

bool NamespaceConfig::Owns(std::string_view identity, std::string_view channel) const {
  if (!personal_channels) return true;
  // "<name>/<segment>[/...]": the segment must be the identity, exactly (an empty identity owns
  // nothing, so anonymous connections never match).
  if (identity.empty() || channel.size() <= name.size() + 1) return false;
  std::string_view rest = channel.substr(name.size() + 1);
  const size_t slash = rest.find('/');
  return rest.substr(0, slash) == identity;
}

NamespaceRegistry NamespaceRegistry::Defaults() {
  NamespaceRegistry r;
  r.namespaces_.push_back({"circles", true, 100, std::chrono::seconds(300), true});
  r.namespaces_.push_back({"workspace", false, 100, std::chrono::seconds(300), false});
  r.namespaces_.push_back({"agents", false, 50, std::chrono::seconds(120), false});
  return r;
}

absl::StatusOr<NamespaceRegistry> NamespaceRegistry::Parse(std::string_view spec) {
  if (spec.empty()) return Defaults();
  NamespaceRegistry r;
  for (std::string_view entry : SplitNonEmpty(spec, ',')) {
    std::vector<std::string_view> parts = SplitNonEmpty(entry, ':');
    if (parts.empty()) continue;
    NamespaceConfig ns;
    ns.name = std::string(parts[0]);
    bool valid_name = !ns.name.empty() && ns.name.find('/') == std::string::npos;
    for (char c : ns.name) valid_name = valid_name && c != '*';
    if (!valid_name) return absl::InvalidArgumentError(Cat("bad namespace '", entry, "'"));
    for (size_t i = 1; i < parts.size(); ++i) {
      std::string_view opt = parts[i];
      uint64_t n = 0;
      if (opt == "broadcast") {
        ns.client_broadcast = true;
      } else if (opt == "presence") {
        ns.presence = true;
      } else if (ConsumePrefix(opt, "history=") && ParseUint(opt, n)) {
        ns.history_size = n;
      } else if (ConsumePrefix(opt, "history_bytes=") && ParseUint(opt, n)) {
        ns.history_max_bytes = n;
      } else if (ConsumePrefix(opt, "ttl=") && ParseUint(opt, n)) {
        ns.history_ttl = std::chrono::seconds(n);
      } else if (opt == "personal") {
        ns.personal_channels = true;
      } else if (ConsumePrefix(opt, "history_frames=") &&
                 ParseClientReads(opt, ns.client_history)) {
      } else if (ConsumePrefix(opt, "presence_frames=") &&
                 ParseClientReads(opt, ns.client_presence)) {
      } else if (ConsumePrefix(opt, "max_message_bytes=") && ParseUint(opt, n)) {
        ns.max_message_bytes = n;
      } else if (ConsumePrefix(opt, "message_rate=") && ParseUint(opt, n)) {
        ns.client_message_rate = static_cast<double>(n);
      } else if (ConsumePrefix(opt, "message_burst=") && ParseUint(opt, n)) {
        ns.client_message_burst = static_cast<double>(n);
      } else if (parts[i] == "slow=disconnect") {
        ns.slow_policy = SlowPolicy::kDisconnect;
      } else if (parts[i] == "slow=drop_oldest") {
        ns.slow_policy = SlowPolicy::kDropOldest;
      } else if (parts[i] == "slow=latest_only") {
        ns.slow_policy = SlowPolicy::kLatestOnly;
      } else {
        return absl::InvalidArgumentError(
            Cat("bad namespace option '", parts[i], "' in '", entry,
                "' (want broadcast, presence, history=N, history_bytes=N, ttl=SECONDS, "
                "slow=disconnect|drop_oldest|latest_only, personal, "
                "history_frames=granted|subscribed|nobody, presence_frames=…, "
                "max_message_bytes=N, message_rate=N, message_burst=N)"));
      }
    }
    if (r.Find(ns.name) != nullptr) {
      return absl::InvalidArgumentError(Cat("namespace '", ns.name, "' given twice"));
    }
    r.namespaces_.push_back(std::move(ns));
  }
  return r;
}

absl::StatusOr<NamespaceRegistry> NamespaceRegistry::FromList(std::vector<NamespaceConfig> list) {
  if (list.empty()) return Defaults();
  NamespaceRegistry r;
  for (NamespaceConfig& ns : list) {
    bool valid_name = !ns.name.empty() && ns.name.find('/') == std::string::npos &&
                      ns.name.find('*') == std::string::npos;
    if (!valid_name) return absl::InvalidArgumentError(Cat("bad namespace '", ns.name, "'"));
    if (r.Find(ns.name) != nullptr) {
      return absl::InvalidArgumentError(Cat("namespace '", ns.name, "' given twice"));
    }
    r.namespaces_.push_back(std::move(ns));
  }
  return r;
}

int NamespaceRegistry::IndexOf(std::string_view ns) const {
  for (size_t i = 0; i < namespaces_.size(); ++i) {
    if (namespaces_[i].name == ns) return static_cast<int>(i);
  }
  return -1;
}

const NamespaceConfig* NamespaceRegistry::Find(std::string_view ns) const {
  for (const auto& n : namespaces_) {
    if (n.name == ns) return &n;
  }
  return nullptr;
}

}  // namespace bridge::core
