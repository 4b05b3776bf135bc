// File: init/pid1.h
// -----------------------------------------------------------------------------
//
// RunPid1: the whole life of kiln's init, step by step (init/README.md), over a Sys:
//
//   1. block the handled signals (signalfd)                       fatal step=signals
//   2. mount BaseMountPlan(): /proc /sys /dev /dev/pts /dev/shm /run   fatal step=mount
//      and reopen stdio on /dev/console                           warning step=console
//   3. read /proc/cmdline, ParseCmdline                           fatal step=config (errno=0)
//   4. mount cgroup2 per kiln.cgroup                              warning step=cgroup
//  4b. with kiln.delegate: delegate /sys/fs/cgroup/kiln-builder    fatal step=delegate
//   5. load /etc/kiln/modules.load                                fatal step=modules
//  5b. device nodes: /dev/net/tun 0666 (BaseDeviceNodes)           fatal step=devices
//   6. if kiln.root: ExecuteRootSwitch(RootSwitchPlan(...))        fatal step=root
//   7. "KILN-INIT: ready uptime_ms=<ms>"; without kiln.exec: power off now
//   8. Supervise kiln.exec                                        fatal step=exec
//   9. "KILN-INIT: exit status=<n>|signal=<n> uptime_ms=<ms>", KillRemaining, sync, power off
//
// Every fatal error prints one "KILN-INIT: fatal ..." line, then kills what runs, syncs and
// powers off. With LinuxSys, RunPid1 never returns (PowerOff does not); with a fake Sys it
// returns after the fake's PowerOff, so tests can check the console lines and the calls.
//
// Example (init/main.cc):
//
//   kiln::init::LinuxSys sys;
//   kiln::init::RunPid1(sys, kiln::init::Pid1Options{});
#ifndef KILN_INIT_PID1_H_
#define KILN_INIT_PID1_H_

#include <cstdint>
#include <string>

#include "init/root_switch.h"
#include "init/syscalls.h"

namespace kiln::init {

// Pid1Options: paths and bounds of RunPid1 (defaults are what the VM uses).
struct Pid1Options {
  std::string cmdline_path = "/proc/cmdline";
  std::string modules_list_path = "/etc/kiln/modules.load";
  std::string console_path = "/dev/console";
  RootSwitchOptions root_switch;
  int64_t shutdown_grace_ms = 1000;  // KillRemaining's grace per signal
};

// RunPid1: steps 1-9 above. Ends with sys.PowerOff() on every path.
void RunPid1(Sys& sys, const Pid1Options& options);

}  // namespace kiln::init

#endif  // KILN_INIT_PID1_H_
