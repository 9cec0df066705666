#include "auth/verifier.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "auth/base64url.h"
#include "auth/channel_pattern.h"
#include "auth/public_key.h"
#include "auth/text.h"
#include "core/utf8.h"

namespace bridge::auth {

using internal::Algorithm;
using Json = nlohmann::json;

struct TokenVerifier::Keys {
  std::string hs256_secret;
  std::vector<internal::PublicKey> public_keys;
  std::string issuer;
  std::string audience;
  double leeway_seconds = 0;
};

namespace {

constexpr std::size_t kMaxKeyFileBytes = 1 << 20;
// Past this `exp` (year 2255) a nanosecond time_point would overflow: treat as "far future".
constexpr double kMaxRepresentableSeconds = 9e9;

absl::Status Unauthenticated(std::string_view message) {
  return absl::UnauthenticatedError(std::string(message));
}

absl::StatusOr<std::string> ReadKeyFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(internal::Cat("cannot read key file ", path));
  std::string data(kMaxKeyFileBytes + 1, '\0');
  in.read(data.data(), std::streamsize(data.size()));
  data.resize(std::size_t(in.gcount()));
  if (data.size() > kMaxKeyFileBytes) {
    return absl::InvalidArgumentError(internal::Cat("key file ", path, " is over 1 MiB"));
  }
  return data;
}

// Parses one base64url JSON object of a token. nullopt when it is not one.
std::optional<Json> DecodeJsonPart(std::string_view part) {
  auto bytes = internal::Base64UrlDecode(part);
  if (!bytes) return std::nullopt;
  Json json = Json::parse(*bytes, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) return std::nullopt;
  return json;
}

// A NumericDate claim in seconds. nullopt when absent; an error when not a finite number.
absl::StatusOr<std::optional<double>> NumericDate(const Json& payload, const char* name) {
  auto it = payload.find(name);
  if (it == payload.end()) return std::optional<double>();
  if (!it->is_number()) return Unauthenticated("malformed token");
  const double value = it->get<double>();
  if (!std::isfinite(value)) return Unauthenticated("malformed token");
  return std::optional<double>(value);
}

// `channels` / `publish`: an array of patterns or one space-separated string. Absent: none.
absl::StatusOr<std::vector<std::string>> Grants(const Json& payload, const char* name) {
  std::vector<std::string> out;
  auto it = payload.find(name);
  if (it == payload.end() || it->is_null()) return out;
  if (it->is_string()) {
    for (std::string_view p : internal::Split(it->get_ref<const std::string&>(), " ", true)) {
      out.emplace_back(p);
    }
  } else if (it->is_array()) {
    for (const Json& p : *it) {
      if (!p.is_string()) return Unauthenticated("malformed token");
      out.push_back(p.get<std::string>());
    }
  } else {
    return Unauthenticated("malformed token");
  }
  for (const std::string& p : out) {
    if (!PatternValid(p)) return Unauthenticated("invalid channel pattern");
  }
  return out;
}

bool AudienceMatches(const Json& payload, const std::string& audience) {
  auto it = payload.find("aud");
  if (it == payload.end()) return false;
  if (it->is_string()) return it->get_ref<const std::string&>() == audience;
  if (!it->is_array()) return false;
  for (const Json& a : *it) {
    if (a.is_string() && a.get_ref<const std::string&>() == audience) return true;
  }
  return false;
}

}  // namespace

TokenVerifier::TokenVerifier(std::unique_ptr<Keys> keys) : keys_(std::move(keys)) {}
TokenVerifier::~TokenVerifier() = default;

std::shared_ptr<const TokenVerifier::Keys> TokenVerifier::keys() const {
  std::lock_guard lock(mu_);
  return keys_;
}

void TokenVerifier::Replace(const TokenVerifier& other) const {
  std::shared_ptr<const Keys> keys = other.keys();
  std::lock_guard lock(mu_);
  keys_ = std::move(keys);
}

std::size_t TokenVerifier::public_key_count() const { return keys()->public_keys.size(); }

absl::StatusOr<std::unique_ptr<TokenVerifier>> TokenVerifier::Create(const VerifierConfig& config) {
  auto keys = std::make_unique<Keys>();
  if (!config.hs256_secret.empty() && config.hs256_secret.size() < kMinHs256SecretBytes) {
    return absl::InvalidArgumentError(
        internal::Cat("HS256 secret is shorter than ", kMinHs256SecretBytes, " bytes"));
  }
  if (config.leeway.count() < 0) return absl::InvalidArgumentError("negative leeway");
  keys->hs256_secret = config.hs256_secret;
  keys->issuer = config.issuer;
  keys->audience = config.audience;
  keys->leeway_seconds = double(config.leeway.count());

  for (const std::string& path : config.public_key_pem_files) {
    auto pem = ReadKeyFile(path);
    if (!pem.ok()) return pem.status();
    const std::string kid = std::filesystem::path(path).stem().string();
    auto key = internal::ParsePemPublicKey(*pem, kid);
    if (!key.ok()) {
      return absl::InvalidArgumentError(
          internal::Cat(path, ": ", std::string(key.status().message())));
    }
    keys->public_keys.push_back(*std::move(key));
  }
  if (!config.jwks_file.empty()) {
    auto json = ReadKeyFile(config.jwks_file);
    if (!json.ok()) return json.status();
    auto jwks = internal::ParseJwks(*json);
    if (!jwks.ok()) {
      return absl::InvalidArgumentError(
          internal::Cat(config.jwks_file, ": ", std::string(jwks.status().message())));
    }
    for (auto& key : *jwks) keys->public_keys.push_back(std::move(key));
  }
  // A kid must name one key, or "only the key with that kid" would be ambiguous.
  for (std::size_t i = 0; i < keys->public_keys.size(); ++i) {
    for (std::size_t j = i + 1; j < keys->public_keys.size(); ++j) {
      const std::string& kid = keys->public_keys[i].kid;
      if (!kid.empty() && kid == keys->public_keys[j].kid) {
        return absl::InvalidArgumentError(internal::Cat("duplicate key id '", kid, "'"));
      }
    }
  }
  if (keys->hs256_secret.empty() && keys->public_keys.empty()) {
    return absl::InvalidArgumentError("no token verification key configured");
  }
  return std::unique_ptr<TokenVerifier>(new TokenVerifier(std::move(keys)));
}

absl::StatusOr<Principal> TokenVerifier::Verify(std::string_view token,
                                                std::chrono::system_clock::time_point now) const {
  if (token.size() > kMaxTokenBytes) return Unauthenticated("token too large");
  const std::shared_ptr<const Keys> key_set = keys();  // this call's keys, whatever a reload does
  const std::size_t dot1 = token.find('.');
  const std::size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos ||
      dot1 == 0 || dot2 == dot1 + 1) {
    return Unauthenticated("malformed token");
  }
  const std::string_view signing_input = token.substr(0, dot2);
  const std::string_view header_part = token.substr(0, dot1);
  const std::string_view payload_part = token.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string_view signature_part = token.substr(dot2 + 1);

  // Header: choose the algorithm and the candidate keys before trusting anything else.
  const std::optional<Json> header = DecodeJsonPart(header_part);
  if (!header) return Unauthenticated("malformed token");
  auto alg_it = header->find("alg");
  if (alg_it == header->end() || !alg_it->is_string()) return Unauthenticated("malformed token");
  // No extension is understood, so a critical one must be refused (RFC 7515 4.1.11).
  if (header->contains("crit")) return Unauthenticated("malformed token");
  const std::optional<Algorithm> alg =
      internal::ParseAlgorithm(alg_it->get_ref<const std::string&>());
  if (!alg) return Unauthenticated("algorithm not allowed");
  std::optional<std::string> kid;
  if (auto kid_it = header->find("kid"); kid_it != header->end()) {
    if (!kid_it->is_string()) return Unauthenticated("malformed token");
    kid = kid_it->get<std::string>();
  }

  const auto signature = internal::Base64UrlDecode(signature_part);
  if (!signature) return Unauthenticated("malformed token");

  if (*alg == Algorithm::kHs256) {
    // One secret, so a kid has nothing to select; the secret is the only HMAC key ever used,
    // never a public key's text (no HS/RS confusion).
    if (key_set->hs256_secret.empty()) return Unauthenticated("algorithm not allowed");
    if (!internal::VerifyHs256(key_set->hs256_secret, signing_input, *signature)) {
      return Unauthenticated("bad signature");
    }
  } else {
    bool any_for_alg = false;
    bool kid_found = false;
    bool verified = false;
    for (const internal::PublicKey& key : key_set->public_keys) {
      if (kid && key.kid != *kid) continue;
      kid_found = true;
      if (key.alg != *alg) continue;
      any_for_alg = true;
      if (internal::VerifyWithKey(key, signing_input, *signature)) {
        verified = true;
        break;
      }
    }
    if (kid && !kid_found) return Unauthenticated("unknown key id");
    if (!any_for_alg) return Unauthenticated("algorithm not allowed");
    if (!verified) return Unauthenticated("bad signature");
  }

  // Claims, only now that the signature holds.
  const std::optional<Json> payload = DecodeJsonPart(payload_part);
  if (!payload) return Unauthenticated("malformed token");
  const double now_seconds = std::chrono::duration<double>(now.time_since_epoch()).count();

  auto exp = NumericDate(*payload, "exp");
  if (!exp.ok()) return exp.status();
  if (!exp->has_value()) return Unauthenticated("missing expiry");
  if (now_seconds >= **exp + key_set->leeway_seconds) return Unauthenticated("token expired");
  auto nbf = NumericDate(*payload, "nbf");
  if (!nbf.ok()) return nbf.status();
  if (nbf->has_value() && now_seconds + key_set->leeway_seconds < **nbf) {
    return Unauthenticated("token not yet valid");
  }
  if (!key_set->issuer.empty()) {
    auto iss = payload->find("iss");
    if (iss == payload->end() || !iss->is_string() ||
        iss->get_ref<const std::string&>() != key_set->issuer) {
      return Unauthenticated("wrong issuer");
    }
  }
  if (!key_set->audience.empty() && !AudienceMatches(*payload, key_set->audience)) {
    return Unauthenticated("wrong audience");
  }

  Principal principal;
  auto sub = payload->find("sub");
  if (sub == payload->end() || !sub->is_string() || sub->get_ref<const std::string&>().empty()) {
    return Unauthenticated("missing subject");
  }
  principal.subject = sub->get<std::string>();
  // The subject becomes the connection's identity in frames and protos.
  if (!core::IsValidUtf8(principal.subject)) return Unauthenticated("subject is not valid UTF-8");
  if (principal.subject.size() > kMaxSubjectBytes) return Unauthenticated("subject too long");
  auto channels = Grants(*payload, "channels");
  if (!channels.ok()) return channels.status();
  principal.channels = *std::move(channels);
  auto publish = Grants(*payload, "publish");
  if (!publish.ok()) return publish.status();
  principal.publish = *std::move(publish);
  if (auto admin = payload->find("admin"); admin != payload->end() && !admin->is_null()) {
    if (!admin->is_boolean()) return Unauthenticated("admin claim must be true or false");
    principal.admin = admin->get<bool>();
  }
  if (**exp >= kMaxRepresentableSeconds) {
    principal.expires_at = std::chrono::system_clock::time_point::max();
  } else {
    principal.expires_at = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::duration<double>(**exp)));
  }
  if (*principal.expires_at == std::chrono::system_clock::time_point::max() ||
      **exp + key_set->leeway_seconds >= kMaxRepresentableSeconds) {
    principal.deadline = principal.expires_at;
  } else {
    principal.deadline = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::duration<double>(**exp + key_set->leeway_seconds)));
  }
  return principal;
}

}  // namespace bridge::auth
