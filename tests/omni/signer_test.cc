// SPDX-License-Identifier: Apache-2.0
#include "omni/signer.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "omni/encoding.h"
#include "omni/keys.h"
#include "omni/signing.h"
#include "support/subprocess.h"

namespace omni_proxmox::omni {
namespace {

using omni_proxmox::testing::RunProcess;
using std::chrono::hours;

constexpr std::chrono::seconds kYear{365 * 24 * 3600};

std::vector<std::string> Split(const std::string& text, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t pos = text.find(sep, start);
    out.push_back(text.substr(start, pos - start));
    if (pos == std::string::npos) return out;
    start = pos + 1;
  }
}

std::string Header(const GrpcMetadata& md, std::string_view key) {
  std::string found;
  int count = 0;
  for (const auto& [k, v] : md) {
    if (k == key) {
      found = v;
      ++count;
    }
  }
  EXPECT_EQ(count, 1) << key;
  return found;
}

// A scratch directory (and GnuPG home) removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/opgXXXXXX";
    path_ = mkdtemp(tmpl);
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all);
  }
  ~TempDir() {
    RunProcess({"gpgconf", "--kill", "gpg-agent"}, "", {"GNUPGHOME=" + path_});
    // The exiting agent removes its own sockets while we delete the directory: a file can vanish
    // under remove_all, so retry without throwing from a destructor.
    std::error_code error;
    for (int attempt = 0; attempt < 20; ++attempt) {
      std::filesystem::remove_all(path_, error);
      if (!error) break;
      std::this_thread::sleep_for(std::chrono::milliseconds{50});
    }
  }
  std::string Write(const std::string& name, const std::string& data) const {
    std::string file = path_ + "/" + name;
    std::ofstream(file, std::ios::binary) << data;
    return file;
  }
  const std::string& path() const { return path_; }
  std::vector<std::string> Env() const { return {"GNUPGHOME=" + path_}; }

 private:
  std::string path_;
};

TEST(SignaturePayload, MatchesGoEncodingForAProviderCall) {
  GrpcMetadata md = {{"providerid", "proxmox"}, {"x-sidero-timestamp", "1760000000"}};
  EXPECT_EQ(BuildSignaturePayload("/cosi.resource.State/Get", md),
            R"({"headers":{"authorization":null,"cluster":null,"context":null,"fieldSelectors":null,)"
            R"("namespace":null,"nodes":null,"runtime":null,"selectors":null,"uid":null,)"
            R"("x-sidero-timestamp":["1760000000"]},"method":"/cosi.resource.State/Get"})");
}

TEST(SignaturePayload, ListsEveryValueAndEscapes) {
  GrpcMetadata md = {{"nodes", "a"}, {"nodes", "b<"}, {"x-sidero-timestamp", "1"}};
  std::string payload = BuildSignaturePayload("/m", md);
  EXPECT_NE(payload.find(R"("nodes":["a","b\u003c"])"), std::string::npos) << payload;
  EXPECT_EQ(payload.find("[]"), std::string::npos);
}

TEST(SignatureHeader, Format) {
  EXPECT_EQ(FormatSignatureHeader("infra-provider:p", "00ff", "\x01\x02"), "siderov1 infra-provider:p 00ff AQI=");
}

TEST(Keys, GeneratedKeyHasOmniShape) {
  auto generated = GenerateInfraProviderKey("proxmox", kYear, util::RealClock());
  ASSERT_TRUE(generated.ok()) << generated.status();
  auto decoded = DecodeServiceAccountKey(generated->encoded.Reveal());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->name, "infra-provider:proxmox");
  EXPECT_EQ(decoded->armored_private_key, generated->key.armored_private_key);
  auto info = InspectPgpKey(generated->armored_public_key, util::RealClock().Now());
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->algorithm, "EDDSA");
  EXPECT_EQ(info->curve, "Ed25519");
  EXPECT_EQ(info->fingerprint, generated->fingerprint);
  EXPECT_EQ(info->fingerprint.size(), 40u);
  EXPECT_EQ(info->fingerprint.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(info->primary_uid.find("<proxmox@infra-provider.serviceaccount.omni.sidero.dev>"), std::string::npos);
  ASSERT_TRUE(info->expires.has_value());
  EXPECT_EQ(*info->expires - info->created, kYear);
  EXPECT_EQ(generated->armored_public_key.find("PRIVATE"), std::string::npos);
  // The JSON has exactly the two go-api-signature fields.
  auto json = Base64Decode(generated->encoded.Reveal());
  ASSERT_TRUE(json.ok());
  EXPECT_EQ(json->rfind(R"({"name":"infra-provider:proxmox","pgp_key":"-----BEGIN PGP PRIVATE KEY BLOCK-----)", 0), 0u);
  // The fingerprint is v4 (SHA-1 over the public key packet): GnuPG must agree.
  TempDir dir;
  auto import =
      RunProcess({"gpg", "--batch", "--import", dir.Write("pub.asc", generated->armored_public_key)}, "", dir.Env());
  ASSERT_EQ(import.exit_code, 0) << import.err;
  auto listed = RunProcess({"gpg", "--batch", "--with-colons", "--list-keys"}, "", dir.Env());
  std::string upper = generated->fingerprint;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_NE(listed.out.find("fpr:::::::::" + upper + ":"), std::string::npos) << listed.out;
  // pub line: 255-bit key, algorithm 22 (EdDSA), curve ed25519.
  EXPECT_NE(listed.out.find(":255:22:"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find(":ed25519:"), std::string::npos) << listed.out;
}

class SignerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto generated = GenerateInfraProviderKey("proxmox", kYear, util::RealClock());
    ASSERT_TRUE(generated.ok()) << generated.status();
    key_ = *std::move(generated);
    auto signer = RequestSigner::Create(key_.key, util::RealClock(), /*require_infra_provider=*/true);
    ASSERT_TRUE(signer.ok()) << signer.status();
    signer_ = *std::move(signer);
  }

  GeneratedKey key_;
  std::unique_ptr<RequestSigner> signer_;
};

TEST_F(SignerTest, HeadersCarryPayloadAndVerifiableSignature) {
  auto before =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto md = signer_->Sign("/cosi.resource.State/List", {{"providerid", "proxmox"}});
  ASSERT_TRUE(md.ok()) << md.status();
  EXPECT_EQ(Header(*md, "providerid"), "proxmox");
  std::string timestamp = Header(*md, "x-sidero-timestamp");
  EXPECT_GE(std::stoll(timestamp), before);
  EXPECT_LE(std::stoll(timestamp), before + 5);
  std::string payload = Header(*md, "x-sidero-payload");
  EXPECT_EQ(payload, BuildSignaturePayload("/cosi.resource.State/List",
                                           {{"providerid", "proxmox"}, {"x-sidero-timestamp", timestamp}}));
  auto parts = Split(Header(*md, "x-sidero-signature"), ' ');
  ASSERT_EQ(parts.size(), 4u);
  EXPECT_EQ(parts[0], "siderov1");
  EXPECT_EQ(parts[1], "infra-provider:proxmox");
  EXPECT_EQ(parts[2], key_.fingerprint);
  auto signature = Base64Decode(parts[3]);
  ASSERT_TRUE(signature.ok());
  auto now = util::RealClock().Now();
  EXPECT_TRUE(VerifyDetachedSignature(key_.armored_public_key, payload, *signature, now).ok());
  EXPECT_EQ(VerifyDetachedSignature(key_.armored_public_key, payload + " ", *signature, now).code(),
            absl::StatusCode::kUnauthenticated);
  auto other = GenerateInfraProviderKey("other", kYear, util::RealClock());
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(VerifyDetachedSignature(other->armored_public_key, payload, *signature, now).ok());
  EXPECT_EQ(signer_->provider_id(), "proxmox");
}

TEST_F(SignerTest, ResigningReplacesOldHeaders) {
  auto first = signer_->Sign("/cosi.resource.State/Watch", {{"providerid", "proxmox"}});
  ASSERT_TRUE(first.ok());
  auto second = signer_->Sign("/cosi.resource.State/Watch", *first);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->size(), 4u);
  Header(*second, "x-sidero-payload");
  Header(*second, "x-sidero-signature");
  Header(*second, "x-sidero-timestamp");
}

TEST_F(SignerTest, GnuPGAndSequoiaAcceptOurSignatures) {
  std::string payload = BuildSignaturePayload("/cosi.resource.State/Get", {{"x-sidero-timestamp", "1760000000"}});
  auto md = signer_->Sign("/cosi.resource.State/Get", {});
  ASSERT_TRUE(md.ok());
  payload = Header(*md, "x-sidero-payload");
  auto signature = Base64Decode(Split(Header(*md, "x-sidero-signature"), ' ')[3]);
  ASSERT_TRUE(signature.ok());
  TempDir dir;
  std::string pub = dir.Write("pub.asc", key_.armored_public_key);
  std::string sig = dir.Write("payload.sig", *signature);
  std::string data = dir.Write("payload.json", payload);
  std::string tampered = dir.Write("tampered.json", payload.substr(0, payload.size() - 2) + "x}");

  ASSERT_EQ(RunProcess({"gpg", "--batch", "--import", pub}, "", dir.Env()).exit_code, 0);
  auto gpg_ok = RunProcess({"gpg", "--batch", "--verify", sig, data}, "", dir.Env());
  EXPECT_EQ(gpg_ok.exit_code, 0) << gpg_ok.err;
  EXPECT_NE(gpg_ok.err.find("Good signature"), std::string::npos) << gpg_ok.err;
  auto gpg_bad = RunProcess({"gpg", "--batch", "--verify", sig, tampered}, "", dir.Env());
  EXPECT_NE(gpg_bad.exit_code, 0) << gpg_bad.err;
  EXPECT_NE(gpg_bad.err.find("BAD signature"), std::string::npos) << gpg_bad.err;

  std::vector<std::string> sq_env = {"HOME=" + dir.path(), "SEQUOIA_HOME=" + dir.path() + "/sq"};
  auto sq_ok = RunProcess({"sq", "verify", "--signer-cert", pub, "--detached", sig, data}, "", sq_env);
  EXPECT_EQ(sq_ok.exit_code, 0) << sq_ok.err;
  auto sq_bad = RunProcess({"sq", "verify", "--signer-cert", pub, "--detached", sig, tampered}, "", sq_env);
  EXPECT_NE(sq_bad.exit_code, 0) << sq_bad.err;
}

TEST(SignerRejects, ProviderNeedsInfraProviderKey) {
  auto generated = GenerateServiceAccountKey("automation", "automation", "automation@serviceaccount.omni.sidero.dev",
                                             kYear, util::RealClock());
  ASSERT_TRUE(generated.ok());
  auto signer = RequestSigner::Create(generated->key, util::RealClock(), true);
  ASSERT_FALSE(signer.ok());
  EXPECT_EQ(signer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(signer.status().message()).find("infra-provider:"), std::string::npos);
  EXPECT_TRUE(RequestSigner::Create(generated->key, util::RealClock(), false).ok());
}

TEST(SignerRejects, ExpiredKey) {
  util::ManualClock past(util::RealClock().Now() - hours(72));
  auto generated = GenerateInfraProviderKey("proxmox", std::chrono::hours(24), past);
  ASSERT_TRUE(generated.ok()) << generated.status();
  auto signer = RequestSigner::Create(generated->key, util::RealClock(), true);
  ASSERT_FALSE(signer.ok());
  EXPECT_EQ(signer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(signer.status().message()).find("expired"), std::string::npos) << signer.status();
  // The same key is fine at a time within its lifetime.
  util::ManualClock then(util::RealClock().Now() - hours(60));
  EXPECT_TRUE(RequestSigner::Create(generated->key, then, true).ok());
}

// A key made on a host whose clock runs ahead (its creation time is in our future) still signs:
// the signature carries the key's creation time, so a verifier at that time accepts it.
TEST(SignerAccepts, KeyFromTheFutureSignsWithItsCreationTime) {
  const util::ManualClock here(util::Clock::SystemTime{std::chrono::seconds{1'800'000'000}});
  const util::ManualClock ahead(here.Now() + std::chrono::minutes(10));
  auto generated = GenerateInfraProviderKey("proxmox", kYear, ahead);
  ASSERT_TRUE(generated.ok());
  auto key = PgpSigningKey::Load(generated->key.armored_private_key, here.Now());
  ASSERT_TRUE(key.ok()) << key.status();
  auto signature = (*key)->SignDetached("data", here.Now());
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_TRUE(VerifyDetachedSignature(generated->armored_public_key, "data", *signature, ahead.Now()).ok());
}

TEST(DecodeServiceAccountKey, ClearErrorsWithoutKeyMaterial) {
  struct Case {
    std::string input;
    std::string expect;
  };
  std::vector<Case> cases = {
      {"", "empty"},
      {"not base64!", "base64"},
      {Base64Encode("{not json"), "JSON"},
      {Base64Encode("[]"), "not an object"},
      {Base64Encode(R"({"pgp_key":"x"})"), "'name'"},
      {Base64Encode(R"({"name":"infra-provider:p"})"), "'pgp_key'"},
      {Base64Encode(R"({"name":"a b","pgp_key":"secret-material"})"), "space"},
  };
  for (const auto& c : cases) {
    auto key = DecodeServiceAccountKey(c.input);
    ASSERT_FALSE(key.ok()) << c.input;
    EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument);
    std::string message(key.status().message());
    EXPECT_NE(message.find(c.expect), std::string::npos) << message;
    EXPECT_EQ(message.find("secret-material"), std::string::npos);
  }
  auto garbage = DecodeServiceAccountKey(Base64Encode(R"({"name":"infra-provider:p","pgp_key":"garbage"})"));
  ASSERT_TRUE(garbage.ok());
  auto signer = RequestSigner::Create(*garbage, util::RealClock(), true);
  ASSERT_FALSE(signer.ok());
  EXPECT_NE(std::string(signer.status().message()).find("ASCII-armored"), std::string::npos) << signer.status();
}

// Keys GnuPG makes that Omni would not accept: not Ed25519, or passphrase-protected.
TEST(SignerRejects, NonEd25519AndProtectedKeys) {
  TempDir dir;
  auto gen = [&](const std::string& uid, const std::string& algo, const std::string& pass) {
    auto r = RunProcess({"gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", pass, "--quick-gen-key", uid,
                         algo, "sign", "1d"},
                        "", dir.Env());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto out = RunProcess(
        {"gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", pass, "--armor", "--export-secret-keys", uid},
        "", dir.Env());
    EXPECT_EQ(out.exit_code, 0) << out.err;
    return ServiceAccountKey{"infra-provider:p", util::Secret<std::string>(out.out)};
  };
  auto ecdsa = RequestSigner::Create(gen("ec <ec@x>", "nistp256", ""), util::RealClock(), true);
  ASSERT_FALSE(ecdsa.ok());
  EXPECT_EQ(ecdsa.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(ecdsa.status().message()).find("Ed25519"), std::string::npos) << ecdsa.status();
  auto locked = RequestSigner::Create(gen("pw <pw@x>", "ed25519", "hunter2"), util::RealClock(), true);
  ASSERT_FALSE(locked.ok());
  EXPECT_NE(std::string(locked.status().message()).find("passphrase"), std::string::npos) << locked.status();
  EXPECT_EQ(std::string(locked.status().message()).find("hunter2"), std::string::npos);
}

}  // namespace
}  // namespace omni_proxmox::omni
