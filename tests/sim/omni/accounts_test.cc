// SPDX-License-Identifier: Apache-2.0
#include "sim/omni/accounts.h"

#include <chrono>

#include "gtest/gtest.h"

#include "sim/omni/test_signer.h"

namespace omni_proxmox::sim::omni {
namespace {

using std::chrono::seconds;
constexpr char kGet[] = "/cosi.resource.State/Get";

std::int64_t Unix(const util::Clock& clock) {
  return std::chrono::duration_cast<seconds>(clock.Now().time_since_epoch()).count();
}

class AccountsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto provider = GenerateInfraProviderKey("proxmox", clock_.Now(), std::chrono::hours(48));
    ASSERT_TRUE(provider.ok()) << provider.status();
    provider_ = *provider;
    ASSERT_TRUE(registry_.Register(provider_, Role::kInfraProvider).ok());
    auto signer = testing::DecodeServiceAccountKey(provider_.encoded.Reveal());
    ASSERT_TRUE(signer.ok()) << signer.status();
    signer_ = *signer;
  }

  absl::StatusOr<Caller> Call(const Metadata& md, std::string* reason, const std::string& method = kGet) {
    return registry_.Verify(method, md, reason);
  }

  util::ManualClock clock_;
  KeyRegistry registry_{clock_};
  GeneratedKey provider_;
  testing::SignerKey signer_;
};

void ExpectRefused(const absl::StatusOr<Caller>& result) {
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(result.status().message(), "invalid signature");
}

TEST(Base64Test, RoundTripsAndRefusesGarbage) {
  for (const std::string& s :
       std::vector<std::string>{"", "f", "fo", "foo", "foob", "fooba", "foobar", std::string("\0\xff\x10", 3)}) {
    auto back = Base64Decode(Base64Encode(s));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, s);
  }
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_FALSE(Base64Decode("Zm8").ok());
  EXPECT_FALSE(Base64Decode("Zm=8").ok());
  EXPECT_FALSE(Base64Decode("Z!8=").ok());
}

TEST_F(AccountsTest, KeyHasTheServiceAccountFormat) {
  EXPECT_EQ(provider_.name, "infra-provider:proxmox");
  EXPECT_EQ(provider_.email, "proxmox@infra-provider.serviceaccount.omni.sidero.dev");
  EXPECT_EQ(provider_.fingerprint.size(), 40u);
  EXPECT_EQ(provider_.fingerprint.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(signer_.name, "infra-provider:proxmox");
  EXPECT_EQ(signer_.fingerprint, provider_.fingerprint);
  EXPECT_EQ(signer_.armored.rfind("-----BEGIN PGP PRIVATE KEY BLOCK-----", 0), 0u);
  EXPECT_NE(provider_.public_key_armored.find("BEGIN PGP PUBLIC KEY BLOCK"), std::string::npos);
}

TEST_F(AccountsTest, ValidSignatureYieldsProviderIdFromTheKey) {
  auto md = testing::SignedMetadata(signer_, kGet, Unix(clock_));
  ASSERT_TRUE(md.ok()) << md.status();
  md->emplace("providerid", "somebody-else");  // not signed, not trusted
  std::string reason;
  auto caller = Call(*md, &reason);
  ASSERT_TRUE(caller.ok()) << reason;
  EXPECT_EQ(caller->provider_id, "proxmox");
  EXPECT_EQ(caller->role, Role::kInfraProvider);
}

TEST_F(AccountsTest, AdminKeyHasNoProviderId) {
  auto admin = GenerateServiceAccountKey("admin", "admin", "admin@serviceaccount.omni.sidero.dev",
                                         std::chrono::hours(24), clock_.Now());
  ASSERT_TRUE(admin.ok());
  ASSERT_TRUE(registry_.Register(*admin, Role::kAdmin).ok());
  auto signer = testing::DecodeServiceAccountKey(admin->encoded.Reveal());
  auto md = testing::SignedMetadata(*signer, kGet, Unix(clock_));
  std::string reason;
  auto caller = Call(*md, &reason);
  ASSERT_TRUE(caller.ok()) << reason;
  EXPECT_EQ(caller->role, Role::kAdmin);
  EXPECT_EQ(caller->provider_id, "");
}

TEST_F(AccountsTest, TimestampSkewOfFiveMinutesIsTheLimit) {
  clock_.Advance(std::chrono::hours(1));  // so a signature 5 minutes "ago" is still after key creation
  std::string reason;
  for (int offset : {-299, 299}) {
    auto md = testing::SignedMetadata(signer_, kGet, Unix(clock_) + offset);
    EXPECT_TRUE(Call(*md, &reason).ok()) << offset << ": " << reason;
  }
  for (int offset : {-301, 301}) {
    auto md = testing::SignedMetadata(signer_, kGet, Unix(clock_) + offset);
    ExpectRefused(Call(*md, &reason));
    EXPECT_NE(reason.find("timestamp"), std::string::npos) << reason;
  }
}

TEST_F(AccountsTest, PayloadMethodMustMatchTheCalledMethod) {
  auto md = testing::SignedMetadata(signer_, "/cosi.resource.State/Destroy", Unix(clock_));
  std::string reason;
  ExpectRefused(Call(*md, &reason));
  EXPECT_NE(reason.find("method"), std::string::npos) << reason;
}

TEST_F(AccountsTest, SignedHeadersMustMatchReceivedMetadata) {
  const std::string ts = std::to_string(Unix(clock_));
  std::string reason;
  // A header that was signed but not sent.
  auto md = testing::SignedMetadata(
      signer_, kGet, Unix(clock_),
      R"({"headers":{"namespace":["x"],"x-sidero-timestamp":[")" + ts + R"("]},"method":"/cosi.resource.State/Get"})");
  ExpectRefused(Call(*md, &reason));
  // An empty list does not match an absent header (Go's DeepEqual).
  md = testing::SignedMetadata(
      signer_, kGet, Unix(clock_),
      R"({"headers":{"cluster":[],"x-sidero-timestamp":[")" + ts + R"("]},"method":"/cosi.resource.State/Get"})");
  ExpectRefused(Call(*md, &reason));
  // A covered header that was sent but not signed.
  md = testing::SignedMetadata(signer_, kGet, Unix(clock_));
  md->emplace("runtime", "Talos");
  ExpectRefused(Call(*md, &reason));
  EXPECT_NE(reason.find("runtime"), std::string::npos) << reason;
  // The timestamp in the payload must be the header's.
  md = testing::SignedMetadata(signer_, kGet, Unix(clock_),
                               R"({"headers":{"x-sidero-timestamp":["1"]},"method":"/cosi.resource.State/Get"})");
  ExpectRefused(Call(*md, &reason));
  // Omitted keys count as null, and a signed extra header that is sent matches.
  md = testing::SignedMetadata(
      signer_, kGet, Unix(clock_),
      R"({"headers":{"cluster":["c1"],"x-sidero-timestamp":[")" + ts + R"("]},"method":"/cosi.resource.State/Get"})");
  md->emplace("cluster", "c1");
  EXPECT_TRUE(Call(*md, &reason).ok()) << reason;
}

TEST_F(AccountsTest, TamperedPayloadIsRefused) {
  auto md = testing::SignedMetadata(signer_, kGet, Unix(clock_));
  auto payload = md->find("x-sidero-payload");
  payload->second.insert(payload->second.size() - 1, " ");  // still valid JSON, different bytes
  std::string reason;
  ExpectRefused(Call(*md, &reason));
  EXPECT_NE(reason.find("verify"), std::string::npos) << reason;
}

TEST_F(AccountsTest, UnknownFingerprintIsRefused) {
  auto stranger = GenerateInfraProviderKey("proxmox", clock_.Now());
  auto signer = testing::DecodeServiceAccountKey(stranger->encoded.Reveal());
  auto md = testing::SignedMetadata(*signer, kGet, Unix(clock_));
  std::string reason;
  ExpectRefused(Call(*md, &reason));
  EXPECT_NE(reason.find("unknown key"), std::string::npos) << reason;
}

TEST_F(AccountsTest, SignatureByAnotherKeyUnderARegisteredFingerprintIsRefused) {
  // A stranger signs with its own key, then claims the registered key's fingerprint in the header.
  auto stranger = GenerateInfraProviderKey("proxmox", clock_.Now());
  auto signer = testing::DecodeServiceAccountKey(stranger->encoded.Reveal());
  auto md = testing::SignedMetadata(*signer, kGet, Unix(clock_));
  auto header = md->find("x-sidero-signature");
  header->second.replace(header->second.find(signer->fingerprint), signer->fingerprint.size(), provider_.fingerprint);
  std::string reason;
  ExpectRefused(Call(*md, &reason));
  EXPECT_NE(reason.find("signature"), std::string::npos) << reason;
}

TEST_F(AccountsTest, ExpiredAndRevokedKeysAreRefused) {
  const std::int64_t created = Unix(clock_);
  clock_.Advance(std::chrono::hours(49));
  auto md = testing::SignedMetadata(signer_, kGet, Unix(clock_), "", created);
  ASSERT_TRUE(md.ok()) << md.status();
  std::string reason;
  ExpectRefused(Call(*md, &reason));
  EXPECT_NE(reason.find("expired"), std::string::npos) << reason;

  auto fresh = GenerateInfraProviderKey("proxmox", clock_.Now());
  ASSERT_TRUE(registry_.Register(*fresh, Role::kInfraProvider).ok());
  auto signer = testing::DecodeServiceAccountKey(fresh->encoded.Reveal());
  md = testing::SignedMetadata(*signer, kGet, Unix(clock_));
  ASSERT_TRUE(Call(*md, &reason).ok()) << reason;
  ASSERT_TRUE(registry_.Revoke(fresh->fingerprint).ok());
  ExpectRefused(Call(*md, &reason));
  EXPECT_NE(reason.find("revoked"), std::string::npos) << reason;
}

TEST_F(AccountsTest, MalformedHeadersAreRefused) {
  std::string reason;
  ExpectRefused(Call({}, &reason));
  auto md = testing::SignedMetadata(signer_, kGet, Unix(clock_));
  auto header = md->find("x-sidero-signature");
  const std::string good = header->second;
  header->second = "siderov2" + good.substr(8);
  ExpectRefused(Call(*md, &reason));
  EXPECT_NE(reason.find("version"), std::string::npos) << reason;
  header->second = good + " extra";
  ExpectRefused(Call(*md, &reason));
  header->second = good;
  md->find("x-sidero-timestamp")->second = "soon";
  ExpectRefused(Call(*md, &reason));
}

TEST_F(AccountsTest, RegisterEnforcesInfraProviderAccountShape) {
  auto admin_like = GenerateServiceAccountKey("infra-provider:x", "x", "x@serviceaccount.omni.sidero.dev",
                                              std::chrono::hours(1), clock_.Now());
  EXPECT_EQ(registry_.Register(*admin_like, Role::kInfraProvider).code(), absl::StatusCode::kInvalidArgument);
  auto bad_name = GenerateServiceAccountKey("x", "x", std::string("x") + kInfraProviderEmailSuffix,
                                            std::chrono::hours(1), clock_.Now());
  EXPECT_EQ(registry_.Register(*bad_name, Role::kInfraProvider).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(GenerateInfraProviderKey("x", clock_.Now(), std::chrono::hours(24 * 400)).ok());
}

}  // namespace
}  // namespace omni_proxmox::sim::omni
