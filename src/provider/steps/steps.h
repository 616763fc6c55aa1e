// SPDX-License-Identifier: Apache-2.0
#pragma once

// The provider's steps, in the order the step runner runs them (src/provider/steps/<name>.cc):
//   provisioning  place, schematic, talosIso, cloudInit, createVm, startVm
//   teardown      removeVm, removeCidata
// Each is a short piece of orchestration over pure decisions (placement, ISO storage choice, the
// VM's create parameters) and at most a few Proxmox calls.

#include "provider/reconciler/step.h"
#include "provider/steps/services.h"

namespace omni_proxmox::provider {

// Every step keeps a reference to `services`, which must outlive them.
StepList ProvisionSteps(StepServices& services);
StepList TeardownSteps(StepServices& services);

}  // namespace omni_proxmox::provider
