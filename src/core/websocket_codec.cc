#include "core/websocket_codec.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>

namespace bridge::core {

WsHeader BuildWsHeader(WsOpcode opcode, size_t payload_size) {
  WsHeader h;
  h.bytes[0] = 0x80 | static_cast<uint8_t>(opcode);
  if (payload_size < 126) {
    h.bytes[1] = static_cast<uint8_t>(payload_size);
    h.size = 2;
  } else if (payload_size <= 0xFFFF) {
    h.bytes[1] = 126;
    h.bytes[2] = static_cast<uint8_t>(payload_size >> 8);
    h.bytes[3] = static_cast<uint8_t>(payload_size);
    h.size = 4;
  } else {
    h.bytes[1] = 127;
    uint64_t n = payload_size;
    for (int i = 9; i >= 2; --i) {
      h.bytes[i] = static_cast<uint8_t>(n);
      n >>= 8;
    }
    h.size = 10;
  }
  return h;
}

std::string BuildWsControlFrame(WsOpcode opcode, std::string_view payload) {
  if (payload.size() > 125) payload = payload.substr(0, 125);
  WsHeader h = BuildWsHeader(opcode, payload.size());
  std::string out(reinterpret_cast<const char*>(h.bytes.data()), h.size);
  out.append(payload);
  return out;
}

std::string BuildWsCloseFrame(uint16_t code, std::string_view reason) {
  std::string payload;
  payload.push_back(static_cast<char>(code >> 8));
  payload.push_back(static_cast<char>(code & 0xFF));
  payload.append(reason.substr(0, 123));
  return BuildWsControlFrame(WsOpcode::kClose, payload);
}

namespace {

constexpr uint64_t kHighBits = 0x8080808080808080ull;

// XORs `size` bytes of `in` with `mask` starting at mask byte `phase`, eight bytes at a time.
void Unmask(const uint8_t* in, size_t size, const std::array<uint8_t, 4>& mask, size_t phase,
            char* out) {
  uint8_t m[8];
  for (size_t i = 0; i < 8; ++i) m[i] = mask[(phase + i) & 3];
  uint64_t m64;
  std::memcpy(&m64, m, 8);
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t v;
    std::memcpy(&v, in + i, 8);
    v ^= m64;
    std::memcpy(out + i, &v, 8);
  }
  for (; i < size; ++i) out[i] = static_cast<char>(in[i] ^ m[i & 7]);
}

}  // namespace

bool IsValidPeerCloseCode(uint16_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

bool Utf8Validator::Feed(const char* data, size_t size) {
  if (failed_) return false;
  const auto* p = reinterpret_cast<const uint8_t*>(data);
  uint8_t need = need_, lo = lo_, hi = hi_;
  size_t i = 0;
  while (i < size) {
    if (need == 0) {
      while (i + 8 <= size) {
        uint64_t v;
        std::memcpy(&v, p + i, 8);
        if (v & kHighBits) break;
        i += 8;
      }
      if (i == size) break;
      const uint8_t b = p[i++];
      if (b < 0x80) continue;
      // The lead byte decides the length and the range of the second byte, which excludes
      // overlong forms (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and > U+10FFFF (F4 90..).
      lo = 0x80;
      hi = 0xBF;
      if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
      } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
      } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
      } else {
        failed_ = true;  // a continuation byte, C0/C1 (overlong) or F5..FF
        return false;
      }
      continue;
    }
    const uint8_t b = p[i++];
    if (b < lo || b > hi) {
      failed_ = true;
      return false;
    }
    --need;
    lo = 0x80;
    hi = 0xBF;
  }
  need_ = need;
  lo_ = lo;
  hi_ = hi;
  return true;
}

bool Utf8Validator::IsComplete(std::string_view text) {
  Utf8Validator v;
  return v.Feed(text.data(), text.size()) && v.complete();
}

WsDecoder::Event WsDecoder::Feed(const uint8_t* data, size_t size, size_t& consumed) {
  consumed = 0;
  wanted_ = 0;
  if (failed_ != Event::kNeedMore) return failed_;
  if (message_ready_) {
    message_ready_ = false;
    message_.clear();
    // A connection keeps its peak message size only while it sends such messages.
    if (message_.capacity() > 4096) message_.shrink_to_fit();
  }
  for (;;) {
    wanted_ = 0;
    const size_t avail = size - consumed;
    if (in_frame_) {
      // A data frame's payload: take what has arrived. The message grows with what arrives,
      // never to a length a header merely announced.
      const size_t n = static_cast<size_t>(std::min<uint64_t>(frame_left_, avail));
      if (n > 0) {
        const size_t old = message_.size();
        message_.resize(old + n);
        char* out = message_.data() + old;
        Unmask(data + consumed, n, mask_, mask_phase_, out);
        mask_phase_ = (mask_phase_ + n) & 3;
        consumed += n;
        frame_left_ -= n;
        if (message_opcode_ == WsOpcode::kText && !utf8_.Feed(out, n)) {
          return Fail(Event::kInvalidUtf8);
        }
      }
      if (frame_left_ > 0) {
        wanted_ = static_cast<size_t>(frame_left_);
        return Event::kNeedMore;
      }
      in_frame_ = false;
      if (!frame_fin_) continue;
      in_message_ = false;
      if (message_opcode_ == WsOpcode::kText && !utf8_.complete()) {
        return Fail(Event::kInvalidUtf8);  // ends inside a code point
      }
      message_ready_ = true;
      return Event::kMessage;
    }
    if (avail < 2) return Event::kNeedMore;
    const uint8_t* p = data + consumed;
    const bool fin = (p[0] & 0x80) != 0;
    const uint8_t rsv = p[0] & 0x70;
    const auto opcode = static_cast<WsOpcode>(p[0] & 0x0F);
    const bool masked = (p[1] & 0x80) != 0;
    uint64_t len = p[1] & 0x7F;
    size_t header = 2;
    if (len == 126) {
      if (avail < 4) return Event::kNeedMore;
      len = (uint64_t{p[2]} << 8) | p[3];
      header = 4;
    } else if (len == 127) {
      if (avail < 10) return Event::kNeedMore;
      len = 0;
      for (int i = 2; i < 10; ++i) len = (len << 8) | p[i];
      header = 10;
    }
    if (rsv != 0 || !masked) return Fail(Event::kProtocolError);
    header += 4;
    const bool control = (static_cast<uint8_t>(opcode) & 0x08) != 0;
    if (control) {
      if (!fin || len > 125) return Fail(Event::kProtocolError);
      if (opcode != WsOpcode::kClose && opcode != WsOpcode::kPing && opcode != WsOpcode::kPong) {
        return Fail(Event::kProtocolError);
      }
    } else {
      if (opcode == WsOpcode::kContinuation) {
        if (!in_message_) return Fail(Event::kProtocolError);
      } else if (opcode == WsOpcode::kText || opcode == WsOpcode::kBinary) {
        if (in_message_) return Fail(Event::kProtocolError);
      } else {
        return Fail(Event::kProtocolError);
      }
      if (len > max_message_bytes_ || message_.size() + len > max_message_bytes_) {
        return Fail(Event::kTooBig);
      }
    }
    if (avail < header) {
      wanted_ = header;
      return Event::kNeedMore;
    }
    const uint8_t* mask = p + header - 4;
    if (!control) {
      consumed += header;
      if (opcode != WsOpcode::kContinuation) {
        message_opcode_ = opcode;
        in_message_ = true;
        utf8_.Reset();
      }
      std::memcpy(mask_.data(), mask, 4);
      mask_phase_ = 0;
      frame_left_ = len;
      frame_fin_ = fin;
      in_frame_ = true;
      continue;
    }
    if (avail < header + len) {
      wanted_ = header + len;
      return Event::kNeedMore;
    }
    const uint8_t* payload = p + header;
    consumed += header + len;
    control_.resize(len);
    for (size_t i = 0; i < len; ++i) control_[i] = static_cast<char>(payload[i] ^ mask[i & 3]);
    if (opcode == WsOpcode::kPing) return Event::kPing;
    if (opcode == WsOpcode::kPong) return Event::kPong;
    if (len == 0) {
      close_code_ = 1005;
      return Event::kClose;
    }
    if (len == 1) return Fail(Event::kProtocolError);
    close_code_ = static_cast<uint16_t>((static_cast<uint8_t>(control_[0]) << 8) |
                                        static_cast<uint8_t>(control_[1]));
    if (!IsValidPeerCloseCode(close_code_)) return Fail(Event::kProtocolError);
    if (!Utf8Validator::IsComplete(close_reason())) return Fail(Event::kInvalidUtf8);
    return Event::kClose;
  }
}

std::optional<std::string> WebSocketAccept(std::string_view key) {
  // 16 bytes in base64: 22 significant characters and "==".
  if (key.size() != 24 || key.substr(22) != "==") return std::nullopt;
  for (char c : key.substr(0, 22)) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/';
    if (!ok) return std::nullopt;
  }
  std::string input = std::string(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  if (EVP_Digest(input.data(), input.size(), digest, &digest_size, EVP_sha1(), nullptr) != 1) {
    return std::nullopt;
  }
  unsigned char encoded[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
  int n = EVP_EncodeBlock(encoded, digest, static_cast<int>(digest_size));
  return std::string(reinterpret_cast<const char*>(encoded), static_cast<size_t>(n));
}

}  // namespace bridge::core
