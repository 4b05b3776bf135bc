// File: agent/child_signals.h
// -----------------------------------------------------------------------------
//
// The signal state a child process starts with, for every process kiln spawns (the agent's
// build runner and exec, the harness's VMMs): each signal at its default disposition and an
// empty signal mask. Ignored signals and the mask survive execve(2) (signal(7)), so a child
// of a parent that ignores SIGPIPE (the agent, a test runner) would otherwise inherit that.
//
// Example (in the child, between fork and exec):
//
//   if (pid == 0) { kiln::agent::ResetSignalStateForExec(); execvp(argv[0], argv); _exit(127); }
#ifndef KILN_AGENT_CHILD_SIGNALS_H_
#define KILN_AGENT_CHILD_SIGNALS_H_

namespace kiln::agent {

// ResetSignalStateForExec(): sets every signal but SIGKILL/SIGSTOP to SIG_DFL, including the
// two real-time signals glibc reserves (32, 33: sigaction(2) refuses them, so they are reset
// with the raw rt_sigaction system call), and empties the signal mask. Uses only
// async-signal-safe calls. REQUIRES: called in a child between fork(2) and execve(2).
void ResetSignalStateForExec();

}  // namespace kiln::agent

#endif  // KILN_AGENT_CHILD_SIGNALS_H_
