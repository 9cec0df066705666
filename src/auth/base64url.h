// Base64url without padding (RFC 7515 section 2), the encoding of every JWT part and JWK field.
// Internal to bridge_auth (used by its tests and fuzz targets too). Pure functions, any thread.
#ifndef BRIDGE_AUTH_BASE64URL_H_
#define BRIDGE_AUTH_BASE64URL_H_

#include <optional>
#include <string>
#include <string_view>

namespace bridge::auth::internal {

// Encodes `bytes` with the URL-safe alphabet and no '=' padding.
std::string Base64UrlEncode(std::string_view bytes);

// Strict decoding: only [A-Za-z0-9_-], no padding, no whitespace, and the unused low bits of the
// last character must be zero, so that every byte string has exactly one accepted encoding.
// Returns nullopt for anything else. An empty input decodes to an empty string.
std::optional<std::string> Base64UrlDecode(std::string_view text);

}  // namespace bridge::auth::internal

#endif  // BRIDGE_AUTH_BASE64URL_H_
