// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox healthcheck` as a separate process against a status server hosted by the test.

#include <atomic>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/status_server.h"
#include "support/subprocess.h"

namespace omni_proxmox::cli {
namespace {

using omni_proxmox::testing::RunProcess;
using ::testing::HasSubstr;

class HealthcheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StatusServerOptions options;
    options.listen = "127.0.0.1:0";
    options.readiness = [this]() -> absl::Status {
      if (ready_) return absl::OkStatus();
      return absl::UnavailableError("Proxmox: connection refused");
    };
    auto server = StatusServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  std::string Listen() const { return fmt::format("127.0.0.1:{}", server_->port()); }

  std::atomic<bool> ready_{false};
  std::unique_ptr<StatusServer> server_;
};

TEST_F(HealthcheckTest, LiveServerIsHealthyWhetherOrNotReady) {
  auto result = RunProcess({OP_BINARY, "healthcheck", "--listen", Listen()});
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr(fmt::format("ok: {}/healthz", Listen())));
}

TEST_F(HealthcheckTest, ReadyProbesReadyzAndShowsTheReason) {
  auto not_ready = RunProcess({OP_BINARY, "healthcheck", "--ready", "--listen", Listen()});
  EXPECT_EQ(not_ready.exit_code, 1) << not_ready.out << not_ready.err;
  EXPECT_THAT(not_ready.out, HasSubstr("/readyz answered 503: Proxmox: connection refused"));
  ready_ = true;
  auto ready = RunProcess({OP_BINARY, "healthcheck", "--ready", "--listen", Listen()});
  EXPECT_EQ(ready.exit_code, 0) << ready.out << ready.err;
}

TEST_F(HealthcheckTest, AddressFromTheEnvironmentAndWildcardsProbeLoopback) {
  // OMNI_PROXMOX_LISTEN is what `run --listen` reads too; ":PORT" means every interface.
  auto result = RunProcess({OP_BINARY, "healthcheck"}, "", {fmt::format("OMNI_PROXMOX_LISTEN=:{}", server_->port())});
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr(fmt::format("ok: 127.0.0.1:{}/healthz", server_->port())));
  auto wildcard = RunProcess({OP_BINARY, "healthcheck", "--listen", fmt::format("0.0.0.0:{}", server_->port())});
  EXPECT_EQ(wildcard.exit_code, 0) << wildcard.out << wildcard.err;
}

TEST_F(HealthcheckTest, NoServerIsUnhealthy) {
  const std::string listen = Listen();
  server_->Stop();
  auto result = RunProcess({OP_BINARY, "healthcheck", "--listen", listen, "--timeout", "2"});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr(fmt::format("unhealthy: no answer from {}/healthz", listen)));
}

TEST(HealthcheckUsage, BadOrPortlessAddressesAreUsageErrors) {
  auto bad = RunProcess({OP_BINARY, "healthcheck", "--listen", "localhost"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("--listen 'localhost': missing ':PORT'"));
  auto zero = RunProcess({OP_BINARY, "healthcheck", "--listen", "127.0.0.1:0"});
  EXPECT_EQ(zero.exit_code, 2);
  EXPECT_THAT(zero.err, HasSubstr("port 0 names no server"));
}

}  // namespace
}  // namespace omni_proxmox::cli
