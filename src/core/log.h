// Logging: the process's spdlog logger in text or JSON lines, structured fields, and a rate
// limiter for warnings that can repeat.
//
// Setup() installs the default logger once at start-up (main); everything else may be called
// from any thread. Code logs through spdlog as usual; lines that carry fields use log::Write:
//   text: `2026-12-02T04:00:00.123 info connection closed conn=c-7 code=4008 reason="slow"`
//   JSON: `{"time":"2026-12-02T04:00:00.123Z","level":"info","message":"connection closed",
//           "conn":"c-7","code":4008,"reason":"slow"}`
// In JSON every line is one object (plain spdlog calls too: time, level, message), strings are
// escaped and invalid UTF-8 is replaced, so a client string cannot break the stream.
#ifndef BRIDGE_CORE_LOG_H_
#define BRIDGE_CORE_LOG_H_

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>

namespace bridge::core::log {

enum class Format { kText, kJson };
// "text" or "json"; nullopt otherwise.
std::optional<Format> ParseFormat(std::string_view s);
// Replaces the default logger with one writing to stderr in `format` at `level`.
void Setup(Format format, spdlog::level::level_enum level);
Format CurrentFormat();

// One structured field: a key (a fixed identifier) and a string, integer or boolean value.
class Field {
 public:
  Field(std::string_view key, std::string_view v) : key_(key), kind_(kString), str_(v) {}
  Field(std::string_view key, const char* v) : Field(key, std::string_view(v)) {}
  Field(std::string_view key, const std::string& v) : Field(key, std::string_view(v)) {}
  Field(std::string_view key, bool v) : key_(key), kind_(kBool), int_(v ? 1 : 0) {}
  template <typename T>
  requires(std::is_integral_v<T> && !std::is_same_v<T, bool>) Field(std::string_view key, T v)
      : key_(key),
        kind_(std::is_signed_v<T> ? kInt : kUint),
        int_(static_cast<int64_t>(v)),
        uint_(static_cast<uint64_t>(v)) {}

  // ` key=value` (strings quoted when they hold spaces, quotes or are empty).
  void AppendText(std::string& out) const;
  // `,"key":value`.
  void AppendJson(std::string& out) const;

 private:
  enum Kind { kString, kInt, kUint, kBool };
  std::string_view key_;
  Kind kind_;
  std::string_view str_;
  int64_t int_ = 0;
  uint64_t uint_ = 0;
};

// Writes `message` with `fields` at `level` (nothing is built when the level is off).
void Write(spdlog::level::level_enum level, std::string_view message,
           std::initializer_list<Field> fields);

// `s` as a JSON string with its quotes; invalid UTF-8 becomes U+FFFD.
void AppendJsonString(std::string& out, std::string_view s);

// At most `burst` lines per key per `interval`; the rest are counted, and the first line let
// through after the interval says how many were held back. Keys are the caller's constants
// (a fixed, small set: never a client string), so the table stays small. Any thread.
class RateLimiter {
 public:
  RateLimiter(uint32_t burst, std::chrono::steady_clock::duration interval)
      : burst_(burst), interval_(interval) {}

  struct Decision {
    bool write = false;
    uint64_t suppressed = 0;  // held back before this line (write is then true)
  };
  Decision Allow(std::string_view key, std::chrono::steady_clock::time_point now);

 private:
  struct Window {
    std::chrono::steady_clock::time_point start;
    uint32_t written = 0;
    uint64_t suppressed = 0;
  };
  const uint32_t burst_;
  const std::chrono::steady_clock::duration interval_;
  std::mutex mu_;
  std::unordered_map<std::string, Window> windows_;
};

// The process's limiter for repeated warnings: 5 per key per 10 s.
RateLimiter& Warnings();

// Write() through Warnings(): a suppressed line is dropped; the first line after suppression is
// preceded by `suppressed K similar lines (key)`.
void WriteLimited(spdlog::level::level_enum level, std::string_view key, std::string_view message,
                  std::initializer_list<Field> fields);

}  // namespace bridge::core::log

#endif  // BRIDGE_CORE_LOG_H_
