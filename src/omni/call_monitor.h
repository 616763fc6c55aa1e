// SPDX-License-Identifier: Apache-2.0
#pragma once

// What Omni's answers say about the link and about our key, shared by every Omni client of one
// process (ClientOptions::monitor): how many calls Omni refused as Unauthenticated (the signature
// or the key), whether any call was ever accepted, and who wants to hear that Omni answers again
// (a watch waiting out its reconnect backoff). A refusal is logged at warning level with the
// endpoint and the key, at most once per warn_interval. Thread-safe.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/status/status.h"

#include "util/clock.h"

namespace omni_proxmox::omni {

// Who signs and where to: named in every refusal so an operator can tell which key which Omni refused.
struct KeyIdentity {
  std::string endpoint;
  std::string name;         // "infra-provider:proxmox"
  std::string identity;     // the key's user ID, "<name> <email>": the email is whom Omni trusts
  std::string fingerprint;  // the key's v4 fingerprint
};

class CallMonitor {
 public:
  explicit CallMonitor(const util::Clock& clock = util::RealClock(),
                       std::chrono::milliseconds warn_interval = std::chrono::seconds{30});
  CallMonitor(const CallMonitor&) = delete;
  CallMonitor& operator=(const CallMonitor&) = delete;

  // Called with the outcome of every call, answered or not; returns `status`, a refusal's message
  // extended to name the endpoint and the key.
  absl::Status Record(const absl::Status& status, std::string_view method, const KeyIdentity& key);

  // Runs once, from the call that learned it, when Omni refuses the key before it ever accepted
  // it in this process: the key was never good for this endpoint. `description` is one sentence
  // naming the key, the endpoint and the fix.
  void OnRejectedFromTheStart(std::function<void(const std::string& description)> handler);

  std::uint64_t auth_failures() const;
  // Calls Omni answered so far (anything but Unavailable, DeadlineExceeded, Cancelled).
  std::uint64_t answers() const { return answers_.load(); }
  bool ever_accepted() const;

  // `wake` runs (from the answering call's thread) each time Omni answers a call, until
  // Unsubscribe, which waits for a wake in progress. For waits an answer from Omni should cut
  // short; `wake` must not call Subscribe or Unsubscribe.
  int Subscribe(std::function<void()> wake);
  void Unsubscribe(int id);

  // The sentence a refusal of `key` gets; `reason` is what Omni said.
  static std::string DescribeRefusal(const KeyIdentity& key, std::string_view reason);

 private:
  const util::Clock& clock_;
  const std::chrono::milliseconds warn_interval_;
  mutable std::mutex mutex_;
  std::uint64_t auth_failures_ = 0;
  bool ever_accepted_ = false;
  bool reported_from_start_ = false;
  std::function<void(const std::string&)> from_start_handler_;
  util::Clock::MonotonicTime last_warning_{};
  bool warned_ = false;
  std::uint64_t unlogged_ = 0;
  std::atomic<std::uint64_t> answers_{0};
  std::mutex subscribers_mutex_;  // never held while mutex_ is, nor by a subscriber that calls in
  std::map<int, std::function<void()>> subscribers_;
  int next_subscriber_ = 0;
};

}  // namespace omni_proxmox::omni
