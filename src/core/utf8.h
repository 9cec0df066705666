// UTF-8 checks for every string a client supplies before it reaches a frame or a proto (the
// incremental validator behind them is core::Utf8Validator, core/websocket_codec.h).
//
// Pure functions; any thread.
#ifndef BRIDGE_CORE_UTF8_H_
#define BRIDGE_CORE_UTF8_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace bridge::core {

// Whether `s` is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, at most
// U+10FFFF).
bool IsValidUtf8(std::string_view s);

// The longest prefix of `s` of at most `max_bytes` that does not end inside a character.
// `s` must be valid UTF-8.
std::string_view TruncateUtf8(std::string_view s, size_t max_bytes);

}  // namespace bridge::core

#endif  // BRIDGE_CORE_UTF8_H_
