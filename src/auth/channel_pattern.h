// Channel patterns: the grammar of every grant in a token or an API key.
//
// A pattern is one of
//   - an exact channel name, e.g. "circles/dev-team" (matches that channel only);
//   - "<prefix>/*", e.g. "circles/*" (every channel under the prefix, at any depth: "circles/a"
//     and "circles/a/b", but not "circles" nor "circlesx/a"; "workspace/42/*" likewise);
//   - "*" (every channel).
// Channel names follow docs/protocol.md: at most 200 bytes, at least two '/'-separated segments,
// each of 1-200 bytes of [A-Za-z0-9_.:@-]. '*' is never part of a name.
//
// The grammar is core's (core/channel.h): these are the auth-facing names of ValidatePattern and
// PatternMatches, adding that an invalid channel never matches. Pure; any thread.
#ifndef BRIDGE_AUTH_CHANNEL_PATTERN_H_
#define BRIDGE_AUTH_CHANNEL_PATTERN_H_

#include <string>
#include <string_view>
#include <vector>

namespace bridge::auth {

// True when `pattern` is well-formed by the grammar above. An empty pattern is invalid.
bool PatternValid(std::string_view pattern);

// True when `pattern` is valid, `channel` is a valid channel name, and the pattern covers the
// channel. An invalid pattern or channel never matches (a malformed grant grants nothing).
bool PatternMatches(std::string_view pattern, std::string_view channel);

// True when any of `patterns` matches `channel`. An empty list matches nothing.
bool AnyMatches(const std::vector<std::string>& patterns, std::string_view channel);

}  // namespace bridge::auth

#endif  // BRIDGE_AUTH_CHANNEL_PATTERN_H_
