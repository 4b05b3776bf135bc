// File: agent/server.h
// -----------------------------------------------------------------------------
//
// AgentSession: the guest side of the kiln agent protocol on one channel. It reads frames,
// and for each request runs a thin handler (Kata rpc.rs style: decode, validate, DoX()
// returning Status, encode the reply or an Error):
//
//   Hello     -> Ready (or Error FailedPrecondition on a major version mismatch)
//   Ping      -> Pong (health from /proc)
//   Secret    -> stored for this session (memory only; wiped when the session ends)
//   BuildJob  -> refused if it names an undelivered secret; receives the context and preload
//                streams into the work dir; runs the BuildRunner (if any); BuildResult and
//                the image stream. Without a runner: Error Unimplemented.
//   Exec      -> ExecStarted, stdout/stderr streams, ExecResult
//
// A request before Hello gets Error FailedPrecondition. A message that does not decode gets
// an Error and the session goes on (the framing is intact); a framing error gets an Error and
// Serve() returns (the channel must be reset). See PROTOCOL.md "Errors".
//
// Example (agent main loop):
//
//   Connection conn(stream.get());
//   AgentSession session(&conn, options);
//   absl::Status s = session.Serve();   // returns when the host goes away
//
// or the whole loop (one session after another on a virtio-serial port kept open):
//
//   ServeChannel([&] { return OpenVirtioSerial("/sys", "kiln.agent"); }, options,
//                {.keep_open_on_eof = true});
#ifndef KILN_AGENT_SERVER_H_
#define KILN_AGENT_SERVER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/connection.h"
#include "agent/protocol/messages.h"
#include "agent/transport.h"

namespace kiln::agent {

// BuildInputs: what a BuildRunner gets: the job, its received files and its secrets.
struct BuildInputs {
  const BuildJob* job = nullptr;
  std::string context_tar;                 // path of the received context tar
  std::vector<std::string> preload_paths;  // paths of the preload archives, job order
  std::map<std::string, std::string> secrets;  // id -> value, exactly the job's secret_ids
  std::function<void(LogStream, absl::string_view)> log;  // sends a Log line
};

// BuildOutcome: what a BuildRunner returns.
struct BuildOutcome {
  int32_t exit_status = 0;
  std::string image_digest;  // "" or sha256:<hex>
  std::string image_path;    // "" or a file streamed back as the image archive
  std::vector<Phase> phases;
  std::string error;
};

// BuildRunner: runs a build (dockerd + BuildKit, in //agent's build runner; fakes in tests).
using BuildRunner = std::function<absl::StatusOr<BuildOutcome>(const BuildInputs&)>;

// WarmUpInputs: what a WarmUpRunner gets (a WarmUp request, PROTOCOL.md 1.1): the received
// base image archives (request order), the budget (ms; 0: the runner's default) and the log.
struct WarmUpInputs {
  std::vector<std::string> preload_paths;
  uint64_t deadline_ms = 0;
  std::function<void(LogStream, absl::string_view)> log;
};

// WarmUpRunner: starts the build daemon before any job and loads the base images (job_runner.h
// MakeBuildRunners). Returns the outcome (exit_status 0 + phases, or 1 + error) or a status
// the host gets as an Error (FailedPrecondition: a daemon is already up or a job already ran).
using WarmUpRunner = std::function<absl::StatusOr<BuildOutcome>(const WarmUpInputs&)>;

// AgentOptions: the agent's configuration.
struct AgentOptions {
  std::string agent_version = "kiln-agent 0.1";
  std::string proc_root = "/proc";        // for health
  std::string work_dir = "/run/kiln-agent";  // job inputs are received below it
  uint64_t max_context_bytes = 16ull << 30;  // per stream, bytes
  uint64_t max_exec_stdin_bytes = 64ull << 20;
  int io_timeout_ms = 60000;              // per frame write / stream read
  // default_exec_deadline_ms: the deadline of an Exec whose deadline_ms is 0 (PROTOCOL.md).
  uint64_t default_exec_deadline_ms = kDefaultExecDeadlineMs;
  BuildRunner runner;                     // empty: no "build" capability
  // warm_up: answers WarmUp (capability "warm"); empty: WarmUp gets Error Unimplemented. The
  // base images are received into <work_dir>/warm-up/ and removed after the call.
  WarmUpRunner warm_up;
  // allow_exec: offer the "exec" capability. Off: an Exec gets Error Unimplemented (its
  // stdin stream is dropped) and nothing is run (the session fuzzer runs so).
  bool allow_exec = true;
  // keep_failed_jobs: a job that fails (the runner's error, or exit_status != 0) leaves its
  // dir <work_dir>/<job_id> in place for inspection in a kept builder (issue 6): the context,
  // the received base images, and the build work dir with the daemons' logs and data roots
  // (the daemons themselves are stopped). A Log line names the dir. Only the last failed
  // job's dir is kept: the next job, in any session, clears the work dir first (a dockerd data
  // root in the guest's RAM is tens of MB). The secret files are wiped as after any job (they
  // never live below work_dir); what the build's steps wrote into layers before the failure
  // stays, as it would in any build cache. Off: every job dir is removed.
  bool keep_failed_jobs = false;
};

// AgentSession: serves one channel. Not thread-safe.
class AgentSession {
 public:
  AgentSession(Connection* conn, AgentOptions options)
      : conn_(conn), options_(std::move(options)) {}

  // Serve(): handles requests until the channel ends. Returns Unavailable when the host
  // closed the channel, the framing error (after sending an Error) if the input lost its
  // framing, or a write error.
  absl::Status Serve();

 private:
  absl::Status Handle(const Frame& frame);  // errors returned here end the session
  absl::Status OnHello(const Hello& m);
  absl::Status OnPing(const Ping& m);
  absl::Status OnSecret(const Secret& m);
  absl::Status OnBuildJob(const BuildJob& m);
  absl::Status OnWarmUp(const WarmUp& m);
  absl::Status OnExec(const Exec& m);
  // Replies with an Error for a request-level failure; returns only write errors.
  absl::Status Reply(const absl::Status& s);

  Connection* conn_;
  AgentOptions options_;
  bool hello_ = false;
  std::map<std::string, std::string> secrets_;
  std::set<uint32_t> discard_;  // streams of refused requests, dropped until their StreamEnd
  uint32_t next_stream_ = 2;  // agent stream ids: even
};

// ServeLoopOptions: how ServeChannel() serves one host session after another.
struct ServeLoopOptions {
  bool once = false;   // serve one session, then return (a builder VM without keep)
  int retry_ms = 200;  // wait after a failed open and after an idle end of stream, ms
  // keep_open_on_eof: keep the channel open when a session ends with end of stream
  // (Unavailable) and serve the next session on the same stream. Required for a
  // virtio-serial port: the guest driver (virtio_console, port_fops_release) discards the
  // port's unread input on close, so closing and reopening between host sessions drops a
  // Hello that arrived in between (issue 6: exec into a kept builder timed out). The port
  // reads end of stream while no host is connected; data that arrives while the agent
  // waits stays queued as long as the port stays open. Off for vsock (one stream per
  // accepted connection).
  bool keep_open_on_eof = false;
  int max_sessions = 0;  // stop after this many sessions (0: never; for tests)
  std::function<void(const std::string&)> say;  // log lines ("session ended: ..."); may be empty
};

// ChannelOpener: opens the channel (a virtio-serial port) or accepts the next connection
// (vsock). Errors are retried after retry_ms.
using ChannelOpener = std::function<absl::StatusOr<std::unique_ptr<ByteStream>>()>;

// ServeChannel(open, options, loop): the agent's serve loop: opens the channel, serves an
// AgentSession on it, and after the session ends serves the next one (reusing the stream
// after end of stream if loop.keep_open_on_eof, else closing it and opening again). Open
// errors are reported once through loop.say and retried every loop.retry_ms. Returns with
// loop.once after the first session: OK if it ended OK or with end of stream (Unavailable),
// else its error; with loop.max_sessions after that many sessions: OK. Otherwise never.
absl::Status ServeChannel(const ChannelOpener& open, const AgentOptions& options,
                          const ServeLoopOptions& loop);

// RunExec(conn, exec, stdin_data, first_stream, timeout_ms, default_deadline_ms): the Exec
// handler's executor: runs the command, sends ExecStarted, its stdout/stderr as Chunk frames
// + StreamEnd on first_stream / first_stream + 2, and ExecResult. If the program cannot be
// started, sends only ExecResult{exit_code 127, error}. Returns only channel errors.
//   - The exec ends when the child (argv[0]'s process) exits, even if a process it started
//     in the background still holds stdout/stderr (`sh -c 'sleep 1d & echo hi'` returns at
//     once with exit 0 and "hi\n"); output already in the pipes is sent, later writes of the
//     leftover process are not; the leftover process is not killed.
//   - exec.deadline_ms (default_deadline_ms, in ms, when 0): when it passes the child's
//     process group is killed (SIGKILL) and ExecResult says "deadline of N ms exceeded".
// Sets SIGPIPE to SIG_IGN for the process (a child that leaves its stdin unread must not kill
// the agent); the child starts with default dispositions for every signal.
absl::Status RunExec(Connection& conn, const Exec& exec, const std::string& stdin_data,
                     uint32_t first_stream, int timeout_ms,
                     uint64_t default_deadline_ms = kDefaultExecDeadlineMs);

}  // namespace kiln::agent

#endif  // KILN_AGENT_SERVER_H_
