// File: init/main.cc
// kiln's init: PID 1 of every kiln VM (see init/README.md and init/pid1.h).
#include <cerrno>

#include "init/console.h"
#include "init/pid1.h"
#include "init/syscalls.h"
#include "third_party/absl_ext/posix_error.h"

int main() {
  kiln::init::LinuxSys sys;
  if (sys.GetPid() != 1) {
    // Run by mistake on a host: mounting over its /proc and powering it off would be bad.
    sys.WriteConsole(kiln::init::FormatFatal(
        "start", kiln::PosixError(EPERM, "kiln init", "must run as PID 1 (it mounts, switches "
                                                      "root and powers off)")));
    return 2;
  }
  kiln::init::RunPid1(sys, kiln::init::Pid1Options{});
  // PowerOff does not return; if it somehow did, exiting PID 1 panics the kernel, which
  // with panic=-1 and QEMU's -no-reboot ends the VM too.
  for (;;) sys.PowerOff();
}
