// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox selector ...`: tools for writing storage selectors.
//
//   selector eval --selector EXPR --storage JSON   evaluate one expression against one storage entry
//   selector eval --batch                       JSON lines {"expr": ..., "storage": {...}} on stdin
//   selector test --selector EXPR               a selector against every storage of every node (live
//                                               Proxmox, or --storages FILE), with the provider's choice
//
// Every result is one JSON line: {"type":"bool","value":true} or {"error":"...","kind":"compile"|"eval"|"input"}.
// Exit code 0 when every expression evaluated, 1 when any produced an error, 2 for bad flags.
// Further `selector` subcommands are added in Register*Subcommand functions below, next to Eval.

#include <cmath>
#include <cstdint>
#include <iostream>
#include <map>
#include <ranges>
#include <set>
#include <string>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "cli/command.h"
#include "cli/connection.h"
#include "cli/pve_facts.h"
#include "cli/text_table.h"
#include "provider/placement/placement.h"
#include "provider/placement/storage_selector.h"
#include "pve/config.h"
#include "util/status_macros.h"

namespace omni_proxmox::cli {
namespace {

using nlohmann::json;

std::string Base64(std::string_view in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out.push_back(kAlphabet[(v >> s) & 63]);
  }
  if (i < in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

// CEL value -> JSON. Bytes are base64 (as in proto3 JSON); NaN and infinities are strings; map keys are strings.
json ToJson(const cel::Value& v) {
  switch (v.kind()) {
    case cel::Kind::kNull:
      return nullptr;
    case cel::Kind::kBool:
      return v.bool_value();
    case cel::Kind::kInt:
      return v.int_value();
    case cel::Kind::kUint:
      return v.uint_value();
    case cel::Kind::kDouble:
      if (std::isfinite(v.double_value())) return v.double_value();
      return cel::FormatDouble(v.double_value());
    case cel::Kind::kString:
    case cel::Kind::kType:
    case cel::Kind::kError:
      return std::string(v.text());
    case cel::Kind::kBytes:
      return Base64(v.text());
    case cel::Kind::kList: {
      json out = json::array();
      for (const auto& e : v.list()) out.push_back(ToJson(e));
      return out;
    }
    case cel::Kind::kMap: {
      json out = json::object();
      for (const auto& [k, e] : v.map()) {
        out[k.kind() == cel::Kind::kString ? std::string(k.text()) : k.DebugString()] = ToJson(e);
      }
      return out;
    }
  }
  return nullptr;
}

absl::Status FieldError(const std::string& field, const json& value, std::string_view want) {
  return absl::InvalidArgumentError(fmt::format("storage field '{}': {} is not {}", field, value.dump(), want));
}

absl::Status ReadUint(const json& entry, const std::string& field, std::uint64_t& out) {
  if (!entry.contains(field) || entry[field].is_null()) return absl::OkStatus();
  const json& v = entry[field];
  if (v.is_number_unsigned()) {
    out = v.get<std::uint64_t>();
    return absl::OkStatus();
  }
  if (v.is_string()) {  // Proxmox sometimes sends numbers as strings
    const std::string s = v.get<std::string>();
    std::size_t used = 0;
    try {
      if (!s.empty() && s[0] != '-') out = std::stoull(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (!s.empty() && used == s.size()) return absl::OkStatus();
  }
  return FieldError(field, v, "a non-negative integer number of bytes");
}

absl::Status ReadFlag(const json& entry, const std::string& field, bool& out) {
  if (!entry.contains(field) || entry[field].is_null()) return absl::OkStatus();
  const json& v = entry[field];
  if (v.is_boolean()) {
    out = v.get<bool>();
    return absl::OkStatus();
  }
  if (v.is_number_integer() && (v.get<std::int64_t>() == 0 || v.get<std::int64_t>() == 1)) {
    out = v.get<std::int64_t>() == 1;
    return absl::OkStatus();
  }
  if (v.is_string() && (v.get<std::string>() == "0" || v.get<std::string>() == "1")) {
    out = v.get<std::string>() == "1";
    return absl::OkStatus();
  }
  return FieldError(field, v, "0 or 1");
}

absl::Status ReadString(const json& entry, const std::string& field, std::string& out) {
  if (!entry.contains(field) || entry[field].is_null()) return absl::OkStatus();
  if (!entry[field].is_string()) return FieldError(field, entry[field], "a string");
  out = entry[field].get<std::string>();
  return absl::OkStatus();
}

// A PVE storage entry (GET /nodes/{node}/storage) plus "node".
absl::StatusOr<provider::StorageFacts> ParseStorage(const json& entry) {
  if (!entry.is_object()) {
    return absl::InvalidArgumentError(
        "storage must be a JSON object such as {\"storage\":\"local-lvm\",\"type\":\"lvmthin\",\"avail\":1024}");
  }
  provider::StorageFacts facts;
  OP_RETURN_IF_ERROR(ReadString(entry, "storage", facts.name));
  OP_RETURN_IF_ERROR(ReadString(entry, "node", facts.node));
  OP_RETURN_IF_ERROR(ReadString(entry, "type", facts.type));
  OP_RETURN_IF_ERROR(ReadUint(entry, "avail", facts.avail_bytes));
  OP_RETURN_IF_ERROR(ReadUint(entry, "total", facts.total_bytes));
  OP_RETURN_IF_ERROR(ReadUint(entry, "used", facts.used_bytes));
  OP_RETURN_IF_ERROR(ReadFlag(entry, "enabled", facts.enabled));
  OP_RETURN_IF_ERROR(ReadFlag(entry, "active", facts.active));
  OP_RETURN_IF_ERROR(ReadFlag(entry, "shared", facts.shared));
  std::string content;
  OP_RETURN_IF_ERROR(ReadString(entry, "content", content));
  std::size_t start = 0;
  while (start < content.size()) {
    const auto comma = content.find(',', start);
    const std::string item = content.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty()) facts.content.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return facts;
}

json ErrorLine(std::string message, const char* kind) { return json{{"error", std::move(message)}, {"kind", kind}}; }

// Evaluates one expression against one storage entry; the result line and whether it succeeded.
std::pair<json, bool> EvalOne(const std::string& expr, const json& storage) {
  auto facts = ParseStorage(storage);
  if (!facts.ok()) return {ErrorLine(std::string(facts.status().message()), "input"), false};
  auto program = provider::CompileStorageExpression(expr);
  if (!program.ok()) return {ErrorLine(std::string(program.status().message()), "compile"), false};
  provider::StorageActivation activation(*facts);
  const cel::Value result = program->Evaluate(activation);
  if (result.IsError()) return {ErrorLine(std::string(result.text()), "eval"), false};
  return {json{{"type", std::string(result.TypeNameOf())}, {"value", ToJson(result)}}, true};
}

json ParseJson(const std::string& text, bool& ok) {
  json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  ok = !parsed.is_discarded();
  return parsed;
}

void RegisterEvalSubcommand(CLI::App& selector, CommandContext& ctx) {
  auto* cmd = selector.add_subcommand("eval", "Evaluate a CEL expression against a Proxmox storage entry");
  auto expr = std::make_shared<std::string>();
  auto storage = std::make_shared<std::string>();
  auto batch = std::make_shared<bool>(false);
  cmd->add_option("--selector", *expr, "The CEL expression, e.g. 'type == \"rbd\" && availableSpace > 100u * GiB'");
  cmd->add_option("--expr", *expr, "")->group("");  // the spelling before --selector, kept for scripts
  cmd->add_option("--storage", *storage,
                  "A PVE storage entry as JSON, plus \"node\": "
                  "{\"storage\":\"local-lvm\",\"node\":\"pve1\",\"type\":\"lvmthin\",\"content\":\"images,rootdir\","
                  "\"avail\":214748364800,\"total\":...,\"used\":...,\"active\":1,\"enabled\":1,\"shared\":0}");
  cmd->add_flag("--batch", *batch, "Read JSON lines {\"expr\": ..., \"storage\": {...}} on stdin, one result each");
  cmd->footer(
      "Prints {\"type\":\"bool\",\"value\":true} or {\"error\":\"...\",\"kind\":\"compile\"|\"eval\"|\"input\"}.\n"
      "Variables: name node type storageType availableSpace total used (uint bytes) enabled active shared content;\n"
      "constants KiB MiB GiB TiB. Exit code 1 when any expression failed.\n"
      "\n"
      "Examples:\n"
      "  omni-proxmox selector eval --selector 'name == \"local-lvm\"' --storage '{\"storage\":\"local-lvm\"}'\n"
      "  printf '%s\\n' '{\"expr\":\"type == \\\"rbd\\\"\",\"storage\":{\"type\":\"rbd\"}}' | omni-proxmox selector "
      "eval "
      "--batch\n");
  cmd->callback([&ctx, expr, storage, batch] {
    if (*batch) {
      if (!expr->empty() || !storage->empty()) {
        std::cerr << "selector eval: --batch reads expressions from stdin; drop --selector/--storage\n";
        ctx.exit_code = kExitUsage;
        return;
      }
      bool all_ok = true;
      std::string line;
      for (long n = 1; std::getline(std::cin, line); ++n) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        bool parsed_ok = false;
        const json request = ParseJson(line, parsed_ok);
        json out;
        bool ok = false;
        if (!parsed_ok || !request.is_object() || !request.contains("expr") || !request["expr"].is_string()) {
          out = ErrorLine(fmt::format("line {}: expected a JSON object {{\"expr\": \"...\", \"storage\": {{...}}}}", n),
                          "input");
        } else {
          std::tie(out, ok) = EvalOne(request["expr"].get<std::string>(),
                                      request.contains("storage") ? request["storage"] : json::object());
        }
        all_ok = all_ok && ok;
        std::cout << out.dump() << "\n";
      }
      ctx.exit_code = all_ok ? kExitOk : kExitFindings;
      return;
    }
    if (expr->empty()) {
      std::cerr << "selector eval: --selector is required (or use --batch); e.g. --selector 'name == \"local-lvm\"'\n";
      ctx.exit_code = kExitUsage;
      return;
    }
    bool parsed_ok = true;
    const json entry = storage->empty() ? json::object() : ParseJson(*storage, parsed_ok);
    if (!parsed_ok) {
      std::cerr << "selector eval: --storage is not valid JSON; pass an object such as "
                   "'{\"storage\":\"local-lvm\",\"type\":\"lvmthin\",\"avail\":1024}'\n";
      ctx.exit_code = kExitUsage;
      return;
    }
    auto [out, ok] = EvalOne(*expr, entry);
    std::cout << out.dump() << "\n";
    ctx.exit_code = ok ? kExitOk : kExitFindings;
  });
}

// --- selector test ---------------------------------------------------------------------------

// YAML (or JSON, a subset of it) to JSON: booleans and non-negative integers keep their type so
// ParseStorage reads them as it reads Proxmox's answers; a content list becomes Proxmox's
// comma-joined string.
json YamlToJson(const YAML::Node& node) {
  if (node.IsSequence()) {
    json out = json::array();
    for (const auto& item : node) out.push_back(YamlToJson(item));
    return out;
  }
  if (node.IsMap()) {
    json out = json::object();
    for (const auto& item : node) out[item.first.as<std::string>()] = YamlToJson(item.second);
    return out;
  }
  if (!node.IsScalar()) return nullptr;
  const std::string text = node.Scalar();
  if (node.Tag() != "!") {  // unquoted
    if (text == "true") return true;
    if (text == "false") return false;
    if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos && text.size() < 20) {
      return std::stoull(text);
    }
  }
  return text;
}

// The --storages file: a list of PVE storage entries, each with "node".
absl::StatusOr<std::vector<provider::StorageFacts>> LoadStoragesFile(const std::string& path) {
  OP_ASSIGN_OR_RETURN(const std::string text, pve::ReadFileToString(path));
  json list;
  try {
    list = YamlToJson(YAML::Load(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(fmt::format("--storages {}: not YAML or JSON: {}", path, e.what()));
  }
  if (!list.is_array() || list.empty()) {
    return absl::InvalidArgumentError(fmt::format(
        "--storages {}: expected a non-empty list of storages such as "
        "[{{node: pve1, storage: local-lvm, type: lvmthin, content: [images], avail: 107374182400, enabled: 1, "
        "active: 1}}]",
        path));
  }
  std::vector<provider::StorageFacts> out;
  for (std::size_t i = 0; i < list.size(); ++i) {
    json entry = list[i];
    if (entry.is_object() && entry.contains("content") && entry["content"].is_array()) {
      std::string joined;
      for (const auto& c : entry["content"])
        joined += (joined.empty() ? "" : ",") + (c.is_string() ? c.get<std::string>() : c.dump());
      entry["content"] = joined;
    }
    // Hand-written files mean "usable" unless they say otherwise.
    if (entry.is_object() && !entry.contains("enabled")) entry["enabled"] = 1;
    if (entry.is_object() && !entry.contains("active")) entry["active"] = 1;
    auto facts = ParseStorage(entry);
    if (!facts.ok()) {
      return absl::InvalidArgumentError(
          fmt::format("--storages {}: entry {}: {}", path, i, std::string(facts.status().message())));
    }
    if (facts->node.empty() || facts->name.empty()) {
      return absl::InvalidArgumentError(
          fmt::format("--storages {}: entry {} needs both \"node\" and \"storage\"", path, i));
    }
    out.push_back(*std::move(facts));
  }
  return out;
}

struct SelectorRow {
  provider::StorageFacts storage;
  bool node_offline = false;
  std::string node_error;
  bool matched = false;
  std::string error;  // evaluation error
  bool chosen = false;
};

void RegisterTestSubcommand(CLI::App& selector, CommandContext& ctx) {
  auto* cmd = selector.add_subcommand(
      "test", "Evaluate a storage selector against every storage of every node, and show the provider's choice");
  struct Flags {
    std::string selector;
    std::string node;
    std::string storages_file;
    ConnectionFlags connection;
  };
  auto flags = std::make_shared<Flags>();
  cmd->add_option("--selector", flags->selector, "The CEL storage selector, e.g. 'type == \"rbd\"'")->required();
  cmd->add_option("--node", flags->node, "Only this node's storages");
  cmd->add_option("--storages", flags->storages_file,
                  "Offline: a YAML or JSON list of storages (GET /nodes/{node}/storage entries plus \"node\") "
                  "instead of asking Proxmox");
  cmd->add_option("--config-file", flags->connection.config_file,
                  "The provider's config.yaml with the proxmox: section (else PROXMOX_URL, PROXMOX_TOKEN_ID, ... "
                  "from the environment)");
  cmd->footer(
      "Examples:\n"
      "  omni-proxmox selector test --config-file config.yaml --selector 'type == \"rbd\" && name == \"vm_ssd\"'\n"
      "  omni-proxmox selector test --selector 'availableSpace > 100u * GiB' --node pve2\n"
      "  omni-proxmox --format json selector test --selector 'type == \"lvmthin\"' --storages storages.yaml\n"
      "\n"
      "CHOSEN marks, per node, the storage the provider would put a disk on: among the matching storages\n"
      "that are enabled, active and hold 'images', the one with the most free space (then by name).\n"
      "Exit code: 0 when some node has a chosen storage, 1 when the selector matches no usable storage\n"
      "or fails to evaluate, 2 for bad flags or a selector that does not compile.\n");
  cmd->callback([&ctx, flags] {
    auto compiled = provider::StorageSelector::Compile(flags->selector);
    if (!compiled.ok()) {
      std::cerr << "selector test: --selector does not compile:\n" << compiled.status().message() << "\n";
      ctx.exit_code = kExitUsage;
      return;
    }
    std::vector<SelectorRow> rows;
    std::vector<std::string> offline_nodes;
    if (!flags->storages_file.empty()) {
      auto loaded = LoadStoragesFile(flags->storages_file);
      if (!loaded.ok()) {
        std::cerr << "selector test: " << loaded.status().message() << "\n";
        ctx.exit_code = kExitUsage;
        return;
      }
      for (auto& s : *loaded) rows.push_back({.storage = std::move(s)});
    } else {
      auto client = MakeOperatorPveClient(flags->connection);
      if (!client.ok()) {
        std::cerr << "selector test: " << client.status().message() << "\n";
        ctx.exit_code = kExitUsage;
        return;
      }
      auto facts = ReadClusterFacts(**client);
      if (!facts.ok()) {
        std::cerr << "selector test: cannot read the cluster from Proxmox: " << facts.status().message() << "\n";
        ctx.exit_code = kExitFindings;
        return;
      }
      for (const auto& node : *facts) {
        if (!node.snapshot.online) {
          SelectorRow row;
          row.storage.node = node.snapshot.name;
          row.node_offline = true;
          row.node_error = node.storage_error.empty() ? "node offline" : "node unreachable: " + node.storage_error;
          rows.push_back(std::move(row));
          continue;
        }
        for (const auto& s : node.snapshot.storages) rows.push_back({.storage = s});
      }
    }
    if (!flags->node.empty()) {
      const bool known =
          std::any_of(rows.begin(), rows.end(), [&](const auto& r) { return r.storage.node == flags->node; });
      if (!known) {
        std::set<std::string> names;
        for (const auto& r : rows) names.insert(r.storage.node);
        std::cerr << fmt::format("selector test: --node {}: no such node; nodes: {}\n", flags->node,
                                 fmt::join(names, ", "));
        ctx.exit_code = kExitUsage;
        return;
      }
      std::erase_if(rows, [&](const auto& r) { return r.storage.node != flags->node; });
    }
    std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
      return std::tie(a.storage.node, a.storage.name) < std::tie(b.storage.node, b.storage.name);
    });

    bool any_error = false;
    std::map<std::string, SelectorRow*> chosen_by_node;
    for (auto& row : rows) {
      if (row.node_offline) continue;
      auto m = compiled->Matches(row.storage);
      if (!m.ok()) {
        row.error = std::string(m.status().message());
        any_error = true;
        continue;
      }
      row.matched = *m;
      if (!row.matched || !UsableForDisks(row.storage)) continue;
      // Placement's rule: the most free space, then the name.
      SelectorRow*& best = chosen_by_node[row.storage.node];
      if (best == nullptr || row.storage.avail_bytes > best->storage.avail_bytes) best = &row;
    }
    for (auto& [node, row] : chosen_by_node) row->chosen = true;

    const auto usability = [](const provider::StorageFacts& s) -> std::string {
      if (!s.enabled) return "disabled";
      if (!s.active) return "inactive";
      if (!UsableForDisks(s)) return "no 'images' content";
      return "";
    };
    if (ctx.output == OutputFormat::kJson) {
      json out = {{"selector", flags->selector}, {"storages", json::array()}, {"chosen", json::object()}};
      for (const auto& row : rows) {
        if (row.node_offline) {
          out["offline_nodes"].push_back({{"node", row.storage.node}, {"reason", row.node_error}});
          continue;
        }
        json entry = {{"node", row.storage.node},         {"storage", row.storage.name},
                      {"type", row.storage.type},         {"avail", row.storage.avail_bytes},
                      {"total", row.storage.total_bytes}, {"shared", row.storage.shared},
                      {"content", row.storage.content},   {"usable", UsableForDisks(row.storage)},
                      {"matched", row.matched},           {"chosen", row.chosen}};
        if (!row.error.empty()) entry["error"] = row.error;
        if (!UsableForDisks(row.storage)) entry["unusable_because"] = usability(row.storage);
        out["storages"].push_back(std::move(entry));
      }
      for (const auto& [node, row] : chosen_by_node) out["chosen"][node] = row->storage.name;
      std::cout << out.dump(2) << "\n";
    } else {
      std::vector<std::vector<std::string>> table;
      for (const auto& row : rows) {
        if (row.node_offline) {
          table.push_back({row.storage.node, "-", "-", "-", row.node_error, ""});
          continue;
        }
        std::string match = !row.error.empty() ? "error: " + row.error : row.matched ? "yes" : "no";
        if (row.matched && !UsableForDisks(row.storage)) match += " (unusable: " + usability(row.storage) + ")";
        table.push_back({row.storage.node, row.storage.name, row.storage.type,
                         provider::HumanBytes(row.storage.avail_bytes), match, row.chosen ? "<- chosen" : ""});
      }
      std::cout << RenderTable({"NODE", "STORAGE", "TYPE", "FREE", "MATCH", "CHOSEN"}, table);
      if (chosen_by_node.empty()) {
        std::cout << "\nThe selector matches no usable storage (enabled, active, with 'images' content) on any node.\n";
      } else {
        std::cout << fmt::format("\nA disk would go to: {}\n",
                                 fmt::join(chosen_by_node | std::views::transform([](const auto& kv) {
                                             return fmt::format("{} on {}", kv.second->storage.name, kv.first);
                                           }),
                                           ", "));
      }
    }
    ctx.exit_code = (!any_error && !chosen_by_node.empty()) ? kExitOk : kExitFindings;
  });
}

}  // namespace

void RegisterSelectorCommand(CLI::App& root, CommandContext& ctx) {
  auto* selector = root.add_subcommand("selector", "Write and check storage selectors (CEL)");
  selector->require_subcommand(1);
  RegisterEvalSubcommand(*selector, ctx);
  RegisterTestSubcommand(*selector, ctx);
}

}  // namespace omni_proxmox::cli
