// SPDX-License-Identifier: Apache-2.0
#pragma once

// CEL parser: source text to AST, with the standard macros expanded.
//
// Hand-written recursive descent over the grammar of google/cel-spec langdef §Syntax. It never recurses deeper
// than ParseOptions::max_recursion_depth and refuses sources longer than max_code_points, so hostile input
// cannot exhaust the stack. Pure and thread-safe.

#include <string>
#include <string_view>
#include <vector>

#include "cel/ast.h"

namespace omni_proxmox::cel {

struct ParseOptions {
  int max_recursion_depth = 250;  // cel-go's default
  int max_code_points = 100000;   // cel-go's default
  bool enable_macros = true;
};

struct ParseResult {
  ExprPtr expr;               // null when issues is not empty
  std::vector<Issue> issues;  // parse errors (the parser stops at the first one)
};

ParseResult Parse(std::string_view source, const ParseOptions& options = {});

// Renders issues the way cel-go's ToDisplayString does:
//   ERROR: <input>:1:6: message
//    | source line
//    | .....^
// Several issues are joined with newlines.
std::string FormatIssues(std::string_view source, const std::vector<Issue>& issues);

}  // namespace omni_proxmox::cel
