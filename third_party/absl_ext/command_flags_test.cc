// command_flags_test: ParseCommandFlags over real ABSL_FLAGs: both value forms, repeated
// flags without comma splitting, positional arguments and `--`, booleans in every spelling,
// --help, a flag the command does not take (even a registered one) refused, missing and bad
// values, dashes and aliases, Require, and the generated help.
#include "third_party/absl_ext/command_flags.h"

#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

ABSL_FLAG(std::string, out, "", "output file");
ABSL_FLAG(std::vector<std::string>, m, {}, "a module");
ABSL_FLAG(bool, gzip, false, "compress");
ABSL_FLAG(int64_t, epoch, 7, "seconds");
ABSL_FLAG(std::string, other_cmd_flag, "", "another subcommand's flag");
ABSL_FLAG(bool, dry_run, false, "plan only");
ABSL_FLAG(std::string, cmd_version, "", "the version");

namespace kiln {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

CommandFlagSpec Spec() {
  return {.command = "tool cmd", .flags = {"out", "m", "gzip", "epoch"}, .repeated = {&FLAGS_m}};
}

TEST(CommandFlagsTest, FlagsBothFormsRepeatedAndPositional) {
  absl::FlagSaver saver;
  ASSERT_OK_AND_ASSIGN(
      ParsedCommandFlags p,
      ParseCommandFlags({"--out", "x", "--m=a,b", "pos", "-m", "c", "--", "--m"}, Spec()));
  EXPECT_EQ(absl::GetFlag(FLAGS_out), "x");
  EXPECT_THAT(absl::GetFlag(FLAGS_m), ElementsAre("a,b", "c"));
  EXPECT_THAT(p.positional, ElementsAre("pos", "--m"));
  EXPECT_TRUE(p.Has("out"));
  EXPECT_FALSE(p.Has("epoch"));
  EXPECT_EQ(absl::GetFlag(FLAGS_epoch), 7);
  EXPECT_FALSE(p.help);
}

TEST(CommandFlagsTest, EmptyValueWithEquals) {
  absl::FlagSaver saver;
  absl::SetFlag(&FLAGS_out, "x");
  ASSERT_OK_AND_ASSIGN(ParsedCommandFlags p, ParseCommandFlags({"--out="}, Spec()));
  EXPECT_EQ(absl::GetFlag(FLAGS_out), "");
  EXPECT_OK(p.Require("out"));
}

TEST(CommandFlagsTest, Booleans) {
  for (const auto& [args, want] : std::vector<std::pair<std::vector<std::string>, bool>>{
           {{"--gzip"}, true},         {{"--gzip=false"}, false}, {{"--gzip=true"}, true},
           {{"--gzip", "false"}, false}, {{"--gzip", "true"}, true}, {{"--nogzip"}, false},
           {{"-gzip"}, true}}) {
    SCOPED_TRACE(args[0] + (args.size() > 1 ? " " + args[1] : ""));
    absl::FlagSaver saver;
    absl::SetFlag(&FLAGS_gzip, !want);
    ASSERT_OK_AND_ASSIGN(ParsedCommandFlags p, ParseCommandFlags(args, Spec()));
    EXPECT_EQ(absl::GetFlag(FLAGS_gzip), want);
    EXPECT_THAT(p.positional, IsEmpty());
  }
  absl::FlagSaver saver;
  ASSERT_OK_AND_ASSIGN(ParsedCommandFlags p, ParseCommandFlags({"--gzip", "pos"}, Spec()));
  EXPECT_TRUE(absl::GetFlag(FLAGS_gzip));
  EXPECT_THAT(p.positional, ElementsAre("pos"));
}

TEST(CommandFlagsTest, UnknownFlag) {
  absl::FlagSaver saver;
  EXPECT_THAT(ParseCommandFlags({"--outt", "x"}, Spec()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown argument \"--outt\" (tool cmd takes --out, --m")));
}

TEST(CommandFlagsTest, AnotherCommandsFlagAndAbslBuiltinsAreUnknown) {
  absl::FlagSaver saver;
  for (const char* arg : {"--other_cmd_flag=x", "--flagfile=/dev/null", "--helpfull"}) {
    EXPECT_THAT(ParseCommandFlags({arg}, Spec()),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown argument")))
        << arg;
  }
  EXPECT_EQ(absl::GetFlag(FLAGS_other_cmd_flag), "");
}

TEST(CommandFlagsTest, MissingValue) {
  absl::FlagSaver saver;
  EXPECT_THAT(ParseCommandFlags({"--out"}, Spec()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("flag --out needs a value")));
}

TEST(CommandFlagsTest, BadValueNamesTheFlag) {
  absl::FlagSaver saver;
  EXPECT_THAT(ParseCommandFlags({"--epoch", "soon"}, Spec()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--epoch=soon")));
  EXPECT_THAT(ParseCommandFlags({"--gzip=maybe"}, Spec()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--gzip=maybe")));
  EXPECT_EQ(absl::GetFlag(FLAGS_epoch), 7);
}

TEST(CommandFlagsTest, Require) {
  absl::FlagSaver saver;
  ASSERT_OK_AND_ASSIGN(ParsedCommandFlags p, ParseCommandFlags({}, Spec()));
  EXPECT_THAT(p.Require("out"), StatusIs(absl::StatusCode::kInvalidArgument, "missing --out"));
}

TEST(CommandFlagsTest, HelpAnywhereBeforeDoubleDashWins) {
  absl::FlagSaver saver;
  ASSERT_OK_AND_ASSIGN(ParsedCommandFlags p, ParseCommandFlags({"--bogus", "--help"}, Spec()));
  EXPECT_TRUE(p.help);
  ASSERT_OK_AND_ASSIGN(p, ParseCommandFlags({"-h"}, Spec()));
  EXPECT_TRUE(p.help);
  ASSERT_OK_AND_ASSIGN(p, ParseCommandFlags({"--", "--help"}, Spec()));
  EXPECT_FALSE(p.help);
}

TEST(CommandFlagsTest, DashesAndAliases) {
  absl::FlagSaver saver;
  CommandFlagSpec spec{.command = "publish",
                       .flags = {"cmd_version", "dry_run"},
                       .aliases = {{"version", "cmd_version"}},
                       .dashes = true};
  ASSERT_OK_AND_ASSIGN(ParsedCommandFlags p,
                       ParseCommandFlags({"--version", "1.2.3", "--dry-run"}, spec));
  EXPECT_EQ(absl::GetFlag(FLAGS_cmd_version), "1.2.3");
  EXPECT_TRUE(absl::GetFlag(FLAGS_dry_run));
  EXPECT_TRUE(p.Has("cmd_version"));
  ASSERT_OK_AND_ASSIGN(p, ParseCommandFlags({"--dry_run=false", "--version=2.0.0"}, spec));
  EXPECT_FALSE(absl::GetFlag(FLAGS_dry_run));
  EXPECT_EQ(absl::GetFlag(FLAGS_cmd_version), "2.0.0");
  // The alias target is reachable only through its alias.
  EXPECT_THAT(ParseCommandFlags({"--cmd-version=1"}, spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("publish takes --version, --dry-run")));
  ASSERT_OK_AND_ASSIGN(p, ParseCommandFlags({}, spec));
  EXPECT_THAT(p.Require("cmd_version"),
              StatusIs(absl::StatusCode::kInvalidArgument, "missing --version"));
}

TEST(CommandFlagsTest, ListFlagWithoutHandleIsAProgrammingError) {
  CommandFlagSpec spec{.command = "tool cmd", .flags = {"m"}};
  EXPECT_THAT(ParseCommandFlags({}, spec), StatusIs(absl::StatusCode::kInternal, HasSubstr("spec.repeated")));
  spec.flags = {"no_such_flag"};
  EXPECT_THAT(ParseCommandFlags({}, spec), StatusIs(absl::StatusCode::kInternal, HasSubstr("not a registered")));
}

TEST(CommandFlagsTest, Help) {
  EXPECT_EQ(CommandFlagsHelp(Spec()),
            "  --out=VALUE\n      output file\n"
            "  --m=VALUE\n      a module (repeatable)\n"
            "  --gzip\n      compress (default: false)\n"
            "  --epoch=VALUE\n      seconds (default: 7)\n");
}

}  // namespace
}  // namespace kiln
