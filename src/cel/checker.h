// SPDX-License-Identifier: Apache-2.0
#pragma once

// CEL type checker: declared variables, the standard overloads, comprehension typing, and the type of the result.
//
// It is the "lite" checker the storage selectors need: primitive, list, map, type and dyn types, with cel-go's
// homogeneous operator overloads (so `availableSpace > 100` with a uint variable is a type error, as in cel-go).
// Pure and thread-safe.

#include <string>
#include <utility>
#include <vector>

#include "cel/ast.h"

namespace omni_proxmox::cel {

// A static CEL type. kParam appears only in overload signatures.
struct Type {
  enum class Kind { kDyn, kNull, kBool, kInt, kUint, kDouble, kString, kBytes, kList, kMap, kType, kError, kParam };

  Kind kind = Kind::kDyn;
  std::vector<Type> params;  // list: elem; map: key, value; type: the denoted type
  std::string name;          // kParam only

  static Type Dyn() { return Type{}; }
  static Type Of(Kind k) { return Type{k, {}, {}}; }
  static Type Bool() { return Of(Kind::kBool); }
  static Type Int() { return Of(Kind::kInt); }
  static Type Uint() { return Of(Kind::kUint); }
  static Type Double() { return Of(Kind::kDouble); }
  static Type String() { return Of(Kind::kString); }
  static Type Bytes() { return Of(Kind::kBytes); }
  static Type Null() { return Of(Kind::kNull); }
  static Type List(Type elem) { return Type{Kind::kList, {std::move(elem)}, {}}; }
  static Type Map(Type key, Type value) { return Type{Kind::kMap, {std::move(key), std::move(value)}, {}}; }
  static Type TypeOf(Type t) { return Type{Kind::kType, {std::move(t)}, {}}; }
  static Type Param(std::string n) { return Type{Kind::kParam, {}, std::move(n)}; }

  // cel-go's spelling: "int", "list(string)", "map(string, int)", "type(int)", "null", "dyn".
  std::string ToString() const;
  bool operator==(const Type& other) const { return ToString() == other.ToString(); }
};

struct CheckOptions {
  // cel-go's cel.CrossTypeNumericComparisons: allows `uint > int` etc. at check time. Off, as in the Go provider.
  bool cross_type_numeric_comparisons = false;
  // lowerAscii, upperAscii, trim, split, join, replace, indexOf, lastIndexOf, substring, charAt, reverse.
  bool string_extensions = false;
};

struct VariableDecl {
  std::string name;
  Type type;
};

struct CheckResult {
  Type type;                  // the type of the whole expression
  std::vector<Issue> issues;  // empty when the expression is well typed
};

CheckResult Check(const Expr& expr, const std::vector<VariableDecl>& variables, const CheckOptions& options);

// True when `name` is a function the checker knows (as a global or a receiver function).
bool IsKnownFunction(const std::string& name, const CheckOptions& options);

}  // namespace omni_proxmox::cel
