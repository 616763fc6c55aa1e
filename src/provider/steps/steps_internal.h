// SPDX-License-Identifier: Apache-2.0
#pragma once

// The factories of the individual steps (one file each); steps.cc lists them in order.

#include <memory>

#include "provider/reconciler/step.h"
#include "provider/steps/services.h"

namespace omni_proxmox::provider::steps {

std::unique_ptr<Step> MakePlace(StepServices& services);
std::unique_ptr<Step> MakeSchematic(StepServices& services);
std::unique_ptr<Step> MakeTalosIso(StepServices& services);
std::unique_ptr<Step> MakeCidata(StepServices& services);
std::unique_ptr<Step> MakeCreateVm(StepServices& services);
std::unique_ptr<Step> MakeStartVm(StepServices& services);
std::unique_ptr<Step> MakeRemoveVm(StepServices& services);
std::unique_ptr<Step> MakeRemoveCidata(StepServices& services);

}  // namespace omni_proxmox::provider::steps
