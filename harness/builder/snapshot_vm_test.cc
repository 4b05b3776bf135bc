// File: harness/builder/snapshot_vm_test.cc
// VM tests of the warm builders (issue 12, QEMU; tag `vm`): real builder VMs saved to and
// restored from a snapshot (harness/vmm/snapshot.h, harness/vmm/snapshot_qmp.h, BuilderVmOptions::warm).
//
//   WarmBuild.ReferenceGroupPassesWarmAndLeavesNoSecretInTheSnapshot
//       the builder-reference group (a secret build; its checks: image, logs, leak scans) with
//       --warm=on: the first run makes the snapshot and restores from it, the second restores
//       from the cached one; both pass every check of the group. The secret is what users
//       hold: a random token of 58-200 bytes. Then every snapshot file (state, key.txt and, in
//       --snapshot_ram=file mode, the guest RAM file `ram`, which the restored VMs mapped
//       copy-on-write) holds 0 occurrences of it in any form the leak scan knows (raw,
//       base64, hex, JSON-escaped; its literal base64 and hex are also counted on their own),
//       and no restored VM wrote to the snapshot: the state file and the RAM file keep their
//       sha256, size on disk and mtime across the second run, and the RAM file is older than
//       key.txt (written after the save, before any restore).
//   WarmBuild.TwoConcurrentRestoredVmsShareTheRamFile
//       two VMs restored from one snapshot, both up at once: QEMU's RSS and PSS of each
//       (/proc/<pid>/smaps_rollup) are printed; in file mode they map the same page cache, so
//       each one's PSS is below its RSS.
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
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "harness/builder/builder_client.h"
#include "harness/builder/builder_scenarios.h"
#include "harness/builder/leak_scan.h"
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
ABSL_FLAG(std::string, snapshot_ram, "file",
          "where warm snapshots keep guest RAM: file (a RAM file mapped copy-on-write on "
          "restore) or stream (in the migration stream)");

namespace kiln::harness {
namespace {

std::string Dirname(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// FileScan: what a file holds of a secret.
struct FileScan {
  int64_t form_hits = 0;                 // ScanFileForSecret: every form, any 16-char window
  std::map<std::string, int64_t> literal;  // "raw"/"base64"/"hex": whole-form occurrences
  uint64_t data_bytes = 0;                 // bytes read (a sparse file's holes are skipped)
  absl::Duration took;
};

// ScanFile(path, secret, literals): every form of the secret (ScanFileForSecret, the host's
// leak scan), and, as a second method that does not share its matcher, each literal form
// counted with a plain search over the file's data extents (SEEK_DATA/SEEK_HOLE: a hole reads
// as zeros and can hold no form of a non-empty secret), a match across two reads included.
FileScan ScanFile(const std::string& path, const std::string& secret,
                  const std::map<std::string, std::string>& literals) {
  FileScan scan;
  for (const auto& [name, needle] : literals) scan.literal[name] = 0;
  const absl::Time t0 = absl::Now();
  absl::StatusOr<LeakReport> forms = ScanFileForSecret(path, secret);
  EXPECT_TRUE(forms.ok()) << forms.status();
  if (forms.ok()) scan.form_hits = forms->hits;
  if (literals.empty()) {
    scan.took = absl::Now() - t0;
    return scan;
  }
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << path;
  if (fd < 0) return scan;
  const off_t size = lseek(fd, 0, SEEK_END);
  std::string buf(4 << 20, '\0');
  off_t pos = 0;
  while (pos < size) {
    off_t data = lseek(fd, pos, SEEK_DATA);
    if (data < 0) break;  // only a hole is left
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) hole = size;
    std::map<std::string, std::string> carry;
    for (off_t off = data; off < hole;) {
      const ssize_t n = pread(fd, buf.data(), std::min<off_t>(buf.size(), hole - off), off);
      EXPECT_GT(n, 0) << path;
      if (n <= 0) break;
      const absl::string_view chunk(buf.data(), static_cast<size_t>(n));
      for (const auto& [name, needle] : literals) {
        std::string& c = carry[name];
        std::string window = absl::StrCat(c, chunk.substr(0, needle.size() - 1));
        for (size_t p = window.find(needle); p != std::string::npos; p = window.find(needle, p + 1)) {
          ++scan.literal[name];  // straddles the previous read and this one
        }
        for (size_t p = chunk.find(needle); p != absl::string_view::npos;
             p = chunk.find(needle, p + 1)) {
          ++scan.literal[name];
        }
        c = std::string(chunk.substr(chunk.size() - std::min(chunk.size(), needle.size() - 1)));
      }
      scan.data_bytes += static_cast<uint64_t>(n);
      off += n;
    }
    pos = hole;
  }
  close(fd);
  scan.took = absl::Now() - t0;
  return scan;
}

int64_t SecretHitsInFile(const std::string& path, const std::string& secret) {
  return ScanFile(path, secret, {}).form_hits;
}

// RandomToken(): a secret as users hold them (API tokens, passwords): 58-200 random bytes of
// [A-Za-z0-9_-] (over 57 bytes, so its base64 wraps at 76 columns as `base64` prints it).
std::string RandomToken() {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  unsigned char len_byte = 0;
  urandom.read(reinterpret_cast<char*>(&len_byte), 1);
  std::string raw(58 + len_byte % 143, '\0');
  urandom.read(raw.data(), raw.size());
  for (char& c : raw) c = kAlphabet[static_cast<unsigned char>(c) % 64];
  return raw;
}

std::string Base64(const std::string& in) {
  static constexpr char kB64[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    if (i + 2 < in.size()) v |= static_cast<unsigned char>(in[i + 2]);
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += i + 1 < in.size() ? kB64[(v >> 6) & 63] : '=';
    out += i + 2 < in.size() ? kB64[v & 63] : '=';
  }
  return out;
}

std::string Hex(const std::string& in) {
  std::string out;
  for (unsigned char c : in) absl::StrAppend(&out, absl::Hex(c, absl::kZeroPad2));
  return out;
}

// SnapshotFiles(dir): the files of a snapshot entry that exist: state, ram (file mode), key.txt.
std::vector<std::string> SnapshotFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const char* f : {"state", "ram", "key.txt"}) {
    const std::string p = absl::StrCat(dir, "/", f);
    if (access(p.c_str(), F_OK) == 0) out.push_back(p);
  }
  return out;
}

// FileFacts: what a write would change: contents digest, size on disk, mtime.
struct FileFacts {
  std::string sha256;
  int64_t disk_bytes = 0;
  int64_t mtime_ns = 0;
  std::string ToString() const {
    return absl::StrCat(sha256, " ", disk_bytes, " bytes on disk, mtime ", mtime_ns);
  }
  bool operator==(const FileFacts& o) const {
    return sha256 == o.sha256 && disk_bytes == o.disk_bytes && mtime_ns == o.mtime_ns;
  }
};

FileFacts FactsOf(const std::string& path) {
  FileFacts f;
  struct stat st;
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  f.disk_bytes = static_cast<int64_t>(st.st_blocks) * 512;
  f.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  absl::StatusOr<std::string> sha = oci::Sha256FileDigest(path);
  EXPECT_TRUE(sha.ok()) << sha.status();
  if (sha.ok()) f.sha256 = *sha;
  return f;
}

// SmapsRollup(pid): "Rss"/"Pss"/... of /proc/<pid>/smaps_rollup in kB.
std::map<std::string, int64_t> SmapsRollup(pid_t pid) {
  std::map<std::string, int64_t> out;
  std::ifstream in(absl::StrCat("/proc/", pid, "/smaps_rollup"));
  std::string line;
  while (std::getline(in, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    int64_t kb = 0;
    std::string value(absl::StripSuffix(absl::StripAsciiWhitespace(line.substr(colon + 1)), " kB"));
    if (absl::SimpleAtoi(value, &kb)) out[line.substr(0, colon)] = kb;
  }
  return out;
}

class WarmBuild : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const ProbeArtifacts probe{absl::GetFlag(FLAGS_kernel), absl::GetFlag(FLAGS_initrd)};
    absl::StatusOr<SelectedVmm> vmm =
        MakeTestVmm({.vmm = "qemu", .accel = absl::GetFlag(FLAGS_accel)}, probe);
    ASSERT_TRUE(vmm.ok()) << vmm.status();
    auto* qemu = dynamic_cast<QemuVmm*>(vmm->vmm.get());
    ASSERT_NE(qemu, nullptr);
    absl::StatusOr<SnapshotRam> ram = ParseSnapshotRam(absl::GetFlag(FLAGS_snapshot_ram));
    ASSERT_TRUE(ram.ok()) << ram.status();
    QemuOptions options = qemu->options();  // accel resolved: no second probe boot
    options.snapshot_ram = *ram;
    absl::StatusOr<std::unique_ptr<QemuVmm>> with_ram = QemuVmm::Create(options, probe);
    ASSERT_TRUE(with_ram.ok()) << with_ram.status();
    std::cerr << "harness: snapshot RAM " << (*with_ram)->SnapshotRamMode().reason << "\n";
    vmm_ = with_ram->release();
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
  in_.secret = RandomToken();
  std::cerr << "  secret: a random token of " << in_.secret.size() << " bytes\n";
  std::map<std::string, FileFacts> after_first;  // per snapshot file
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
    std::cerr << "  snapshot RAM: " << g.run.snapshot_ram << "\n";
    const bool file_mode = absl::GetFlag(FLAGS_snapshot_ram) == "file";
    if (file_mode) EXPECT_EQ(g.run.snapshot_ram, "file");
    const std::string dir = absl::StrCat(in_.vm.snapshot_dir, "/", g.run.snapshot_key);
    const std::vector<std::string> files = SnapshotFiles(dir);
    EXPECT_EQ(files.size(), file_mode ? 3u : 2u) << dir;
    const std::map<std::string, std::string> literals = {
        {"raw", in_.secret}, {"base64", Base64(in_.secret)}, {"hex", Hex(in_.secret)}};
    for (const std::string& path : files) {
      if (after_first.count(path) != 0) {
        // Unchanged contents (checked below) were scanned after the first run already.
        const FileFacts facts = FactsOf(path);
        EXPECT_EQ(facts, after_first[path])
            << path << " changed by a restored VM's run: " << after_first[path].ToString()
            << " -> " << facts.ToString();
        std::cerr << "  " << path.substr(dir.size() + 1) << ": " << facts.ToString()
                  << (facts == after_first[path] ? " (unchanged)" : " (CHANGED)") << "\n";
        if (facts == after_first[path]) continue;
      }
      const FileScan scan = ScanFile(path, in_.secret, literals);
      EXPECT_EQ(scan.form_hits, 0) << path;
      int64_t literal_hits = 0;
      for (const auto& [name, n] : scan.literal) {
        EXPECT_EQ(n, 0) << path << ": " << name;
        literal_hits += n;
      }
      const FileFacts facts = FactsOf(path);
      std::cerr << "  " << path.substr(dir.size() + 1) << ": " << facts.ToString() << "; "
                << scan.form_hits << " hits of the secret in any form, "
                << literal_hits
                << " of its raw/base64/hex literals (" << scan.data_bytes << " data bytes in "
                << absl::ToInt64Milliseconds(scan.took) << " ms)\n";
      if (after_first.count(path) == 0) after_first[path] = facts;
    }
    if (file_mode) {
      // The RAM file was last written by the save, before key.txt sealed the entry.
      const FileFacts ram = FactsOf(dir + "/ram"), key = FactsOf(dir + "/key.txt");
      EXPECT_LE(ram.mtime_ns, key.mtime_ns) << "the RAM file was written after the snapshot";
    }
  }
  // The scans find the secret where it is (a control for the 0s above).
  const std::string control = root_ + "/control";
  std::ofstream(control) << "xx" << in_.secret << "yy" << Base64(in_.secret) << "zz"
                         << Hex(in_.secret);
  const FileScan scan = ScanFile(
      control, in_.secret,
      {{"raw", in_.secret}, {"base64", Base64(in_.secret)}, {"hex", Hex(in_.secret)}});
  EXPECT_GT(scan.form_hits, 0);
  for (const char* name : {"raw", "base64", "hex"}) {
    EXPECT_EQ(scan.literal.count(name) ? scan.literal.at(name) : 0, 1) << name;
  }
}

// Two VMs restored from one snapshot, up at once: their QEMU RSS and PSS. In file mode both
// map the snapshot's RAM file (private, copy-on-write): the pages they only read are the same
// page cache pages, counted once between them in PSS.
TEST_F(WarmBuild, TwoConcurrentRestoredVmsShareTheRamFile) {
  BuilderVmOptions o = in_.vm;
  std::vector<std::unique_ptr<BuilderVm>> vms;
  std::vector<BuilderRun> runs(2);
  for (int i = 0; i < 2; ++i) {
    o.id = absl::StrCat("warm-pair-", i);
    absl::StatusOr<std::unique_ptr<BuilderVm>> vm =
        BuilderVm::BootWarm(*factory_, in_.artifacts, o, &runs[i]);
    ASSERT_TRUE(vm.ok()) << vm.status();
    vms.push_back(std::move(*vm));
  }
  // Let both touch their memory a little (a guest command each), then read both at once.
  for (auto& vm : vms) {
    absl::StatusOr<BuilderVm::GuestExec> r =
        vm->Exec({"/bin/sh", "-c", "cat /proc/meminfo | head -3"}, "", absl::Seconds(30));
    ASSERT_TRUE(r.ok()) << r.status();
  }
  int64_t rss_sum = 0, pss_sum = 0;
  for (int i = 0; i < 2; ++i) {
    const std::map<std::string, int64_t> m = SmapsRollup(vms[i]->vm().vmm_pid());
    const auto kb = [&m](const char* k) { return m.count(k) ? m.at(k) : int64_t{-1}; };
    std::cerr << "  warm-pair-" << i << " (" << runs[i].warm << ", RAM " << runs[i].snapshot_ram
              << "): restore to ready " << absl::ToInt64Milliseconds(runs[i].restore_to_ready)
              << " ms; QEMU Rss " << kb("Rss") / 1024 << " MB, Pss " << kb("Pss") / 1024
              << " MB, Shared_Clean " << kb("Shared_Clean") / 1024 << " MB, Private_Dirty "
              << kb("Private_Dirty") / 1024 << " MB, Private_Clean "
              << kb("Private_Clean") / 1024 << " MB\n";
    ASSERT_GT(kb("Rss"), 0);
    rss_sum += kb("Rss");
    pss_sum += kb("Pss");
  }
  std::cerr << "  both: Rss " << rss_sum / 1024 << " MB, Pss " << pss_sum / 1024 << " MB\n";
  if (absl::GetFlag(FLAGS_snapshot_ram) == "file") {
    EXPECT_EQ(runs[1].snapshot_ram, "file");
    EXPECT_LT(pss_sum, rss_sum) << "the two restored VMs share no page of the RAM file";
  }
  for (auto& vm : vms) vm->Shutdown();
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
  for (const std::string& path : SnapshotFiles(dir)) {
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
