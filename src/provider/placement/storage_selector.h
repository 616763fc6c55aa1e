// SPDX-License-Identifier: Apache-2.0
#pragma once

// Storage selectors: the CEL binding of a Proxmox storage, with which a MachineClass picks the storage of a VM disk.
//
// The CEL engine (cel/cel.h) knows nothing of Proxmox: this file declares the selector environment (cel::Env) and
// binds one storage entry to it (a cel::Activation). The environment is a superset of the Go provider's (name,
// node, storageType, availableSpace): it adds `type` (usable as a variable, unlike in cel-go where it names the
// type-denotation), total, used, enabled, active, shared, content, the uint constants KiB MiB GiB TiB, and the
// common string extensions. Every expression that compiles in the Go provider's environment evaluates to the same
// result here.
//
// Compile once per selector (per MachineClass), evaluate per storage entry. StorageSelector is immutable,
// thread-safe and cheap to copy; evaluating a typical selector allocates nothing.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

#include "cel/cel.h"

namespace omni_proxmox::provider {

struct StorageFacts {            // one entry of GET /nodes/{node}/storage plus the node name
  std::string name, node, type;  // storage id, node, storage type
  std::uint64_t avail_bytes = 0, total_bytes = 0, used_bytes = 0;
  bool enabled = false, active = false, shared = false;
  std::vector<std::string> content;  // e.g. {"images","rootdir"}
};

class StorageSelector {  // immutable, thread-safe, cheap to copy (shares the compiled program)
 public:
  // Compile errors come back as InvalidArgument with the cel-go-shaped message (ERROR: <input>:L:C: ... + source
  // line + caret), followed by "hint: ..." lines where we can suggest a fix, and the selector hint when the
  // result type is not bool.
  static absl::StatusOr<StorageSelector> Compile(std::string_view source);
  // Eval errors -> InvalidArgument naming the storage and the problem (e.g. "unsigned integer overflow").
  absl::StatusOr<bool> Matches(const StorageFacts& storage) const;
  const std::string& source() const;

  const cel::Program& program() const { return program_; }

 private:
  explicit StorageSelector(cel::Program program) : program_(std::move(program)) {}
  cel::Program program_;
};

// The first storage (in the given order, which is Proxmox's) the selector matches, or nullopt when none does.
// As in the Go provider, an evaluation error on any entry aborts the pick and is returned.
absl::StatusOr<std::optional<std::size_t>> SelectFirst(const StorageSelector& selector,
                                                       const std::vector<StorageFacts>& storages);

// The storage-selector environment, for tools that evaluate arbitrary expressions (not only bool ones).
const cel::Env& StorageEnv();

// Compiles an expression in the storage environment without requiring a bool result (the `selector eval` tool).
absl::StatusOr<cel::Program> CompileStorageExpression(std::string_view source);

// Binds one storage entry to StorageEnv()'s variables. Strings are borrowed from `facts`, which must outlive the
// activation; `content` is materialised only when the expression reads it.
class StorageActivation : public cel::Activation {
 public:
  explicit StorageActivation(const StorageFacts& facts) : facts_(facts) {}
  bool Get(int slot, cel::Value& out) const override;

 private:
  const StorageFacts& facts_;
};

}  // namespace omni_proxmox::provider
