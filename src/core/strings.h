// Small string helpers over std::string_view (Debian's Abseil is not the std-string_view
// variant, so absl::StrCat/StrSplit do not take std::string_view). Pure; any thread.
#ifndef BRIDGE_CORE_STRINGS_H_
#define BRIDGE_CORE_STRINGS_H_

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace bridge::core {

namespace internal {
inline void AppendPiece(std::string& out, std::string_view s) { out.append(s); }
inline void AppendPiece(std::string& out, const char* s) { out.append(s); }
inline void AppendPiece(std::string& out, const std::string& s) { out.append(s); }
inline void AppendPiece(std::string& out, char c) { out.push_back(c); }
// Other string types (absl::string_view, Beast's string_view).
template <typename S>
requires(!std::is_integral_v<S> && requires(const S& s) {
  s.data();
  s.size();
}) void AppendPiece(std::string& out, const S& s) {
  out.append(s.data(), s.size());
}
template <typename T>
requires std::is_integral_v<T>
void AppendPiece(std::string& out, T v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, end);
}
}  // namespace internal

// Concatenates strings, string_views, chars and integers.
template <typename... Args>
std::string Cat(const Args&... args) {
  std::string out;
  (internal::AppendPiece(out, args), ...);
  return out;
}

// Splits on `sep`, dropping empty pieces.
std::vector<std::string_view> SplitNonEmpty(std::string_view s, char sep);

bool ConsumePrefix(std::string_view& s, std::string_view prefix);

// Parses a whole decimal unsigned number; false on anything else (sign, spaces, overflow).
bool ParseUint(std::string_view s, uint64_t& out);

}  // namespace bridge::core

#endif  // BRIDGE_CORE_STRINGS_H_
