// File: init/pid1.cc
#include "init/pid1.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "init/cgroup_delegation.h"
#include "init/cgroup_names.h"
#include "init/config.h"
#include "init/console.h"
#include "init/device_nodes.h"
#include "init/modules.h"
#include "init/mount_plan.h"
#include "init/supervisor.h"

namespace kiln::init {
namespace {

void Shutdown(Sys& sys, Console& console, const Pid1Options& options) {
  KillRemaining(sys, console, options.shutdown_grace_ms);
  sys.Sync();
  sys.PowerOff();
}

std::string ConfigSummary(const Config& c) {
  return absl::StrCat("cgroup=", CgroupPolicyName(c.cgroup), " root=",
                      c.root.empty() ? "-" : c.root, " rootfstype=", c.rootfstype,
                      " overlay=", c.overlay, " uid=", c.uid, " gid=", c.gid,
                      " deadline_ms=", c.deadline_ms, " exec_argc=", c.exec.size(),
                      " delegate=",
                      c.delegate ? absl::StrCat(c.delegate->uid, ":", c.delegate->gid) : "-");
}

// Delegate: step 4b, kiln.delegate (init/cgroup_delegation.h). Needs the cgroup2 mount.
absl::Status Delegate(Sys& sys, Console& console, const CgroupDelegate& to) {
  std::string controllers_path =
      absl::StrCat(cgroup::kMountPoint, "/", cgroup::kControllersFile);
  absl::StatusOr<std::string> controllers = sys.ReadFile(controllers_path);
  if (!controllers.ok()) {
    return absl::Status(controllers.status().code(),
                        absl::StrCat("kiln.delegate needs cgroup2 at ", cgroup::kMountPoint, ": ",
                                     controllers.status().message()));
  }
  absl::StatusOr<DelegationPlan> plan = PlanDelegation(to, *controllers);
  if (!plan.ok()) return plan.status();
  return ApplyDelegation(sys, console, *plan);
}

}  // namespace

void RunPid1(Sys& sys, const Pid1Options& options) {
  Console console(sys);
  auto fatal = [&](absl::string_view step, const absl::Status& s) {
    console.Fatal(step, s);
    Shutdown(sys, console, options);
  };

  // 1. Signals first: no SIGCHLD may be lost once anything forks.
  if (absl::Status s = sys.BlockSignals(); !s.ok()) return fatal("signals", s);

  // 2. The API file systems; the cmdline needs /proc, the console /dev.
  if (absl::Status s = ApplyMounts(sys, console, BaseMountPlan()); !s.ok()) {
    return fatal("mount", s);
  }
  if (absl::Status s = sys.OpenConsole(options.console_path); !s.ok()) {
    console.Warning("console", s);
  }

  // 3. The configuration.
  absl::StatusOr<std::string> cmdline = sys.ReadFile(options.cmdline_path);
  if (!cmdline.ok()) return fatal("config", cmdline.status());
  absl::StatusOr<Config> config = ParseCmdline(*cmdline);
  if (!config.ok()) return fatal("config", config.status());
  console.Step("config", ConfigSummary(*config));

  // 4. cgroup2 per policy (a failure is a warning line, never fatal).
  if (std::optional<MountRow> row = CgroupMountFor(config->cgroup)) {
    if (absl::Status s = ApplyMounts(sys, console, {*row}); !s.ok()) {
      console.Warning("cgroup", s);
    }
  } else {
    console.Step("cgroup", "policy=off mounted=no");
  }

  // 4b. The delegated cgroup subtree (kiln.delegate; the parser allows it only with rw).
  if (config->delegate) {
    if (absl::Status s = Delegate(sys, console, *config->delegate); !s.ok()) {
      return fatal("delegate", s);
    }
  }

  // 5. Kernel modules.
  if (absl::Status s = LoadModules(sys, console, options.modules_list_path); !s.ok()) {
    return fatal("modules", s);
  }

  // 5b. Device nodes devtmpfs does not give as needed (/dev/net/tun 0666).
  if (absl::Status s = CreateDeviceNodes(sys, console, BaseDeviceNodes()); !s.ok()) {
    return fatal("devices", s);
  }

  // 6. The root switch.
  if (!config->root.empty()) {
    absl::Status s = ExecuteRootSwitch(sys, console,
                                       RootSwitchPlan(*config, options.root_switch));
    if (!s.ok()) return fatal("root", s);
    console.Step("root", absl::StrCat("switched=", config->root, " overlay=", config->overlay));
  }

  // 7. Boot complete.
  console.Ready(sys.BoottimeMs());
  if (config->exec.empty()) return Shutdown(sys, console, options);

  // 8-9. The program.
  absl::StatusOr<ProgramExit> done =
      Supervise(sys, console, SpawnSpecFor(*config), SuperviseOptions{config->deadline_ms});
  if (!done.ok()) return fatal("exec", done.status());
  console.Exit(done->wait_status, sys.BoottimeMs());
  Shutdown(sys, console, options);
}

}  // namespace kiln::init
