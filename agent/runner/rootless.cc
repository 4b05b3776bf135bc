#include "agent/file/file.h"
#include "agent/runner/rootless.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "init/cgroup_names.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::agent::runner {
namespace {

constexpr char kFix[] = "use the Debian 13 builder disk or --builder_mode=rootful";

int RemoveEntry(const char* path, const struct stat*, int type, struct FTW*) {
  if (type == FTW_DP) {
    rmdir(path);
  } else {
    unlink(path);
  }
  return 0;
}

}  // namespace

Cgroup2Mount Cgroup2MountAt(absl::string_view mountinfo, absl::string_view mount_point) {
  Cgroup2Mount state = Cgroup2Mount::kNotMounted;
  for (absl::string_view line : absl::StrSplit(mountinfo, '\n')) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() < 7 || f[4] != mount_point) continue;
    // Optional fields end at "-"; then fstype, source, super options.
    size_t dash = 6;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (dash + 1 >= f.size() || f[dash + 1] != "cgroup2") {
      state = Cgroup2Mount::kNotMounted;  // another file system on top
      continue;
    }
    bool ro = false;
    for (absl::string_view opt : absl::StrSplit(f[5], ',')) ro = ro || opt == "ro";
    state = ro ? Cgroup2Mount::kReadOnly : Cgroup2Mount::kReadWrite;
  }
  return state;
}

RootlessFacts GatherRootlessFacts(const RootlessConfig& config) {
  RootlessFacts facts;
  struct stat st;
  std::vector<std::string> files = {config.dockerd_rootless};
  files.insert(files.end(), config.stack.begin(), config.stack.end());
  for (const std::string& f : files) {
    if (stat(f.c_str(), &st) != 0) facts.missing_stack.push_back(f);
  }
  facts.tun_present = stat(config.tun_device.c_str(), &st) == 0;
  facts.cgroup2 = Cgroup2MountAt(file::ReadFileOrEmpty(config.mountinfo), config.cgroup_root);
  const std::string delegated =
      absl::StrCat(config.cgroup_root, "/", kiln::cgroup::kDelegatedName);
  if (stat(delegated.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    facts.delegated_exists = true;
    facts.delegated_owner = st.st_uid;
    const std::string procs = absl::StrCat(delegated, "/", kiln::cgroup::kProcsFile);
    if (stat(procs.c_str(), &st) == 0) facts.delegated_procs_owner = st.st_uid;
  }
  return facts;
}

absl::Status CheckRootlessPreconditions(const RootlessConfig& config,
                                        const RootlessFacts& facts) {
  if (!facts.missing_stack.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "rootless builder: ", absl::StrJoin(facts.missing_stack, ", "),
        facts.missing_stack.size() == 1 ? " is" : " are",
        " missing (the rootless stack: dockerd-rootless.sh, rootlesskit, newuidmap/newgidmap, "
        "slirp4netns); ",
        kFix));
  }
  if (!facts.tun_present) {
    return absl::FailedPreconditionError(absl::StrCat(
        "rootless builder: ", config.tun_device,
        " is missing (slirp4netns, rootlesskit's network, needs it); boot with kiln's init, "
        "which loads the tun module and makes the device"));
  }
  const std::string delegated =
      absl::StrCat(config.cgroup_root, "/", kiln::cgroup::kDelegatedName);
  switch (facts.cgroup2) {
    case Cgroup2Mount::kNotMounted:
      // Not refused: the stack runs and runc fails with its own text (the production bug).
      return absl::OkStatus();
    case Cgroup2Mount::kReadOnly:
      return absl::FailedPreconditionError(absl::StrCat(
          "rootless builder: read-only cgroup2 at ", config.cgroup_root,
          ": rootless runc would run the build steps without cgroups; mount it read-write "
          "(kiln.cgroup=rw) and boot with kiln.delegate=",
          config.uid));
    case Cgroup2Mount::kReadWrite:
      break;
  }
  if (!facts.delegated_exists) {
    return absl::FailedPreconditionError(absl::StrCat(
        "rootless builder: cgroup v2 is mounted but no subtree is delegated to uid ", config.uid,
        " (", delegated, " missing; boot with kiln.delegate=", config.uid, ")"));
  }
  if (facts.delegated_owner != config.uid || facts.delegated_procs_owner != config.uid) {
    return absl::FailedPreconditionError(absl::StrCat(
        "rootless builder: cgroup v2 is mounted but no subtree is delegated to uid ", config.uid,
        " (", delegated, " is owned by uid ", facts.delegated_owner, ", its ",
        kiln::cgroup::kProcsFile, " by uid ", facts.delegated_procs_owner,
        "; boot with kiln.delegate=", config.uid, ")"));
  }
  return absl::OkStatus();
}

RootlessLayout MakeRootlessLayout(const RootlessConfig& config) {
  RootlessLayout l;
  l.socket = config.runtime_dir + "/docker.sock";
  l.data_root = config.home + "/.local/share/docker";
  l.exec_root = config.runtime_dir + "/docker";
  l.pidfile = config.runtime_dir + "/docker.pid";
  l.delegated = absl::StrCat(config.cgroup_root, "/", kiln::cgroup::kDelegatedName);
  l.daemon_leaf = l.delegated + "/daemon";
  l.cgroup_parent = absl::StrCat("/", kiln::cgroup::kDelegatedName, "/buildkit");
  l.cgroup_prefix = absl::StrCat("/", kiln::cgroup::kDelegatedName, "/");
  l.daemon_cgroup = absl::StrCat("/", kiln::cgroup::kDelegatedName, "/daemon");
  return l;
}

std::vector<std::string> RootlessDockerdArgv(const RootlessConfig& config,
                                             const RootlessLayout& l) {
  return {config.dockerd_rootless,
          "--iptables=false",
          "--ip-forward=false",
          "--ip-masq=false",
          "--bridge=none",
          absl::StrCat("--cgroup-parent=", l.cgroup_parent),
          "--shutdown-timeout=2",
          absl::StrCat("--data-root=", l.data_root),
          absl::StrCat("--exec-root=", l.exec_root),
          absl::StrCat("--pidfile=", l.pidfile),
          absl::StrCat("--host=unix://", l.socket)};
}

std::vector<std::string> RootlessDaemonEnv(const RootlessConfig& config) {
  return {absl::StrCat("HOME=", config.home), absl::StrCat("XDG_RUNTIME_DIR=", config.runtime_dir),
          "PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
}

RootlessCgroupPlan MakeRootlessCgroupPlan(const RootlessLayout& l,
                                          absl::string_view available_controllers) {
  RootlessCgroupPlan plan;
  plan.leaf = l.daemon_leaf;
  plan.chown_paths.push_back(l.daemon_leaf);
  for (absl::string_view f : kiln::cgroup::kDelegatedFiles) {
    plan.chown_paths.push_back(absl::StrCat(l.daemon_leaf, "/", f));
  }
  std::vector<absl::string_view> have =
      absl::StrSplit(available_controllers, absl::ByAnyChar(" \n"), absl::SkipEmpty());
  std::vector<std::string> enable;
  for (absl::string_view c : kiln::cgroup::kDelegatedControllers) {
    for (absl::string_view h : have) {
      if (h == c) enable.push_back(absl::StrCat("+", c));
    }
  }
  if (!enable.empty()) {
    plan.writes.push_back({absl::StrCat(l.delegated, "/", kiln::cgroup::kSubtreeControlFile),
                           absl::StrJoin(enable, " ")});
  }
  plan.leaf_procs = absl::StrCat(l.daemon_leaf, "/", kiln::cgroup::kProcsFile);
  return plan;
}

// ---------------------------------------------------------------------------------------------
// RealRootlessOps

absl::Status RealRootlessOps::MountTmpfs(const std::string& path, uid_t uid, gid_t gid,
                                         mode_t mode) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return PosixError(errno, "mkdir", path);
  std::ostringstream opts;  // tmpfs takes mode= in octal
  opts << "mode=" << std::oct << mode << std::dec << ",uid=" << uid << ",gid=" << gid;
  if (mount("tmpfs", path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.str().c_str()) != 0) {
    return PosixError(errno, "mount tmpfs", path);
  }
  return absl::OkStatus();
}

absl::Status RealRootlessOps::Unmount(const std::string& path) {
  if (umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return PosixError(errno, "umount", path);
  }
  return absl::OkStatus();
}

absl::Status RealRootlessOps::MakeDir(const std::string& path, uid_t uid, gid_t gid,
                                      mode_t mode) {
  std::string cur;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    absl::StrAppend(&cur, "/", part);
    if (mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) return PosixError(errno, "mkdir", cur);
  }
  if (chown(path.c_str(), uid, gid) != 0) return PosixError(errno, "chown", path);
  if (chmod(path.c_str(), mode) != 0) return PosixError(errno, "chmod", path);
  return absl::OkStatus();
}

void RealRootlessOps::RemoveTree(const std::string& path) {
  nftw(path.c_str(), RemoveEntry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

absl::Status RealRootlessOps::Chown(const std::string& path, uid_t uid, gid_t gid) {
  if (chown(path.c_str(), uid, gid) != 0) return PosixError(errno, "chown", path);
  return absl::OkStatus();
}

std::string RealRootlessOps::ReadFile(const std::string& path) {
  return file::ReadFileOrEmpty(path);
}

absl::Status RealRootlessOps::WriteFile(const std::string& path, const std::string& contents) {
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return PosixError(errno, "open", path);
  const ssize_t n = write(fd, contents.data(), contents.size());
  const int e = errno;
  close(fd);
  if (n != static_cast<ssize_t>(contents.size())) {
    return PosixError(n < 0 ? e : EIO, absl::StrCat("write \"", contents, "\" to"), path);
  }
  return absl::OkStatus();
}

absl::Status RealRootlessOps::RemoveCgroup(const std::string& path) {
  if (rmdir(path.c_str()) != 0 && errno != ENOENT) return PosixError(errno, "rmdir", path);
  return absl::OkStatus();
}

std::vector<std::string> RealRootlessOps::ListDirs(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return out;
  while (struct dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    if (e->d_type == DT_DIR) out.push_back(name);
  }
  closedir(d);
  return out;
}

bool RealRootlessOps::IsDir(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

absl::StatusOr<process::Process> RealRootlessOps::Spawn(const process::SpawnOptions& options) {
  return process::Process::Spawn(options);
}

// ---------------------------------------------------------------------------------------------
// RootlessDaemon

RootlessDaemon::RootlessDaemon(RootlessConfig config, RootlessOps* ops)
    : config_(std::move(config)), ops_(ops), layout_(MakeRootlessLayout(config_)) {}

RootlessDaemon::~RootlessDaemon() { Stop(); }

absl::Status RootlessDaemon::Prepare() {
  ops_->Unmount(config_.home).IgnoreError();  // a previous job's, if any
  if (absl::Status s = ops_->MountTmpfs(config_.home, config_.uid, config_.gid, 0700); !s.ok()) {
    return s;
  }
  home_mounted_ = true;
  ops_->RemoveTree(config_.runtime_dir);
  if (absl::Status s = ops_->MakeDir(config_.runtime_dir, config_.uid, config_.gid, 0700);
      !s.ok()) {
    return s;
  }
  runtime_made_ = true;
  // No delegated cgroup (cgroup2 not mounted: the preconditions let that through so that
  // runc reports it): no leaf.
  if (!ops_->IsDir(layout_.delegated)) return absl::OkStatus();
  const std::string controllers_file =
      absl::StrCat(layout_.delegated, "/", kiln::cgroup::kControllersFile);
  const RootlessCgroupPlan plan =
      MakeRootlessCgroupPlan(layout_, ops_->ReadFile(controllers_file));
  if (absl::Status s = ops_->MakeDir(plan.leaf, config_.uid, config_.gid, 0755); !s.ok()) {
    return s;
  }
  for (const std::string& p : plan.chown_paths) {
    if (absl::Status s = ops_->Chown(p, config_.uid, config_.gid); !s.ok()) return s;
  }
  for (const CgroupWrite& w : plan.writes) {
    if (absl::Status s = ops_->WriteFile(w.path, w.contents); !s.ok()) return s;
  }
  leaf_procs_ = plan.leaf_procs;
  return absl::OkStatus();
}

absl::Status RootlessDaemon::Start(const std::string& log_path) {
  process::SpawnOptions o;
  o.argv = RootlessDockerdArgv(config_, layout_);
  o.search_path = false;
  o.env = RootlessDaemonEnv(config_);
  o.out = process::Stdio::File(log_path, /*append=*/true, 0600);
  o.err = process::Stdio::SameAsStdout();
  o.die_with_parent = false;  // the daemon may outlive the thread that started it (warm)
  o.cgroup_procs = leaf_procs_;
  o.credentials = process::Credentials{config_.uid, config_.gid};
  absl::StatusOr<process::Process> p = ops_->Spawn(o);
  if (!p.ok()) return p.status();
  daemon_.emplace(std::move(*p));
  return absl::OkStatus();
}

void RootlessDaemon::Stop() {
  if (daemon_.has_value()) daemon_->Kill(config_.stop_grace);
  daemon_.reset();
  // What left the process group (rootlesskit's children, runc's step processes): kill every
  // cgroup under the delegated one, then remove them (children first).
  if (!leaf_procs_.empty()) {
    std::vector<std::string> cgroups;
    std::vector<std::string> todo = {layout_.delegated};
    while (!todo.empty()) {
      const std::string dir = todo.back();
      todo.pop_back();
      for (const std::string& name : ops_->ListDirs(dir)) {
        cgroups.push_back(dir + "/" + name);
        todo.push_back(dir + "/" + name);
      }
    }
    for (const std::string& c : cgroups) ops_->WriteFile(c + "/cgroup.kill", "1").IgnoreError();
    for (auto it = cgroups.rbegin(); it != cgroups.rend(); ++it) {
      // A killed cgroup empties asynchronously: retry briefly.
      for (int i = 0; i < 50 && !ops_->RemoveCgroup(*it).ok(); ++i) {
        absl::SleepFor(absl::Milliseconds(20));
      }
    }
    leaf_procs_.clear();
  }
  if (home_mounted_) {
    ops_->Unmount(config_.home).IgnoreError();
    home_mounted_ = false;
  }
  if (runtime_made_) {
    ops_->RemoveTree(config_.runtime_dir);
    runtime_made_ = false;
  }
}

}  // namespace kiln::agent::runner
