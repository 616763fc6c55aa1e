// SPDX-License-Identifier: Apache-2.0
#pragma once

// Propagation helpers for absl::Status / absl::StatusOr, which abseil does not ship.
//
//   OP_RETURN_IF_ERROR(DoThing());
//   OP_ASSIGN_OR_RETURN(auto value, ComputeValue());

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define OP_STATUS_CONCAT_INNER_(a, b) a##b
#define OP_STATUS_CONCAT_(a, b) OP_STATUS_CONCAT_INNER_(a, b)

#define OP_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::absl::Status op_status_ = (expr);      \
    if (!op_status_.ok()) return op_status_; \
  } while (0)

#define OP_ASSIGN_OR_RETURN(lhs, expr) OP_ASSIGN_OR_RETURN_IMPL_(OP_STATUS_CONCAT_(op_statusor_, __LINE__), lhs, expr)

#define OP_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                              \
  if (!statusor.ok()) return statusor.status();        \
  lhs = std::move(statusor).value()
