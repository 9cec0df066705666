// Channel names and backend subscription patterns.
//
// A channel name is `namespace/name[/more...]`: at least two segments, each 1+ bytes of
// [A-Za-z0-9_.:@-], at most kMaxChannelBytes in all. Names need no escaping in JSON, which the
// frame encoder relies on. Pure functions, callable from any thread.
#ifndef BRIDGE_CORE_CHANNEL_H_
#define BRIDGE_CORE_CHANNEL_H_

#include <string_view>

#include "absl/status/status.h"

namespace bridge::core {

inline constexpr size_t kMaxChannelBytes = 200;

// OK, or INVALID_ARGUMENT saying what is wrong with `channel`.
absl::Status ValidateChannel(std::string_view channel);

// The first segment of a valid channel ("circles" for "circles/dev-team").
std::string_view NamespaceOf(std::string_view channel);

// A subscription pattern is an exact channel, `namespace/*` (every channel of the namespace) or
// `*` (every channel).
absl::Status ValidatePattern(std::string_view pattern);
bool PatternMatches(std::string_view pattern, std::string_view channel);

}  // namespace bridge::core

#endif  // BRIDGE_CORE_CHANNEL_H_
