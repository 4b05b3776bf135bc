// File: third_party/absl_ext/status_macros.h
// -----------------------------------------------------------------------------
//
// RETURN_IF_ERROR and ASSIGN_OR_RETURN, which abseil added after 20220623 (kiln's pin, from
// Debian). Semantics follow the later absl/status/status_macros.h, without the message
// builder.
//
// Example:
//
//   absl::StatusOr<MountPlan> BuildPlan(absl::string_view cmdline) {
//     ASSIGN_OR_RETURN(Config config, ParseCmdline(cmdline));
//     RETURN_IF_ERROR(config.Validate());
//     return MountPlanFor(config);
//   }
#ifndef KILN_THIRD_PARTY_ABSL_EXT_STATUS_MACROS_H_
#define KILN_THIRD_PARTY_ABSL_EXT_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// RETURN_IF_ERROR(expr): evaluates `expr` (an absl::Status); returns it if not ok.
#define RETURN_IF_ERROR(expr)                                         \
  do {                                                                \
    ::absl::Status kiln_status_macro_status_ = (expr);                \
    if (!kiln_status_macro_status_.ok()) return kiln_status_macro_status_; \
  } while (0)

#define KILN_STATUS_MACROS_CONCAT_INNER_(x, y) x##y
#define KILN_STATUS_MACROS_CONCAT_(x, y) KILN_STATUS_MACROS_CONCAT_INNER_(x, y)

// ASSIGN_OR_RETURN(lhs, expr): evaluates `expr` (an absl::StatusOr<T>); returns its status if
// not ok, else move-assigns its value to `lhs` (which may be a declaration).
#define ASSIGN_OR_RETURN(lhs, expr) \
  KILN_ASSIGN_OR_RETURN_IMPL_(KILN_STATUS_MACROS_CONCAT_(kiln_statusor_, __LINE__), lhs, expr)

#define KILN_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // KILN_THIRD_PARTY_ABSL_EXT_STATUS_MACROS_H_
