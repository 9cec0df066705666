#include "auth/api_keys.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <fstream>
#include <iterator>

#include "auth/channel_pattern.h"
#include "auth/text.h"
#include "core/channel.h"

namespace bridge::auth {
namespace {

constexpr std::size_t kMaxFileBytes = 4 << 20;

std::array<unsigned char, 32> Digest(std::string_view key) {
  std::array<unsigned char, 32> out{};
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), out.data());
  return out;
}

bool NameValid(std::string_view name) {
  if (name.empty() || name.size() > core::kMaxChannelBytes) return false;
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == ':' || c == '@' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool KeyValid(std::string_view key) {
  if (key.size() < kMinApiKeyBytes || key.size() > kMaxApiKeyBytes) return false;
  for (const char c : key) {
    if (c <= ' ' || c > '~') return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<ApiKeys> ApiKeys::LoadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(internal::Cat("cannot read API keys file ", path));
  std::string contents(kMaxFileBytes + 1, '\0');
  in.read(contents.data(), std::streamsize(contents.size()));
  contents.resize(std::size_t(in.gcount()));
  if (contents.size() > kMaxFileBytes) {
    return absl::InvalidArgumentError(internal::Cat("API keys file ", path, " is over 4 MiB"));
  }
  return Parse(contents, path);
}

absl::StatusOr<ApiKeys> ApiKeys::Parse(std::string_view contents, std::string_view source) {
  ApiKeys keys;
  int line_number = 0;
  for (std::string_view line : internal::Split(contents, "\n", false)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    auto fail = [&](std::string_view why) {
      return absl::InvalidArgumentError(internal::Cat(source, ":", line_number, ": ", why));
    };
    std::vector<std::string_view> fields = internal::Split(line, " \t", true);
    if (fields.empty() || fields[0].front() == '#') continue;
    if (fields.size() != 3) return fail("expected \"<key> <name> <pattern>[,<pattern>...]\"");
    if (!KeyValid(fields[0])) {
      return fail(
          internal::Cat("key must be ", kMinApiKeyBytes, "-", kMaxApiKeyBytes, " printable bytes"));
    }
    if (!NameValid(fields[1])) return fail("name must be 1-200 bytes of [A-Za-z0-9_.:@-]");
    Entry entry{Digest(fields[0]), std::string(fields[1]), {}};
    for (std::string_view pattern : internal::Split(fields[2], ",", false)) {
      if (!PatternValid(pattern)) {
        return fail(internal::Cat("invalid channel pattern '", pattern, "'"));
      }
      entry.patterns.emplace_back(pattern);
    }
    for (const Entry& other : keys.entries_) {
      if (other.digest == entry.digest) return fail("duplicate key");
    }
    keys.entries_.push_back(std::move(entry));
  }
  return keys;
}

std::optional<Principal> ApiKeys::Lookup(std::string_view key) const {
  const std::array<unsigned char, 32> digest = Digest(key);
  // Visit every entry whatever matches, so timing says nothing about which entry or prefix.
  const Entry* found = nullptr;
  for (const Entry& entry : entries_) {
    const bool same = CRYPTO_memcmp(entry.digest.data(), digest.data(), digest.size()) == 0;
    if (same) found = &entry;
  }
  if (found == nullptr) return std::nullopt;
  return Principal{found->name, found->patterns, found->patterns, std::nullopt};
}

}  // namespace bridge::auth
