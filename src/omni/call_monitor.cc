// SPDX-License-Identifier: Apache-2.0
#include "omni/call_monitor.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "omni/keys.h"
#include "util/log.h"

namespace omni_proxmox::omni {
namespace {

// Codes that prove Omni verified the signature: it got as far as the resource or the rules.
bool SignatureAccepted(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return true;
    default:
      return false;
  }
}

// Codes with which the call never reached Omni or Omni never finished it.
bool Unanswered(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded ||
         code == absl::StatusCode::kCancelled;
}

}  // namespace

CallMonitor::CallMonitor(const util::Clock& clock, std::chrono::milliseconds warn_interval)
    : clock_(clock), warn_interval_(warn_interval) {}

std::string CallMonitor::DescribeRefusal(const KeyIdentity& key, std::string_view reason) {
  auto provider_id = ProviderIdFromKeyName(key.name);
  const std::string create = provider_id.ok() ? fmt::format("omnictl infraprovider create {}", *provider_id)
                                              : std::string("omnictl serviceaccount create");
  return fmt::format(
      "Omni at {} does not accept the key '{}' (user ID {}, fingerprint {}): {}. Either its service account "
      "was destroyed in that Omni (make a new key with `{}` and give it to the provider) or the key belongs "
      "to another Omni (point --omni-api-endpoint at the Omni that issued it)",
      key.endpoint, key.name, key.identity, key.fingerprint, reason, create);
}

absl::Status CallMonitor::Record(const absl::Status& status, std::string_view method, const KeyIdentity& key) {
  const auto code = status.code();
  if (!Unanswered(code)) {
    answers_.fetch_add(1);
    // Under its own lock, so Unsubscribe returns only once no wake of that subscriber still runs.
    std::lock_guard lock(subscribers_mutex_);
    for (const auto& [id, fn] : subscribers_) fn();
  }
  std::function<void(const std::string&)> from_start;
  bool warn = false;
  std::uint64_t unlogged = 0;
  {
    std::lock_guard lock(mutex_);
    if (SignatureAccepted(code)) {
      ever_accepted_ = true;
    } else if (code == absl::StatusCode::kUnauthenticated) {
      ++auth_failures_;
      if (!ever_accepted_ && !reported_from_start_ && from_start_handler_) {
        reported_from_start_ = true;
        from_start = from_start_handler_;
      }
      const auto now = clock_.Monotonic();
      if (!warned_ || now - last_warning_ >= warn_interval_) {
        warn = true;
        warned_ = true;
        last_warning_ = now;
        unlogged = std::exchange(unlogged_, 0);
      } else {
        ++unlogged_;
      }
    }
  }
  if (code != absl::StatusCode::kUnauthenticated) return status;
  const std::string reason(status.message());
  const std::string description = DescribeRefusal(key, reason);
  if (from_start) {
    from_start(description);
  } else if (warn) {
    util::Logger("omni")->warn("{} ({}){}", description, method,
                               unlogged == 0 ? "" : fmt::format("; {} more refusals since the last line", unlogged));
  }
  return absl::UnauthenticatedError(fmt::format("{} (Omni at {} does not accept the key '{}', fingerprint {})", reason,
                                                key.endpoint, key.name, key.fingerprint));
}

void CallMonitor::OnRejectedFromTheStart(std::function<void(const std::string&)> handler) {
  std::lock_guard lock(mutex_);
  from_start_handler_ = std::move(handler);
}

std::uint64_t CallMonitor::auth_failures() const {
  std::lock_guard lock(mutex_);
  return auth_failures_;
}

bool CallMonitor::ever_accepted() const {
  std::lock_guard lock(mutex_);
  return ever_accepted_;
}

int CallMonitor::Subscribe(std::function<void()> wake) {
  std::lock_guard lock(subscribers_mutex_);
  subscribers_.emplace(next_subscriber_, std::move(wake));
  return next_subscriber_++;
}

void CallMonitor::Unsubscribe(int id) {
  std::lock_guard lock(subscribers_mutex_);
  subscribers_.erase(id);
}

}  // namespace omni_proxmox::omni
