#include <cerrno>

#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int h, Half(x));
  ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

absl::Status CheckEven(int x) {
  RETURN_IF_ERROR(Half(x).status());
  return absl::OkStatus();
}

TEST(StatusMacros, PropagateErrorsAndValues) {
  EXPECT_THAT(Quarter(8), IsOk());
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_THAT(Quarter(6), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("odd")));
  EXPECT_THAT(CheckEven(3), Not(IsOk()));
  EXPECT_OK(CheckEven(4));
  ASSERT_OK_AND_ASSIGN(int q, Quarter(16));
  EXPECT_EQ(q, 4);
}

TEST(PosixError, NamesOperationArgumentAndErrno) {
  EXPECT_THAT(PosixError(ENOENT, "mount cgroup2", "/sys/fs/cgroup"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("mount cgroup2 /sys/fs/cgroup: No such file or directory [errno 2]")));
  EXPECT_THAT(PosixError(EEXIST, "mkdir", "/x"), StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("[errno 17]")));
  EXPECT_THAT(PosixError(EPERM, "reboot"), StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("reboot: ")));
}

}  // namespace
}  // namespace kiln
