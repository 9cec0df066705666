// One node of the dashboard's node list, and the two forms it travels in: the announce a node
// stores in the broker's directory (EncodeAnnounce / ParseAnnounce) and the JSON the dashboard
// and /admin/nodes read (NodesJson).
//
// An announce read back from the broker is input: another node wrote it, or anything else that
// can write to Redis. ParseAnnounce accepts only an object of known fields with the right types,
// bounded strings of valid UTF-8 without control characters, and finite non-negative numbers;
// anything else refuses the whole entry. Pure functions; any thread.
#ifndef BRIDGE_ADMIN_NODE_INFO_H_
#define BRIDGE_ADMIN_NODE_INFO_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bridge::admin {

struct NodeInfo {
  std::string node;
  // Addresses it serves, host:port ("" when off).
  std::string ws;
  std::string grpc;
  std::string admin;
  int64_t connections = 0;
  int64_t subscriptions = 0;
  int64_t channels = 0;
  // Per second, over the node's last announce interval.
  double published = 0;
  double client_messages = 0;
  double frames_sent = 0;
  bool broker_up = false;
  int64_t uptime_s = 0;
  std::string version;
  int64_t last_seen_ms = 0;  // since its last announce (0 for this node)
  bool self = false;
};

inline constexpr size_t kMaxNodeField = 256;  // bytes of each string field of an announce

// {"node":…,"ws":…,…} without `last_seen_ms` and `self` (the reader's view).
std::string EncodeAnnounce(const NodeInfo& n);
// The announce of node `node`; nullopt when the node id or the text is not acceptable.
std::optional<NodeInfo> ParseAnnounce(std::string_view node, std::string_view text);
// A rate (or any non-negative number) with at most two decimals ("12.5", "0"), as JSON; negative
// and non-finite values are 0.
std::string JsonRate(double v);
// A JSON array of `nodes`, every field (as docs/operations.md lists them).
std::string NodesJson(const std::vector<NodeInfo>& nodes);

}  // namespace bridge::admin

#endif  // BRIDGE_ADMIN_NODE_INFO_H_
