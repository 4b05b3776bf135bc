#include "agent/child_signals.h"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

namespace kiln::agent {

void ResetSignalStateForExec() {
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, &dfl, nullptr) == 0) continue;
    // glibc refuses the real-time signals it reserves (32, 33) with EINVAL, yet an inherited
    // SIG_IGN of them survives exec too: reset them through the kernel (SIG_DFL is 0).
    struct {
      void* handler;
      unsigned long flags;
      void* restorer;
      uint64_t mask;
    } kernel_dfl = {nullptr, 0, nullptr, 0};
    syscall(SYS_rt_sigaction, sig, &kernel_dfl, nullptr, sizeof(uint64_t));
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

}  // namespace kiln::agent
