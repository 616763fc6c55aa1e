// SPDX-License-Identifier: Apache-2.0
#include "provider/model/providerdata.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "provider/model/yaml_kind.h"
#include "provider/placement/storage_selector.h"
#include "util/text.h"

namespace omni_proxmox::provider {
namespace {

using Json = nlohmann::ordered_json;

// Collects diagnostics while one document is parsed.
class Context {
 public:
  void Error(const std::string& path, const YAML::Mark& mark, std::string message) {
    Add(Diagnostic::Severity::kError, path, mark, std::move(message));
  }
  void Warning(const std::string& path, const YAML::Mark& mark, std::string message) {
    Add(Diagnostic::Severity::kWarning, path, mark, std::move(message));
  }
  bool has_errors() const {
    return std::any_of(diagnostics_.begin(), diagnostics_.end(),
                       [](const Diagnostic& d) { return d.severity == Diagnostic::Severity::kError; });
  }
  std::vector<Diagnostic> Take() { return std::move(diagnostics_); }

 private:
  void Add(Diagnostic::Severity severity, const std::string& path, const YAML::Mark& mark, std::string message) {
    Diagnostic d;
    d.severity = severity;
    d.path = path;
    if (!mark.is_null()) {
      d.line = mark.line + 1;
      d.column = mark.column + 1;
    }
    d.message = std::move(message);
    diagnostics_.push_back(std::move(d));
  }

  std::vector<Diagnostic> diagnostics_;
};

// Field parsers for an object of type T. Each knows how to describe itself in the JSON
// schema and how to read its value; both come from the same definition.
template <typename T>
struct FieldSpec {
  std::string name;
  std::string description;
  bool required = false;
  Json schema;  // the property's JSON schema
  std::function<void(const YAML::Node&, T&, Context&, const std::string& path)> read;
};

std::optional<std::uint64_t> ReadUnsigned(const YAML::Node& node, Context& ctx, const std::string& path,
                                          std::uint64_t min, std::uint64_t max, std::string_view unit_hint) {
  if (!node.IsScalar()) {
    ctx.Error(path, node.Mark(), fmt::format("must be a whole number{}, not {}", unit_hint, DescribeYamlKind(node)));
    return std::nullopt;
  }
  const std::string& text = node.Scalar();
  std::uint64_t value = 0;
  bool digits = !text.empty() && text.size() <= 19;
  for (char c : text) digits = digits && c >= '0' && c <= '9';
  if (digits) value = std::stoull(text);
  if (!digits) {
    ctx.Error(path, node.Mark(), fmt::format("must be a whole number{}, not '{}'", unit_hint, text));
    return std::nullopt;
  }
  if (value < min || value > max) {
    const std::string range =
        max == std::numeric_limits<std::uint32_t>::max() || max == std::numeric_limits<std::uint64_t>::max()
            ? fmt::format("at least {}", min)
            : fmt::format("between {} and {}", min, max);
    ctx.Error(path, node.Mark(), fmt::format("{} is out of range; use a value {}{}", value, range, unit_hint));
    return std::nullopt;
  }
  return value;
}

std::optional<bool> ReadBool(const YAML::Node& node, Context& ctx, const std::string& path) {
  bool value = false;
  if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) {
    ctx.Error(path, node.Mark(), fmt::format("must be true or false, not {}", DescribeYamlKind(node)));
    return std::nullopt;
  }
  return value;
}

std::optional<std::string> ReadString(const YAML::Node& node, Context& ctx, const std::string& path) {
  if (!node.IsScalar()) {
    ctx.Error(path, node.Mark(), fmt::format("must be a string, not {}", DescribeYamlKind(node)));
    return std::nullopt;
  }
  return node.Scalar();
}

template <typename T, typename Member>
FieldSpec<T> Unsigned(std::string name, Member T::*member, std::uint64_t min, std::uint64_t max,
                      std::string description, std::string_view unit_hint = "") {
  FieldSpec<T> f;
  f.name = name;
  f.description = description;
  f.schema = {{"type", "integer"}, {"minimum", min}, {"description", description}};
  if (max != std::numeric_limits<std::uint32_t>::max() && max != std::numeric_limits<std::uint64_t>::max()) {
    f.schema["maximum"] = max;
  }
  std::string hint(unit_hint);
  f.read = [member, min, max, hint](const YAML::Node& node, T& out, Context& ctx, const std::string& path) {
    if (auto v = ReadUnsigned(node, ctx, path, min, max, hint)) out.*member = static_cast<Member>(*v);
  };
  return f;
}

template <typename T>
FieldSpec<T> Bool(std::string name, bool T::*member, std::string description) {
  FieldSpec<T> f;
  f.name = name;
  f.description = description;
  f.schema = {{"type", "boolean"}, {"description", description}};
  f.read = [member](const YAML::Node& node, T& out, Context& ctx, const std::string& path) {
    if (auto v = ReadBool(node, ctx, path)) out.*member = *v;
  };
  return f;
}

// A string, optionally restricted to an enum (matched case-sensitively, as Proxmox does).
template <typename T>
FieldSpec<T> String(std::string name, std::string T::*member, std::string description,
                    std::vector<std::string> allowed = {}) {
  FieldSpec<T> f;
  f.name = name;
  f.description = description;
  f.schema = {{"type", "string"}, {"description", description}};
  if (!allowed.empty()) f.schema["enum"] = allowed;
  f.read = [member, allowed](const YAML::Node& node, T& out, Context& ctx, const std::string& path) {
    auto v = ReadString(node, ctx, path);
    if (!v) return;
    if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), *v) == allowed.end()) {
      std::string message = fmt::format("'{}' is not allowed; use one of {}", *v, fmt::join(allowed, ", "));
      if (auto hint = util::ClosestMatch(*v, allowed)) message += fmt::format(" (did you mean '{}'?)", *hint);
      ctx.Error(path, node.Mark(), message);
      return;
    }
    out.*member = *v;
  };
  return f;
}

// A name that Proxmox validates with a pattern (pool, tag, bridge, mapping ids).
bool IsProxmoxId(std::string_view text, bool allow_plus_dot) {
  if (text.empty() || text.size() > 128) return false;
  for (char c : text) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || (allow_plus_dot && (c == '+' || c == '.'));
    if (!ok) return false;
  }
  return true;
}

template <typename T>
FieldSpec<T> Identifier(std::string name, std::string T::*member, std::string description, std::string_view what) {
  FieldSpec<T> f = String<T>(name, member, description);
  f.schema["pattern"] = "^[A-Za-z0-9_.+-]+$";
  auto base = f.read;
  std::string kind(what);
  f.read = [member, base, kind](const YAML::Node& node, T& out, Context& ctx, const std::string& path) {
    base(node, out, ctx, path);
    if (!(out.*member).empty() && !IsProxmoxId(out.*member, true)) {
      ctx.Error(
          path, node.Mark(),
          fmt::format("'{}' is not a valid {} name; use letters, digits, '-', '_' and '.' only", out.*member, kind));
    }
  };
  return f;
}

template <typename T>
FieldSpec<T> Selector(std::string name, std::string T::*member, std::string description) {
  FieldSpec<T> f;
  f.name = name;
  f.description = description;
  f.schema = {{"type", "string"},
              {"description", description},
              {"examples", Json::array({R"(name == "local-lvm")", R"(type == "rbd" && name == "vm_ssd")"})}};
  f.read = [member, name](const YAML::Node& node, T& out, Context& ctx, const std::string& path) {
    auto v = ReadString(node, ctx, path);
    if (!v) return;
    auto compiled = StorageSelector::Compile(*v);
    if (!compiled.ok()) {
      ctx.Error(path, node.Mark(),
                fmt::format("is not a valid selector:\n{}", std::string(compiled.status().message())));
      return;
    }
    out.*member = *v;
  };
  return f;
}

template <typename T>
FieldSpec<T> StringList(std::string name, std::vector<std::string> T::*member, std::string description,
                        std::function<std::optional<std::string>(const std::string&)> check = nullptr) {
  FieldSpec<T> f;
  f.name = name;
  f.description = description;
  f.schema = {{"type", "array"}, {"items", {{"type", "string"}}}, {"description", description}};
  f.read = [member, check](const YAML::Node& node, T& out, Context& ctx, const std::string& path) {
    if (!node.IsSequence()) {
      ctx.Error(path, node.Mark(), fmt::format("must be a list of strings, not {}", DescribeYamlKind(node)));
      return;
    }
    std::vector<std::string> values;
    for (std::size_t i = 0; i < node.size(); ++i) {
      const std::string item_path = fmt::format("{}[{}]", path, i);
      auto v = ReadString(node[i], ctx, item_path);
      if (!v) continue;
      if (check) {
        if (auto problem = check(*v)) {
          ctx.Error(item_path, node[i].Mark(), *problem);
          continue;
        }
      }
      values.push_back(*v);
    }
    out.*member = std::move(values);
  };
  return f;
}

template <typename T>
using FieldTable = std::vector<FieldSpec<T>>;

template <typename T>
Json ObjectSchema(const FieldTable<T>& fields) {
  Json properties = Json::object();
  Json required = Json::array();
  for (const auto& f : fields) {
    properties[f.name] = f.schema;
    if (f.required) required.push_back(f.name);
  }
  Json schema = {{"type", "object"}, {"properties", properties}, {"additionalProperties", false}};
  if (!required.empty()) schema["required"] = required;
  return schema;
}

std::vector<std::string> Names(const auto& fields) {
  std::vector<std::string> names;
  for (const auto& f : fields) names.push_back(f.name);
  return names;
}

// Reads a map into `out` using `fields`; unknown keys are errors with a hint; `aliases`
// maps an accepted alternative spelling to its canonical key (with a warning).
template <typename T>
void ReadObject(const YAML::Node& node, const FieldTable<T>& fields, T& out, Context& ctx, const std::string& prefix,
                const std::map<std::string, std::string>& aliases = {}) {
  if (!node.IsMap()) {
    ctx.Error(prefix.empty() ? "providerdata" : prefix, node.Mark(),
              fmt::format("must be a map of keys to values, not {}", DescribeYamlKind(node)));
    return;
  }
  const auto names = Names(fields);
  std::set<std::string> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const std::string key = it->first.Scalar();
    std::string canonical = key;
    const std::string key_path = prefix.empty() ? key : fmt::format("{}.{}", prefix, key);
    if (auto alias = aliases.find(key); alias != aliases.end()) {
      canonical = alias->second;
      ctx.Warning(key_path, it->first.Mark(),
                  fmt::format("'{}' is the Go provider README's spelling; write '{}' instead", key, canonical));
    }
    auto field = std::find_if(fields.begin(), fields.end(), [&](const FieldSpec<T>& f) { return f.name == canonical; });
    if (field == fields.end()) {
      std::string message = fmt::format("unknown key '{}'", key);
      if (auto hint = util::ClosestMatch(key, names)) {
        message += fmt::format("; did you mean '{}'?", *hint);
      } else {
        message += fmt::format("; known keys: {}", fmt::join(names, ", "));
      }
      ctx.Error(key_path, it->first.Mark(), message);
      continue;
    }
    if (!seen.insert(canonical).second) {
      ctx.Error(key_path, it->first.Mark(),
                fmt::format("'{}' is given twice (possibly once under an alias); keep one", canonical));
      continue;
    }
    const std::string path = prefix.empty() ? canonical : fmt::format("{}.{}", prefix, canonical);
    if (it->second.IsNull()) {
      if (field->required) ctx.Error(path, it->first.Mark(), "has no value; " + field->description);
      continue;
    }
    field->read(it->second, out, ctx, path);
  }
  for (const auto& f : fields) {
    if (f.required && !seen.contains(f.name)) {
      const std::string path = prefix.empty() ? f.name : fmt::format("{}.{}", prefix, f.name);
      ctx.Error(path, node.Mark(), fmt::format("is required: {}", f.description));
    }
  }
}

template <typename Outer, typename Item>
FieldSpec<Outer> ObjectList(std::string name, std::vector<Item> Outer::*member, std::string description,
                            const FieldTable<Item>& item_fields) {
  FieldSpec<Outer> f;
  f.name = name;
  f.description = description;
  f.schema = {{"type", "array"}, {"items", ObjectSchema(item_fields)}, {"description", description}};
  f.read = [member, item_fields](const YAML::Node& node, Outer& out, Context& ctx, const std::string& path) {
    if (!node.IsSequence()) {
      ctx.Error(path, node.Mark(), fmt::format("must be a list, not {}", DescribeYamlKind(node)));
      return;
    }
    std::vector<Item> items;
    for (std::size_t i = 0; i < node.size(); ++i) {
      Item item;
      ReadObject(node[i], item_fields, item, ctx, fmt::format("{}[{}]", path, i));
      items.push_back(std::move(item));
    }
    out.*member = std::move(items);
  };
  return f;
}

const FieldTable<AdditionalDisk>& DiskFields() {
  static const FieldTable<AdditionalDisk> fields = [] {
    FieldTable<AdditionalDisk> t;
    t.push_back(Unsigned<AdditionalDisk>("size", &AdditionalDisk::size_gib, 1, 65536,
                                         "Disk size in GiB, for example 100", " (GiB)"));
    t.back().required = true;
    t.push_back(Selector<AdditionalDisk>("storage_selector", &AdditionalDisk::storage_selector,
                                         "CEL expression choosing this disk's storage; defaults to the boot disk's"));
    t.push_back(Bool<AdditionalDisk>("ssd", &AdditionalDisk::ssd, "Present the disk to the guest as an SSD"));
    t.push_back(Bool<AdditionalDisk>("discard", &AdditionalDisk::discard, "Pass TRIM through to the storage"));
    t.push_back(Bool<AdditionalDisk>("iothread", &AdditionalDisk::iothread, "Give the disk its own I/O thread"));
    t.push_back(String<AdditionalDisk>("cache", &AdditionalDisk::cache, "Cache mode",
                                       {"none", "writethrough", "writeback", "unsafe", "directsync"}));
    t.push_back(String<AdditionalDisk>("aio", &AdditionalDisk::aio, "AIO type", {"native", "threads", "io_uring"}));
    return t;
  }();
  return fields;
}

const FieldTable<AdditionalNic>& NicFields() {
  static const FieldTable<AdditionalNic> fields = [] {
    FieldTable<AdditionalNic> t;
    t.push_back(Identifier<AdditionalNic>("bridge", &AdditionalNic::bridge, "Bridge to attach to, for example vmbr1",
                                          "bridge"));
    t.back().required = true;
    t.push_back(Unsigned<AdditionalNic>("vlan", &AdditionalNic::vlan, 0, 4094, "VLAN tag, 0 for none"));
    t.push_back(Bool<AdditionalNic>("firewall", &AdditionalNic::firewall, "Enable the Proxmox firewall on this NIC"));
    t.push_back(String<AdditionalNic>("model", &AdditionalNic::model, "NIC model",
                                      {"virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"}));
    t.push_back(Unsigned<AdditionalNic>("mtu", &AdditionalNic::mtu, 0, 65520,
                                        "MTU; 0 keeps the default, 1 inherits the bridge MTU"));
    return t;
  }();
  return fields;
}

const FieldTable<PciDevice>& PciFields() {
  static const FieldTable<PciDevice> fields = [] {
    FieldTable<PciDevice> t;
    t.push_back(Identifier<PciDevice>("mapping", &PciDevice::mapping,
                                      "Name of a PCI resource mapping (Datacenter > Resource Mappings)", "mapping"));
    t.back().required = true;
    t.push_back(Bool<PciDevice>("pcie", &PciDevice::pcie, "Attach as PCI Express (needs machine_type: q35)"));
    t.push_back(Bool<PciDevice>("x_vga", &PciDevice::x_vga, "Use as the primary GPU"));
    t.push_back(Bool<PciDevice>("rombar", &PciDevice::rombar, "Expose the device ROM to the guest"));
    t.push_back(String<PciDevice>("mdev", &PciDevice::mdev, "Mediated device type (vGPU profile)"));
    return t;
  }();
  return fields;
}

const FieldTable<UsbDevice>& UsbFields() {
  static const FieldTable<UsbDevice> fields = [] {
    FieldTable<UsbDevice> t;
    t.push_back(Identifier<UsbDevice>("mapping", &UsbDevice::mapping, "Name of a USB resource mapping", "mapping"));
    t.back().required = true;
    t.push_back(Bool<UsbDevice>("usb3", &UsbDevice::usb3, "Attach as a USB 3 device"));
    return t;
  }();
  return fields;
}

std::optional<std::string> CheckTag(const std::string& tag) {
  // Proxmox's pve-tag format: [a-z0-9_][a-z0-9_\-\+\.]* (case-insensitive).
  if (tag.empty() || tag.front() == '-' || tag.front() == '+' || tag.front() == '.' || !IsProxmoxId(tag, true)) {
    return fmt::format(
        "'{}' is not a valid Proxmox tag; use letters, digits, '_', '-', '+' and '.', not starting "
        "with '-', '+' or '.'",
        tag);
  }
  return std::nullopt;
}

std::optional<std::string> CheckNodeName(const std::string& node) {
  if (!IsProxmoxId(node, true)) return fmt::format("'{}' is not a valid node name", node);
  return std::nullopt;
}

FieldSpec<ProviderData> VmidRangeField() {
  FieldSpec<ProviderData> f;
  f.name = "vmid_range";
  f.description = "VMIDs this class may use, as FIRST-LAST, for example 5300-5350";
  f.schema = {{"type", "string"}, {"pattern", "^[0-9]+-[0-9]+$"}, {"description", f.description}};
  f.read = [](const YAML::Node& node, ProviderData& out, Context& ctx, const std::string& path) {
    auto v = ReadString(node, ctx, path);
    if (!v) return;
    const auto dash = v->find('-');
    const auto all_digits = [](std::string_view s) {
      return !s.empty() && s.size() <= 9 &&
             std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    if (dash == std::string::npos || !all_digits(std::string_view(*v).substr(0, dash)) ||
        !all_digits(std::string_view(*v).substr(dash + 1))) {
      ctx.Error(path, node.Mark(), fmt::format("'{}' is not a range; write FIRST-LAST, for example 5300-5350", *v));
      return;
    }
    VmidRange range{static_cast<std::uint32_t>(std::stoul(v->substr(0, dash))),
                    static_cast<std::uint32_t>(std::stoul(v->substr(dash + 1)))};
    if (range.first < 100 || range.last > 999'999'999 || range.first > range.last) {
      ctx.Error(path, node.Mark(),
                fmt::format("'{}' is not a usable range; Proxmox VMIDs run from 100 to 999999999 and FIRST must not "
                            "exceed LAST",
                            *v));
      return;
    }
    out.vmid_range = range;
  };
  return f;
}

const FieldTable<ProviderData>& ProviderDataFields() {
  static const FieldTable<ProviderData> fields = [] {
    using P = ProviderData;
    FieldTable<P> t;
    t.push_back(Unsigned<P>("cores", &P::cores, 1, 1024, "Number of CPU cores per socket, for example 4"));
    t.back().required = true;
    t.push_back(Unsigned<P>("sockets", &P::sockets, 1, 16, "Number of CPU sockets (default 1)"));
    t.push_back(Unsigned<P>("memory", &P::memory_mib, 2048, 4 * 1024 * 1024,
                            "Memory in MiB, at least 2048 for Talos, for example 8192", " (MiB)"));
    t.back().required = true;
    t.push_back(
        Unsigned<P>("disk_size", &P::disk_size_gib, 5, 65536, "Boot disk size in GiB, for example 40", " (GiB)"));
    t.back().required = true;
    t.push_back(Selector<P>("storage_selector", &P::storage_selector,
                            R"(CEL expression choosing the boot disk's storage, for example name == "local-lvm")"));
    t.back().required = true;
    t.push_back(
        Identifier<P>("network_bridge", &P::network_bridge, "Bridge of the first NIC (default vmbr0)", "bridge"));
    t.push_back(Unsigned<P>("vlan", &P::vlan, 0, 4094, "VLAN tag of the first NIC, 0 for none"));
    t.push_back(Identifier<P>("node", &P::node, "Run the VM on this Proxmox node", "node"));
    t.push_back(String<P>("cpu_type", &P::cpu_type, "QEMU CPU type (default x86-64-v2-AES), for example host"));
    t.push_back(String<P>("machine_type", &P::machine_type, "QEMU machine type; q35 for PCIe passthrough",
                          {"i440fx", "q35", "pc"}));
    t.push_back(Bool<P>("numa", &P::numa, "Enable NUMA"));
    t.push_back(
        String<P>("hugepages", &P::hugepages, "Back memory with huge pages of this size in MiB", {"2", "1024", "any"}));
    {
      FieldSpec<P> balloon;
      balloon.name = "balloon";
      balloon.description = "Minimum memory in MiB for the balloon device; 0 turns ballooning off";
      balloon.schema = {{"type", "integer"}, {"minimum", 0}, {"description", balloon.description}};
      balloon.read = [](const YAML::Node& node, P& out, Context& ctx, const std::string& path) {
        if (auto v = ReadUnsigned(node, ctx, path, 0, 4 * 1024 * 1024, " (MiB)")) out.balloon_mib = *v;
      };
      t.push_back(std::move(balloon));
    }
    t.push_back(Bool<P>("disk_ssd", &P::disk_ssd, "Present the boot disk as an SSD"));
    t.push_back(Bool<P>("disk_discard", &P::disk_discard, "Pass TRIM through to the storage"));
    t.push_back(Bool<P>("disk_iothread", &P::disk_iothread, "Give the boot disk its own I/O thread"));
    t.push_back(String<P>("disk_cache", &P::disk_cache, "Boot disk cache mode",
                          {"none", "writethrough", "writeback", "unsafe", "directsync"}));
    t.push_back(String<P>("disk_aio", &P::disk_aio, "Boot disk AIO type", {"native", "threads", "io_uring"}));
    t.push_back(
        ObjectList<P, AdditionalDisk>("additional_disks", &P::additional_disks, "Extra data disks", DiskFields()));
    t.push_back(ObjectList<P, AdditionalNic>("additional_nics", &P::additional_nics, "Extra NICs", NicFields()));
    t.push_back(ObjectList<P, PciDevice>("pci_devices", &P::pci_devices, "PCI passthrough through resource mappings",
                                         PciFields()));
    t.push_back(ObjectList<P, UsbDevice>("usb_devices", &P::usb_devices, "USB passthrough through resource mappings",
                                         UsbFields()));
    t.push_back(StringList<P>("nodes", &P::nodes, "Nodes this class may use; default all online nodes", CheckNodeName));
    {
      FieldSpec<P> placement;
      placement.name = "placement";
      placement.description = "spread (default): fewest VMs of the set per node; binpack: fill nodes in turn";
      placement.schema = {{"type", "string"}, {"enum", {"spread", "binpack"}}, {"description", placement.description}};
      placement.read = [](const YAML::Node& node, P& out, Context& ctx, const std::string& path) {
        auto v = ReadString(node, ctx, path);
        if (!v) return;
        if (*v == "spread") {
          out.placement = Placement::kSpread;
        } else if (*v == "binpack") {
          out.placement = Placement::kBinpack;
        } else {
          ctx.Error(path, node.Mark(), fmt::format("'{}' is not allowed; use spread or binpack", *v));
        }
      };
      t.push_back(std::move(placement));
    }
    t.push_back(StringList<P>("tags", &P::tags, "Extra Proxmox tags for the VM", CheckTag));
    t.push_back(Identifier<P>("pool", &P::pool, "Proxmox resource pool to add the VM to", "pool"));
    t.push_back(Selector<P>("iso_storage_selector", &P::iso_storage_selector,
                            "CEL expression choosing where ISOs go; default the first enabled ISO-capable storage "
                            "by name"));
    {
      FieldSpec<P> firmware;
      firmware.name = "firmware";
      firmware.description = "seabios (default) or ovmf (UEFI, adds an EFI disk)";
      firmware.schema = {{"type", "string"}, {"enum", {"seabios", "ovmf"}}, {"description", firmware.description}};
      firmware.read = [](const YAML::Node& node, P& out, Context& ctx, const std::string& path) {
        auto v = ReadString(node, ctx, path);
        if (!v) return;
        if (*v == "seabios") {
          out.firmware = Firmware::kSeabios;
        } else if (*v == "ovmf") {
          out.firmware = Firmware::kOvmf;
        } else {
          ctx.Error(path, node.Mark(), fmt::format("'{}' is not allowed; use seabios or ovmf", *v));
        }
      };
      t.push_back(std::move(firmware));
    }
    t.push_back(Bool<P>("network_firewall", &P::network_firewall, "Enable the Proxmox firewall on the first NIC"));
    t.push_back(VmidRangeField());
    t.push_back(String<P>("description", &P::description, "Text for the VM's Proxmox notes"));
    return t;
  }();
  return fields;
}

const std::map<std::string, std::string>& Aliases() {
  static const std::map<std::string, std::string> aliases = {{"cpu", "cores"},
                                                             {"diskSize", "disk_size"},
                                                             {"storageSelector", "storage_selector"},
                                                             {"networkBridge", "network_bridge"}};
  return aliases;
}

// Rules that involve more than one key.
void CheckCombinations(const ProviderData& d, const YAML::Node& root, Context& ctx) {
  const auto mark_of = [&](const char* key) { return root[key] ? root[key].Mark() : root.Mark(); };
  for (std::size_t i = 0; i < d.pci_devices.size(); ++i) {
    if (d.pci_devices[i].pcie && d.machine_type != "q35") {
      ctx.Error(fmt::format("pci_devices[{}].pcie", i), mark_of("pci_devices"),
                "PCIe passthrough needs the q35 machine type; add machine_type: q35 or set pcie: false");
    }
  }
  if (!d.hugepages.empty() && d.balloon_mib.value_or(0) > 0) {
    ctx.Error("balloon", mark_of("balloon"),
              "ballooning cannot be combined with hugepages; set balloon: 0 or remove hugepages");
  }
  if (d.balloon_mib && *d.balloon_mib > d.memory_mib && d.memory_mib > 0) {
    ctx.Error("balloon", mark_of("balloon"),
              fmt::format("{} MiB is larger than memory ({} MiB); the balloon minimum must not exceed memory",
                          *d.balloon_mib, d.memory_mib));
  }
  if (d.hugepages == "1024" && d.memory_mib % 1024 != 0) {
    ctx.Error("memory", mark_of("memory"),
              fmt::format("{} MiB is not a whole number of 1 GiB huge pages; use a multiple of 1024", d.memory_mib));
  } else if (d.hugepages == "2" && d.memory_mib % 2 != 0) {
    ctx.Error("memory", mark_of("memory"),
              fmt::format("{} MiB is not a whole number of 2 MiB huge pages; use an even number", d.memory_mib));
  }
  if (!d.node.empty() && !d.nodes.empty() && std::find(d.nodes.begin(), d.nodes.end(), d.node) == d.nodes.end()) {
    ctx.Error("node", mark_of("node"),
              fmt::format("'{}' is not among nodes ({}); pin a node from the list or drop one of the two keys", d.node,
                          fmt::join(d.nodes, ", ")));
  }
  if (d.additional_disks.size() > 29) {
    ctx.Error(
        "additional_disks", mark_of("additional_disks"),
        fmt::format("{} disks do not fit on the SCSI controller; at most 29 extra disks", d.additional_disks.size()));
  }
  if (d.additional_nics.size() > 31) {
    ctx.Error("additional_nics", mark_of("additional_nics"), "at most 31 extra NICs (net1 to net31)");
  }
  if (d.pci_devices.size() > 16) ctx.Error("pci_devices", mark_of("pci_devices"), "at most 16 PCI devices");
  if (d.usb_devices.size() > 14) ctx.Error("usb_devices", mark_of("usb_devices"), "at most 14 USB devices");
}

}  // namespace

std::string Diagnostic::ToString() const {
  const char* prefix = severity == Severity::kWarning ? "warning: " : "";
  if (line > 0) return fmt::format("{}:{}: {}{}: {}", line, column, prefix, path, message);
  return fmt::format("{}{}: {}", prefix, path, message);
}

std::string ParseResult::ErrorSummary() const {
  std::vector<std::string> lines;
  for (const auto& d : diagnostics) {
    if (d.severity == Diagnostic::Severity::kError) lines.push_back(fmt::format("{}: {}", d.path, d.message));
  }
  return fmt::format("{}", fmt::join(lines, "\n"));
}

ParseResult ParseProviderData(std::string_view yaml) {
  Context ctx;
  ParseResult result;
  constexpr std::size_t kMaxDocumentBytes = 256 * 1024;
  if (yaml.size() > kMaxDocumentBytes) {
    ctx.Error("providerdata", YAML::Mark::null_mark(),
              fmt::format("is {} bytes; providerdata is limited to {} bytes", yaml.size(), kMaxDocumentBytes));
    result.diagnostics = ctx.Take();
    return result;
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::ParserException& e) {
    ctx.Error("providerdata", e.mark, fmt::format("is not valid YAML: {}", e.msg));
    result.diagnostics = ctx.Take();
    return result;
  } catch (const YAML::Exception& e) {
    ctx.Error("providerdata", YAML::Mark::null_mark(), fmt::format("is not valid YAML: {}", e.what()));
    result.diagnostics = ctx.Take();
    return result;
  }
  ProviderData data;
  try {
    if (root.IsNull()) {
      ctx.Error("providerdata", YAML::Mark::null_mark(),
                "is empty; give at least cores, memory, disk_size and storage_selector");
    } else {
      ReadObject(root, ProviderDataFields(), data, ctx, "", Aliases());
      if (!ctx.has_errors()) CheckCombinations(data, root, ctx);
    }
  } catch (const YAML::Exception& e) {
    ctx.Error("providerdata", YAML::Mark::null_mark(), fmt::format("could not be read: {}", e.what()));
  }
  if (!ctx.has_errors()) result.data = std::move(data);
  result.diagnostics = ctx.Take();
  return result;
}

std::string ProviderDataJsonSchema() {
  Json schema = ObjectSchema(ProviderDataFields());
  for (const auto& [alias, canonical] : Aliases()) {
    Json property = schema["properties"][canonical];
    property["deprecated"] = true;
    property["description"] = fmt::format("Alias of {} (the Go provider README's spelling)", canonical);
    schema["properties"][alias] = property;
  }
  Json out = {{"$schema", "https://json-schema.org/draft/2020-12/schema"},
              {"title", "omni-proxmox providerdata"},
              {"description",
               "MachineClass providerdata for the omni-proxmox infrastructure provider; a superset of "
               "the Go provider's schema"}};
  for (auto& [key, value] : schema.items()) out[key] = value;
  return out.dump(2);
}

std::string DescribeYamlKind(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return "empty";
    case YAML::NodeType::Scalar:
      break;
  }
  return fmt::format("'{}'", node.Scalar());
}

}  // namespace omni_proxmox::provider
