// A one-line JSON object writer for the run report: keys in insertion order, integers as
// integers, other numbers with at most 3 decimals (no exponents), strings escaped.
#pragma once

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace bench {

class JsonLine {
 public:
  template <typename T>
  JsonLine& Add(std::string_view key, T value) {
    Key(key);
    if constexpr (std::is_same_v<T, bool>) {
      out_ += value ? "true" : "false";
    } else if constexpr (std::is_integral_v<T>) {
      out_ += std::to_string(value);
    } else if constexpr (std::is_floating_point_v<T>) {
      out_ += Number(static_cast<double>(value));
    } else {
      String(std::string_view(value));
    }
    return *this;
  }

  JsonLine& AddStrings(std::string_view key, const std::vector<std::string>& values) {
    Key(key);
    out_ += '[';
    for (size_t i = 0; i < values.size(); ++i) {
      if (i) out_ += ',';
      String(values[i]);
    }
    out_ += ']';
    return *this;
  }

  JsonLine& AddCounts(std::string_view key, const std::map<std::string, uint64_t>& counts) {
    Key(key);
    out_ += '{';
    bool first = true;
    for (const auto& [k, v] : counts) {
      if (!first) out_ += ',';
      first = false;
      String(k);
      out_ += ':' + std::to_string(v);
    }
    out_ += '}';
    return *this;
  }

  std::string str() const { return "{" + out_ + "}"; }

  static std::string Number(double v) {
    if (!std::isfinite(v)) return "null";
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.3f", v);
    std::string s(buf);
    while (!s.empty() && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
    if (s == "-0") s = "0";
    return s;
  }

 private:
  void Key(std::string_view key) {
    if (!out_.empty()) out_ += ',';
    String(key);
    out_ += ':';
  }

  void String(std::string_view s) {
    out_ += '"';
    for (char c : s) {
      if (c == '"' || c == '\\') {
        out_ += '\\';
        out_ += c;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof(buf), "\\u%04x", c);
        out_ += buf;
      } else {
        out_ += c;
      }
    }
    out_ += '"';
  }

  std::string out_;
};

}  // namespace bench
