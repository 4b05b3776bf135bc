// File: init/supervisor.cc
#include "init/supervisor.h"

#include <signal.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::init {

SpawnSpec SpawnSpecFor(const Config& config) {
  SpawnSpec spec;
  spec.argv = config.exec;
  spec.uid = config.uid;
  spec.gid = config.gid;
  spec.env = {absl::StrCat("PATH=", kDefaultPath),
              config.uid == 0 ? "HOME=/root" : "HOME=/", "TERM=linux"};
  return spec;
}

bool IsForwardedSignal(int sig) {
  switch (sig) {
    case SIGTERM:
    case SIGINT:
    case SIGHUP:
    case SIGQUIT:
    case SIGUSR1:
    case SIGUSR2:
    case SIGWINCH:
    case SIGPWR:
      return true;
    default:
      return false;
  }
}

absl::StatusOr<ProgramExit> Supervise(Sys& sys, Console& console, const SpawnSpec& spec,
                                      const SuperviseOptions& options) {
  ASSIGN_OR_RETURN(pid_t pid, sys.Spawn(spec));
  const int64_t start = sys.BoottimeMs();
  const int64_t deadline_at =
      options.deadline_ms == 0 ? -1 : start + static_cast<int64_t>(options.deadline_ms);
  int64_t term_sent_at = -1;
  bool kill_sent = false;
  ProgramExit result;
  for (;;) {
    // Reap everything that has ended: the program, or any orphan.
    for (;;) {
      ASSIGN_OR_RETURN(ReapResult r, sys.ReapAny());
      if (r.kind == ReapResult::kNoneReady) break;
      if (r.kind == ReapResult::kNoChildren) {
        return absl::InternalError(
            absl::StrCat("supervise: no children left, program pid ", pid, " never reaped"));
      }
      if (r.pid == pid) {
        result.wait_status = r.wait_status;
        return result;
      }
    }
    // The deadline: SIGTERM, then SIGKILL after the grace period.
    const int64_t now = sys.BoottimeMs();
    if (deadline_at >= 0 && now >= deadline_at && term_sent_at < 0) {
      console.Step("deadline",
                   absl::StrCat("deadline_ms=", options.deadline_ms, " pid=", pid,
                                " signal=", SIGTERM));
      result.deadline_hit = true;
      term_sent_at = now;
      RETURN_IF_ERROR(sys.Kill(pid, SIGTERM));
    }
    if (term_sent_at >= 0 && !kill_sent && now >= term_sent_at + options.term_grace_ms) {
      console.Step("deadline", absl::StrCat("pid=", pid, " signal=", SIGKILL));
      kill_sent = true;
      RETURN_IF_ERROR(sys.Kill(pid, SIGKILL));
    }
    int64_t timeout = -1;
    if (deadline_at >= 0 && term_sent_at < 0) timeout = deadline_at - now;
    if (term_sent_at >= 0 && !kill_sent) timeout = term_sent_at + options.term_grace_ms - now;
    if (kill_sent) timeout = 100;  // SIGKILL cannot be ignored; only poll the reaper
    ASSIGN_OR_RETURN(int sig, sys.WaitSignal(timeout < 0 ? -1 : std::max<int64_t>(timeout, 0)));
    if (IsForwardedSignal(sig)) RETURN_IF_ERROR(sys.Kill(pid, sig));
  }
}

int KillRemaining(Sys& sys, Console& console, int64_t grace_ms) {
  int reaped = 0;
  for (int sig : {SIGTERM, SIGKILL}) {
    absl::Status s = sys.KillAll(sig);
    if (!s.ok()) console.Warning("shutdown", s);
    const int64_t start = sys.BoottimeMs();
    for (;;) {
      absl::StatusOr<ReapResult> r = sys.ReapAny();
      if (!r.ok()) {
        console.Warning("shutdown", r.status());
        return reaped;
      }
      if (r->kind == ReapResult::kNoChildren) return reaped;
      if (r->kind == ReapResult::kReaped) {
        ++reaped;
        continue;
      }
      const int64_t left = start + grace_ms - sys.BoottimeMs();
      if (left <= 0) break;
      absl::StatusOr<int> waited = sys.WaitSignal(std::min<int64_t>(left, 50));
      if (!waited.ok()) {
        console.Warning("shutdown", waited.status());
        return reaped;
      }
    }
  }
  return reaped;
}

}  // namespace kiln::init
