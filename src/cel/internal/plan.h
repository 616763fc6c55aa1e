// SPDX-License-Identifier: Apache-2.0
#pragma once

// The planned form of a compiled CEL expression: a tree of Nodes with identifiers resolved to activation or
// comprehension slots, functions resolved to built-ins, constant subexpressions folded and constant `matches`
// patterns compiled. The planner (planner.cc) builds it from the checked AST, the evaluator (evaluator.cc)
// runs it, and the standard library (standard_library.cc) implements the built-ins. Immutable once planned and
// shared by every copy of a Program. Internal to cel/.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cel/ast.h"
#include "cel/checker.h"
#include "cel/value.h"

namespace re2 {
class RE2;
}

namespace omni_proxmox::cel {

// What a node does: yield a constant, read a variable or comprehension local, select a field, short-circuit
// a logical operator, call a built-in, build a list or map, or run a comprehension.
enum class Op : std::uint8_t { kConst, kVar, kLocal, kSelect, kAnd, kOr, kNot, kCond, kCall, kList, kMap, kComp };

// The built-in functions and operators, as the standard library implements them.
enum class Fn : std::uint8_t {
  kUnknown,
  kNeg,
  kAdd,
  kSub,
  kMul,
  kDiv,
  kMod,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kIn,
  kIndex,
  kSize,
  kContains,
  kStartsWith,
  kEndsWith,
  kMatches,
  kInt,
  kUint,
  kDouble,
  kString,
  kBytes,
  kBool,
  kDyn,
  kType,
  kCharAt,
  kIndexOf,
  kLastIndexOf,
  kLowerAscii,
  kUpperAscii,
  kReplace,
  kSplit,
  kSubstring,
  kTrim,
  kReverse,
  kJoin,
};

struct Node {
  Op op = Op::kConst;
  Fn fn = Fn::kUnknown;
  MacroKind macro = MacroKind::kAll;
  bool test_only = false;      // kSelect from has()
  bool has_predicate = false;  // kComp
  int slot = 0;                // kVar activation slot, kLocal / kComp local slot
  Value constant;              // kConst value (borrowed view of `owned`), kSelect field name, kCall name/error
  Value owned;                 // keeps `constant` alive
  std::vector<Node> kids;      // kComp: range, [predicate], [transform]
  std::shared_ptr<const re2::RE2> regex;  // kCall kMatches with a constant, valid pattern
};

// A whole program: the root node and what evaluating it needs.
struct Plan {
  std::string source;
  Type type;
  Node root;
  int max_locals = 0;           // comprehension variables in scope at once
  long max_iterations = 10000;  // Env::max_comprehension_iterations
};

}  // namespace omni_proxmox::cel
