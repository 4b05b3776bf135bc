// File: agent/protocol/messages.h
// -----------------------------------------------------------------------------
//
// The messages of the kiln agent protocol (agent/PROTOCOL.md "Messages"): one C++ struct per
// control frame type, its limits, and the codec between a struct and a Frame. Bulk bytes
// (build contexts, base images, the result image, exec stdin/stdout/stderr) are not messages:
// they travel as kChunk frames on the stream ids a message announces (see stream.h).
//
// Every message is validated twice: by EncodeMessage() before it is sent (a sender bug is
// caught at the sender) and by DecodeMessage() after it arrives (a bad peer is refused with a
// clear InvalidArgument naming the field, e.g. "Secret.id: byte 0x2f at offset 3 is not in
// [A-Za-z0-9_.-]").
//
// Example (host side):
//
//   ASSIGN_OR_RETURN(Frame f, EncodeMessage(Hello{}));
//   ... send EncodeFrame(f), read a frame `reply` ...
//   ASSIGN_OR_RETURN(Ready ready, DecodeAs<Ready>(reply));
//   RETURN_IF_ERROR(CheckCompatible(ready.protocol_major, ready.protocol_minor));
#ifndef KILN_AGENT_PROTOCOL_MESSAGES_H_
#define KILN_AGENT_PROTOCOL_MESSAGES_H_

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/protocol/frame.h"
#include "agent/protocol/text.h"

namespace kiln::agent {

// ---------------------------------------------------------------------------------------
// Versions and limits.

// kProtocolMajor / kProtocolMinor: this library's protocol version. Peers with a different
// major version refuse each other (FailedPrecondition); minor versions only add optional
// message types and capabilities (PROTOCOL.md "Versioning").
inline constexpr uint16_t kProtocolMajor = 1;
inline constexpr uint16_t kProtocolMinor = 1;

inline constexpr size_t kMaxVersionString = 128;      // Hello/Ready version strings, bytes
inline constexpr size_t kMaxCapabilities = 64;        // Ready.capabilities entries
inline constexpr size_t kMaxErrorMessage = 64 << 10;  // Error/ExecResult/BuildResult text
// kMaxSecretValue: Secret.value, bytes: BuildKit's own limit (its secrets provider refuses
// larger values), 500 KiB = 512000 bytes, so that any secret a build can use fits (a CA
// bundle of a few hundred KiB). A Secret frame (id + value + two length fields) stays far
// below kMaxPayload.
inline constexpr size_t kMaxSecretValue = 500 << 10;
inline constexpr size_t kMaxDockerfile = 256 << 10;   // BuildJob.dockerfile, bytes
inline constexpr size_t kMaxPath = 4096;              // paths, bytes
inline constexpr size_t kMaxShortText = 512;          // target, image refs, tag, phase names
inline constexpr size_t kMaxBuildArgs = 1024;         // BuildJob.build_args entries
inline constexpr size_t kMaxBuildArgValue = 32 << 10;  // bytes
inline constexpr size_t kMaxSecretsPerJob = 256;      // BuildJob.secret_ids entries
inline constexpr size_t kMaxPreloadImages = 64;       // BuildJob.preload_images entries
inline constexpr size_t kMaxPhases = 64;              // BuildResult.phases entries
inline constexpr size_t kMaxLogLine = 64 << 10;       // Log.text, bytes
inline constexpr size_t kMaxArgv = 4096;              // Exec.argv / Exec.env entries
inline constexpr size_t kMaxArg = 128 << 10;          // one argv / env entry, bytes
// kMaxSecretsTotalBytes: the most secret value bytes the agent holds at once (all the Secrets
// sent before one BuildJob); more is refused with ResourceExhausted.
inline constexpr size_t kMaxSecretsTotalBytes = 4 << 20;
static_assert(kMaxSecretValue + kMaxIdentifierLength + 8 <= kMaxPayload,
              "a Secret of the largest value must fit in one frame");

// kMaxJobLogBytes: the most Log text one BuildJob sends (the sum of Log.text sizes). Past it
// the agent keeps the head (the first kJobLogHeadBytes, sent live) and the tail (the last
// kJobLogTailBytes, sent when the build ends), and sends one system Log line between them
// saying how many bytes and lines were dropped. The host can size its buffers from this:
// a job's Log text is at most kMaxJobLogBytes + kMaxLogLine bytes.
inline constexpr size_t kJobLogHeadBytes = 6 << 20;
inline constexpr size_t kJobLogTailBytes = 2 << 20;
inline constexpr size_t kMaxJobLogBytes = kJobLogHeadBytes + kJobLogTailBytes;

// kDefaultExecDeadlineMs: the deadline the agent applies to an Exec with deadline_ms 0
// (30 min); the process group is killed with SIGKILL when it passes.
inline constexpr uint64_t kDefaultExecDeadlineMs = 30 * 60 * 1000;

// Capability names an agent may list in Ready.capabilities.
inline constexpr char kCapHealth[] = "health";
inline constexpr char kCapExec[] = "exec";
inline constexpr char kCapBuild[] = "build";
// kCapWarm: the agent answers WarmUp (protocol 1.1).
inline constexpr char kCapWarm[] = "warm";

// ---------------------------------------------------------------------------------------
// Messages. Field order in each struct is the wire order.

// Hello (host -> agent, stream 0): opens (or re-opens) a session; the agent drops any state
// of a previous session and answers Ready (or Error FailedPrecondition on a major mismatch).
struct Hello {
  uint16_t protocol_major = kProtocolMajor;
  uint16_t protocol_minor = kProtocolMinor;
  std::string host_version;  // free text, <= kMaxVersionString
  bool operator==(const Hello&) const = default;
};

// Ready (agent -> host): the agent's versions and capabilities ([a-z0-9_.-]{1,64} each).
struct Ready {
  uint16_t protocol_major = kProtocolMajor;
  uint16_t protocol_minor = kProtocolMinor;
  std::string agent_version;
  std::vector<std::string> capabilities;
  bool operator==(const Ready&) const = default;
};

// Ping (host -> agent): asks for a Pong carrying the same nonce.
struct Ping {
  uint64_t nonce = 0;
  bool operator==(const Ping&) const = default;
};

// Pong (agent -> host): health. Loads are /proc/loadavg values times 1000.
struct Pong {
  uint64_t nonce = 0;
  uint64_t uptime_ms = 0;
  uint32_t load1_milli = 0;
  uint32_t load5_milli = 0;
  uint32_t load15_milli = 0;
  uint64_t mem_total_bytes = 0;
  uint64_t mem_available_bytes = 0;
  bool operator==(const Pong&) const = default;
};

// ErrorMessage (either way, frame type kError): a canonical absl::StatusCode (1..16, the
// gRPC numbering) and a UTF-8 message. Code 0 (OK) is invalid.
struct ErrorMessage {
  absl::StatusCode code = absl::StatusCode::kUnknown;
  std::string message;
  bool operator==(const ErrorMessage&) const = default;
};

// Secret (host -> agent): one build secret, sent before the BuildJob that names it. The id is
// an identifier (text.h); the value is opaque bytes, <= kMaxSecretValue.
struct Secret {
  std::string id;
  std::string value;
  bool operator==(const Secret&) const = default;
};

// NetworkMode: BuildKit's network for RUN steps (docker build --network).
enum class NetworkMode : uint8_t { kNone = 0, kHost = 1, kDefault = 2 };

// BuildArg: one --build-arg; key is [A-Za-z_][A-Za-z0-9_]{0,255}, value UTF-8.
struct BuildArg {
  std::string key;
  std::string value;
  bool operator==(const BuildArg&) const = default;
};

// PreloadImage: a base image archive (docker save / OCI layout tar) the agent loads before
// the build, streamed on `stream_id` (host-allocated, odd); `ref` names it (UTF-8).
struct PreloadImage {
  std::string ref;
  uint32_t stream_id = 0;
  bool operator==(const PreloadImage&) const = default;
};

// BuildJob (host -> agent): the build request. Announces the context stream (a tar) and the
// preload streams, which follow the BuildJob frame. Every id in secret_ids must have been
// delivered by a Secret in this session, else the agent answers Error FailedPrecondition.
struct BuildJob {
  std::string job_id;                 // identifier
  uint32_t context_stream = 0;        // host stream id (odd, != 0) carrying the context tar
  std::string dockerfile_path = "Dockerfile";  // relative to the context, no "..", no NUL
  std::string dockerfile;             // contents; empty: use dockerfile_path in the context
  std::vector<BuildArg> build_args;   // <= kMaxBuildArgs, unique keys
  std::string target;                 // stage name, may be empty
  NetworkMode network = NetworkMode::kNone;
  std::vector<std::string> secret_ids;         // identifiers, unique, <= kMaxSecretsPerJob
  std::vector<PreloadImage> preload_images;    // <= kMaxPreloadImages
  std::string tag;                    // image name to tag, may be empty
  uint64_t deadline_ms = 0;           // wall-clock budget from receipt; 0: none
  bool operator==(const BuildJob&) const = default;
};

// WarmUp (host -> agent, protocol 1.1, capability "warm"): start the BuildKit daemon now and
// load these base images into it, before any job, so that a VM snapshot taken afterwards holds
// a running daemon (warm builders). The preload streams follow the WarmUp frame as a BuildJob's
// do. The agent answers a BuildResult with job_id "warm-up" (exit_status 0 and the phases
// dockerd_start and preload, or exit_status 1 and the error), or Error FailedPrecondition when a
// daemon is already up or a job has run in this agent, Unimplemented without the capability.
// The daemon serves the next BuildJob only (and is stopped with it): one job per warm daemon.
// No secret may be in the agent when it arrives (Secrets sent before it are refused with it).
struct WarmUp {
  std::vector<PreloadImage> preload_images;  // <= kMaxPreloadImages
  uint64_t deadline_ms = 0;                  // budget of the daemon start + loads; 0: none
  bool operator==(const WarmUp&) const = default;
};

// kWarmUpJobId: the job_id of the BuildResult that answers a WarmUp.
inline constexpr char kWarmUpJobId[] = "warm-up";

// LogStream: where a Log line came from.
enum class LogStream : uint8_t { kStdout = 1, kStderr = 2, kSystem = 3 };

// Log (agent -> host): one line of live output, secret values already redacted, no trailing
// newline, UTF-8 (the agent runs SanitizeUtf8 on raw output), <= kMaxLogLine (longer lines are
// split). time_ms: since the job was received.
struct Log {
  LogStream stream = LogStream::kSystem;
  uint64_t time_ms = 0;
  std::string text;
  bool operator==(const Log&) const = default;
};

// Phase: the duration of one build phase ("receive_context", "preload", "build", "export").
struct Phase {
  std::string name;  // [a-z0-9_.-]{1,64}
  uint64_t duration_ms = 0;
  bool operator==(const Phase&) const = default;
};

// BuildResult (agent -> host): the outcome. If image_stream != 0 (agent stream, even), the
// image archive follows on that stream. image_digest: "" or "sha256:" + 64 lowercase hex.
struct BuildResult {
  std::string job_id;
  int32_t exit_status = 0;
  std::string image_digest;
  uint32_t image_stream = 0;
  std::vector<Phase> phases;
  std::string error;
  bool operator==(const BuildResult&) const = default;
};

// Exec (host -> agent): run argv[0] (absolute path or PATH lookup) with argv and env
// ("KEY=VALUE"; an empty list inherits the agent's environment), in cwd ("" = "/"). stdin_stream != 0
// (host, odd): stdin bytes follow on that stream; 0: stdin is /dev/null. deadline_ms 0: none.
struct Exec {
  std::vector<std::string> argv;  // >= 1 entries, no NUL bytes
  std::vector<std::string> env;   // each contains '=' after a non-empty key, no NUL
  std::string cwd;
  uint32_t stdin_stream = 0;
  uint64_t deadline_ms = 0;
  bool operator==(const Exec&) const = default;
};

// ExecStarted (agent -> host): the process runs; its stdout and stderr follow as Chunk frames
// on two distinct agent stream ids (even), each closed by StreamEnd, then ExecResult.
struct ExecStarted {
  uint32_t pid = 0;
  uint32_t stdout_stream = 0;
  uint32_t stderr_stream = 0;
  bool operator==(const ExecStarted&) const = default;
};

// ExecResult (agent -> host): exit_code (0..255) if the process exited, else -1 and the signal
// number; error is non-empty if it could not be started (then exit_code is 127).
struct ExecResult {
  int32_t exit_code = 0;
  int32_t signal = 0;
  uint64_t duration_ms = 0;
  std::string error;
  bool operator==(const ExecResult&) const = default;
};

// StreamEnd (either way, on the stream's id): the stream carried total_bytes; aborted means
// the sender gave up (error says why) and the receiver must discard what it got.
struct StreamEnd {
  uint32_t stream_id = 0;  // carried in the frame header
  uint64_t total_bytes = 0;
  bool aborted = false;
  std::string error;
  bool operator==(const StreamEnd&) const = default;
};

// Message: any control message.
using Message = std::variant<Hello, Ready, Ping, Pong, ErrorMessage, Secret, BuildJob, Log,
                             BuildResult, Exec, ExecStarted, ExecResult, StreamEnd, WarmUp>;

// ---------------------------------------------------------------------------------------
// Codec.

// Validate(m): the rules of PROTOCOL.md for `m` (limits, identifiers, UTF-8, stream id
// parity). Returns InvalidArgument "<Message>.<field>: <rule>" for the first broken rule.
absl::Status Validate(const Message& m);

// EncodeMessage(m): validates `m` and returns its frame (stream id 0, except StreamEnd).
// Errors: Validate()'s; ResourceExhausted if the payload would exceed kMaxPayload.
absl::StatusOr<Frame> EncodeMessage(const Message& m);

// DecodeMessage(frame): the message in a control frame, validated. Errors (all mean: answer
// Error and go on, the framing is intact):
//   Unimplemented    unknown frame type (newer peer)
//   InvalidArgument  a Chunk frame (not a message); truncated field; length/count over a
//                    limit; bad UTF-8; bad identifier; trailing bytes; broken rule
absl::StatusOr<Message> DecodeMessage(const Frame& frame);

// FrameTypeOf(m): the frame type that carries `m`.
FrameType FrameTypeOf(const Message& m);

// MessageName(m): "Hello", "BuildJob", ...
std::string MessageName(const Message& m);

// DecodeAs<T>(frame): DecodeMessage() expecting a T. If the frame is an Error message,
// returns its status (ToStatus); another type gives FailedPrecondition
// "expected Ready, got Pong".
template <typename T>
absl::StatusOr<T> DecodeAs(const Frame& frame);

// ToStatus(e): the absl::Status an Error message stands for.
absl::Status ToStatus(const ErrorMessage& e);

// FromStatus(s): the Error message for a non-OK status (message truncated to
// kMaxErrorMessage and sanitized to UTF-8). REQUIRES: !s.ok().
ErrorMessage FromStatus(const absl::Status& s);

// CheckCompatible(peer_major, peer_minor): OK if the peer's major version equals
// kProtocolMajor; else FailedPrecondition "protocol major version mismatch: peer speaks 2.0,
// this side speaks 1.1".
absl::Status CheckCompatible(uint16_t peer_major, uint16_t peer_minor);

// IsHostStream(id) / IsAgentStream(id): stream id parity. The host allocates odd ids, the
// agent even ids (never 0), so both can open streams without coordination.
inline bool IsHostStream(uint32_t id) { return id % 2 == 1; }
inline bool IsAgentStream(uint32_t id) { return id != 0 && id % 2 == 0; }

// ---------------------------------------------------------------------------------------
// Implementation details.

template <typename T>
absl::StatusOr<T> DecodeAs(const Frame& frame) {
  absl::StatusOr<Message> m = DecodeMessage(frame);
  if (!m.ok()) return m.status();
  if (T* t = std::get_if<T>(&*m)) return std::move(*t);
  if (auto* e = std::get_if<ErrorMessage>(&*m)) return ToStatus(*e);
  return absl::FailedPreconditionError("expected " + MessageName(Message(T{})) + ", got " +
                                       MessageName(*m));
}

}  // namespace kiln::agent

#endif  // KILN_AGENT_PROTOCOL_MESSAGES_H_
