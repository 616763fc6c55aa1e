// SPDX-License-Identifier: Apache-2.0
#include "cel/checker.h"

#include <map>
#include <optional>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace omni_proxmox::cel {
namespace {

using K = Type::Kind;

struct Overload {
  std::string fn;
  bool receiver = false;
  std::vector<Type> params;  // receiver first for receiver functions
  Type result;
};

Type A() { return Type::Param("A"); }
Type B() { return Type::Param("B"); }

std::vector<Overload> BuildOverloads(bool cross_type, bool string_ext) {
  std::vector<Overload> o;
  auto add = [&](std::string fn, std::vector<Type> params, Type result, bool receiver = false) {
    o.push_back(Overload{std::move(fn), receiver, std::move(params), std::move(result)});
  };
  const Type b = Type::Bool(), i = Type::Int(), u = Type::Uint(), d = Type::Double(), s = Type::String(),
             y = Type::Bytes();
  add("!_", {b}, b);
  add("_&&_", {b, b}, b);
  add("_||_", {b, b}, b);
  add("_?_:_", {b, A(), A()}, A());
  add("-_", {i}, i);
  add("-_", {d}, d);
  for (const Type& t : {i, u, d, s, y}) add("_+_", {t, t}, t);
  add("_+_", {Type::List(A()), Type::List(A())}, Type::List(A()));
  for (const char* fn : {"_-_", "_*_", "_/_"}) {
    for (const Type& t : {i, u, d}) add(fn, {t, t}, t);
  }
  add("_%_", {i, i}, i);
  add("_%_", {u, u}, u);
  add("_==_", {A(), A()}, b);
  add("_!=_", {A(), A()}, b);
  for (const char* fn : {"_<_", "_<=_", "_>_", "_>=_"}) {
    for (const Type& t : {b, i, u, d, s, y}) add(fn, {t, t}, b);
    if (cross_type) {
      for (const Type& l : {i, u, d}) {
        for (const Type& r : {i, u, d}) {
          if (!(l == r)) add(fn, {l, r}, b);
        }
      }
    }
  }
  add("@in", {A(), Type::List(A())}, b);
  add("@in", {A(), Type::Map(A(), B())}, b);
  add("_[_]", {Type::List(A()), i}, A());
  add("_[_]", {Type::Map(A(), B()), A()}, B());
  for (bool recv : {false, true}) {
    for (const Type& t : {s, y, Type::List(A()), Type::Map(A(), B())}) add("size", {t}, i, recv);
    add("matches", {s, s}, b, recv);
  }
  for (const char* fn : {"contains", "startsWith", "endsWith"}) add(fn, {s, s}, b, true);
  for (const Type& t : {i, u, d, s}) {
    add("int", {t}, i);
    add("uint", {t}, u);
    add("double", {t}, d);
  }
  for (const Type& t : {i, u, d, s, y, b}) add("string", {t}, s);
  add("bytes", {y}, y);
  add("bytes", {s}, y);
  add("bool", {b}, b);
  add("bool", {s}, b);
  add("dyn", {A()}, Type::Dyn());
  add("type", {A()}, Type::TypeOf(A()));
  if (string_ext) {
    add("charAt", {s, i}, s, true);
    add("indexOf", {s, s}, i, true);
    add("indexOf", {s, s, i}, i, true);
    add("lastIndexOf", {s, s}, i, true);
    add("lastIndexOf", {s, s, i}, i, true);
    add("lowerAscii", {s}, s, true);
    add("upperAscii", {s}, s, true);
    add("replace", {s, s, s}, s, true);
    add("replace", {s, s, s, i}, s, true);
    add("split", {s, s}, Type::List(s), true);
    add("split", {s, s, i}, Type::List(s), true);
    add("substring", {s, i}, s, true);
    add("substring", {s, i, i}, s, true);
    add("trim", {s}, s, true);
    add("reverse", {s}, s, true);
    add("join", {Type::List(s)}, s, true);
    add("join", {Type::List(s), s}, s, true);
  }
  return o;
}

const std::vector<Overload>& Overloads(const CheckOptions& options) {
  static const std::vector<Overload> kTables[4] = {BuildOverloads(false, false), BuildOverloads(true, false),
                                                   BuildOverloads(false, true), BuildOverloads(true, true)};
  return kTables[(options.cross_type_numeric_comparisons ? 1 : 0) + (options.string_extensions ? 2 : 0)];
}

using Bindings = std::map<std::string, Type>;

bool IsLoose(const Type& t) { return t.kind == K::kDyn || t.kind == K::kError; }

// Structural compatibility where dyn (and error, to avoid cascades) matches anything.
bool Compatible(const Type& a, const Type& b) {
  if (IsLoose(a) || IsLoose(b)) return true;
  if (a.kind != b.kind) return false;
  if (a.kind == K::kType) return true;  // type values of any types compare (type(1) == type(1u) is false, not an error)
  for (std::size_t i = 0; i < a.params.size() && i < b.params.size(); ++i) {
    if (!Compatible(a.params[i], b.params[i])) return false;
  }
  return true;
}

bool Unify(const Type& param, const Type& arg, Bindings& bindings) {
  if (param.kind == K::kParam) {
    auto it = bindings.find(param.name);
    if (it == bindings.end()) {
      bindings.emplace(param.name, arg);
      return true;
    }
    if (!Compatible(it->second, arg)) return false;
    if (IsLoose(it->second) && !IsLoose(arg)) it->second = arg;
    return true;
  }
  if (IsLoose(arg) || param.kind == K::kDyn) return true;
  if (param.kind != arg.kind) return false;
  if (param.kind == K::kType) return true;
  for (std::size_t i = 0; i < param.params.size(); ++i) {
    if (!Unify(param.params[i], arg.params[i], bindings)) return false;
  }
  return true;
}

Type Substitute(const Type& t, const Bindings& bindings) {
  if (t.kind == K::kParam) {
    auto it = bindings.find(t.name);
    return it == bindings.end() || it->second.kind == K::kError ? Type::Dyn() : it->second;
  }
  Type out = t;
  for (auto& p : out.params) p = Substitute(p, bindings);
  return out;
}

std::optional<Type> TypeDenotation(const std::string& name) {
  if (name == "int") return Type::TypeOf(Type::Int());
  if (name == "uint") return Type::TypeOf(Type::Uint());
  if (name == "double") return Type::TypeOf(Type::Double());
  if (name == "bool") return Type::TypeOf(Type::Bool());
  if (name == "string") return Type::TypeOf(Type::String());
  if (name == "bytes") return Type::TypeOf(Type::Bytes());
  if (name == "list") return Type::TypeOf(Type::List(Type::Dyn()));
  if (name == "map") return Type::TypeOf(Type::Map(Type::Dyn(), Type::Dyn()));
  if (name == "null_type") return Type::TypeOf(Type::Null());
  if (name == "type") return Type::TypeOf(Type::Of(K::kType));
  if (name == "dyn") return Type::TypeOf(Type::Dyn());
  return std::nullopt;
}

class Checker {
 public:
  Checker(const std::vector<VariableDecl>& vars, const CheckOptions& options)
      : vars_(vars), overloads_(Overloads(options)) {}

  Type Visit(const Expr& e) {
    switch (e.kind) {
      case ExprKind::kConst:
        return ConstType(e.constant);
      case ExprKind::kIdent:
        return Ident(e);
      case ExprKind::kSelect:
        return Select(e);
      case ExprKind::kCall:
        return Call(e);
      case ExprKind::kList: {
        std::optional<Type> elem;
        bool same = true;
        for (const auto& a : e.args) {
          Type t = Visit(*a);
          if (!elem) {
            elem = t;
          } else if (!(*elem == t)) {
            same = false;
          }
        }
        return Type::List(elem && same ? *elem : Type::Dyn());
      }
      case ExprKind::kMap: {
        std::optional<Type> key, value;
        bool same_key = true, same_value = true;
        for (std::size_t i = 0; i + 1 < e.args.size(); i += 2) {
          Type k = Visit(*e.args[i]);
          Type v = Visit(*e.args[i + 1]);
          if (!key) {
            key = k;
            value = v;
            continue;
          }
          same_key = same_key && *key == k;
          same_value = same_value && *value == v;
        }
        return Type::Map(key && same_key ? *key : Type::Dyn(), value && same_value ? *value : Type::Dyn());
      }
      case ExprKind::kComprehension:
        return Comprehension(e);
    }
    return Type::Dyn();
  }

  std::vector<Issue> issues;

 private:
  Type Error(Position pos, std::string message) {
    issues.push_back({pos, std::move(message)});
    return Type::Of(K::kError);
  }

  static Type ConstType(const Value& v) {
    switch (v.kind()) {
      case Kind::kNull:
        return Type::Null();
      case Kind::kBool:
        return Type::Bool();
      case Kind::kInt:
        return Type::Int();
      case Kind::kUint:
        return Type::Uint();
      case Kind::kDouble:
        return Type::Double();
      case Kind::kString:
        return Type::String();
      case Kind::kBytes:
        return Type::Bytes();
      default:
        return Type::Dyn();
    }
  }

  Type Ident(const Expr& e) {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      if (it->first == e.name) return it->second;
    }
    for (const auto& v : vars_) {
      if (v.name == e.name) return v.type;
    }
    if (auto t = TypeDenotation(e.name)) return *t;
    return Error(e.pos, fmt::format("undeclared reference to '{}' (in container '')", e.name));
  }

  // The dotted name of an identifier/select chain ("a.b.c"), if the root is not a comprehension variable.
  bool QualifiedName(const Expr& e, std::string& out) const {
    if (e.kind == ExprKind::kIdent) {
      for (const auto& s : scopes_) {
        if (s.first == e.name) return false;
      }
      out = e.name;
      return true;
    }
    if (e.kind != ExprKind::kSelect || e.test_only || !QualifiedName(*e.target, out)) return false;
    out += "." + e.name;
    return true;
  }

  Type Select(const Expr& e) {
    std::string qualified;
    if (!e.test_only && QualifiedName(e, qualified)) {
      for (const auto& v : vars_) {
        if (v.name == qualified) return v.type;  // a declared name with dots wins (longest prefix first)
      }
    }
    Type operand = Visit(*e.target);
    Type result;
    switch (operand.kind) {
      case K::kDyn:
      case K::kError:
        result = Type::Dyn();
        break;
      case K::kMap:
        if (!Compatible(operand.params[0], Type::String())) {
          return Error(e.pos, fmt::format("type '{}' does not support field selection", operand.ToString()));
        }
        result = operand.params[1];
        break;
      default:
        return Error(e.pos, fmt::format("type '{}' does not support field selection", operand.ToString()));
    }
    return e.test_only ? Type::Bool() : result;
  }

  Type Call(const Expr& e) {
    std::vector<Type> args;
    if (e.target) args.push_back(Visit(*e.target));
    for (const auto& a : e.args) args.push_back(Visit(*a));
    return Resolve(e.name, e.target != nullptr, args, e.pos);
  }

  Type Resolve(const std::string& fn, bool receiver, const std::vector<Type>& args, Position pos) {
    bool known = false;
    std::optional<Type> result;
    bool ambiguous = false;
    for (const auto& o : overloads_) {
      if (o.fn != fn) continue;
      known = true;
      if (o.receiver != receiver || o.params.size() != args.size()) continue;
      Bindings bindings;
      bool ok = true;
      for (std::size_t i = 0; i < args.size() && ok; ++i) ok = Unify(o.params[i], args[i], bindings);
      if (!ok) continue;
      Type r = Substitute(o.result, bindings);
      if (!result) {
        result = r;
      } else if (!(*result == r)) {
        ambiguous = true;
      }
    }
    if (!known) return Error(pos, fmt::format("undeclared reference to '{}' (in container '')", fn));
    if (!result) {
      std::string types;
      for (std::size_t i = receiver ? 1 : 0; i < args.size(); ++i) {
        if (!types.empty()) types += ", ";
        types += args[i].ToString();
      }
      const std::string applied = receiver ? fmt::format("{}.({})", args[0].ToString(), types) : "(" + types + ")";
      return Error(pos, fmt::format("found no matching overload for '{}' applied to '{}'", fn, applied));
    }
    return ambiguous ? Type::Dyn() : *result;
  }

  Type Comprehension(const Expr& e) {
    Type range = Visit(*e.target);
    Type var;
    switch (range.kind) {
      case K::kList:
        var = range.params[0];
        break;
      case K::kMap:
        var = range.params[0];
        break;
      case K::kDyn:
      case K::kError:
        var = Type::Dyn();
        break;
      default:
        return Error(e.target->pos,
                     fmt::format("expression of type '{}' cannot be the range of a comprehension (must be list, "
                                 "map, or dynamic)",
                                 range.ToString()));
    }
    scopes_.emplace_back(e.name, var);
    std::optional<Type> pred, transform;
    if (e.predicate) pred = Visit(*e.predicate);
    if (e.transform) transform = Visit(*e.transform);
    scopes_.pop_back();
    if (pred && !Compatible(*pred, Type::Bool())) {
      const char* op = e.macro == MacroKind::kAll ? "_&&_" : e.macro == MacroKind::kExists ? "_||_" : "_?_:_";
      const std::string args = e.macro == MacroKind::kAll || e.macro == MacroKind::kExists
                                   ? fmt::format("(bool, {})", pred->ToString())
                                   : fmt::format("({}, ...)", pred->ToString());
      return Error(e.predicate->pos, fmt::format("found no matching overload for '{}' applied to '{}'", op, args));
    }
    switch (e.macro) {
      case MacroKind::kMap:
        return Type::List(*transform);
      case MacroKind::kFilter:
        return Type::List(var);
      default:
        return Type::Bool();
    }
  }

  const std::vector<VariableDecl>& vars_;
  const std::vector<Overload>& overloads_;
  std::vector<std::pair<std::string, Type>> scopes_;  // comprehension variables, innermost last
};

}  // namespace

std::string Type::ToString() const {
  switch (kind) {
    case Kind::kDyn:
      return "dyn";
    case Kind::kNull:
      return "null";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kUint:
      return "uint";
    case Kind::kDouble:
      return "double";
    case Kind::kString:
      return "string";
    case Kind::kBytes:
      return "bytes";
    case Kind::kList:
      return fmt::format("list({})", params[0].ToString());
    case Kind::kMap:
      return fmt::format("map({}, {})", params[0].ToString(), params[1].ToString());
    case Kind::kType:
      return params.empty() ? "type" : fmt::format("type({})", params[0].ToString());
    case Kind::kError:
      return "*error*";
    case Kind::kParam:
      return name;
  }
  return "?";
}

CheckResult Check(const Expr& expr, const std::vector<VariableDecl>& variables, const CheckOptions& options) {
  Checker checker(variables, options);
  CheckResult result;
  result.type = checker.Visit(expr);
  result.issues = std::move(checker.issues);
  return result;
}

bool IsKnownFunction(const std::string& name, const CheckOptions& options) {
  for (const auto& o : Overloads(options)) {
    if (o.fn == name) return true;
  }
  return false;
}

}  // namespace omni_proxmox::cel
