// Request-target parsing for the HTTP front end: path, query parameters, percent-decoding.
// Pure; any thread. Malformed escapes make the parse fail rather than guess.
#ifndef BRIDGE_CORE_URI_H_
#define BRIDGE_CORE_URI_H_

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bridge::core {

struct RequestTarget {
  std::string path;                                        // decoded
  std::vector<std::pair<std::string, std::string>> query;  // decoded, in order

  // The first value of `key`, or nullopt.
  std::optional<std::string> Param(std::string_view key) const;
};

// Decodes %XX escapes (and '+' as space when `plus_is_space`); nullopt on a bad escape or a NUL.
std::optional<std::string> PercentDecode(std::string_view s, bool plus_is_space);

// Parses "/ws/circles/dev-team?since=3&epoch=ab"; nullopt when malformed.
std::optional<RequestTarget> ParseRequestTarget(std::string_view target);

// For "/ws/{channel}" paths: the channel ("circles/dev-team"), "" for "/ws", nullopt for paths
// outside /ws.
std::optional<std::string> ChannelFromWsPath(std::string_view path);

}  // namespace bridge::core

#endif  // BRIDGE_CORE_URI_H_
