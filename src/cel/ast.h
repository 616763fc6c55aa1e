// SPDX-License-Identifier: Apache-2.0
#pragma once

// The CEL abstract syntax tree shared by the parser, the checker and the planner.
//
// Operators are calls with cel-go's internal names ("_&&_", "_==_", "@in", "_[_]", "_?_:_", "!_", "-_").
// Macros are expanded by the parser into kComprehension nodes (or a test-only kSelect for `has`).
// Every node carries the source position of the token that introduced it. Trees are owned by their root
// and immutable once the parser returns them.

#include <memory>
#include <string>
#include <vector>

#include "cel/value.h"

namespace omni_proxmox::cel {

struct Position {
  int line = 1;    // 1-based
  int column = 0;  // 0-based, in code points (cel-go displays column + 1)
};

// A problem found while parsing or checking, with the place it refers to.
struct Issue {
  Position pos;
  std::string message;
};

enum class ExprKind { kConst, kIdent, kSelect, kCall, kList, kMap, kComprehension };

// The five comprehension macros; evaluated natively with the semantics of their cel-go expansions.
enum class MacroKind { kAll, kExists, kExistsOne, kMap, kFilter };

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind = ExprKind::kConst;
  Position pos;
  int depth = 1;  // height of the subtree, bounded by the parser's recursion limit

  Value constant;             // kConst (owned)
  std::string name;           // kIdent name, kSelect field, kCall function, kComprehension iteration variable
  bool test_only = false;     // kSelect produced by has()
  ExprPtr target;             // kSelect operand, kCall receiver (null for global calls), kComprehension range
  std::vector<ExprPtr> args;  // kCall arguments, kList elements, kMap keys and values interleaved (k0, v0, k1, ...)

  MacroKind macro = MacroKind::kAll;  // kComprehension
  ExprPtr predicate;                  // kComprehension: all/exists/exists_one/filter, and map's optional filter
  ExprPtr transform;                  // kComprehension: map
};

}  // namespace omni_proxmox::cel
