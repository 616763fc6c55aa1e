// SPDX-License-Identifier: Apache-2.0
#include "provider/leader/leader_elector.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <filesystem>
#include <fstream>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "omni/specs.h"
#include "provider/machine.pb.h"
#include "util/log.h"

namespace omni_proxmox::provider {
namespace {

using std::chrono::milliseconds;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

std::int64_t UnixMs(util::Clock::SystemTime t) {
  return std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count();
}

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

bool ProcessAlive(long pid) { return pid > 0 && (kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM); }

// The identities of the electors alive in this process (one in production; tests run several).
absl::Mutex live_mutex;
std::set<std::string>& LiveIdentities() {
  static auto* live = new std::set<std::string>();
  return *live;
}

}  // namespace

absl::Status ValidateLeaderOptions(const LeaderOptions& options) {
  const auto seconds = [](milliseconds d) { return fmt::format("{:g}s", std::chrono::duration<double>(d).count()); };
  if (options.lease_duration <= milliseconds::zero() || options.renew_deadline <= milliseconds::zero() ||
      options.retry_period <= milliseconds::zero()) {
    return absl::InvalidArgumentError(
        "--leader-lease-duration, --leader-renew-deadline and --leader-retry-period must be positive durations, "
        "e.g. 15s, 10s and 2s");
  }
  if (options.renew_deadline >= options.lease_duration) {
    return absl::InvalidArgumentError(fmt::format(
        "--leader-renew-deadline {} must be shorter than --leader-lease-duration {}: a leader that cannot renew must "
        "stop before the others may take over",
        seconds(options.renew_deadline), seconds(options.lease_duration)));
  }
  if (options.retry_period >= options.renew_deadline) {
    return absl::InvalidArgumentError(fmt::format(
        "--leader-retry-period {} must be shorter than --leader-renew-deadline {}, so a leader tries to renew more "
        "than once before it gives up",
        seconds(options.retry_period), seconds(options.renew_deadline)));
  }
  return absl::OkStatus();
}

std::string LeaderIdentity(util::Random& random) {
  char host[HOST_NAME_MAX + 1] = {};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return fmt::format("{}_{}_{:08x}", host[0] != '\0' ? host : "unknown", static_cast<long>(getpid()),
                     random.Uniform(0x100000000ULL));
}

std::string ThisProcess() {
  std::ifstream boot("/proc/sys/kernel/random/boot_id");
  std::string boot_id;
  std::getline(boot, boot_id);
  std::error_code error;
  const std::string pid_ns = std::filesystem::read_symlink("/proc/self/ns/pid", error).string();
  return fmt::format("{}/{}/{}", Trimmed(boot_id), pid_ns, static_cast<long>(getpid()));
}

std::string LeaseType(std::string_view provider_id) {
  return fmt::format("{}.{}.infraprovider.sidero.dev", kLeaseType, provider_id);
}

LeaderElector::LeaderElector(LeaderOptions options, std::string provider_id, omni::StateClient& state,
                             const util::Clock& clock, util::Random& random)
    : options_(std::move(options)),
      provider_id_(std::move(provider_id)),
      state_(state),
      clock_(clock),
      random_(random),
      process_(ThisProcess()) {
  if (options_.identity.empty()) options_.identity = LeaderIdentity(random_);
  process_alive = ProcessAlive;
  {
    absl::MutexLock lock(&live_mutex);
    LiveIdentities().insert(options_.identity);
  }
  if (!options_.enabled) {
    absl::MutexLock lock(&mutex_);
    leading_ = true;
    holder_ = options_.identity;
  }
}

LeaderElector::~LeaderElector() {
  Stop();
  absl::MutexLock lock(&live_mutex);
  LiveIdentities().erase(options_.identity);
}

omni::ResourcePointer LeaderElector::Pointer() const {
  return {omni::ProviderNamespace(provider_id_), LeaseType(provider_id_), kLeaseId};
}

void LeaderElector::Start() {
  if (!options_.enabled) {
    if (on_leading_changed) on_leading_changed(true);
    return;
  }
  thread_ = std::jthread([this](std::stop_token stop) { Run(stop); });
}

void LeaderElector::Stop() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
}

bool LeaderElector::Leading() const {
  absl::MutexLock lock(&mutex_);
  return leading_;
}

absl::Status LeaderElector::Check() const {
  if (!options_.enabled) return absl::OkStatus();
  absl::MutexLock lock(&mutex_);
  if (!leading_) {
    return absl::AbortedError(fmt::format("this replica ({}) is a standby; the leader lease is held by {}",
                                          options_.identity, holder_.empty() ? "nobody" : holder_));
  }
  if (clock_.Monotonic() - renew_sent_ >= options_.renew_deadline) {
    return absl::AbortedError(
        fmt::format("this replica ({}) could not renew its leader lease within {} ms; another may hold it now",
                    options_.identity, options_.renew_deadline.count()));
  }
  return absl::OkStatus();
}

LeaderStatus LeaderElector::Status() const {
  absl::MutexLock lock(&mutex_);
  return {.enabled = options_.enabled,
          .leading = leading_,
          .identity = options_.identity,
          .holder = holder_,
          .transitions = transitions_,
          .last_error = last_error_};
}

void LeaderElector::SetLeading(bool leading) {
  {
    absl::MutexLock lock(&mutex_);
    if (leading_ == leading) return;
    leading_ = leading;
  }
  auto log = util::Logger("leader");
  if (leading) {
    log->info("{} is the leader now", options_.identity);
  } else {
    log->warn("{} is no longer the leader; standing by", options_.identity);
  }
  if (on_leading_changed) on_leading_changed(leading);
}

bool LeaderElector::ProvablyGone(const std::string& holder, const std::string& holder_process) const {
  if (!options_.local_takeover) return false;
  // "<boot id>/<pid namespace>/<pid>": the pid means the same process for both of us only on the
  // same kernel boot and in the same pid namespace (another container's pid 7 is not ours).
  const auto split = [](const std::string& text) -> std::optional<std::pair<std::string, std::string>> {
    const auto slash = text.rfind('/');
    if (slash == std::string::npos || slash == 0) return std::nullopt;
    const std::string where = text.substr(0, slash);
    const auto first = where.find('/');
    if (first == std::string::npos || first == 0 || first + 1 == where.size()) return std::nullopt;
    return std::make_pair(where, text.substr(slash + 1));
  };
  const auto theirs = split(holder_process);
  const auto ours = split(process_);
  if (!theirs || !ours || theirs->first != ours->first) return false;
  char* end = nullptr;
  const long pid = std::strtol(theirs->second.c_str(), &end, 10);
  if (end == nullptr || *end != '\0' || pid <= 0) return false;
  // Our own pid under an identity no elector of this process has: an earlier process that had
  // this pid and ended.
  if (pid == static_cast<long>(getpid())) {
    absl::MutexLock lock(&live_mutex);
    return !LiveIdentities().contains(holder);
  }
  return !process_alive(pid);
}

bool LeaderElector::TryAcquireOrRenew() {
  const auto owner = omni::ProvisionControllerName(provider_id_);
  std::optional<omni::Resource> current;
  {
    absl::MutexLock lock(&mutex_);
    if (leading_) current = observed_;  // renewing: CAS on what we wrote last, no read
  }
  LeaseSpec spec;
  if (!current) {
    auto read = state_.Get(Pointer());
    if (read.status().code() == absl::StatusCode::kNotFound) {
      omni::Resource fresh;
      fresh.metadata.ns = Pointer().ns;
      fresh.metadata.type = Pointer().type;
      fresh.metadata.id = kLeaseId;
      spec.set_holder_identity(options_.identity);
      spec.set_holder_process(process_);
      spec.set_lease_duration_seconds(
          std::chrono::duration_cast<std::chrono::seconds>(options_.lease_duration).count());
      spec.set_acquire_time_unix_ms(UnixMs(clock_.Now()));
      spec.set_renew_time_unix_ms(spec.acquire_time_unix_ms());
      omni::EncodeSpec(spec, fresh);
      const auto sent = clock_.Monotonic();
      auto created = state_.Create(fresh, owner);
      {
        absl::MutexLock lock(&mutex_);
        if (!created.ok()) {
          last_error_ = Msg(created.status());
          return false;
        }
        observed_ = *created;
        observed_at_ = sent;
        renew_sent_ = sent;
        holder_ = options_.identity;
        last_error_.clear();
      }
      SetLeading(true);
      return true;
    }
    if (!read.ok()) {
      absl::MutexLock lock(&mutex_);
      last_error_ = Msg(read.status());
      return false;
    }
    current = *read;
  }
  if (auto s = omni::DecodeSpec(*current, spec); !s.ok()) {
    absl::MutexLock lock(&mutex_);
    last_error_ = Msg(s);
    return false;
  }
  const auto now = clock_.Monotonic();
  bool mine = false;
  {
    absl::MutexLock lock(&mutex_);
    if (!observed_ || observed_->metadata.version != current->metadata.version) {
      observed_ = *current;
      observed_at_ = now;
    }
    holder_ = spec.holder_identity();
    transitions_ = spec.leader_transitions();
    mine = spec.holder_identity() == options_.identity;
    const auto duration = std::chrono::seconds{spec.lease_duration_seconds()};
    if (!mine && !spec.holder_identity().empty() && now < observed_at_ + duration &&
        !ProvablyGone(spec.holder_identity(), spec.holder_process())) {
      return false;  // held by another replica, not expired
    }
  }
  LeaseSpec next = spec;
  next.set_holder_identity(options_.identity);
  next.set_holder_process(process_);
  next.set_lease_duration_seconds(std::chrono::duration_cast<std::chrono::seconds>(options_.lease_duration).count());
  next.set_renew_time_unix_ms(UnixMs(clock_.Now()));
  if (!mine) {
    next.set_acquire_time_unix_ms(next.renew_time_unix_ms());
    next.set_leader_transitions(spec.leader_transitions() + 1);
  }
  omni::Resource desired = *current;
  omni::EncodeSpec(next, desired);
  const auto sent = clock_.Monotonic();
  auto updated = state_.Update(desired, owner);
  {
    absl::MutexLock lock(&mutex_);
    if (!updated.ok()) {
      last_error_ = Msg(updated.status());
      // Someone else wrote it (or our copy is stale): read it again next time.
      if (omni::IsRetryableWrite(updated.status())) observed_.reset();
      return false;
    }
    observed_ = *updated;
    observed_at_ = sent;
    renew_sent_ = sent;
    holder_ = options_.identity;
    transitions_ = next.leader_transitions();
    last_error_.clear();
  }
  SetLeading(true);
  return true;
}

void LeaderElector::Run(std::stop_token stop) {
  auto log = util::Logger("leader");
  while (!stop.stop_requested()) {
    const bool held = TryAcquireOrRenew();
    if (!held && Leading()) {
      // Renewals failing: keep trying until the renew deadline, then step down (the gate has
      // closed by then on its own).
      bool expired = false;
      {
        absl::MutexLock lock(&mutex_);
        expired = clock_.Monotonic() - renew_sent_ >= options_.renew_deadline;
        if (expired) observed_.reset();
      }
      log->warn("cannot renew the leader lease: {}", Status().last_error);
      if (expired) SetLeading(false);
    }
    // client-go's jitter: up to 20 % later, so candidates do not move in lock step.
    const auto jitter = milliseconds{
        static_cast<long long>(random_.Uniform(static_cast<std::uint64_t>(options_.retry_period.count()) / 5 + 1))};
    clock_.SleepFor(options_.retry_period + (Leading() ? milliseconds{0} : jitter), stop);
  }
}

absl::Status LeaderElector::Release() {
  Stop();
  if (!options_.enabled) return absl::OkStatus();
  std::optional<omni::Resource> current;
  {
    absl::MutexLock lock(&mutex_);
    if (!leading_) return absl::OkStatus();
    current = observed_;
  }
  absl::Status result = absl::OkStatus();
  if (current) {
    LeaseSpec spec;
    if (omni::DecodeSpec(*current, spec).ok()) {
      spec.clear_holder_identity();
      spec.clear_holder_process();
      spec.set_renew_time_unix_ms(UnixMs(clock_.Now()));
      omni::Resource desired = *current;
      omni::EncodeSpec(spec, desired);
      auto released = state_.Update(desired, omni::ProvisionControllerName(provider_id_));
      if (!released.ok()) result = released.status();
    }
  }
  {
    absl::MutexLock lock(&mutex_);
    holder_.clear();
  }
  SetLeading(false);
  if (result.ok()) util::Logger("leader")->info("{} released the leader lease", options_.identity);
  return result;
}

}  // namespace omni_proxmox::provider
