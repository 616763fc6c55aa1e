// SPDX-License-Identifier: Apache-2.0
// Every query of deploy/grafana/omni-proxmox.json and deploy/prometheus/alerts.yaml names metrics
// (and label names) that a running provider really exports at /metrics: the test runs
// `omni-proxmox run` against the simulators, provisions and tears down a machine so every code path
// that registers a series has run, and checks each query against the scraped exposition.

#include <httplib.h>
#include <signal.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "cli/provider_world.h"
#include "support/subprocess.h"

namespace omni_proxmox::cli {
namespace {

using omni_proxmox::testing::ChildProcess;
using ::testing::IsEmpty;

// Metric name -> label names seen on its samples, from the text exposition format.
using Exposition = std::map<std::string, std::set<std::string>>;

Exposition ParseExposition(const std::string& text) {
  Exposition out;
  static const std::regex kLabel(R"(([a-zA-Z_][a-zA-Z0-9_]*)=")");
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line.front() == '#') continue;
    const auto name_end = line.find_first_of("{ ");
    auto& labels = out[line.substr(0, name_end)];
    if (name_end != std::string::npos && line[name_end] == '{') {
      const std::string inside = line.substr(name_end + 1, line.find('}') - name_end - 1);
      for (auto it = std::sregex_iterator(inside.begin(), inside.end(), kLabel); it != std::sregex_iterator(); ++it) {
        labels.insert((*it)[1]);
      }
    }
  }
  return out;
}

// What is wrong with one query against the exposition: metrics it names that are not exported,
// label names its selectors match on that no sample of that metric has, or no metric of ours at
// all. Labels Prometheus adds at scrape time (instance, job) are allowed everywhere.
std::vector<std::string> Problems(const std::string& query, const Exposition& exported) {
  std::vector<std::string> problems;
  static const std::regex kMetric(R"(\bomni_proxmox_[a-zA-Z0-9_]+)");
  static const std::regex kSelector(R"((omni_proxmox_[a-zA-Z0-9_]+)\{([^}]*)\})");
  static const std::regex kMatcher(R"(([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=))");
  int named = 0;
  for (auto it = std::sregex_iterator(query.begin(), query.end(), kMetric); it != std::sregex_iterator(); ++it) {
    ++named;
    if (!exported.contains(it->str())) problems.push_back(fmt::format("metric {} is not exported", it->str()));
  }
  if (named == 0) problems.push_back("names no omni_proxmox_ metric");
  for (auto it = std::sregex_iterator(query.begin(), query.end(), kSelector); it != std::sregex_iterator(); ++it) {
    const std::string metric = (*it)[1];
    const std::string matchers = (*it)[2];
    const auto found = exported.find(metric);
    if (found == exported.end()) continue;
    for (auto m = std::sregex_iterator(matchers.begin(), matchers.end(), kMatcher); m != std::sregex_iterator(); ++m) {
      const std::string label = (*m)[1];
      if (label != "instance" && label != "job" && !found->second.contains(label)) {
        problems.push_back(fmt::format("{} has no label {}", metric, label));
      }
    }
  }
  return problems;
}

std::string ReadSource(const std::string& relative) {
  std::ifstream in(std::string(OP_SOURCE_DIR) + "/" + relative);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Every PromQL expression of the dashboard (panel targets, the instance variable's query) and of
// the alerting rules, keyed by where it is.
std::vector<std::pair<std::string, std::string>> Queries() {
  std::vector<std::pair<std::string, std::string>> queries;
  const auto dashboard = nlohmann::json::parse(ReadSource("deploy/grafana/omni-proxmox.json"));
  for (const auto& panel : dashboard["panels"]) {
    for (const auto& target : panel.value("targets", nlohmann::json::array())) {
      queries.emplace_back(fmt::format("dashboard panel '{}'", panel["title"].get<std::string>()), target["expr"]);
    }
  }
  for (const auto& variable : dashboard["templating"]["list"]) {
    if (variable["type"] == "query") {
      queries.emplace_back(fmt::format("dashboard variable '{}'", variable["name"].get<std::string>()),
                           variable["query"]["query"]);
    }
  }
  const YAML::Node rules = YAML::Load(ReadSource("deploy/prometheus/alerts.yaml"));
  for (const auto& group : rules["groups"]) {
    for (const auto& rule : group["rules"]) {
      queries.emplace_back(fmt::format("alert {}", rule["alert"].as<std::string>()), rule["expr"].as<std::string>());
    }
  }
  return queries;
}

TEST(DashboardQueries, TheCheckerCatchesUnknownMetricsAndLabels) {
  const Exposition exported = ParseExposition(
      "# TYPE omni_proxmox_requests gauge\nomni_proxmox_requests{stage=\"pending\"} 1\n"
      "omni_proxmox_step_duration_seconds_bucket{step=\"createVm\",le=\"+Inf\"} 1\n");
  EXPECT_THAT(Problems("sum(omni_proxmox_requests{instance=~\"$instance\", stage=\"failed\"})", exported), IsEmpty());
  EXPECT_THAT(Problems("rate(omni_proxmox_step_duration_seconds_bucket[5m])", exported), IsEmpty());
  EXPECT_EQ(Problems("omni_proxmox_vms_missing > 0", exported),
            std::vector<std::string>{"metric omni_proxmox_vms_missing is not exported"});
  EXPECT_EQ(Problems("omni_proxmox_requests{node=\"pve1\"}", exported),
            std::vector<std::string>{"omni_proxmox_requests has no label node"});
  EXPECT_EQ(Problems("up == 0", exported), std::vector<std::string>{"names no omni_proxmox_ metric"});
}

TEST(DashboardQueries, EveryPanelOfTheRowsTheIssueAsksForIsThere) {
  const auto dashboard = nlohmann::json::parse(ReadSource("deploy/grafana/omni-proxmox.json"));
  std::set<std::string> metrics;
  for (const auto& [where, query] : Queries()) {
    static const std::regex kMetric(R"(\bomni_proxmox_[a-zA-Z0-9_]+)");
    for (auto it = std::sregex_iterator(query.begin(), query.end(), kMetric); it != std::sregex_iterator(); ++it) {
      metrics.insert(it->str());
    }
  }
  // Requests by stage, step durations, Proxmox calls and errors, tasks in flight, VMs per node, GC, Omni.
  for (const char* metric : {"omni_proxmox_requests", "omni_proxmox_step_duration_seconds_bucket",
                             "omni_proxmox_pve_requests_total", "omni_proxmox_pve_tasks_in_flight",
                             "omni_proxmox_vms_managed", "omni_proxmox_gc_findings", "omni_proxmox_omni_up"}) {
    EXPECT_TRUE(metrics.contains(metric)) << metric;
  }
}

class DashboardMetricsTest : public ProviderWorld {};

TEST_F(DashboardMetricsTest, EveryQueryNamesWhatARunningProviderExports) {
  ASSERT_TRUE(standin_
                  ->ApplyMachineClass("workers",
                                      "cores: 2\nmemory: 2048\ndisk_size: 10\n"
                                      "storage_selector: type == \"lvmthin\"\n")
                  .ok());
  ChildProcess provider(
      {OP_BINARY, "run", "--config-file", Path("config.yaml"), "--omni-api-endpoint", standin_->grpc_endpoint(),
       "--omni-service-account-key-file", Path("key"), "--listen", "127.0.0.1:0", "--gc-interval", "1s"},
      {}, Path("provider.log"));
  int port = 0;
  ASSERT_TRUE(Eventually([&] {
    std::smatch m;
    const std::string log = provider.Log();
    if (!std::regex_search(log, m, std::regex(R"(/metrics on 127\.0\.0\.1:([0-9]+))"))) return false;
    port = std::stoi(m[1]);
    return true;
  })) << provider.Log();
  // One machine up and down: creates, starts, deletes, task slots, step timings (once the provider
  // has published its status, which Omni needs to admit the request set).
  ASSERT_TRUE(standin_->WaitFor([&] { return standin_->ProviderStatusPublished("proxmox"); }, std::chrono::seconds{60}))
      << provider.Log();
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 1).ok());
  ASSERT_TRUE(Eventually([&] { return standin_->JoinedMachines().size() == 1; })) << provider.Log();
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 0).ok());
  ASSERT_TRUE(Eventually([&] { return sim_->StateForTest()["vms"].empty(); })) << provider.Log();

  const auto queries = Queries();
  ASSERT_GE(queries.size(), 20u);
  httplib::Client status("127.0.0.1", port);
  status.set_read_timeout(10, 0);
  // The fleet gauges and the GC cycle register their series within their intervals (15 s, 1 s).
  std::vector<std::string> problems;
  Exposition exported;
  Eventually([&] {
    auto reply = status.Get("/metrics");
    if (!reply || reply->status != 200) return false;
    exported = ParseExposition(reply->body);
    problems.clear();
    for (const auto& [where, query] : queries) {
      for (const auto& problem : Problems(query, exported)) problems.push_back(where + ": " + problem);
    }
    return problems.empty();
  });
  EXPECT_THAT(problems, IsEmpty());
  provider.Signal(SIGTERM);
  EXPECT_EQ(provider.Wait(std::chrono::seconds{30}), 0) << provider.Log();
}

}  // namespace
}  // namespace omni_proxmox::cli
