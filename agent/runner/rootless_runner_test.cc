// RootlessDaemon (rootless.h) over a fake RootlessOps: what root does, in which order, before
// and after the daemon, and what the daemon's spawn asks for (uid/gid, cgroup leaf, argv,
// env). The real syscalls run in builder VMs (harness builder suite, rootless mode).
#include <stdio.h>
#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/runner/rootless.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::agent::runner {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Octal(mode_t m) {
  char buf[16];
  snprintf(buf, sizeof(buf), "0%o", static_cast<unsigned>(m));
  return buf;
}

// FakeOps: records every call as one line; the delegated cgroup exists unless told otherwise;
// Spawn runs /bin/true instead (keeping the requested options).
class FakeOps : public RootlessOps {
 public:
  std::vector<std::string> calls;
  bool delegated = true;
  std::string fail_on;  // a call line prefix that fails with PermissionDenied
  process::SpawnOptions spawned;
  std::vector<std::string> step_cgroups;  // under kiln-builder, besides the daemon leaf

  absl::Status Record(std::string line) {
    calls.push_back(line);
    if (!fail_on.empty() && line.rfind(fail_on, 0) == 0) {
      return absl::PermissionDeniedError(absl::StrCat(line, ": Permission denied"));
    }
    return absl::OkStatus();
  }
  absl::Status MountTmpfs(const std::string& p, uid_t u, gid_t g, mode_t m) override {
    return Record(absl::StrCat("mount tmpfs ", p, " ", u, ":", g, " ", Octal(m)));
  }
  absl::Status Unmount(const std::string& p) override { return Record("umount " + p); }
  absl::Status MakeDir(const std::string& p, uid_t u, gid_t g, mode_t m) override {
    return Record(absl::StrCat("mkdir ", p, " ", u, ":", g, " ", Octal(m)));
  }
  void RemoveTree(const std::string& p) override { Record("rm -rf " + p).IgnoreError(); }
  absl::Status Chown(const std::string& p, uid_t u, gid_t g) override {
    return Record(absl::StrCat("chown ", p, " ", u, ":", g));
  }
  std::string ReadFile(const std::string& p) override {
    Record("read " + p).IgnoreError();
    return "cpuset cpu io memory pids\n";
  }
  absl::Status WriteFile(const std::string& p, const std::string& c) override {
    return Record(absl::StrCat("write ", p, " ", c));
  }
  absl::Status RemoveCgroup(const std::string& p) override { return Record("rmdir " + p); }
  std::vector<std::string> ListDirs(const std::string& p) override {
    if (p == "/sys/fs/cgroup/kiln-builder") {
      std::vector<std::string> out = {"daemon"};
      out.insert(out.end(), step_cgroups.begin(), step_cgroups.end());
      return out;
    }
    return {};
  }
  bool IsDir(const std::string& p) override {
    return delegated && p == "/sys/fs/cgroup/kiln-builder";
  }
  absl::StatusOr<process::Process> Spawn(const process::SpawnOptions& o) override {
    if (absl::Status s = Record("spawn " + o.argv[0]); !s.ok()) return s;
    spawned = o;
    process::SpawnOptions t;
    t.argv = {"/bin/true"};
    return process::Process::Spawn(t);
  }
};

constexpr char kLeaf[] = "/sys/fs/cgroup/kiln-builder/daemon";

TEST(RootlessDaemonTest, PrepareStartStopInOrder) {
  FakeOps ops;
  ops.step_cgroups = {"abc123"};
  {
    RootlessDaemon d(RootlessConfig{}, &ops);
    ASSERT_THAT(d.Prepare(), IsOk());
    ASSERT_THAT(d.Start("/w/dockerd.log"), IsOk());
    ASSERT_NE(d.daemon(), nullptr);
    d.Stop();
    d.Stop();  // idempotent
  }
  EXPECT_THAT(
      ops.calls,
      ElementsAre(
          "umount /home/builder", "mount tmpfs /home/builder 1000:1000 0700",
          "rm -rf /run/user/1000", "mkdir /run/user/1000 1000:1000 0700",
          "read /sys/fs/cgroup/kiln-builder/cgroup.controllers",
          absl::StrCat("mkdir ", kLeaf, " 1000:1000 0755"), absl::StrCat("chown ", kLeaf, " 1000:1000"),
          absl::StrCat("chown ", kLeaf, "/cgroup.procs 1000:1000"),
          absl::StrCat("chown ", kLeaf, "/cgroup.subtree_control 1000:1000"),
          absl::StrCat("chown ", kLeaf, "/cgroup.threads 1000:1000"),
          "write /sys/fs/cgroup/kiln-builder/cgroup.subtree_control +cpu +cpuset +io +memory +pids",
          "spawn /usr/share/docker.io/contrib/dockerd-rootless.sh",
          // teardown: kill every cgroup under the delegated one, remove them, unmount, wipe
          absl::StrCat("write ", kLeaf, "/cgroup.kill 1"),
          "write /sys/fs/cgroup/kiln-builder/abc123/cgroup.kill 1",
          "rmdir /sys/fs/cgroup/kiln-builder/abc123", absl::StrCat("rmdir ", kLeaf),
          "umount /home/builder", "rm -rf /run/user/1000"));
  ASSERT_TRUE(ops.spawned.credentials.has_value());
  EXPECT_EQ(ops.spawned.credentials->uid, 1000u);
  EXPECT_EQ(ops.spawned.credentials->gid, 1000u);
  EXPECT_EQ(ops.spawned.cgroup_procs, absl::StrCat(kLeaf, "/cgroup.procs"));
  EXPECT_EQ(ops.spawned.out.path, "/w/dockerd.log");
  EXPECT_TRUE(ops.spawned.out.append);
  EXPECT_EQ(ops.spawned.err.kind, process::Stdio::Kind::kSameAsStdout);
  EXPECT_FALSE(ops.spawned.die_with_parent);
  EXPECT_THAT(ops.spawned.argv, ::testing::Contains("--cgroup-parent=/kiln-builder/buildkit"));
  ASSERT_TRUE(ops.spawned.env.has_value());
  EXPECT_THAT(*ops.spawned.env, ::testing::Contains("XDG_RUNTIME_DIR=/run/user/1000"));
}

TEST(RootlessDaemonTest, WithoutDelegationNoLeafAndNoCgroupMove) {
  // cgroup2 not mounted: the preconditions let it through (runc reports it); no leaf is made.
  FakeOps ops;
  ops.delegated = false;
  RootlessDaemon d(RootlessConfig{}, &ops);
  ASSERT_THAT(d.Prepare(), IsOk());
  ASSERT_THAT(d.Start("/w/dockerd.log"), IsOk());
  EXPECT_EQ(ops.spawned.cgroup_procs, "");
  EXPECT_TRUE(ops.spawned.credentials.has_value());
  d.Stop();
  EXPECT_EQ(absl::StrJoin(ops.calls, "\n").find("cgroup"), std::string::npos)
      << absl::StrJoin(ops.calls, "\n");
}

TEST(RootlessDaemonTest, FailingStepIsReportedAndUndone) {
  FakeOps ops;
  ops.fail_on = "write /sys/fs/cgroup/kiln-builder/cgroup.subtree_control";
  {
    RootlessDaemon d(RootlessConfig{}, &ops);
    EXPECT_THAT(d.Prepare(), StatusIs(absl::StatusCode::kPermissionDenied,
                                      HasSubstr("cgroup.subtree_control")));
  }
  // The destructor unmounted the home and removed the runtime dir; no spawn happened.
  EXPECT_EQ(ops.calls.back(), "rm -rf /run/user/1000");
  EXPECT_THAT(ops.calls, ::testing::Contains("umount /home/builder"));
  EXPECT_THAT(ops.calls, ::testing::Not(::testing::Contains(
                             "spawn /usr/share/docker.io/contrib/dockerd-rootless.sh")));
}

// The real Spawn with credentials: with CAP_SETUID/CAP_SETGID (root, unsandboxed), the child
// runs as uid/gid 65534 with no supplementary groups; without them (not root, or root of the
// sandbox's user namespace) setgroups fails and Spawn names the step.
TEST(SpawnCredentialsTest, ChildDropsToTheIds) {
  process::SpawnOptions o;
  o.argv = {"/bin/grep", "-E", "^(Uid|Gid|Groups):", "/proc/self/status"};
  o.out = process::Stdio::Pipe();
  o.credentials = process::Credentials{65534, 65534};
  absl::StatusOr<process::Process> p = process::Process::Spawn(o);
  if (!p.ok() && p.status().code() == absl::StatusCode::kPermissionDenied) {
    std::cerr << "no CAP_SETGID here: checking the error path only\n";
    EXPECT_THAT(p, StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("setgroups")));
    return;
  }
  ASSERT_THAT(p, IsOk());
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = read(p->pipe_fd(1), buf, sizeof(buf))) > 0) out.append(buf, n);
  EXPECT_THAT(out, HasSubstr("Uid:\t65534\t65534\t65534\t65534"));
  EXPECT_THAT(out, HasSubstr("Gid:\t65534\t65534\t65534\t65534"));
  EXPECT_THAT(out, ::testing::ContainsRegex("Groups:[ \t]*\n"));
}

TEST(SpawnCredentialsTest, UnwritableCgroupIsNamed) {
  process::SpawnOptions o;
  o.argv = {"/bin/true"};
  o.cgroup_procs = "/nonexistent/cgroup.procs";
  EXPECT_THAT(process::Process::Spawn(o),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("write /nonexistent/cgroup.procs")));
}

}  // namespace
}  // namespace kiln::agent::runner
