// SPDX-License-Identifier: Apache-2.0
#include "provider/vmspec/vmspec.h"

#include <fmt/format.h>

#include "provider/ownership/markers.h"

namespace omni_proxmox::provider {
namespace {

std::string DiskValue(const std::string& storage, std::uint32_t size_gib, bool ssd, bool discard, bool iothread,
                      const std::string& cache, const std::string& aio) {
  std::string value = fmt::format("{}:{}", storage, size_gib);
  if (ssd) value += ",ssd=1";
  if (discard) value += ",discard=on";
  if (iothread) value += ",iothread=1";
  if (!cache.empty()) value += ",cache=" + cache;
  if (!aio.empty()) value += ",aio=" + aio;
  return value;
}

std::string NicValue(const std::string& model, const std::string& bridge, std::uint32_t vlan, bool firewall,
                     std::uint32_t mtu) {
  std::string value = fmt::format("{},bridge={}", model, bridge);
  if (firewall) value += ",firewall=1";
  if (vlan != 0) value += fmt::format(",tag={}", vlan);
  if (mtu != 0) value += fmt::format(",mtu={}", mtu);
  return value;
}

std::string TagsValue(const ProviderData& data, const VmIdentity& identity) {
  std::vector<std::string> tags = {std::string(kManagedTag), ProviderTag(identity.provider_id),
                                   RequestTag(identity.request_id)};
  if (!identity.request_set_id.empty()) tags.push_back(RequestSetTag(identity.request_set_id));
  if (!identity.omni_instance.empty()) tags.push_back(InstanceTag(identity.omni_instance));
  for (const auto& tag : data.tags) tags.push_back(SanitizeTag(tag));
  return fmt::format("{}", fmt::join(tags, ";"));
}

}  // namespace

std::string CdromValue(const std::string& volume) { return volume + ",media=cdrom"; }

std::string VmDescription(const ProviderData& data, const VmIdentity& identity) {
  std::string text = fmt::format("Managed by omni-proxmox (provider {}) for MachineRequest {}.", identity.provider_id,
                                 identity.request_id);
  if (!data.description.empty()) text += "\n\n" + data.description;
  return text;
}

FormParams RenderCreateParams(const ProviderData& data, const VmIdentity& identity, const DiskPlacement& placement,
                              const VmMedia& media) {
  FormParams p;
  p.emplace_back("vmid", std::to_string(identity.vmid));
  p.emplace_back("name", VmNameFor(identity.request_id));
  p.emplace_back("ostype", "l26");
  p.emplace_back("cores", std::to_string(data.cores));
  p.emplace_back("sockets", std::to_string(data.sockets));
  p.emplace_back("memory", std::to_string(data.memory_mib));
  p.emplace_back("cpu", data.cpu_type);
  if (!data.machine_type.empty() && data.machine_type != "i440fx") p.emplace_back("machine", data.machine_type);
  if (data.numa) p.emplace_back("numa", "1");
  if (!data.hugepages.empty()) p.emplace_back("hugepages", data.hugepages);
  if (data.balloon_mib) p.emplace_back("balloon", std::to_string(*data.balloon_mib));
  if (data.firmware == Firmware::kOvmf) {
    p.emplace_back("bios", "ovmf");
    p.emplace_back("efidisk0", fmt::format("{}:1,efitype=4m,pre-enrolled-keys=0", placement.boot_storage));
  }
  p.emplace_back("scsihw", "virtio-scsi-single");
  p.emplace_back("scsi0", DiskValue(placement.boot_storage, data.disk_size_gib, data.disk_ssd, data.disk_discard,
                                    data.disk_iothread, data.disk_cache, data.disk_aio));
  for (std::size_t i = 0; i < data.additional_disks.size(); ++i) {
    const auto& disk = data.additional_disks[i];
    const std::string& storage =
        i < placement.additional_storages.size() ? placement.additional_storages[i] : placement.boot_storage;
    p.emplace_back(fmt::format("scsi{}", i + 1),
                   DiskValue(storage, disk.size_gib, disk.ssd, disk.discard, disk.iothread, disk.cache, disk.aio));
  }
  p.emplace_back("net0", NicValue("virtio", data.network_bridge, data.vlan, data.network_firewall, 0));
  for (std::size_t i = 0; i < data.additional_nics.size(); ++i) {
    const auto& nic = data.additional_nics[i];
    p.emplace_back(fmt::format("net{}", i + 1), NicValue(nic.model, nic.bridge, nic.vlan, nic.firewall, nic.mtu));
  }
  for (std::size_t i = 0; i < data.pci_devices.size(); ++i) {
    const auto& dev = data.pci_devices[i];
    std::string value = "mapping=" + dev.mapping;
    if (dev.pcie) value += ",pcie=1";
    if (dev.x_vga) value += ",x-vga=1";
    if (!dev.rombar) value += ",rombar=0";
    if (!dev.mdev.empty()) value += ",mdev=" + dev.mdev;
    p.emplace_back(fmt::format("hostpci{}", i), value);
  }
  for (std::size_t i = 0; i < data.usb_devices.size(); ++i) {
    const auto& dev = data.usb_devices[i];
    p.emplace_back(fmt::format("usb{}", i), "mapping=" + dev.mapping + (dev.usb3 ? ",usb3=1" : ""));
  }
  p.emplace_back(kTalosIsoSlot, CdromValue(media.talos_iso_volume));
  if (!media.cidata_iso_volume.empty()) p.emplace_back(kCidataSlot, CdromValue(media.cidata_iso_volume));
  // Disk first: Talos installs itself to scsi0 from the ISO on first boot and boots from disk afterwards.
  p.emplace_back("boot", fmt::format("order=scsi0;{};net0", kTalosIsoSlot));
  p.emplace_back("agent", "enabled=1");
  p.emplace_back("onboot", "1");
  p.emplace_back("serial0", "socket");
  p.emplace_back("smbios1", "uuid=" + identity.smbios_uuid);
  p.emplace_back("tags", TagsValue(data, identity));
  if (!data.pool.empty()) p.emplace_back("pool", data.pool);
  p.emplace_back("description", VmDescription(data, identity));
  return p;
}

}  // namespace omni_proxmox::provider
