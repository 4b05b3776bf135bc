// File: harness/scenarios/scenarios.h
// -----------------------------------------------------------------------------
//
// kiln's VM scenarios, shared by the VM tests (harness/scenarios/cgroup_vm_test.cc) and
// //harness:verify. A Scenario is pure data: a name, the kiln.* keys it boots with
// (docs/interfaces.md), and a pure check over the RunResult (console lines + VMM exit). The
// checks are unit-tested on real serial logs without booting anything; RunScenario is the thin
// step that boots the VM (VmFactory::Run) and applies the check.
//
// The cgroup scenarios (DESIGN.md, problem 1) boot the test root (runc + a busybox OCI bundle
// at /opt/kiln/bundle) and run /usr/lib/kiln/cgroup-check, which prints KILN-CHECK lines
// (images/rootfs/cgroup-check.sh):
//
//   cgroup-rw         cgroup2 at /sys/fs/cgroup, read-write; `runc run` exits 0 and the
//                     container sees its own cgroup (`0::/<id>`)
//   cgroup-ro         cgroup2 mounted read-only; runc 1.1.5 fails: "unable to apply cgroup
//                     configuration: mkdir /sys/fs/cgroup/<id>: read-only file system"
//   cgroup-off        negative control: no cgroup mount; runc fails with
//                     "no cgroup mount found in mountinfo" (the production bug)
//   cgroup-bad-value  kiln.cgroup=maybe: init prints a fatal config error and powers off
//   cgroup-delegated  kiln.delegate=1000 (init/cgroup_delegation.h): /sys/fs/cgroup/kiln-builder
//                     is owned 1000:1000 with its cgroup.procs, cgroup.subtree_control and
//                     cgroup.threads, the root's cgroup.subtree_control lists cpu cpuset io
//                     memory pids; uid 1000 (setpriv) makes a child cgroup, moves itself in,
//                     enables +pids, and cannot write the parent's knob pids.max;
//                     /dev/net/tun is char 10:200 mode 0666; runc run still exits 0
//   cgroup-delegate-ro  kiln.delegate=1000 with kiln.cgroup=ro: init prints a fatal config
//                     error naming both keys and powers off
//
// The agent-vsock scenario boots the builder disk and runs /usr/local/bin/kiln-vsock-check
// (agent/vsock_check_main.cc): the agent on AF_VSOCK (its Cloud Hypervisor channel), reached
// through VMADDR_CID_LOCAL (vsock_loopback), Hello/Ready and Ping/Pong, then the agent exits.
// It proves the guest side of the CH channel on a real kernel where no CH exists.
//
// Adding a scenario: append a Scenario to the list in scenarios.cc with a check function, add
// a unit test of the check on a real log in scenarios_test.cc; the VM test and verify pick it
// up from CgroupScenarios() (see README.md).
//
// Example:
//
//   for (const Scenario& s : CgroupScenarios()) {
//     ScenarioOutcome o = RunScenario(factory, s, artifacts);
//     std::cout << s.name << (o.status.ok() ? " PASS " : " FAIL ") << o.summary;
//   }
#ifndef KILN_HARNESS_SCENARIOS_H_
#define KILN_HARNESS_SCENARIOS_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "harness/vmm/runner.h"
#include "harness/vmm/vmm.h"

namespace kiln::harness {

// Artifacts: the host files a scenario VM boots from.
struct Artifacts {
  std::string kernel;     // PVH vmlinux (//images:vmlinux)
  std::string initrd;     // kiln initrd with //init:init (//images:initrd)
  std::string root_disk;  // ext4 test root (//images/rootfs:testroot_disk)
};

// ValidateArtifacts(a): OkStatus if every path is set and readable; InvalidArgument naming an
// empty one; NotFound naming a missing one.
absl::Status ValidateArtifacts(const Artifacts& artifacts);

// ScenarioCheck: a pure check of one run. Returns a one-line summary of what was seen on
// success; FailedPrecondition with "expected ..., got ..." otherwise.
using ScenarioCheck = absl::StatusOr<std::string> (*)(const RunResult& run);

// Scenario: one VM scenario. Pure data.
struct Scenario {
  std::string name;     // VM id and test name, [a-z0-9-]+
  std::string title;    // one line for reports
  std::string cmdline;  // kiln.* keys (the root/exec keys included)
  ScenarioCheck check;
};

// PrintTo(scenario, os): gtest printer (prints the name).
void PrintTo(const Scenario& scenario, std::ostream* os);

// The kernel command line of the cgroup scenarios, without kiln.cgroup.
inline constexpr absl::string_view kCgroupCheckCmdline =
    "kiln.root=/dev/vda kiln.exec=/usr/lib/kiln/cgroup-check";

// kDelegateUid: the uid (and gid) the cgroup-delegated scenarios pass as kiln.delegate.
inline constexpr int kDelegateUid = 1000;

// CgroupScenarios(): cgroup-rw, cgroup-ro, cgroup-off, cgroup-bad-value, cgroup-delegated,
// cgroup-delegate-ro (file comment).
const std::vector<Scenario>& CgroupScenarios();

// kAgentVsockCmdline: the agent-vsock scenario's command line (boots the builder disk).
inline constexpr absl::string_view kAgentVsockCmdline =
    "kiln.root=/dev/vda kiln.cgroup=rw kiln.exec=/usr/local/bin/kiln-vsock-check";

// AgentVsockScenario(): agent-vsock (file comment). Its Artifacts::root_disk is the builder
// disk (//images/rootfs:builder_disk), not the test root.
const Scenario& AgentVsockScenario();

// FindScenario(name): the cgroup scenario named `name`; NotFound listing the names otherwise.
absl::StatusOr<Scenario> FindScenario(absl::string_view name);

// The checks (pure), exposed for unit tests.
absl::StatusOr<std::string> CheckCgroupRw(const RunResult& run);
absl::StatusOr<std::string> CheckCgroupRo(const RunResult& run);
absl::StatusOr<std::string> CheckCgroupOff(const RunResult& run);
absl::StatusOr<std::string> CheckBadValue(const RunResult& run);
absl::StatusOr<std::string> CheckCgroupDelegated(const RunResult& run);
absl::StatusOr<std::string> CheckDelegateRo(const RunResult& run);
absl::StatusOr<std::string> CheckAgentVsock(const RunResult& run);

// ScenarioVmOptions: VM size for scenarios.
struct ScenarioVmOptions {
  int vcpus = 2;
  int memory_mib = 512;
  absl::Duration deadline = absl::Seconds(180);
};

// ScenarioVmConfig(scenario, artifacts, options): the VmConfig (id = scenario.name, the root
// disk read-only as /dev/vda, cmdline = scenario.cmdline; work_dir left to VmFactory). Pure.
VmConfig ScenarioVmConfig(const Scenario& scenario, const Artifacts& artifacts,
                          const ScenarioVmOptions& options = ScenarioVmOptions());

// ScenarioOutcome: the result of RunScenario, for tests and reports.
struct ScenarioOutcome {
  std::string name;
  absl::Status status;       // ok: passed; else why not (with the log tail if no end marker)
  std::string summary;       // the check's summary when it passed
  absl::Duration duration;   // wall time, all attempts
  int attempts = 0;
  std::string retry_reason;  // non-empty if a soft lockup/panic forced a retry
  std::string log_dir;       // where the serial log was saved ("" if nowhere)
  std::string kernel_version;
  int64_t vmm_peak_rss_bytes = 0;
};

// RunScenario(factory, scenario, artifacts, options): boots the VM, waits for its end
// marker, applies scenario.check. Never fails; the outcome's status says what went wrong.
ScenarioOutcome RunScenario(VmFactory& factory, const Scenario& scenario,
                            const Artifacts& artifacts,
                            const ScenarioVmOptions& options = ScenarioVmOptions());

}  // namespace kiln::harness

#endif  // KILN_HARNESS_SCENARIOS_H_
