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

const NamespaceConfig* FindIn(const std::vector<NamespaceConfig>& list, std::string_view name) {
  for (const auto& n : list) {
    if (n.name == name) return &n;
  }
  return nullptr;
}

bool SamePolicy(const NamespaceConfig& a, const NamespaceConfig& b) {
  return a.name == b.name && a.client_broadcast == b.client_broadcast &&
         a.history_size == b.history_size && a.history_ttl == b.history_ttl &&
         a.presence == b.presence && a.slow_policy == b.slow_policy &&
         a.history_max_bytes == b.history_max_bytes && a.personal_channels == b.personal_channels &&
         a.client_history == b.client_history && a.client_presence == b.client_presence &&
         a.max_message_bytes == b.max_message_bytes &&
         a.client_message_rate == b.client_message_rate &&
         a.client_message_burst == b.client_message_burst;
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

NamespaceRegistry::NamespaceRegistry() : NamespaceRegistry(Version{}) {}

NamespaceRegistry::NamespaceRegistry(Version list) {
  versions_.push_back(std::make_unique<Version>(std::move(list)));
  current_.store(versions_.back().get(), std::memory_order_release);
}

NamespaceRegistry::NamespaceRegistry(const NamespaceRegistry& other)
    : NamespaceRegistry(other.all()) {}

NamespaceRegistry& NamespaceRegistry::operator=(const NamespaceRegistry& other) {
  if (this == &other) return *this;
  // Assigned before any reader exists (a configuration being built): earlier versions may go.
  Version copy = other.all();
  std::lock_guard lock(mu_);
  versions_.clear();
  versions_.push_back(std::make_unique<Version>(std::move(copy)));
  current_.store(versions_.back().get(), std::memory_order_release);
  return *this;
}

NamespaceRegistry::~NamespaceRegistry() = default;

bool NamespaceRegistry::SameNames(const NamespaceRegistry& other) const {
  const Version& a = all();
  const Version& b = other.all();
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name) return false;
  }
  return true;
}

absl::StatusOr<bool> NamespaceRegistry::ReplacePolicies(const NamespaceRegistry& next) {
  if (!SameNames(next)) {
    return absl::FailedPreconditionError(
        "the namespaces' names or their order differ: that needs a restart");
  }
  auto version = std::make_unique<Version>(next.all());
  std::lock_guard lock(mu_);
  const Version& now = *current_.load(std::memory_order_relaxed);
  bool changed = false;
  for (size_t i = 0; i < now.size(); ++i) changed = changed || !SamePolicy(now[i], (*version)[i]);
  if (!changed) return false;
  versions_.push_back(std::move(version));
  current_.store(versions_.back().get(), std::memory_order_release);
  return true;
}

NamespaceRegistry NamespaceRegistry::Defaults() {
  Version v;
  v.push_back({"circles", true, 100, std::chrono::seconds(300), true});
  v.push_back({"workspace", false, 100, std::chrono::seconds(300), false});
  v.push_back({"agents", false, 50, std::chrono::seconds(120), false});
  return NamespaceRegistry(std::move(v));
}

absl::StatusOr<NamespaceRegistry> NamespaceRegistry::Parse(std::string_view spec) {
  if (spec.empty()) return Defaults();
  Version r;
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
    if (FindIn(r, ns.name) != nullptr) {
      return absl::InvalidArgumentError(Cat("namespace '", ns.name, "' given twice"));
    }
    r.push_back(std::move(ns));
  }
  return NamespaceRegistry(std::move(r));
}

absl::StatusOr<NamespaceRegistry> NamespaceRegistry::FromList(std::vector<NamespaceConfig> list) {
  if (list.empty()) return Defaults();
  Version r;
  for (NamespaceConfig& ns : list) {
    bool valid_name = !ns.name.empty() && ns.name.find('/') == std::string::npos &&
                      ns.name.find('*') == std::string::npos;
    if (!valid_name) return absl::InvalidArgumentError(Cat("bad namespace '", ns.name, "'"));
    if (FindIn(r, ns.name) != nullptr) {
      return absl::InvalidArgumentError(Cat("namespace '", ns.name, "' given twice"));
    }
    r.push_back(std::move(ns));
  }
  return NamespaceRegistry(std::move(r));
}

int NamespaceRegistry::IndexOf(std::string_view ns) const {
  const Version& v = all();
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i].name == ns) return static_cast<int>(i);
  }
  return -1;
}

const NamespaceConfig* NamespaceRegistry::Find(std::string_view ns) const {
  return FindIn(all(), ns);
}

}  // namespace bridge::core
