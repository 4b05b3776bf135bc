// Integration tier: real containerd + dockerd (Debian docker.io 20.10) started by RunBuild in a
// temp dir, on this host. Needs root, cgroups and /usr/sbin/dockerd; when dockerd cannot start
// here the tests are skipped with dockerd's reason (GTEST_SKIP, visible in the test log).
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "agent/runner/base_image.h"
#include "agent/runner/oci_archive.h"
#include "agent/runner/runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace kiln::agent::runner {
namespace {

using ::testing::HasSubstr;

// A value unlikely to occur by chance anywhere in an image or a log.
constexpr char kSecret[] = "kiln-Secr3t-7f1c9a2e-do-not-leak";

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t Count(absl::string_view hay, absl::string_view needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != absl::string_view::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

// ScanTarForSecret: occurrences of `secret` in every entry name, link target and content of
// a tar (any compression), recursing into entries that are tars themselves (layers).
size_t ScanTarForSecret(const std::string& bytes, absl::string_view secret, int depth,
                        std::vector<std::string>* entries_seen) {
  struct archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  archive_read_support_filter_all(a);
  size_t n = 0;
  if (archive_read_open_memory(a, bytes.data(), bytes.size()) == ARCHIVE_OK) {
    struct archive_entry* e;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
      std::string name = archive_entry_pathname(e);
      if (entries_seen != nullptr && depth == 1) entries_seen->push_back(name);
      n += Count(name, secret);
      if (const char* l = archive_entry_symlink(e)) n += Count(l, secret);
      std::string data;
      char buf[65536];
      la_ssize_t r;
      while ((r = archive_read_data(a, buf, sizeof(buf))) > 0) data.append(buf, r);
      n += Count(data, secret);
      if (depth < 3 && data.size() >= 512) n += ScanTarForSecret(data, secret, depth + 1, entries_seen);
    }
  }
  archive_read_free(a);
  return n;
}

class RunnerIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (dockerd)";
    if (access("/usr/sbin/dockerd", X_OK) != 0 || access("/usr/bin/containerd", X_OK) != 0 ||
        access("/usr/bin/docker", X_OK) != 0) {
      GTEST_SKIP() << "needs docker.io and containerd (/usr/sbin/dockerd, /usr/bin/docker)";
    }
    if (access("/bin/busybox", X_OK) != 0) GTEST_SKIP() << "needs busybox-static (/bin/busybox)";
    char w[] = "/var/tmp/kiln-rt-XXXXXX";
    ASSERT_NE(mkdtemp(w), nullptr);
    work_ = w;
    char s[] = "/dev/shm/kiln-rt-sec-XXXXXX";
    ASSERT_NE(mkdtemp(s), nullptr);
    secret_dir_ = s;
    base_image_ = work_ + "/busybox.tar";
    ASSERT_TRUE(WriteBusyboxDockerArchive("/bin/busybox", "kiln-busybox:1", base_image_).ok());
  }

  void TearDown() override {
    if (work_.empty()) return;
    // dockerd unmounts its overlays on a clean stop; lazily unmount anything left over before
    // removing the tree.
    std::ifstream mounts("/proc/mounts");
    std::string line;
    std::vector<std::string> left;
    while (std::getline(mounts, line)) {
      std::vector<std::string> f = absl::StrSplit(line, ' ');
      if (f.size() > 1 && absl::StartsWith(f[1], work_)) left.push_back(f[1]);
    }
    for (auto it = left.rbegin(); it != left.rend(); ++it) {
      std::system(("umount -l '" + *it + "'").c_str());
    }
    std::system(("rm -rf '" + work_ + "' '" + secret_dir_ + "'").c_str());
  }

  // Context: copies examples/<name>/Dockerfile (runfiles are symlinks) into a fresh dir.
  std::string Context(const std::string& name) {
    std::string src = absl::StrCat(getenv("TEST_SRCDIR"), "/", getenv("TEST_WORKSPACE"),
                                   "/agent/runner/examples/", name, "/Dockerfile");
    std::string dir = absl::StrCat(work_, "/ctx-", name);
    mkdir(dir.c_str(), 0755);
    std::ofstream(dir + "/Dockerfile") << ReadAll(src);
    return dir;
  }

  BuildSpec Spec(const std::string& example, const std::string& job) {
    BuildSpec spec;
    spec.context_dir = Context(example);
    spec.work_dir = absl::StrCat(work_, "/", job);
    mkdir(spec.work_dir.c_str(), 0755);
    spec.preload_images = {base_image_};
    spec.tag = "kiln-test/" + example + ":1";
    spec.secret_dir = secret_dir_;
    spec.deadline_ms = 90 * 1000;
    spec.no_cache = true;
    return spec;
  }

  BuildResult Run(const BuildSpec& spec) {
    lines_.clear();
    BuildResult r = RunBuild(spec, [this](absl::string_view l) { lines_.emplace_back(l); });
    std::cerr << "phases ms: validate=" << r.durations_ms.validate
              << " dockerd_start=" << r.durations_ms.dockerd_start
              << " preload=" << r.durations_ms.preload << " build=" << r.durations_ms.build
              << " export=" << r.durations_ms.export_image
              << " teardown=" << r.durations_ms.teardown << " total=" << r.durations_ms.total
              << "\n";
    return r;
  }

  bool DockerdUnavailable(const BuildResult& r) {
    return absl::StartsWith(r.status.message(), "dockerd exited") ||
           absl::StartsWith(r.status.message(), "containerd exited");
  }

  bool SecretDirEmpty() {
    DIR* d = opendir(secret_dir_.c_str());
    if (d == nullptr) return true;
    int n = 0;
    while (struct dirent* de = readdir(d)) {
      if (std::string(de->d_name) != "." && std::string(de->d_name) != "..") ++n;
    }
    closedir(d);
    return n == 0;
  }

  std::string work_, secret_dir_, base_image_;
  std::vector<std::string> lines_;
};

TEST_F(RunnerIntegrationTest, SecretModesVisibleAndNothingLeaks) {
  BuildSpec spec = Spec("secret-modes", "job");
  spec.secrets["build_token"] = kSecret;
  BuildResult r = Run(spec);
  if (DockerdUnavailable(r)) GTEST_SKIP() << "dockerd cannot start here: " << r.error_message;
  ASSERT_TRUE(r.status.ok()) << r.status << "\n" << r.error_message;
  EXPECT_EQ(r.build_exit_code, 0);
  EXPECT_TRUE(absl::StartsWith(r.manifest_digest, "sha256:")) << r.manifest_digest;
  EXPECT_GT(r.image_archive_bytes, 0);
  EXPECT_GT(r.durations_ms.dockerd_start, 0);
  EXPECT_GT(r.durations_ms.build, 0);

  // The secret was visible to each RUN form: its sha256 is printed by all three.
  const std::string want = Sha256Hex(kSecret);
  const std::string log = absl::StrJoin(lines_, "\n");
  EXPECT_THAT(log, HasSubstr(want + "  /run/secrets/build_token"));
  EXPECT_THAT(log, HasSubstr(want + "  /opt/token"));
  EXPECT_THAT(log, HasSubstr(want + "  -"));
  EXPECT_THAT(log, HasSubstr("RUN echo no-secret-step"));
  // The step that prints the secret raw, base64 and hex: all three masked in the live log.
  EXPECT_GE(Count(log, "[REDACTED:build_token]"), 3u) << log;

  // Leak scan: 0 occurrences in every log line and anywhere in the image.
  for (const std::string& l : lines_) EXPECT_FALSE(absl::StrContains(l, kSecret)) << l;
  const std::string archive = ReadAll(r.image_archive_path);
  EXPECT_EQ(Count(archive, kSecret), 0u);
  std::vector<std::string> entries;
  EXPECT_EQ(ScanTarForSecret(archive, kSecret, 1, &entries), 0u);
  EXPECT_THAT(entries, ::testing::Contains("index.json"));
  EXPECT_THAT(entries, ::testing::Contains("oci-layout"));
  // The layer of the no-secret RUN step is there; the digest in index.json matches.
  EXPECT_THAT(archive, HasSubstr("no-secret-step"));
  std::string index = archive.substr(archive.find("{\"manifests\""));
  EXPECT_THAT(index, HasSubstr(r.manifest_digest));
  // The secret files were wiped.
  EXPECT_TRUE(SecretDirEmpty());
}

TEST_F(RunnerIntegrationTest, ReferenceBuildFromContextTar) {
  BuildSpec spec = Spec("reference", "job");
  std::string ctx = spec.context_dir;
  spec.context_dir.clear();
  spec.context_tar = work_ + "/ctx.tar";
  ASSERT_EQ(std::system(("tar -C '" + ctx + "' -cf '" + spec.context_tar + "' .").c_str()), 0);
  spec.secrets["build_token"] = kSecret;
  spec.no_cache = false;
  // The base image is preloaded as an OCI archive written by this runner (it carries a
  // docker-compatible manifest.json, which is what dockerd 20.10's /images/load reads).
  ASSERT_TRUE(ConvertDockerArchiveToOci(base_image_, work_ + "/bb-x", work_ + "/bb.oci.tar",
                                        "kiln-busybox:1")
                  .ok());
  spec.preload_images = {work_ + "/bb.oci.tar"};
  BuildResult r = Run(spec);
  if (DockerdUnavailable(r)) GTEST_SKIP() << "dockerd cannot start here: " << r.error_message;
  ASSERT_TRUE(r.status.ok()) << r.error_message;
  const std::string log = absl::StrJoin(lines_, "\n");
  EXPECT_THAT(log, HasSubstr(Sha256Hex(kSecret) + "  /run/secrets/build_token"));
  EXPECT_THAT(log, HasSubstr("step-one"));
  EXPECT_EQ(Count(ReadAll(r.image_archive_path), kSecret), 0u);
  EXPECT_TRUE(SecretDirEmpty());
}

TEST_F(RunnerIntegrationTest, MissingSecretRefusedBeforeDockerdStarts) {
  BuildSpec spec = Spec("reference", "job");  // uses build_token, not delivered
  spec.secrets["other"] = kSecret;
  BuildResult r = Run(spec);
  EXPECT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument) << r.status;
  EXPECT_THAT(r.error_message, HasSubstr("did not deliver: \"build_token\""));
  EXPECT_EQ(r.durations_ms.dockerd_start, 0);
  EXPECT_NE(access((spec.work_dir + "/dockerd.log").c_str(), F_OK), 0)
      << "dockerd must not have been started";
  EXPECT_TRUE(SecretDirEmpty());
}

TEST_F(RunnerIntegrationTest, FailingRunStepGivesAbortedWithLogTail) {
  BuildSpec spec = Spec("failing", "job");
  BuildResult r = Run(spec);
  if (DockerdUnavailable(r)) GTEST_SKIP() << "dockerd cannot start here: " << r.error_message;
  EXPECT_EQ(r.status.code(), absl::StatusCode::kAborted) << r.status;
  EXPECT_NE(r.build_exit_code, 0);
  EXPECT_TRUE(r.manifest_digest.empty());
  const std::string tail = absl::StrJoin(r.log_tail, "\n");
  EXPECT_THAT(tail, HasSubstr("exit code: 3"));
  EXPECT_THAT(r.error_message, HasSubstr("docker build failed"));
  EXPECT_THAT(r.error_message, HasSubstr("kiln-about-to-fail"));
}

TEST_F(RunnerIntegrationTest, DeadlineKillsTheBuildAndTearsDown) {
  BuildSpec spec = Spec("failing", "job");
  std::ofstream(spec.context_dir + "/Dockerfile") << "FROM kiln-busybox:1\nRUN sleep 60\n";
  spec.deadline_ms = 9000;
  absl::Time start = absl::Now();
  BuildResult r = Run(spec);
  if (DockerdUnavailable(r)) GTEST_SKIP() << "dockerd cannot start here: " << r.error_message;
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDeadlineExceeded) << r.status;
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  std::ifstream pidfile(spec.work_dir + "/run/docker.pid");
  EXPECT_FALSE(pidfile.good()) << "dockerd removes its pidfile on a clean stop";
}

TEST_F(RunnerIntegrationTest, DockerdThatDiesIsReportedWithItsLog) {
  BuildSpec spec = Spec("failing", "job");
  // A "dockerd" that fails the way dockerd does without cgroups.
  std::string fake = work_ + "/fake-dockerd";
  std::ofstream(fake) << "#!/bin/sh\necho 'time=\"x\" level=fatal msg=\"Devices cgroup isn'\"'\"'t "
                         "mounted\"' >&2\nexit 1\n";
  chmod(fake.c_str(), 0755);
  spec.tools.dockerd = fake;
  BuildResult r = Run(spec);
  EXPECT_EQ(r.status.code(), absl::StatusCode::kFailedPrecondition) << r.status;
  EXPECT_THAT(r.error_message, HasSubstr("dockerd exited (exit status 1) before it was ready"));
  EXPECT_THAT(r.error_message, HasSubstr("Devices cgroup isn't mounted"));
}

}  // namespace
}  // namespace kiln::agent::runner
