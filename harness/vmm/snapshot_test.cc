// File: harness/vmm/snapshot_test.cc
#include "harness/vmm/snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_macros.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::testing::ElementsAre;
using ::kiln_testing::StatusIs;
using ::testing::_;
using ::testing::HasSubstr;

SnapshotKeyInputs Inputs() {
  SnapshotKeyInputs in;
  in.vmm = "qemu";
  in.vmm_version = "7.2.22";
  in.kernel_digest = "sha256:" + std::string(64, 'a');
  in.initrd_digest = "sha256:" + std::string(64, 'b');
  in.disk_digests = {"sha256:" + std::string(64, 'c') + " ro"};
  in.memory_mib = 1024;
  in.vcpus = 2;
  in.devices = "-M q35 -accel tcg,tb-size=256 -device virtio-blk-pci";
  in.cmdline = "kiln.root=/dev/vda kiln.cgroup=rw";
  in.cgroup = "rw";
  in.builder_mode = "rootless";
  return in;
}

std::string TempDir() {
  std::string t = absl::StrCat(::testing::TempDir(), "/snapXXXXXX");
  EXPECT_NE(mkdtemp(t.data()), nullptr);
  return t;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status WriteBytes(const std::string& path, size_t n) {
  std::ofstream out(path, std::ios::binary);
  out << std::string(n, 'x');
  return out ? absl::OkStatus() : absl::InternalError("write " + path);
}

TEST(SnapshotKeyTest, TextIsOneLinePerFieldInFixedOrder) {
  EXPECT_EQ(SnapshotKeyText(Inputs()),
            "format=1\nvmm=qemu\nvmm_version=7.2.22\nkernel=sha256:" + std::string(64, 'a') +
                "\ninitrd=sha256:" + std::string(64, 'b') + "\ndisk=sha256:" +
                std::string(64, 'c') +
                " ro\nmemory_mib=1024\nvcpus=2\ndevices=-M q35 -accel tcg,tb-size=256 -device "
                "virtio-blk-pci\ncmdline=kiln.root=/dev/vda kiln.cgroup=rw\ncgroup=rw\n"
                "builder_mode=rootless\n");
  EXPECT_EQ(SnapshotKey(Inputs()).size(), 64u);
  EXPECT_TRUE(IsSnapshotKey(SnapshotKey(Inputs())));
}

TEST(SnapshotKeyTest, EveryInputChangesTheKey) {
  const std::string base = SnapshotKey(Inputs());
  std::vector<std::pair<const char*, void (*)(SnapshotKeyInputs&)>> changes = {
      {"vmm", [](SnapshotKeyInputs& in) { in.vmm = "cloud-hypervisor"; }},
      {"version", [](SnapshotKeyInputs& in) { in.vmm_version = "8.2.0"; }},
      {"kernel", [](SnapshotKeyInputs& in) { in.kernel_digest.back() = 'f'; }},
      {"initrd", [](SnapshotKeyInputs& in) { in.initrd_digest.back() = 'f'; }},
      {"disk", [](SnapshotKeyInputs& in) { in.disk_digests[0][10] = 'f'; }},
      {"disk rw", [](SnapshotKeyInputs& in) { in.disk_digests[0].back() = 'w'; }},
      {"second disk", [](SnapshotKeyInputs& in) { in.disk_digests.push_back("x ro"); }},
      {"memory", [](SnapshotKeyInputs& in) { in.memory_mib = 2048; }},
      {"vcpus", [](SnapshotKeyInputs& in) { in.vcpus = 1; }},
      {"devices", [](SnapshotKeyInputs& in) { in.devices += " -device vmgenid"; }},
      {"cmdline", [](SnapshotKeyInputs& in) { in.cmdline += " kiln.delegate=1000"; }},
      {"cgroup", [](SnapshotKeyInputs& in) { in.cgroup = "ro"; }},
      {"mode", [](SnapshotKeyInputs& in) { in.builder_mode = "rootful"; }},
      {"preload", [](SnapshotKeyInputs& in) { in.preloaded_images = {"busybox:1 sha256:1"}; }},
      {"daemon up", [](SnapshotKeyInputs& in) { in.daemon = "up"; }},
  };
  for (const auto& [name, change] : changes) {
    SCOPED_TRACE(name);
    SnapshotKeyInputs in = Inputs();
    change(in);
    EXPECT_NE(SnapshotKey(in), base);
  }
}

TEST(SnapshotKeyTest, ValidateNamesTheBadField) {
  SnapshotKeyInputs in = Inputs();
  in.vmm_version.clear();
  EXPECT_THAT(ValidateSnapshotKeyInputs(in),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vmm_version")));
  in = Inputs();
  in.memory_mib = 0;
  EXPECT_THAT(ValidateSnapshotKeyInputs(in), StatusIs(absl::StatusCode::kInvalidArgument, _));
  in = Inputs();
  in.cmdline = "a\nformat=2";  // would forge a line of the key text
  EXPECT_THAT(ValidateSnapshotKeyInputs(in),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("newline")));
  EXPECT_OK(ValidateSnapshotKeyInputs(Inputs()));
}

TEST(LruVictimsTest, OldestFirstUntilUnderTheCapKeepingTheNewOne) {
  std::vector<SnapshotEntryInfo> e = {{"c", 100, 3}, {"a", 100, 1}, {"b", 100, 2}, {"n", 100, 0}};
  EXPECT_THAT(LruVictims(e, 250, "n"), ElementsAre("a", "b"));
  EXPECT_THAT(LruVictims(e, 400, "n"), ElementsAre());
  EXPECT_THAT(LruVictims(e, 0, "n"), ElementsAre("a", "b", "c"));
  EXPECT_THAT(LruVictims(e, 250, "n", {"a"}), ElementsAre("b", "c"));
}

TEST(SnapshotCacheTest, MakesOnceThenFindsItWithModesAndKeyText) {
  const std::string dir = TempDir() + "/cache";
  ASSERT_OK_AND_ASSIGN(SnapshotCache cache, SnapshotCache::Open({.dir = dir}));
  struct stat st;
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700);
  const std::string key = SnapshotKey(Inputs());
  int makes = 0;
  auto make = [&](const std::string& path) {
    ++makes;
    return WriteBytes(path, 1000);
  };
  {
    ASSERT_OK_AND_ASSIGN(SnapshotLease l, cache.GetOrMake(key, SnapshotKeyText(Inputs()), make));
    EXPECT_TRUE(l.made());
    EXPECT_EQ(l.state_path(), absl::StrCat(dir, "/", key, "/state"));
    ASSERT_EQ(stat(l.state_path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600);
    EXPECT_EQ(st.st_size, 1000);
    ASSERT_EQ(stat((l.dir() + "/key.txt").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600);
    EXPECT_EQ(Slurp(l.dir() + "/key.txt"), SnapshotKeyText(Inputs()));
  }
  ASSERT_OK_AND_ASSIGN(SnapshotLease again, cache.GetOrMake(key, "x", make));
  EXPECT_FALSE(again.made());
  EXPECT_EQ(makes, 1);
  ASSERT_OK(cache.Lookup(key).status());
  // A changed input is a different key: made anew.
  SnapshotKeyInputs changed = Inputs();
  changed.memory_mib = 512;
  ASSERT_OK_AND_ASSIGN(SnapshotLease other,
                       cache.GetOrMake(SnapshotKey(changed), SnapshotKeyText(changed), make));
  EXPECT_TRUE(other.made());
  EXPECT_EQ(makes, 2);
}

TEST(SnapshotCacheTest, AFailedMakeLeavesNothing) {
  const std::string dir = TempDir();
  ASSERT_OK_AND_ASSIGN(SnapshotCache cache, SnapshotCache::Open({.dir = dir}));
  const std::string key = SnapshotKey(Inputs());
  auto fail = [](const std::string& path) {
    EXPECT_OK(WriteBytes(path, 10));
    return absl::InternalError("migration failed");
  };
  EXPECT_THAT(cache.GetOrMake(key, "t", fail).status(),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("migration failed")));
  EXPECT_THAT(cache.Lookup(key).status(), StatusIs(absl::StatusCode::kNotFound, _));
  ASSERT_OK_AND_ASSIGN(std::vector<SnapshotEntryInfo> list, cache.List());
  EXPECT_TRUE(list.empty());
  EXPECT_NE(access(absl::StrCat(dir, "/tmp.", key, ".", getpid()).c_str(), F_OK), 0);
}

// A snapshot of several files (Cloud Hypervisor's directory): the maker writes into the entry
// dir; every file is sealed 0600 beside key.txt. A maker that writes nothing, or a
// subdirectory, is refused and leaves nothing; QEMU's GetOrMake still needs its state file.
TEST(SnapshotCacheTest, ADirMakerWritesSeveralFilesIntoTheEntry) {
  const std::string dir = TempDir();
  ASSERT_OK_AND_ASSIGN(SnapshotCache cache, SnapshotCache::Open({.dir = dir}));
  const std::string key = SnapshotKey(Inputs());
  auto make = [](const std::string& entry) -> absl::Status {
    for (const char* f : {"config.json", "state.json", "memory-ranges"}) {
      RETURN_IF_ERROR(WriteBytes(absl::StrCat(entry, "/", f), 100));
      chmod(absl::StrCat(entry, "/", f).c_str(), 0644);
    }
    return absl::OkStatus();
  };
  {
    ASSERT_OK_AND_ASSIGN(SnapshotLease l, cache.GetOrMakeDir(key, "k", make));
    EXPECT_TRUE(l.made());
    EXPECT_EQ(l.dir(), absl::StrCat(dir, "/", key));
    for (const char* f : {"config.json", "state.json", "memory-ranges", "key.txt"}) {
      struct stat st;
      ASSERT_EQ(stat(absl::StrCat(l.dir(), "/", f).c_str(), &st), 0) << f;
      EXPECT_EQ(st.st_mode & 0777, 0600) << f;
    }
    EXPECT_NE(access(l.state_path().c_str(), F_OK), 0);
  }
  ASSERT_OK_AND_ASSIGN(std::vector<SnapshotEntryInfo> list, cache.List());
  ASSERT_EQ(list.size(), 1u);
  // Three files + key.txt ("k"), as blocks on disk (du).
  uint64_t blocks = 0;
  for (const char* f : {"config.json", "state.json", "memory-ranges", "key.txt"}) {
    struct stat st;
    ASSERT_EQ(stat(absl::StrCat(dir, "/", key, "/", f).c_str(), &st), 0) << f;
    blocks += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  EXPECT_EQ(list[0].bytes, blocks);

  SnapshotKeyInputs other = Inputs();
  other.vcpus = 1;
  EXPECT_THAT(cache.GetOrMakeDir(SnapshotKey(other), "k",
                                 [](const std::string&) { return absl::OkStatus(); })
                  .status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("wrote no file")));
  EXPECT_THAT(cache.GetOrMakeDir(SnapshotKey(other), "k",
                                 [](const std::string& e) {
                                   mkdir((e + "/sub").c_str(), 0700);
                                   return absl::OkStatus();
                                 })
                  .status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a regular file")));
  EXPECT_THAT(cache.GetOrMake(SnapshotKey(other), "k",
                              [](const std::string&) { return absl::OkStatus(); })
                  .status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no state file")));
  EXPECT_THAT(cache.Lookup(SnapshotKey(other)).status(), StatusIs(absl::StatusCode::kNotFound, _));
}

// A file-mode QEMU snapshot's RAM file is sparse (1 GiB apparent, the touched pages
// allocated): the cache counts its blocks on disk, as du does, not its apparent size.
TEST(SnapshotCacheTest, SizesCountBlocksOnDiskNotTheApparentSizeOfASparseRamFile) {
  const std::string dir = TempDir();
  ASSERT_OK_AND_ASSIGN(SnapshotCache cache,
                       SnapshotCache::Open({.dir = dir, .max_bytes = uint64_t{64} << 20}));
  ASSERT_OK_AND_ASSIGN(
      SnapshotLease l, cache.GetOrMake(SnapshotKey(Inputs()), "k", [](const std::string& state) {
        RETURN_IF_ERROR(WriteBytes(state, 4096));
        const std::string ram = state.substr(0, state.rfind('/')) + "/ram";
        const int fd = open(ram.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return absl::InternalError("open " + ram);
        const std::string page(1 << 20, 'r');
        // 1 MiB written at 100 MiB into a 1 GiB file.
        const bool ok = ftruncate(fd, off_t{1} << 30) == 0 &&
                        pwrite(fd, page.data(), page.size(), off_t{100} << 20) ==
                            static_cast<ssize_t>(page.size());
        close(fd);
        return ok ? absl::OkStatus() : absl::InternalError("write " + ram);
      }));
  struct stat st;
  ASSERT_EQ(stat(l.ram_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_size, off_t{1} << 30);
  EXPECT_EQ(st.st_mode & 0777, 0600u);  // sealed like the state file
  ASSERT_OK_AND_ASSIGN(std::vector<SnapshotEntryInfo> list, cache.List());
  ASSERT_EQ(list.size(), 1u);
  EXPECT_GE(list[0].bytes, uint64_t{1} << 20);
  EXPECT_LT(list[0].bytes, uint64_t{8} << 20) << "the apparent 1 GiB was counted";
}

TEST(SnapshotKeyTest, RamModeIsItsOwnLineAndChangesTheKey) {
  SnapshotKeyInputs in = Inputs();
  EXPECT_FALSE(absl::StrContains(SnapshotKeyText(in), "ram="));
  in.ram_mode = "file";
  EXPECT_TRUE(absl::EndsWith(SnapshotKeyText(in), "builder_mode=rootless\nram=file\n"));
  SnapshotKeyInputs stream = Inputs();
  stream.ram_mode = "stream";
  EXPECT_NE(SnapshotKey(in), SnapshotKey(stream));
  EXPECT_NE(SnapshotKey(in), SnapshotKey(Inputs()));
  in.ram_mode = "file\n";
  EXPECT_THAT(ValidateSnapshotKeyInputs(in), StatusIs(absl::StatusCode::kInvalidArgument, _));
}

TEST(SnapshotCacheTest, BadKeyAndZeroCapAreRefused) {
  EXPECT_THAT(SnapshotCache::Open({.dir = TempDir(), .max_bytes = 0}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, _));
  ASSERT_OK_AND_ASSIGN(SnapshotCache cache, SnapshotCache::Open({.dir = TempDir()}));
  EXPECT_THAT(cache.GetOrMake("../etc", "t", [](const std::string&) { return absl::OkStatus(); })
                  .status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not 64 hex")));
}

TEST(SnapshotCacheTest, OverTheCapEvictsLeastRecentlyUsedButNotOneInUse) {
  const std::string dir = TempDir();
  auto make = [](const std::string& path) { return WriteBytes(path, 1000); };
  std::vector<std::string> keys;
  for (int i = 0; i < 4; ++i) {
    SnapshotKeyInputs in = Inputs();
    in.memory_mib = 100 + i;
    keys.push_back(SnapshotKey(in));
  }
  std::optional<SnapshotLease> in_use;
  uint64_t entry_bytes = 0;  // one entry on disk (blocks: file system dependent)
  {
    ASSERT_OK_AND_ASSIGN(SnapshotCache first, SnapshotCache::Open({.dir = dir}));
    ASSERT_OK_AND_ASSIGN(SnapshotLease l, first.GetOrMake(keys[0], "k0", make));
    in_use.emplace(std::move(l));  // key 0 stays in use
    ASSERT_OK_AND_ASSIGN(std::vector<SnapshotEntryInfo> one, first.List());
    ASSERT_EQ(one.size(), 1u);
    entry_bytes = one[0].bytes;
    ASSERT_GT(entry_bytes, 0u);
  }
  ASSERT_OK_AND_ASSIGN(SnapshotCache cache,
                       SnapshotCache::Open({.dir = dir, .max_bytes = entry_bytes * 5 / 2}));
  absl::SleepFor(absl::Milliseconds(20));
  ASSERT_OK(cache.GetOrMake(keys[1], "k1", make).status());
  absl::SleepFor(absl::Milliseconds(20));
  // Three entries > 2.5 entries: the oldest (0) is in use, so 1 goes.
  ASSERT_OK(cache.GetOrMake(keys[2], "k2", make).status());
  ASSERT_OK_AND_ASSIGN(std::vector<SnapshotEntryInfo> list, cache.List());
  std::vector<std::string> left;
  for (const auto& e : list) left.push_back(e.key);
  EXPECT_THAT(left, ElementsAre(keys[0], keys[2]));
  in_use.reset();
  absl::SleepFor(absl::Milliseconds(20));
  ASSERT_OK(cache.GetOrMake(keys[3], "k3", make).status());
  ASSERT_OK_AND_ASSIGN(list, cache.List());
  left.clear();
  for (const auto& e : list) left.push_back(e.key);
  EXPECT_THAT(left, ElementsAre(keys[2], keys[3]));
}

TEST(SnapshotCacheTest, ASnapshotLargerThanTheCapIsRefused) {
  ASSERT_OK_AND_ASSIGN(SnapshotCache cache,
                       SnapshotCache::Open({.dir = TempDir(), .max_bytes = 100}));
  EXPECT_THAT(cache
                  .GetOrMake(SnapshotKey(Inputs()), "t",
                             [](const std::string& p) { return WriteBytes(p, 1000); })
                  .status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("cap of 100 bytes")));
  ASSERT_OK_AND_ASSIGN(std::vector<SnapshotEntryInfo> list, cache.List());
  EXPECT_TRUE(list.empty());
}

// Two processes (fork) ask for the same missing snapshot at once: it is made exactly once.
TEST(SnapshotCacheTest, TwoProcessesMakeTheSameSnapshotOnce) {
  const std::string dir = TempDir();
  const std::string counter = dir + "/makes";
  const std::string key = SnapshotKey(Inputs());
  auto run = [&]() -> int {
    absl::StatusOr<SnapshotCache> cache = SnapshotCache::Open({.dir = dir + "/cache"});
    if (!cache.ok()) return 2;
    absl::StatusOr<SnapshotLease> l = cache->GetOrMake(key, "t", [&](const std::string& p) {
      std::ofstream(counter, std::ios::app) << "x";
      absl::SleepFor(absl::Milliseconds(300));  // the other process arrives meanwhile
      return WriteBytes(p, 10);
    });
    return l.ok() ? 0 : 1;
  };
  std::vector<pid_t> pids;
  for (int i = 0; i < 2; ++i) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) _exit(run());
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  EXPECT_EQ(Slurp(counter), "x");
}

TEST(SnapshotCacheTest, FileDigestIsTheContentDigestAndFollowsChanges) {
  const std::string dir = TempDir();
  ASSERT_OK_AND_ASSIGN(SnapshotCache cache, SnapshotCache::Open({.dir = dir + "/c"}));
  const std::string f = dir + "/disk";
  std::ofstream(f) << "abc";
  ASSERT_OK_AND_ASSIGN(std::string d1, cache.FileDigest(f));
  EXPECT_EQ(d1, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  ASSERT_OK_AND_ASSIGN(std::string again, cache.FileDigest(f));  // memoized
  EXPECT_EQ(again, d1);
  absl::SleepFor(absl::Milliseconds(10));
  std::ofstream(f) << "abd";
  ASSERT_OK_AND_ASSIGN(std::string d2, cache.FileDigest(f));
  EXPECT_NE(d2, d1);
  EXPECT_THAT(cache.FileDigest(dir + "/missing").status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
}

}  // namespace
}  // namespace kiln::harness
