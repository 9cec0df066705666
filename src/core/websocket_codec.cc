#include "core/websocket_codec.h"

#include <openssl/evp.h>

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

WsDecoder::Event WsDecoder::Feed(const uint8_t* data, size_t size, size_t& consumed) {
  consumed = 0;
  if (message_ready_) {
    message_ready_ = false;
    message_.clear();
  }
  for (;;) {
    wanted_ = 0;
    if (size - consumed < 2) return Event::kNeedMore;
    const uint8_t* p = data + consumed;
    const size_t avail = size - consumed;
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
    if (rsv != 0 || !masked) return Event::kProtocolError;
    header += 4;
    const bool control = (static_cast<uint8_t>(opcode) & 0x08) != 0;
    if (control) {
      if (!fin || len > 125) return Event::kProtocolError;
      if (opcode != WsOpcode::kClose && opcode != WsOpcode::kPing && opcode != WsOpcode::kPong) {
        return Event::kProtocolError;
      }
    } else {
      if (opcode == WsOpcode::kContinuation) {
        if (!in_message_) return Event::kProtocolError;
      } else if (opcode == WsOpcode::kText || opcode == WsOpcode::kBinary) {
        if (in_message_) return Event::kProtocolError;
      } else {
        return Event::kProtocolError;
      }
      if (len > max_message_bytes_ || message_.size() + len > max_message_bytes_) {
        return Event::kTooBig;
      }
    }
    if (avail < header + len) {
      wanted_ = header + len;
      return Event::kNeedMore;
    }
    const uint8_t* mask = p + header - 4;
    const uint8_t* payload = p + header;
    consumed += header + len;
    if (control) {
      control_.resize(len);
      for (size_t i = 0; i < len; ++i) control_[i] = static_cast<char>(payload[i] ^ mask[i & 3]);
      if (opcode == WsOpcode::kPing) return Event::kPing;
      if (opcode == WsOpcode::kPong) return Event::kPong;
      if (len == 1) return Event::kProtocolError;
      close_code_ = len >= 2 ? static_cast<uint16_t>((static_cast<uint8_t>(control_[0]) << 8) |
                                                     static_cast<uint8_t>(control_[1]))
                             : 1005;
      return Event::kClose;
    }
    if (opcode != WsOpcode::kContinuation) {
      message_opcode_ = opcode;
      in_message_ = true;
    }
    size_t old = message_.size();
    message_.resize(old + len);
    char* out = message_.data() + old;
    for (size_t i = 0; i < len; ++i) out[i] = static_cast<char>(payload[i] ^ mask[i & 3]);
    if (fin) {
      in_message_ = false;
      message_ready_ = true;
      return Event::kMessage;
    }
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
