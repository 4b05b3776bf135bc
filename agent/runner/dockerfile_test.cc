#include "agent/runner/dockerfile.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::agent::runner {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::FieldsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

TEST(ScanDockerfileTest, FindsSecretMountsInAllForms) {
  const char* text =
      "# escape=\\\n"
      "FROM kiln-busybox:1\n"
      "RUN echo no secret here --mount=type=secret,id=notaflag\n"
      "run --mount=type=secret,id=tok sha256sum /run/secrets/tok\n"
      "RUN --mount=type=cache,target=/c --mount=type=secret,id=b,target=/opt/t,required=true \\\n"
      "    # a comment inside the continuation\n"
      "    cat /opt/t\n"
      "RUN --mount=type=secret,target=/etc/fromtarget cat /etc/fromtarget\n"
      "RUN --mount=\"type=secret,id=q,required\" true\n"
      "RUN --network=none --mount=type=secret,id=x,required=false true\n";
  ASSERT_OK_AND_ASSIGN(DockerfileInfo info, ScanDockerfile(text));
  EXPECT_THAT(info.secret_mounts,
              ElementsAre(FieldsAre("tok", "", false, false, 4),
                          FieldsAre("b", "/opt/t", true, false, 5),
                          FieldsAre("fromtarget", "/etc/fromtarget", false, false, 8),
                          FieldsAre("q", "", true, false, 9), FieldsAre("x", "", false, true, 10)));
  EXPECT_EQ(info.directives.at("escape"), "\\");
}

TEST(ScanDockerfileTest, BacktickEscape) {
  ASSERT_OK_AND_ASSIGN(DockerfileInfo info,
                       ScanDockerfile("# escape=`\nFROM x\nRUN `\n  --mount=type=secret,id=w `\n"
                                      "  true\n"));
  EXPECT_THAT(info.secret_mounts, ElementsAre(FieldsAre("w", "", false, false, 3)));
}

TEST(ScanDockerfileTest, NoSecrets) {
  ASSERT_OK_AND_ASSIGN(DockerfileInfo info, ScanDockerfile("FROM x\nRUN true\n"));
  EXPECT_THAT(info.secret_mounts, IsEmpty());
}

TEST(ScanDockerfileTest, RefusesSyntaxDirective) {
  EXPECT_THAT(ScanDockerfile("# syntax=docker/dockerfile:1.4\nFROM x\n"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("syntax")));
  // After the first instruction it is a plain comment.
  EXPECT_THAT(ScanDockerfile("FROM x\n# syntax=docker/dockerfile:1.4\n"), IsOk());
}

TEST(ScanDockerfileTest, RefusesEnvSecretMount) {
  EXPECT_THAT(ScanDockerfile("FROM x\nRUN --mount=type=secret,id=t,env=T true\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("env=")));
}

TEST(ScanDockerfileTest, RefusesUncheckableIds) {
  EXPECT_THAT(ScanDockerfile("FROM x\nARG ID\nRUN --mount=type=secret,id=$ID true\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 3")));
  EXPECT_THAT(ScanDockerfile("FROM x\nRUN --mount=type=secret true\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("neither id")));
  EXPECT_THAT(ScanDockerfile(std::string("FROM x\0", 7)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NUL")));
  EXPECT_THAT(ScanDockerfile(std::string(kMaxDockerfileBytes + 1, '#')),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(CheckSecretsDeliveredTest, MissingSecretIsRefused) {
  ASSERT_OK_AND_ASSIGN(DockerfileInfo info,
                       ScanDockerfile("FROM x\nRUN --mount=type=secret,id=a true\n"
                                      "RUN --mount=type=secret,id=b true\n"
                                      "RUN --mount=type=secret,id=b true\n"));
  EXPECT_THAT(CheckSecretsDelivered(info, {{"a", "1"}, {"b", "2"}}), IsOk());
  EXPECT_THAT(CheckSecretsDelivered(info, {{"a", "1"}, {"extra", "3"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"b\" (line 3)")));
  EXPECT_THAT(CheckSecretsDelivered(info, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"a\" (line 2)")));
}

// required= as BuildKit reads it (strconv.ParseBool; a bare `required` is true).
TEST(ScanDockerfileTest, RequiredValuesAsBuildKitParsesThem) {
  for (const char* v : {"1", "t", "T", "TRUE", "true", "True"}) {
    SCOPED_TRACE(v);
    ASSERT_OK_AND_ASSIGN(DockerfileInfo info,
                         ScanDockerfile(absl::StrCat("FROM x\nRUN --mount=type=secret,id=s,required=",
                                                     v, " true\n")));
    EXPECT_THAT(info.secret_mounts, ElementsAre(FieldsAre("s", "", true, false, 2)));
  }
  for (const char* v : {"0", "f", "F", "FALSE", "false", "False"}) {
    SCOPED_TRACE(v);
    ASSERT_OK_AND_ASSIGN(DockerfileInfo info,
                         ScanDockerfile(absl::StrCat("FROM x\nRUN --mount=type=secret,id=s,required=",
                                                     v, " true\n")));
    EXPECT_THAT(info.secret_mounts, ElementsAre(FieldsAre("s", "", false, true, 2)));
  }
  EXPECT_THAT(ScanDockerfile("FROM x\nRUN --mount=type=secret,id=s,required=maybe true\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("line 2: secret mount option required=\"maybe\" is not a boolean")));
}

// Issue 18 item 4: an explicit required=false is "optional" (BuildKit builds without the file);
// a mount with no required= option still fails closed (kiln's deliberate difference).
TEST(CheckSecretsDeliveredTest, ExplicitRequiredFalseIsOptional) {
  ASSERT_OK_AND_ASSIGN(DockerfileInfo info,
                       ScanDockerfile("FROM x\n"
                                      "RUN --mount=type=secret,id=opt,required=false true\n"
                                      "RUN --mount=type=secret,id=opt,required=false,target=/o true\n"
                                      "RUN --mount=type=secret,id=tok true\n"));
  EXPECT_THAT(CheckSecretsDelivered(info, {{"tok", "v"}}), IsOk());
  EXPECT_THAT(OptionalSecretsAbsent(info, {{"tok", "v"}}),
              ElementsAre(FieldsAre("opt", "", false, true, 2)));
  EXPECT_EQ(AbsentSecretLogLine(OptionalSecretsAbsent(info, {{"tok", "v"}})[0]),
            "[kiln-runner] optional secret \"opt\" (line 2, required=false) was not sent: the "
            "step runs without /run/secrets/opt");
  EXPECT_THAT(OptionalSecretsAbsent(info, {{"tok", "v"}, {"opt", "w"}}), IsEmpty());
  // No required= option: refused when not sent (BuildKit would build without the file).
  EXPECT_THAT(CheckSecretsDelivered(info, {{"opt", "w"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("did not deliver: \"tok\" (line 4)")));
  // The same id optional in one step and plain in another: the plain one needs it.
  ASSERT_OK_AND_ASSIGN(DockerfileInfo mixed,
                       ScanDockerfile("FROM x\n"
                                      "RUN --mount=type=secret,id=s,required=false true\n"
                                      "RUN --mount=type=secret,id=s true\n"));
  EXPECT_THAT(CheckSecretsDelivered(mixed, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"s\" (line 3)")));
}

TEST(ScanDockerfileTest, FromsStagesAndGlobalArgs) {
  ASSERT_OK_AND_ASSIGN(
      DockerfileInfo info,
      ScanDockerfile("ARG BASE=kiln-busybox:1 OTHER\n"
                     "ARG \"Q=a b\"\n"
                     "FROM --platform=linux/amd64 ${BASE} AS Build\n"
                     "ARG LATE=x\n"
                     "RUN true\n"
                     "from build as final\n"
                     "FROM scratch\n"));
  EXPECT_THAT(info.froms, ElementsAre(FieldsAre("${BASE}", "build", 3), FieldsAre("build", "final", 6),
                                      FieldsAre("scratch", "", 7)));
  EXPECT_EQ(info.global_args.size(), 3u);
  EXPECT_EQ(info.global_args.at("BASE"), "kiln-busybox:1");
  EXPECT_EQ(info.global_args.at("OTHER"), "");
  EXPECT_EQ(info.global_args.at("Q"), "a b");
}

class ReadDockerfileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-df-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    ASSERT_EQ(mkdir((root_ + "/ctx").c_str(), 0755), 0);
    std::ofstream(root_ + "/ctx/Dockerfile") << "FROM x\n";
    std::ofstream(root_ + "/outside") << "FROM evil\n";
    ASSERT_EQ(symlink("../outside", (root_ + "/ctx/escape").c_str()), 0);
    ASSERT_EQ(symlink("Dockerfile", (root_ + "/ctx/inside").c_str()), 0);
  }
  void TearDown() override { std::system(("rm -rf " + root_).c_str()); }
  std::string root_;
};

TEST_F(ReadDockerfileTest, ReadsInsideRefusesEscape) {
  ASSERT_OK_AND_ASSIGN(std::string text, ReadDockerfileInContext(root_ + "/ctx", "Dockerfile"));
  EXPECT_EQ(text, "FROM x\n");
  ASSERT_OK_AND_ASSIGN(text, ReadDockerfileInContext(root_ + "/ctx", "inside"));
  EXPECT_EQ(text, "FROM x\n");
  EXPECT_THAT(ReadDockerfileInContext(root_ + "/ctx", "escape"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("outside the context")));
  EXPECT_THAT(ReadDockerfileInContext(root_ + "/ctx", "missing"),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(ReadDockerfileInContext(root_ + "/ctx", "../outside"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

}  // namespace
}  // namespace kiln::agent::runner
