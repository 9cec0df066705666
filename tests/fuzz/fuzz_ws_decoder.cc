// Fuzzes the WebSocket frame decoder (core/websocket_codec.h) with arbitrary client bytes.
//
// Input: [limit selector][chunking seed][stream...]. The stream is fed the way WsSession feeds
// it (consumed bytes dropped, the rest fed again with the next chunk), once in chunks whose
// sizes the seed picks and once whole. Checked: consumed never exceeds the input, messages stay
// within the limit, text messages and close reasons are UTF-8 (by a separate, byte-at-a-time
// decoder), close codes are ones a peer may send, errors are final, and both feedings report
// the same events with the same messages.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "core/websocket_codec.h"

namespace {

using bridge::core::WsDecoder;
using Event = WsDecoder::Event;

// A plain UTF-8 decoder: decodes each code point and checks its value against its length.
bool ReferenceUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<uint8_t>(s[i]);
    size_t n;
    uint32_t cp;
    if (b < 0x80) {
      n = 1;
      cp = b;
    } else if ((b & 0xE0) == 0xC0) {
      n = 2;
      cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      n = 3;
      cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      n = 4;
      cp = b & 0x07;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      const auto c = static_cast<uint8_t>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

bool PeerMaySend(uint16_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

struct Seen {
  Event event;
  std::string data;  // the message, or the control payload
  bool operator==(const Seen&) const = default;
};

std::vector<Seen> Run(const uint8_t* stream, size_t size, size_t limit, uint8_t seed) {
  WsDecoder d(limit);
  std::vector<Seen> seen;
  std::string buffer;
  size_t next = 0;
  uint32_t rng = seed;
  size_t feeds = 0;
  for (;;) {
    size_t chunk = size - next;
    if (seed != 0) {
      rng = rng * 1103515245u + 12345u;
      chunk = std::min<size_t>(chunk, 1 + (rng >> 16) % 64);
    }
    buffer.append(reinterpret_cast<const char*>(stream) + next, chunk);
    next += chunk;
    for (;;) {
      if (++feeds > 4 * size + 64) std::abort();  // a Feed that neither consumes nor waits
      size_t consumed = ~size_t{0};
      const Event e =
          d.Feed(reinterpret_cast<const uint8_t*>(buffer.data()), buffer.size(), consumed);
      if (consumed > buffer.size()) std::abort();
      if (d.wanted() > limit + 14 && d.wanted() > 125 + 14) std::abort();
      buffer.erase(0, consumed);
      if (e == Event::kNeedMore) break;
      switch (e) {
        case Event::kMessage:
          if (d.message().size() > limit) std::abort();
          if (d.message_is_text() && !ReferenceUtf8(d.message())) std::abort();
          seen.push_back({e, d.message()});
          break;
        case Event::kPing:
        case Event::kPong:
          if (d.control_payload().size() > 125) std::abort();
          seen.push_back({e, d.control_payload()});
          break;
        case Event::kClose:
          if (d.close_code() != 1005 && !PeerMaySend(d.close_code())) std::abort();
          if (!ReferenceUtf8(d.close_reason())) std::abort();
          seen.push_back({e, d.control_payload()});
          break;
        default: {
          // Final: the same event again, nothing consumed.
          size_t again = 1;
          if (d.Feed(reinterpret_cast<const uint8_t*>(buffer.data()), buffer.size(), again) != e ||
              again != 0) {
            std::abort();
          }
          seen.push_back({e, ""});
          return seen;
        }
      }
    }
    if (next == size) return seen;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t limit = 1 + size_t{data[0]} * 64;  // 1 .. 16321 bytes
  const uint8_t seed = data[1];
  const std::vector<Seen> chunked = Run(data + 2, size - 2, limit, seed == 0 ? 1 : seed);
  const std::vector<Seen> whole = Run(data + 2, size - 2, limit, 0);
  if (chunked != whole) std::abort();
  return 0;
}
