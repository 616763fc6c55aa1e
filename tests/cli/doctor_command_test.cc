// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox doctor` as a separate process against the TLS simulator and the Omni stand-in.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/operator_world.h"
#include "cli/world.h"
#include "omni/provider_status.h"
#include "omni/state_client.h"
#include "support/private_ca.h"
#include "util/random.h"

namespace omni_proxmox::cli {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;

class DoctorCommand : public OperatorWorld {
 protected:
  void SetUp() override {
    OperatorWorld::SetUp();
    StartOmni();
  }

  // Publishes the provider's heartbeat as `run` does, dated `age` ago.
  void Heartbeat(std::chrono::seconds age, const std::string& error = "") {
    auto options = StandInClientOptions(*standin_, &random_);
    ASSERT_TRUE(options.ok()) << options.status();
    auto state = omni::MakeGrpcStateClient(*options);
    ASSERT_TRUE(state.ok()) << state.status();
    auto beat = omni::PublishHeartbeat(**state, "proxmox", util::RealClock().Now() - age, error);
    ASSERT_TRUE(beat.ok()) << beat.status();
  }

  std::vector<std::string> Flags(const std::string& config = "config.yaml") {
    return {"--config-file",
            Path(config),
            "--omni-api-endpoint",
            standin_->grpc_endpoint(),
            "--omni-service-account-key-file",
            Path("key")};
  }

  testing::ProcessResult Doctor(const std::vector<std::string>& extra = {}, bool json = false,
                                const std::string& config = "config.yaml") {
    std::vector<std::string> args;
    if (json) args = {"--format", "json"};
    args.push_back("doctor");
    for (const auto& f : Flags(config)) args.push_back(f);
    for (const auto& f : extra) args.push_back(f);
    return Run(args);
  }

  // check name -> status of the JSON output.
  static std::map<std::string, std::string> Statuses(const nlohmann::json& out) {
    std::map<std::string, std::string> statuses;
    for (const auto& c : out["checks"]) statuses[c["check"]] = c["status"];
    return statuses;
  }

  util::Random random_{7};
};

TEST_F(DoctorCommand, EverythingPassesWithAFreshHeartbeat) {
  Heartbeat(std::chrono::seconds{2});
  auto result = Doctor();
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_THAT(result.out, ContainsRegex("proxmox tls +pass +certificate verified against .*ca.pem"));
  EXPECT_THAT(result.out, ContainsRegex("proxmox version +pass +Proxmox VE 9"));
  EXPECT_THAT(result.out, ContainsRegex("proxmox privileges +pass"));
  EXPECT_THAT(result.out, ContainsRegex("storage on pve3 +pass +iso: local; images: local-lvm, vm_ssd"));
  EXPECT_THAT(result.out, ContainsRegex("provider registered +pass +InfraProviders/proxmox exists"));
  EXPECT_THAT(result.out, ContainsRegex("provider heartbeat +pass +fresh"));
  EXPECT_THAT(result.out, HasSubstr("All checks passed."));
  // Secrets never appear.
  EXPECT_EQ(result.out.find(sim_->default_token_secret()), std::string::npos);
  EXPECT_EQ(result.out.find(standin_->provider_key()), std::string::npos);

  // The stand-in here speaks plain http, which is warned about as for Proxmox (DoctorOmniTls has the TLS one).
  EXPECT_THAT(result.out, ContainsRegex("omni tls +warn +plain http: the signed calls and Omni's answers travel "
                                        "unencrypted"));
  EXPECT_THAT(result.out, HasSubstr("use Omni's https:// endpoint"));

  auto json = Doctor({}, /*json=*/true);
  ASSERT_EQ(json.exit_code, 0) << json.out << json.err;
  const auto out = ParseJson(json.out);
  ASSERT_TRUE(out.is_object()) << json.out;
  EXPECT_TRUE(out["ok"].get<bool>());
  for (const auto& [check, status] : Statuses(out)) EXPECT_EQ(status, check == "omni tls" ? "warn" : "pass") << check;
}

TEST_F(DoctorCommand, ProviderIdCaseMismatchFailsAndSkipsTheOmniChecks) {
  auto result = Doctor({"--id", "Proxmox"}, /*json=*/true);
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  const auto out = ParseJson(result.out);
  const auto statuses = Statuses(out);
  EXPECT_EQ(statuses.at("provider id"), "fail");
  EXPECT_EQ(statuses.at("omni reachable"), "skip");
  EXPECT_EQ(statuses.at("provider heartbeat"), "skip");
  EXPECT_EQ(statuses.at("proxmox privileges"), "pass");
  for (const auto& c : out["checks"]) {
    if (c["check"] == "provider id") {
      EXPECT_THAT(c["detail"].get<std::string>(), HasSubstr("differs only in case from the key's identity 'proxmox'"));
    }
    if (c["check"] == "omni reachable") {
      EXPECT_THAT(c["detail"].get<std::string>(), HasSubstr("skipped: needs a provider ID that matches the key"));
    }
  }
}

TEST_F(DoctorCommand, MissingPrivilegeAndOfflineNode) {
  Heartbeat(std::chrono::seconds{1});
  ASSERT_TRUE(sim_->SetNodeOnline("pve2", false).ok());
  auto result = Doctor({}, /*json=*/false, "limited.yaml");
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_THAT(result.out, ContainsRegex("proxmox privileges +fail +'limited@pve!plan' lacks"));
  EXPECT_THAT(result.out, HasSubstr("VM.Allocate on /vms"));
  EXPECT_THAT(result.out, ContainsRegex("proxmox nodes +warn +online: pve1, pve3; offline: pve2"));
  EXPECT_THAT(result.out, HasSubstr("How to fix:\n"));
  EXPECT_THAT(result.out, HasSubstr("Some checks failed."));
}

TEST_F(DoctorCommand, UnregisteredProviderAndStaleHeartbeat) {
  Heartbeat(std::chrono::minutes{10});
  auto stale = Doctor({}, /*json=*/true);
  EXPECT_EQ(stale.exit_code, 1) << stale.out << stale.err;
  EXPECT_EQ(Statuses(ParseJson(stale.out)).at("provider heartbeat"), "fail");
  EXPECT_THAT(stale.out, HasSubstr("last heartbeat 10 min ago"));

  ASSERT_TRUE(standin_->RemoveInfraProvider("proxmox").ok());
  auto unregistered = Doctor();
  EXPECT_EQ(unregistered.exit_code, 1) << unregistered.out << unregistered.err;
  EXPECT_THAT(unregistered.out, ContainsRegex("provider registered +fail +InfraProviders/proxmox does not exist"));
  EXPECT_THAT(unregistered.out, ContainsRegex("provider heartbeat +skip +skipped: needs a registered provider"));
  EXPECT_THAT(unregistered.out, HasSubstr("omnictl infraprovider create proxmox"));
}

TEST_F(DoctorCommand, UnreachableProxmoxAndWrongCaSkipTheRest) {
  Heartbeat(std::chrono::seconds{1});
  // Another CA than the simulator's: TLS verification must fail, not be skipped.
  auto other = sim::pve::Simulator::Start({.scenario_yaml = "", .tls = true});
  ASSERT_TRUE(other.ok()) << other.status();
  Write("other-ca.pem", (*other)->ca_certificate_pem());
  Write("wrong-ca.yaml", fmt::format("proxmox:\n  url: {}/api2/json\n  tokenID: \"{}\"\n  tokenSecretFile: {}\n  "
                                     "caFile: {}\n",
                                     sim_->base_url(), sim_->default_token_id(), Path("secret"), Path("other-ca.pem")));
  auto tls = Doctor({}, /*json=*/false, "wrong-ca.yaml");
  EXPECT_EQ(tls.exit_code, 1) << tls.out << tls.err;
  EXPECT_THAT(tls.out, ContainsRegex("proxmox tls +fail"));
  EXPECT_THAT(tls.out, ContainsRegex("proxmox privileges +skip +skipped: needs a verified TLS connection"));
  // The Omni side is checked independently.
  EXPECT_THAT(tls.out, ContainsRegex("provider heartbeat +pass"));

  const std::string url = (*other)->base_url();
  other->reset();  // nothing listens there any more
  Write("gone.yaml", fmt::format("proxmox:\n  url: {}/api2/json\n  tokenID: \"{}\"\n  tokenSecretFile: {}\n", url,
                                 sim_->default_token_id(), Path("secret")));
  auto gone = Doctor({}, /*json=*/false, "gone.yaml");
  EXPECT_EQ(gone.exit_code, 1) << gone.out << gone.err;
  EXPECT_THAT(gone.out, ContainsRegex("proxmox reachable +fail"));
  EXPECT_THAT(gone.out, ContainsRegex("proxmox auth +skip +skipped: needs a reachable Proxmox"));
}

TEST_F(DoctorCommand, NoConfigAtAll) {
  auto result = Run({"doctor"}, {"PROXMOX_URL=", "PROXMOX_TOKEN_ID=", "PROXMOX_TOKEN_SECRET=", "PROXMOX_TOKEN=",
                                 "PROXMOX_USERNAME=", "PROXMOX_PASSWORD=", "OMNI_ENDPOINT=", "OMNI_DOMAIN=",
                                 "OMNI_SERVICE_ACCOUNT_KEY=", "OMNI_INFRA_PROVIDER_KEY="});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_THAT(result.out, ContainsRegex("proxmox config +fail"));
  EXPECT_THAT(result.out, ContainsRegex("omni endpoint +fail"));
  EXPECT_THAT(result.out, ContainsRegex("provider heartbeat +skip"));
}

// A self-hosted Omni whose certificate a private CA signed (made here): without the CA, TLS fails
// and the fix names --omni-ca-file; the CA given by --omni-ca-file, OMNI_CA_FILE,
// GRPC_DEFAULT_SSL_ROOTS_FILE_PATH or SSL_CERT_FILE verifies it; a CA file that is not PEM or not
// there fails before any call.
class DoctorOmniTls : public OperatorWorld {
 protected:
  void SetUp() override {
    OperatorWorld::SetUp();
    auto ca = testing::MakePrivateCa();
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = *ca;
    auto standin = sim::omni::StandIn::Start({.provider_id = "proxmox",
                                              .siderolink_api_url = "https://omni.example.test:8090",
                                              .tls = true,
                                              .tls_cert_pem = ca_.server_cert_pem,
                                              .tls_key_pem = ca_.server_key_pem});
    ASSERT_TRUE(standin.ok()) << standin.status();
    // This Omni, not the world's, is the one doctor is pointed at.
    tls_standin_ = std::move(*standin);
    standin_ = tls_standin_.get();
    ASSERT_EQ(standin_->grpc_endpoint().rfind("https://", 0), 0u);
    Write("key", standin_->provider_key());
    Write("omni-ca.pem", ca_.ca_pem);
    Write("not-pem.pem", "this is not a certificate\n");
    // The provider's heartbeat, as `run` publishes it, over a client that trusts the CA.
    auto options = cli::StandInClientOptions(*standin_, &random_);
    ASSERT_TRUE(options.ok()) << options.status();
    options->tls_root_certs_pem = ca_.ca_pem;
    auto state = omni::MakeGrpcStateClient(*options);
    ASSERT_TRUE(state.ok()) << state.status();
    ASSERT_TRUE(omni::PublishHeartbeat(**state, "proxmox", util::RealClock().Now(), "").ok());
  }

  testing::ProcessResult Doctor(const std::vector<std::string>& extra, const std::vector<std::string>& env = {}) {
    std::vector<std::string> args = {"doctor",
                                     "--config-file",
                                     Path("config.yaml"),
                                     "--omni-api-endpoint",
                                     standin_->grpc_endpoint(),
                                     "--omni-service-account-key-file",
                                     Path("key")};
    args.insert(args.end(), extra.begin(), extra.end());
    // The test's own environment must not decide which roots the child trusts; a variable the test
    // sets is not also emptied (the first of two entries would win).
    std::vector<std::string> clean = env;
    for (const std::string name : {"OMNI_CA_FILE", "SSL_CERT_FILE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"}) {
      const bool set =
          std::any_of(env.begin(), env.end(), [&](const std::string& e) { return e.starts_with(name + "="); });
      if (!set) clean.push_back(name + "=");
    }
    return Run(args, clean);
  }

  testing::PrivateCa ca_;
  std::unique_ptr<sim::omni::StandIn> tls_standin_;
  util::Random random_{11};
};

TEST_F(DoctorOmniTls, WithoutTheCaTlsFailsAndTheFixNamesTheCaFlag) {
  auto result = Doctor({});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_THAT(result.out, ContainsRegex("omni tls +fail +the certificate does not verify against"));
  EXPECT_THAT(result.out, HasSubstr("pass --omni-ca-file (or set OMNI_CA_FILE) with the CA that signed Omni's"));
  EXPECT_THAT(result.out, ContainsRegex("provider heartbeat +skip +skipped: needs a verified TLS connection"));
  EXPECT_EQ(result.out.find("DNS and the firewall"), std::string::npos) << result.out;
}

TEST_F(DoctorOmniTls, TheCaFromTheFlagOrTheEnvironmentVerifiesOmni) {
  const std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>> ways = {
      {{"--omni-ca-file", Path("omni-ca.pem")}, {}},
      {{}, {"OMNI_CA_FILE=" + Path("omni-ca.pem")}},
      {{}, {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=" + Path("omni-ca.pem")}},
      {{}, {"SSL_CERT_FILE=" + Path("omni-ca.pem")}},
  };
  for (const auto& [flags, env] : ways) {
    auto result = Doctor(flags, env);
    const std::string way = flags.empty() ? env[0] : flags[0];
    EXPECT_EQ(result.exit_code, 0) << way << "\n" << result.out << result.err;
    EXPECT_THAT(result.out, ContainsRegex("omni tls +pass +certificate verified against .*omni-ca.pem' \\(1 "
                                          "certificate\\)"))
        << way << "\n"
        << result.out;
    EXPECT_THAT(result.out, ContainsRegex("provider heartbeat +pass +fresh")) << way << "\n" << result.out;
  }
  // The flag names where it came from.
  auto flagged = Doctor({"--omni-ca-file", Path("omni-ca.pem")});
  EXPECT_THAT(flagged.out, HasSubstr("verified against --omni-ca-file '"));
  // `status` reaches Omni through the same flag (the connection every command shares).
  auto status = Run({"--format", "json", "status", "--config-file", Path("config.yaml"), "--omni-api-endpoint",
                     standin_->grpc_endpoint(), "--omni-service-account-key-file", Path("key"), "--omni-ca-file",
                     Path("omni-ca.pem")},
                    {"OMNI_CA_FILE=", "SSL_CERT_FILE=", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH="});
  const auto json = ParseJson(status.out);
  ASSERT_TRUE(json.is_object()) << status.out << status.err;
  EXPECT_EQ(json["provider"]["registered"], true) << status.out;
  EXPECT_EQ(json["provider"]["connected"], true) << status.out;
}

TEST_F(DoctorOmniTls, ACaFileThatIsMissingOrNotPemFailsBeforeAnyCall) {
  auto missing = Doctor({"--omni-ca-file", Path("nope.pem")});
  EXPECT_EQ(missing.exit_code, 1) << missing.out << missing.err;
  EXPECT_THAT(missing.out, ContainsRegex("omni tls +fail +--omni-ca-file '.*nope.pem': cannot read it"));
  EXPECT_THAT(missing.out, ContainsRegex("omni reachable +skip +skipped: needs a usable CA bundle for Omni"));
  auto not_pem = Doctor({}, {"SSL_CERT_FILE=" + Path("not-pem.pem")});
  EXPECT_EQ(not_pem.exit_code, 1) << not_pem.out << not_pem.err;
  EXPECT_THAT(not_pem.out, ContainsRegex("omni tls +fail +SSL_CERT_FILE '.*not-pem.pem': holds no PEM certificate"));
  EXPECT_THAT(not_pem.out, HasSubstr("fix SSL_CERT_FILE or unset it"));
  // Skipping verification is warned about, like insecureSkipVerify for Proxmox.
  auto insecure = Doctor({"--insecure-skip-verify"});
  EXPECT_EQ(insecure.exit_code, 0) << insecure.out << insecure.err;
  EXPECT_THAT(insecure.out, ContainsRegex("omni tls +warn +certificate verification skipped"));
}

}  // namespace
}  // namespace omni_proxmox::cli
