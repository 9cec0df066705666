#include "core/utf8.h"

#include "core/websocket_codec.h"

namespace bridge::core {

bool IsValidUtf8(std::string_view s) { return Utf8Validator::IsComplete(s); }

std::string_view TruncateUtf8(std::string_view s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  size_t n = max_bytes;
  // Back up over continuation bytes to the start of the character that would be cut.
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

}  // namespace bridge::core
