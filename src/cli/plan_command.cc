// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox plan MACHINECLASS [--count N]`: a dry run against the live Proxmox cluster. It
// places N machines the way `run` would (the same placement, one after another with reservations,
// so spread and capacity show), renders the exact create parameters `run` would POST, checks them
// against the official PVE schema, and lists everything that would fail. Nothing is created: the
// only calls are GETs.
//
// Exit code 0 when every machine can be created, 1 for findings, 2 for bad flags or an unreadable file.

#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "cli/command.h"
#include "cli/connection.h"
#include "cli/pve_facts.h"
#include "cli/text_table.h"
#include "omni/keys.h"
#include "provider/model/providerdata.h"
#include "provider/ownership/iso_names.h"
#include "provider/ownership/markers.h"
#include "provider/placement/placement.h"
#include "provider/vmspec/vmspec.h"
#include "pve/config.h"
#include "pve/privileges.h"
#include "sim/pve/schema.h"
#include "util/status_macros.h"

namespace omni_proxmox::cli {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

// What `run` would get from Omni and the Image Factory, which a dry run does not ask for.
constexpr const char* kSchematicPlaceholder = "SCHEMATIC";
constexpr const char* kTalosVersionPlaceholder = "1.10.4";
// Of the shape omni::InstanceIdOf gives: plan does not read the join configuration.
constexpr std::string_view kInstancePlaceholder = "000000000000";
// The provider's default VMID range when neither vmid_range nor /cluster/nextid says otherwise.

struct MachineClassFile {
  std::string name;         // the class ID, or the file's stem for a plain providerdata file
  std::string provider_id;  // empty when the file does not say
  std::string providerdata;
  std::string form;  // "COSI MachineClass", "apiVersion/kind MachineClass", "providerdata"
};

// yaml-cpp's default node is a defined null, so "is there such a key" needs both tests.
bool Present(const YAML::Node& node) { return node.IsDefined() && !node.IsNull(); }

std::string Scalar(const YAML::Node& node) { return Present(node) && node.IsScalar() ? node.Scalar() : ""; }

// Finds a key case-insensitively: the COSI form is lower-case (autoprovision, providerdata), the
// documents people write by hand often use the Go struct names (autoProvision, providerData).
YAML::Node Child(const YAML::Node& map, std::string_view key) {
  if (!Present(map) || !map.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  for (const auto& item : map) {
    std::string k = item.first.as<std::string>();
    std::erase(k, '_');
    std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return std::tolower(c); });
    if (k == key) return item.second;
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

// A MachineClass in the COSI form (spec.autoprovision.providerdata), the older apiVersion/kind
// form (spec.config as a map), or a plain providerdata document.
absl::StatusOr<MachineClassFile> ReadMachineClass(const std::string& path) {
  OP_ASSIGN_OR_RETURN(const std::string text, pve::ReadFileToString(path));
  YAML::Node doc;
  try {
    doc = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(fmt::format("{}: not YAML: {}", path, e.what()));
  }
  MachineClassFile out;
  std::string stem = path.substr(path.find_last_of('/') + 1);
  stem = stem.substr(0, stem.find('.'));
  const YAML::Node spec = Child(doc, "spec");
  if (const YAML::Node auto_provision = Child(spec, "autoprovision"); Present(auto_provision)) {
    const YAML::Node data = Child(auto_provision, "providerdata");
    if (!Present(data) || !data.IsScalar()) {
      return absl::InvalidArgumentError(fmt::format(
          "{}: spec.autoprovision.providerdata must be the providerdata YAML as a string (providerdata: |)", path));
    }
    out.providerdata = data.Scalar();
    out.provider_id = Scalar(Child(auto_provision, "providerid"));
    out.name = Scalar(Child(Child(doc, "metadata"), "id"));
    out.form = "COSI MachineClass";
  } else if (Scalar(Child(doc, "kind")) == "MachineClass") {
    const YAML::Node config = Child(spec, "config");
    if (!Present(config) || !config.IsMap()) {
      return absl::InvalidArgumentError(
          fmt::format("{}: kind MachineClass needs spec.config with the providerdata keys (cores, memory, ...)", path));
    }
    YAML::Emitter emitter;
    emitter << config;
    out.providerdata = emitter.c_str();
    out.provider_id = Scalar(Child(spec, "provider"));
    out.name = Scalar(Child(Child(doc, "metadata"), "name"));
    out.form = "apiVersion/kind MachineClass";
  } else if (doc.IsMap()) {
    out.providerdata = text;
    out.form = "providerdata";
  } else {
    return absl::InvalidArgumentError(fmt::format(
        "{}: expected a MachineClass (metadata/spec.autoprovision.providerdata) or a providerdata map", path));
  }
  if (out.name.empty()) out.name = stem.empty() ? "plan" : stem;
  return out;
}

struct Finding {
  std::string subject;  // "plan-1", "privileges", "providerdata", ...
  std::string message;
};

struct PlannedMachine {
  std::string request_id;
  std::optional<provider::PlacementDecision> decision;
  std::string error;
  pve::Vmid vmid = 0;
  std::string iso_storage;
  provider::FormParams params;
};

class Planner {
 public:
  Planner(const provider::ProviderData& data, const provider::CompiledSelectors& selectors, std::string class_name,
          std::string provider_id)
      : data_(data), selectors_(selectors), class_name_(std::move(class_name)), provider_id_(std::move(provider_id)) {}

  // Reads the cluster and plans `count` machines; findings collect what would fail.
  absl::Status Run(pve::Client& client, const std::string& auth_id, int count) {
    OP_ASSIGN_OR_RETURN(nodes_, ReadClusterFacts(client, /*bridges=*/true));
    OP_ASSIGN_OR_RETURN(const auto vms, client.ClusterResources(pve::ResourceType::kVm));
    std::vector<provider::PlacedVm> placed;
    for (const auto& vm : vms) {
      if (vm.vmid) used_vmids_.insert(*vm.vmid);
      provider::Ownership ownership;
      if (vm.type != "qemu" || !provider::ParseOwnership(vm.tags, ownership)) continue;
      if (ownership.provider_id != provider::SanitizeTag(provider_id_)) continue;
      placed.push_back({.request_id = ownership.request_id,
                        .request_set_id = ownership.request_set_id,
                        .node = vm.node,
                        .memory_bytes = static_cast<std::uint64_t>(vm.max_mem_bytes.value_or(0)),
                        .reservation = false,
                        .pending_disk_bytes = {}});
    }
    existing_vms_ = placed.size();
    for (const auto& n : nodes_) {
      if (!n.storage_error.empty()) {
        findings_.push_back({fmt::format("node {}", n.snapshot.name),
                             fmt::format("cannot list storages, treated as offline: {}", n.storage_error)});
      }
      if (!n.network_error.empty()) {
        notes_.push_back(fmt::format("node {}: bridges not checked (GET /nodes/{}/network: {})", n.snapshot.name,
                                     n.snapshot.name, n.network_error));
      }
    }
    ReadMappings(client);

    CheckPrivileges(client, auth_id);
    ChooseVmidStart(client);

    auto schema = sim::pve::Schema::Load(sim::pve::EmbeddedPveSchema());
    if (!schema.ok()) return schema.status();
    const sim::pve::Endpoint* create = (*schema)->Find("POST", "/nodes/{node}/qemu");

    provider::PlacementInput input;
    input.data = &data_;
    input.selectors = &selectors_;
    input.request_set_id = class_name_;
    for (const auto& n : nodes_) input.nodes.push_back(n.snapshot);
    input.vms = placed;

    pve::Vmid next_vmid = vmid_first_;
    for (int i = 0; i < count; ++i) {
      PlannedMachine machine;
      machine.request_id = fmt::format("{}-plan-{}", class_name_, i + 1);
      input.request_id = machine.request_id;
      auto decision = provider::Place(input);
      if (!decision.ok()) {
        machine.error = std::string(decision.status().message());
        AddFinding(machine.request_id, machine.error);
        machines_.push_back(std::move(machine));
        continue;
      }
      // The next machine sees this one as created: spread and capacity follow.
      input.vms.push_back(decision->AsReservation(input));
      machine.decision = *decision;

      while (next_vmid <= vmid_last_ && used_vmids_.contains(next_vmid)) ++next_vmid;
      if (next_vmid > vmid_last_) {
        findings_.push_back({machine.request_id, fmt::format("no free VMID in {}-{}; widen vmid_range or free VMIDs",
                                                             vmid_first_, vmid_last_)});
      } else {
        machine.vmid = next_vmid++;
      }
      machine.iso_storage = ChooseIsoStorage(machine);
      CheckDevices(machine);
      CheckVlans(machine);
      RenderAndValidate(machine, **schema, create);
      machines_.push_back(std::move(machine));
    }
    return absl::OkStatus();
  }

  void PrintTable(std::ostream& out, const MachineClassFile& file, int count) const {
    out << fmt::format("Plan for {} '{}': {} machine(s) as provider '{}'; nothing is created.\n", file.form, file.name,
                       count, provider_id_);
    out << fmt::format("VMIDs: {} ({}-{})\n", vmid_source_, vmid_first_, vmid_last_);
    out << fmt::format("Existing VMs of this provider: {}\n\n", existing_vms_);
    std::vector<std::vector<std::string>> rows;
    for (const auto& m : machines_) {
      if (!m.decision) {
        rows.push_back({m.request_id, "-", "-", "-", "-", "-", "cannot place"});
        continue;
      }
      std::vector<std::string> extra;
      for (std::size_t i = 0; i < m.decision->additional_storages.size(); ++i) {
        extra.push_back(
            fmt::format("{} ({} GiB)", m.decision->additional_storages[i], data_.additional_disks[i].size_gib));
      }
      rows.push_back({m.request_id, m.decision->node, m.vmid ? std::to_string(m.vmid) : "-",
                      fmt::format("{} ({} GiB)", m.decision->boot_storage, data_.disk_size_gib),
                      extra.empty() ? "-" : fmt::format("{}", fmt::join(extra, ", ")),
                      m.iso_storage.empty() ? "-" : m.iso_storage, "ok"});
    }
    out << RenderTable({"MACHINE", "NODE", "VMID", "BOOT DISK", "ADDITIONAL DISKS", "ISO STORAGE", "RESULT"}, rows);
    for (const auto& m : machines_) {
      out << fmt::format("\n{}:\n", m.request_id);
      if (!m.decision) {
        out << "  cannot place: see the findings below\n";
        continue;
      }
      for (const auto& reason : m.decision->reasons) out << "  " << reason << "\n";
      out << fmt::format("  POST /nodes/{}/qemu\n", m.decision->node);
      for (const auto& [key, value] : m.params) out << fmt::format("    {}={}\n", key, value);
    }
    out << fmt::format(
        "\nNot known before run: the Talos ISO name (schematic '{}' and Talos version from Omni), the "
        "cloud-init ISO name and the SMBIOS UUID (generated per machine).\n",
        kSchematicPlaceholder);
    if (!notes_.empty()) {
      out << "\nNotes:\n";
      for (const auto& n : notes_) out << "  - " << n << "\n";
    }
    if (findings_.empty()) {
      out << "\nNo findings: every machine can be created.\n";
    } else {
      out << fmt::format("\nFindings ({}):\n", findings_.size());
      for (const auto& f : findings_) out << fmt::format("  - {}: {}\n", f.subject, f.message);
    }
  }

  ordered_json ToJson(const MachineClassFile& file, int count) const {
    ordered_json out = {{"machine_class", file.name},
                        {"form", file.form},
                        {"provider_id", provider_id_},
                        {"count", count},
                        {"vmid_range", {{"first", vmid_first_}, {"last", vmid_last_}, {"source", vmid_source_}}},
                        {"existing_vms", existing_vms_},
                        {"machines", ordered_json::array()},
                        {"findings", ordered_json::array()}};
    for (const auto& m : machines_) {
      ordered_json entry = {{"request_id", m.request_id}};
      if (!m.decision) {
        entry["error"] = m.error;
      } else {
        entry["node"] = m.decision->node;
        entry["vmid"] = m.vmid;
        entry["boot_storage"] = m.decision->boot_storage;
        entry["additional_storages"] = m.decision->additional_storages;
        entry["iso_storage"] = m.iso_storage;
        entry["reasons"] = m.decision->reasons;
        // In the order they are sent.
        ordered_json params = ordered_json::object();
        for (const auto& [key, value] : m.params) params[key] = value;
        entry["create_params"] = std::move(params);
      }
      out["machines"].push_back(std::move(entry));
    }
    for (const auto& f : findings_) out["findings"].push_back({{"subject", f.subject}, {"message", f.message}});
    out["notes"] = notes_;
    out["ok"] = findings_.empty();
    return out;
  }

  std::vector<Finding>& findings() { return findings_; }

 private:
  // The same failure for machine after machine is one finding naming them all.
  void AddFinding(const std::string& subject, const std::string& message) {
    if (!findings_.empty() && findings_.back().message == message) {
      auto& last = findings_.back().subject;
      const auto dots = last.find(" .. ");
      last = (dots == std::string::npos ? last : last.substr(0, dots)) + " .. " + subject;
      return;
    }
    findings_.push_back({subject, message});
  }

  void CheckPrivileges(pve::Client& client, const std::string& auth_id) {
    auto permissions = client.GetPermissions();
    if (!permissions.ok()) {
      findings_.push_back({"privileges", fmt::format("cannot read /access/permissions: {}",
                                                     std::string(permissions.status().message()))});
      return;
    }
    if (auto check = pve::CheckPrivileges(*permissions, pve::ProvisioningPrivileges(), auth_id); !check.ok()) {
      findings_.push_back({"privileges", std::string(check.message())});
    }
    if (!data_.hugepages.empty() && auth_id != "root@pam") {
      findings_.push_back({"privileges", fmt::format("hugepages: Proxmox lets only root@pam set it ('only root can "
                                                     "set 'hugepages' config'), and this is {}; drop hugepages or "
                                                     "use root@pam",
                                                     auth_id)});
    }
    if (!data_.pool.empty() && !pve::HasPrivilege(*permissions, "/pool/" + data_.pool, "VM.Allocate")) {
      findings_.push_back(
          {"privileges", fmt::format("pool '{}': {} lacks VM.Allocate on /pool/{}", data_.pool, auth_id, data_.pool)});
    }
  }

  // Resource mappings, read only when the class asks for devices. nullopt: unknown (with a note).
  void ReadMappings(pve::Client& client) {
    const auto read = [&](const char* kind, bool wanted, std::optional<std::vector<pve::HardwareMapping>>& out) {
      if (!wanted) return;
      auto mappings = client.HardwareMappings(kind);
      if (mappings.ok()) {
        out = *std::move(mappings);
      } else {
        findings_.push_back({fmt::format("{}_devices", kind), fmt::format("cannot list /cluster/mapping/{}: {}", kind,
                                                                          std::string(mappings.status().message()))});
      }
    };
    read("pci", !data_.pci_devices.empty(), pci_mappings_);
    read("usb", !data_.usb_devices.empty(), usb_mappings_);
  }

  // run places without looking at mappings, and the VM's start then fails with "PCI device
  // mapping not found": say so before anything is created.
  void CheckDevices(PlannedMachine& machine) {
    const std::string& node = machine.decision->node;
    const auto check = [&](const char* kind, const std::string& key, const std::string& mapping,
                           const std::optional<std::vector<pve::HardwareMapping>>& known) {
      if (!known) return;
      const auto it = std::find_if(known->begin(), known->end(), [&](const auto& m) { return m.id == mapping; });
      if (it == known->end()) {
        AddFinding(machine.request_id,
                   fmt::format("{}: {} mapping '{}' does not exist (or the token lacks Mapping.Use on /mapping/{}/{}); "
                               "create it in Datacenter -> Resource Mappings",
                               key, kind, mapping, kind, mapping));
      } else if (std::find(it->nodes.begin(), it->nodes.end(), node) == it->nodes.end()) {
        AddFinding(machine.request_id,
                   fmt::format("{}: {} mapping '{}' has no device on node {} (mapped on: {}); the VM would not start "
                               "there; pin the class with nodes: [{}]",
                               key, kind, mapping, node,
                               it->nodes.empty() ? "none" : fmt::format("{}", fmt::join(it->nodes, ", ")),
                               fmt::format("{}", fmt::join(it->nodes, ", "))));
      }
    };
    for (std::size_t i = 0; i < data_.pci_devices.size(); ++i) {
      check("pci", fmt::format("pci_devices[{}]", i), data_.pci_devices[i].mapping, pci_mappings_);
    }
    for (std::size_t i = 0; i < data_.usb_devices.size(); ++i) {
      check("usb", fmt::format("usb_devices[{}]", i), data_.usb_devices[i].mapping, usb_mappings_);
    }
  }

  // A tagged NIC on a Linux bridge that is not VLAN-aware still works (Proxmox builds a
  // vmbrXvN bridge), but usually means the bridge was meant to be VLAN-aware.
  void CheckVlans(const PlannedMachine& machine) {
    const NodeFacts* node = nullptr;
    for (const auto& n : nodes_) {
      if (n.snapshot.name == machine.decision->node) node = &n;
    }
    if (node == nullptr || !node->network_error.empty()) return;
    std::vector<std::pair<std::string, pve::Vmid>> tagged;
    if (data_.vlan != 0) tagged.emplace_back(data_.network_bridge, data_.vlan);
    for (const auto& nic : data_.additional_nics) {
      if (nic.vlan != 0) tagged.emplace_back(nic.bridge, nic.vlan);
    }
    for (const auto& [bridge, vlan] : tagged) {
      const auto& aware = node->vlan_aware_bridges;
      if (std::find(aware.begin(), aware.end(), bridge) != aware.end()) continue;
      const std::string note = fmt::format(
          "node {}: bridge {} is not VLAN-aware, so VLAN {} uses the traditional model ({}v{}); set "
          "bridge-vlan-aware yes on it if that is not intended",
          node->snapshot.name, bridge, vlan, bridge, vlan);
      if (std::find(notes_.begin(), notes_.end(), note) == notes_.end()) notes_.push_back(note);
    }
  }

  void ChooseVmidStart(pve::Client& client) {
    if (data_.vmid_range) {
      vmid_first_ = data_.vmid_range->first;
      vmid_last_ = data_.vmid_range->last;
      vmid_source_ = "providerdata vmid_range";
      return;
    }
    vmid_first_ = pve::kMinVmid;
    vmid_last_ = pve::kMaxVmid;
    vmid_source_ = "the lowest free from GET /cluster/nextid";
    if (auto next = client.NextId(); next.ok()) {
      vmid_first_ = *next;
    } else {
      findings_.push_back(
          {"vmid", fmt::format("GET /cluster/nextid failed: {}", std::string(next.status().message()))});
    }
  }

  // `run`'s rule (provider::ChooseIsoStorage, as the talosIso step uses it).
  std::string ChooseIsoStorage(PlannedMachine& machine) {
    for (const auto& n : nodes_) {
      if (n.snapshot.name != machine.decision->node) continue;
      auto chosen = provider::ChooseIsoStorage(n.snapshot.name, n.snapshot.storages, selectors_.iso);
      if (chosen.ok()) return chosen->name;
      findings_.push_back({machine.request_id, std::string(chosen.status().message())});
      return "";
    }
    auto none = provider::ChooseIsoStorage(machine.decision->node, {}, selectors_.iso);
    findings_.push_back({machine.request_id, std::string(none.status().message())});
    return "";
  }

  void RenderAndValidate(PlannedMachine& machine, const sim::pve::Schema& schema, const sim::pve::Endpoint* create) {
    provider::VmIdentity identity{.request_id = machine.request_id,
                                  .provider_id = provider_id_,
                                  .request_set_id = class_name_,
                                  .omni_instance = std::string(kInstancePlaceholder),
                                  .vmid = machine.vmid,
                                  // A placeholder of the right shape: run generates one per machine.
                                  .smbios_uuid = "00000000-0000-4000-8000-000000000000"};
    provider::DiskPlacement disks{.boot_storage = machine.decision->boot_storage,
                                  .additional_storages = machine.decision->additional_storages};
    const std::string iso_storage = machine.iso_storage.empty() ? "local" : machine.iso_storage;
    const provider::Scope scope{provider_id_, std::string(kInstancePlaceholder)};
    provider::VmMedia media{
        .talos_iso_volume =
            fmt::format("{}:iso/{}", iso_storage,
                        provider::TalosIsoFileName(kSchematicPlaceholder, kTalosVersionPlaceholder, scope)),
        .cidata_iso_volume =
            fmt::format("{}:iso/{}", iso_storage,
                        provider::ScopedIsoName(
                            fmt::format("omni-cidata-{}.iso", provider::SanitizeTag(machine.request_id)), scope))};
    machine.params = provider::RenderCreateParams(data_, identity, disks, media);
    if (create == nullptr) return;
    std::map<std::string, std::string> fields;
    for (const auto& [key, value] : machine.params) fields[key] = value;
    fields["node"] = machine.decision->node;
    if (machine.vmid != 0) fields["vmid"] = std::to_string(machine.vmid);
    for (const auto& [param, error] : schema.Validate(*create, fields)) {
      findings_.push_back({machine.request_id, fmt::format("Proxmox would reject create parameter {}='{}': {}", param,
                                                           fields[param], error)});
    }
  }

  const provider::ProviderData& data_;
  const provider::CompiledSelectors& selectors_;
  std::string class_name_;
  std::string provider_id_;
  std::vector<NodeFacts> nodes_;
  std::set<pve::Vmid> used_vmids_;
  std::size_t existing_vms_ = 0;
  pve::Vmid vmid_first_ = pve::kMinVmid;
  pve::Vmid vmid_last_ = pve::kMaxVmid;
  std::string vmid_source_;
  std::vector<PlannedMachine> machines_;
  std::vector<Finding> findings_;
  std::vector<std::string> notes_;  // worth knowing, not failures
  std::optional<std::vector<pve::HardwareMapping>> pci_mappings_;
  std::optional<std::vector<pve::HardwareMapping>> usb_mappings_;
};

struct PlanFlags {
  std::string machine_class;
  int count = 1;
  std::string provider_id;
  ConnectionFlags connection;
};

// The class's providerid against the provider's ID (--id, else the identity of a key in the
// environment, else "proxmox"): Omni compares IDs exactly, so a class whose providerid differs only
// in case is served by no provider. Empty when they agree or differ otherwise (another provider).
std::string ProviderIdCaseWarning(const PlanFlags& flags, const MachineClassFile& file) {
  if (file.provider_id.empty()) return "";
  std::string expected = flags.provider_id;
  std::string source = "--id";
  if (expected.empty()) {
    ConnectionFlags env_only;
    if (auto key = ResolveProviderKey(env_only); key.ok()) {
      if (auto id = omni::ProviderIdFromKeyName(key->name); id.ok()) {
        expected = *id;
        source = fmt::format("the identity of the key in the environment, {}", key->name);
      }
    }
  }
  if (expected.empty()) {
    expected = "proxmox";
    source = "the default --id";
  }
  const auto lower = [](std::string text) {
    for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
  };
  if (file.provider_id == expected || lower(file.provider_id) != lower(expected)) return "";
  return fmt::format(
      "providerid '{}' of {} differs only in case from the provider's ID '{}' ({}); Omni IDs are case-sensitive, so "
      "no provider would serve this class: write providerid: {}",
      file.provider_id, file.name, expected, source, expected);
}

int RunPlan(const PlanFlags& flags, const CommandContext& ctx) {
  auto file = ReadMachineClass(flags.machine_class);
  if (!file.ok()) {
    std::cerr << "plan: " << file.status().message() << "\n";
    return kExitUsage;
  }
  const std::string provider_id = !flags.provider_id.empty()   ? flags.provider_id
                                  : !file->provider_id.empty() ? file->provider_id
                                                               : "proxmox";
  std::vector<std::string> warnings;
  if (auto warning = ProviderIdCaseWarning(flags, *file); !warning.empty()) warnings.push_back(warning);

  const provider::ParseResult parsed = provider::ParseProviderData(file->providerdata);
  std::vector<Finding> input_findings;
  for (const auto& d : parsed.diagnostics) {
    if (d.severity == provider::Diagnostic::Severity::kError) input_findings.push_back({"providerdata", d.ToString()});
  }
  std::optional<provider::CompiledSelectors> selectors;
  if (parsed.ok()) {
    auto compiled = provider::CompiledSelectors::Compile(*parsed.data);
    if (compiled.ok()) {
      selectors = *std::move(compiled);
    } else {
      input_findings.push_back({"providerdata", std::string(compiled.status().message())});
    }
  }
  const auto print_input_findings = [&] {
    if (ctx.output == OutputFormat::kJson) {
      json out = {
          {"machine_class", file->name}, {"ok", false}, {"machines", json::array()}, {"findings", json::array()}};
      for (const auto& f : input_findings) out["findings"].push_back({{"subject", f.subject}, {"message", f.message}});
      std::cout << out.dump(2) << "\n";
    } else {
      std::cout << fmt::format("{} '{}' cannot be planned: its providerdata is invalid.\n", file->form, file->name);
      for (const auto& f : input_findings) std::cout << fmt::format("  - {}: {}\n", f.subject, f.message);
    }
  };
  if (!selectors) {
    print_input_findings();
    return kExitFindings;
  }

  pve::ClientOptions options;
  auto client = MakeOperatorPveClient(flags.connection, &options);
  if (!client.ok()) {
    std::cerr << "plan: " << client.status().message() << "\n";
    return kExitUsage;
  }
  const std::string auth_id = options.token_id.empty() ? options.username : options.token_id;
  Planner planner(*parsed.data, *selectors, file->name, provider_id);
  if (auto status = planner.Run(**client, auth_id, flags.count); !status.ok()) {
    std::cerr << "plan: cannot read the cluster from Proxmox (" << options.base_url << "): " << status.message()
              << "\n";
    return kExitFindings;
  }
  if (ctx.output == OutputFormat::kJson) {
    auto out = planner.ToJson(*file, flags.count);
    out["warnings"] = warnings;
    std::cout << out.dump(2) << "\n";
  } else {
    for (const auto& w : warnings) std::cout << "warning: " << w << "\n";
    planner.PrintTable(std::cout, *file, flags.count);
  }
  return planner.findings().empty() ? kExitOk : kExitFindings;
}

}  // namespace

void RegisterPlanCommand(CLI::App& root, CommandContext& ctx) {
  auto* cmd = root.add_subcommand(
      "plan", "Dry run: where N machines of a MachineClass would go, with the exact Proxmox create parameters");
  auto flags = std::make_shared<PlanFlags>();
  cmd->add_option("MACHINECLASS", flags->machine_class,
                  "A MachineClass file (COSI form for omnictl, or the older apiVersion/kind form) or a plain "
                  "providerdata YAML file")
      ->required();
  cmd->add_option("--count", flags->count, "How many machines to plan, placed one after another")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--id", flags->provider_id,
                  "Provider ID whose existing VMs count for spreading (default: the class's providerid, else proxmox)");
  cmd->add_option("--config-file", flags->connection.config_file,
                  "The provider's config.yaml with the proxmox: section (else PROXMOX_URL, PROXMOX_TOKEN_ID, ... from "
                  "the environment)");
  cmd->footer(
      "Only GET requests are made: nothing is created, reserved or downloaded.\n"
      "\n"
      "Examples:\n"
      "  omni-proxmox plan docs/examples/machineclass-worker.yaml --count 3 --config-file config.yaml\n"
      "  PROXMOX_URL=https://pve1:8006 PROXMOX_TOKEN_ID='omni@pve!provider' PROXMOX_TOKEN_SECRET=... \\\n"
      "      omni-proxmox plan providerdata.yaml\n"
      "  omni-proxmox --format json plan worker.yaml --count 5 --config-file config.yaml | jq '.findings'\n"
      "\n"
      "Exit code: 0 when every machine can be created, 1 for findings (placement, privileges, VMIDs, ISO\n"
      "storage, parameters Proxmox would reject), 2 for bad flags or an unreadable file.\n");
  cmd->callback([&ctx, flags] { ctx.exit_code = RunPlan(*flags, ctx); });
}

}  // namespace omni_proxmox::cli
