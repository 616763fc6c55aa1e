// SPDX-License-Identifier: Apache-2.0
#pragma once

// CEL's standard library: the built-in functions and operators (arithmetic with overflow checks, equality and
// ordering, `in` and indexing, size, the string tests, `matches` with RE2, the type conversions) and the string
// extensions (charAt, indexOf, lastIndexOf, lowerAscii, upperAscii, replace, split, substring, trim, reverse,
// join), with cel-go's semantics and error texts. Pure and thread-safe. Internal to cel/.

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <string_view>

#include "cel/internal/plan.h"
#include "cel/value.h"

namespace omni_proxmox::cel {

// The built-in a call to `name` resolves to; kUnknown when there is none, or when it is a string extension and
// `string_extensions` is off.
Fn LookupFunction(std::string_view name, bool string_extensions);

// Applies the built-in of call node `call` (its fn, its name in `constant`, its precompiled regex) to `argc`
// evaluated arguments, none of them an error. CEL errors come back as error values.
Value ApplyFunction(const Node& call, const Value* args, std::size_t argc);

// cel-go's "no matching overload for '<fn>' applied to '(<argument types>)'".
Value NoOverload(std::string_view fn, std::initializer_list<const Value*> args);

// Compiles a constant `matches` pattern once, at plan time; null when the pattern is invalid (it then stays a
// runtime error, as in cel-go).
std::shared_ptr<const re2::RE2> CompileConstantPattern(std::string_view pattern);

}  // namespace omni_proxmox::cel
