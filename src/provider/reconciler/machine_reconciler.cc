#include "provider/reconciler/machine_reconciler.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "omni/specs.h"
#include "omni/specs/omni.pb.h"
#include "provider/cloudinit/cidata.h"
#include "provider/machine.pb.h"
#include "provider/model/providerdata.h"
#include "provider/placement/placement.h"
#include "provider/vmspec/ownership.h"
#include "provider/vmspec/vmspec.h"
#include "pve/errors.h"
#include "pve/parse/upid.h"
#include "util/log.h"
#include "util/status_macros.h"

namespace omni_proxmox::provider {
namespace {

using std::chrono::milliseconds;
using Stage = specs::MachineRequestStatusSpec;

constexpr std::uint64_t kMiB = 1024ull * 1024;
constexpr std::uint32_t kFirstVmid = 100;
constexpr std::uint32_t kLastVmid = 999'999'999;

bool NotFound(const absl::Status& s) { return s.code() == absl::StatusCode::kNotFound; }

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

omni::ResourcePointer RequestPointer(const std::string& id) {
  return {std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequest), id};
}
omni::ResourcePointer StatusPointer(const std::string& id) {
  return {std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequestStatus), id};
}

// The task log tail of a failed task, for status messages.
std::string TaskFailureText(const pve::TaskStatus& status, const std::vector<std::string>& tail) {
  std::string text = status.exit_status.value_or("unknown error");
  if (!tail.empty()) text += fmt::format(" (log: {})", fmt::join(tail, " | "));
  return text;
}

// Where the cloud-init ISO lives: the node it was uploaded through (state from before that
// field existed: the VM's node).
const std::string& CidataNode(const MachineSpec& machine) {
  return machine.cidata_node().empty() ? machine.node() : machine.cidata_node();
}

}  // namespace

struct MachineReconciler::Pass {
  std::string request_id;
  omni::Resource request;
  specs::MachineRequestSpec spec;
  ProviderData data;
  std::optional<CompiledSelectors> selectors;
  std::optional<omni::Resource> status;  // the MachineRequestStatus as last read or written; nullopt: none yet
  omni::Resource state_resource;
  MachineSpec machine;
  std::string request_set;
  // CreateVm saw our VM by its markers at machine.vmid() on machine.node() (this process, this memo).
  bool vm_verified = false;
  // A write to Omni failed: `machine` or `status` may hold what Omni does not, so no memo.
  bool unsaved = false;
  // `machine` changed since the state resource was written; the step annotation to write with it.
  std::optional<std::string> pending_save;
  std::shared_ptr<spdlog::logger> log;
};

struct MachineReconciler::PassMemo {
  Pass pass;
  util::Clock::MonotonicTime read_at{};  // when the request, status and state were last read from Omni
};

std::string TalosIsoFileName(const std::string& schematic, std::string version) {
  if (!version.empty() && version.front() == 'v') version.erase(version.begin());
  return fmt::format("talos-{}-v{}-nocloud-amd64.iso", schematic.substr(0, 16), version);
}

absl::StatusOr<VmRemovalStep> AdvanceVmRemoval(pve::Client& pve, const pve::ClusterResource& vm,
                                               std::chrono::seconds shutdown_timeout) {
  if (!vm.vmid) return VmRemovalStep{};
  const auto vmid = *vm.vmid;
  // A create, migration or delete in progress owns the VM until it ends.
  if (!vm.lock.empty()) return VmRemovalStep{.kind = VmRemovalStep::Kind::kBusy, .task = std::nullopt};
  auto status = pve.GetVmStatus(vm.node, vmid);
  if (NotFound(status.status())) return VmRemovalStep{};
  if (!status.ok()) return status.status();
  if (status->status == "running") {
    auto upid = pve.ShutdownVm(vm.node, vmid, {.timeout = shutdown_timeout, .force_stop = true});
    if (!upid.ok()) return upid.status();
    return VmRemovalStep{.kind = VmRemovalStep::Kind::kShuttingDown, .task = *upid};
  }
  auto upid = pve.DeleteVm(vm.node, vmid, /*purge=*/true, /*destroy_unreferenced_disks=*/true);
  if (!upid.ok()) {
    if (pve::ClassifyError(upid.status()) == pve::ErrorKind::kLocked) {
      return VmRemovalStep{.kind = VmRemovalStep::Kind::kBusy, .task = std::nullopt};
    }
    if (NotFound(upid.status())) return VmRemovalStep{};
    return upid.status();
  }
  return VmRemovalStep{.kind = VmRemovalStep::Kind::kDeleting, .task = *upid};
}

std::string NewUuid(util::Random& random) {
  std::uint64_t hi = random.Uniform(UINT64_MAX);
  std::uint64_t lo = random.Uniform(UINT64_MAX);
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 10
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xffff, hi & 0xffff, lo >> 48,
                     lo & 0xffffffffffffULL);
}

MachineReconciler::MachineReconciler(ReconcilerOptions options, pve::Client& pve, omni::StateClient& state,
                                     omni::ManagementClient& management, std::string image_factory_url,
                                     const util::Clock& clock, util::Random& random)
    : options_(std::move(options)),
      pve_(pve),
      state_(state),
      management_(management),
      clock_(clock),
      random_(random),
      resolver_(management, std::move(image_factory_url)) {}

MachineReconciler::~MachineReconciler() {
  if (task_slots_ != nullptr) task_slots_->SetSlotFreedListener(nullptr);
}

ReconcilerStats MachineReconciler::Stats() const {
  std::lock_guard lock(stats_mutex_);
  return stats_;
}

absl::StatusOr<omni::ConnectionParams> MachineReconciler::ConnectionParams() {
  std::lock_guard lock(params_mutex_);
  const auto now = clock_.Monotonic();
  if (params_ && now - params_fetched_ < options_.connection_params_ttl) return *params_;
  auto fetched = omni::FetchConnectionParams(state_, options_.provider_id);
  if (!fetched.ok()) return fetched.status();
  params_ = *fetched;
  params_fetched_ = now;
  return *params_;
}

absl::Status MachineReconciler::WriteStatus(Pass& pass, int stage, const std::string& text, const std::string& error,
                                            const std::string& uuid) {
  const std::string owner = omni::ProvisionControllerName(options_.provider_id);
  const auto fill = [&](omni::Resource& r, const std::string& id) {
    Stage spec;
    OP_RETURN_IF_ERROR(omni::DecodeSpec(r, spec));
    spec.set_stage(static_cast<Stage::Stage>(stage));
    spec.set_status(text);
    spec.set_error(error);
    spec.set_id(id);
    omni::EncodeSpec(spec, r);
    r.metadata.labels = pass.request.metadata.labels;
    return absl::OkStatus();
  };
  if (!pass.status) {
    omni::Resource status;
    status.metadata.ns = std::string(omni::kNamespaceInfraProvider);
    status.metadata.type = std::string(omni::kTypeMachineRequestStatus);
    status.metadata.id = pass.request_id;
    OP_RETURN_IF_ERROR(fill(status, uuid));
    auto created = state_.Create(status, owner);
    if (created.ok()) {
      pass.status = *created;
      return absl::OkStatus();
    }
    if (created.status().code() != absl::StatusCode::kAlreadyExists) return created.status();
    auto current = state_.Get(StatusPointer(pass.request_id));
    if (!current.ok()) return current.status();
    pass.status = *current;
  }
  if (pass.status->tearing_down()) return absl::OkStatus();
  Stage existing;
  OP_RETURN_IF_ERROR(omni::DecodeSpec(*pass.status, existing));
  const std::string id = uuid.empty() ? existing.id() : uuid;
  if (existing.stage() == stage && existing.status() == text && existing.error() == error && existing.id() == id &&
      pass.status->metadata.labels == pass.request.metadata.labels) {
    return absl::OkStatus();
  }
  // Straight from the version we know; Omni adding a finalizer meanwhile makes it a conflict,
  // and the read-modify-write below starts from what is there.
  omni::Resource desired = *pass.status;
  OP_RETURN_IF_ERROR(fill(desired, id));
  auto updated = state_.Update(desired, owner);
  if (!updated.ok() && omni::IsRetryableWrite(updated.status())) {
    updated = state_.Modify(StatusPointer(pass.request_id), owner, [&](omni::Resource& r) { return fill(r, id); });
  }
  if (!updated.ok()) {
    pass.unsaved = true;
    return updated.status();
  }
  pass.status = *updated;
  return absl::OkStatus();
}

absl::Status MachineReconciler::SaveMachine(Pass& pass, const std::string& step,
                                            std::optional<std::string_view> expected_phase) {
  const std::string owner = omni::ProvisionControllerName(options_.provider_id);
  const auto fill = [&](omni::Resource& r) {
    omni::EncodeSpec(pass.machine, r);
    r.metadata.annotations[std::string(omni::kAnnotationStep)] = step;
    return absl::OkStatus();
  };
  // One Update from the version this pass holds; a conflict (someone else wrote it, or the
  // phase changed) falls back to read-modify-write, which reports a phase mismatch as it is.
  omni::Resource desired = pass.state_resource;
  (void)fill(desired);
  auto saved = state_.Update(desired, owner, expected_phase);
  if (!saved.ok() && omni::IsRetryableWrite(saved.status())) {
    saved = state_.Modify(pass.state_resource.pointer(), owner, fill, expected_phase);
  }
  if (!saved.ok()) {
    pass.unsaved = true;
    return saved.status();
  }
  pass.state_resource = *saved;
  pass.pending_save.reset();
  return absl::OkStatus();
}

void MachineReconciler::DeferSave(Pass& pass, const std::string& step) { pass.pending_save = step; }

absl::Status MachineReconciler::FlushSave(Pass& pass) {
  if (!pass.pending_save) return absl::OkStatus();
  const std::string step = *pass.pending_save;
  return SaveMachine(pass, step);
}

absl::StatusOr<bool> MachineReconciler::IsLegacyOwned(const MachineSpec& machine, const pve::ClusterResource& vm) {
  if (machine.markers() || machine.uuid().empty() || !vm.vmid || *vm.vmid != machine.vmid()) return false;
  auto config = pve_.GetVmConfig(vm.node, *vm.vmid);
  if (!config.ok()) return config.status();
  const std::string smbios = config->Get("smbios1").value_or("");
  return smbios.find("uuid=" + machine.uuid()) != std::string::npos;
}

absl::StatusOr<std::optional<pve::ClusterResource>> MachineReconciler::FindOwnedVm(const std::string& request_id) {
  auto vms = pve_.ClusterResources(pve::ResourceType::kVm);
  if (!vms.ok()) return vms.status();
  std::optional<pve::ClusterResource> found;
  for (const auto& vm : *vms) {
    if (vm.type != "qemu" || !vm.vmid) continue;
    if (!IsOwnedBy(vm.tags, vm.name, options_.provider_id, request_id)) continue;
    if (found) {
      // Two VMs with one request's markers can only come from outside; never guess which to keep.
      return absl::FailedPreconditionError(
          fmt::format("VMs {} and {} both carry the markers of request {}; remove the one that is not in use",
                      *found->vmid, *vm.vmid, request_id));
    }
    found = vm;
  }
  return found;
}

absl::StatusOr<bool> MachineReconciler::IsoPresent(const std::string& scope, const std::string& node,
                                                   const std::string& volid, bool fresh) {
  const std::string storage = volid.substr(0, volid.find(':'));
  if (!fresh) {
    if (auto known = iso_cache_.Present(scope, storage, volid)) return *known;
  }
  const std::uint64_t seq = iso_cache_.ListingSeq();
  auto listing = pve_.StorageContent(node, storage, "iso");
  if (!listing.ok()) {
    iso_cache_.Invalidate(scope, storage);
    return absl::Status(listing.status().code(),
                        fmt::format("node {} storage {}: cannot list ISOs: {}", node, storage, Msg(listing.status())));
  }
  std::vector<std::string> volids;
  volids.reserve(listing->size());
  for (const auto& v : *listing) volids.push_back(v.volid);
  return iso_cache_.Fill(scope, storage, seq, volids, volid);
}

MachineReconciler::StepResult MachineReconciler::PollTask(const std::string& asker, const std::string& upid_text,
                                                          const std::string& what, bool& done, bool* succeeded) {
  done = false;
  if (succeeded != nullptr) *succeeded = false;
  auto upid = pve::parse::ParseUpid(upid_text);
  if (!upid.ok()) {
    task_pacer_.Done(upid_text);
    done = true;  // an unparsable stored UPID is forgotten and the step re-checks the world
    return StepResult::Next();
  }
  const milliseconds interval = task_pacer_.Next(upid_text);
  absl::StatusOr<pve::TaskStatus> status;
  bool polled_here = false;
  if (auto recent = task_board_.Recent(upid_text, interval, asker)) {
    // Another request polled this task (a shared download) within the interval.
    if (recent->status.running) {
      // Back just after that request's next poll, to read its answer.
      const auto until_next = std::chrono::duration_cast<milliseconds>(recent->at + interval - clock_.Monotonic());
      return StepResult::Requeue(std::max(until_next, milliseconds{0}) + milliseconds{20});
    }
    status = recent->status;
  } else {
    status = pve_.GetTaskStatus(*upid);
    polled_here = true;
    if (status.ok()) task_board_.Record(upid_text, *status, asker);
  }
  if (!status.ok()) {
    if (NotFound(status.status())) {
      task_pacer_.Done(upid_text);
      task_board_.Forget(upid_text);
      done = true;
      return StepResult::Next();
    }
    return StepResult::Retry(fmt::format("{}: cannot read task status: {}", what, Msg(status.status())),
                             milliseconds{5000});
  }
  if (status->running) {
    if (polled_here) task_pacer_.SawRunning(upid_text);
    return StepResult::Requeue(interval);
  }
  // Only a task this request polled to its end teaches the pacer how long such tasks take.
  if (polled_here) {
    task_pacer_.Finished(upid_text);
  } else {
    task_pacer_.Done(upid_text);
  }
  done = true;
  if (status->Succeeded()) {
    if (succeeded != nullptr) *succeeded = true;
    return StepResult::Next();
  }
  std::vector<std::string> tail;
  if (auto log = pve_.GetTaskLog(*upid, 0, 500); log.ok()) {
    const std::size_t n = log->lines.size();
    for (std::size_t i = n > 3 ? n - 3 : 0; i < n; ++i) tail.push_back(log->lines[i].text);
  }
  return StepResult::Retry(fmt::format("{} failed: {}", what, TaskFailureText(*status, tail)), milliseconds{10'000});
}

std::optional<pve::SlotClaim> MachineReconciler::ClaimTaskSlot(const std::string& node, const std::string& request_id) {
  const auto now = clock_.Monotonic();
  bool may_claim = false;
  {
    std::lock_guard lock(slot_waiters_mutex_);
    auto& waiters = slot_waiters_[node];
    // A waiter that stopped asking (deleted, or it moved on) loses its place.
    std::erase_if(waiters, [&](const SlotWaiter& w) {
      return w.request_id != request_id && now - w.asked > 3 * options_.slot_recheck;
    });
    // Requests already waiting go first; a newcomer does not overtake them.
    may_claim = waiters.empty() || waiters.front().request_id == request_id;
  }
  // Outside the waiters' lock: a claim may free another slot, which calls back into it.
  std::optional<pve::SlotClaim> claim;
  if (may_claim) claim = task_slots_->TryClaimSlot(node);
  std::string next;
  {
    std::lock_guard lock(slot_waiters_mutex_);
    auto& waiters = slot_waiters_[node];
    auto mine =
        std::find_if(waiters.begin(), waiters.end(), [&](const SlotWaiter& w) { return w.request_id == request_id; });
    if (!claim) {
      if (mine == waiters.end()) {
        waiters.push_back({.request_id = request_id, .asked = now});
      } else {
        mine->asked = now;
      }
      return std::nullopt;
    }
    if (mine != waiters.end()) waiters.erase(mine);
    // Several slots may have freed at once: the next in line tries too.
    if (!waiters.empty()) next = waiters.front().request_id;
  }
  if (!next.empty() && wake_request) wake_request(next);
  return claim;
}

void MachineReconciler::set_task_slots(pve::TaskSlotView* slots) {
  task_slots_ = slots;
  if (slots == nullptr) return;
  slots->SetSlotFreedListener([this](const std::string& node) {
    std::string next;
    {
      std::lock_guard lock(slot_waiters_mutex_);
      auto it = slot_waiters_.find(node);
      if (it == slot_waiters_.end() || it->second.empty()) return;
      next = it->second.front().request_id;
    }
    if (wake_request) wake_request(next);
  });
}

void MachineReconciler::Forget(const std::string& request_id, const std::string& version) {
  std::lock_guard lock(memo_mutex_);
  if (auto own = own_request_versions_.find(request_id); own != own_request_versions_.end()) {
    if (!version.empty() && own->second == version) return;
    own_request_versions_.erase(own);
  }
  memos_.erase(request_id);
  ++memo_epochs_[request_id];
}

void MachineReconciler::ForgetAll() {
  std::lock_guard lock(memo_mutex_);
  memos_.clear();
  own_request_versions_.clear();
  ++memo_epoch_all_;
}

std::shared_ptr<MachineReconciler::PassMemo> MachineReconciler::RecallMemo(const std::string& request_id,
                                                                           std::uint64_t& epoch) {
  std::lock_guard lock(memo_mutex_);
  epoch = MemoEpochLocked(request_id);
  auto it = memos_.find(request_id);
  if (it == memos_.end()) return nullptr;
  std::shared_ptr<PassMemo> memo = std::move(it->second);
  memos_.erase(it);
  if (options_.pass_memo_ttl.count() <= 0 || clock_.Monotonic() - memo->read_at >= options_.pass_memo_ttl) {
    return nullptr;
  }
  return memo;
}

std::uint64_t MachineReconciler::MemoEpochLocked(const std::string& request_id) const {
  const auto found = memo_epochs_.find(request_id);
  return memo_epoch_all_ + (found == memo_epochs_.end() ? 0 : found->second);
}

void MachineReconciler::KeepMemo(Pass&& pass, std::uint64_t epoch, util::Clock::MonotonicTime read_at) {
  if (options_.pass_memo_ttl.count() <= 0) return;
  std::lock_guard lock(memo_mutex_);
  if (MemoEpochLocked(pass.request_id) != epoch) return;  // forgotten while the pass ran: what it read may be stale
  auto memo = std::make_shared<PassMemo>();
  const std::string id = pass.request_id;
  memo->pass = std::move(pass);
  memo->read_at = read_at;
  memos_[id] = std::move(memo);
}

Outcome MachineReconciler::Reconcile(const std::string& request_id) {
  util::LogContext context({{"request_id", request_id}, {"step", "reconcile"}});
  auto log = util::Logger("provider");
  std::uint64_t epoch = 0;
  if (std::shared_ptr<PassMemo> memo = RecallMemo(request_id, epoch)) {
    Pass pass = std::move(memo->pass);
    pass.log = log;
    Outcome outcome = Provision(pass, /*loaded=*/true);
    return FinishPass(outcome, std::move(pass), epoch, memo->read_at);
  }
  const auto read_at = clock_.Monotonic();
  auto request = state_.Get(RequestPointer(request_id));
  if (NotFound(request.status())) {
    ledger_.Release(request_id);
    DropMemoRecords(request_id);
    return Outcome::Done();
  }
  if (!request.ok()) return Outcome::Error(request.status());
  auto label = request->metadata.labels.find(std::string(omni::kLabelInfraProviderId));
  if (label != request->metadata.labels.end() && label->second != options_.provider_id) return Outcome::Done();
  if (request->tearing_down()) {
    Outcome outcome = Deprovision(*request);
    if (outcome.kind == Outcome::Kind::kDone) DropMemoRecords(request_id);
    return outcome;
  }

  Pass pass;
  pass.request_id = request_id;
  pass.request = *request;
  pass.log = log;
  if (auto it = request->metadata.labels.find(std::string(omni::kLabelMachineRequestSet));
      it != request->metadata.labels.end()) {
    pass.request_set = it->second;
  }
  Outcome outcome = Provision(pass, /*loaded=*/false);
  return FinishPass(outcome, std::move(pass), epoch, read_at);
}

Outcome MachineReconciler::FinishPass(Outcome outcome, Pass&& pass, std::uint64_t epoch,
                                      util::Clock::MonotonicTime read_at) {
  // Only a pass that ends waiting leaves a memo: after an error the next pass reads everything.
  if (outcome.kind == Outcome::Kind::kRequeueAfter && !pass.unsaved && !pass.pending_save) {
    KeepMemo(std::move(pass), epoch, read_at);
  } else if (outcome.kind == Outcome::Kind::kDone) {
    DropMemoRecords(pass.request_id);
  }
  return outcome;
}

void MachineReconciler::DropMemoRecords(const std::string& request_id) {
  std::lock_guard lock(memo_mutex_);
  memos_.erase(request_id);
  own_request_versions_.erase(request_id);
  memo_epochs_.erase(request_id);
}

std::optional<Outcome> MachineReconciler::LoadPass(Pass& pass) {
  const std::string& id = pass.request_id;
  const std::string finalizer = omni::ProvisionControllerName(options_.provider_id);
  const std::string owner = finalizer;

  // The finalizer comes before any side effect, so Omni cannot forget a request we act on.
  if (!pass.request.HasFinalizer(finalizer)) {
    auto updated = state_.AddFinalizer(pass.request.pointer(), finalizer);
    if (!updated.ok()) return Outcome::Error(updated.status());
    pass.request = *updated;
    std::lock_guard lock(memo_mutex_);
    own_request_versions_[id] = updated->metadata.version;
  }

  auto status = state_.Get(StatusPointer(id));
  if (NotFound(status.status())) {
    if (auto s = WriteStatus(pass, Stage::PROVISIONING, "Accepted", "", ""); !s.ok()) return Outcome::Error(s);
  } else if (!status.ok()) {
    return Outcome::Error(status.status());
  } else {
    pass.status = *status;
    Stage spec;
    if (omni::DecodeSpec(*status, spec).ok() && spec.stage() == Stage::PROVISIONED) {
      ledger_.Release(id);
      return Outcome::Done();
    }
  }

  // The private state resource exists before any Proxmox call, so teardown always has it.
  const omni::ResourcePointer state_pointer{omni::ProviderNamespace(options_.provider_id),
                                            omni::ProviderMachineType(options_.provider_id), id};
  auto state = state_.Get(state_pointer);
  if (NotFound(state.status())) {
    omni::Resource fresh;
    fresh.metadata.ns = state_pointer.ns;
    fresh.metadata.type = state_pointer.type;
    fresh.metadata.id = id;
    MachineSpec empty;
    omni::EncodeSpec(empty, fresh);
    state = state_.Create(fresh, owner);
    if (!state.ok() && state.status().code() == absl::StatusCode::kAlreadyExists) state = state_.Get(state_pointer);
  }
  if (!state.ok()) return Outcome::Error(state.status());
  pass.state_resource = *state;
  if (auto s = omni::DecodeSpec(pass.state_resource, pass.machine); !s.ok()) return Outcome::Error(s);

  if (auto s = omni::DecodeSpec(pass.request, pass.spec); !s.ok()) return Outcome::Error(s);
  auto parsed = ParseProviderData(pass.spec.provider_data());
  if (!parsed.ok()) {
    // The request's spec never changes, so this is final until the MachineClass is fixed.
    auto s = WriteStatus(pass, Stage::FAILED, "Invalid providerdata",
                         fmt::format("providerdata is invalid, no VM was created:\n{}", parsed.ErrorSummary()), "");
    std::lock_guard lock(stats_mutex_);
    ++stats_.failures;
    return s.ok() ? Outcome::Done() : Outcome::Error(s);
  }
  pass.data = *parsed.data;
  auto selectors = CompiledSelectors::Compile(pass.data);
  if (!selectors.ok()) return Outcome::Error(selectors.status());
  pass.selectors = *selectors;

  if (pass.machine.uuid().empty()) {
    pass.machine.set_uuid(NewUuid(random_));
    DeferSave(pass, "init");
  }
  return std::nullopt;
}

Outcome MachineReconciler::Provision(Pass& pass, bool loaded) {
  const std::string& id = pass.request_id;
  if (!loaded) {
    if (auto ended = LoadPass(pass)) return *ended;
  }

  struct NamedStep {
    const char* name;
    StepResult (MachineReconciler::*run)(Pass&);
  };
  static constexpr NamedStep kSteps[] = {
      {"place", &MachineReconciler::Place},       {"schematic", &MachineReconciler::Schematic},
      {"talosIso", &MachineReconciler::TalosIso}, {"cloudInit", &MachineReconciler::Cidata},
      {"createVm", &MachineReconciler::CreateVm}, {"startVm", &MachineReconciler::StartVm},
  };
  constexpr int kStepCount = static_cast<int>(std::size(kSteps));

  std::string last_error;
  if (pass.status) {
    Stage spec;
    if (omni::DecodeSpec(*pass.status, spec).ok()) last_error = spec.error();
  }
  for (int i = 0; i < kStepCount; ++i) {
    const auto& step = kSteps[i];
    const std::string text = fmt::format("Running Step: \"{}\" ({}/{})", step.name, i + 1, kStepCount);
    const auto started = clock_.Monotonic();
    util::LogContext step_context({{"step", step.name}});
    StepResult result = (this->*step.run)(pass);
    if (on_step_duration) {
      on_step_duration(step.name, std::chrono::duration<double>(clock_.Monotonic() - started).count());
    }
    switch (result.kind) {
      case StepKind::kNext:
        last_error.clear();
        continue;
      case StepKind::kRequeue:
        if (auto s = FlushSave(pass); !s.ok()) return Outcome::Error(s);
        if (auto s = WriteStatus(pass, Stage::PROVISIONING, text, last_error, pass.machine.uuid()); !s.ok()) {
          return Outcome::Error(s);
        }
        return Outcome::RequeueAfter(result.after);
      case StepKind::kRetry:
        pass.log->warn("request {} step {}: {}", id, step.name, result.message);
        if (auto s = FlushSave(pass); !s.ok()) return Outcome::Error(s);
        if (auto s = WriteStatus(pass, Stage::PROVISIONING, text, result.message, pass.machine.uuid()); !s.ok()) {
          return Outcome::Error(s);
        }
        return Outcome::RequeueAfter(result.after);
      case StepKind::kFailed: {
        pass.log->error("request {} step {} failed: {}", id, step.name, result.message);
        {
          std::lock_guard lock(stats_mutex_);
          ++stats_.failures;
        }
        if (auto s = FlushSave(pass); !s.ok()) return Outcome::Error(s);
        if (auto s = WriteStatus(pass, Stage::FAILED, text, result.message, pass.machine.uuid()); !s.ok()) {
          return Outcome::Error(s);
        }
        return Outcome::RequeueAfter(options_.failed_retry);
      }
    }
  }
  // The state first: a status never reports what our state does not hold.
  if (auto s = FlushSave(pass); !s.ok()) return Outcome::Error(s);
  if (auto s = WriteStatus(pass, Stage::PROVISIONED, "Provision Complete", "", pass.machine.uuid()); !s.ok()) {
    return Outcome::Error(s);
  }
  ledger_.Release(id);
  pass.log->info("request {} provisioned: vm {} on node {}", id, pass.machine.vmid(), pass.machine.node());
  std::lock_guard lock(stats_mutex_);
  ++stats_.provisioned;
  return Outcome::Done();
}

absl::StatusOr<std::shared_ptr<const MachineReconciler::PlacementSnapshot>> MachineReconciler::PlacementSnapshotNow() {
  // One listing shared by every worker for a short while: placing 100 VMs used to list the
  // nodes, the cluster's VMs and each node's storages (10 requests on 8 nodes) per VM. Holding
  // the lock while fetching makes concurrent placements wait for one fetch instead of each
  // starting their own. Allocations made since the listing are the ledger's reservations.
  std::lock_guard lock(snapshot_mutex_);
  const auto now = clock_.Monotonic();
  if (snapshot_ && now - snapshot_fetched_ < options_.placement_snapshot_ttl) return snapshot_;
  auto fresh = std::make_shared<PlacementSnapshot>();
  // Read before listing: a reservation released later may belong to a VM the listing misses.
  fresh->release_seq = ledger_.ReleaseSeq();
  auto nodes = pve_.ListNodes();
  if (!nodes.ok()) {
    return absl::Status(nodes.status().code(), fmt::format("cannot list Proxmox nodes: {}", Msg(nodes.status())));
  }
  auto vms = pve_.ClusterResources(pve::ResourceType::kVm);
  if (!vms.ok()) return absl::Status(vms.status().code(), fmt::format("cannot list VMs: {}", Msg(vms.status())));
  for (const auto& n : *nodes) {
    NodeSnapshot node;
    node.name = n.name;
    node.online = n.status == pve::NodeStatus::kOnline;
    node.max_memory_bytes = static_cast<std::uint64_t>(n.max_mem_bytes.value_or(0));
    node.used_memory_bytes = static_cast<std::uint64_t>(n.mem_bytes.value_or(0));
    if (node.online) {
      auto storages = pve_.NodeStorages(n.name);
      if (!storages.ok()) {
        // A node that cannot answer is skipped like an offline one, never fatal.
        node.online = false;
      } else {
        for (const auto& st : *storages) node.storages.push_back(ToStorageFacts(n.name, st));
      }
    }
    fresh->nodes.push_back(std::move(node));
  }
  for (const auto& vm : *vms) {
    Ownership ownership;
    if (vm.type != "qemu" || !ParseOwnership(vm.tags, ownership)) continue;
    if (ownership.provider_id != SanitizeTag(options_.provider_id)) continue;
    fresh->vms.push_back({.request_id = ownership.request_id,
                          .request_set_id = ownership.request_set_id,
                          .node = vm.node,
                          .memory_bytes = static_cast<std::uint64_t>(vm.max_mem_bytes.value_or(0)),
                          .reservation = false,
                          .pending_disk_bytes = {}});
  }
  snapshot_ = std::move(fresh);
  snapshot_fetched_ = now;
  return snapshot_;
}

void MachineReconciler::InvalidatePlacementSnapshot() {
  std::lock_guard lock(snapshot_mutex_);
  snapshot_.reset();
}

MachineReconciler::StepResult MachineReconciler::Place(Pass& pass) {
  if (!pass.machine.node().empty()) return StepResult::Next();
  auto snapshot = PlacementSnapshotNow();
  if (!snapshot.ok()) return StepResult::Retry(Msg(snapshot.status()), milliseconds{5000});

  PlacementInput input;
  input.data = &pass.data;
  input.selectors = &*pass.selectors;
  input.request_id = pass.request_id;
  input.request_set_id = pass.request_set;
  input.nodes = (*snapshot)->nodes;
  input.vms = (*snapshot)->vms;
  auto placed = ledger_.PlaceAndReserve(
      pass.request_id, (*snapshot)->release_seq,
      [&](const std::vector<PlacedVm>& reserved) -> absl::StatusOr<std::pair<PlacementDecision, PlacedVm>> {
        PlacementInput with = input;
        // A reservation whose VM now shows in Proxmox is counted once, as the VM.
        for (const auto& r : reserved) {
          const bool visible = std::any_of(input.vms.begin(), input.vms.end(), [&](const PlacedVm& vm) {
            return vm.request_id == SanitizeTag(r.request_id);
          });
          if (!visible) with.vms.push_back(r);
        }
        auto decision = provider::Place(with);
        if (!decision.ok()) return decision.status();
        PlacedVm reservation = decision->AsReservation(with);
        return std::make_pair(*decision, reservation);
      });
  if (!placed.ok()) {
    const auto code = placed.status().code();
    if (code == absl::StatusCode::kFailedPrecondition || code == absl::StatusCode::kResourceExhausted) {
      InvalidatePlacementSnapshot();  // the retry after failed_retry must see the cluster as it is then
      return StepResult::Failed(Msg(placed.status()));
    }
    return StepResult::Retry(Msg(placed.status()), milliseconds{5000});
  }
  const PlacementDecision& decision = placed->first;
  pass.machine.set_node(decision.node);
  pass.machine.set_boot_storage(decision.boot_storage);
  pass.machine.clear_additional_storages();
  for (const auto& s : decision.additional_storages) pass.machine.add_additional_storages(s);
  pass.machine.set_request_set(pass.request_set);
  for (const auto& reason : decision.reasons) pass.log->debug("request {} placement: {}", pass.request_id, reason);
  DeferSave(pass, "place");
  return StepResult::Next();
}

MachineReconciler::StepResult MachineReconciler::Schematic(Pass& pass) {
  if (!pass.machine.schematic().empty() && pass.machine.talos_version() == pass.spec.talos_version()) {
    return StepResult::Next();
  }
  omni::SchematicRequest request;
  for (const auto& e : pass.spec.extensions()) request.extensions.push_back(e);
  for (const auto& k : pass.spec.kernel_args()) request.kernel_args.push_back(k);
  for (const auto& m : pass.spec.meta_values()) request.meta_values.emplace_back(m.key(), m.value());
  if (pass.spec.has_overlay() && !pass.spec.overlay().name().empty()) {
    request.overlay = omni::Overlay{pass.spec.overlay().name(), pass.spec.overlay().image()};
  }
  auto yaml = omni::BuildSchematicYaml(request, omni::SchematicOptions{});
  if (!yaml.ok()) return StepResult::Failed(fmt::format("schematic: {}", Msg(yaml.status())));
  absl::StatusOr<std::string> id;
  {
    std::lock_guard lock(resolver_mutex_);
    id = resolver_.EnsureSchematic(*yaml, pass.spec.talos_version());
  }
  if (!id.ok()) {
    return StepResult::Retry(fmt::format("cannot create the Talos schematic: {}", Msg(id.status())),
                             milliseconds{10'000});
  }
  pass.machine.set_schematic(*id);
  pass.machine.set_talos_version(pass.spec.talos_version());
  DeferSave(pass, "schematic");
  return StepResult::Next();
}

MachineReconciler::StepResult MachineReconciler::TalosIso(Pass& pass) {
  const std::string& node = pass.machine.node();
  const std::string file = TalosIsoFileName(pass.machine.schematic(), pass.machine.talos_version());
  if (!pass.machine.volume_id().empty() && pass.machine.volume_id().ends_with("iso/" + file)) return StepResult::Next();

  // The node's storages from the placement snapshot (a few seconds old at most) rather than a
  // listing per pass: requests waiting for their node's download pass here many times.
  std::vector<cel::StorageFacts> storages;
  bool from_snapshot = false;
  if (auto snapshot = PlacementSnapshotNow(); snapshot.ok()) {
    for (const auto& n : (*snapshot)->nodes) {
      if (n.name == node && n.online) {
        storages = n.storages;
        from_snapshot = true;
      }
    }
  }
  if (!from_snapshot) {
    auto listed = pve_.NodeStorages(node);
    if (!listed.ok()) {
      return StepResult::Retry(fmt::format("node {}: cannot list storages: {}", node, Msg(listed.status())),
                               milliseconds{5000});
    }
    for (const auto& s : *listed) storages.push_back(ToStorageFacts(node, s));
  }
  std::vector<cel::StorageFacts> iso_capable;
  for (const auto& s : storages) {
    if (s.enabled && s.active && std::binary_search(s.content.begin(), s.content.end(), std::string("iso"))) {
      iso_capable.push_back(s);
    }
  }
  std::sort(iso_capable.begin(), iso_capable.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  const cel::StorageFacts* chosen = nullptr;
  for (const auto& s : iso_capable) {
    if (pass.selectors->iso) {
      auto m = pass.selectors->iso->Matches(s);
      if (!m.ok()) return StepResult::Failed(fmt::format("iso_storage_selector: {}", Msg(m.status())));
      if (!*m) continue;
    }
    chosen = &s;
    break;
  }
  if (chosen == nullptr) {
    return StepResult::Failed(fmt::format(
        "node {} has no enabled, active storage with 'iso' content{}; enable ISO content on a storage (e.g. local)",
        node, pass.selectors->iso ? " matching iso_storage_selector" : ""));
  }
  const std::string storage = chosen->name;
  const std::string volid = fmt::format("{}:iso/{}", storage, file);
  const std::string key =
      chosen->shared ? fmt::format("{}/{}", storage, file) : fmt::format("{}/{}/{}", node, storage, file);
  const std::string scope = chosen->shared ? "" : node;

  auto present = IsoPresent(scope, node, volid);
  if (!present.ok()) return StepResult::Retry(Msg(present.status()), milliseconds{5000});
  if (*present) {
    ledger_.ClearDownload(key);
    pass.machine.set_iso_storage(storage);
    pass.machine.set_volume_id(volid);
    pass.machine.clear_volume_upload_task();
    DeferSave(pass, "talosIso");
    return StepResult::Next();
  }

  // A download in flight (ours, another request's, or one a previous process started) is waited for.
  const std::optional<std::string> ledger_task = ledger_.Download(key);
  std::string task = ledger_task.value_or(pass.machine.volume_upload_task());
  if (!task.empty()) {
    bool done = false;
    bool succeeded = false;
    StepResult polled =
        PollTask(pass.request_id, task, fmt::format("download of {} to {}", file, storage), done, &succeeded);
    if (!done) return polled;
    // Before the ledger forgets the download, so a request waiting for it always finds either the
    // download or the file. A task stored by an earlier process may have been for another storage
    // or file (the selector or version changed since): then the file is looked for in a listing.
    if (succeeded && ledger_task) {
      iso_cache_.Mark(scope, storage, volid, true);
    } else {
      iso_cache_.Invalidate(scope, storage);
    }
    ledger_.ClearDownload(key);
    pass.machine.clear_volume_upload_task();
    if (polled.kind == StepKind::kRetry) {
      DeferSave(pass, "talosIso");
      return polled;
    }
    return StepResult::Requeue(milliseconds{0});  // finished: the next pass sees the file
  }

  auto lock = ledger_.LockDownloads();
  if (auto again = ledger_.Download(key)) return StepResult::Requeue(options_.task_poll);
  omni::BootAssetRequest asset_request;
  asset_request.talos_version = pass.machine.talos_version();
  asset_request.schematic_id = pass.machine.schematic();
  asset_request.kind = omni::BootAssetRequest::Kind::kIso;
  asset_request.platform = "nocloud";
  asset_request.architecture = "amd64";
  // Proxmox cannot send request headers, so credentials (if any) must be in the URL.
  asset_request.standalone_url = true;
  absl::StatusOr<omni::BootAsset> asset;
  {
    std::lock_guard resolver_lock(resolver_mutex_);
    asset = resolver_.Resolve(asset_request);
  }
  if (!asset.ok()) {
    return StepResult::Retry(fmt::format("cannot resolve the Talos ISO URL: {}", Msg(asset.status())),
                             milliseconds{10'000});
  }
  pve::DownloadUrlRequest download;
  download.node = node;
  download.storage = storage;
  download.content = "iso";
  download.filename = file;
  download.url = asset->url;
  auto upid = pve_.DownloadUrl(download);
  if (!upid.ok()) {
    const auto kind = pve::ClassifyError(upid.status());
    if (kind == pve::ErrorKind::kAlreadyExists) {
      iso_cache_.Invalidate(scope, storage);  // our cache said absent: list again
      return StepResult::Requeue(milliseconds{0});
    }
    return StepResult::Retry(
        fmt::format("node {}: cannot start the Talos ISO download to {}: {}", node, storage, Msg(upid.status())),
        milliseconds{10'000});
  }
  ledger_.SetDownload(key, upid->text);
  pass.machine.set_iso_storage(storage);
  pass.machine.set_volume_upload_task(upid->text);
  DeferSave(pass, "talosIso");
  pass.log->info("request {}: downloading {} to {} on {}", pass.request_id, file, storage, node);
  return StepResult::Requeue(task_pacer_.Next(upid->text));
}

MachineReconciler::StepResult MachineReconciler::Cidata(Pass& pass) {
  if (!pass.machine.cidata_volume().empty()) return StepResult::Next();
  const std::string& node = pass.machine.node();
  const std::string& storage = pass.machine.iso_storage();

  // After our upload finished the file is looked for in a fresh listing: the name of the file that
  // was uploaded is not stored, and the content (hence the name) may have changed since.
  bool uploaded = false;
  if (!pass.machine.cidata_upload_task().empty()) {
    bool done = false;
    bool succeeded = false;
    StepResult polled =
        PollTask(pass.request_id, pass.machine.cidata_upload_task(), "cloud-init ISO upload", done, &succeeded);
    if (!done) return polled;
    uploaded = succeeded;
    if (!succeeded) iso_cache_.Invalidate(node, storage);
    pass.machine.clear_cidata_upload_task();
    if (polled.kind == StepKind::kRetry) {
      DeferSave(pass, "cloudInit");
      return polled;
    }
  }

  auto params = ConnectionParams();
  if (!params.ok()) {
    return StepResult::Retry(fmt::format("cannot read Omni's join configuration: {}", Msg(params.status())),
                             milliseconds{5000});
  }
  const bool tunnel = pass.spec.grpc_tunnel() == specs::ENABLED || params->enforce_grpc_tunnel;
  auto args = omni::BuildJoinArgs(
      *params, options_.provider_id,
      options_.encode_request_ids ? std::optional<std::string>(pass.request_id) : std::nullopt, tunnel);
  if (!args.ok()) return StepResult::Retry(fmt::format("join config: {}", Msg(args.status())), milliseconds{5000});
  CidataContent content;
  content.user_data = args->config;
  content.instance_id = pass.request_id;
  // The hostname reaches Talos through meta-data only: a hostname config patch breaks registration.
  content.hostname = VmNameFor(pass.request_id);
  auto iso = BuildCidataIso(content);
  if (!iso.ok()) return StepResult::Failed(fmt::format("cannot build the cloud-init ISO: {}", Msg(iso.status())));
  const std::string file = CidataIsoFileName(pass.request_id, *iso);
  const std::string volid = fmt::format("{}:iso/{}", storage, file);

  auto present = IsoPresent(node, node, volid, /*fresh=*/uploaded);
  if (!present.ok()) return StepResult::Retry(Msg(present.status()), milliseconds{5000});
  if (*present) {
    pass.machine.set_cidata_volume(volid);
    pass.machine.clear_cidata_upload_volume();
    pass.machine.set_cidata_node(node);
    DeferSave(pass, "cloudInit");
    return StepResult::Next();
  }
  auto upid = pve_.UploadIso(node, storage, file, *iso);
  if (!upid.ok()) {
    iso_cache_.Invalidate(node, storage);
    return StepResult::Retry(
        fmt::format("node {}: cannot upload the cloud-init ISO to {}: {}", node, storage, Msg(upid.status())),
        milliseconds{5000});
  }
  pass.machine.set_cidata_upload_task(upid->text);
  pass.machine.set_cidata_upload_volume(volid);
  pass.machine.set_cidata_node(node);
  DeferSave(pass, "cloudInit");
  return StepResult::Requeue(task_pacer_.Next(upid->text));
}

MachineReconciler::StepResult MachineReconciler::CreateVm(Pass& pass) {
  // Seen by its markers since the last full read; StartVm checks the markers on every pass.
  if (pass.vm_verified && pass.machine.vmid() != 0 && pass.machine.vm_create_task().empty()) {
    return StepResult::Next();
  }
  if (!pass.machine.vm_create_task().empty()) {
    bool done = false;
    bool succeeded = false;
    StepResult polled = PollTask(pass.request_id, pass.machine.vm_create_task(),
                                 fmt::format("create of VM {}", pass.machine.vmid()), done, &succeeded);
    if (!done) return polled;
    pass.machine.clear_vm_create_task();
    if (polled.kind == StepKind::kRetry) {
      // A failed create removed its config, so the same VMID can be tried again.
      DeferSave(pass, "createVm");
      return polled;
    }
    if (succeeded) {
      // Our create of this VMID, with our markers, finished: no listing needed to know the VM is ours
      // (StartVm still checks its markers in the status it reads).
      ledger_.HoldVmid(pass.request_id, static_cast<std::uint32_t>(pass.machine.vmid()));
      pass.vm_verified = true;
      return StepResult::Next();
    }
  }

  // Nothing of the create (listing, VMID, intent) starts before the node has a task slot for it;
  // the create call below uses the claim, any other way out of this step returns it.
  std::optional<pve::SlotClaim> slot;
  if (task_slots_ != nullptr) {
    slot = ClaimTaskSlot(pass.machine.node(), pass.request_id);
    if (!slot) return StepResult::Requeue(options_.slot_recheck);
  }

  // Our VM, wherever it is now: adopted rather than created twice.
  auto vms = pve_.ClusterResources(pve::ResourceType::kVm);
  if (!vms.ok()) return StepResult::Retry(fmt::format("cannot list VMs: {}", Msg(vms.status())), milliseconds{5000});
  std::optional<pve::ClusterResource> mine;
  std::set<std::int64_t> taken;
  for (const auto& vm : *vms) {
    if (!vm.vmid) continue;
    taken.insert(*vm.vmid);
    if (vm.type == "qemu" && IsOwnedBy(vm.tags, vm.name, options_.provider_id, pass.request_id)) {
      if (mine) {
        return StepResult::Failed(
            fmt::format("VMs {} and {} both carry the markers of request {}; remove the one that is not in use",
                        *mine->vmid, *vm.vmid, pass.request_id));
      }
      mine = vm;
    }
  }
  if (mine) {
    if (mine->lock == "create") return StepResult::Requeue(options_.task_poll);
    const bool changed = pass.machine.vmid() != *mine->vmid || pass.machine.node() != mine->node;
    if (changed) {
      if (pass.machine.vmid() != *mine->vmid) {
        std::lock_guard lock(stats_mutex_);
        ++stats_.vms_adopted;
      }
      pass.machine.set_vmid(static_cast<std::int32_t>(*mine->vmid));
      pass.machine.set_node(mine->node);
      pass.machine.set_markers(true);
      DeferSave(pass, "createVm");
    }
    ledger_.HoldVmid(pass.request_id, static_cast<std::uint32_t>(*mine->vmid));
    pass.vm_verified = true;
    return StepResult::Next();
  }

  if (pass.machine.vmid() != 0) {
    for (const auto& vm : *vms) {
      if (!vm.vmid || *vm.vmid != pass.machine.vmid()) continue;
      // Our earlier create may still hold the lock (its config has no markers until the task ends).
      if (vm.lock == "create") return StepResult::Requeue(options_.task_poll);
      // State from the Go provider: its VM has none of our markers but the SMBIOS uuid it stored.
      auto legacy = IsLegacyOwned(pass.machine, vm);
      if (!legacy.ok()) return StepResult::Retry(Msg(legacy.status()), milliseconds{5000});
      if (*legacy) {
        pass.machine.set_node(vm.node);
        DeferSave(pass, "createVm");
        ledger_.HoldVmid(pass.request_id, static_cast<std::uint32_t>(*vm.vmid));
        pass.vm_verified = true;
        std::lock_guard lock(stats_mutex_);
        ++stats_.vms_adopted;
        return StepResult::Next();
      }
      // Someone else's VM took the VMID: never touch it, pick another.
      pass.log->warn("request {}: VMID {} is taken by a VM that is not ours ({}); choosing another", pass.request_id,
                     pass.machine.vmid(), vm.name);
      ledger_.ReleaseVmid(pass.request_id);
      pass.machine.set_vmid(0);
      break;
    }
  }

  if (pass.machine.vmid() == 0) {
    std::uint32_t first = kFirstVmid, last = kLastVmid;
    if (pass.data.vmid_range) {
      first = pass.data.vmid_range->first;
      last = pass.data.vmid_range->last;
    } else if (auto next = pve_.NextId(); next.ok()) {
      first = static_cast<std::uint32_t>(*next);
    }
    auto claimed = ledger_.ClaimVmid(pass.request_id, taken, first, last);
    if (!claimed) {
      return StepResult::Failed(fmt::format("no free VMID in {}-{}; widen vmid_range or free VMIDs", first, last));
    }
    pass.machine.set_vmid(static_cast<std::int32_t>(*claimed));
  } else if (!ledger_.HoldVmid(pass.request_id, static_cast<std::uint32_t>(pass.machine.vmid()))) {
    pass.machine.set_vmid(0);
    return StepResult::Requeue(milliseconds{0});
  }

  // Persist the intent before the call: after a crash the next pass waits for this VMID's lock or
  // finds the VM by its markers.
  pass.machine.set_markers(true);
  pass.machine.set_create_intent_unix(
      std::chrono::duration_cast<std::chrono::seconds>(clock_.Now().time_since_epoch()).count());
  if (auto s = SaveMachine(pass, "createVm"); !s.ok()) return StepResult::Retry(Msg(s), milliseconds{2000});

  VmIdentity identity{.request_id = pass.request_id,
                      .provider_id = options_.provider_id,
                      .request_set_id = pass.request_set,
                      .vmid = static_cast<std::uint32_t>(pass.machine.vmid()),
                      .smbios_uuid = pass.machine.uuid()};
  DiskPlacement placement{
      .boot_storage = pass.machine.boot_storage(),
      .additional_storages = {pass.machine.additional_storages().begin(), pass.machine.additional_storages().end()}};
  VmMedia media{.talos_iso_volume = pass.machine.volume_id(), .cidata_iso_volume = pass.machine.cidata_volume()};
  const FormParams params = RenderCreateParams(pass.data, identity, placement, media);
  pve::FormFields fields(params.begin(), params.end());
  fields.erase(std::remove_if(fields.begin(), fields.end(), [](const auto& f) { return f.first == "vmid"; }),
               fields.end());
  auto upid = pve_.CreateVm(pass.machine.node(), pass.machine.vmid(), fields);
  if (!upid.ok()) {
    switch (pve::ClassifyError(upid.status())) {
      case pve::ErrorKind::kAlreadyExists:
        // Lost a race for the VMID (nextid reserves nothing): a fresh one next pass.
        InvalidatePlacementSnapshot();
        ledger_.ReleaseVmid(pass.request_id);
        pass.machine.set_vmid(0);
        DeferSave(pass, "createVm");
        return StepResult::Requeue(milliseconds{0});
      case pve::ErrorKind::kLocked:
        return StepResult::Retry(fmt::format("VMID {} is locked: {}", pass.machine.vmid(), Msg(upid.status())),
                                 milliseconds{2000});
      case pve::ErrorKind::kBadParameter:
        return StepResult::Failed(fmt::format("Proxmox rejected the VM configuration: {}", Msg(upid.status())));
      default:
        InvalidatePlacementSnapshot();  // e.g. out of space: the listing placement used may be stale
        iso_cache_.InvalidateAll();     // or an ISO it attaches is gone
        return StepResult::Retry(fmt::format("node {}: create VM {} failed: {}", pass.machine.node(),
                                             pass.machine.vmid(), Msg(upid.status())),
                                 milliseconds{5000});
    }
  }
  pass.machine.set_vm_create_task(upid->text);
  DeferSave(pass, "createVm");
  {
    std::lock_guard lock(stats_mutex_);
    ++stats_.vms_created;
  }
  pass.log->info("request {}: creating VM {} on {}", pass.request_id, pass.machine.vmid(), pass.machine.node());
  return StepResult::Requeue(task_pacer_.Next(upid->text));
}

MachineReconciler::StepResult MachineReconciler::StartVm(Pass& pass) {
  if (!pass.machine.vm_start_task().empty()) {
    bool done = false;
    StepResult polled = PollTask(pass.request_id, pass.machine.vm_start_task(),
                                 fmt::format("start of VM {}", pass.machine.vmid()), done);
    if (!done) return polled;
    pass.machine.clear_vm_start_task();
    DeferSave(pass, "startVm");
    if (polled.kind == StepKind::kRetry) return polled;
  }
  auto status = pve_.GetVmStatus(pass.machine.node(), pass.machine.vmid());
  // A VM at our VMID without our markers (ours was deleted and the VMID reused) is never started.
  const bool replaced = status.ok() && pass.machine.markers() &&
                        !IsOwnedBy(status->tags, status->name, options_.provider_id, pass.request_id);
  if (!status.ok() || replaced) {
    if (NotFound(status.status()) || replaced) {
      // Moved or deleted behind our back: find it by its markers, or create it again.
      pass.vm_verified = false;
      auto found = FindOwnedVm(pass.request_id);
      if (!found.ok()) return StepResult::Retry(Msg(found.status()), milliseconds{5000});
      if (*found) {
        pass.machine.set_node((*found)->node);
        pass.machine.set_vmid(static_cast<std::int32_t>(*(*found)->vmid));
      } else {
        pass.machine.set_vmid(0);
        pass.machine.clear_vm_create_task();
      }
      DeferSave(pass, "startVm");
      return StepResult::Requeue(milliseconds{0});
    }
    return StepResult::Retry(
        fmt::format("node {}: cannot read VM {}: {}", pass.machine.node(), pass.machine.vmid(), Msg(status.status())),
        milliseconds{5000});
  }
  if (status->status == "running") return StepResult::Next();
  auto upid = pve_.StartVm(pass.machine.node(), pass.machine.vmid());
  if (!upid.ok()) {
    return StepResult::Retry(
        fmt::format("node {}: start of VM {} failed: {}", pass.machine.node(), pass.machine.vmid(), Msg(upid.status())),
        milliseconds{5000});
  }
  pass.machine.set_vm_start_task(upid->text);
  DeferSave(pass, "startVm");
  return StepResult::Requeue(task_pacer_.Next(upid->text));
}

Outcome MachineReconciler::Deprovision(const omni::Resource& request) {
  util::LogContext step_context({{"step", "teardown"}});
  auto log = util::Logger("provider");
  const std::string& id = request.metadata.id;
  const std::string owner = omni::ProvisionControllerName(options_.provider_id);

  // 1. Config patch requests made for this machine (the Go provider's; we make none).
  omni::ListRequest patches{std::string(omni::kNamespaceInfraProvider),
                            std::string(omni::kTypeConfigPatchRequest),
                            {omni::LabelTerm::Equal(std::string(omni::kLabelInfraProviderId), options_.provider_id),
                             omni::LabelTerm::Equal(std::string(omni::kLabelMachineRequest), id)}};
  auto listed = state_.List(patches);
  if (!listed.ok()) return Outcome::Error(listed.status());
  bool waiting = false;
  for (const auto& patch : *listed) {
    auto ready = state_.Teardown(patch.pointer(), owner);
    if (!ready.ok()) {
      if (!NotFound(ready.status())) return Outcome::Error(ready.status());
      continue;
    }
    if (*ready) {
      if (auto s = state_.Destroy(patch.pointer(), owner); !s.ok() && !NotFound(s)) return Outcome::Error(s);
    } else {
      waiting = true;
    }
  }
  if (waiting) return Outcome::RequeueAfter(milliseconds{2000});

  // 2. The status, once Omni has dropped its cleanup finalizer.
  auto status_ready = state_.Teardown(StatusPointer(id), owner);
  if (status_ready.ok()) {
    if (!*status_ready) return Outcome::RequeueAfter(milliseconds{1000});
    if (auto s = state_.Destroy(StatusPointer(id), owner); !s.ok() && !NotFound(s)) return Outcome::Error(s);
  } else if (!NotFound(status_ready.status())) {
    return Outcome::Error(status_ready.status());
  }

  // 3. The private state; without it there is nothing of ours to remove.
  const omni::ResourcePointer state_pointer{omni::ProviderNamespace(options_.provider_id),
                                            omni::ProviderMachineType(options_.provider_id), id};
  auto state = state_.Get(state_pointer);
  if (NotFound(state.status())) {
    auto removed = state_.RemoveFinalizer(request.pointer(), owner);
    if (!removed.ok() && !NotFound(removed.status())) return Outcome::Error(removed.status());
    ledger_.Release(id);
    return Outcome::Done();
  }
  if (!state.ok()) return Outcome::Error(state.status());
  Pass pass;
  pass.request_id = id;
  pass.request = request;
  pass.state_resource = *state;
  pass.log = log;
  if (auto s = omni::DecodeSpec(pass.state_resource, pass.machine); !s.ok()) return Outcome::Error(s);
  // Teardown writes the state in whatever phase it is in.
  const auto save = [&](const char* step) { return SaveMachine(pass, step, std::nullopt); };

  // 4. The VM: located cluster-wide, so a migrated VM is found on its new node; deleted only when
  // its markers (or, for the Go provider's state, its SMBIOS uuid) prove it is this request's.
  if (!pass.machine.vm_delete_task().empty()) {
    bool done = false;
    StepResult polled = PollTask(pass.request_id, pass.machine.vm_delete_task(),
                                 fmt::format("delete of VM {}", pass.machine.vmid()), done);
    if (!done) return Outcome::RequeueAfter(polled.after);
    pass.machine.clear_vm_delete_task();
    if (auto s = save("deprovision"); !s.ok()) return Outcome::Error(s);
    if (polled.kind == StepKind::kRetry) return Outcome::Error(absl::UnavailableError(polled.message));
  }
  auto vms = pve_.ClusterResources(pve::ResourceType::kVm);
  if (!vms.ok()) return Outcome::Error(vms.status());
  std::optional<pve::ClusterResource> target;
  for (const auto& vm : *vms) {
    if (vm.type != "qemu" || !vm.vmid) continue;
    if (IsOwnedBy(vm.tags, vm.name, options_.provider_id, id)) {
      target = vm;
      break;
    }
  }
  if (!target && pass.machine.vmid() != 0) {
    for (const auto& vm : *vms) {
      if (vm.type != "qemu" || !vm.vmid || *vm.vmid != pass.machine.vmid()) continue;
      if (vm.lock == "create") return Outcome::RequeueAfter(options_.task_poll);  // our create may still be running
      // State from the Go provider: its VMs carry no markers of ours, but the SMBIOS uuid it stored.
      auto legacy = IsLegacyOwned(pass.machine, vm);
      if (!legacy.ok()) return Outcome::Error(legacy.status());
      if (*legacy) target = vm;
      if (!target) {
        log->warn("request {}: VM {} on {} does not carry this request's markers; leaving it alone", id, *vm.vmid,
                  vm.node);
      }
    }
  }
  if (target) {
    if (!pass.machine.vm_stop_task().empty()) {
      bool done = false;
      StepResult polled =
          PollTask(pass.request_id, pass.machine.vm_stop_task(), fmt::format("shutdown of VM {}", *target->vmid), done);
      if (!done) return Outcome::RequeueAfter(polled.after);
      pass.machine.clear_vm_stop_task();
      (void)save("deprovision");
      // A guest that ignored the shutdown was force-stopped by Proxmox (forceStop); look again.
      return Outcome::RequeueAfter(milliseconds{0});
    }
    auto step = AdvanceVmRemoval(pve_, *target, options_.shutdown_timeout);
    if (!step.ok()) return Outcome::Error(step.status());
    switch (step->kind) {
      case VmRemovalStep::Kind::kGone:
        break;
      case VmRemovalStep::Kind::kBusy:
        return Outcome::RequeueAfter(target->lock == "create" ? options_.task_poll : milliseconds{2000});
      case VmRemovalStep::Kind::kShuttingDown:
        pass.machine.set_vm_stop_task(step->task->text);
        if (auto s = save("deprovision"); !s.ok()) return Outcome::Error(s);
        return Outcome::RequeueAfter(options_.task_poll);
      case VmRemovalStep::Kind::kDeleting: {
        pass.machine.set_vm_delete_task(step->task->text);
        pass.machine.set_node(target->node);
        pass.machine.set_vmid(static_cast<std::int32_t>(*target->vmid));
        if (auto s = save("deprovision"); !s.ok()) return Outcome::Error(s);
        log->info("request {}: deleting VM {} on {}", id, *target->vmid, target->node);
        std::lock_guard lock(stats_mutex_);
        ++stats_.vms_deleted;
        return Outcome::RequeueAfter(options_.task_poll);
      }
    }
  }

  // 5. Our cloud-init ISO (the Talos ISO is shared and left to garbage collection). An upload
  // still in flight is waited for first: the volume it creates is ours to remove.
  if (!pass.machine.cidata_upload_task().empty()) {
    bool done = false;
    StepResult polled = PollTask(pass.request_id, pass.machine.cidata_upload_task(), "cloud-init ISO upload", done);
    if (!done) return Outcome::RequeueAfter(polled.after);
    pass.machine.clear_cidata_upload_task();
    if (pass.machine.cidata_volume().empty() && !pass.machine.cidata_upload_volume().empty()) {
      pass.machine.set_cidata_volume(pass.machine.cidata_upload_volume());
    }
    pass.machine.clear_cidata_upload_volume();
    if (auto s = save("deprovision"); !s.ok()) return Outcome::Error(s);
  }
  // Its delete task is waited for, so nothing is left once the request is gone.
  if (!pass.machine.cidata_delete_task().empty()) {
    bool done = false;
    bool succeeded = false;
    StepResult polled =
        PollTask(pass.request_id, pass.machine.cidata_delete_task(), "delete of the cloud-init ISO", done, &succeeded);
    if (!done) return Outcome::RequeueAfter(polled.after);
    pass.machine.clear_cidata_delete_task();
    const std::string& cidata_node = CidataNode(pass.machine);
    const std::string& cidata_volid = pass.machine.cidata_volume();
    const std::string cidata_storage = cidata_volid.substr(0, cidata_volid.find(':'));
    if (succeeded) {
      iso_cache_.Mark(cidata_node, cidata_storage, cidata_volid, false);
    } else {
      iso_cache_.Invalidate(cidata_node, cidata_storage);
    }
    if (polled.kind == StepKind::kRetry) {
      // A failed delete of a volume that is gone anyway (deleted by hand, or never there) is done.
      auto present = IsoPresent(cidata_node, cidata_node, cidata_volid);
      if (!present.ok() || *present) {
        (void)save("deprovision");
        return Outcome::Error(absl::UnavailableError(polled.message));
      }
    }
    pass.machine.clear_cidata_volume();
    if (auto s = save("deprovision"); !s.ok()) return Outcome::Error(s);
  }
  if (!pass.machine.cidata_volume().empty() && !CidataNode(pass.machine).empty()) {
    const std::string& volid = pass.machine.cidata_volume();
    const std::string storage = volid.substr(0, volid.find(':'));
    auto deleted = pve_.DeleteVolume(CidataNode(pass.machine), storage, volid);
    if (deleted.ok()) {
      pass.machine.set_cidata_delete_task(deleted->text);
      if (auto s = save("deprovision"); !s.ok()) return Outcome::Error(s);
      return Outcome::RequeueAfter(options_.task_poll);
    }
    if (!NotFound(deleted.status())) {
      const auto kind = pve::ClassifyError(deleted.status());
      if (kind != pve::ErrorKind::kNodeUnreachable) return Outcome::Error(deleted.status());
      log->warn("request {}: node {} unreachable, leaving {} for garbage collection", id, CidataNode(pass.machine),
                volid);
    }
    pass.machine.clear_cidata_volume();
    if (auto s = save("deprovision"); !s.ok()) return Outcome::Error(s);
  }

  // 6. The private state, then the finalizer: Omni then destroys the request.
  auto ready = state_.Teardown(state_pointer, owner);
  if (!ready.ok() && !NotFound(ready.status())) return Outcome::Error(ready.status());
  if (ready.ok()) {
    if (auto s = state_.Destroy(state_pointer, owner); !s.ok() && !NotFound(s)) return Outcome::Error(s);
  }
  auto removed = state_.RemoveFinalizer(request.pointer(), owner);
  if (!removed.ok() && !NotFound(removed.status())) return Outcome::Error(removed.status());
  ledger_.Release(id);
  {
    std::lock_guard lock(stats_mutex_);
    ++stats_.deprovisioned;
  }
  log->info("request {}: deprovisioned", id);
  return Outcome::Done();
}

}  // namespace omni_proxmox::provider
