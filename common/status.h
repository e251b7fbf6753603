// Status helpers used at every module boundary: absl::Status / absl::StatusOr plus the
// RETURN_IF_ERROR / ASSIGN_OR_RETURN macros absl 20220623 does not ship, and CHECK for invariants.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace strata {

// Debian's absl is built with ABSL_OPTION_USE_STD_STRING_VIEW 0: absl::string_view is not
// std::string_view and absl::StrCat rejects the latter. strata::StrCat accepts both.
inline absl::string_view StrCatArg(std::string_view s) { return {s.data(), s.size()}; }
template <typename T>
const T& StrCatArg(const T& v) {
  return v;
}
template <typename... Args>
std::string StrCat(const Args&... args) {
  return absl::StrCat(StrCatArg(args)...);
}

}  // namespace strata

#define STRATA_CONCAT_INNER(a, b) a##b
#define STRATA_CONCAT(a, b) STRATA_CONCAT_INNER(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                         \
  do {                                                \
    ::absl::Status strata_status_ = (expr);           \
    if (!strata_status_.ok()) return strata_status_;  \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, F());` declares/assigns x from an OK StatusOr, else returns its status.
#define ASSIGN_OR_RETURN(lhs, expr) \
  STRATA_ASSIGN_OR_RETURN_IMPL(STRATA_CONCAT(strata_statusor_, __LINE__), lhs, expr)
#define STRATA_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()

// Invariant checks: a failed CHECK is a bug in Strata, never a reaction to user input.
#define CHECK(cond)                                                                   \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)
#define CHECK_OK(expr)                                                                \
  do {                                                                                \
    ::absl::Status strata_check_status_ = (expr);                                     \
    if (!strata_check_status_.ok()) {                                                 \
      std::fprintf(stderr, "%s:%d: CHECK_OK failed: %s\n", __FILE__, __LINE__,        \
                   strata_check_status_.ToString().c_str());                          \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)
#ifdef NDEBUG
#define DCHECK(cond) \
  do {               \
  } while (0)
#else
#define DCHECK(cond) CHECK(cond)
#endif
