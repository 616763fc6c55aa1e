// SPDX-License-Identifier: Apache-2.0
// VM configuration changes for the qemu endpoints: which privilege each option needs, which storages new
// disks may use, disk allocation (thin and thick, cloud-init drives), option normalisation (MAC addresses,
// tags, drive sizes), the config PVE writes on create, and the config-string helpers of qemu_config.h.
// Serves no endpoint itself; qemu.cc calls it.

#include "sim/pve/internal/qemu_config.h"

#include <algorithm>
#include <cctype>
#include <regex>

#include "fmt/format.h"

#include "sim/pve/internal/impl.h"
#include "sim/pve/internal/text.h"
#include "sim/pve/schema.h"

namespace omni_proxmox::sim::pve {
namespace {

std::string NormalizeTags(const std::string& value) {
  std::set<std::string> tags;
  for (const auto& tag : SplitAny(value, ",; \t")) tags.insert(Lower(tag));
  return Join({tags.begin(), tags.end()}, ";");
}

const std::regex& NewDiskRe() {
  static const std::regex re(R"(^(([^/:\s]+):)?(\d+(\.\d+)?)$)");
  return re;
}

}  // namespace

bool IsDriveKey(const std::string& key) {
  static const std::regex re(
      R"(^(ide[0-3]|sata[0-5]|scsi([0-9]|[12][0-9]|30)|virtio([0-9]|1[0-5])|efidisk0|tpmstate0)$)");
  return std::regex_match(key, re);
}

// Drive keys in PVE's valid_drive_names order.
std::vector<std::string> DriveOrder() {
  std::vector<std::string> order;
  for (int i = 0; i <= 3; ++i) order.push_back(fmt::format("ide{}", i));
  for (int i = 0; i <= 30; ++i) order.push_back(fmt::format("scsi{}", i));
  for (int i = 0; i <= 15; ++i) order.push_back(fmt::format("virtio{}", i));
  for (int i = 0; i <= 5; ++i) order.push_back(fmt::format("sata{}", i));
  return order;
}

std::map<std::string, std::string> ParseDrive(const std::string& value) {
  std::map<std::string, std::string> out;
  for (const auto& [key, sub] : SplitPropertyString(value)) out[key.empty() ? "file" : key] = sub;
  if (out.count("volume") != 0 && out.count("file") == 0) out["file"] = out["volume"];
  return out;
}

std::string PrintDrive(const std::map<std::string, std::string>& drive) {
  std::string out = drive.count("file") != 0 ? drive.at("file") : "";
  for (const auto& [key, value] : drive) {
    if (key == "file" || key == "volume") continue;
    out += "," + key + "=" + value;
  }
  return out;
}

bool IsCdrom(const std::string& value) {
  auto drive = ParseDrive(value);
  return drive.count("media") != 0 && drive.at("media") == "cdrom";
}

// PVE's format_size: the largest unit among K, M, G, T that divides the size exactly.
std::string FormatSize(std::int64_t bytes) {
  const char* units[] = {"T", "G", "M", "K"};
  std::int64_t factors[] = {1024 * kGiB, kGiB, kMiB, 1024};
  for (int i = 0; i < 4; ++i) {
    if (bytes >= factors[i] && bytes % factors[i] == 0) return fmt::format("{}{}", bytes / factors[i], units[i]);
  }
  return fmt::format("{}", bytes);
}

std::optional<std::int64_t> ParseSize(const std::string& text) {
  static const std::regex re(R"(^(\d+(?:\.\d+)?)([KMGT]?)$)");
  std::smatch match;
  if (!std::regex_match(text, match, re)) return std::nullopt;
  double value = std::stod(match[1]);
  std::string unit = match[2];
  double factor = unit == "T" ? 1024.0 * kGiB : unit == "G" ? kGiB : unit == "M" ? kMiB : unit == "K" ? 1024 : 1;
  return static_cast<std::int64_t>(value * factor);
}

std::int64_t MemoryMiB(const Vm& vm) {
  std::string memory = vm.Str("memory");
  if (memory.empty()) return 512;
  for (const auto& [key, value] : SplitPropertyString(memory)) {
    if (key.empty() || key == "current") return std::stoll(value);
  }
  return 512;
}

std::string Simulator::Impl::GenerateMac(std::mt19937_64& rng) {
  return fmt::format("BC:24:11:{:02X}:{:02X}:{:02X}", rng() & 0xff, rng() & 0xff, rng() & 0xff);
}

std::string Simulator::Impl::Uuid(std::mt19937_64& rng) {
  std::uint64_t a = rng(), b = rng();
  return fmt::format("{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xfff,
                     0x8000 | ((b >> 48) & 0x3fff), b & 0xffffffffffffULL);
}

std::optional<Reply> Simulator::Impl::CheckVmOptionPermissions(const Call& call, int vmid,
                                                               const std::map<std::string, std::string>& options,
                                                               bool create) {
  static const std::set<std::string> cpu = {"cores", "sockets",  "cpu",      "numa",
                                            "vcpus", "cpulimit", "cpuunits", "affinity"};
  static const std::set<std::string> memory = {"memory", "balloon", "shares"};
  static const std::set<std::string> hwtype = {"machine", "scsihw", "smbios1", "vga",  "bios",     "acpi",    "kvm",
                                               "tablet",  "arch",   "audio0",  "rng0", "watchdog", "ivshmem", "tdf"};
  static const std::set<std::string> options_set = {
      "name",      "onboot", "agent",          "ostype",  "description", "protection",
      "startup",   "tags",   "localtime",      "freeze",  "keyboard",    "autostart",
      "startdate", "reboot", "vmstatestorage", "vmgenid", "hotplug",     "template"};
  static const std::set<std::string> cloudinit = {"cicustom",   "ciuser",       "cipassword", "sshkeys",
                                                  "nameserver", "searchdomain", "citype",     "ciupgrade"};
  const std::string path = fmt::format("/vms/{}", vmid);
  auto privs = PrivsLocked(call.auth.authid, path);
  bool root = call.auth.authid == "root@pam";
  auto need = [&](const std::string& priv) -> std::optional<Reply> {
    if (privs.count(priv) != 0) return std::nullopt;
    return Error(403, fmt::format("Permission check failed ({}, {})", path, priv));
  };
  if (create) {
    if (call.Has("pool")) {
      if (!HasPriv(call.auth, "/pool/" + call.Get("pool"), "VM.Allocate")) {
        return Error(403, fmt::format("Permission check failed (/pool/{}, VM.Allocate)", call.Get("pool")));
      }
    } else if (auto denied = need("VM.Allocate")) {
      return denied;
    }
  }
  static const std::regex numbered(R"(^(net|hostpci|ipconfig|usb|serial|parallel|numa|unused|virtiofs)(\d+)$)");
  for (const auto& [key, value] : options) {
    std::smatch match;
    std::string family = std::regex_match(key, match, numbered) ? match[1].str() : "";
    std::optional<Reply> denied;
    if (cpu.count(key) != 0 || family == "numa") {
      denied = need("VM.Config.CPU");
    } else if (memory.count(key) != 0) {
      denied = need("VM.Config.Memory");
    } else if (hwtype.count(key) != 0 || family == "usb" || family == "serial" || family == "parallel") {
      denied = need("VM.Config.HWType");
    } else if (options_set.count(key) != 0) {
      denied = need("VM.Config.Options");
    } else if (key == "boot" || key == "bootdisk" || family == "unused") {
      denied = need("VM.Config.Disk");
    } else if (IsDriveKey(key) || key == "cdrom") {
      std::string file = ParseDrive(value)["file"];
      if (file.size() > 10 && file.substr(file.size() - 10) == ":cloudinit") {
        denied = need("VM.Config.Cloudinit");
        if (!denied) denied = need("VM.Config.CDROM");
      } else if (key == "cdrom" || IsCdrom(value)) {
        denied = need("VM.Config.CDROM");
      } else {
        denied = need("VM.Config.Disk");
      }
    } else if (family == "net") {
      denied = need("VM.Config.Network");
      std::string bridge = ParseDrive(value)["bridge"];
      if (!denied && !bridge.empty()) {
        std::string sdn = "/sdn/zones/localnetwork/" + bridge;
        std::string tag = ParseDrive(value)["tag"];
        if (!tag.empty()) sdn += "/" + tag;
        if (!HasPriv(call.auth, sdn, "SDN.Use")) {
          denied = Error(403, fmt::format("Permission check failed ({}, SDN.Use)", sdn));
        }
      }
    } else if (family == "hostpci") {
      auto pci = ParseDrive(value);
      if (pci.count("mapping") != 0 && pci.count("romfile") == 0) {
        denied = need("VM.Config.HWType");
        std::string mapping_path = "/mapping/pci/" + pci["mapping"];
        if (!denied && !HasPriv(call.auth, mapping_path, "Mapping.Use")) {
          denied = Error(403, fmt::format("Permission check failed ({}, Mapping.Use)", mapping_path));
        }
      } else if (!root) {
        denied = Error(500, fmt::format("only root can set '{}' config", key));
      }
    } else if (cloudinit.count(key) != 0 || family == "ipconfig") {
      if (privs.count("VM.Config.Cloudinit") == 0 && privs.count("VM.Config.Network") == 0) {
        denied = Error(403, fmt::format("Permission check failed ({}, VM.Config.Cloudinit|VM.Config.Network)", path));
      }
    } else if (!root) {
      denied = Error(500, fmt::format("only root can set '{}' config", key));
    }
    if (denied) return denied;
  }
  return std::nullopt;
}

std::optional<Reply> Simulator::Impl::CheckDriveStorages(const Call& call, const std::string& node,
                                                         const std::map<std::string, std::string>& options) {
  for (const auto& [key, value] : options) {
    if (!IsDriveKey(key)) continue;
    auto drive = ParseDrive(value);
    if (drive.count("file") == 0 || drive["file"].empty()) return ParamError1(key, "unable to parse drive options");
    std::string file = drive["file"];
    std::smatch match;
    std::string storage_id;
    if (std::regex_match(file, match, NewDiskRe())) {
      storage_id = match[2].matched ? match[2].str() : call.Get("storage");
      if (storage_id.empty())
        return ParamError1(key, "missing storage for the new disk (set 'storage' or STORAGE:SIZE)");
    } else if (file.size() > 10 && file.substr(file.size() - 10) == ":cloudinit") {
      storage_id = file.substr(0, file.size() - 10);
    } else {
      continue;
    }
    const StorageState* storage = nullptr;
    if (auto failure = StorageOnNode(storage_id, node, &storage)) return failure;
    if (!storage->HasContent("images")) {
      return ParamError1("storage", fmt::format("storage '{}' does not support vm images", storage_id));
    }
    if (!HasPriv(call.auth, "/storage/" + storage_id, "Datastore.AllocateSpace")) {
      return Error(403, fmt::format("Permission check failed (/storage/{}, Datastore.AllocateSpace)", storage_id));
    }
  }
  return std::nullopt;
}

std::optional<std::string> Simulator::Impl::AllocateDiskLocked(Vm& vm, const std::string& key,
                                                               const std::string& storage_id, double size_gib,
                                                               const std::string& format, bool cloudinit,
                                                               std::vector<std::string>& allocated,
                                                               std::string& volid) {
  const StorageState* storage = nullptr;
  if (auto failure = StorageOnNode(storage_id, vm.node, &storage)) return failure->message;
  std::string scope = ScopeOf(*storage, vm.node);
  std::int64_t size = cloudinit ? 4 * kMiB : static_cast<std::int64_t>(size_gib * kGiB);
  std::int64_t free = storage->size_bytes - UsedBytesLocked(*storage, vm.node);
  if (!storage->thin && size > free) {
    return fmt::format("{}: not enough free space ({} < {})", key, std::max<std::int64_t>(free, 0), size);
  }
  std::string fmt_name = format.empty() ? (storage->FileBased() ? "qcow2" : "raw") : format;
  std::string name;
  if (cloudinit) {
    name = fmt::format("vm-{}-cloudinit", vm.vmid);
  } else {
    for (int n = 0;; ++n) {
      name = fmt::format("vm-{}-disk-{}", vm.vmid, n);
      bool taken = std::any_of(volumes_.begin(), volumes_.end(), [&](const Volume& v) {
        return v.storage == storage_id && v.scope == scope && v.volid.find(name) != std::string::npos;
      });
      if (!taken) break;
    }
  }
  Volume volume;
  volume.volid = storage->FileBased() ? fmt::format("{}:{}/{}.{}", storage_id, vm.vmid, name, fmt_name)
                                      : fmt::format("{}:{}", storage_id, name);
  volume.storage = storage_id;
  volume.scope = scope;
  volume.content = "images";
  volume.format = fmt_name;
  volume.size = size;
  volume.vmid = vm.vmid;
  volume.ctime = NowUnix();
  volid = volume.volid;
  allocated.push_back(volume.volid);
  volumes_.push_back(std::move(volume));
  return std::nullopt;
}

std::string Simulator::Impl::ApplyConfigLocked(Vm& vm, const std::map<std::string, std::string>& options,
                                               const std::vector<std::string>& deletes, std::mt19937_64& rng,
                                               std::vector<std::string>* log) {
  const Endpoint* create = schema_->Find("POST", "/nodes/{node}/qemu");
  std::vector<std::string> allocated;
  auto fail = [&](const std::string& error) {
    for (const auto& volid : allocated) {
      volumes_.erase(
          std::remove_if(volumes_.begin(), volumes_.end(), [&](const Volume& v) { return v.volid == volid; }),
          volumes_.end());
    }
    return error;
  };
  static const std::set<std::string> not_config = {"node",
                                                   "vmid",
                                                   "start",
                                                   "storage",
                                                   "pool",
                                                   "force",
                                                   "unique",
                                                   "archive",
                                                   "bwlimit",
                                                   "live-restore",
                                                   "import-working-storage",
                                                   "delete",
                                                   "revert",
                                                   "digest",
                                                   "skiplock",
                                                   "background_delay"};
  std::string default_storage = options.count("storage") != 0 ? options.at("storage") : "";
  for (const auto& [raw_key, raw_value] : options) {
    if (not_config.count(raw_key) != 0) continue;
    std::string key = raw_key == "cdrom" ? "ide2" : raw_key;
    std::string value = raw_value;
    if (raw_key == "cdrom" && value.find("media=") == std::string::npos) value += ",media=cdrom";
    if (IsDriveKey(key)) {
      if (auto error = ApplyDriveLocked(vm, key, default_storage, value, allocated, log)) return fail(*error);
    } else if (key.rfind("net", 0) == 0 && key.size() > 3 && std::isdigit(static_cast<unsigned char>(key[3]))) {
      std::string model, mac;
      std::map<std::string, std::string> rest;
      for (const auto& [sub_key, sub_value] : SplitPropertyString(value)) {
        if (sub_key.empty() || sub_key == "model") {
          model = sub_value;
        } else if (sub_key == "macaddr") {
          mac = sub_value;
        } else if (rest.count(sub_key) == 0 && sub_key != "bridge" && sub_key != "firewall" && sub_key != "link_down" &&
                   sub_key != "mtu" && sub_key != "queues" && sub_key != "rate" && sub_key != "tag" &&
                   sub_key != "trunks") {
          model = sub_key;  // "<model>=<mac>"
          mac = sub_value;
        } else {
          rest[sub_key] = sub_value;
        }
      }
      if (mac.empty()) mac = GenerateMac(rng);
      value = model + "=" + mac;
      for (const auto& [sub_key, sub_value] : rest) value += "," + sub_key + "=" + sub_value;
    } else if (key == "tags") {
      value = NormalizeTags(value);
    }
    const Json* schema = create != nullptr ? schema_->ParamSchema(*create, raw_key) : nullptr;
    std::string type = schema != nullptr ? schema->value("type", std::string("string")) : "string";
    if (type == "integer" || type == "boolean") {
      vm.config[key] = std::stoll(value);
    } else if (type == "number") {
      vm.config[key] = std::stod(value);
    } else {
      vm.config[key] = value;
    }
  }
  for (const auto& key : deletes) {
    auto it = vm.config.find(key);
    if (it == vm.config.end()) continue;
    if (IsDriveKey(key) && it->second.is_string() && !IsCdrom(it->second.get<std::string>())) {
      // A detached disk is kept as unusedN, as PVE does.
      for (int n = 0; n <= 255; ++n) {
        std::string unused = fmt::format("unused{}", n);
        if (vm.config.count(unused) == 0) {
          vm.config[unused] = ParseDrive(it->second.get<std::string>())["file"];
          break;
        }
      }
    }
    vm.config.erase(it);
  }
  return "";
}

std::optional<std::string> Simulator::Impl::ApplyDriveLocked(Vm& vm, const std::string& key,
                                                             const std::string& default_storage, std::string& value,
                                                             std::vector<std::string>& allocated,
                                                             std::vector<std::string>* log) {
  auto drive = ParseDrive(value);
  std::string file = drive["file"];
  std::smatch match;
  if (std::regex_match(file, match, NewDiskRe())) {
    std::string storage_id = match[2].matched ? match[2].str() : default_storage;
    std::string volid;
    if (auto error =
            AllocateDiskLocked(vm, key, storage_id, std::stod(match[3]), drive["format"], false, allocated, volid)) {
      return error;
    }
    drive["file"] = volid;
    drive.erase("format");
    drive["size"] = FormatSize(volumes_.back().size);
    if (log != nullptr) {
      log->push_back(fmt::format("{}: successfully created disk '{}'", key, PrintDrive(drive)));
    }
  } else if (file.size() > 10 && file.substr(file.size() - 10) == ":cloudinit") {
    std::string volid;
    if (auto error =
            AllocateDiskLocked(vm, key, file.substr(0, file.size() - 10), 0, drive["format"], true, allocated, volid)) {
      return error;
    }
    drive = {{"file", volid}, {"media", "cdrom"}};
  } else if (file != "none" && file != "cdrom") {
    Volume* volume = FindVolumeLocked(file, vm.node);
    if (volume == nullptr) return fmt::format("volume {} does not exist", file);
    drive["size"] = FormatSize(volume->size);
  }
  value = PrintDrive(drive);
  return std::nullopt;
}

void Simulator::Impl::FinalizeCreateLocked(Vm& vm, std::mt19937_64& rng) {
  if (vm.config.count("smbios1") == 0) vm.config["smbios1"] = "uuid=" + Uuid(rng);
  if (vm.config.count("vmgenid") == 0) vm.config["vmgenid"] = Uuid(rng);
  vm.config["meta"] = fmt::format("creation-qemu=9.2.0,ctime={}", NowUnix());
  if (vm.config.count("boot") == 0) {
    std::string disk, cdrom, net;
    for (const auto& key : DriveOrder()) {
      auto it = vm.config.find(key);
      if (it == vm.config.end()) continue;
      bool is_cdrom = IsCdrom(it->second.get<std::string>());
      if (is_cdrom && cdrom.empty()) cdrom = key;
      if (!is_cdrom && disk.empty()) disk = key;
    }
    for (int i = 0; i <= 31 && net.empty(); ++i) {
      if (vm.config.count(fmt::format("net{}", i)) != 0) net = fmt::format("net{}", i);
    }
    std::vector<std::string> order;
    for (const auto& device : {disk, cdrom, net}) {
      if (!device.empty()) order.push_back(device);
    }
    if (!order.empty()) vm.config["boot"] = "order=" + Join(order, ";");
  }
}

}  // namespace omni_proxmox::sim::pve
