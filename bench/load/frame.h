// The benchmark event and how bridge-load finds its fields in a received frame.
//
// Every benchmark event carries `data.t` (nanoseconds since the load tool started, on its steady
// clock) and `data.seq` (the event's 0-based number in the run). The bridge frames a
// `Custom{type:"bench", data:{t, seq[, pad]}}`; nchan and the built-in sink relay the body the
// tool posts, which is built here in the same shape. Parsing looks for `"seq":` and `"t":` only:
// the receive path must cost far less than the server's send path.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace bench {

// A frame with `"seq":` and `"t":` numbers; seq is -1 when the frame is not a benchmark event
// (control frames such as `subscribed` or `ping`).
struct ParsedFrame {
  int64_t seq = -1;
  double t_ns = 0;
};

inline bool ParseNumberAfter(std::string_view frame, std::string_view key, double* out) {
  size_t pos = frame.find(key);
  if (pos == std::string_view::npos) return false;
  pos += key.size();
  while (pos < frame.size() && (frame[pos] == ' ' || frame[pos] == '"')) ++pos;
  if (pos >= frame.size()) return false;
  // strtod needs a terminator; the number is short, copy it.
  char buf[40];
  size_t n = 0;
  while (pos < frame.size() && n < sizeof(buf) - 1) {
    char c = frame[pos];
    if ((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '-' || c == '+') {
      buf[n++] = c;
      ++pos;
    } else {
      break;
    }
  }
  if (n == 0) return false;
  buf[n] = '\0';
  *out = std::strtod(buf, nullptr);
  return true;
}

inline ParsedFrame ParseBenchFrame(std::string_view frame) {
  ParsedFrame parsed;
  double seq = 0;
  double t = 0;
  if (!ParseNumberAfter(frame, "\"seq\":", &seq)) return parsed;
  if (!ParseNumberAfter(frame, "\"t\":", &t)) return parsed;
  parsed.seq = static_cast<int64_t>(seq);
  parsed.t_ns = t;
  return parsed;
}

// The JSON body posted to nchan and broadcast by the sink: the same shape and about the same size
// as the frame the bridge sends for the Custom event.
inline std::string BuildBenchBody(std::string_view channel, uint64_t offset, uint64_t seq,
                                  uint64_t t_ns, std::string_view pad) {
  std::string body;
  body.reserve(160 + channel.size() + pad.size());
  body += R"({"type":"bench","channel":")";
  body += channel;
  body += R"(","offset":)";
  body += std::to_string(offset);
  body += R"(,"timestamp":"2026-01-01T00:00:00.000Z","data":{)";
  if (!pad.empty()) {
    body += R"("pad":")";
    body += pad;
    body += R"(",)";
  }
  body += R"("seq":)";
  body += std::to_string(seq);
  body += R"(,"t":)";
  body += std::to_string(t_ns);
  body += "}}";
  return body;
}

}  // namespace bench
