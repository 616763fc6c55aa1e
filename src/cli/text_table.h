// SPDX-License-Identifier: Apache-2.0
#pragma once

// Plain text tables for the operator commands (plan, selector test, doctor, status): every column padded
// to its widest cell, so the output lines up in a terminal and stays greppable. Internal to cli/.

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

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

// "42s", "12m", "5h", "3d": an age in a table cell.
inline std::string HumanSeconds(std::int64_t seconds) {
  if (seconds < 120) return fmt::format("{}s", std::max<std::int64_t>(seconds, 0));
  if (seconds < 2 * 3600) return fmt::format("{}m", seconds / 60);
  if (seconds < 48 * 3600) return fmt::format("{}h", seconds / 3600);
  return fmt::format("{}d", seconds / 86400);
}

// A table cell holds one line: a multi-line error (a CEL caret block, several fields) is folded,
// caret lines dropped, and long text cut; --format json carries it whole.
inline std::string FoldCell(const std::string& text, std::size_t max_width = 120) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    const auto first = line.find_first_not_of(" \t|");
    if (first == std::string::npos) continue;
    line = line.substr(first);
    if (line.find_first_not_of(".^ ") == std::string::npos) continue;  // a caret line
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
    parts.push_back(line);
  }
  std::string out = fmt::format("{}", fmt::join(parts, " / "));
  if (out.size() > max_width) out = out.substr(0, max_width - 3) + "...";
  return out;
}

}  // namespace omni_proxmox::cli
