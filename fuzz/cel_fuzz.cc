// SPDX-License-Identifier: Apache-2.0
// Fuzzes the CEL parser, checker, planner and evaluator with arbitrary selector text, in the provider's storage
// environment (provider/placement/storage_selector.h).
//
// Invariants checked beyond "no crash, no sanitizer report, no hang":
//  - every input either compiles or fails with InvalidArgument whose message starts with "ERROR: <input>:";
//  - a compiled program evaluates (twice, deterministically) against a storage entry;
//  - unchecked compilation (the conformance disable_check mode) of parseable input never fails.

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cel/cel.h"
#include "provider/placement/storage_selector.h"

namespace {

namespace cel = omni_proxmox::cel;
namespace provider = omni_proxmox::provider;

const provider::StorageFacts& Facts() {
  static const provider::StorageFacts facts = [] {
    provider::StorageFacts s;
    s.name = "local-lvm";
    s.node = "pve1";
    s.type = "lvmthin";
    s.avail_bytes = 200ull << 30;
    s.total_bytes = 500ull << 30;
    s.used_bytes = 300ull << 30;
    s.enabled = s.active = true;
    s.content = {"images", "rootdir"};
    return s;
  }();
  return facts;
}

void Require(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view source(reinterpret_cast<const char*>(data), size);
  auto program = provider::CompileStorageExpression(source);
  if (!program.ok()) {
    Require(program.status().code() == absl::StatusCode::kInvalidArgument);
    Require(program.status().message().substr(0, 15) == "ERROR: <input>:");
  } else {
    provider::StorageActivation activation(Facts());
    const cel::Value first = program->Evaluate(activation);
    const cel::Value second = program->Evaluate(activation);
    Require(first.DebugString() == second.DebugString());
    (void)first.Own().DebugString();
    // The selector wrapper agrees with the raw program on bool results.
    auto selector = provider::StorageSelector::Compile(source);
    if (selector.ok()) {
      auto match = selector->Matches(Facts());
      Require(match.ok() == (first.kind() == cel::Kind::kBool));
      if (match.ok()) Require(*match == first.bool_value());
    }
  }
  // Dynamic (unchecked) mode: anything that parses must plan and evaluate.
  static const cel::Env unchecked = [] {
    cel::Env env;
    env.type_check = false;
    env.check.string_extensions = true;
    env.AddVariable("name", cel::Type::Dyn());
    return env;
  }();
  const bool parses = cel::Parse(source).issues.empty();
  auto dynamic = cel::Compile(unchecked, source);
  Require(dynamic.ok() == parses);
  if (dynamic.ok()) {
    cel::VectorActivation activation(unchecked);
    activation.Set(0, cel::Value::StringView("local-lvm"));
    (void)dynamic->Evaluate(activation);
  }
  return 0;
}
