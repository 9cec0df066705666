#include "test_keys.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdlib.h>

#include <fstream>
#include <stdexcept>

#include "auth/base64url.h"

namespace bridge::auth::testing {
namespace {

using internal::Base64UrlEncode;

std::string ToPem(EVP_PKEY* pkey, bool private_key) {
  BIO* bio = BIO_new(BIO_s_mem());
  const int ok = private_key
                     ? PEM_write_bio_PrivateKey(bio, pkey, nullptr, nullptr, 0, nullptr, nullptr)
                     : PEM_write_bio_PUBKEY(bio, pkey);
  if (ok != 1) throw std::runtime_error("PEM write failed");
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  std::string out(data, std::size_t(len));
  BIO_free(bio);
  return out;
}

KeyPair Wrap(EVP_PKEY* raw) {
  if (raw == nullptr) throw std::runtime_error("key generation failed");
  KeyPair pair{internal::PkeyPtr(raw), "", ""};
  pair.public_pem = ToPem(raw, false);
  pair.private_pem = ToPem(raw, true);
  return pair;
}

std::string BnParam(EVP_PKEY* pkey, const char* name) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1) throw std::runtime_error("no bn param");
  std::string out(std::size_t(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  BN_free(bn);
  return out;
}

}  // namespace

KeyPair GenerateRsa(unsigned bits) { return Wrap(EVP_RSA_gen(bits)); }

KeyPair GenerateEc(const char* curve) { return Wrap(EVP_EC_gen(curve)); }

std::string JwkFor(const KeyPair& key, std::string_view kid) {
  EVP_PKEY* pkey = key.pkey.get();
  if (EVP_PKEY_is_a(pkey, "RSA")) {
    return "{\"kty\":\"RSA\",\"kid\":\"" + std::string(kid) + "\",\"use\":\"sig\",\"n\":\"" +
           Base64UrlEncode(BnParam(pkey, OSSL_PKEY_PARAM_RSA_N)) + "\",\"e\":\"" +
           Base64UrlEncode(BnParam(pkey, OSSL_PKEY_PARAM_RSA_E)) + "\"}";
  }
  unsigned char point[133];
  std::size_t len = 0;
  if (EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
                                      sizeof(point), &len) != 1 ||
      len != 65) {
    throw std::runtime_error("not a P-256 key");
  }
  const std::string_view p(reinterpret_cast<const char*>(point), len);
  return "{\"kty\":\"EC\",\"kid\":\"" + std::string(kid) + "\",\"crv\":\"P-256\",\"x\":\"" +
         Base64UrlEncode(p.substr(1, 32)) + "\",\"y\":\"" + Base64UrlEncode(p.substr(33, 32)) +
         "\"}";
}

std::string SignHs256(std::string_view header_json, std::string_view payload_json,
                      std::string_view secret) {
  const std::string input = Base64UrlEncode(header_json) + "." + Base64UrlEncode(payload_json);
  return input + "." + Base64UrlEncode(internal::HmacSha256(secret, input));
}

std::string SignWithKey(std::string_view header_json, std::string_view payload_json,
                        const KeyPair& key) {
  const std::string input = Base64UrlEncode(header_json) + "." + Base64UrlEncode(payload_json);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::size_t len = 0;
  if (EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key.pkey.get()) != 1 ||
      EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) != 1) {
    throw std::runtime_error("sign init failed");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
    throw std::runtime_error("sign failed");
  }
  EVP_MD_CTX_free(ctx);
  sig.resize(len);
  if (EVP_PKEY_is_a(key.pkey.get(), "EC")) {
    const auto* der = reinterpret_cast<const unsigned char*>(sig.data());
    ECDSA_SIG* ecdsa = d2i_ECDSA_SIG(nullptr, &der, long(sig.size()));
    std::string raw(64, '\0');
    BN_bn2binpad(ECDSA_SIG_get0_r(ecdsa), reinterpret_cast<unsigned char*>(raw.data()), 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(ecdsa), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
    ECDSA_SIG_free(ecdsa);
    sig = raw;
  }
  return input + "." + Base64UrlEncode(sig);
}

std::string Unsigned(std::string_view header_json, std::string_view payload_json) {
  return Base64UrlEncode(header_json) + "." + Base64UrlEncode(payload_json) + ".";
}

TempDir::TempDir() {
  std::string templ = (std::filesystem::temp_directory_path() / "auth_test_XXXXXX").string();
  if (mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::Write(std::string_view name, std::string_view contents) const {
  const std::filesystem::path file = path_ / std::string(name);
  std::ofstream out(file, std::ios::binary);
  out.write(contents.data(), std::streamsize(contents.size()));
  return file.string();
}

}  // namespace bridge::auth::testing
