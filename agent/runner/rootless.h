// File: agent/runner/rootless.h
// -----------------------------------------------------------------------------
//
// The rootless builder daemon (`--builder_mode=rootless`, production's mode): dockerd 26.1 with
// its built-in BuildKit started by `dockerd-rootless.sh` under rootlesskit as an unprivileged
// user (uid/gid 1000, `builder` on //images/rootfs:builder_trixie_disk, subordinate ids from
// /etc/subuid and /etc/subgid), inside a cgroup v2 subtree delegated to that user
// (init/cgroup_names.h; init delegates it with `kiln.delegate=1000`). The agent stays root: it
// checks the preconditions, prepares the user's home, runtime directory and the daemon's
// cgroup leaf, and starts the daemon, which drops to uid 1000 before exec.
//
// Two halves, as everywhere in the runner:
//   - the plan, pure data: RootlessLayout, RootlessDockerdArgv/Env, the cgroup writes
//     (RootlessCgroupPlan), and the preconditions over gathered facts
//     (CheckRootlessPreconditions over RootlessFacts; Cgroup2MountAt parses mountinfo);
//   - the executor, RootlessDaemon, over a small RootlessOps interface (mount, mkdir, chown,
//     write, spawn) that tests replace with a fake (rootless_runner_test).
//
// Preconditions (each FailedPrecondition, checked before any daemon starts):
//   - the rootless stack present: dockerd-rootless.sh, rootlesskit, newuidmap, newgidmap,
//     slirp4netns (missing on the Debian 12 builder disk) -> "rootless builder: <file> is
//     missing (...); use the Debian 13 builder disk or --builder_mode=rootful";
//   - /dev/net/tun present (slirp4netns needs it; init loads `tun`);
//   - cgroup2 at /sys/fs/cgroup: not mounted -> NOT refused: the stack runs and the build
//     fails with runc's own `runc run failed: no cgroup mount found in mountinfo` (the
//     production bug kiln reproduces); read-only -> refused ("read-only cgroup2"); read-write
//     but /sys/fs/cgroup/kiln-builder missing or not owned by the uid -> refused ("no subtree
//     is delegated to uid 1000"). Measured (images/rootfs/ROOTLESS.md): without delegation,
//     and on a read-only cgroup2, rootless runc silently runs the RUN steps WITHOUT cgroups,
//     so kiln refuses those itself.
//
// Example:
//
//   RootlessConfig config;
//   RootlessFacts facts = GatherRootlessFacts(config);
//   if (absl::Status s = CheckRootlessPreconditions(config, facts); !s.ok()) return s;
//   RealRootlessOps ops;
//   RootlessDaemon daemon(config, &ops);
//   RETURN_IF_ERROR(daemon.Prepare());
//   RETURN_IF_ERROR(daemon.Start("/run/kiln-agent/job/build/dockerd.log"));
//   ... talk to daemon.layout().socket ...
//   daemon.Stop();  // also in the destructor
#ifndef KILN_AGENT_RUNNER_ROOTLESS_H_
#define KILN_AGENT_RUNNER_ROOTLESS_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/process/process.h"

namespace kiln::agent::runner {

// RootlessConfig: who runs the daemon and where the rootless stack lives. The defaults are
// //images/rootfs:builder_trixie_disk's (Debian 13 packages docker.io, rootlesskit, uidmap,
// slirp4netns; user `builder` 1000:1000).
struct RootlessConfig {
  uid_t uid = 1000;
  gid_t gid = 1000;
  std::string home = "/home/builder";     // a per-job tmpfs owned by uid is mounted here
  std::string runtime_dir = "/run/user/1000";  // XDG_RUNTIME_DIR, mode 0700, owned by uid
  std::string dockerd_rootless = "/usr/share/docker.io/contrib/dockerd-rootless.sh";
  // stack: the other files the script needs (it finds them on PATH).
  std::vector<std::string> stack = {"/usr/bin/rootlesskit", "/usr/bin/newuidmap",
                                    "/usr/bin/newgidmap", "/usr/bin/slirp4netns",
                                    "/usr/sbin/dockerd"};
  std::string tun_device = "/dev/net/tun";
  std::string cgroup_root = "/sys/fs/cgroup";  // kiln::cgroup::kMountPoint
  std::string mountinfo = "/proc/self/mountinfo";
  // stop_grace: SIGTERM to the daemon's process group, then cgroup.kill after this.
  absl::Duration stop_grace = absl::Seconds(10);
};

// Cgroup2Mount: how cgroup2 is mounted at a mount point.
enum class Cgroup2Mount { kNotMounted, kReadOnly, kReadWrite };

// Cgroup2MountAt(mountinfo, mount_point): the state of the cgroup2 mount at `mount_point` in
// /proc/self/mountinfo text (proc(5): "36 35 0:30 / /sys/fs/cgroup rw,nosuid,... shared:9 -
// cgroup2 cgroup2 rw"): kNotMounted when no line mounts cgroup2 there (or another fs is
// mounted on top, the last line wins), kReadOnly when the mount options (field 6) say `ro`.
// Pure.
Cgroup2Mount Cgroup2MountAt(absl::string_view mountinfo, absl::string_view mount_point);

// RootlessFacts: what GatherRootlessFacts saw on this machine.
struct RootlessFacts {
  std::vector<std::string> missing_stack;  // files of the rootless stack that do not exist
  bool tun_present = false;                // config.tun_device exists
  Cgroup2Mount cgroup2 = Cgroup2Mount::kNotMounted;
  bool delegated_exists = false;  // <cgroup_root>/kiln-builder is a directory
  uid_t delegated_owner = 0;      // its owner (meaningful when delegated_exists)
  uid_t delegated_procs_owner = 0;  // owner of its cgroup.procs
};

// GatherRootlessFacts(config): stats the files, reads config.mountinfo. Never fails: an
// unreadable mountinfo counts as kNotMounted.
RootlessFacts GatherRootlessFacts(const RootlessConfig& config);

// CheckRootlessPreconditions(config, facts): OkStatus, or FailedPrecondition naming what is
// missing and how to fix it (the file comment lists them). cgroup2 not mounted is OK (runc
// reports it). Pure.
absl::Status CheckRootlessPreconditions(const RootlessConfig& config, const RootlessFacts& facts);

// RootlessLayout: the paths of the rootless daemon (all below the user's home and runtime
// directory, which the runner recreates for every job).
struct RootlessLayout {
  std::string socket;        // <runtime_dir>/docker.sock (the daemon's and the CLI's)
  std::string data_root;     // <home>/.local/share/docker (on the home tmpfs)
  std::string exec_root;     // <runtime_dir>/docker
  std::string pidfile;       // <runtime_dir>/docker.pid
  std::string delegated;     // <cgroup_root>/kiln-builder
  std::string daemon_leaf;   // <delegated>/daemon: rootlesskit, dockerd, containerd live here
  std::string cgroup_parent; // /kiln-builder/buildkit: dockerd --cgroup-parent (BuildKit steps)
  // cgroup_prefix / daemon_cgroup: the same as cgroup paths as /proc/<pid>/cgroup shows them
  // ("/kiln-builder/", "/kiln-builder/daemon"): a process under the prefix but not in the
  // daemon's leaf is a BuildKit step's (step_procs.h; measured: /kiln-builder/<id>).
  std::string cgroup_prefix;
  std::string daemon_cgroup;
};

// MakeRootlessLayout(config): the layout. Pure.
RootlessLayout MakeRootlessLayout(const RootlessConfig& config);

// RootlessDockerdArgv(config, layout): `dockerd-rootless.sh --iptables=false
// --ip-forward=false --ip-masq=false --bridge=none --cgroup-parent=/kiln-builder/buildkit
// --shutdown-timeout=2 --data-root=... --exec-root=... --pidfile=... --host=unix://<socket>`
// (the script re-execs itself under rootlesskit with slirp4netns, then execs dockerd with
// these flags; dockerd starts its own containerd inside rootlesskit's namespaces). Pure.
std::vector<std::string> RootlessDockerdArgv(const RootlessConfig& config,
                                             const RootlessLayout& layout);

// RootlessDaemonEnv(config): the daemon's whole environment: HOME=<home>,
// XDG_RUNTIME_DIR=<runtime_dir>, PATH=/usr/sbin:/usr/bin:/sbin:/bin. Pure.
std::vector<std::string> RootlessDaemonEnv(const RootlessConfig& config);

// CgroupWrite: one write of the cgroup preparation (path, contents).
struct CgroupWrite {
  std::string path;
  std::string contents;
};

// RootlessCgroupPlan: what root does to the delegated subtree before the daemon starts
// (kernel cgroup-v2 "Delegation"; init/cgroup_names.h):
//   mkdir <daemon_leaf>; chown it and its cgroup.procs, cgroup.subtree_control,
//   cgroup.threads to uid:gid; write "+cpu +cpuset +io +memory +pids" (those the delegated
//   cgroup offers) to <delegated>/cgroup.subtree_control. The daemon's child then writes its
//   own pid to <daemon_leaf>/cgroup.procs before it drops to uid (process::SpawnOptions::cgroup_procs):
//   a process in the root cgroup can only be moved by root.
struct RootlessCgroupPlan {
  std::string leaf;                       // directory to create
  std::vector<std::string> chown_paths;   // leaf + its delegated files
  std::vector<CgroupWrite> writes;        // subtree_control of the delegated cgroup
  std::string leaf_procs;                 // <leaf>/cgroup.procs (process::SpawnOptions::cgroup_procs)
};

// MakeRootlessCgroupPlan(layout, available_controllers): the plan; the controllers enabled
// are those of kiln::cgroup::kDelegatedControllers that `available_controllers` (the
// delegated cgroup's cgroup.controllers, space-separated) lists; no write when none. Pure.
RootlessCgroupPlan MakeRootlessCgroupPlan(const RootlessLayout& layout,
                                          absl::string_view available_controllers);

// RootlessOps: the operations RootlessDaemon performs (all as root), so that tests can
// replace them. Each returns the errno-derived status of the syscall on failure.
class RootlessOps {
 public:
  virtual ~RootlessOps() = default;
  // MountTmpfs(path, uid, gid, mode): a fresh tmpfs (nosuid, nodev) at `path`, owned by
  // uid:gid with `mode`; creates `path` if missing.
  virtual absl::Status MountTmpfs(const std::string& path, uid_t uid, gid_t gid, mode_t mode) = 0;
  // Unmount(path): lazy unmount (MNT_DETACH); OK when nothing is mounted there.
  virtual absl::Status Unmount(const std::string& path) = 0;
  // MakeDir(path, uid, gid, mode): mkdir (parents as root 0755), then chown + chmod; OK when
  // it exists (its owner and mode are set again).
  virtual absl::Status MakeDir(const std::string& path, uid_t uid, gid_t gid, mode_t mode) = 0;
  // RemoveTree(path): rm -rf on one file system, never following symlinks.
  virtual void RemoveTree(const std::string& path) = 0;
  // Chown(path, uid, gid).
  virtual absl::Status Chown(const std::string& path, uid_t uid, gid_t gid) = 0;
  // ReadFile(path): the contents ("" on error).
  virtual std::string ReadFile(const std::string& path) = 0;
  // WriteFile(path, contents): open O_WRONLY (no create), one write (cgroup interface files).
  virtual absl::Status WriteFile(const std::string& path, const std::string& contents) = 0;
  // RemoveCgroup(path): rmdir of an (empty) cgroup; OK when absent.
  virtual absl::Status RemoveCgroup(const std::string& path) = 0;
  // ListDirs(path): names of the subdirectories of `path` (cgroups under a cgroup).
  virtual std::vector<std::string> ListDirs(const std::string& path) = 0;
  // IsDir(path): `path` is a directory.
  virtual bool IsDir(const std::string& path) = 0;
  // Spawn(options): process::Process::Spawn.
  virtual absl::StatusOr<process::Process> Spawn(const process::SpawnOptions& options) = 0;
};

// RealRootlessOps: the syscalls.
class RealRootlessOps : public RootlessOps {
 public:
  absl::Status MountTmpfs(const std::string& path, uid_t uid, gid_t gid, mode_t mode) override;
  absl::Status Unmount(const std::string& path) override;
  absl::Status MakeDir(const std::string& path, uid_t uid, gid_t gid, mode_t mode) override;
  void RemoveTree(const std::string& path) override;
  absl::Status Chown(const std::string& path, uid_t uid, gid_t gid) override;
  std::string ReadFile(const std::string& path) override;
  absl::Status WriteFile(const std::string& path, const std::string& contents) override;
  absl::Status RemoveCgroup(const std::string& path) override;
  std::vector<std::string> ListDirs(const std::string& path) override;
  bool IsDir(const std::string& path) override;
  absl::StatusOr<process::Process> Spawn(const process::SpawnOptions& options) override;
};

// RootlessDaemon: one job's rootless daemon. Not thread-safe.
class RootlessDaemon {
 public:
  // REQUIRES: ops outlives this object.
  RootlessDaemon(RootlessConfig config, RootlessOps* ops);
  ~RootlessDaemon();  // Stop()
  RootlessDaemon(const RootlessDaemon&) = delete;
  RootlessDaemon& operator=(const RootlessDaemon&) = delete;

  const RootlessLayout& layout() const { return layout_; }

  // Prepare(): as root, before Start: a fresh tmpfs at config.home (uid:gid, 0700), a fresh
  // config.runtime_dir (uid:gid, 0700), and, when the delegated cgroup exists, the cgroup plan
  // (MakeRootlessCgroupPlan). Errno-derived status of the failing step. Call after
  // CheckRootlessPreconditions.
  absl::Status Prepare();

  // Start(log_path): spawns RootlessDockerdArgv with RootlessDaemonEnv as uid:gid
  // (supplementary groups cleared), stdout+stderr appended to `log_path`, moved into the
  // daemon leaf first when Prepare made one. The process::Process::Spawn errors.
  absl::Status Start(const std::string& log_path);

  // daemon(): the started script/rootlesskit process (nullptr before Start).
  process::Process* daemon() { return daemon_ ? &*daemon_ : nullptr; }

  // Stop(): SIGTERM to the daemon's process group, up to config.stop_grace, then SIGKILL;
  // then `cgroup.kill` on every cgroup under the delegated one (the daemon leaf and the
  // BuildKit step cgroups: rootlesskit's children that left the process group), rmdir of
  // those cgroups, unmount of the home tmpfs, removal of the runtime dir. Idempotent.
  void Stop();

 private:
  RootlessConfig config_;
  RootlessOps* ops_;
  RootlessLayout layout_;
  bool home_mounted_ = false;
  bool runtime_made_ = false;
  std::string leaf_procs_;  // "" when no cgroup leaf was made
  std::optional<process::Process> daemon_;
};

}  // namespace kiln::agent::runner

#endif  // KILN_AGENT_RUNNER_ROOTLESS_H_
