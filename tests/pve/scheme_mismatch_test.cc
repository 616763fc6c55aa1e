// SPDX-License-Identifier: Apache-2.0
// A Proxmox URL whose scheme is not what the port speaks, against the simulator over real
// sockets: https:// to a plain-http server (the TLS handshake gets no answer; before, three
// attempts of a 10 s connect timeout, then "no complete reply") and http:// to a TLS server
// (before, "Server returned nothing", retried). Both end at the first attempt with a kTls error
// that names the scheme to write; a port where nothing listens is still an ordinary transient
// connection failure.

#include <signal.h>

#include <atomic>
#include <chrono>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "pve/client.h"
#include "pve/errors.h"
#include "sim/pve/simulator.h"
#include "util/clock.h"

namespace omni_proxmox::pve {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

const bool kSigpipeIgnored = [] {
  signal(SIGPIPE, SIG_IGN);
  return true;
}();

class SchemeMismatchTest : public ::testing::Test {
 protected:
  void Start(bool tls) {
    sim::pve::SimulatorOptions options;
    options.tls = tls;
    options.clock = &clock_;
    auto sim = sim::pve::Simulator::Start(options);
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);
  }

  // The simulator's own URL with the other scheme, three attempts allowed.
  ClientOptions Options(const std::string& scheme) {
    ClientOptions o;
    o.base_url = fmt::format("{}://127.0.0.1:{}/api2/json", scheme, sim_->port());
    o.token_id = sim_->default_token_id();
    o.token_secret = util::Secret<std::string>(sim_->default_token_secret());
    o.insecure_skip_verify = true;  // the scheme is the point, not the certificate
    o.connect_timeout = 1s;         // bounds the unanswered handshake (10 s by default)
    o.request_timeout = 20s;
    o.retry.max_attempts = 3;
    o.random = std::make_shared<util::Random>(42);
    o.sleep = [this](milliseconds d) {
      ++sleeps_;
      clock_.Advance(d);
    };
    return o;
  }

  util::ManualClock clock_;
  std::unique_ptr<sim::pve::Simulator> sim_;
  std::atomic<int> sleeps_{0};
};

TEST_F(SchemeMismatchTest, HttpsToAPlainHttpServerSaysSoAtTheFirstAttempt) {
  Start(/*tls=*/false);
  auto client = MakeHttpClient(Options("https"), clock_);
  ASSERT_TRUE(client.ok()) << client.status();
  auto version = (*client)->Version();
  ASSERT_FALSE(version.ok());
  EXPECT_EQ(ClassifyError(version.status()), ErrorKind::kTls) << version.status();
  const std::string message(version.status().message());
  EXPECT_THAT(message,
              HasSubstr(fmt::format("https://127.0.0.1:{}/api2/json answers plain http, not TLS", sim_->port())));
  EXPECT_THAT(message, HasSubstr("port 8006"));
  EXPECT_THAT(message, HasSubstr(fmt::format("write http://127.0.0.1:{}/api2/json", sim_->port())));
  // Not retried (every retry waits through options.sleep first): one handshake wait, not three.
  EXPECT_EQ(sleeps_.load(), 0);
  EXPECT_EQ(sim_->RequestCount("GET /version"), 0u);  // nothing the API understood
}

TEST_F(SchemeMismatchTest, HttpToATlsServerSaysSoAtTheFirstAttempt) {
  Start(/*tls=*/true);
  auto client = MakeHttpClient(Options("http"), clock_);
  ASSERT_TRUE(client.ok()) << client.status();
  auto version = (*client)->Version();
  ASSERT_FALSE(version.ok());
  EXPECT_EQ(ClassifyError(version.status()), ErrorKind::kTls) << version.status();
  const std::string message(version.status().message());
  EXPECT_THAT(message,
              HasSubstr(fmt::format("http://127.0.0.1:{}/api2/json speaks TLS, not plain http", sim_->port())));
  EXPECT_THAT(message, HasSubstr(fmt::format("write https://127.0.0.1:{}/api2/json in proxmox.url", sim_->port())));
  EXPECT_EQ(sleeps_.load(), 0);
  // A write is refused the same way, and nothing was created.
  auto create = (*client)->CreateVm("pve1", 100, {{"memory", "512"}});
  ASSERT_FALSE(create.ok());
  EXPECT_EQ(ClassifyError(create.status()), ErrorKind::kTls) << create.status();
  EXPECT_EQ(sim_->RequestCount("POST /nodes/pve1/qemu"), 0u);
}

TEST_F(SchemeMismatchTest, TheRightSchemeStillWorks) {
  Start(/*tls=*/false);
  auto client = MakeHttpClient(Options("http"), clock_);
  ASSERT_TRUE(client.ok()) << client.status();
  auto version = (*client)->Version();
  EXPECT_TRUE(version.ok()) << version.status();
}

TEST_F(SchemeMismatchTest, NothingListeningIsStillATransientConnectionFailure) {
  Start(/*tls=*/false);
  ClientOptions options = Options("https");
  sim_.reset();  // the port is free now
  auto client = MakeHttpClient(options, clock_);
  ASSERT_TRUE(client.ok()) << client.status();
  auto version = (*client)->Version();
  ASSERT_FALSE(version.ok());
  EXPECT_EQ(ClassifyError(version.status()), ErrorKind::kTransient) << version.status();
  EXPECT_EQ(sleeps_.load(), 2);
}

}  // namespace
}  // namespace omni_proxmox::pve
