// SPDX-License-Identifier: Apache-2.0
#include "provider/gc/garbage.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include <fmt/format.h>

#include "provider/ownership/iso_names.h"
#include "provider/ownership/markers.h"
#include "util/duration.h"

namespace omni_proxmox::provider {
namespace {

std::string Lower(std::string_view text) {
  std::string out(text);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// "local:iso/file.iso" -> "file.iso"; anything else -> "".
std::string_view IsoFileOf(std::string_view volid) {
  const auto slash = volid.find(":iso/");
  return slash == std::string_view::npos ? std::string_view{} : volid.substr(slash + 5);
}

bool IsDriveKey(std::string_view key) {
  for (std::string_view prefix : {"ide", "sata", "scsi", "virtio", "efidisk", "tpmstate"}) {
    if (key.size() > prefix.size() && key.starts_with(prefix) &&
        std::all_of(key.begin() + static_cast<std::ptrdiff_t>(prefix.size()), key.end(),
                    [](char c) { return c >= '0' && c <= '9'; })) {
      return true;
    }
  }
  return false;
}

std::int64_t AgeOf(std::int64_t now, std::int64_t created) { return std::max<std::int64_t>(0, now - created); }

}  // namespace

absl::StatusOr<GcMode> ParseGcMode(std::string_view text) {
  if (text == "off") return GcMode::kOff;
  if (text == "report") return GcMode::kReport;
  if (text == "delete") return GcMode::kDelete;
  return absl::InvalidArgumentError(
      fmt::format("--gc-mode '{}' is not a mode; use off, report (log and count findings) or delete", text));
}

std::string_view GcModeName(GcMode mode) {
  switch (mode) {
    case GcMode::kOff:
      return "off";
    case GcMode::kReport:
      return "report";
    case GcMode::kDelete:
      return "delete";
  }
  return "report";
}

absl::StatusOr<std::chrono::seconds> ParseGcDuration(std::string_view text, std::string_view flag) {
  auto parsed = util::ParseDuration(text, flag);
  if (!parsed.ok()) return parsed.status();
  if (*parsed % std::chrono::seconds{1} != std::chrono::milliseconds::zero()) {
    return absl::InvalidArgumentError(fmt::format("{} '{}': use whole seconds, e.g. 90s or 10m", flag, text));
  }
  return std::chrono::duration_cast<std::chrono::seconds>(*parsed);
}

std::string_view GarbageKindName(GarbageKind kind) {
  switch (kind) {
    case GarbageKind::kOrphanVm:
      return "orphan_vm";
    case GarbageKind::kTalosIso:
      return "talos_iso";
    case GarbageKind::kCidataIso:
      return "cidata_iso";
  }
  return "orphan_vm";
}

std::vector<std::string> AttachedVolumes(const std::map<std::string, std::string>& config) {
  std::vector<std::string> out;
  for (const auto& [key, value] : config) {
    if (!IsDriveKey(key)) continue;
    std::string volume = value.substr(0, value.find(','));
    if (volume.empty() || volume == "none" || volume == "cdrom") continue;
    out.push_back(std::move(volume));
  }
  return out;
}

std::optional<std::int64_t> CreatedUnixFromMeta(std::string_view meta) {
  std::size_t start = 0;
  while (start <= meta.size()) {
    const std::size_t end = std::min(meta.find(',', start), meta.size());
    const std::string_view item = meta.substr(start, end - start);
    if (item.starts_with("ctime=")) {
      std::int64_t value = 0;
      const auto digits = item.substr(6);
      const auto [ptr, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
      if (error == std::errc{} && ptr == digits.data() + digits.size() && value > 0) return value;
      return std::nullopt;
    }
    start = end + 1;
  }
  return std::nullopt;
}

std::string VmGarbageKey(pve::Vmid vmid, std::string_view name) { return fmt::format("vm:{}:{}", vmid, name); }

std::string IsoGarbageKey(const ObservedIso& iso) {
  return iso.shared ? fmt::format("iso:shared:{}", iso.volid) : fmt::format("iso:{}:{}", iso.node, iso.volid);
}

namespace {

// The age that counts against the grace period; nullopt when it cannot be known.
std::optional<std::int64_t> CandidateAge(const GarbageInputs& in, const std::string& key,
                                         const std::optional<std::int64_t>& created_unix) {
  if (in.unused_for != nullptr) {
    const auto it = in.unused_for->find(key);
    return it == in.unused_for->end() ? 0 : it->second;
  }
  if (!created_unix) return std::nullopt;
  return AgeOf(in.now_unix, *created_unix);
}

}  // namespace

GarbageReport FindGarbage(const GarbageInputs& in) {
  GarbageReport report;
  if (!in.omni_error.empty()) {
    report.skipped = true;
    report.skip_reason = fmt::format(
        "cannot read Omni ({}); without the MachineRequests every VM would look "
        "orphaned, so nothing is collected this cycle",
        in.omni_error);
    return report;
  }
  if (!in.proxmox_error.empty()) {
    report.skipped = true;
    report.skip_reason = fmt::format("cannot list Proxmox VMs ({}); nothing is collected this cycle", in.proxmox_error);
    return report;
  }
  const std::int64_t grace = in.grace_period.count();

  // Requests by the form their ID takes in a VM's request tag.
  std::set<std::string> live_request_tags;
  for (const auto& r : in.requests) live_request_tags.insert(SanitizeTag(r.id));
  for (const auto& id : in.in_flight) live_request_tags.insert(SanitizeTag(id));

  for (const auto& vm : in.vms) {
    Ownership ownership;
    if (!ParseOwnership(vm.tags, ownership)) continue;
    const ScopeMatch match = MatchScope(ownership, in.scope);
    if (match == ScopeMatch::kNotOurs || match == ScopeMatch::kOtherInstance) continue;  // never a candidate
    // Our VMs carry a request tag and the name derived from it; a VM whose markers disagree was
    // edited by someone, and we never guess about such a VM.
    if (ownership.request_id.empty() || Lower(vm.name) != Lower(VmNameFor(ownership.request_id))) continue;
    if (live_request_tags.contains(ownership.request_id)) continue;
    const std::string what = fmt::format("VM {} ({}) on {}", vm.vmid, vm.name, vm.node);
    if (match == ScopeMatch::kUnscoped && !in.include_unscoped) {
      report.kept.push_back(fmt::format(
          "{}: no request, but made before VMs were marked with their Omni instance, so it may be another Omni's; "
          "'omni-proxmox gc --delete --include-unscoped' removes it once you know it is this Omni's",
          what));
      continue;
    }
    if (!vm.lock.empty()) {
      report.kept.push_back(fmt::format("{}: locked ({}), looked at again next cycle", what, vm.lock));
      continue;
    }
    const std::string key = VmGarbageKey(vm.vmid, vm.name);
    report.candidates.insert(key);
    const auto known_age = vm.config_read ? CandidateAge(in, key, vm.created_unix) : std::nullopt;
    if (!known_age) {
      report.kept.push_back(fmt::format("{}: its creation time cannot be read, so its age is unknown", what));
      continue;
    }
    const std::int64_t age = *known_age;
    if (age < grace) {
      report.kept.push_back(fmt::format("{}: no request, but only {}s old (grace period {}s)", what, age, grace));
      continue;
    }
    report.found.push_back({.kind = GarbageKind::kOrphanVm,
                            .node = vm.node,
                            .vmid = vm.vmid,
                            .name = vm.name,
                            .request_id = ownership.request_id,
                            .instance = ownership.instance,
                            .storage = "",
                            .volid = "",
                            .age_seconds = age,
                            .media = vm.media});
  }

  // What live requests still need, by volume and by file name.
  std::set<std::string> needed_volumes, needed_files;
  for (const auto& r : in.requests) {
    for (const auto& v : r.volumes) {
      needed_volumes.insert(v);
      needed_files.insert(std::string(IsoFileOf(v)));
    }
    for (const auto& f : r.iso_files) needed_files.insert(f);
  }
  const bool any_unreadable = !in.unreadable_nodes.empty();
  std::set<std::string> reported_shared;
  for (const auto& iso : in.isos) {
    const std::string_view file = IsoFileOf(iso.volid);
    const IsoName name = ParseIsoName(file);
    if (name.kind == IsoName::Kind::kOther) continue;  // not ours: never a candidate
    const bool scoped = !name.provider.empty();
    if (scoped && !InScope(name, in.scope)) continue;  // another provider's or another Omni's
    if (iso.shared && reported_shared.contains(iso.volid)) continue;
    const std::string what = fmt::format("{} on {}", iso.volid, iso.node);
    if (needed_volumes.contains(iso.volid) || needed_files.contains(std::string(file))) continue;
    // A local storage's file is used by VMs on its node only; a shared one by any VM.
    const bool referenced = std::any_of(in.vms.begin(), in.vms.end(), [&](const ObservedVm& vm) {
      return (iso.shared || vm.node == iso.node) &&
             std::find(vm.media.begin(), vm.media.end(), iso.volid) != vm.media.end();
    });
    if (referenced) continue;
    const bool unprovable = in.unreadable_nodes.contains(iso.node) || (iso.shared && any_unreadable) ||
                            std::any_of(in.vms.begin(), in.vms.end(), [&](const ObservedVm& vm) {
                              return !vm.config_read && (iso.shared || vm.node == iso.node);
                            });
    if (unprovable) {
      report.kept.push_back(fmt::format("{}: a VM config that might use it cannot be read", what));
      continue;
    }
    if (!scoped && !in.include_unscoped) {
      report.kept.push_back(fmt::format(
          "{}: unused, but its name carries no Omni instance ({}), so it may be another Omni's; "
          "'omni-proxmox gc --delete --include-unscoped' removes it once you know it is this Omni's",
          what, name.kind == IsoName::Kind::kGoCidata ? "the Go provider's name" : "named before instance markers"));
      continue;
    }
    const std::string key = IsoGarbageKey(iso);
    report.candidates.insert(key);
    const auto known_age = CandidateAge(in, key, iso.created_unix);
    if (!known_age) {
      report.kept.push_back(fmt::format("{}: its creation time is unknown", what));
      continue;
    }
    const std::int64_t age = *known_age;
    if (age < grace) {
      report.kept.push_back(fmt::format("{}: unused, but only {}s old (grace period {}s)", what, age, grace));
      continue;
    }
    if (iso.shared) reported_shared.insert(iso.volid);
    report.found.push_back(
        {.kind = name.kind == IsoName::Kind::kTalos ? GarbageKind::kTalosIso : GarbageKind::kCidataIso,
         .node = iso.node,
         .vmid = 0,
         .name = "",
         .request_id = "",
         .instance = name.instance,
         .storage = iso.storage,
         .volid = iso.volid,
         .age_seconds = age,
         .media = {}});
  }
  return report;
}

}  // namespace omni_proxmox::provider
