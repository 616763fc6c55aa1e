// SPDX-License-Identifier: Apache-2.0
// The evaluator (see internal/evaluator.h): a recursive walk of the plan with CEL's error absorption for
// `&&`, `||` and the comprehension macros, the comprehension locals kept on the caller's stack, and calls
// handed to the standard library.

#include "cel/internal/evaluator.h"

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "cel/internal/standard_library.h"

namespace omni_proxmox::cel {
namespace {

constexpr std::size_t kInlineLocals = 8;

class Evaluator {
 public:
  Evaluator(const Activation& activation, Value* locals, long max_iterations)
      : act_(activation), locals_(locals), budget_(max_iterations) {}

  Value Eval(const Node& n) {
    switch (n.op) {
      case Op::kConst:
        return n.constant;
      case Op::kVar: {
        Value v;
        if (!act_.Get(n.slot, v)) return n.constant;  // the planned "unbound variable" error
        return v;
      }
      case Op::kLocal:
        return locals_[n.slot];
      case Op::kSelect:
        return Select(n);
      case Op::kAnd:
      case Op::kOr:
        return Logic(n, n.op == Op::kAnd);
      case Op::kNot: {
        Value v = Eval(n.kids[0]);
        if (v.kind() == Kind::kBool) return Value::Bool(!v.bool_value());
        if (v.IsError()) return v;
        return NoOverload("!_", {&v});
      }
      case Op::kCond: {
        Value c = Eval(n.kids[0]);
        if (c.kind() == Kind::kBool) return Eval(n.kids[c.bool_value() ? 1 : 2]);
        if (c.IsError()) return c;
        return NoOverload("_?_:_", {&c});
      }
      case Op::kCall:
        return Call(n);
      case Op::kList: {
        ListRep out;
        out.reserve(n.kids.size());
        for (const Node& k : n.kids) {
          Value v = Eval(k);
          if (v.IsError()) return v;
          out.push_back(std::move(v));
        }
        return Value::List(std::move(out));
      }
      case Op::kMap: {
        MapRep out;
        out.reserve(n.kids.size() / 2);
        for (std::size_t i = 0; i + 1 < n.kids.size(); i += 2) {
          Value k = Eval(n.kids[i]);
          if (k.IsError()) return k;
          Value v = Eval(n.kids[i + 1]);
          if (v.IsError()) return v;
          out.emplace_back(std::move(k), std::move(v));
        }
        return Value::MakeMap(std::move(out));
      }
      case Op::kComp:
        return Comprehension(n);
    }
    return Value::StaticError("internal error: unknown plan node");
  }

 private:
  Value Select(const Node& n) {
    Value operand = Eval(n.kids[0]);
    if (operand.IsError()) return operand;
    if (operand.kind() != Kind::kMap) {
      return Value::Error(fmt::format("type '{}' does not support field selection", operand.TypeNameOf()));
    }
    const Value* v = MapFind(operand.map(), n.constant);
    if (n.test_only) return Value::Bool(v != nullptr);
    if (v == nullptr) return Value::Error(fmt::format("no such key: {}", n.constant.text()));
    return *v;
  }

  // Commutative && / ||: a deciding operand on either side absorbs an error on the other.
  Value Logic(const Node& n, bool is_and) {
    Value l = Eval(n.kids[0]);
    if (l.kind() == Kind::kBool && l.bool_value() != is_and) return l;
    Value r = Eval(n.kids[1]);
    if (r.kind() == Kind::kBool && r.bool_value() != is_and) return r;
    if (l.kind() == Kind::kBool && r.kind() == Kind::kBool) return l;
    const Value& bad = l.kind() != Kind::kBool ? l : r;
    if (bad.IsError()) return bad;
    return NoOverload(is_and ? "_&&_" : "_||_", {&l, &r});
  }

  Value Comprehension(const Node& n) {
    Value range = Eval(n.kids[0]);
    if (range.IsError()) return range;
    const bool is_list = range.kind() == Kind::kList;
    if (!is_list && range.kind() != Kind::kMap) {
      return Value::Error(fmt::format("cannot iterate over a value of type '{}'", range.TypeNameOf()));
    }
    const std::size_t size = is_list ? range.list().size() : range.map().size();
    Value& var = locals_[n.slot];
    const Node* pred = n.has_predicate ? &n.kids[1] : nullptr;
    const Node* transform = n.macro == MacroKind::kMap ? &n.kids.back() : nullptr;
    Value pending_error;
    bool have_error = false;
    std::int64_t count = 0;
    ListRep out;
    for (std::size_t i = 0; i < size; ++i) {
      if (--budget_ < 0) return Value::StaticError("comprehension iteration limit exceeded");
      var = is_list ? range.list()[i] : range.map()[i].first;
      Value p;
      if (pred != nullptr) {
        p = Eval(*pred);
        if (p.kind() != Kind::kBool) {
          if (!p.IsError()) p = Value::StaticError("no matching overload: predicate is not a bool");
          if (n.macro == MacroKind::kAll || n.macro == MacroKind::kExists) {
            if (!have_error) pending_error = p;
            have_error = true;
            continue;
          }
          return p;
        }
      }
      switch (n.macro) {
        case MacroKind::kAll:
          if (!p.bool_value()) return Value::Bool(false);
          break;
        case MacroKind::kExists:
          if (p.bool_value()) return Value::Bool(true);
          break;
        case MacroKind::kExistsOne:
          count += p.bool_value();
          break;
        case MacroKind::kFilter:
          if (p.bool_value()) out.push_back(var);
          break;
        case MacroKind::kMap: {
          if (pred != nullptr && !p.bool_value()) break;
          Value t = Eval(*transform);
          if (t.IsError()) return t;
          out.push_back(std::move(t));
          break;
        }
      }
    }
    switch (n.macro) {
      case MacroKind::kAll:
        return have_error ? pending_error : Value::Bool(true);
      case MacroKind::kExists:
        return have_error ? pending_error : Value::Bool(false);
      case MacroKind::kExistsOne:
        return Value::Bool(count == 1);
      default:
        return Value::List(std::move(out));
    }
  }

  Value Call(const Node& n) {
    // Unary and binary calls (almost all of a selector) keep their operands in plain locals.
    if (n.kids.size() == 2) {
      Value args[2] = {Eval(n.kids[0]), Value()};
      if (args[0].IsError()) return args[0];
      args[1] = Eval(n.kids[1]);
      if (args[1].IsError()) return args[1];
      if (n.fn == Fn::kEq && args[0].kind() == Kind::kString && args[1].kind() == Kind::kString) {
        return Value::Bool(args[0].text() == args[1].text());
      }
      return ApplyFunction(n, args, 2);
    }
    if (n.kids.size() == 1) {
      Value arg = Eval(n.kids[0]);
      if (arg.IsError()) return arg;
      return ApplyFunction(n, &arg, 1);
    }
    std::array<Value, 4> small;
    std::vector<Value> big;
    const std::size_t argc = n.kids.size();
    Value* args = small.data();
    if (argc > small.size()) {
      big.resize(argc);
      args = big.data();
    }
    for (std::size_t i = 0; i < argc; ++i) {
      args[i] = Eval(n.kids[i]);
      if (args[i].IsError()) return args[i];
    }
    return ApplyFunction(n, args, argc);
  }

  const Activation& act_;
  Value* locals_;
  long budget_;  // comprehension iterations left
};

}  // namespace

Value EvaluateNode(const Node& node, const Activation& activation, Value* locals, long max_iterations) {
  Evaluator ev(activation, locals, max_iterations);
  return ev.Eval(node);
}

Value Program::Evaluate(const Activation& activation) const {
  if (plan_->max_locals == 0) {  // no comprehension: no locals to set up
    Evaluator ev(activation, nullptr, plan_->max_iterations);
    return ev.Eval(plan_->root);
  }
  std::array<Value, kInlineLocals> small;
  std::vector<Value> big;
  Value* locals = small.data();
  if (static_cast<std::size_t>(plan_->max_locals) > small.size()) {
    big.resize(static_cast<std::size_t>(plan_->max_locals));
    locals = big.data();
  }
  Evaluator ev(activation, locals, plan_->max_iterations);
  return ev.Eval(plan_->root);
}

}  // namespace omni_proxmox::cel
