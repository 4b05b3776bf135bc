// File: agent/fresh_machine_test.cc
// The fresh-machine input text (host -> agent) round trip and every malformed case.
#include "agent/fresh_machine.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::agent {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

TEST(FreshMachineInputTest, RoundTrip) {
  const std::string seed(64, '\xab');
  const std::string text = FormatFreshMachineInput(1764900000123456789, seed);
  std::string hex;
  for (int i = 0; i < 64; ++i) hex += "ab";
  EXPECT_EQ(text, "kiln-fresh-machine 1\nunix_ns=1764900000123456789\nseed=" + hex + "\n");
  ASSERT_OK_AND_ASSIGN(FreshMachineInput in, ParseFreshMachineInput(text));
  EXPECT_EQ(in.unix_ns, 1764900000123456789);
  EXPECT_EQ(in.seed, seed);
}

TEST(FreshMachineInputTest, MalformedInputIsRefusedNamingTheLine) {
  const std::string hex32(64, 'a');
  struct Case {
    const char* name;
    std::string text;
    const char* message;
  } cases[] = {
      {"empty", "", "expected 3 lines"},
      {"header", "kiln-fresh-machine 2\nunix_ns=1\nseed=" + hex32, "first line"},
      {"order", "kiln-fresh-machine 1\nseed=" + hex32 + "\nunix_ns=1", "line 2"},
      {"negative", "kiln-fresh-machine 1\nunix_ns=-5\nseed=" + hex32, "line 2"},
      {"zero", "kiln-fresh-machine 1\nunix_ns=0\nseed=" + hex32, "line 2"},
      {"plus", "kiln-fresh-machine 1\nunix_ns=+5\nseed=" + hex32, "line 2"},
      {"upper hex", "kiln-fresh-machine 1\nunix_ns=5\nseed=" + std::string(64, 'A'), "line 3"},
      {"odd hex", "kiln-fresh-machine 1\nunix_ns=5\nseed=" + std::string(63, 'a'), "line 3"},
      {"short seed", "kiln-fresh-machine 1\nunix_ns=5\nseed=" + std::string(62, 'a'),
       "31 bytes"},
      {"long seed", "kiln-fresh-machine 1\nunix_ns=5\nseed=" + std::string(1026, 'a'),
       "513 bytes"},
      {"extra line", "kiln-fresh-machine 1\nunix_ns=5\nseed=" + hex32 + "\nx=1\n",
       "expected 3 lines"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(ParseFreshMachineInput(c.text),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)));
  }
}

TEST(ProcessAgeTest, ReadsStarttimeAfterTheCommEvenWithSpacesAndParens) {
  // A real /proc/self/stat line (Linux 6.1), comm "kiln) agent": starttime (field 22) = 500.
  const std::string stat =
      "1234 (kiln) agent) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 500 "
      "12345678 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
  ASSERT_OK_AND_ASSIGN(int64_t age, ProcessAgeNs(stat, 5250000000, 100));
  EXPECT_EQ(age, 250000000);  // 5.25 s of boottime - 500 ticks of 10 ms
  ASSERT_OK_AND_ASSIGN(age, ProcessAgeNs(stat, 1, 100));
  EXPECT_EQ(age, 0);  // never negative
  EXPECT_THAT(ProcessAgeNs("1234 kiln S 1", 1, 100),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("comm")));
  EXPECT_THAT(ProcessAgeNs("1234 (kiln) S 1 2 3", 1, 100),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("field 22")));
}

}  // namespace
}  // namespace kiln::agent
