// SPDX-License-Identifier: Apache-2.0
#pragma once

// The planner: lowers a parsed (and checked) expression to the plan the evaluator runs. Internal to cel/.

#include "cel/ast.h"
#include "cel/cel.h"
#include "cel/internal/plan.h"

namespace omni_proxmox::cel {

struct PlannedExpression {
  Node root;
  int max_locals = 0;  // comprehension variables in scope at once
};

// Resolves identifiers to activation slots (by Env's declaration order), comprehension locals or constants,
// calls to built-ins, folds constant subexpressions and compiles constant `matches` patterns. Unknown names
// become error nodes: the checker has already reported them unless type checking is off.
PlannedExpression PlanExpression(const Env& env, const Expr& expr);

}  // namespace omni_proxmox::cel
