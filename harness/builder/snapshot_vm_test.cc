// File: harness/builder/snapshot_vm_test.cc
// VM tests of the warm builders (issue 12, QEMU; tag `vm`): real builder VMs saved to and
// restored from a snapshot (harness/vmm/snapshot.h, harness/vmm/snapshot_qmp.h, BuilderVmOptions::warm).
//
//   WarmBuild.ReferenceGroupPassesWarmAndLeavesNoSecretInTheSnapshot
//       the builder-reference group (a secret build; its checks: image, logs, leak scans) with
//       --warm=on: the first run makes the snapshot and restores from it, the second restores
//       from the cached one; both pass every check of the group. Then the snapshot files hold
//       0 occurrences of the build's secret in any form agent/secret_forms.h knows (raw, base64,
//       hex, JSON-escaped), and the state file is byte-identical to what was saved before the
//       builds (a restored VM never writes to it).
//   WarmBuild.TwoRestoredVmsAreTwoMachines
//       two VMs restored from one snapshot: 32 bytes of /dev/urandom differ between them, and
//       each one's wall clock is within 1 s of the host's (set by --fresh_machine).
//   WarmBuild.ABrokenSnapshotFallsBackToAColdBoot
//       a truncated state file: the restore fails, the snapshot is removed, the VM boots cold
//       (BuilderRun::warm "cold (fallback: ...)") and its agent answers.
//   WarmBuild.TheSnapshotsDaemonRunsASecretBuild
//       the snapshot holds the BuildKit daemon up with kiln-busybox:1 loaded (the agent's
//       WarmUp); the reference secret build on a restored VM uses that daemon (its log says so,
//       no base image is sent again), reads the secret (its sha256 is in the log) and exports
//       the image; then 0 hits of the secret in the snapshot files.
//   WarmBuild.AFailedBuildOnARestoredVmIsKept
//       keep mode (keep_failed_builders) on a restored VM: the failing example fails, the VM is
//       kept and recorded, its QEMU outlives the factory, and removing it ends it.
//
// Artifacts come from flags, as for builder_vm_test (harness/BUILD _BUILDER_VM_ARGS).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "agent/secret_forms.h"
#include "gtest/gtest.h"
#include "harness/builder/builder_client.h"
#include "harness/builder/builder_scenarios.h"
#include "harness/keep/keep_store.h"
#include "harness/vmm/qemu.h"
#include "harness/vmm/runner.h"
#include "harness/vmm/snapshot.h"
#include "harness/vmm/vm_test_support.h"
#include "images/oci/digest.h"

ABSL_FLAG(std::string, kernel, "", "guest kernel (PVH vmlinux)");
ABSL_FLAG(std::string, initrd, "", "kiln initrd");
ABSL_FLAG(std::string, builder_disk, "", "ext4 builder root disk with the agent");
ABSL_FLAG(std::string, busybox_image, "", "docker-archive of kiln-busybox:1");
ABSL_FLAG(std::string, examples_readme, "", "agent/runner/examples/README.md (locates the dir)");
ABSL_FLAG(std::string, accel, "auto", "QEMU accel: auto, kvm or tcg");

namespace kiln::harness {
namespace {

std::string Dirname(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// SecretHitsInFile(path, secret): hits of every form of `secret` in the file (streamed).
int64_t SecretHitsInFile(const std::string& path, const std::string& secret) {
  agent::SecretForms forms({secret});
  agent::SecretMatcher m(&forms);
  std::vector<agent::SecretHit> hits;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::string buf(1 << 20, '\0');
  while (in) {
    in.read(buf.data(), buf.size());
    m.Feed(absl::string_view(buf.data(), static_cast<size_t>(in.gcount())), &hits);
  }
  return static_cast<int64_t>(hits.size());
}

class WarmBuild : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<SelectedVmm> vmm =
        MakeTestVmm({.vmm = "qemu", .accel = absl::GetFlag(FLAGS_accel)},
                    ProbeArtifacts{absl::GetFlag(FLAGS_kernel), absl::GetFlag(FLAGS_initrd)});
    ASSERT_TRUE(vmm.ok()) << vmm.status();
    vmm_ = vmm->vmm.release();
  }
  static void TearDownTestSuite() {
    delete vmm_;
    vmm_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(vmm_, nullptr);
    root_ = TestTmpRoot();
    factory_ = std::make_unique<VmFactory>(*vmm_, root_ + "/vms", OutputDirFromEnv());
    in_.artifacts = {absl::GetFlag(FLAGS_kernel), absl::GetFlag(FLAGS_initrd),
                     absl::GetFlag(FLAGS_builder_disk)};
    in_.busybox_image = absl::GetFlag(FLAGS_busybox_image);
    in_.examples_dir = Dirname(absl::GetFlag(FLAGS_examples_readme));
    in_.work_dir = root_;
    in_.vm.deadline = absl::Seconds(420);
    in_.vm.warm = WarmMode::kOn;
    in_.vm.snapshot_dir = root_ + "/snapshots";
    in_.vm.on_progress = [](absl::string_view line) { std::cerr << "  " << line << "\n"; };
  }

  static Vmm* vmm_;
  std::string root_;
  std::unique_ptr<VmFactory> factory_;
  BuilderScenarioInputs in_;
};

Vmm* WarmBuild::vmm_ = nullptr;

TEST_F(WarmBuild, ReferenceGroupPassesWarmAndLeavesNoSecretInTheSnapshot) {
  const BuilderGroup* reference = nullptr;
  for (const BuilderGroup& g : BuilderGroups()) {
    if (g.name == "builder-reference") reference = &g;
  }
  ASSERT_NE(reference, nullptr);
  in_.secret = absl::StrCat("kiln-warm-secret-", oci::Sha256Hex(absl::StrCat(absl::ToUnixNanos(absl::Now()), getpid())));
  std::string state_sha_after_first;
  for (const char* expected_warm : {"made+restored", "restored"}) {
    SCOPED_TRACE(expected_warm);
    // A fresh factory per run: the group's VM id is the same both times.
    factory_ = std::make_unique<VmFactory>(*vmm_, absl::StrCat(root_, "/vms-", expected_warm),
                                           OutputDirFromEnv());
    BuilderGroupOutcome g = RunBuilderGroup(*factory_, *reference, in_);
    PrintBuilderGroup(g, std::cerr);
    std::cerr << "  warm: " << g.run.warm << ", restore to ready "
              << absl::ToInt64Milliseconds(g.run.restore_to_ready) << " ms, fresh machine "
              << absl::ToInt64Milliseconds(g.run.fresh_machine) << " ms, snapshot made in "
              << absl::ToInt64Milliseconds(g.run.snapshot_make) << " ms\n";
    EXPECT_EQ(g.run.warm, expected_warm);
    ASSERT_FALSE(g.scenarios.empty());
    for (const ScenarioResult& s : g.scenarios) {
      EXPECT_TRUE(s.status.ok()) << s.name << ": " << s.summary;
    }
    ASSERT_EQ(g.run.snapshot_key.size(), 64u);
    const std::string dir = absl::StrCat(in_.vm.snapshot_dir, "/", g.run.snapshot_key);
    for (const char* file : {"state", "key.txt"}) {
      const std::string path = absl::StrCat(dir, "/", file);
      EXPECT_EQ(SecretHitsInFile(path, in_.secret), 0) << path;
    }
    absl::StatusOr<std::string> sha = oci::Sha256FileDigest(dir + "/state");
    ASSERT_TRUE(sha.ok()) << sha.status();
    if (state_sha_after_first.empty()) {
      state_sha_after_first = *sha;
    } else {
      EXPECT_EQ(*sha, state_sha_after_first) << "the snapshot changed after a warm build";
    }
  }
  // The scan itself finds the secret where it is (a control for the 0 above).
  const std::string control = root_ + "/control";
  std::ofstream(control) << "xx" << in_.secret << "yy";
  EXPECT_GT(SecretHitsInFile(control, in_.secret), 0);
}

TEST_F(WarmBuild, TwoRestoredVmsAreTwoMachines) {
  BuilderVmOptions o = in_.vm;
  o.id = "warm-twin";
  std::vector<std::string> random;
  for (int i = 0; i < 2; ++i) {
    BuilderRun run;
    o.id = absl::StrCat("warm-twin-", i);
    absl::StatusOr<std::unique_ptr<BuilderVm>> vm =
        BuilderVm::BootWarm(*factory_, in_.artifacts, o, &run);
    ASSERT_TRUE(vm.ok()) << vm.status();
    std::cerr << "  " << o.id << ": " << run.warm << ", restore to ready "
              << absl::ToInt64Milliseconds(run.restore_to_ready) << " ms\n";
    const absl::Time host_before = absl::Now();
    absl::StatusOr<BuilderVm::GuestExec> r = (*vm)->Exec(
        {"/bin/sh", "-c", "date +%s.%N; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'"},
        "", absl::Seconds(30));
    const absl::Time host_after = absl::Now();
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->exit_code, 0) << r->err;
    const size_t nl = r->out.find('\n');
    ASSERT_NE(nl, std::string::npos) << r->out;
    double guest_s = 0;
    ASSERT_TRUE(absl::SimpleAtod(r->out.substr(0, nl), &guest_s)) << r->out;
    // The guest read its clock somewhere between host_before and host_after: compare with the
    // midpoint (the Exec round trip under TCG is ~0.2-0.3 s).
    const double host_s =
        absl::ToDoubleSeconds(host_before + (host_after - host_before) / 2 - absl::UnixEpoch());
    std::cerr << "  " << o.id << ": guest clock - host clock = " << (guest_s - host_s)
              << " s (Exec round trip " << absl::ToInt64Milliseconds(host_after - host_before)
              << " ms); random " << r->out.substr(nl + 1) << "\n";
    EXPECT_LT(std::abs(guest_s - host_s), 1.0) << "guest " << r->out << " host " << host_s;
    random.push_back(r->out.substr(nl + 1));
    EXPECT_EQ(random.back().size(), 64u) << r->out;
    (*vm)->Shutdown();
  }
  EXPECT_NE(random[0], random[1]) << "two restored VMs returned the same random bytes";
}

// A snapshot QEMU cannot load (truncated state file): the restore fails, the snapshot is
// removed, and the builder boots cold and says so.
TEST_F(WarmBuild, ABrokenSnapshotFallsBackToAColdBoot) {
  BuilderVmOptions o = in_.vm;
  o.id = "warm-broken-make";
  BuilderRun made;
  {
    absl::StatusOr<std::unique_ptr<BuilderVm>> vm =
        BuilderVm::BootWarm(*factory_, in_.artifacts, o, &made);
    ASSERT_TRUE(vm.ok()) << vm.status();
    (*vm)->Shutdown();
  }
  const std::string state =
      absl::StrCat(in_.vm.snapshot_dir, "/", made.snapshot_key, "/state");
  ASSERT_EQ(truncate(state.c_str(), 4096), 0) << state;
  o.id = "warm-broken";
  BuilderRun run;
  absl::StatusOr<std::unique_ptr<BuilderVm>> vm =
      BuilderVm::BootForRun(*factory_, in_.artifacts, o, &run);
  ASSERT_TRUE(vm.ok()) << vm.status();
  std::cerr << "  " << run.warm << "\n";
  EXPECT_EQ(run.warm.rfind("cold (fallback: ", 0), 0u) << run.warm;
  EXPECT_NE(access(state.c_str(), F_OK), 0) << "the broken snapshot was kept";
  ASSERT_TRUE((*vm)->WaitReady().ok());  // the cold VM serves
  EXPECT_EQ((*vm)->vm().config().restore_from, "");
  (*vm)->Shutdown();
}

// ExampleJob(name, example): the example context as a job, kiln-busybox:1 preloaded.
BuildRequest ExampleJob(const BuilderScenarioInputs& in, const std::string& name,
                        const std::string& example) {
  BuildRequest r;
  r.job_id = name;
  r.context_tar = absl::StrCat(in.work_dir, "/", name, ".context.tar");
  r.image_out = absl::StrCat(in.work_dir, "/", name, ".oci.tar");
  absl::StatusOr<uint64_t> n = WriteDirectoryTar(absl::StrCat(in.examples_dir, "/", example),
                                                 r.context_tar, SymlinkMode::kFollow);
  EXPECT_TRUE(n.ok()) << n.status();
  r.preload = {{"kiln-busybox:1", in.busybox_image}};
  r.tag = absl::StrCat("kiln-test/", name, ":1");
  r.deadline_ms = 300000;
  return r;
}

TEST_F(WarmBuild, TheSnapshotsDaemonRunsASecretBuild) {
  const std::string secret = absl::StrCat(
      "kiln-warm-daemon-", oci::Sha256Hex(absl::StrCat(absl::ToUnixNanos(absl::Now()), getpid())));
  BuildRequest job = ExampleJob(in_, "warm-daemon", "reference");
  job.secrets["build_token"] = secret;
  job.secret_ids = {"build_token"};
  BuilderVmOptions o = in_.vm;
  o.id = "warm-daemon";
  BuilderRun run = RunBuilderJobs(*factory_, in_.artifacts, o, {job});
  ASSERT_TRUE(run.status.ok()) << run.status;
  std::cerr << "  warm: " << run.warm << ", daemon " << run.warm_daemon << " (up in "
            << absl::ToInt64Milliseconds(run.warm_up) << " ms when made), restore to ready "
            << absl::ToInt64Milliseconds(run.restore_to_ready) << " ms, VMM start to result "
            << absl::ToInt64Milliseconds(run.vmm_start_to_first_result) << " ms\n";
  // Restored (made now, or by an earlier case with the same base image: the same key).
  EXPECT_EQ(run.warm.rfind("cold", 0), std::string::npos) << run.warm;
  EXPECT_EQ(run.warm_daemon, "up");
  ASSERT_EQ(run.jobs.size(), 1u);
  const BuildResponse& r = run.jobs[0];
  ASSERT_TRUE(r.result.has_value()) << r.refused;
  const std::string log = r.LogText();
  EXPECT_EQ(r.result->exit_status, 0) << r.result->error << "\n" << log;
  EXPECT_EQ(r.preload_bytes, 0u) << "the base image was sent again";
  EXPECT_TRUE(absl::StrContains(log, "dockerd started before the job (warm")) << log;
  EXPECT_TRUE(absl::StrContains(log, oci::Sha256Hex(secret))) << log;
  EXPECT_FALSE(r.image_path.empty());
  EXPECT_LT(r.PhaseMs("dockerd_start"), 15000) << "the daemon was started again";
  const std::string dir = absl::StrCat(in_.vm.snapshot_dir, "/", run.snapshot_key);
  for (const char* file : {"state", "key.txt"}) {
    const std::string path = absl::StrCat(dir, "/", file);
    EXPECT_EQ(SecretHitsInFile(path, secret), 0) << path;
  }
  std::stringstream key;
  key << std::ifstream(dir + "/key.txt").rdbuf();
  EXPECT_TRUE(absl::StrContains(key.str(), "daemon=up\n")) << key.str();
  EXPECT_TRUE(absl::StrContains(key.str(), "preload=kiln-busybox:1 sha256:")) << key.str();
}

TEST_F(WarmBuild, AFailedBuildOnARestoredVmIsKept) {
  const std::string state_dir = root_ + "/keep-state";
  BuilderVmOptions o = in_.vm;
  o.id = "warm-keep";
  o.keep.keep_failed_builders = true;
  o.keep.state_dir = state_dir;
  BuilderRun run = RunBuilderJobs(*factory_, in_.artifacts, o,
                                  {ExampleJob(in_, "warm-keep", "failing")});
  ASSERT_TRUE(run.status.ok()) << run.status;
  std::cerr << "  warm: " << run.warm << ", kept " << run.kept_id << "\n";
  EXPECT_EQ(run.warm.rfind("cold", 0), std::string::npos) << run.warm;
  ASSERT_EQ(run.jobs.size(), 1u);
  ASSERT_TRUE(run.jobs[0].result.has_value()) << run.jobs[0].refused;
  EXPECT_NE(run.jobs[0].result->exit_status, 0);
  ASSERT_TRUE(run.keep_status.ok()) << run.keep_status;
  ASSERT_EQ(run.kept_id, run.vm_id);
  factory_.reset();  // the factory's teardown must leave the kept VM running
  KeepStore store(state_dir);
  absl::StatusOr<KeepListing> listing = store.List(absl::Now());
  ASSERT_TRUE(listing.ok()) << listing.status();
  ASSERT_EQ(listing->records.size(), 1u);
  const KeepRecord rec = listing->records[0];
  EXPECT_EQ(rec.state, KeepState::kKept);
  EXPECT_EQ(kill(rec.vmm_process.pid, 0), 0) << "the kept restored VM is gone";
  ASSERT_TRUE(store.Remove(rec.id, TeardownOptions{}).ok());
  int status = 0;
  EXPECT_EQ(waitpid(rec.vmm_process.pid, &status, 0), rec.vmm_process.pid);  // our child, ended
}

}  // namespace
}  // namespace kiln::harness

int main(int argc, char** argv) { return kiln::harness::VmTestMain(argc, argv); }
