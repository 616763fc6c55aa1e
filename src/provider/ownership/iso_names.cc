// SPDX-License-Identifier: Apache-2.0
#include "provider/ownership/iso_names.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include <fmt/format.h>

namespace omni_proxmox::provider {
namespace {

bool IsLowerHex(std::string_view s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// A provider ID as a file name segment: [a-z0-9_-], anything else '_'.
std::string FileSegment(std::string_view text) {
  std::string out;
  for (char c : text) {
    const char lower = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out += (std::isalnum(static_cast<unsigned char>(lower)) || lower == '-' || lower == '_') ? lower : '_';
  }
  return out;
}

}  // namespace

std::string ScopedIsoName(std::string_view file, const Scope& scope) {
  std::string_view stem = file;
  if (stem.ends_with(".iso")) stem.remove_suffix(4);
  return fmt::format("{}.{}.{}.iso", stem, FileSegment(scope.provider_id), FileSegment(scope.instance));
}

std::string TalosIsoFileName(const std::string& schematic, std::string version, const Scope& scope) {
  if (!version.empty() && version.front() == 'v') version.erase(version.begin());
  return ScopedIsoName(fmt::format("talos-{}-v{}-nocloud-amd64.iso", schematic.substr(0, 16), version), scope);
}

std::string GoCidataIsoFileName(pve::Vmid vmid) { return fmt::format("user-data-{}.iso", vmid); }

bool IsTalosIsoStem(std::string_view file) {
  constexpr std::string_view kPrefix = "talos-", kSuffix = "-nocloud-amd64.iso";
  if (!file.starts_with(kPrefix) || !file.ends_with(kSuffix)) return false;
  std::string_view middle = file.substr(kPrefix.size(), file.size() - kPrefix.size() - kSuffix.size());
  // "<16 hex>-v<version>"
  if (middle.size() < 19 || !IsLowerHex(middle.substr(0, 16)) || middle.substr(16, 2) != "-v") return false;
  const std::string_view version = middle.substr(18);
  return !version.empty() && std::all_of(version.begin(), version.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '+';
  });
}

bool IsCidataIsoStem(std::string_view file) {
  constexpr std::string_view kPrefix = "omni-cidata-", kSuffix = ".iso";
  if (!file.starts_with(kPrefix) || !file.ends_with(kSuffix)) return false;
  std::string_view middle = file.substr(kPrefix.size(), file.size() - kPrefix.size() - kSuffix.size());
  // "<request, 1-64 of [A-Za-z0-9_-]>-<8 hex>"
  if (middle.size() < 10 || middle[middle.size() - 9] != '-' || !IsLowerHex(middle.substr(middle.size() - 8))) {
    return false;
  }
  const std::string_view request = middle.substr(0, middle.size() - 9);
  return request.size() <= 64 && std::all_of(request.begin(), request.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
         });
}

IsoName ParseIsoName(std::string_view file) {
  IsoName name;
  if (!file.ends_with(".iso")) return name;
  if (file.starts_with("user-data-")) {
    const std::string_view digits = file.substr(10, file.size() - 14);
    pve::Vmid vmid = 0;
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), vmid);
    if (!digits.empty() && error == std::errc{} && end == digits.data() + digits.size() && vmid >= pve::kMinVmid) {
      name.kind = IsoName::Kind::kGoCidata;
      name.vmid = vmid;
    }
    return name;
  }
  std::string stem(file);
  // "<stem>.<provider>.<instance>.iso": the last two dot-separated segments before ".iso".
  std::string_view body = std::string_view(file).substr(0, file.size() - 4);
  const auto last = body.rfind('.');
  if (last != std::string_view::npos) {
    const auto before = body.substr(0, last).rfind('.');
    if (before != std::string_view::npos) {
      const std::string_view provider = body.substr(before + 1, last - before - 1);
      const std::string_view instance = body.substr(last + 1);
      const std::string candidate = std::string(body.substr(0, before)) + ".iso";
      if (!provider.empty() && !instance.empty() && (IsTalosIsoStem(candidate) || IsCidataIsoStem(candidate))) {
        name.provider = std::string(provider);
        name.instance = std::string(instance);
        stem = candidate;
      }
    }
  }
  if (IsTalosIsoStem(stem)) {
    name.kind = IsoName::Kind::kTalos;
  } else if (IsCidataIsoStem(stem)) {
    name.kind = IsoName::Kind::kCidata;
  }
  return name;
}

bool InScope(const IsoName& name, const Scope& scope) {
  return !name.provider.empty() && name.provider == FileSegment(scope.provider_id) &&
         name.instance == FileSegment(scope.instance);
}

}  // namespace omni_proxmox::provider
