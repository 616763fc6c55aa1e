// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox run` as a separate process against the simulators hosted by the test.

#include <httplib.h>
#include <signal.h>

#include <cstdio>
#include <regex>
#include <sstream>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/provider_world.h"
#include "support/subprocess.h"

namespace omni_proxmox::cli {
namespace {

using omni_proxmox::testing::ChildProcess;
using omni_proxmox::testing::RunProcess;
using ::testing::HasSubstr;

// The simulator's built-in cluster and the stand-in, with the files `run` reads.
class RunCommandTest : public ProviderWorld {};

TEST_F(RunCommandTest, GoProviderFlagsProvisionAndStopCleanlyOnSigterm) {
  ASSERT_TRUE(standin_
                  ->ApplyMachineClass("workers",
                                      "cores: 2\nmemory: 4096\ndisk_size: 20\nstorage_selector: type == "
                                      "\"lvmthin\"\n")
                  .ok());
  // Only the Go provider's flags (plus ours for the key file and the listen port): `run` is implied.
  ChildProcess provider(
      {OP_BINARY, "--config-file", Path("config.yaml"), "--omni-api-endpoint", standin_->grpc_endpoint(),
       "--omni-service-account-key-file", Path("key"), "--listen", "127.0.0.1:0"},
      {}, Path("provider.log"));
  ASSERT_TRUE(standin_->WaitFor(
      [&] { return standin_->ProviderConnected("proxmox") && standin_->ProviderStatusPublished("proxmox"); },
      std::chrono::seconds{30}))
      << provider.Log();
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 2).ok());
  ASSERT_TRUE(standin_->WaitFor([&] { return standin_->JoinedMachines().size() == 2; }, std::chrono::seconds{60}))
      << provider.Log();
  EXPECT_EQ(sim_->StateForTest()["vms"].size(), 2u);
  provider.Signal(SIGTERM);
  EXPECT_EQ(provider.Wait(std::chrono::seconds{30}), 0) << provider.Log();
  const std::string log = provider.Log();
  EXPECT_THAT(log, HasSubstr("running as provider 'proxmox'"));
  // Secrets never reach the log.
  EXPECT_EQ(log.find(sim_->default_token_secret()), std::string::npos);
  EXPECT_EQ(log.find(standin_->provider_key()), std::string::npos);
}

TEST_F(RunCommandTest, ProviderIdCaseMismatchNamesBoth) {
  auto result =
      RunProcess({OP_BINARY, "run", "--config-file", Path("config.yaml"), "--omni-api-endpoint",
                  standin_->grpc_endpoint(), "--omni-service-account-key-file", Path("key"), "--id", "Proxmox"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr("provider ID 'Proxmox' (--id) differs only in case from the key's identity "
                                    "'proxmox'"));
}

TEST_F(RunCommandTest, MissingKeyAndEndpointAreUsageErrors) {
  auto no_key = RunProcess(
      {OP_BINARY, "run", "--config-file", Path("config.yaml"), "--omni-api-endpoint", standin_->grpc_endpoint()}, "",
      {"OMNI_SERVICE_ACCOUNT_KEY=", "OMNI_INFRA_PROVIDER_KEY="});
  EXPECT_EQ(no_key.exit_code, 2);
  EXPECT_THAT(no_key.err, HasSubstr("no infra provider key"));
  auto no_endpoint = RunProcess(
      {OP_BINARY, "run", "--config-file", Path("config.yaml"), "--omni-service-account-key-file", Path("key")}, "",
      {"OMNI_ENDPOINT=", "OMNI_DOMAIN="});
  EXPECT_EQ(no_endpoint.exit_code, 2);
  EXPECT_THAT(no_endpoint.err, HasSubstr("no Omni endpoint"));
}

TEST_F(RunCommandTest, KeyFileFromTheEnvironmentIsReadAndAMissingOneNamed) {
  // OMNI_INFRA_PROVIDER_KEY_FILE: the compose stack's secret file (deploy/compose/.env.example).
  ChildProcess provider({OP_BINARY, "--config-file", Path("config.yaml"), "--listen", "127.0.0.1:0"},
                        {"OMNI_INFRA_PROVIDER_KEY_FILE=" + Path("key"), "OMNI_ENDPOINT=" + standin_->grpc_endpoint()},
                        Path("provider.log"));
  EXPECT_TRUE(standin_->WaitFor(
      [&] { return standin_->ProviderConnected("proxmox") && standin_->ProviderStatusPublished("proxmox"); },
      std::chrono::seconds{30}))
      << provider.Log();
  provider.Signal(SIGTERM);
  EXPECT_EQ(provider.Wait(std::chrono::seconds{30}), 0) << provider.Log();

  auto missing = RunProcess({OP_BINARY, "run", "--config-file", Path("config.yaml")}, "",
                            {"OMNI_INFRA_PROVIDER_KEY_FILE=" + Path("no-such-key"), "OMNI_SERVICE_ACCOUNT_KEY=",
                             "OMNI_INFRA_PROVIDER_KEY=", "OMNI_ENDPOINT=" + standin_->grpc_endpoint()});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, HasSubstr("OMNI_INFRA_PROVIDER_KEY_FILE: cannot read '" + Path("no-such-key") + "'"));
}

TEST_F(RunCommandTest, OperatorEnvNamesWork) {
  // OMNI_INFRA_PROVIDER_KEY as in the operator document's .env (OMNI_DOMAIN would mean https, so the
  // endpoint comes from OMNI_ENDPOINT here).
  ChildProcess provider(
      {OP_BINARY, "run", "--config-file", Path("config.yaml"), "--listen", "127.0.0.1:0"},
      {"OMNI_INFRA_PROVIDER_KEY=" + standin_->provider_key(), "OMNI_ENDPOINT=" + standin_->grpc_endpoint()},
      Path("provider.log"));
  EXPECT_TRUE(standin_->WaitFor(
      [&] { return standin_->ProviderConnected("proxmox") && standin_->ProviderStatusPublished("proxmox"); },
      std::chrono::seconds{30}))
      << provider.Log();
  provider.Signal(SIGINT);
  EXPECT_EQ(provider.Wait(std::chrono::seconds{30}), 0) << provider.Log();
}

// The limits and observability as an operator meets them: flags, /metrics, /readyz and JSON logs.
TEST_F(RunCommandTest, LimitsMetricsReadinessAndJsonLogs) {
  ASSERT_TRUE(standin_
                  ->ApplyMachineClass("workers",
                                      "cores: 2\nmemory: 4096\ndisk_size: 20\nstorage_selector: type == "
                                      "\"lvmthin\"\n")
                  .ok());
  ChildProcess provider(
      {OP_BINARY, "--log-format", "json", "run", "--config-file", Path("config.yaml"), "--omni-api-endpoint",
       standin_->grpc_endpoint(), "--omni-service-account-key-file", Path("key"), "--listen", "127.0.0.1:0",
       "--max-tasks-per-node", "1", "--pve-requests-per-second", "200"},
      {}, Path("provider.log"));
  int port = 0;
  ASSERT_TRUE(standin_->WaitFor(
      [&] {
        std::smatch m;
        const std::string log = provider.Log();
        if (!std::regex_search(log, m, std::regex(R"(/metrics on 127\.0\.0\.1:([0-9]+))"))) return false;
        port = std::stoi(m[1]);
        return true;
      },
      std::chrono::seconds{30}))
      << provider.Log();
  httplib::Client status("127.0.0.1", port);
  status.set_read_timeout(10, 0);
  ASSERT_TRUE(standin_->WaitFor(
      [&] {
        auto ready = status.Get("/readyz");
        return ready && ready->status == 200;
      },
      std::chrono::seconds{60}))
      << provider.Log();
  ASSERT_TRUE(
      standin_->WaitFor([&] { return standin_->ProviderStatusPublished("proxmox"); }, std::chrono::seconds{30}));

  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 2).ok());
  ASSERT_TRUE(standin_->WaitFor([&] { return standin_->JoinedMachines().size() == 2; }, std::chrono::seconds{60}))
      << provider.Log();
  // The fleet gauges follow within their 15 s refresh.
  std::string metrics;
  EXPECT_TRUE(standin_->WaitFor(
      [&] {
        auto reply = status.Get("/metrics");
        if (!reply || reply->status != 200) return false;
        metrics = reply->body;
        return metrics.find("omni_proxmox_requests{stage=\"provisioned\"} 2\n") != std::string::npos;
      },
      std::chrono::seconds{60}))
      << metrics;
  EXPECT_THAT(metrics, HasSubstr("omni_proxmox_pve_requests_total{endpoint=\"/nodes/{node}/qemu\",method=\"POST\","
                                 "result=\"ok\"} 2\n"));
  EXPECT_THAT(metrics, HasSubstr("# TYPE omni_proxmox_pve_request_duration_seconds histogram\n"));
  EXPECT_THAT(metrics, HasSubstr("omni_proxmox_pve_rate_limited_seconds_total{limit=\"tasks_per_node\"}"));
  EXPECT_THAT(metrics, HasSubstr("omni_proxmox_step_duration_seconds_bucket{step=\"createVm\""));
  int managed_vms = 0;
  const std::regex managed_line(R"(omni_proxmox_vms_managed\{node="[^"]+"\} ([0-9]+))");
  for (auto it = std::sregex_iterator(metrics.begin(), metrics.end(), managed_line); it != std::sregex_iterator();
       ++it) {
    managed_vms += std::stoi((*it)[1]);
  }
  EXPECT_EQ(managed_vms, 2) << metrics;

  provider.Signal(SIGTERM);
  EXPECT_EQ(provider.Wait(std::chrono::seconds{30}), 0) << provider.Log();
  // JSON lines; those about a request carry its ID and step as fields.
  std::istringstream lines(provider.Log());
  int request_lines = 0;
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("{")) continue;  // gRPC's own stderr lines are not ours to format
    const auto entry = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(entry.is_object()) << line;
    std::smatch m;
    const std::string msg = entry["msg"];
    if (!std::regex_search(msg, m, std::regex(R"(request (workers-[0-9a-z]+))"))) continue;
    ++request_lines;
    EXPECT_EQ(entry.value("request_id", ""), m[1].str()) << line;
    EXPECT_FALSE(entry.value("step", "").empty()) << line;
  }
  EXPECT_GE(request_lines, 2) << provider.Log();
}

TEST_F(RunCommandTest, BadLimitsAreUsageErrorsNamingTheFlag) {
  for (const auto& [flag, value] : std::vector<std::pair<std::string, std::string>>{
           {"--max-tasks-per-node", "-1"}, {"--pve-requests-per-second", "-5"}}) {
    auto result = RunProcess({OP_BINARY, "run", "--config-file", Path("config.yaml"), "--omni-api-endpoint",
                              standin_->grpc_endpoint(), "--omni-service-account-key-file", Path("key"), flag, value});
    EXPECT_EQ(result.exit_code, 2) << result.err;
    EXPECT_THAT(result.err, HasSubstr(flag));
    EXPECT_THAT(result.err, HasSubstr("0 for no limit"));
  }
}

}  // namespace
}  // namespace omni_proxmox::cli
