// SPDX-License-Identifier: Apache-2.0
#include "sim/pve/internal/text.h"

#include <cctype>

#include "fmt/format.h"

#include "sim/pve/http_server.h"

namespace omni_proxmox::sim::pve {

std::string Hex8(std::uint64_t value) { return fmt::format("{:08X}", value); }

std::string DigestHex(const EVP_MD* md, const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, md, nullptr);
  std::string out;
  for (unsigned int i = 0; i < length; ++i) out += fmt::format("{:02x}", digest[i]);
  return out;
}

std::string Lower(std::string text) {
  for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

std::vector<std::string> SplitAny(const std::string& text, const std::string& separators) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find_first_of(separators, start);
    std::string part = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!part.empty()) out.push_back(part);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

std::string Join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string out;
  for (const auto& part : parts) out += (out.empty() ? "" : separator) + part;
  return out;
}

std::map<std::string, std::string> ParseForm(const std::string& text) {
  std::map<std::string, std::string> out;
  for (const auto& pair : SplitAny(text, "&;")) {
    std::size_t eq = pair.find('=');
    std::string key = PercentDecode(pair.substr(0, eq), true);
    std::string value = eq == std::string::npos ? "" : PercentDecode(pair.substr(eq + 1), true);
    out[key] = value;
  }
  return out;
}

std::string MediaType(const std::string& content_type) {
  std::string media = Lower(content_type.substr(0, content_type.find(';')));
  while (!media.empty() && media.back() == ' ') media.pop_back();
  return media;
}

}  // namespace omni_proxmox::sim::pve
