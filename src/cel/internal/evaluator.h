// SPDX-License-Identifier: Apache-2.0
#pragma once

// The evaluator: runs a plan against one activation. Internal to cel/ (Program::Evaluate and the planner's
// constant folding use it).

#include "cel/cel.h"
#include "cel/internal/plan.h"

namespace omni_proxmox::cel {

// Evaluates `node` with the variables of `activation`. `locals` holds the comprehension variables (room for the
// plan's max_locals; null when it has none); at most `max_iterations` comprehension iterations run in all.
Value EvaluateNode(const Node& node, const Activation& activation, Value* locals, long max_iterations);

}  // namespace omni_proxmox::cel
