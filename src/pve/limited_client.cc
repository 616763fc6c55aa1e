// SPDX-License-Identifier: Apache-2.0
#include "pve/limited_client.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "pve/errors.h"

namespace omni_proxmox::pve {
namespace {

constexpr char kRequestsTotal[] = "omni_proxmox_pve_requests_total";
constexpr char kRequestsHelp[] = "Proxmox API calls by endpoint template, method and result";
constexpr char kDuration[] = "omni_proxmox_pve_request_duration_seconds";
constexpr char kDurationHelp[] = "Proxmox API call latency (limiter waits excluded)";
constexpr char kInFlight[] = "omni_proxmox_pve_tasks_in_flight";
// Uploads from this size on take a task slot (see the header).
constexpr std::size_t kHeavyUploadBytes = 16u * 1024 * 1024;
// The soonest a waiting caller re-checks held tasks (see LimitOptions::slot_check_interval).
constexpr std::chrono::milliseconds kFirstHeldTaskCheck{250};
constexpr char kInFlightHelp[] = "Heavy Proxmox tasks (create, delete, download, upload) holding a slot, per node";
constexpr char kRateLimited[] = "omni_proxmox_pve_rate_limited_seconds_total";
constexpr char kRateLimitedHelp[] = "Time callers spent waiting for a request token or a per-node task slot";

// Call latencies range from a local GET (ms) to an ISO upload or a long task wait (minutes).
std::vector<double> LatencyBuckets() { return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}; }

template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& result) {
  return result.status();
}

// True for a config change that allocates or imports a disk ("local-lvm:32", "import-from=..."),
// which runs as a long qmconfig task holding the VM lock; attaching an existing volume does not.
bool AllocatesDisk(const FormFields& params) {
  static constexpr std::string_view kDiskPrefixes[] = {"scsi", "virtio", "sata", "ide", "efidisk", "tpmstate"};
  for (const auto& [field, value] : params) {
    // A named reference, not the binding: clang 14 (the fuzz build's compiler) cannot capture a binding.
    const std::string& key = field;
    const bool disk_key = std::any_of(std::begin(kDiskPrefixes), std::end(kDiskPrefixes), [&](std::string_view p) {
      return key.size() > p.size() && key.starts_with(p) &&
             std::all_of(key.begin() + static_cast<std::ptrdiff_t>(p.size()), key.end(),
                         [](char c) { return c >= '0' && c <= '9'; });
    });
    if (!disk_key) continue;
    if (value.find("import-from=") != std::string::npos) return true;
    // "<storage>:<size in GiB>[,options]": a new volume of that size.
    const std::string_view volume = std::string_view(value).substr(0, value.find(','));
    const auto colon = volume.find(':');
    if (colon == std::string_view::npos || colon + 1 == volume.size()) continue;
    const std::string_view size = volume.substr(colon + 1);
    if (std::all_of(size.begin(), size.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; })) return true;
  }
  return false;
}

}  // namespace

// One heavy-task slot on a node, freed when the lease dies unless it was handed to a task.
class LimitedClient::SlotLease {
 public:
  SlotLease(LimitedClient* owner, std::string node) : owner_(owner), node_(std::move(node)) {}
  SlotLease(SlotLease&& other) noexcept : owner_(std::exchange(other.owner_, nullptr)), node_(std::move(other.node_)) {}
  SlotLease& operator=(SlotLease&&) = delete;
  SlotLease(const SlotLease&) = delete;
  ~SlotLease() {
    if (owner_ != nullptr) owner_->FreeSlot(node_);
  }
  const std::string& node() const { return node_; }
  // The slot now belongs to a task; the lease no longer frees it.
  void Release() { owner_ = nullptr; }

 private:
  LimitedClient* owner_;
  std::string node_;
};

absl::Status ValidateLimitOptions(const LimitOptions& options) {
  if (options.max_tasks_per_node < 0) {
    return absl::InvalidArgumentError(fmt::format(
        "--max-tasks-per-node: {} is negative; use a positive count, or 0 for no limit", options.max_tasks_per_node));
  }
  if (!std::isfinite(options.requests_per_second) || options.requests_per_second < 0) {
    return absl::InvalidArgumentError(
        fmt::format("--pve-requests-per-second: {} is not a rate; use a positive number, or 0 for no limit",
                    options.requests_per_second));
  }
  if (options.burst < 0) {
    return absl::InvalidArgumentError(
        fmt::format("pve request burst: {} is negative; use a positive count, or 0 for twice the rate", options.burst));
  }
  if (options.slot_check_interval <= std::chrono::milliseconds::zero()) {
    return absl::InvalidArgumentError("slot_check_interval must be positive");
  }
  return absl::OkStatus();
}

LimitedClient::LimitedClient(std::unique_ptr<Client> inner, LimitOptions options, const util::Clock& clock,
                             util::MetricsRegistry* metrics)
    : LimitedClient(*inner, std::move(options), clock, metrics) {
  // The delegated constructor bound inner_ to *inner; keep the object alive with this client.
  owned_inner_ = std::move(inner);
}

LimitedClient::LimitedClient(Client& inner, LimitOptions options, const util::Clock& clock,
                             util::MetricsRegistry* metrics)
    : inner_(inner), options_(std::move(options)), clock_(clock), metrics_(metrics) {
  if (options_.requests_per_second > 0) {
    capacity_ = options_.burst > 0 ? options_.burst : std::max(1.0, std::ceil(2 * options_.requests_per_second));
  }
  tokens_ = capacity_;
  refilled_at_ = clock_.Monotonic();
  if (metrics_ != nullptr) {
    rate_wait_seconds_ = &metrics_->GetCounter(kRateLimited, kRateLimitedHelp, {{"limit", "requests_per_second"}});
    slot_wait_seconds_ = &metrics_->GetCounter(kRateLimited, kRateLimitedHelp, {{"limit", "tasks_per_node"}});
  }
}

LimitedClient::~LimitedClient() { Close(); }

void LimitedClient::Close() {
  std::lock_guard lock(slots_mutex_);
  closed_ = true;
  slots_changed_.notify_all();
}

int LimitedClient::TasksInFlight(std::string_view node) const {
  std::lock_guard lock(slots_mutex_);
  auto it = slots_.find(node);
  return it == slots_.end() ? 0 : it->second.in_use;
}

int LimitedClient::SlotWaiters(std::string_view node) const {
  std::lock_guard lock(slots_mutex_);
  auto it = slots_.find(node);
  return it == slots_.end() ? 0 : static_cast<int>(it->second.waiting.size());
}

struct SlotClaim::State {
  LimitedClient* owner = nullptr;
  std::string node;
  std::atomic<bool> settled{false};  // the slot was used by a heavy call or given back
};

namespace {
// The claim this thread made last (see SlotClaim); a heavy call on its node from this thread uses it.
thread_local std::shared_ptr<SlotClaim::State> t_claim;
}  // namespace

SlotClaim& SlotClaim::operator=(SlotClaim&& other) noexcept {
  if (this != &other) {
    Reset();
    state_ = std::move(other.state_);
  }
  return *this;
}

SlotClaim::~SlotClaim() { Reset(); }

void SlotClaim::Reset() {
  // Wherever it is dropped: an unused claim gives its slot back, exactly once.
  if (state_ && !state_->settled.exchange(true)) state_->owner->FreeSlot(state_->node);
  state_.reset();
}

std::chrono::milliseconds LimitedClient::HeldTaskCheckInterval(const NodeSlots& slots) const {
  if (slots.tasks.empty()) return options_.slot_check_interval;
  auto oldest = slots.tasks.begin()->second.since;
  for (const auto& [text, task] : slots.tasks) oldest = std::min(oldest, task.since);
  const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.Monotonic() - oldest);
  return std::clamp(age / 3, std::min(kFirstHeldTaskCheck, options_.slot_check_interval), options_.slot_check_interval);
}

void LimitedClient::PruneAbandonedLocked(NodeSlots& slots) {
  const auto now = clock_.Monotonic();
  std::erase_if(slots.waiting, [&](const NodeSlots::Waiter& w) {
    return !w.key.empty() && now - w.asked > options_.claim_abandon_after;
  });
}

std::string LimitedClient::ClaimantToWakeLocked(const NodeSlots& slots) const {
  if (slots.waiting.empty() || slots.waiting.front().key.empty()) return "";
  if (options_.max_tasks_per_node > 0 && slots.in_use >= options_.max_tasks_per_node) return "";
  return slots.waiting.front().key;
}

std::optional<SlotClaim> LimitedClient::TryClaimSlot(std::string_view node_view, std::string_view waiter_view) {
  if (options_.max_tasks_per_node <= 0) return SlotClaim{};
  const std::string node(node_view);
  const std::string waiter(waiter_view);
  std::string wake;  // the next claimant in line, when slots are left after this claim
  for (int attempt = 0;; ++attempt) {
    bool check_held = false;
    {
      std::lock_guard lock(slots_mutex_);
      NodeSlots& slots = slots_[node];
      if (closed_) return std::nullopt;
      PruneAbandonedLocked(slots);
      const auto mine = std::find_if(slots.waiting.begin(), slots.waiting.end(),
                                     [&](const NodeSlots::Waiter& w) { return w.key == waiter; });
      const bool first = slots.waiting.empty() || mine == slots.waiting.begin();
      if (first && slots.in_use < options_.max_tasks_per_node) {
        if (mine != slots.waiting.end()) slots.waiting.erase(mine);
        UpdateInFlightGauge(node, ++slots.in_use);
        // Several slots may have freed at once: the next claimant in line tries too.
        wake = ClaimantToWakeLocked(slots);
        slots_changed_.notify_all();
        break;
      }
      const auto now = clock_.Monotonic();
      if (mine == slots.waiting.end()) {
        slots.waiting.push_back({.ticket = next_ticket_++, .key = waiter, .asked = now});
      } else {
        mine->asked = now;
      }
      // Refused callers check the node's held tasks now and then, as a waiting caller would, so a
      // slot whose owner no longer polls (its request was deleted) is still freed.
      if (attempt == 0 && !slots.tasks.empty() && now - slots.last_held_check >= HeldTaskCheckInterval(slots)) {
        slots.last_held_check = now;
        check_held = true;
      }
    }
    if (!check_held) return std::nullopt;
    CheckHeldTasks(node);
  }
  if (!wake.empty() && slot_freed_) slot_freed_(wake);
  // One claim per thread: an earlier one this thread still holds gives its slot back now.
  if (t_claim && !t_claim->settled.exchange(true)) t_claim->owner->FreeSlot(t_claim->node);
  t_claim = std::make_shared<SlotClaim::State>();
  t_claim->owner = this;
  t_claim->node = node;
  return SlotClaim(t_claim);
}

void LimitedClient::AwaitToken() {
  if (options_.requests_per_second <= 0) return;
  double wait_seconds = 0;
  {
    std::lock_guard lock(bucket_mutex_);
    const auto now = clock_.Monotonic();
    const double elapsed = std::chrono::duration<double>(now - refilled_at_).count();
    if (elapsed > 0) {
      tokens_ = std::min(capacity_, tokens_ + elapsed * options_.requests_per_second);
      refilled_at_ = now;
    }
    // Taking the token before waiting reserves this caller's place: the next caller computes
    // its wait behind it, so callers go out in arrival order at the configured rate.
    tokens_ -= 1;
    if (tokens_ < 0) wait_seconds = -tokens_ / options_.requests_per_second;
  }
  if (wait_seconds <= 0) return;
  const auto wait = std::chrono::ceil<std::chrono::milliseconds>(std::chrono::duration<double>(wait_seconds));
  if (rate_wait_seconds_ != nullptr) rate_wait_seconds_->Increment(wait_seconds);
  if (options_.sleep) {
    options_.sleep(wait);
  } else {
    std::this_thread::sleep_for(wait);
  }
}

void LimitedClient::UpdateInFlightGauge(const std::string& node, int value) {
  if (metrics_ != nullptr) metrics_->GetGauge(kInFlight, kInFlightHelp, {{"node", node}}).Set(value);
}

absl::StatusOr<LimitedClient::SlotLease> LimitedClient::AcquireSlot(std::string_view node_view) {
  const std::string node(node_view);
  const auto started = clock_.Monotonic();
  std::unique_lock lock(slots_mutex_);
  NodeSlots& slots = slots_[node];
  const std::uint64_t ticket = next_ticket_++;
  slots.waiting.push_back({.ticket = ticket, .key = "", .asked = started});
  const auto first = [&] { return slots.waiting.front().ticket == ticket; };
  const auto my_turn = [&] {
    // Without a limit slots are still counted, for the in-flight gauge.
    return closed_ || (first() && (options_.max_tasks_per_node <= 0 || slots.in_use < options_.max_tasks_per_node));
  };
  while (true) {
    PruneAbandonedLocked(slots);
    if (my_turn()) break;
    // A claimant ahead of us whose turn came is told so; it claims, or gives up its place.
    if (std::string wake = ClaimantToWakeLocked(slots); !wake.empty() && slot_freed_) {
      lock.unlock();
      slot_freed_(wake);
      lock.lock();
      if (my_turn()) break;
    }
    const auto wait = first() ? HeldTaskCheckInterval(slots) : options_.slot_check_interval;
    if (slots_changed_.wait_for(lock, std::min(wait, options_.claim_abandon_after), my_turn)) break;
    // Only the first in line polls, so a long queue does not multiply the status calls.
    if (first()) {
      lock.unlock();
      CheckHeldTasks(node);
      lock.lock();
    }
  }
  slots.waiting.erase(std::find_if(slots.waiting.begin(), slots.waiting.end(),
                                   [&](const NodeSlots::Waiter& w) { return w.ticket == ticket; }));
  if (closed_) {
    slots_changed_.notify_all();
    return MakeError(ErrorKind::kTransient,
                     fmt::format("not starting a task on node '{}': the provider is shutting down", node));
  }
  // The gauge is set under the lock, so two threads cannot leave it at a stale count.
  UpdateInFlightGauge(node, ++slots.in_use);
  // The next in line may also fit.
  slots_changed_.notify_all();
  const std::string wake = ClaimantToWakeLocked(slots);
  lock.unlock();
  if (!wake.empty() && slot_freed_) slot_freed_(wake);
  if (slot_wait_seconds_ != nullptr) {
    slot_wait_seconds_->Increment(std::chrono::duration<double>(clock_.Monotonic() - started).count());
  }
  return SlotLease(this, node);
}

void LimitedClient::FreeSlot(const std::string& node) {
  std::string wake;
  {
    std::lock_guard lock(slots_mutex_);
    NodeSlots& slots = slots_[node];
    slots.in_use = std::max(0, slots.in_use - 1);
    UpdateInFlightGauge(node, slots.in_use);
    PruneAbandonedLocked(slots);
    wake = ClaimantToWakeLocked(slots);
    slots_changed_.notify_all();
  }
  if (!wake.empty() && slot_freed_) slot_freed_(wake);
}

void LimitedClient::SetSlotFreedListener(std::function<void(const std::string& waiter)> listener) {
  slot_freed_ = std::move(listener);
}

void LimitedClient::HoldForTask(SlotLease& lease, const Upid& upid) {
  std::lock_guard lock(slots_mutex_);
  // Keyed by the node the slot was taken on; a UPID names the same node for these calls.
  slots_[lease.node()].tasks.emplace(upid.text, NodeSlots::HeldTask{.upid = upid, .since = clock_.Monotonic()});
  lease.Release();
}

void LimitedClient::TaskFinished(const Upid& upid) {
  std::string node;
  {
    std::lock_guard lock(slots_mutex_);
    for (auto& [name, slots] : slots_) {
      if (slots.tasks.erase(upid.text) > 0) {
        node = name;
        break;
      }
    }
  }
  if (!node.empty()) FreeSlot(node);
}

void LimitedClient::PollHeldTasks() {
  std::vector<std::string> nodes;
  {
    std::lock_guard lock(slots_mutex_);
    for (const auto& [node, slots] : slots_) {
      if (!slots.tasks.empty()) nodes.push_back(node);
    }
  }
  for (const auto& node : nodes) CheckHeldTasks(node);
}

void LimitedClient::CheckHeldTasks(const std::string& node) {
  std::vector<Upid> held;
  {
    std::lock_guard lock(slots_mutex_);
    for (const auto& [text, task] : slots_[node].tasks) held.push_back(task.upid);
  }
  // GetTaskStatus frees the slot of a task that stopped or is gone.
  for (const auto& upid : held) (void)GetTaskStatus(upid);
}

template <typename Call>
auto LimitedClient::Measured(std::string_view method, std::string_view endpoint, Call&& call) -> decltype(call()) {
  AwaitToken();
  const auto started = clock_.Monotonic();
  auto result = call();
  if (metrics_ != nullptr) {
    const double seconds = std::chrono::duration<double>(clock_.Monotonic() - started).count();
    const ErrorKind kind = ClassifyError(StatusOf(result));
    const std::string result_label = kind == ErrorKind::kOk ? "ok" : std::string(ErrorKindName(kind));
    metrics_
        ->GetCounter(kRequestsTotal, kRequestsHelp,
                     {{"endpoint", std::string(endpoint)}, {"method", std::string(method)}, {"result", result_label}})
        .Increment();
    metrics_
        ->GetHistogram(kDuration, kDurationHelp, {{"endpoint", std::string(endpoint)}, {"method", std::string(method)}},
                       LatencyBuckets())
        .Observe(seconds);
  }
  return result;
}

template <typename Call>
absl::StatusOr<Upid> LimitedClient::Heavy(std::string_view node, std::string_view method, std::string_view endpoint,
                                          Call&& call) {
  // A slot this thread claimed for this node is taken over by the call; otherwise wait for one.
  const bool claimed = t_claim && t_claim->owner == this && t_claim->node == node && !t_claim->settled.exchange(true);
  if (t_claim && t_claim->settled) t_claim.reset();
  absl::StatusOr<SlotLease> lease =
      claimed ? absl::StatusOr<SlotLease>(SlotLease(this, std::string(node))) : AcquireSlot(node);
  if (!lease.ok()) return lease.status();
  absl::StatusOr<Upid> upid = Measured(method, endpoint, std::forward<Call>(call));
  // On failure (or an exception) the lease frees the slot as it goes out of scope.
  if (upid.ok()) HoldForTask(*lease, *upid);
  return upid;
}

absl::StatusOr<VersionInfo> LimitedClient::Version() {
  return Measured("GET", "/version", [&] { return inner_.Version(); });
}

absl::StatusOr<Permissions> LimitedClient::GetPermissions(std::string_view path) {
  return Measured("GET", "/access/permissions", [&] { return inner_.GetPermissions(path); });
}

absl::StatusOr<std::vector<Node>> LimitedClient::ListNodes() {
  return Measured("GET", "/nodes", [&] { return inner_.ListNodes(); });
}

absl::StatusOr<std::vector<ClusterResource>> LimitedClient::ClusterResources(ResourceType type) {
  return Measured("GET", "/cluster/resources", [&] { return inner_.ClusterResources(type); });
}

absl::StatusOr<Vmid> LimitedClient::NextId() {
  return Measured("GET", "/cluster/nextid", [&] { return inner_.NextId(); });
}

absl::StatusOr<std::vector<NodeStorage>> LimitedClient::NodeStorages(std::string_view node, std::string_view content,
                                                                     bool enabled_only) {
  return Measured("GET", "/nodes/{node}/storage", [&] { return inner_.NodeStorages(node, content, enabled_only); });
}

absl::StatusOr<std::vector<StorageVolume>> LimitedClient::StorageContent(std::string_view node,
                                                                         std::string_view storage,
                                                                         std::string_view content) {
  return Measured("GET", "/nodes/{node}/storage/{storage}/content",
                  [&] { return inner_.StorageContent(node, storage, content); });
}

absl::StatusOr<VolumeInfo> LimitedClient::GetVolume(std::string_view node, std::string_view storage,
                                                    std::string_view volid) {
  return Measured("GET", "/nodes/{node}/storage/{storage}/content/{volume}",
                  [&] { return inner_.GetVolume(node, storage, volid); });
}

absl::StatusOr<Upid> LimitedClient::DownloadUrl(const DownloadUrlRequest& request) {
  return Heavy(request.node, "POST", "/nodes/{node}/storage/{storage}/download-url",
               [&] { return inner_.DownloadUrl(request); });
}

absl::StatusOr<Upid> LimitedClient::UploadIso(std::string_view node, std::string_view storage,
                                              std::string_view filename, std::string_view bytes) {
  // A cloud-init ISO (a few hundred KiB) is copied in well under a second; only a big upload
  // competes with creates and downloads for the node's storage.
  if (bytes.size() < kHeavyUploadBytes) {
    return Measured("POST", "/nodes/{node}/storage/{storage}/upload",
                    [&] { return inner_.UploadIso(node, storage, filename, bytes); });
  }
  return Heavy(node, "POST", "/nodes/{node}/storage/{storage}/upload",
               [&] { return inner_.UploadIso(node, storage, filename, bytes); });
}

absl::StatusOr<Upid> LimitedClient::DeleteVolume(std::string_view node, std::string_view storage,
                                                 std::string_view volid) {
  return Measured("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}",
                  [&] { return inner_.DeleteVolume(node, storage, volid); });
}

absl::StatusOr<std::vector<NetworkInterface>> LimitedClient::NodeNetworks(std::string_view node,
                                                                          std::string_view type) {
  return Measured("GET", "/nodes/{node}/network", [&] { return inner_.NodeNetworks(node, type); });
}

absl::StatusOr<std::vector<HardwareMapping>> LimitedClient::HardwareMappings(std::string_view kind) {
  return Measured("GET", "/cluster/mapping/{kind}", [&] { return inner_.HardwareMappings(kind); });
}

absl::StatusOr<std::vector<VmStatus>> LimitedClient::ListVms(std::string_view node) {
  return Measured("GET", "/nodes/{node}/qemu", [&] { return inner_.ListVms(node); });
}

absl::StatusOr<Upid> LimitedClient::CreateVm(std::string_view node, Vmid vmid, const FormFields& params) {
  return Heavy(node, "POST", "/nodes/{node}/qemu", [&] { return inner_.CreateVm(node, vmid, params); });
}

absl::StatusOr<VmConfig> LimitedClient::GetVmConfig(std::string_view node, Vmid vmid) {
  return Measured("GET", "/nodes/{node}/qemu/{vmid}/config", [&] { return inner_.GetVmConfig(node, vmid); });
}

absl::StatusOr<std::optional<Upid>> LimitedClient::UpdateVmConfig(std::string_view node, Vmid vmid,
                                                                  const FormFields& params) {
  const auto update = [&] { return inner_.UpdateVmConfig(node, vmid, params); };
  constexpr std::string_view kEndpoint = "/nodes/{node}/qemu/{vmid}/config";
  if (!AllocatesDisk(params)) return Measured("POST", kEndpoint, update);
  auto lease = AcquireSlot(node);
  if (!lease.ok()) return lease.status();
  auto upid = Measured("POST", kEndpoint, update);
  // A change finished synchronously has no task to wait for: the lease frees the slot.
  if (upid.ok() && upid->has_value()) HoldForTask(*lease, **upid);
  return upid;
}

absl::StatusOr<VmStatus> LimitedClient::GetVmStatus(std::string_view node, Vmid vmid) {
  return Measured("GET", "/nodes/{node}/qemu/{vmid}/status/current", [&] { return inner_.GetVmStatus(node, vmid); });
}

absl::StatusOr<Upid> LimitedClient::StartVm(std::string_view node, Vmid vmid) {
  return Measured("POST", "/nodes/{node}/qemu/{vmid}/status/start", [&] { return inner_.StartVm(node, vmid); });
}

absl::StatusOr<Upid> LimitedClient::StopVm(std::string_view node, Vmid vmid) {
  return Measured("POST", "/nodes/{node}/qemu/{vmid}/status/stop", [&] { return inner_.StopVm(node, vmid); });
}

absl::StatusOr<Upid> LimitedClient::ShutdownVm(std::string_view node, Vmid vmid, const ShutdownOptions& options) {
  return Measured("POST", "/nodes/{node}/qemu/{vmid}/status/shutdown",
                  [&] { return inner_.ShutdownVm(node, vmid, options); });
}

absl::StatusOr<Upid> LimitedClient::DeleteVm(std::string_view node, Vmid vmid, bool purge,
                                             bool destroy_unreferenced_disks) {
  return Heavy(node, "DELETE", "/nodes/{node}/qemu/{vmid}",
               [&] { return inner_.DeleteVm(node, vmid, purge, destroy_unreferenced_disks); });
}

absl::StatusOr<TaskStatus> LimitedClient::GetTaskStatus(const Upid& upid) {
  auto status = Measured("GET", "/nodes/{node}/tasks/{upid}/status", [&] { return inner_.GetTaskStatus(upid); });
  if ((status.ok() && !status->running) || ClassifyError(status.status()) == ErrorKind::kNotFound) {
    TaskFinished(upid);
  }
  return status;
}

absl::StatusOr<TaskLog> LimitedClient::GetTaskLog(const Upid& upid, std::int64_t start, std::int64_t limit) {
  return Measured("GET", "/nodes/{node}/tasks/{upid}/log", [&] { return inner_.GetTaskLog(upid, start, limit); });
}

absl::StatusOr<std::vector<TaskStatus>> LimitedClient::ListTasks(std::string_view node, std::optional<Vmid> vmid,
                                                                 bool active_only) {
  return Measured("GET", "/nodes/{node}/tasks", [&] { return inner_.ListTasks(node, vmid, active_only); });
}

absl::StatusOr<TaskStatus> LimitedClient::WaitTask(const Upid& upid, util::Clock::MonotonicTime deadline) {
  struct FreeWhenDone {
    LimitedClient* self;
    const Upid& upid;
    // However the wait ends (finished, failed, timed out, thrown), the caller has stopped
    // waiting on this task, and its slot must not outlive that.
    ~FreeWhenDone() { self->TaskFinished(upid); }
  } free_when_done{this, upid};
  return Measured("WAIT", "/nodes/{node}/tasks/{upid}/status", [&] { return inner_.WaitTask(upid, deadline); });
}

}  // namespace omni_proxmox::pve
