// SPDX-License-Identifier: Apache-2.0
// The compiler's entry points (cel.h): Env declarations, and Compile = parse + check + plan into a Program.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

#include "cel/cel.h"
#include "cel/internal/plan.h"
#include "cel/internal/planner.h"

namespace omni_proxmox::cel {

int Env::AddVariable(std::string name, Type type) {
  variables_.push_back(VariableDecl{std::move(name), std::move(type)});
  return static_cast<int>(variables_.size()) - 1;
}

void Env::AddConstant(std::string name, Value value) { constants_.emplace_back(std::move(name), value.Own()); }

const Type& Program::result_type() const { return plan_->type; }
const std::string& Program::source() const { return plan_->source; }

absl::StatusOr<Program> Compile(const Env& env, std::string_view source) {
  ParseResult parsed = Parse(source, env.parse);
  if (!parsed.issues.empty()) return absl::InvalidArgumentError(FormatIssues(source, parsed.issues));
  auto plan = std::make_shared<Plan>();
  plan->source = std::string(source);
  if (env.type_check) {
    std::vector<VariableDecl> decls = env.variables();
    for (const auto& [name, value] : env.constants()) {
      Type t;
      switch (value.kind()) {
        case Kind::kInt:
          t = Type::Int();
          break;
        case Kind::kUint:
          t = Type::Uint();
          break;
        case Kind::kDouble:
          t = Type::Double();
          break;
        case Kind::kString:
          t = Type::String();
          break;
        case Kind::kBool:
          t = Type::Bool();
          break;
        default:
          t = Type::Dyn();
      }
      decls.push_back(VariableDecl{name, t});
    }
    CheckResult checked = Check(*parsed.expr, decls, env.check);
    if (!checked.issues.empty()) return absl::InvalidArgumentError(FormatIssues(source, checked.issues));
    plan->type = checked.type;
  }
  PlannedExpression planned = PlanExpression(env, *parsed.expr);
  plan->root = std::move(planned.root);
  plan->max_locals = planned.max_locals;
  plan->max_iterations = env.max_comprehension_iterations;
  Program program;
  program.plan_ = std::move(plan);
  return program;
}

}  // namespace omni_proxmox::cel
