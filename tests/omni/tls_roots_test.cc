// SPDX-License-Identifier: Apache-2.0
// Which certificates the Omni client trusts (omni/tls_roots.h): the order of the flag and the
// variables, what a CA file must hold, and a client against a stand-in serving TLS under a private
// CA made here, over loopback.

#include "omni/tls_roots.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/world.h"
#include "omni/specs.h"
#include "omni/state_client.h"
#include "sim/omni/standin.h"
#include "support/private_ca.h"
#include "util/random.h"

namespace omni_proxmox::omni {
namespace {

using ::testing::HasSubstr;

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(TlsRootsTest, TheFlagThenGrpcsVariableThenSslCertFileThenTheSystemBundle) {
  const auto all = FakeEnv({{"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "/grpc.pem"}, {"SSL_CERT_FILE", "/ssl.pem"}});
  RootsFile flag = ResolveRootsFile("/flag.pem", "--omni-ca-file", all);
  EXPECT_EQ(flag.path, "/flag.pem");
  EXPECT_EQ(flag.origin, "--omni-ca-file");
  EXPECT_FALSE(flag.system);
  EXPECT_EQ(ResolveRootsFile("", "", all).origin, "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH");
  RootsFile ssl = ResolveRootsFile("", "", FakeEnv({{"SSL_CERT_FILE", "/ssl.pem"}}));
  EXPECT_EQ(ssl.path, "/ssl.pem");
  EXPECT_EQ(ssl.origin, "SSL_CERT_FILE");
  RootsFile system = ResolveRootsFile("", "", FakeEnv({}));
  EXPECT_EQ(system.path, kSystemRootsFile);
  EXPECT_TRUE(system.system);
}

class TlsRootsFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / fmt::format("op-tls-roots-{}-{}", getpid(), counter_++);
    std::filesystem::create_directories(dir_);
    auto ca = testing::MakePrivateCa();
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = *ca;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& content) {
    std::ofstream(dir_ / name) << content;
    return (dir_ / name).string();
  }

  static inline int counter_ = 0;
  std::filesystem::path dir_;
  testing::PrivateCa ca_;
};

TEST_F(TlsRootsFiles, ACaFileMustBeReadablePem) {
  auto two = LoadRoots({.path = Write("two.pem", ca_.ca_pem + ca_.server_cert_pem), .origin = "--omni-ca-file"});
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->certificates, 2);
  auto missing = LoadRoots({.path = (dir_ / "nope.pem").string(), .origin = "OMNI_CA_FILE"});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("OMNI_CA_FILE '"));
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("cannot read it"));
  auto key = LoadRoots({.path = Write("key.pem", ca_.server_key_pem), .origin = "SSL_CERT_FILE"});
  EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(key.status().message()), HasSubstr("SSL_CERT_FILE '"));
  EXPECT_THAT(std::string(key.status().message()), HasSubstr("holds no PEM certificate"));
}

// A client over TLS to a stand-in whose certificate the private CA signed: verified with the CA
// file, refused with another CA's, and a client whose CA file is no PEM is not made at all.
TEST_F(TlsRootsFiles, ClientVerifiesAPrivateCaOmniWithTheCaFile) {
  auto standin = sim::omni::StandIn::Start(
      {.provider_id = "proxmox", .tls = true, .tls_cert_pem = ca_.server_cert_pem, .tls_key_pem = ca_.server_key_pem});
  ASSERT_TRUE(standin.ok()) << standin.status();
  util::Random random(3);
  auto options = cli::StandInClientOptions(**standin, &random);
  ASSERT_TRUE(options.ok()) << options.status();
  const ResourcePointer join_config{std::string(kNamespaceInfraProvider), "ProviderJoinConfigs.omni.sidero.dev",
                                    "proxmox"};

  options->tls_ca_file = Write("omni-ca.pem", ca_.ca_pem);
  auto trusted = MakeGrpcStateClient(*options);
  ASSERT_TRUE(trusted.ok()) << trusted.status();
  auto got = (*trusted)->Get(join_config);
  EXPECT_TRUE(got.ok()) << got.status();

  auto other = testing::MakePrivateCa("another CA");
  ASSERT_TRUE(other.ok()) << other.status();
  options->tls_ca_file = Write("other-ca.pem", other->ca_pem);
  options->call_timeout = std::chrono::milliseconds{10'000};
  auto untrusted = MakeGrpcStateClient(*options);
  ASSERT_TRUE(untrusted.ok()) << untrusted.status();
  EXPECT_EQ((*untrusted)->Get(join_config).status().code(), absl::StatusCode::kUnavailable);

  options->tls_ca_file = Write("not-pem.pem", "not a certificate");
  options->tls_ca_file_origin = "OMNI_CA_FILE";
  auto refused = MakeGrpcStateClient(*options);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("OMNI_CA_FILE '"));
}

}  // namespace
}  // namespace omni_proxmox::omni
