// SPDX-License-Identifier: Apache-2.0
// The planner (see internal/planner.h): from the AST to the plan, with constant folding.

#include "cel/internal/planner.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "cel/internal/evaluator.h"
#include "cel/internal/standard_library.h"

namespace omni_proxmox::cel {
namespace {

const char* TypeDenotationName(const std::string& name) {
  static constexpr const char* kNames[] = {"int",   "uint", "double", "bool",      "string",
                                           "bytes", "list", "map",    "null_type", "type"};
  for (const char* n : kNames) {
    if (name == n) return n;
  }
  return nullptr;
}

class Planner {
 public:
  explicit Planner(const Env& env) : env_(env) {}

  Node Plan(const Expr& e) {
    Node n;
    switch (e.kind) {
      case ExprKind::kConst:
        SetConstant(n, e.constant);
        return n;
      case ExprKind::kIdent:
        return Ident(e);
      case ExprKind::kSelect:
        if (std::string qualified; !e.test_only && QualifiedName(e, qualified)) {
          const auto& vars = env_.variables();
          for (std::size_t i = 0; i < vars.size(); ++i) {
            if (vars[i].name == qualified) return Variable(qualified, i);
          }
        }
        n.op = Op::kSelect;
        n.test_only = e.test_only;
        SetConstant(n, Value::String(e.name));
        n.op = Op::kSelect;
        n.kids.push_back(Plan(*e.target));
        return n;
      case ExprKind::kCall:
        return CallNode(e);
      case ExprKind::kList:
      case ExprKind::kMap:
        n.op = e.kind == ExprKind::kList ? Op::kList : Op::kMap;
        for (const auto& a : e.args) n.kids.push_back(Plan(*a));
        return Fold(std::move(n));
      case ExprKind::kComprehension: {
        n.op = Op::kComp;
        n.macro = e.macro;
        n.kids.push_back(Plan(*e.target));
        n.slot = static_cast<int>(scope_.size());
        scope_.push_back(e.name);
        max_locals_ = std::max(max_locals_, static_cast<int>(scope_.size()));
        if (e.predicate) {
          n.has_predicate = true;
          n.kids.push_back(Plan(*e.predicate));
        }
        if (e.transform) n.kids.push_back(Plan(*e.transform));
        scope_.pop_back();
        return n;
      }
    }
    return n;
  }

  int max_locals() const { return max_locals_; }

 private:
  static void SetConstant(Node& n, const Value& v) {
    n.op = Op::kConst;
    n.owned = v.Own();
    n.constant = n.owned.Borrow();
  }

  static Node Variable(const std::string& name, std::size_t slot) {
    Node n;
    SetConstant(n, Value::Error(fmt::format("no value bound to variable '{}'", name)));
    n.op = Op::kVar;
    n.slot = static_cast<int>(slot);
    return n;
  }

  bool QualifiedName(const Expr& e, std::string& out) const {
    if (e.kind == ExprKind::kIdent) {
      for (const auto& s : scope_) {
        if (s == e.name) return false;
      }
      out = e.name;
      return true;
    }
    if (e.kind != ExprKind::kSelect || e.test_only || !QualifiedName(*e.target, out)) return false;
    out += "." + e.name;
    return true;
  }

  Node Ident(const Expr& e) {
    Node n;
    for (std::size_t i = scope_.size(); i-- > 0;) {
      if (scope_[i] == e.name) {
        n.op = Op::kLocal;
        n.slot = static_cast<int>(i);
        return n;
      }
    }
    const auto& vars = env_.variables();
    for (std::size_t i = 0; i < vars.size(); ++i) {
      if (vars[i].name == e.name) return Variable(e.name, i);
    }
    for (const auto& [name, value] : env_.constants()) {
      if (name == e.name) {
        SetConstant(n, value);
        return n;
      }
    }
    if (const char* type = TypeDenotationName(e.name)) {
      SetConstant(n, Value::TypeName(type));
      return n;
    }
    SetConstant(n, Value::Error(fmt::format("undeclared reference to '{}'", e.name)));
    return n;
  }

  Node CallNode(const Expr& e) {
    Node n;
    if (e.target == nullptr) {
      if (e.name == "_&&_" || e.name == "_||_") {
        n.op = e.name == "_&&_" ? Op::kAnd : Op::kOr;
      } else if (e.name == "!_") {
        n.op = Op::kNot;
      } else if (e.name == "_?_:_") {
        n.op = Op::kCond;
      }
      if (n.op != Op::kConst) {
        for (const auto& a : e.args) n.kids.push_back(Plan(*a));
        return Fold(std::move(n));
      }
    }
    n.op = Op::kCall;
    n.fn = LookupFunction(e.name, env_.check.string_extensions);
    if (n.fn == Fn::kUnknown) {
      n.owned = Value::Error(fmt::format("undeclared reference to '{}'", e.name));
    } else {
      n.owned = Value::String(e.name);
    }
    n.constant = n.owned.Borrow();
    if (e.target) n.kids.push_back(Plan(*e.target));
    for (const auto& a : e.args) n.kids.push_back(Plan(*a));
    if (n.fn == Fn::kMatches && n.kids.size() == 2 && n.kids[1].op == Op::kConst &&
        n.kids[1].constant.kind() == Kind::kString) {
      // Compile a constant pattern once. An invalid one stays a runtime error, as in cel-go.
      n.regex = CompileConstantPattern(n.kids[1].constant.text());
    }
    if (n.fn == Fn::kUnknown) return n;
    return Fold(std::move(n));
  }

  // Replaces a call or literal whose operands are all constants by its value, unless that value is an error
  // (errors stay runtime results, so `false && 1/0 == 0` still absorbs them).
  static Node Fold(Node n) {
    for (const Node& k : n.kids) {
      if (k.op != Op::kConst) return n;
    }
    static const VectorActivation kEmpty{Env()};
    Value v = EvaluateNode(n, kEmpty, nullptr, 0);
    if (v.IsError()) return n;
    Node folded;
    SetConstant(folded, v);
    return folded;
  }

  const Env& env_;
  std::vector<std::string> scope_;
  int max_locals_ = 0;
};

}  // namespace

PlannedExpression PlanExpression(const Env& env, const Expr& expr) {
  Planner planner(env);
  PlannedExpression planned;
  planned.root = planner.Plan(expr);
  planned.max_locals = planner.max_locals();
  return planned;
}

}  // namespace omni_proxmox::cel
