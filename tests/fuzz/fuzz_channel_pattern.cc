// libFuzzer target for the channel pattern grammar. Input: "<pattern>\n<channel>".
// Checks invariants that must hold for every pair, so a wrong match aborts, not only a crash.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "auth/channel_pattern.h"

using bridge::auth::AnyMatches;
using bridge::auth::PatternMatches;
using bridge::auth::PatternValid;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t newline = input.find('\n');
  const std::string_view pattern = input.substr(0, newline);
  const std::string_view channel =
      newline == std::string_view::npos ? std::string_view() : input.substr(newline + 1);

  const bool valid = PatternValid(pattern);
  const bool matches = PatternMatches(pattern, channel);
  const bool channel_valid = PatternMatches("*", channel);
  // A grant only matches when both sides are well-formed.
  if (matches && (!valid || !channel_valid)) std::abort();
  // A valid channel is a valid exact pattern that matches itself, and nothing but itself.
  if (channel_valid && (!PatternValid(channel) || !PatternMatches(channel, channel))) std::abort();
  if (matches && pattern != "*" && pattern.back() != '*' && pattern != channel) std::abort();
  // "ns/*" matches exactly the channels whose first segment is ns.
  if (valid && pattern.size() > 2 && pattern.substr(pattern.size() - 2) == "/*") {
    const std::string_view prefix = pattern.substr(0, pattern.size() - 1);
    if (matches != (channel_valid && channel.substr(0, prefix.size()) == prefix)) std::abort();
  }
  if (AnyMatches({std::string(pattern)}, channel) != matches) std::abort();
  return 0;
}
