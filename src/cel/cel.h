// SPDX-License-Identifier: Apache-2.0
#pragma once

// The CEL engine's entry point: declare an environment, compile an expression once, evaluate it many times.
//
//   cel::Env env;
//   const int name = env.AddVariable("name", cel::Type::String());
//   OP_ASSIGN_OR_RETURN(cel::Program program, cel::Compile(env, "name.startsWith('local')"));
//   cel::VectorActivation act(env);
//   act.Set(name, cel::Value::StringView("local-lvm"));
//   cel::Value result = program.Evaluate(act);  // a bool, or an error value
//
// Compile = parse (macros expanded) + type check (unless disabled) + plan: identifiers are resolved to slots,
// functions to built-ins, constant subexpressions are folded and constant `matches` patterns are compiled to RE2
// once. A Program is immutable after Compile, thread-safe, and cheap to copy (it shares the plan).
//
// The engine knows nothing of what it is embedded in: an embedder declares its variables in an Env and binds them
// per evaluation with an Activation (the provider's storage binding is provider/placement/storage_selector.h).

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

#include "cel/checker.h"
#include "cel/parser.h"
#include "cel/value.h"

namespace omni_proxmox::cel {

// Declarations and options for compiling expressions. Thread-compatible; Compile only reads it.
class Env {
 public:
  // Declares a variable and returns its slot in an Activation.
  int AddVariable(std::string name, Type type);
  // Declares a named constant (e.g. GiB = 1073741824u); its type is the value's type. `value` must own its data.
  void AddConstant(std::string name, Value value);

  ParseOptions parse;
  CheckOptions check;
  bool type_check = true;  // false evaluates ill-typed expressions dynamically (conformance disable_check)
  // Bounds the work of one evaluation: nested macros multiply iterations (cel-cpp has the same default).
  long max_comprehension_iterations = 10000;

  const std::vector<VariableDecl>& variables() const { return variables_; }
  const std::vector<std::pair<std::string, Value>>& constants() const { return constants_; }

 private:
  std::vector<VariableDecl> variables_;
  std::vector<std::pair<std::string, Value>> constants_;
};

// Supplies variable values for one evaluation, by the slot AddVariable returned. Values may borrow memory that
// outlives the evaluation.
class Activation {
 public:
  virtual ~Activation() = default;
  // Returns false when the variable is unbound (evaluates to an error).
  virtual bool Get(int slot, Value& out) const = 0;
};

// An Activation backed by a vector, for general use and tests.
class VectorActivation : public Activation {
 public:
  explicit VectorActivation(const Env& env) : values_(env.variables().size()) {}
  void Set(int slot, Value value) { values_.at(static_cast<std::size_t>(slot)) = std::move(value); }
  bool Get(int slot, Value& out) const override {
    const auto& v = values_[static_cast<std::size_t>(slot)];
    if (!v) return false;
    out = v->Borrow();
    return true;
  }

 private:
  std::vector<std::optional<Value>> values_;
};

struct Plan;  // internal

class Program {
 public:
  // Evaluates against one set of variables. CEL errors (overflow, division by zero, no such key, ...) come back as
  // a Value of kind kError. The result may borrow from this program and from `activation`: call Own() on it to
  // keep it longer than both.
  Value Evaluate(const Activation& activation) const;

  // The checked type of the expression (dyn when type checking is disabled).
  const Type& result_type() const;
  const std::string& source() const;

 private:
  friend absl::StatusOr<Program> Compile(const Env& env, std::string_view source);
  std::shared_ptr<const Plan> plan_;
};

// Parses, checks and plans `source`. Parse and check errors are InvalidArgument with cel-go's display format
// ("ERROR: <input>:L:C: message", the source line and a caret).
absl::StatusOr<Program> Compile(const Env& env, std::string_view source);

}  // namespace omni_proxmox::cel
