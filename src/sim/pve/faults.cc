// SPDX-License-Identifier: Apache-2.0
// Fault injection: requests whose "<METHOD> <path>" matches a pattern are delayed, dropped or answered with an
// error (optionally after being carried out), and the next task of a type can be made to fail or warn.
// Set through Simulator::SetFault / FailNextTask, the scenario's `faults:` and POST /_sim/fault. Serves no
// PVE endpoint.

#include <thread>

#include "sim/pve/internal/impl.h"

namespace omni_proxmox::sim::pve {
namespace {

// '*' matches any run of characters.
bool GlobMatch(const std::string& pattern, const std::string& text) {
  std::size_t p = 0, t = 0, star = std::string::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace

std::optional<FaultSpec> Simulator::Impl::DrawFault(const HttpRequest& request) {
  const std::string api_path = request.path.rfind("/api2/json", 0) == 0 ? request.path.substr(10) : request.path;
  std::lock_guard lock(mutex_);
  for (const auto& [pattern, spec] : faults_) {
    if (GlobMatch(pattern, request.method + " " + api_path)) {
      if (random_.Bernoulli(spec.error_rate)) return spec;
      return std::nullopt;  // the first matching pattern decides
    }
  }
  return std::nullopt;
}

Reply Simulator::Impl::ServeFaulted(const HttpRequest& request, const FaultSpec& fault, std::mt19937_64& rng) {
  Reply reply;
  if (fault.after_effect) reply = Dispatch(request, rng);
  if (fault.latency.count() > 0) std::this_thread::sleep_for(fault.latency);
  if (fault.drop_connection) {
    reply = Reply{};
    reply.drop = true;
  } else if (fault.status_code != 0) {
    reply = Error(fault.status_code, fault.message);
    reply.empty_body = fault.status_code >= 595;
  } else if (!fault.after_effect) {
    reply = Dispatch(request, rng);
  }
  return reply;
}

std::string Simulator::Impl::TakeTaskFailureLocked(Task& task) {
  for (auto it = task_failures_.begin(); it != task_failures_.end(); ++it) {
    if (it->type != task.type || (!it->node.empty() && it->node != task.node)) continue;
    std::string error;
    if (it->error == "WARNINGS") {
      task.log.push_back("WARN: injected warning");
      ++task.warnings;
    } else {
      error = it->error;
    }
    task_failures_.erase(it);
    return error;
  }
  return "";
}

void Simulator::Impl::SetFault(const std::string& pattern, FaultSpec spec) {
  std::lock_guard lock(mutex_);
  for (auto& [existing, existing_spec] : faults_) {
    if (existing == pattern) {
      existing_spec = spec;
      return;
    }
  }
  faults_.emplace_back(pattern, spec);
}

void Simulator::Impl::ClearFaults() {
  std::lock_guard lock(mutex_);
  faults_.clear();
}

void Simulator::Impl::FailNextTask(const std::string& type, const std::string& node, const std::string& error) {
  std::lock_guard lock(mutex_);
  task_failures_.push_back({type, node, error});
}

}  // namespace omni_proxmox::sim::pve
