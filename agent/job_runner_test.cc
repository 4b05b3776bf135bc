// File: agent/job_runner_test.cc
// The pure mappings between the session and the build runner, and PrepareContext on real
// temporary files (no daemons).
#include "agent/job_runner.h"

#include <stdlib.h>

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "agent/ustar.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::agent {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

BuildJob SampleJob() {
  BuildJob job;
  job.job_id = "job1";
  job.context_stream = 1;
  job.build_args = {{"A", "1"}, {"B", "two"}};
  job.target = "final";
  job.network = NetworkMode::kHost;
  job.secret_ids = {"tok"};
  job.tag = "app:1";
  job.deadline_ms = 5000;
  return job;
}

TEST(JobToSpecTest, MapsEveryField) {
  BuildJob job = SampleJob();
  BuildInputs in;
  in.job = &job;
  in.context_tar = "/run/a/job1/context.tar";
  in.preload_paths = {"/run/a/job1/preload-0.tar"};
  in.secrets = {{"tok", "v"}};
  JobRunnerOptions o;
  o.secret_dir = "/dev/shm/s";
  ASSERT_OK_AND_ASSIGN(runner::BuildSpec spec, JobToSpec(in, "/run/a/job1", o));
  EXPECT_EQ(spec.context_tar, "/run/a/job1/context.tar");
  EXPECT_EQ(spec.context_dir, "");
  EXPECT_EQ(spec.dockerfile, "Dockerfile");
  ASSERT_EQ(spec.build_args.size(), 2u);
  EXPECT_EQ(spec.build_args[1].second, "two");
  EXPECT_EQ(spec.target, "final");
  EXPECT_EQ(spec.network, runner::NetworkMode::kHost);
  EXPECT_EQ(spec.secrets.at("tok"), "v");
  EXPECT_THAT(spec.preload_images, ElementsAre("/run/a/job1/preload-0.tar"));
  EXPECT_EQ(spec.tag, "app:1");
  EXPECT_EQ(spec.deadline_ms, 5000);
  EXPECT_EQ(spec.work_dir, "/run/a/job1/build");
  EXPECT_EQ(spec.secret_dir, "/dev/shm/s");
  EXPECT_THAT(runner::ValidateSpec(spec), IsOk());
}

// The largest secret the protocol delivers (BuildKit's 500 KiB) is one the runner accepts.
TEST(JobToSpecTest, ASecretOfTheProtocolsLimitIsAValidSpec) {
  static_assert(kMaxSecretValue == static_cast<size_t>(runner::kMaxSecretBytes));
  BuildJob job = SampleJob();
  BuildInputs in;
  in.job = &job;
  in.context_tar = "/run/a/job1/context.tar";
  in.secrets = {{"tok", std::string(kMaxSecretValue, 'c')}};
  ASSERT_OK_AND_ASSIGN(runner::BuildSpec spec, JobToSpec(in, "/run/a/job1", {}));
  EXPECT_THAT(runner::ValidateSpec(spec), IsOk());
  spec.secrets["tok"].push_back('c');
  EXPECT_FALSE(runner::ValidateSpec(spec).ok());
}

TEST(JobToSpecTest, DefaultsAndInlineDockerfile) {
  BuildJob job;
  job.job_id = "j";
  job.context_stream = 1;
  job.dockerfile = "FROM x\n";
  job.dockerfile_path = "sub/Dockerfile.k";
  BuildInputs in;
  in.job = &job;
  in.context_tar = "/w/j/context.tar";
  ASSERT_OK_AND_ASSIGN(runner::BuildSpec spec, JobToSpec(in, "/w/j", {}));
  EXPECT_EQ(spec.context_tar, "");
  EXPECT_EQ(spec.context_dir, "/w/j/context");
  EXPECT_EQ(spec.dockerfile, "sub/Dockerfile.k");
  EXPECT_EQ(spec.tag, kDefaultTag);
  EXPECT_EQ(spec.deadline_ms, kDefaultDeadlineMs);
  EXPECT_EQ(spec.network, runner::NetworkMode::kNone);
}

TEST(JobToSpecTest, RefusesDefaultNetworkAndMissingJob) {
  BuildJob job = SampleJob();
  job.network = NetworkMode::kDefault;
  BuildInputs in;
  in.job = &job;
  EXPECT_THAT(JobToSpec(in, "/w", {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--bridge=none")));
  BuildInputs none;
  EXPECT_THAT(JobToSpec(none, "/w", {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("without a job")));
}

TEST(ResultToOutcomeTest, Success) {
  runner::BuildResult r;
  r.status = absl::OkStatus();
  r.build_exit_code = 0;
  r.manifest_digest = "sha256:" + std::string(64, 'a');
  r.image_archive_path = "/w/image.oci.tar";
  r.durations_ms.dockerd_start = 3000;
  r.durations_ms.build = 2000;
  r.durations_ms.export_image = 300;
  r.durations_ms.total = 6000;
  ASSERT_OK_AND_ASSIGN(BuildOutcome o, ResultToOutcome(r));
  EXPECT_EQ(o.exit_status, 0);
  EXPECT_EQ(o.image_digest, r.manifest_digest);
  EXPECT_EQ(o.image_path, "/w/image.oci.tar");
  ASSERT_EQ(o.phases.size(), 7u);
  EXPECT_EQ(o.phases[1], (Phase{"dockerd_start", 3000}));
  EXPECT_EQ(o.phases[4], (Phase{"export", 300}));
  EXPECT_EQ(o.phases[6], (Phase{"total", 6000}));
  // The phases are valid on the wire.
  EXPECT_THAT(Validate(Message(BuildResult{"job1", 0, o.image_digest, 2, o.phases, ""})), IsOk());
}

TEST(ResultToOutcomeTest, ValidationFailureIsARefusal) {
  runner::BuildResult r;
  r.status = absl::FailedPreconditionError("x");
  r.error_message = "the Dockerfile uses secret(s) the host did not deliver: \"tok\" (line 3)";
  r.durations_ms.validate = 2;
  EXPECT_TRUE(Refused(r));
  EXPECT_THAT(ResultToOutcome(r),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("refused before BuildKit ran: the Dockerfile uses secret")));
}

TEST(ResultToOutcomeTest, BuildFailureIsAResultWithTheTail) {
  runner::BuildResult r;
  r.status = absl::AbortedError("docker build exited 1");
  r.build_exit_code = 1;
  r.error_message = "docker build exited 1\n#6 ERROR: process did not complete successfully";
  r.durations_ms.dockerd_start = 3000;
  EXPECT_FALSE(Refused(r));
  ASSERT_OK_AND_ASSIGN(BuildOutcome o, ResultToOutcome(r));
  EXPECT_EQ(o.exit_status, 1);
  EXPECT_THAT(o.error, HasSubstr("ABORTED: docker build exited 1\n#6 ERROR"));
  EXPECT_EQ(o.image_path, "");
}

TEST(ResultToOutcomeTest, DockerdFailureIsAResultWithExitOne) {
  runner::BuildResult r;
  r.status = absl::FailedPreconditionError("dockerd exited");
  r.error_message = "dockerd exited (exit status 1) before it was ready: Devices cgroup isn't "
                    "mounted";
  r.durations_ms.dockerd_start = 2500;
  ASSERT_OK_AND_ASSIGN(BuildOutcome o, ResultToOutcome(r));
  EXPECT_EQ(o.exit_status, 1);
  EXPECT_THAT(o.error, HasSubstr("FAILED_PRECONDITION: dockerd exited"));
}

class PrepareContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = getenv("TEST_TMPDIR");
    std::string templ = std::string(tmp ? tmp : "/tmp") + "/jr-XXXXXX";
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  std::string WriteTar(bool with_escape_link) {
    UstarWriter w;
    const std::string path = dir_ + "/context.tar";
    EXPECT_THAT(w.Open(path), IsOk());
    EXPECT_THAT(w.Bytes("a.txt", "hello"), IsOk());
    EXPECT_THAT(w.Dir("sub"), IsOk());
    if (with_escape_link) {
      EXPECT_THAT(w.Symlink("up", ".."), IsOk());
    }
    EXPECT_THAT(w.Finish(), IsOk());
    return path;
  }
  static std::string Read(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  std::string dir_;
};

TEST_F(PrepareContextTest, TarContextIsLeftToTheRunner) {
  BuildJob job = SampleJob();
  BuildInputs in;
  in.job = &job;
  in.context_tar = WriteTar(false);
  ASSERT_OK_AND_ASSIGN(runner::BuildSpec spec, JobToSpec(in, dir_, {}));
  ASSERT_THAT(PrepareContext(in, &spec, dir_), IsOk());
  EXPECT_EQ(Read(dir_ + "/context/a.txt"), "");  // not extracted here
}

TEST_F(PrepareContextTest, InlineDockerfileIsWrittenIntoTheExtractedContext) {
  BuildJob job = SampleJob();
  job.dockerfile = "FROM kiln-busybox:1\nRUN true\n";
  job.dockerfile_path = "sub/Dockerfile";
  BuildInputs in;
  in.job = &job;
  in.context_tar = WriteTar(false);
  ASSERT_OK_AND_ASSIGN(runner::BuildSpec spec, JobToSpec(in, dir_, {}));
  ASSERT_THAT(PrepareContext(in, &spec, dir_), IsOk());
  EXPECT_EQ(Read(dir_ + "/context/a.txt"), "hello");
  EXPECT_EQ(Read(dir_ + "/context/sub/Dockerfile"), job.dockerfile);
}

TEST_F(PrepareContextTest, InlineDockerfileCannotEscapeThroughAContextSymlink) {
  BuildJob job = SampleJob();
  job.dockerfile = "FROM x\n";
  job.dockerfile_path = "up/Dockerfile";
  BuildInputs in;
  in.job = &job;
  in.context_tar = WriteTar(true);
  ASSERT_OK_AND_ASSIGN(runner::BuildSpec spec, JobToSpec(in, dir_, {}));
  // The context tar itself is refused: its symlink resolves outside the root.
  EXPECT_THAT(PrepareContext(in, &spec, dir_),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("up")));
}

TEST_F(PrepareContextTest, InlineDockerfileWithDotDotIsRefused) {
  BuildJob job = SampleJob();
  job.dockerfile = "FROM x\n";
  job.dockerfile_path = "../Dockerfile";
  BuildInputs in;
  in.job = &job;
  in.context_tar = WriteTar(false);
  ASSERT_OK_AND_ASSIGN(runner::BuildSpec spec, JobToSpec(in, dir_, {}));
  EXPECT_THAT(PrepareContext(in, &spec, dir_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("..")));
}

}  // namespace
}  // namespace kiln::agent

namespace kiln::agent {
namespace {

std::string WarmTestDir(const char* name) {
  const char* tmp = getenv("TEST_TMPDIR");
  return absl::StrCat(tmp ? tmp : "/tmp", "/", name);
}

// A daemon that cannot start is an outcome (exit 1, the error, both phases), not a refusal;
// the daemon's dir is warm_dir, never the job work dir.
TEST(BuildRunnersTest, AWarmUpWhoseDaemonCannotStartIsAFailedOutcome) {
  JobRunnerOptions o;
  o.mode = runner::BuilderMode::kRootful;
  o.tools.containerd = "/nonexistent/containerd";
  o.tools.dockerd = "/nonexistent/dockerd";
  o.warm_dir = WarmTestDir("warm1");
  BuildRunners r = MakeBuildRunners(o);
  WarmUpInputs in;
  in.deadline_ms = 20000;
  ASSERT_OK_AND_ASSIGN(BuildOutcome out, r.warm_up(in));
  EXPECT_EQ(out.exit_status, 1);
  EXPECT_THAT(out.error, HasSubstr("/nonexistent/containerd"));
  ASSERT_EQ(out.phases.size(), 2u);
  EXPECT_EQ(out.phases[0].name, "dockerd_start");
  EXPECT_EQ(out.phases[1].name, "preload");
}

// A warm daemon must hold no job's data: once a job reached the runner, WarmUp is refused.
TEST(BuildRunnersTest, WarmUpAfterAJobIsRefused) {
  JobRunnerOptions o;
  o.mode = runner::BuilderMode::kRootful;
  o.warm_dir = WarmTestDir("warm2");
  BuildRunners r = MakeBuildRunners(o);
  const std::string job_dir = WarmTestDir("job-a");
  ASSERT_EQ(system(absl::StrCat("mkdir -p ", job_dir).c_str()), 0);
  BuildJob job;
  job.job_id = "a";
  job.context_stream = 1;
  BuildInputs bin;
  bin.job = &job;
  bin.context_tar = job_dir + "/context.tar";  // missing: the runner refuses the job
  (void)r.build(bin);
  EXPECT_THAT(r.warm_up(WarmUpInputs{}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("after a BuildJob")));
}

}  // namespace
}  // namespace kiln::agent
