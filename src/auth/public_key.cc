#include "auth/public_key.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <nlohmann/json.hpp>
#include <set>

#include "auth/base64url.h"
#include "auth/text.h"
#include "spdlog/spdlog.h"

namespace bridge::auth::internal {
namespace {

using Json = nlohmann::json;

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct BnFree {
  void operator()(BIGNUM* b) const { BN_free(b); }
};
struct ParamBldFree {
  void operator()(OSSL_PARAM_BLD* b) const { OSSL_PARAM_BLD_free(b); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* s) const { ECDSA_SIG_free(s); }
};

constexpr int kMinRsaBits = 2048;
constexpr std::size_t kP256CoordinateBytes = 32;

// Checks the key type and size and picks its algorithm.
absl::StatusOr<Algorithm> AlgorithmForKey(EVP_PKEY* pkey) {
  if (EVP_PKEY_is_a(pkey, "RSA")) {
    if (EVP_PKEY_get_bits(pkey) < kMinRsaBits) {
      return absl::InvalidArgumentError("RSA key shorter than 2048 bits");
    }
    return Algorithm::kRs256;
  }
  if (EVP_PKEY_is_a(pkey, "EC")) {
    char group[64] = {};
    std::size_t len = 0;
    if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &len) != 1 ||
        std::string_view(group, len) != "prime256v1") {
      return absl::InvalidArgumentError("EC key is not on curve P-256");
    }
    return Algorithm::kEs256;
  }
  return absl::InvalidArgumentError("key is neither RSA nor EC");
}

// Builds a public EVP_PKEY of `type` ("RSA" or "EC") from OpenSSL 3 parameters, and checks it.
absl::StatusOr<PkeyPtr> PkeyFromParams(const char* type, OSSL_PARAM_BLD* bld) {
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld));
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(Cat("invalid ", type, " key parameters"));
  }
  PkeyPtr pkey(raw);
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> check(
      EVP_PKEY_CTX_new_from_pkey(nullptr, pkey.get(), nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(Cat("invalid ", type, " public key"));
  }
  return pkey;
}

absl::StatusOr<std::string> Base64Field(const Json& jwk, const char* name) {
  auto it = jwk.find(name);
  if (it == jwk.end() || !it->is_string()) {
    return absl::InvalidArgumentError(Cat("missing string field '", name, "'"));
  }
  auto bytes = Base64UrlDecode(it->get_ref<const std::string&>());
  if (!bytes || bytes->empty()) {
    return absl::InvalidArgumentError(Cat("field '", name, "' is not base64url"));
  }
  return *std::move(bytes);
}

absl::StatusOr<PkeyPtr> RsaFromJwk(const Json& jwk) {
  auto n = Base64Field(jwk, "n");
  if (!n.ok()) return n.status();
  auto e = Base64Field(jwk, "e");
  if (!e.ok()) return e.status();
  auto to_bn = [](const std::string& s) {
    return std::unique_ptr<BIGNUM, BnFree>(
        BN_bin2bn(reinterpret_cast<const unsigned char*>(s.data()), int(s.size()), nullptr));
  };
  auto bn_n = to_bn(*n);
  auto bn_e = to_bn(*e);
  std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> bld(OSSL_PARAM_BLD_new());
  if (!bn_n || !bn_e || !bld ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1) {
    return absl::InternalError("out of memory building RSA key");
  }
  return PkeyFromParams("RSA", bld.get());
}

absl::StatusOr<PkeyPtr> EcFromJwk(const Json& jwk) {
  auto crv = jwk.find("crv");
  if (crv == jwk.end() || !crv->is_string() || crv->get_ref<const std::string&>() != "P-256") {
    return absl::InvalidArgumentError("EC key curve is not P-256");
  }
  auto x = Base64Field(jwk, "x");
  if (!x.ok()) return x.status();
  auto y = Base64Field(jwk, "y");
  if (!y.ok()) return y.status();
  if (x->size() != kP256CoordinateBytes || y->size() != kP256CoordinateBytes) {
    return absl::InvalidArgumentError("EC coordinates are not 32 bytes");
  }
  // Uncompressed SEC1 point: 0x04 || x || y.
  std::string point = Cat(std::string_view("\x04", 1), *x, *y);
  std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> bld(OSSL_PARAM_BLD_new());
  if (!bld ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) !=
          1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    return absl::InternalError("out of memory building EC key");
  }
  return PkeyFromParams("EC", bld.get());
}

std::string OptionalString(const Json& obj, const char* name) {
  auto it = obj.find(name);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

void PkeyDeleter::operator()(EVP_PKEY* pkey) const { EVP_PKEY_free(pkey); }

std::string_view AlgorithmName(Algorithm alg) {
  switch (alg) {
    case Algorithm::kHs256:
      return "HS256";
    case Algorithm::kRs256:
      return "RS256";
    case Algorithm::kEs256:
      return "ES256";
  }
  return "?";
}

std::optional<Algorithm> ParseAlgorithm(std::string_view name) {
  if (name == "HS256") return Algorithm::kHs256;
  if (name == "RS256") return Algorithm::kRs256;
  if (name == "ES256") return Algorithm::kEs256;
  return std::nullopt;
}

absl::StatusOr<PublicKey> ParsePemPublicKey(std::string_view pem, std::string kid) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), int(pem.size())));
  if (!bio) return absl::InternalError("out of memory reading PEM");
  PkeyPtr pkey(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!pkey) {
    ERR_clear_error();
    return absl::InvalidArgumentError("no PEM public key (BEGIN PUBLIC KEY) found");
  }
  auto alg = AlgorithmForKey(pkey.get());
  if (!alg.ok()) return alg.status();
  return PublicKey{std::move(kid), *alg, std::move(pkey)};
}

absl::StatusOr<std::vector<PublicKey>> ParseJwks(std::string_view json) {
  const Json doc = Json::parse(json.begin(), json.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::InvalidArgumentError("JWKS is not a JSON object");
  }
  auto keys = doc.find("keys");
  if (keys == doc.end() || !keys->is_array()) {
    return absl::InvalidArgumentError("JWKS has no \"keys\" array");
  }
  std::vector<PublicKey> out;
  std::set<std::string> kids;
  for (std::size_t i = 0; i < keys->size(); ++i) {
    const Json& jwk = (*keys)[i];
    const std::string where = Cat("JWKS key ", i);
    if (!jwk.is_object()) return absl::InvalidArgumentError(Cat(where, " is not an object"));
    const std::string kty = OptionalString(jwk, "kty");
    const std::string use = OptionalString(jwk, "use");
    const std::string alg = OptionalString(jwk, "alg");
    const std::string kid = OptionalString(jwk, "kid");
    if (jwk.contains("kid") && !jwk["kid"].is_string()) {
      return absl::InvalidArgumentError(Cat(where, ": kid is not a string"));
    }
    if (!use.empty() && use != "sig") {
      spdlog::warn("auth: skipping {} (kid '{}'): use '{}' is not sig", where, kid, use);
      continue;
    }
    Algorithm key_alg;
    absl::StatusOr<PkeyPtr> pkey;
    if (kty == "RSA" && (alg.empty() || alg == "RS256")) {
      key_alg = Algorithm::kRs256;
      pkey = RsaFromJwk(jwk);
    } else if (kty == "EC" && (alg.empty() || alg == "ES256")) {
      key_alg = Algorithm::kEs256;
      pkey = EcFromJwk(jwk);
    } else {
      spdlog::warn("auth: skipping {} (kid '{}'): kty '{}' alg '{}' not supported", where, kid, kty,
                   alg);
      continue;
    }
    if (!pkey.ok()) {
      return absl::InvalidArgumentError(
          Cat(where, " (kid '", kid, "'): ", std::string(pkey.status().message())));
    }
    auto checked = AlgorithmForKey(pkey->get());
    if (!checked.ok()) {
      return absl::InvalidArgumentError(
          Cat(where, " (kid '", kid, "'): ", std::string(checked.status().message())));
    }
    if (!kid.empty() && !kids.insert(kid).second) {
      return absl::InvalidArgumentError(Cat(where, ": duplicate kid '", kid, "'"));
    }
    out.push_back(PublicKey{kid, key_alg, *std::move(pkey)});
  }
  if (out.empty()) return absl::InvalidArgumentError("JWKS has no usable RS256/ES256 key");
  return out;
}

std::string HmacSha256(std::string_view secret, std::string_view signing_input) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), secret.data(), int(secret.size()),
           reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac,
           &len) == nullptr) {
    return std::string();
  }
  return std::string(reinterpret_cast<const char*>(mac), len);
}

bool VerifyHs256(std::string_view secret, std::string_view signing_input,
                 std::string_view signature) {
  const std::string expected = HmacSha256(secret, signing_input);
  // The length of a valid MAC is public (32); only the content comparison must be constant-time.
  return expected.size() == 32 && signature.size() == expected.size() &&
         CRYPTO_memcmp(expected.data(), signature.data(), expected.size()) == 0;
}

bool VerifyWithKey(const PublicKey& key, std::string_view signing_input,
                   std::string_view signature) {
  std::string der;
  if (key.alg == Algorithm::kEs256) {
    // JWS carries R||S as two 32-byte big-endian integers; OpenSSL wants a DER ECDSA-Sig-Value.
    if (signature.size() != 2 * kP256CoordinateBytes) return false;
    const auto* bytes = reinterpret_cast<const unsigned char*>(signature.data());
    std::unique_ptr<ECDSA_SIG, EcdsaSigFree> sig(ECDSA_SIG_new());
    BIGNUM* r = BN_bin2bn(bytes, kP256CoordinateBytes, nullptr);
    BIGNUM* s = BN_bin2bn(bytes + kP256CoordinateBytes, kP256CoordinateBytes, nullptr);
    if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
      BN_free(r);
      BN_free(s);
      return false;
    }
    const int len = i2d_ECDSA_SIG(sig.get(), nullptr);
    if (len <= 0) return false;
    der.resize(std::size_t(len));
    auto* out = reinterpret_cast<unsigned char*>(der.data());
    if (i2d_ECDSA_SIG(sig.get(), &out) != len) return false;
    signature = der;
  } else if (key.alg != Algorithm::kRs256) {
    return false;
  }
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.pkey.get()) != 1) {
    return false;
  }
  const bool ok =
      EVP_DigestVerify(
          ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
          reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size()) == 1;
  // A refused signature leaves entries on this thread's OpenSSL error queue; do not let them leak
  // into unrelated code (TLS) running later on the same thread.
  if (!ok) ERR_clear_error();
  return ok;
}

}  // namespace bridge::auth::internal
