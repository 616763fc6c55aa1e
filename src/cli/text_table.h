// SPDX-License-Identifier: Apache-2.0
#pragma once

// Plain text tables for the operator commands (plan, selector test, doctor): every column padded
// to its widest cell, so the output lines up in a terminal and stays greppable. Internal to cli/.

#include <algorithm>
#include <string>
#include <vector>

namespace omni_proxmox::cli {

inline std::string RenderTable(const std::vector<std::string>& headers,
                               const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths(headers.size(), 0);
  const auto widen = [&](const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < cells.size() && i < widths.size(); ++i)
      widths[i] = std::max(widths[i], cells[i].size());
  };
  widen(headers);
  for (const auto& row : rows) widen(row);
  std::string out;
  const auto line = [&](const std::vector<std::string>& cells) {
    std::string text;
    for (std::size_t i = 0; i < widths.size(); ++i) {
      const std::string cell = i < cells.size() ? cells[i] : "";
      text += cell;
      // The last column is not padded: no trailing blanks.
      if (i + 1 < widths.size()) text += std::string(widths[i] - cell.size() + 2, ' ');
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    out += text + "\n";
  };
  line(headers);
  for (const auto& row : rows) line(row);
  return out;
}

}  // namespace omni_proxmox::cli
