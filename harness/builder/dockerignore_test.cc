// File: harness/builder/dockerignore_test.cc
// The .dockerignore rules of harness/builder/dockerignore.h, case by case (docker's documented
// examples and moby/patternmatcher's behaviour).
#include "harness/builder/dockerignore.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

Dockerignore Parse(absl::string_view text) {
  absl::StatusOr<Dockerignore> d = ParseDockerignore(text);
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? *d : Dockerignore();
}

TEST(DockerignoreTest, DoubleStarMatchesAnyNumberOfDirectories) {
  Dockerignore d = Parse("**/*.go\n");
  EXPECT_TRUE(d.Excluded("main.go"));
  EXPECT_TRUE(d.Excluded("cmd/x/main.go"));
  EXPECT_FALSE(d.Excluded("main.goo"));
  EXPECT_FALSE(d.Excluded("go.mod"));
  Dockerignore mid = Parse("a/**/b\n");
  EXPECT_TRUE(mid.Excluded("a/b"));
  EXPECT_TRUE(mid.Excluded("a/x/y/b"));
  EXPECT_TRUE(mid.Excluded("a/x/b/c"));  // below a match
  EXPECT_FALSE(mid.Excluded("a/xb"));
  Dockerignore tail = Parse("build/**\n");
  EXPECT_TRUE(tail.Excluded("build/x/y"));
  EXPECT_FALSE(tail.Excluded("build"));
}

TEST(DockerignoreTest, SingleStarStaysInOneDirectory) {
  Dockerignore d = Parse("*.md\n*/temp*\n");
  EXPECT_TRUE(d.Excluded("notes.md"));
  EXPECT_FALSE(d.Excluded("docs/notes.md"));  // `*.md` is the root only
  EXPECT_TRUE(d.Excluded("somedir/temporary.txt"));
  EXPECT_FALSE(d.Excluded("a/b/temporary.txt"));
}

TEST(DockerignoreTest, ExceptionAfterPatternReIncludesLastMatchWins) {
  Dockerignore d = Parse("*.md\n!README*.md\n");
  EXPECT_TRUE(d.Excluded("CHANGES.md"));
  EXPECT_FALSE(d.Excluded("README.md"));
  EXPECT_FALSE(d.Excluded("README-secret.md"));
  EXPECT_TRUE(d.HasExceptions());
  // Docker's example: the order matters, the last match wins.
  Dockerignore later = Parse("*.md\n!README*.md\nREADME-secret.md\n");
  EXPECT_TRUE(later.Excluded("README-secret.md"));
  EXPECT_FALSE(later.Excluded("README.md"));
  Dockerignore first = Parse("!README.md\n*.md\n");
  EXPECT_TRUE(first.Excluded("README.md"));
}

TEST(DockerignoreTest, QuestionMarkIsOneCharacter) {
  Dockerignore d = Parse("temp?\n");
  EXPECT_TRUE(d.Excluded("temp1"));
  EXPECT_TRUE(d.Excluded("tempa/inside"));
  EXPECT_FALSE(d.Excluded("temp"));
  EXPECT_FALSE(d.Excluded("temp12"));
  EXPECT_FALSE(d.Excluded("dir/temp1"));
}

TEST(DockerignoreTest, DirectoryPatternExcludesEverythingBelow) {
  for (const char* text : {"secrets\n", "secrets/\n", "/secrets\n", "./secrets/\n",
                           "secrets//\n", "x/../secrets\n"}) {
    Dockerignore d = Parse(text);
    EXPECT_TRUE(d.Excluded("secrets")) << text;
    EXPECT_TRUE(d.Excluded("secrets/db/password")) << text;
    EXPECT_FALSE(d.Excluded("app/secrets")) << text;
    EXPECT_FALSE(d.Excluded("secrets.txt")) << text;
  }
  // An exception inside an excluded directory re-includes that file.
  Dockerignore keep = Parse("vendor\n!vendor/keep.txt\n");
  EXPECT_TRUE(keep.Excluded("vendor/other"));
  EXPECT_FALSE(keep.Excluded("vendor/keep.txt"));
}

TEST(DockerignoreTest, CommentsBlankLinesAndWhitespace) {
  Dockerignore d = Parse("\xEF\xBB\xBF# a comment\n\n   \n  .env  \r\n#secrets\n ! .env.example\n");
  ASSERT_EQ(d.patterns().size(), 2u);
  EXPECT_EQ(d.patterns()[0].pattern, ".env");
  EXPECT_EQ(d.patterns()[0].line, 4);
  EXPECT_TRUE(d.patterns()[1].exception);
  EXPECT_EQ(d.patterns()[1].pattern, ".env.example");
  EXPECT_TRUE(d.Excluded(".env"));
  EXPECT_FALSE(d.Excluded("#secrets"));  // `#secrets` was a comment, not a pattern
  EXPECT_FALSE(d.Excluded(".env.example"));
  // Only column 1 starts a comment: " #x" is the pattern "#x".
  Dockerignore hash = Parse(" #x\n");
  EXPECT_TRUE(hash.Excluded("#x"));
  EXPECT_TRUE(Parse("").empty());
}

TEST(DockerignoreTest, ClassesAndEscapes) {
  Dockerignore d = Parse("log[0-9].txt\nx[^a-c]\nstar\\*\n");
  EXPECT_TRUE(d.Excluded("log7.txt"));
  EXPECT_FALSE(d.Excluded("logx.txt"));
  EXPECT_TRUE(d.Excluded("xd"));
  EXPECT_FALSE(d.Excluded("xb"));
  EXPECT_TRUE(d.Excluded("star*"));
  EXPECT_FALSE(d.Excluded("starry"));
}

TEST(DockerignoreTest, InvalidPatternIsRefusedNamingTheLine) {
  EXPECT_THAT(ParseDockerignore("ok\n# fine\n[\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(".dockerignore line 3: bad pattern \"[\": unclosed '['")));
  EXPECT_THAT(ParseDockerignore("a[z-a]\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 1")));
  EXPECT_THAT(ParseDockerignore("x\ny\\\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 2")));
  EXPECT_THAT(ParseDockerignore("[]\n"), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(ParseDockerignore("!\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 1")));
}

TEST(DockerignoreTest, CleanSlashPathIsGoPathClean) {
  EXPECT_EQ(CleanSlashPath(""), ".");
  EXPECT_EQ(CleanSlashPath("./a/"), "a");
  EXPECT_EQ(CleanSlashPath("a//b/./c/.."), "a/b");
  EXPECT_EQ(CleanSlashPath("../a"), "../a");
  EXPECT_EQ(CleanSlashPath("/../a"), "/a");
  EXPECT_EQ(CleanSlashPath("/"), "/");
}

}  // namespace
}  // namespace kiln::harness
