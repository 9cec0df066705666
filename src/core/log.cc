#include "core/log.h"

#include <spdlog/details/log_msg.h>
#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <atomic>
#include <ctime>

#include "core/strings.h"

namespace bridge::core::log {
namespace {

std::atomic<Format> g_format{Format::kText};
// The fields of the line being written on this thread: the JSON formatter runs synchronously
// inside the spdlog call that Write makes, on the same thread.
thread_local const std::initializer_list<Field>* t_fields = nullptr;

// The length of the valid UTF-8 sequence at s[i], or 0.
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  size_t n = 0;
  uint32_t cp = 0;
  if (b < 0x80) return 1;
  if (b >= 0xc2 && b <= 0xdf) {
    n = 2;
    cp = b & 0x1f;
  } else if (b >= 0xe0 && b <= 0xef) {
    n = 3;
    cp = b & 0x0f;
  } else if (b >= 0xf0 && b <= 0xf4) {
    n = 4;
    cp = b & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (c & 0x3f);
  }
  if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
      (n == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
    return 0;
  }
  return n;
}

void AppendTime(std::string& out, std::chrono::system_clock::time_point t) {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  int n = std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                        static_cast<int>(ms % 1000));
  out.append(buf, n > 0 ? static_cast<size_t>(n) : 0);
}

class JsonFormatter : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string line = R"({"time":")";
    AppendTime(line, msg.time);
    line += R"(","level":")";
    const auto level = spdlog::level::to_string_view(msg.level);
    line.append(level.data(), level.size());
    line += R"(","message":)";
    AppendJsonString(line, std::string_view(msg.payload.data(), msg.payload.size()));
    if (t_fields != nullptr) {
      for (const Field& f : *t_fields) f.AppendJson(line);
    }
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

bool NeedsQuotes(std::string_view s) {
  if (s.empty()) return true;
  for (char c : s) {
    if (c == ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) < 0x20) return true;
  }
  return false;
}

}  // namespace

std::optional<Format> ParseFormat(std::string_view s) {
  if (s == "text") return Format::kText;
  if (s == "json") return Format::kJson;
  return std::nullopt;
}

Format CurrentFormat() { return g_format.load(std::memory_order_relaxed); }

void Setup(Format format, spdlog::level::level_enum level) {
  g_format.store(format, std::memory_order_relaxed);
  std::shared_ptr<spdlog::logger> logger;
  if (format == Format::kJson) {
    // No colours: a terminal's escape codes would break the JSON.
    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    sink->set_formatter(std::make_unique<JsonFormatter>());
    logger = std::make_shared<spdlog::logger>("bridge", std::move(sink));
  } else {
    logger = std::make_shared<spdlog::logger>(
        "bridge", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
  logger->set_level(level);
  spdlog::set_default_logger(std::move(logger));
}

void AppendJsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else {
      size_t n = Utf8SequenceLength(s, i);
      if (n == 0) {
        out += "\xef\xbf\xbd";  // U+FFFD
        ++i;
        continue;
      }
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    ++i;
  }
  out.push_back('"');
}

void Field::AppendText(std::string& out) const {
  out.push_back(' ');
  out.append(key_);
  out.push_back('=');
  switch (kind_) {
    case kString:
      if (NeedsQuotes(str_)) {
        AppendJsonString(out, str_);
      } else {
        out.append(str_);
      }
      return;
    case kInt:
      internal::AppendPiece(out, int_);
      return;
    case kUint:
      internal::AppendPiece(out, uint_);
      return;
    case kBool:
      out += int_ != 0 ? "true" : "false";
      return;
  }
}

void Field::AppendJson(std::string& out) const {
  out.push_back(',');
  AppendJsonString(out, key_);
  out.push_back(':');
  switch (kind_) {
    case kString:
      AppendJsonString(out, str_);
      return;
    case kInt:
      internal::AppendPiece(out, int_);
      return;
    case kUint:
      internal::AppendPiece(out, uint_);
      return;
    case kBool:
      out += int_ != 0 ? "true" : "false";
      return;
  }
}

void Write(spdlog::level::level_enum level, std::string_view message,
           std::initializer_list<Field> fields) {
  spdlog::logger* logger = spdlog::default_logger_raw();
  if (logger == nullptr || !logger->should_log(level)) return;
  if (CurrentFormat() == Format::kJson) {
    t_fields = &fields;
    logger->log(level, "{}", message);
    t_fields = nullptr;
    return;
  }
  std::string line(message);
  for (const Field& f : fields) f.AppendText(line);
  logger->log(level, "{}", line);
}

RateLimiter::Decision RateLimiter::Allow(std::string_view key,
                                         std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = windows_.find(std::string(key));
  if (it == windows_.end()) it = windows_.emplace(std::string(key), Window{now, 0, 0}).first;
  Window& w = it->second;
  Decision d;
  if (now - w.start >= interval_) {
    d.suppressed = w.suppressed;
    w = Window{now, 0, 0};
  }
  if (w.written < burst_) {
    ++w.written;
    d.write = true;
    return d;
  }
  ++w.suppressed;
  return Decision{};
}

RateLimiter& Warnings() {
  static RateLimiter* limiter = new RateLimiter(5, std::chrono::seconds(10));
  return *limiter;
}

void WriteLimited(spdlog::level::level_enum level, std::string_view key, std::string_view message,
                  std::initializer_list<Field> fields) {
  spdlog::logger* logger = spdlog::default_logger_raw();
  if (logger == nullptr || !logger->should_log(level)) return;
  RateLimiter::Decision d = Warnings().Allow(key, std::chrono::steady_clock::now());
  if (!d.write) return;
  if (d.suppressed > 0) {
    Write(level, Cat("suppressed ", d.suppressed, " similar lines"),
          {{"key", key}, {"suppressed", d.suppressed}});
  }
  Write(level, message, fields);
}

}  // namespace bridge::core::log
