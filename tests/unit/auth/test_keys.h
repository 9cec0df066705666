// Test-only key material and token builders. Keys are generated at test time, never committed.
#ifndef BRIDGE_TESTS_UNIT_AUTH_TEST_KEYS_H_
#define BRIDGE_TESTS_UNIT_AUTH_TEST_KEYS_H_

#include <filesystem>
#include <string>
#include <string_view>

#include "auth/public_key.h"

namespace bridge::auth::testing {

struct KeyPair {
  internal::PkeyPtr pkey;  // private key
  std::string public_pem;
  std::string private_pem;
};

KeyPair GenerateRsa(unsigned bits = 2048);
KeyPair GenerateEc(const char* curve = "P-256");

// One JWK (a JSON object) for the public half of `key`.
std::string JwkFor(const KeyPair& key, std::string_view kid);

// header.payload.signature with the given JSON texts, signed by HS256 with `secret`.
std::string SignHs256(std::string_view header_json, std::string_view payload_json,
                      std::string_view secret);
// Same, RS256 or ES256 depending on the key type (ES256 as raw R||S).
std::string SignWithKey(std::string_view header_json, std::string_view payload_json,
                        const KeyPair& key);
// header.payload. with an empty signature, as an `alg: none` token.
std::string Unsigned(std::string_view header_json, std::string_view payload_json);

// A fresh directory removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Writes `contents` to `name` inside the directory and returns its path.
  std::string Write(std::string_view name, std::string_view contents) const;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace bridge::auth::testing

#endif  // BRIDGE_TESTS_UNIT_AUTH_TEST_KEYS_H_
