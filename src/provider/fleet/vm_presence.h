// SPDX-License-Identifier: Apache-2.0
#pragma once

// Whether the VM of each PROVISIONED request is still in the cluster, judged from the listing the
// fleet metrics read anyway (one GET /cluster/resources for every request, never a request per
// VM). A VM the listing lacks twice in a row is missing: deleted out of band, or lost with a node
// removed from the cluster. A VM on an offline node is still listed (status "unknown") and is not
// missing. The provider never re-creates a missing VM (Omni owns the machine's lifecycle); the step
// runner writes the verdict into the request's MachineRequestStatus error and clears it when the
// VM is listed again (restored, or its node back). Thread-safe.

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#include "provider/ownership/markers.h"
#include "pve/client.h"
#include "pve/types.h"

namespace omni_proxmox::provider {

// What our state says about a provisioned request's VM.
struct ProvisionedVm {
  std::string request_id;
  pve::Vmid vmid = 0;
  std::string node;
  // False for state the Go provider wrote: its VM carries no markers and is known by its VMID.
  bool markers = true;
};

// A provisioned request whose VM the cluster no longer lists, and where it was last seen.
struct MissingVm {
  std::string request_id;
  std::string node;
  pve::Vmid vmid = 0;
};

// Every MachineRequestStatus error about a missing VM starts so; only such an error is cleared when
// the VM comes back.
inline constexpr std::string_view kVmGonePrefix = "VM gone:";
// "VM gone: Proxmox no longer lists it; last seen on node pve2 as VM 105. ..." with what to do.
std::string VmGoneMessage(const MissingVm& missing);

class VmPresence {
 public:
  enum class Verdict {
    kUnknown,  // not judged yet (just started, or provisioned since the last listing)
    kPresent,
    kMissing,
  };

  // `confirmations`: listings in a row that must lack a VM before it is called missing.
  explicit VmPresence(int confirmations = 2) : confirmations_(confirmations) {}

  // One listing's view of every provisioned request; requests not in `provisioned` are forgotten.
  // Returns the requests whose verdict changed to kMissing or to kPresent, whose statuses may need
  // writing. Pure apart from the verdicts kept.
  std::vector<std::string> Observe(const std::vector<pve::ClusterResource>& listing, const Scope& scope,
                                   const std::vector<ProvisionedVm>& provisioned);

  // The verdict on `request_id`; `missing` (may be null) is filled in for kMissing.
  Verdict Of(const std::string& request_id, MissingVm* missing = nullptr) const;
  // The missing VMs, by request ID.
  std::vector<MissingVm> Missing() const;

 private:
  struct Entry {
    Verdict verdict = Verdict::kUnknown;
    int absent_listings = 0;
    std::string node;  // where the VM was last seen (or our state says it is)
    pve::Vmid vmid = 0;
  };

  const int confirmations_;
  mutable absl::Mutex mutex_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace omni_proxmox::provider
