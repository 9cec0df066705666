// Small string helpers on std::string_view. Debian's Abseil is not the std variant
// (absl::string_view != std::string_view), so absl::StrCat/StrSplit do not take our views.
// Internal to bridge_auth. Pure functions, any thread.
#ifndef BRIDGE_AUTH_TEXT_H_
#define BRIDGE_AUTH_TEXT_H_

#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace bridge::auth::internal {

inline void AppendPiece(std::string& out, std::string_view piece) { out.append(piece); }

template <typename T, typename = std::enable_if_t<std::is_integral_v<T>>>
void AppendPiece(std::string& out, T value) {
  out.append(std::to_string(value));
}

// Concatenates strings, string views, C strings and integers.
template <typename... Pieces>
std::string Cat(const Pieces&... pieces) {
  std::string out;
  (AppendPiece(out, pieces), ...);
  return out;
}

// Splits `text` at every character of `separators`. Empty pieces are dropped when `skip_empty`.
inline std::vector<std::string_view> Split(std::string_view text, std::string_view separators,
                                           bool skip_empty) {
  std::vector<std::string_view> out;
  while (true) {
    const std::size_t at = text.find_first_of(separators);
    const std::string_view piece = text.substr(0, at);
    if (!piece.empty() || !skip_empty) out.push_back(piece);
    if (at == std::string_view::npos) break;
    text.remove_prefix(at + 1);
  }
  return out;
}

}  // namespace bridge::auth::internal

#endif  // BRIDGE_AUTH_TEXT_H_
