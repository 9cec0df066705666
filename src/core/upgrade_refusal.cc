#include "core/upgrade_refusal.h"

#include <algorithm>
#include <cctype>

#include "core/websocket_codec.h"

namespace bridge::core {
namespace {

char Lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (Lower(s[i]) != prefix[i]) return false;
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Whether the comma-separated `list` has `token` (lower case), ignoring case.
bool HasToken(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = Trim(list.substr(0, comma));
    if (item.size() == token.size() && StartsWithNoCase(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

UpgradeSniffer::Result UpgradeSniffer::Feed(std::string_view bytes, size_t& consumed) {
  consumed = 0;
  while (result_ == Result::kNeedMore && consumed < bytes.size()) {
    char c = bytes[consumed++];
    if (++head_size_ > max_head_bytes_) {
      result_ = Result::kNotUpgrade;
      break;
    }
    if (c == '\r') continue;  // lines end with CRLF (a bare LF is tolerated, as parsers do)
    if (c != '\n') {
      if (line_size_ < kLineBytes) line_[line_size_] = c;
      tail_[line_size_ % kTailBytes] = c;
      ++line_size_;
      continue;
    }
    EndLine();
  }
  return result_;
}

void UpgradeSniffer::EndLine() {
  std::string_view line(line_.data(), std::min(line_size_, kLineBytes));
  const size_t size = line_size_;
  line_size_ = 0;
  if (first_line_) {
    first_line_ = false;
    // "GET /ws HTTP/1.1", "GET /ws/circles/a?token=… HTTP/1.1": the path and the version.
    std::string tail;
    for (size_t i = 0; i < kTailBytes && i < size; ++i) {
      tail += tail_[(size - std::min(size, kTailBytes) + i) % kTailBytes];
    }
    bool ws_path = line.substr(0, 8) == "GET /ws/" || line.substr(0, 8) == "GET /ws?" ||
                   line.substr(0, 8) == "GET /ws ";
    get_ws_ = ws_path && tail == " HTTP/1.1";
    if (!get_ws_) result_ = Result::kNotUpgrade;  // no need to read further
    return;
  }
  if (size == 0) {  // the empty line: the head ended
    std::optional<std::string> accept;
    if (get_ws_ && upgrade_ && connection_ && version_ && keys_ == 1) {
      accept = WebSocketAccept(std::string_view(key_.data(), key_.size()));
    }
    if (accept) {
      accept_ = std::move(*accept);
      result_ = Result::kUpgrade;
    } else {
      result_ = Result::kNotUpgrade;
    }
    return;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return;
  std::string_view name = line.substr(0, colon);
  std::string_view value = Trim(line.substr(colon + 1));
  auto is = [&](std::string_view n) {
    return name.size() == n.size() && StartsWithNoCase(name, n);
  };
  if (is("upgrade")) {
    upgrade_ = HasToken(value, "websocket");
  } else if (is("connection")) {
    connection_ = HasToken(value, "upgrade");
  } else if (is("sec-websocket-version")) {
    version_ = value == "13";
  } else if (is("sec-websocket-key")) {
    ++keys_;
    // A line cut at kLineBytes cannot hold a valid key: the accept check then fails.
    if (value.size() == key_.size() && size <= kLineBytes) {
      std::copy(value.begin(), value.end(), key_.begin());
    } else {
      keys_ = 2;
    }
  }
}

bool CloseWaiter::Feed(const uint8_t* data, size_t size) {
  size_t at = 0;
  while (!done_ && at < size) {
    if (payload_left_ > 0) {
      uint64_t skip = std::min<uint64_t>(payload_left_, size - at);
      payload_left_ -= skip;
      at += static_cast<size_t>(skip);
      continue;
    }
    header_[header_size_++] = data[at++];
    if (header_size_ < 2) continue;
    const uint8_t opcode = header_[0] & 0x0F;
    if (opcode == static_cast<uint8_t>(WsOpcode::kClose)) {
      done_ = true;
      break;
    }
    const uint8_t len7 = header_[1] & 0x7F;
    const size_t mask = (header_[1] & 0x80) ? 4 : 0;
    const size_t ext = len7 == 126 ? 2 : (len7 == 127 ? 8 : 0);
    if (header_size_ < 2 + ext + mask) continue;
    uint64_t len = len7;
    if (ext != 0) {
      len = 0;
      for (size_t i = 0; i < ext; ++i) len = (len << 8) | header_[2 + i];
    }
    payload_left_ = len;
    header_size_ = 0;
  }
  return done_;
}

}  // namespace bridge::core
