// File: third_party/absl_ext/status_matchers.h
// -----------------------------------------------------------------------------
//
// gMock matchers for absl::Status / absl::StatusOr<T>, which abseil added after 20220623.
//
//   EXPECT_THAT(DoIt(), IsOk());
//   EXPECT_THAT(Parse("x"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad")));
//   ASSERT_OK_AND_ASSIGN(Plan plan, BuildPlan("kiln.cgroup=rw"));
#ifndef KILN_THIRD_PARTY_ABSL_EXT_STATUS_MATCHERS_H_
#define KILN_THIRD_PARTY_ABSL_EXT_STATUS_MATCHERS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln_testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

// IsOk(): matches an ok Status or StatusOr.
MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  if (!s.ok()) *result_listener << "status: " << s.ToString();
  return s.ok();
}

// StatusIs(code, message_matcher): matches a Status/StatusOr with that code and a message
// matching `message_matcher` (default: anything).
MATCHER_P2(StatusIs, code, message_matcher, "") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status: " << s.ToString();
  return s.code() == code &&
         ::testing::Matches(message_matcher)(std::string(s.message()));
}

}  // namespace kiln_testing

#define KILN_MATCHERS_CONCAT_INNER_(x, y) x##y
#define KILN_MATCHERS_CONCAT_(x, y) KILN_MATCHERS_CONCAT_INNER_(x, y)

#define ASSERT_OK(expr) ASSERT_THAT((expr), ::kiln_testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::kiln_testing::IsOk())

// ASSERT_OK_AND_ASSIGN(lhs, expr): asserts `expr` (a StatusOr) is ok and assigns its value.
#define ASSERT_OK_AND_ASSIGN(lhs, expr)                                          \
  auto KILN_MATCHERS_CONCAT_(kiln_sor_, __LINE__) = (expr);                     \
  ASSERT_TRUE(KILN_MATCHERS_CONCAT_(kiln_sor_, __LINE__).ok())                  \
      << KILN_MATCHERS_CONCAT_(kiln_sor_, __LINE__).status().ToString();        \
  lhs = std::move(KILN_MATCHERS_CONCAT_(kiln_sor_, __LINE__)).value()

#endif  // KILN_THIRD_PARTY_ABSL_EXT_STATUS_MATCHERS_H_
