// SPDX-License-Identifier: Apache-2.0
// Step "place": a node and the storages for the VM's disks (placement.h decides; the ledger keeps
// concurrent placements from piling onto one node before their VMs show in Proxmox).

#include <algorithm>

#include <fmt/format.h>

#include "provider/ownership/markers.h"
#include "provider/steps/steps_internal.h"

namespace omni_proxmox::provider::steps {
namespace {

class Place final : public Step {
 public:
  explicit Place(StepServices& services) : services_(services) {}
  std::string_view name() const override { return "place"; }

  StepResult Run(StepContext& ctx) override {
    MachineSpec& machine = *ctx.machine;
    if (!machine.node().empty()) return StepResult::Next();
    auto snapshot = services_.fleet.Placement();
    if (!snapshot.ok()) return StepResult::Retry(std::string(snapshot.status().message()));

    PlacementInput input;
    input.data = ctx.data;
    input.selectors = ctx.selectors;
    input.request_id = ctx.request_id;
    input.request_set_id = ctx.request_set;
    input.nodes = (*snapshot)->nodes;
    input.vms = (*snapshot)->vms;
    auto placed = services_.fleet.ledger().PlaceAndReserve(
        ctx.request_id, (*snapshot)->release_seq,
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
          return std::make_pair(*decision, decision->AsReservation(with));
        });
    if (!placed.ok()) {
      const auto code = placed.status().code();
      if (code == absl::StatusCode::kFailedPrecondition || code == absl::StatusCode::kResourceExhausted) {
        services_.fleet.InvalidatePlacement();  // the next attempt must see the cluster as it is then
        return StepResult::Failed(std::string(placed.status().message()));
      }
      return StepResult::Retry(std::string(placed.status().message()));
    }
    const PlacementDecision& decision = placed->first;
    machine.set_node(decision.node);
    machine.set_boot_storage(decision.boot_storage);
    machine.clear_additional_storages();
    for (const auto& s : decision.additional_storages) machine.add_additional_storages(s);
    machine.set_request_set(ctx.request_set);
    for (const auto& reason : decision.reasons) ctx.log->debug("request {} placement: {}", ctx.request_id, reason);
    return StepResult::Next();
  }

 private:
  StepServices& services_;
};

}  // namespace

std::unique_ptr<Step> MakePlace(StepServices& services) { return std::make_unique<Place>(services); }

}  // namespace omni_proxmox::provider::steps
