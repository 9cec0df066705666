#include "core/channel.h"

#include <string>

#include "core/strings.h"

namespace bridge::core {
namespace {

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == ':' || c == '@' || c == '-';
}

}  // namespace

absl::Status ValidateChannel(std::string_view channel) {
  if (channel.empty()) return absl::InvalidArgumentError("channel is empty");
  if (channel.size() > kMaxChannelBytes) {
    return absl::InvalidArgumentError(Cat("channel is longer than ", kMaxChannelBytes, " bytes"));
  }
  size_t segments = 1;
  size_t segment_len = 0;
  for (char c : channel) {
    if (c == '/') {
      if (segment_len == 0) return absl::InvalidArgumentError("channel has an empty segment");
      ++segments;
      segment_len = 0;
      continue;
    }
    if (!IsNameChar(c)) {
      return absl::InvalidArgumentError(
          "channel may only contain letters, digits and _ . : @ - between slashes");
    }
    ++segment_len;
  }
  if (segment_len == 0) return absl::InvalidArgumentError("channel has an empty segment");
  if (segments < 2) {
    return absl::InvalidArgumentError("channel must be namespace/name, e.g. circles/dev-team");
  }
  return absl::OkStatus();
}

std::string_view NamespaceOf(std::string_view channel) {
  return channel.substr(0, channel.find('/'));
}

absl::Status ValidatePattern(std::string_view pattern) {
  if (pattern == "*") return absl::OkStatus();
  if (pattern.size() > 2 && pattern.substr(pattern.size() - 2) == "/*") {
    std::string probe(pattern.substr(0, pattern.size() - 1));
    probe.push_back('x');
    return ValidateChannel(probe);
  }
  return ValidateChannel(pattern);
}

bool PatternMatches(std::string_view pattern, std::string_view channel) {
  if (pattern == "*") return true;
  if (pattern.size() >= 2 && pattern.substr(pattern.size() - 2) == "/*") {
    std::string_view prefix = pattern.substr(0, pattern.size() - 1);  // keeps the slash
    return channel.size() > prefix.size() && channel.substr(0, prefix.size()) == prefix;
  }
  return pattern == channel;
}

}  // namespace bridge::core
