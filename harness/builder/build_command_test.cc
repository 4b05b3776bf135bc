// File: harness/builder/build_command_test.cc
// The pure parts of //harness:build and PrepareBuild's refusals on real files: every bad input
// the host can tell is refused before a VM boots, with a message naming the input.
#include "harness/builder/build_command.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include "absl/strings/str_cat.h"
#include "agent/runner/dockerfile.h"
#include "agent/runner/spec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars](const std::string& n) -> std::optional<std::string> {
    auto it = vars.find(n);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(ParseSecretFlagTest, FileAndEnvForms) {
  ASSERT_OK_AND_ASSIGN(SecretSource f, ParseSecretFlag("id=tok,src=/run/tok"));
  EXPECT_EQ(f.id, "tok");
  EXPECT_EQ(f.kind, SecretSource::Kind::kFile);
  EXPECT_EQ(f.src, "/run/tok");
  ASSERT_OK_AND_ASSIGN(SecretSource s, ParseSecretFlag("source=/x/y/npm.token,id=npm"));
  EXPECT_EQ(s.src, "/x/y/npm.token");
  ASSERT_OK_AND_ASSIGN(SecretSource b, ParseSecretFlag("src=/x/y/npm.token"));
  EXPECT_EQ(b.id, "npm.token");  // buildx: the basename
  ASSERT_OK_AND_ASSIGN(SecretSource e, ParseSecretFlag("id=gh,env=GH_TOKEN"));
  EXPECT_EQ(e.kind, SecretSource::Kind::kEnv);
  EXPECT_EQ(e.src, "GH_TOKEN");
  ASSERT_OK_AND_ASSIGN(SecretSource te, ParseSecretFlag("id=gh,type=env,src=GH_TOKEN"));
  EXPECT_EQ(te.kind, SecretSource::Kind::kEnv);
  EXPECT_EQ(te.src, "GH_TOKEN");
}

TEST(ParseSecretFlagTest, BadForms) {
  EXPECT_THAT(ParseSecretFlag("id=tok"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                  HasSubstr("no source")));
  EXPECT_THAT(ParseSecretFlag("id=tok,src=/a,env=B"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not both")));
  EXPECT_THAT(ParseSecretFlag("id=tok,path=/a"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown key \"path\"")));
  EXPECT_THAT(ParseSecretFlag("id=$X,src=/a"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(ParseSecretFlag("id=a,type=ssh,src=/a"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("type=ssh")));
}

TEST(ParseBuildArgFlagTest, ValueEnvAndBadKey) {
  ASSERT_OK_AND_ASSIGN(auto a, ParseBuildArgFlag("V=1=2", FakeEnv({})));
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->key, "V");
  EXPECT_EQ(a->value, "1=2");
  ASSERT_OK_AND_ASSIGN(auto e, ParseBuildArgFlag("HOME", FakeEnv({{"HOME", "/root"}})));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->value, "/root");
  ASSERT_OK_AND_ASSIGN(auto unset, ParseBuildArgFlag("NOPE", FakeEnv({})));
  EXPECT_FALSE(unset.has_value());  // docker drops it
  EXPECT_THAT(ParseBuildArgFlag("1X=2", FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an argument name")));
}

TEST(ParseOutputFlagTest, OciDockerAndRefused) {
  ASSERT_OK_AND_ASSIGN(OutputSpec o, ParseOutputFlag("type=oci,dest=/tmp/a.tar"));
  EXPECT_EQ(o.kind, OutputSpec::Kind::kOci);
  EXPECT_EQ(o.dest, "/tmp/a.tar");
  ASSERT_OK_AND_ASSIGN(OutputSpec d, ParseOutputFlag("type=docker"));
  EXPECT_EQ(d.kind, OutputSpec::Kind::kDocker);
  EXPECT_EQ(d.dest, "");
  EXPECT_THAT(ParseOutputFlag("type=oci"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs dest")));
  EXPECT_THAT(ParseOutputFlag("type=registry,name=x"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(ParseOutputFlag("type=local,dest=/tmp/x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not offered")));
}

TEST(SplitBuildArgvTest, RepeatableFlagsKeepCommas) {
  ASSERT_OK_AND_ASSIGN(
      SplitArgv s,
      SplitBuildArgv({"build", "--secret", "id=a,src=/x", "--secret=id=b,env=B", "-f", "D",
                      "-t=app:1", "--build-arg", "K=V", "--no-cache", "--json", "-o",
                      "type=oci,dest=o.tar", "--preload", "p.tar", "ctx"}));
  EXPECT_THAT(s.values["secret"], ElementsAre("id=a,src=/x", "id=b,env=B"));
  EXPECT_THAT(s.values["file"], ElementsAre("D"));
  EXPECT_THAT(s.values["tag"], ElementsAre("app:1"));
  EXPECT_THAT(s.values["build-arg"], ElementsAre("K=V"));
  EXPECT_THAT(s.values["output"], ElementsAre("type=oci,dest=o.tar"));
  EXPECT_THAT(s.values["preload"], ElementsAre("p.tar"));
  EXPECT_THAT(s.rest, ElementsAre("build", "--no_cache", "--json", "ctx"));
  EXPECT_THAT(SplitBuildArgv({"build", "--secret"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs a value")));
}

TEST(ResolveUserPathTest, RelativeToWhereBazelRan) {
  EXPECT_EQ(ResolveUserPath("ctx", "/home/me/src"), "/home/me/src/ctx");
  EXPECT_EQ(ResolveUserPath("/abs/ctx", "/home/me/src"), "/abs/ctx");
  EXPECT_EQ(ResolveUserPath("ctx", ""), "ctx");
  EXPECT_EQ(ResolveUserPath("a/b.tar", "/w/"), "/w/a/b.tar");
}

TEST(NormalizeImageRefTest, DockerFamiliarForm) {
  EXPECT_EQ(NormalizeImageRef("busybox"), "busybox:latest");
  EXPECT_EQ(NormalizeImageRef("docker.io/library/busybox:1.36"), "busybox:1.36");
  EXPECT_EQ(NormalizeImageRef("library/busybox"), "busybox:latest");
  EXPECT_EQ(NormalizeImageRef("docker.io/me/app"), "me/app:latest");
  EXPECT_EQ(NormalizeImageRef("registry:5000/app"), "registry:5000/app:latest");
  EXPECT_EQ(NormalizeImageRef("kiln-busybox:1"), "kiln-busybox:1");
  EXPECT_EQ(NormalizeImageRef("x@sha256:abc"), "x@sha256:abc");
}

TEST(ExpandFromImageTest, Forms) {
  const std::map<std::string, std::string> args = {{"BASE", "alpine"}, {"V", "3"}, {"E", ""}};
  EXPECT_EQ(*ExpandFromImage("${BASE}:$V", args), "alpine:3");
  EXPECT_EQ(*ExpandFromImage("${E:-busybox}", args), "busybox");
  EXPECT_EQ(*ExpandFromImage("x${V:+-slim}", args), "x-slim");
  EXPECT_EQ(*ExpandFromImage("$UNSET", args), "");
  EXPECT_THAT(ExpandFromImage("${BASE/a/b}", args),
              StatusIs(absl::StatusCode::kUnimplemented, ::testing::_));
}

TEST(CheckBasesPreloadedTest, FromNotPreloadedIsRefused) {
  ASSERT_OK_AND_ASSIGN(agent::runner::DockerfileInfo info,
                       agent::runner::ScanDockerfile("ARG BASE=kiln-busybox:1\n"
                                                     "FROM ${BASE} AS build\n"
                                                     "RUN true\n"
                                                     "FROM build AS test\n"
                                                     "FROM scratch\n"
                                                     "COPY --from=build /bin /bin\n"));
  EXPECT_THAT(CheckBasesPreloaded(info, {}, {"kiln-busybox:1"}, ""), IsOk());
  EXPECT_THAT(CheckBasesPreloaded(info, {}, {"docker.io/library/kiln-busybox:1"}, ""), IsOk());
  EXPECT_THAT(CheckBasesPreloaded(info, {}, {"other:1"}, ""),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("Dockerfile line 2: FROM ${BASE} (kiln-busybox:1) is not "
                                 "preloaded: the builder VM has no network")));
  // --build-arg overrides a declared ARG.
  EXPECT_THAT(CheckBasesPreloaded(info, {{"BASE", "alpine:3.19"}}, {"kiln-busybox:1"}, ""),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("alpine:3.19")));
  ASSERT_OK_AND_ASSIGN(agent::runner::DockerfileInfo two,
                       agent::runner::ScanDockerfile("FROM kiln-busybox:1 AS a\n"
                                                     "FROM alpine AS b\n"));
  EXPECT_THAT(CheckBasesPreloaded(two, {}, {"kiln-busybox:1"}, "a"), IsOk());  // b never built
  EXPECT_THAT(CheckBasesPreloaded(two, {}, {"kiln-busybox:1"}, ""),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("FROM alpine is not preloaded")));
}

TEST(ClassifyOutcomeTest, ExitCodes) {
  BuilderRun vm_failed;
  vm_failed.status = absl::AbortedError("guest stuck");
  EXPECT_EQ(ClassifyOutcome(vm_failed, false).first, kBuildExitVm);
  BuilderRun built;
  built.jobs.emplace_back();
  built.jobs[0].result = agent::BuildResult{};
  built.jobs[0].image_path = "/x";
  EXPECT_EQ(ClassifyOutcome(built, false), std::make_pair(kBuildExitOk, std::string("built")));
  EXPECT_EQ(ClassifyOutcome(built, true), std::make_pair(kBuildExitLeak, std::string("built")));
  BuilderRun failed = built;
  failed.jobs[0].result->exit_status = 1;
  failed.jobs[0].image_path.clear();
  EXPECT_EQ(ClassifyOutcome(failed, false), std::make_pair(kBuildExitFailed, std::string("failed")));
  EXPECT_EQ(ClassifyOutcome(failed, true).first, kBuildExitLeak);
  BuilderRun refused;
  refused.jobs.emplace_back();
  refused.jobs[0].refused = absl::InvalidArgumentError("no");
  EXPECT_EQ(ClassifyOutcome(refused, false),
            std::make_pair(kBuildExitFailed, std::string("refused")));
}

TEST(FormatSummaryTest, CleanAndLeak) {
  BuildOutcome o;
  o.exit_code = kBuildExitOk;
  o.result = "built";
  o.digest = "sha256:abcd";
  o.image_bytes = 4096;
  o.tag = "app:1";
  o.leak_scanned = true;
  o.vmm_start_to_ready_ms = 6000;
  o.phases_ms = {{"build", 3000}, {"total", 9000}};
  o.total_ms = 20000;
  o.vm_total_ms = 19000;
  o.vm_id = "kiln-build";
  o.attempts = 1;
  const std::string s = FormatSummary(o);
  EXPECT_THAT(s, HasSubstr("kiln build: built sha256:abcd 4096 bytes, tag app:1; phases: "
                           "boot->ready 6000 ms, build 3000 ms; total 20000 ms (VM kiln-build 19000 ms, "
                           "attempts 1)"));
  EXPECT_THAT(s, HasSubstr("leak scan: clean"));
  o.exit_code = kBuildExitLeak;
  o.leaks = {{"tok", "image", "sha256:1:leaked (raw) bytes [0, 120)"}};
  EXPECT_THAT(FormatSummary(o),
              HasSubstr("leak scan: LEAK: secret tok in image: sha256:1:leaked (raw)"));
  EXPECT_THAT(BuildOutcomeJson(o), HasSubstr("\"leak_scan\":\"leak\""));
  EXPECT_THAT(BuildOutcomeJson(o), HasSubstr("\"exit_code\":3"));
}

// PrepareBuild on real files.
class PrepareBuildTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-buildcmd-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    ctx_ = root_ + "/ctx";
    ASSERT_EQ(mkdir(ctx_.c_str(), 0755), 0);
    Write(ctx_ + "/Dockerfile",
          "FROM kiln-busybox:1\nRUN --mount=type=secret,id=tok sha256sum /run/secrets/tok\n");
    Write(ctx_ + "/app.txt", "hello\n");
    Write(root_ + "/tok", "s3cr3t-value-0123456789");
    // A docker-archive whose manifest.json names kiln-busybox:1 (only what PrepareBuild reads).
    Write(root_ + "/manifest.json", R"([{"Config":"c.json","RepoTags":["kiln-busybox:1"],"Layers":[]}])");
    ASSERT_EQ(std::system(("tar -C " + root_ + " -cf " + root_ + "/base.tar manifest.json").c_str()), 0);
  }
  void TearDown() override { std::system(("rm -rf " + root_).c_str()); }
  static void Write(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
  }
  BuildCommand Good() {
    BuildCommand c;
    c.context = ctx_;
    c.secrets = {{"tok", SecretSource::Kind::kFile, root_ + "/tok"}};
    c.preload = {root_ + "/base.tar"};
    return c;
  }
  std::string root_, ctx_;
};

TEST_F(PrepareBuildTest, GoodInputIsPrepared) {
  ASSERT_OK_AND_ASSIGN(PreparedBuild p, PrepareBuild(Good(), FakeEnv({})));
  EXPECT_EQ(p.secrets.at("tok"), "s3cr3t-value-0123456789");
  ASSERT_EQ(p.preload.size(), 1u);
  EXPECT_THAT(p.preload[0].refs, ElementsAre("kiln-busybox:1"));
  EXPECT_THAT(p.dockerfile_text, HasSubstr("FROM kiln-busybox:1"));
  EXPECT_TRUE(p.env_vars_used.empty());
}

TEST_F(PrepareBuildTest, SecretFromEnvIsRecordedForUnset) {
  BuildCommand c = Good();
  c.secrets = {{"tok", SecretSource::Kind::kEnv, "KILN_TOK"}};
  ASSERT_OK_AND_ASSIGN(PreparedBuild p, PrepareBuild(c, FakeEnv({{"KILN_TOK", "v4lue"}})));
  EXPECT_EQ(p.secrets.at("tok"), "v4lue");
  EXPECT_THAT(p.env_vars_used, ElementsAre("KILN_TOK"));
  EXPECT_THAT(PrepareBuild(c, FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("env=KILN_TOK: the variable is not set")));
}

TEST_F(PrepareBuildTest, MissingContext) {
  BuildCommand c = Good();
  c.context = root_ + "/nope";
  EXPECT_THAT(PrepareBuild(c, FakeEnv({})),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("context")));
  c.context = root_ + "/tok";  // a file
  EXPECT_THAT(PrepareBuild(c, FakeEnv({})),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a directory")));
}

TEST_F(PrepareBuildTest, MissingDockerfile) {
  BuildCommand c = Good();
  c.dockerfile = root_ + "/Dockerfile.missing";
  EXPECT_THAT(PrepareBuild(c, FakeEnv({})),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("Dockerfile.missing")));
  unlink((ctx_ + "/Dockerfile").c_str());
  c.dockerfile.clear();
  EXPECT_THAT(PrepareBuild(c, FakeEnv({})),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("(pass -f FILE)")));
}

TEST_F(PrepareBuildTest, DockerfileOutsideTheContextIsRead) {
  Write(root_ + "/Other.Dockerfile", "FROM kiln-busybox:1\nRUN true\n");
  BuildCommand c = Good();
  c.dockerfile = root_ + "/Other.Dockerfile";
  ASSERT_OK_AND_ASSIGN(PreparedBuild p, PrepareBuild(c, FakeEnv({})));
  EXPECT_EQ(p.dockerfile_text, "FROM kiln-busybox:1\nRUN true\n");
}

TEST_F(PrepareBuildTest, UnreadableSecretFile) {
  BuildCommand c = Good();
  c.secrets[0].src = root_ + "/no-such-token";
  EXPECT_THAT(PrepareBuild(c, FakeEnv({})),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("--secret id=tok")));
  c.secrets[0].src = ctx_;  // a directory
  EXPECT_THAT(PrepareBuild(c, FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a regular file")));
  if (geteuid() != 0) {  // root reads a 0000 file anyway
    chmod((root_ + "/tok").c_str(), 0);
    c.secrets[0].src = root_ + "/tok";
    EXPECT_THAT(PrepareBuild(c, FakeEnv({})),
                StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("--secret id=tok")));
  }
}

TEST_F(PrepareBuildTest, SecretOverTheLimit) {
  Write(root_ + "/big", std::string(agent::runner::kMaxSecretBytes + 1, 'x'));
  BuildCommand c = Good();
  c.secrets[0].src = root_ + "/big";
  absl::StatusOr<PreparedBuild> p = PrepareBuild(c, FakeEnv({}));
  EXPECT_THAT(p, StatusIs(absl::StatusCode::kResourceExhausted,
                          HasSubstr("limit 512000) (BuildKit's limit for one secret)")));
  EXPECT_THAT(std::string(p.status().message()), Not(HasSubstr("xxxxxxxx")));
}

TEST_F(PrepareBuildTest, DuplicateSecretId) {
  BuildCommand c = Good();
  c.secrets.push_back({"tok", SecretSource::Kind::kEnv, "T"});
  EXPECT_THAT(PrepareBuild(c, FakeEnv({{"T", "x"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("id=tok is given twice")));
}

TEST_F(PrepareBuildTest, ContextPathsThatEscape) {
  ASSERT_EQ(symlink("../tok", (ctx_ + "/up").c_str()), 0);
  EXPECT_THAT(PrepareBuild(Good(), FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("context path up -> ../tok escapes the context")));
  unlink((ctx_ + "/up").c_str());
  ASSERT_EQ(mkdir((ctx_ + "/d").c_str(), 0755), 0);
  ASSERT_EQ(symlink("/etc/passwd", (ctx_ + "/d/abs").c_str()), 0);
  EXPECT_THAT(PrepareBuild(Good(), FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("context path d/abs -> /etc/passwd is an absolute symlink")));
  unlink((ctx_ + "/d/abs").c_str());
  ASSERT_EQ(symlink("../app.txt", (ctx_ + "/d/ok").c_str()), 0);  // stays inside
  EXPECT_THAT(PrepareBuild(Good(), FakeEnv({})), IsOk());
  ASSERT_EQ(mkfifo((ctx_ + "/fifo").c_str(), 0644), 0);
  EXPECT_THAT(PrepareBuild(Good(), FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("context entry fifo")));
}

TEST_F(PrepareBuildTest, FromNotPreloaded) {
  BuildCommand c = Good();
  c.preload.clear();
  EXPECT_THAT(PrepareBuild(c, FakeEnv({})),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("FROM kiln-busybox:1 is not preloaded: the builder VM has no "
                                 "network. Save it where it exists (docker save kiln-busybox:1 "
                                 "-o FILE) and pass --preload FILE (preloaded: none)")));
}

TEST_F(PrepareBuildTest, PreloadThatIsNoImage) {
  BuildCommand c = Good();
  c.preload = {root_ + "/tok"};
  EXPECT_THAT(PrepareBuild(c, FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--preload")));
  c.preload = {root_ + "/missing.tar"};
  EXPECT_THAT(PrepareBuild(c, FakeEnv({})), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST_F(PrepareBuildTest, SecretTheDockerfileNeedsButNotSent) {
  BuildCommand c = Good();
  c.secrets.clear();
  EXPECT_THAT(PrepareBuild(c, FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("uses secret(s) the host did not deliver: \"tok\" (line 2)")));
  // An explicit required=false is optional: let through (built without the file).
  Write(ctx_ + "/Dockerfile",
        "FROM kiln-busybox:1\nRUN --mount=type=secret,id=tok,required=false true\n");
  EXPECT_THAT(PrepareBuild(c, FakeEnv({})), IsOk());
}

TEST_F(PrepareBuildTest, SyntaxDirectiveIsRefusedOffline) {
  Write(ctx_ + "/Dockerfile", "# syntax=docker/dockerfile:1.7\nFROM kiln-busybox:1\n");
  EXPECT_THAT(PrepareBuild(Good(), FakeEnv({})),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("syntax")));
}

TEST_F(PrepareBuildTest, OciLayoutDirectoryPreload) {
  const std::string layout = root_ + "/layout";
  ASSERT_EQ(mkdir(layout.c_str(), 0755), 0);
  Write(layout + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  Write(layout + "/index.json",
        R"({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:00","size":1,"annotations":{"io.containerd.image.name":"docker.io/library/kiln-busybox:1","org.opencontainers.image.ref.name":"1"}}]})");
  BuildCommand c = Good();
  c.preload = {layout};
  ASSERT_OK_AND_ASSIGN(PreparedBuild p, PrepareBuild(c, FakeEnv({})));
  EXPECT_TRUE(p.preload[0].is_directory);
  EXPECT_THAT(p.preload[0].refs, ElementsAre("docker.io/library/kiln-busybox:1"));
}

// .dockerignore (harness/builder/dockerignore.h) where the context tar is made: an excluded file is
// never in the tar the builder receives; the Dockerfile and .dockerignore always are.
std::vector<std::string> TarNames(const std::string& tar) {
  std::vector<std::string> names;
  FILE* f = popen(("tar -tf " + tar).c_str(), "r");
  if (f == nullptr) return names;
  char line[4096];
  while (fgets(line, sizeof(line), f) != nullptr) {
    std::string n = line;
    while (!n.empty() && n.back() == '\n') n.pop_back();
    names.push_back(n);
  }
  pclose(f);
  return names;
}

TEST_F(PrepareBuildTest, DockerignoreExcludedSecretsNeverReachTheContextTar) {
  Write(ctx_ + "/.env", "API_KEY=dotenv-secret-value-4242\n");
  ASSERT_EQ(mkdir((ctx_ + "/secrets").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((ctx_ + "/secrets/db").c_str(), 0755), 0);
  Write(ctx_ + "/secrets/db/password", "dir-secret-value-777\n");
  Write(ctx_ + "/NOTES.md", "notes\n");
  Write(ctx_ + "/README.md", "readme\n");
  ASSERT_EQ(mkdir((ctx_ + "/vendor").c_str(), 0755), 0);
  Write(ctx_ + "/vendor/keep.txt", "kept\n");
  Write(ctx_ + "/vendor/other.txt", "other\n");
  // Excluded, so not checked: an escaping link and a FIFO the builder would refuse.
  ASSERT_EQ(mkdir((ctx_ + "/tmp").c_str(), 0755), 0);
  ASSERT_EQ(symlink("/etc/passwd", (ctx_ + "/tmp/abs").c_str()), 0);
  ASSERT_EQ(mkfifo((ctx_ + "/tmp/fifo").c_str(), 0644), 0);
  Write(ctx_ + "/.dockerignore",
        "# secrets stay home\n.env\n/secrets/\n*.md\n!README*.md\ntmp\nvendor\n"
        "!vendor/keep.txt\nDockerfile\n.dockerignore\n");
  ASSERT_OK_AND_ASSIGN(PreparedBuild p, PrepareBuild(Good(), FakeEnv({})));
  std::vector<std::string> listed;
  for (const ContextListing::Entry& e : p.context.entries) listed.push_back(e.path);
  EXPECT_THAT(listed, ElementsAre(".dockerignore", "Dockerfile", "README.md", "app.txt",
                                  "vendor", "vendor/keep.txt"));
  EXPECT_TRUE(p.context.has_dockerignore);
  EXPECT_EQ(p.context.patterns, 9);
  // .env, NOTES.md, secrets, tmp, vendor/other.txt
  EXPECT_EQ(p.context.excluded, 5);
  const std::string tar = root_ + "/context.tar";
  ASSERT_OK_AND_ASSIGN(uint64_t bytes, WriteContextTar(p.context_dir, p.context, tar));
  EXPECT_GT(bytes, 0u);
  EXPECT_THAT(TarNames(tar), ElementsAre(".dockerignore", "Dockerfile", "README.md", "app.txt",
                                         "vendor/", "vendor/keep.txt"));
  std::ifstream in(tar, std::ios::binary);
  const std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(raw.find("dotenv-secret-value-4242"), std::string::npos);
  EXPECT_EQ(raw.find("dir-secret-value-777"), std::string::npos);
  EXPECT_NE(raw.find("readme\n"), std::string::npos);
  // Without the .dockerignore everything is sent, so the FIFO is refused again.
  unlink((ctx_ + "/.dockerignore").c_str());
  EXPECT_THAT(PrepareBuild(Good(), FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("context entry tmp/fifo")));
}

TEST_F(PrepareBuildTest, DockerfileInAnExcludedDirectoryIsStillSent) {
  ASSERT_EQ(mkdir((ctx_ + "/build").c_str(), 0755), 0);
  Write(ctx_ + "/build/Dockerfile", "FROM kiln-busybox:1\n");
  Write(ctx_ + "/build/cache.bin", "x");
  Write(ctx_ + "/.dockerignore", "build\n**/*.txt\n");
  BuildCommand c = Good();
  c.secrets.clear();
  c.dockerfile = ctx_ + "/build/Dockerfile";
  ASSERT_OK_AND_ASSIGN(PreparedBuild p, PrepareBuild(c, FakeEnv({})));
  std::vector<std::string> listed;
  for (const ContextListing::Entry& e : p.context.entries) listed.push_back(e.path);
  EXPECT_THAT(listed, ElementsAre(".dockerignore", "Dockerfile", "build", "build/Dockerfile"));
  EXPECT_EQ(p.context.excluded, 2);  // app.txt, build/cache.bin
}

TEST_F(PrepareBuildTest, BadDockerignorePatternIsRefusedNamingTheLine) {
  Write(ctx_ + "/.dockerignore", "# ok\n[\n");
  EXPECT_THAT(PrepareBuild(Good(), FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("/.dockerignore line 2: bad pattern \"[\": unclosed '['")));
}

TEST_F(PrepareBuildTest, LongNameIsRefusedUnlessExcluded) {
  ASSERT_EQ(mkdir((ctx_ + "/cache").c_str(), 0755), 0);
  const std::string name = "cache/" + std::string(120, 'n');
  Write(ctx_ + "/" + name, "x");
  EXPECT_THAT(PrepareBuild(Good(), FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("context entry name too long (126 bytes")));
  Write(ctx_ + "/.dockerignore", "cache/\n");
  ASSERT_OK_AND_ASSIGN(PreparedBuild p, PrepareBuild(Good(), FakeEnv({})));
  EXPECT_EQ(p.context.excluded, 1);
}

TEST(ApplyWarmFlagsTest, WarmModeAndSnapshotDirReachTheVmOptions) {
  BuilderVmOptions vm;
  EXPECT_EQ(vm.warm, WarmMode::kOff);  // //harness:build's default is verify's: off
  ASSERT_THAT(ApplyWarmFlags("auto", "/var/tmp/snaps", &vm), IsOk());
  EXPECT_EQ(vm.warm, WarmMode::kAuto);
  EXPECT_EQ(vm.snapshot_dir, "/var/tmp/snaps");
  ASSERT_THAT(ApplyWarmFlags("on", "", &vm), IsOk());
  EXPECT_EQ(vm.warm, WarmMode::kOn);
  EXPECT_EQ(vm.snapshot_dir, "");
  ASSERT_THAT(ApplyWarmFlags("off", "", &vm), IsOk());
  EXPECT_EQ(vm.warm, WarmMode::kOff);
  EXPECT_THAT(ApplyWarmFlags("hot", "", &vm),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--warm")));
}

}  // namespace
}  // namespace kiln::harness
