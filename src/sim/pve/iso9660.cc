// SPDX-License-Identifier: Apache-2.0
#include "sim/pve/iso9660.h"

#include <cctype>
#include <cstdint>

#include "fmt/format.h"

namespace omni_proxmox::sim::pve {
namespace {

constexpr std::size_t kSector = 2048;
constexpr std::size_t kMaxFileBytes = 16 * 1024 * 1024;

std::uint32_t Le32(const std::string& data, std::size_t offset) {
  return static_cast<std::uint32_t>(static_cast<unsigned char>(data[offset])) |
         static_cast<std::uint32_t>(static_cast<unsigned char>(data[offset + 1])) << 8 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(data[offset + 2])) << 16 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(data[offset + 3])) << 24;
}

std::string TrimRight(std::string text) {
  while (!text.empty() && (text.back() == ' ' || text.back() == '\0')) text.pop_back();
  return text;
}

}  // namespace

absl::StatusOr<IsoImage> ReadIsoImage(const std::string& image) {
  std::size_t pvd = 16 * kSector;
  if (image.size() < pvd + kSector || image[pvd] != 1 || image.compare(pvd + 1, 5, "CD001") != 0) {
    return absl::InvalidArgumentError("iso image: no ISO 9660 primary volume descriptor at sector 16");
  }
  IsoImage result;
  result.volume_id = TrimRight(image.substr(pvd + 40, 32));
  std::size_t root = pvd + 156;
  std::size_t extent = static_cast<std::size_t>(Le32(image, root + 2)) * kSector;
  std::size_t length = Le32(image, root + 10);
  if (extent + length > image.size()) return absl::InvalidArgumentError("iso image: root directory out of bounds");
  std::size_t pos = extent;
  while (pos < extent + length) {
    auto record_length = static_cast<unsigned char>(image[pos]);
    if (record_length == 0) {
      pos = (pos / kSector + 1) * kSector;  // records never cross sectors; the rest is padding
      continue;
    }
    if (pos + record_length > image.size() || record_length < 34) {
      return absl::InvalidArgumentError("iso image: malformed directory record");
    }
    auto name_length = static_cast<unsigned char>(image[pos + 32]);
    std::string raw_name = image.substr(pos + 33, name_length);
    bool directory = (static_cast<unsigned char>(image[pos + 25]) & 2) != 0;
    std::string name;
    // System use area (Rock Ridge): an "NM" entry carries the real file name.
    std::size_t su = pos + 33 + name_length + (name_length % 2 == 0 ? 1 : 0);
    while (su + 4 <= pos + record_length) {
      auto entry_length = static_cast<unsigned char>(image[su + 2]);
      if (entry_length < 4 || su + entry_length > pos + record_length) break;
      if (image.compare(su, 2, "NM") == 0 && entry_length > 5) name += image.substr(su + 5, entry_length - 5);
      su += entry_length;
    }
    if (name.empty() && !(name_length == 1 && (raw_name[0] == 0 || raw_name[0] == 1))) {
      name = raw_name.substr(0, raw_name.find(';'));
      if (!name.empty() && name.back() == '.') name.pop_back();
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    if (!directory && !name.empty()) {
      std::size_t file_extent = static_cast<std::size_t>(Le32(image, pos + 2)) * kSector;
      std::size_t file_length = Le32(image, pos + 10);
      if (file_length > kMaxFileBytes || file_extent + file_length > image.size()) {
        return absl::InvalidArgumentError(fmt::format("iso image: file '{}' out of bounds", name));
      }
      result.files[name] = image.substr(file_extent, file_length);
    }
    pos += record_length;
  }
  return result;
}

}  // namespace omni_proxmox::sim::pve
