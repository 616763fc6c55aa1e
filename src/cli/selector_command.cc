// `omni-proxmox selector ...`: tools for writing storage selectors.
//
//   selector eval --expr EXPR --storage JSON   evaluate one expression against one storage entry
//   selector eval --batch                       JSON lines {"expr": ..., "storage": {...}} on stdin
//
// Every result is one JSON line: {"type":"bool","value":true} or {"error":"...","kind":"compile"|"eval"|"input"}.
// Exit code 0 when every expression evaluated, 1 when any produced an error, 2 for bad flags.
// Further `selector` subcommands are added in Register*Subcommand functions below, next to Eval.

#include <cmath>
#include <cstdint>
#include <iostream>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cel/selector.h"
#include "cli/command.h"
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
absl::StatusOr<cel::StorageFacts> ParseStorage(const json& entry) {
  if (!entry.is_object()) {
    return absl::InvalidArgumentError(
        "storage must be a JSON object such as {\"storage\":\"local-lvm\",\"type\":\"lvmthin\",\"avail\":1024}");
  }
  cel::StorageFacts facts;
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
  auto program = cel::CompileStorageExpression(expr);
  if (!program.ok()) return {ErrorLine(std::string(program.status().message()), "compile"), false};
  cel::StorageActivation activation(*facts);
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
  cmd->add_option("--expr", *expr, "The CEL expression, e.g. 'type == \"rbd\" && availableSpace > 100u * GiB'");
  cmd->add_option("--storage", *storage,
                  "A PVE storage entry as JSON, plus \"node\": "
                  "{\"storage\":\"local-lvm\",\"node\":\"pve1\",\"type\":\"lvmthin\",\"content\":\"images,rootdir\","
                  "\"avail\":214748364800,\"total\":...,\"used\":...,\"active\":1,\"enabled\":1,\"shared\":0}");
  cmd->add_flag("--batch", *batch, "Read JSON lines {\"expr\": ..., \"storage\": {...}} on stdin, one result each");
  cmd->footer(
      "Prints {\"type\":\"bool\",\"value\":true} or {\"error\":\"...\",\"kind\":\"compile\"|\"eval\"|\"input\"}.\n"
      "Variables: name node type storageType availableSpace total used (uint bytes) enabled active shared content;\n"
      "constants KiB MiB GiB TiB. Exit code 1 when any expression failed.\n");
  cmd->callback([&ctx, expr, storage, batch] {
    if (*batch) {
      if (!expr->empty() || !storage->empty()) {
        std::cerr << "selector eval: --batch reads expressions from stdin; drop --expr/--storage\n";
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
      std::cerr << "selector eval: --expr is required (or use --batch); e.g. --expr 'name == \"local-lvm\"'\n";
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

}  // namespace

void RegisterSelectorCommand(CLI::App& root, CommandContext& ctx) {
  auto* selector = root.add_subcommand("selector", "Write and check storage selectors (CEL)");
  selector->require_subcommand(1);
  RegisterEvalSubcommand(*selector, ctx);
}

}  // namespace omni_proxmox::cli
