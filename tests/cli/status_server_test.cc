// SPDX-License-Identifier: Apache-2.0
#include "cli/status_server.h"

#include <httplib.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "util/metrics.h"

namespace omni_proxmox::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::unique_ptr<StatusServer> MustStart(StatusServerOptions options) {
  auto server = StatusServer::Start(std::move(options));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

httplib::Client ClientFor(const StatusServer& server) {
  httplib::Client client("127.0.0.1", server.port());
  client.set_connection_timeout(5);
  client.set_read_timeout(5);
  return client;
}

TEST(ParseListenAddress, AcceptsTheDocumentedForms) {
  auto a = ParseListenAddress("127.0.0.1:9090");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 9090);
  a = ParseListenAddress(":8080");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "0.0.0.0");
  EXPECT_EQ(a->port, 8080);
  a = ParseListenAddress("[::1]:0");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(a->port, 0);
  a = ParseListenAddress("localhost:65535");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "localhost");
}

TEST(ParseListenAddress, ErrorsNameTheFlagAndTheProblem) {
  for (const char* bad : {"", "9090", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000", "127.0.0.1:-1", "::1:80",
                          "[::1:80", "[::1]80", "[]:80", "1.2.3.4:80x"}) {
    auto a = ParseListenAddress(bad);
    ASSERT_FALSE(a.ok()) << bad;
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(a.status().message()), StartsWith(fmt::format("--listen '{}': ", bad)));
    EXPECT_THAT(std::string(a.status().message()), HasSubstr("HOST:PORT"));
  }
  EXPECT_THAT(std::string(ParseListenAddress("1.2.3.4:70000").status().message()), HasSubstr("0 to 65535"));
  EXPECT_THAT(std::string(ParseListenAddress("::1:80").status().message()), HasSubstr("brackets"));
}

TEST(StatusServer, HealthzAndUnknownPaths) {
  auto server = MustStart({.listen = "127.0.0.1:0"});
  ASSERT_NE(server, nullptr);
  EXPECT_GT(server->port(), 0);
  auto client = ClientFor(*server);
  auto res = client.Get("/healthz");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ok");

  res = client.Get("/nope");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_THAT(res->body, HasSubstr("/healthz"));
  res = client.Post("/healthz", "x", "text/plain");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
}

TEST(StatusServer, ReadyzFollowsTheCallback) {
  std::mutex mu;
  absl::Status state = absl::UnavailableError("omni: not connected yet");
  auto server = MustStart({.listen = "127.0.0.1:0", .readiness = [&] {
                             std::lock_guard lock(mu);
                             return state;
                           }});
  ASSERT_NE(server, nullptr);
  auto client = ClientFor(*server);
  auto res = client.Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->body, "omni: not connected yet");
  {
    std::lock_guard lock(mu);
    state = absl::OkStatus();
  }
  res = client.Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ok");
}

TEST(StatusServer, ReadyWithoutCallback) {
  auto server = MustStart({.listen = "127.0.0.1:0"});
  ASSERT_NE(server, nullptr);
  auto res = ClientFor(*server).Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST(StatusServer, MetricsServesTheRegistry) {
  util::MetricsRegistry registry;
  util::Counter& requests =
      registry.GetCounter("omni_proxmox_proxmox_requests_total", "Proxmox API requests.", {{"result", "ok"}});
  auto server = MustStart({.listen = "127.0.0.1:0", .metrics = &registry});
  ASSERT_NE(server, nullptr);
  auto client = ClientFor(*server);
  requests.Increment(41);
  requests.Increment();
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(res->get_header_value("Content-Type"), StartsWith("text/plain; version=0.0.4"));
  EXPECT_EQ(res->body, registry.RenderText());
  EXPECT_THAT(res->body, HasSubstr("omni_proxmox_proxmox_requests_total{result=\"ok\"} 42\n"));
}

TEST(StatusServer, AddressInUseNamesTheFlag) {
  auto first = MustStart({.listen = "127.0.0.1:0"});
  ASSERT_NE(first, nullptr);
  const std::string listen = fmt::format("127.0.0.1:{}", first->port());
  auto second = StatusServer::Start({.listen = listen});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()), StartsWith("--listen " + listen + ": cannot listen: "));
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("address already in use"));
  // The first server is unaffected.
  auto res = ClientFor(*first).Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST(StatusServer, MalformedListenIsInvalidArgument) {
  auto server = StatusServer::Start({.listen = "localhost"});
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(server.status().message()), StartsWith("--listen 'localhost'"));
}

TEST(StatusServer, NonLocalAddressIsReported) {
  // 192.0.2.1 (TEST-NET-1) is never assigned to a local interface.
  auto server = StatusServer::Start({.listen = "192.0.2.1:0"});
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("address not available"));
}

TEST(StatusServer, StopClosesThePortAndIsIdempotent) {
  auto server = MustStart({.listen = "127.0.0.1:0"});
  ASSERT_NE(server, nullptr);
  auto client = ClientFor(*server);
  ASSERT_TRUE(client.Get("/healthz"));
  server->Stop();
  server->Stop();
  auto res = client.Get("/healthz");
  EXPECT_FALSE(res);
}

TEST(StatusServer, StartAndImmediateStopNeverHangs) {
  // Stop() may race the listen loop's start; every iteration must still return.
  for (int i = 0; i < 50; ++i) {
    auto server = MustStart({.listen = "127.0.0.1:0"});
    ASSERT_NE(server, nullptr);
  }
}

TEST(StatusServer, ConcurrentScrapes) {
  util::MetricsRegistry registry;
  util::Counter& c = registry.GetCounter("c_total", "h");
  std::atomic<int> ready_calls{0};
  auto server = MustStart({.listen = "127.0.0.1:0",
                           .readiness =
                               [&] {
                                 ready_calls.fetch_add(1);
                                 return absl::OkStatus();
                               },
                           .metrics = &registry});
  ASSERT_NE(server, nullptr);
  constexpr int kThreads = 4;
  constexpr int kRequests = 25;
  std::atomic<int> ok{0};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        auto client = ClientFor(*server);
        for (int i = 0; i < kRequests; ++i) {
          c.Increment();
          auto m = client.Get("/metrics");
          auto r = client.Get("/readyz");
          if (m && m->status == 200 && r && r->status == 200) ok.fetch_add(1);
        }
      });
    }
  }
  EXPECT_EQ(ok.load(), kThreads * kRequests);
  EXPECT_EQ(ready_calls.load(), kThreads * kRequests);
  auto res = ClientFor(*server).Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_THAT(res->body, HasSubstr(fmt::format("c_total {}\n", kThreads * kRequests)));
}

}  // namespace
}  // namespace omni_proxmox::cli
