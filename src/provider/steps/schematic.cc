// SPDX-License-Identifier: Apache-2.0
// Step "schematic": the Talos image factory schematic for the request's extensions, kernel
// arguments, META values and overlay (through Omni, which forwards it to its image factory).

#include "omni/schematic.h"

#include <fmt/format.h>

#include "provider/steps/steps_internal.h"

namespace omni_proxmox::provider::steps {
namespace {

class Schematic final : public Step {
 public:
  explicit Schematic(StepServices& services) : services_(services) {}
  std::string_view name() const override { return "schematic"; }

  StepResult Run(StepContext& ctx) override {
    MachineSpec& machine = *ctx.machine;
    const auto& spec = *ctx.request;
    if (!machine.schematic().empty() && machine.talos_version() == spec.talos_version()) return StepResult::Next();
    omni::SchematicRequest request;
    for (const auto& e : spec.extensions()) request.extensions.push_back(e);
    for (const auto& k : spec.kernel_args()) request.kernel_args.push_back(k);
    for (const auto& m : spec.meta_values()) request.meta_values.emplace_back(m.key(), m.value());
    if (spec.has_overlay() && !spec.overlay().name().empty()) {
      request.overlay = omni::Overlay{spec.overlay().name(), spec.overlay().image()};
    }
    auto yaml = omni::BuildSchematicYaml(request, omni::SchematicOptions{});
    // The request's extensions and arguments never change: retrying cannot help.
    if (!yaml.ok()) return StepResult::Terminal(fmt::format("schematic: {}", std::string(yaml.status().message())));
    auto id = services_.assets.EnsureSchematic(*yaml, spec.talos_version());
    if (!id.ok()) {
      return StepResult::Retry(
          fmt::format("cannot create the Talos schematic: {}", std::string(id.status().message())));
    }
    machine.set_schematic(*id);
    machine.set_talos_version(spec.talos_version());
    return StepResult::Next();
  }

 private:
  StepServices& services_;
};

}  // namespace

std::unique_ptr<Step> MakeSchematic(StepServices& services) { return std::make_unique<Schematic>(services); }

}  // namespace omni_proxmox::provider::steps
