// SPDX-License-Identifier: Apache-2.0
#include "provider/steps/steps.h"

#include "provider/steps/steps_internal.h"

namespace omni_proxmox::provider {

StepList ProvisionSteps(StepServices& services) {
  StepList list;
  list.push_back(steps::MakePlace(services));
  list.push_back(steps::MakeSchematic(services));
  list.push_back(steps::MakeTalosIso(services));
  list.push_back(steps::MakeCidata(services));
  list.push_back(steps::MakeCreateVm(services));
  list.push_back(steps::MakeStartVm(services));
  return list;
}

StepList TeardownSteps(StepServices& services) {
  StepList list;
  list.push_back(steps::MakeRemoveVm(services));
  list.push_back(steps::MakeRemoveCidata(services));
  return list;
}

}  // namespace omni_proxmox::provider
