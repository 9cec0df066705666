#include "auth/channel_pattern.h"

#include <algorithm>

namespace bridge::auth {
namespace {

bool SegmentChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == ':' || c == '@' || c == '-';
}

bool SegmentValid(std::string_view segment) {
  return !segment.empty() && std::all_of(segment.begin(), segment.end(), SegmentChar);
}

bool ChannelValid(std::string_view channel) {
  if (channel.empty() || channel.size() > kMaxChannelBytes) return false;
  std::size_t segments = 0;
  while (true) {
    const std::size_t slash = channel.find('/');
    if (!SegmentValid(channel.substr(0, slash))) return false;
    ++segments;
    if (slash == std::string_view::npos) break;
    channel.remove_prefix(slash + 1);
  }
  return segments >= 2;
}

}  // namespace

bool PatternValid(std::string_view pattern) {
  if (pattern == "*") return true;
  if (pattern.size() > kMaxChannelBytes) return false;
  if (pattern.size() >= 2 && pattern.substr(pattern.size() - 2) == "/*") {
    return SegmentValid(pattern.substr(0, pattern.size() - 2));
  }
  return ChannelValid(pattern);
}

bool PatternMatches(std::string_view pattern, std::string_view channel) {
  if (!ChannelValid(channel) || !PatternValid(pattern)) return false;
  if (pattern == "*") return true;
  if (pattern.back() == '*') {
    // "ns/*" -> the channel starts with "ns/"; ChannelValid guarantees a non-empty rest.
    return channel.substr(0, pattern.size() - 1) == pattern.substr(0, pattern.size() - 1);
  }
  return pattern == channel;
}

bool AnyMatches(const std::vector<std::string>& patterns, std::string_view channel) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [channel](const std::string& p) { return PatternMatches(p, channel); });
}

}  // namespace bridge::auth
