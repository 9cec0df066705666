// Who may open the dashboard: the `admin` claim as the verifier reads it and MintToken writes it,
// and CheckAdminAccess's answers (401 without or with a bad token, 403 without the grant).
#include "admin/admin_auth.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/base64url.h"
#include "auth/mint.h"
#include "auth/verifier.h"

namespace bridge::admin {
namespace {

const std::string kSecret = "0123456789abcdef0123456789abcdef-admin-auth";

class AdminAuthUnitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auth::VerifierConfig v;
    v.hs256_secret = kSecret;
    auto verifier = auth::TokenVerifier::Create(v);
    ASSERT_TRUE(verifier.ok()) << verifier.status();
    verifier_ = std::move(*verifier);
  }
  std::string Token(bool admin) {
    auth::MintOptions m;
    m.subject = "ops";
    m.admin = admin;
    m.hs256_secret = kSecret;
    auto t = auth::MintToken(m, now_);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : "";
  }
  std::chrono::system_clock::time_point now_ = std::chrono::system_clock::now();
  std::unique_ptr<auth::TokenVerifier> verifier_;
};

TEST_F(AdminAuthUnitTest, TheAdminClaimIsReadAsMinted) {
  auto admin = verifier_->Verify(Token(true), now_);
  ASSERT_TRUE(admin.ok()) << admin.status();
  EXPECT_TRUE(admin->admin);
  auto user = verifier_->Verify(Token(false), now_);
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_FALSE(user->admin);
}

TEST_F(AdminAuthUnitTest, AnAdminClaimThatIsNotABooleanIsRefused) {
  // A correctly signed token whose claim is a string.
  const std::string head = auth::internal::Base64UrlEncode(R"({"alg":"HS256","typ":"JWT"})");
  const std::string body =
      auth::internal::Base64UrlEncode(R"({"sub":"ops","exp":4102444800,"admin":"yes"})");
  const std::string input = head + "." + body;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  HMAC(EVP_sha256(), kSecret.data(), static_cast<int>(kSecret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &mac_size);
  const std::string signature = auth::internal::Base64UrlEncode(
      std::string_view(reinterpret_cast<const char*>(mac), mac_size));
  auto r = verifier_->Verify(input + "." + signature, now_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "admin claim must be true or false");
}

TEST_F(AdminAuthUnitTest, AccessNeedsAValidTokenWithTheGrant) {
  EXPECT_EQ(CheckAdminAccess(nullptr, "", std::nullopt, now_).status, 200u);  // auth off
  EXPECT_EQ(CheckAdminAccess(verifier_.get(), "", std::nullopt, now_).status, 401u);
  EXPECT_EQ(CheckAdminAccess(verifier_.get(), "Basic abc", std::nullopt, now_).status, 401u);
  EXPECT_EQ(CheckAdminAccess(verifier_.get(), "Bearer junk", std::nullopt, now_).status, 401u);
  AdminAccess user =
      CheckAdminAccess(verifier_.get(), "Bearer " + Token(false), std::nullopt, now_);
  EXPECT_EQ(user.status, 403u);
  EXPECT_EQ(user.subject, "ops");
  EXPECT_EQ(CheckAdminAccess(verifier_.get(), "Bearer " + Token(true), std::nullopt, now_).status,
            200u);
  const std::string admin = Token(true);
  EXPECT_EQ(CheckAdminAccess(verifier_.get(), "", std::string_view(admin), now_).status, 200u);
  // The header wins over the query.
  EXPECT_EQ(CheckAdminAccess(verifier_.get(), "Bearer junk", std::string_view(admin), now_).status,
            401u);
}

}  // namespace
}  // namespace bridge::admin
