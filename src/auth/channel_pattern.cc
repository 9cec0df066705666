#include "auth/channel_pattern.h"

#include <algorithm>

#include "core/channel.h"

// One grammar for the whole bridge: grants are checked with core's channel rules, the same ones
// that validate published channels and backend Subscribe patterns.
namespace bridge::auth {

bool PatternValid(std::string_view pattern) { return core::ValidatePattern(pattern).ok(); }

bool PatternMatches(std::string_view pattern, std::string_view channel) {
  return PatternValid(pattern) && core::ValidateChannel(channel).ok() &&
         core::PatternMatches(pattern, channel);
}

bool AnyMatches(const std::vector<std::string>& patterns, std::string_view channel) {
  if (!core::ValidateChannel(channel).ok()) return false;
  return std::any_of(patterns.begin(), patterns.end(), [channel](const std::string& p) {
    return PatternValid(p) && core::PatternMatches(p, channel);
  });
}

}  // namespace bridge::auth
