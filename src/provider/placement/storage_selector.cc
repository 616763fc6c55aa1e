// SPDX-License-Identifier: Apache-2.0
// The storage-selector environment, its activation and the operator hints (see storage_selector.h).

#include "provider/placement/storage_selector.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include <fmt/format.h>

#include "util/status_macros.h"
#include "util/text.h"

namespace omni_proxmox::provider {
namespace {

using cel::Activation;
using cel::Env;
using cel::Kind;
using cel::ListRep;
using cel::Program;
using cel::Type;
using cel::Value;

// The variables' activation slots (BuildStorageEnv checks that they are the ones Env assigns).
enum Slot : int {
  kName,
  kNode,
  kType,
  kStorageType,
  kAvailableSpace,
  kTotal,
  kUsed,
  kEnabled,
  kActive,
  kShared,
  kContent
};

// Declares a variable at the slot StorageActivation::Get reads it from.
void Declare(Env& env, Slot slot, std::string name, Type type) {
  if (env.AddVariable(std::move(name), std::move(type)) != slot) std::abort();  // declaration order broke the slots
}

Env BuildStorageEnv() {
  Env env;
  Declare(env, kName, "name", Type::String());
  Declare(env, kNode, "node", Type::String());
  Declare(env, kType, "type", Type::String());
  Declare(env, kStorageType, "storageType", Type::String());
  Declare(env, kAvailableSpace, "availableSpace", Type::Uint());
  Declare(env, kTotal, "total", Type::Uint());
  Declare(env, kUsed, "used", Type::Uint());
  Declare(env, kEnabled, "enabled", Type::Bool());
  Declare(env, kActive, "active", Type::Bool());
  Declare(env, kShared, "shared", Type::Bool());
  Declare(env, kContent, "content", Type::List(Type::String()));
  env.AddConstant("KiB", Value::Uint(1ull << 10));
  env.AddConstant("MiB", Value::Uint(1ull << 20));
  env.AddConstant("GiB", Value::Uint(1ull << 30));
  env.AddConstant("TiB", Value::Uint(1ull << 40));
  env.check.string_extensions = true;
  env.check.cross_type_numeric_comparisons = false;  // as in the Go provider: `availableSpace > 100` is an error
  return env;
}

std::vector<std::string> KnownNames() {
  std::vector<std::string> names;
  for (const auto& v : StorageEnv().variables()) names.push_back(v.name);
  for (const auto& c : StorageEnv().constants()) names.push_back(c.first);
  for (const char* fn : {"size",   "contains", "startsWith", "endsWith",   "matches", "lowerAscii",  "upperAscii",
                         "trim",   "split",    "join",       "replace",    "indexOf", "lastIndexOf", "substring",
                         "charAt", "exists",   "all",        "exists_one", "map",     "filter",      "has"}) {
    names.emplace_back(fn);
  }
  return names;
}

// Adds operator-oriented hints below cel-go's message. Works on our own checker's wording.
std::string WithHints(const std::string& message) {
  std::string out = message;
  const std::string undeclared = "undeclared reference to '";
  if (auto pos = message.find(undeclared); pos != std::string::npos) {
    const auto start = pos + undeclared.size();
    const std::string word = message.substr(start, message.find('\'', start) - start);
    if (auto hint = util::ClosestMatch(word, KnownNames())) {
      out += fmt::format("\nhint: '{}' is not declared; did you mean '{}'?", word, *hint);
    } else {
      out += fmt::format(
          "\nhint: '{}' is not declared; the variables are name, node, type, storageType, availableSpace, total, "
          "used, enabled, active, shared, content (and the constants KiB, MiB, GiB, TiB)",
          word);
    }
  }
  if (message.find("applied to '(uint, int)'") != std::string::npos ||
      message.find("applied to '(int, uint)'") != std::string::npos ||
      message.find("applied to '(uint, double)'") != std::string::npos) {
    out +=
        "\nhint: availableSpace, total and used are uint: write uint literals such as 100u * GiB, or convert "
        "with uint(...) / int(...)";
  }
  if (message.find("'@in' applied to '(string, string)'") != std::string::npos) {
    out += "\nhint: `in` tests list elements and map keys; for a substring write name.contains(\"lvm\")";
  }
  return out;
}

}  // namespace

const Env& StorageEnv() {
  static const Env env = BuildStorageEnv();
  return env;
}

bool StorageActivation::Get(int slot, Value& out) const {
  switch (slot) {
    case kName:
      out = Value::StringView(facts_.name);
      return true;
    case kNode:
      out = Value::StringView(facts_.node);
      return true;
    case kType:
    case kStorageType:
      out = Value::StringView(facts_.type);
      return true;
    case kAvailableSpace:
      out = Value::Uint(facts_.avail_bytes);
      return true;
    case kTotal:
      out = Value::Uint(facts_.total_bytes);
      return true;
    case kUsed:
      out = Value::Uint(facts_.used_bytes);
      return true;
    case kEnabled:
      out = Value::Bool(facts_.enabled);
      return true;
    case kActive:
      out = Value::Bool(facts_.active);
      return true;
    case kShared:
      out = Value::Bool(facts_.shared);
      return true;
    case kContent: {
      ListRep list;
      list.reserve(facts_.content.size());
      for (const auto& c : facts_.content) list.push_back(Value::StringView(c));
      out = Value::List(std::move(list));
      return true;
    }
    default:
      return false;
  }
}

namespace {

// `storage_selector: local-lvm` is a common mistake: CEL reads it as `local - lvm`. A source that
// is one storage-name-like word and no variable gets its own explanation instead of the checker's.
bool IsBareStorageName(std::string_view source) {
  while (!source.empty() && (source.front() == ' ' || source.front() == '\t')) source.remove_prefix(1);
  while (!source.empty() && (source.back() == ' ' || source.back() == '\t' || source.back() == '\n')) {
    source.remove_suffix(1);
  }
  if (source.empty() || !std::isalpha(static_cast<unsigned char>(source.front()))) return false;
  for (char c : source) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  }
  const std::vector<std::string> known = KnownNames();
  return std::find(known.begin(), known.end(), std::string(source)) == known.end() && source != "true" &&
         source != "false" && source != "null";
}

}  // namespace

absl::StatusOr<Program> CompileStorageExpression(std::string_view source) {
  if (IsBareStorageName(source)) {
    std::string name(source);
    name.erase(0, name.find_first_not_of(" \t"));
    name.erase(name.find_last_not_of(" \t\n") + 1);
    return absl::InvalidArgumentError(fmt::format(
        "'{}' is a storage name, not a selector: a selector is a CEL expression over the storage; to pick this "
        "storage by name write name == \"{}\"",
        name, name));
  }
  auto program = cel::Compile(StorageEnv(), source);
  if (!program.ok()) return absl::InvalidArgumentError(WithHints(std::string(program.status().message())));
  return program;
}

absl::StatusOr<StorageSelector> StorageSelector::Compile(std::string_view source) {
  OP_ASSIGN_OR_RETURN(Program program, CompileStorageExpression(source));
  if (program.result_type().kind != Type::Kind::kBool) {
    return absl::InvalidArgumentError(
        fmt::format("storage_selector must be a boolean expression such as name == \"local-lvm\"; this one yields {}",
                    program.result_type().ToString()));
  }
  return StorageSelector(std::move(program));
}

absl::StatusOr<bool> StorageSelector::Matches(const StorageFacts& storage) const {
  StorageActivation activation(storage);
  const Value result = program_.Evaluate(activation);
  if (result.kind() == Kind::kBool) return result.bool_value();
  if (result.IsError()) {
    return absl::InvalidArgumentError(fmt::format("storage_selector failed on storage '{}' of node '{}': {}",
                                                  storage.name, storage.node, result.text()));
  }
  // Unreachable for a checked bool program; kept so a checker bug cannot turn into a wrong match.
  return absl::InvalidArgumentError(
      fmt::format("storage_selector yielded {} on storage '{}', expected bool", result.TypeNameOf(), storage.name));
}

const std::string& StorageSelector::source() const { return program_.source(); }

absl::StatusOr<std::optional<std::size_t>> SelectFirst(const StorageSelector& selector,
                                                       const std::vector<StorageFacts>& storages) {
  for (std::size_t i = 0; i < storages.size(); ++i) {
    OP_ASSIGN_OR_RETURN(bool match, selector.Matches(storages[i]));
    if (match) return std::optional<std::size_t>(i);
  }
  return std::optional<std::size_t>();
}

}  // namespace omni_proxmox::provider
