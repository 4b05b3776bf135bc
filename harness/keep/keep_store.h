// File: harness/keep/keep_store.h
// -----------------------------------------------------------------------------
//
// Kept builders (issue 6, `keep_failed_builders`): a builder VM whose build failed may stay up
// for a while so that a person can list it, read its serial log and exec into it
// (`kilnctl builders ...`, tools/kilnctl/). This file holds:
//
//   * KeepRecord: one kept (or being-built) builder, pure data, stored as JSON
//     `<state dir>/<id>.json`, written atomically (temp file + fsync + rename + fsync dir);
//   * PlanReap: the pure decision of which records to reap (expired, VM dead, orphaned by a
//     dead harness, over the cap: oldest first), table-tested;
//   * KeepStore: the thin executor over the state directory (flock'ed), with the process
//     checks (/proc/<pid>/stat start time against pid reuse) and the teardown of a VMM
//     (optional clean shutdown hook, SIGTERM to its process group, grace, SIGKILL, sockets and
//     work dir removed).
//
// Record life cycle (the builder client's side is in harness/keep/keep_builder.h):
//   RegisterBuilder -> state "building" (owner = the harness process)
//   build failed    -> state "kept", expires = now + ttl        (KeepFailedBuilder)
//   build passed    -> record removed, VM torn down as always     (ReleaseBuilder)
//   harness died while "building" -> Gc reaps it ("orphan")
//
// Example:
//
//   KeepStore store(KeepStore::DefaultDir());
//   ASSIGN_OR_RETURN(KeepListing l, store.List(absl::Now()));
//   for (const KeepRecord& r : l.records) std::cout << r.id << "\n";
//   ASSIGN_OR_RETURN(std::vector<ReapDecision> reaped, store.Gc(absl::Now(), TeardownOptions{}));
#ifndef KILN_HARNESS_KEEP_STORE_H_
#define KILN_HARNESS_KEEP_STORE_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "harness/vmm/vmm.h"

namespace kiln::harness {

// kKeepStateDirEnv: environment variable naming the state directory.
inline constexpr char kKeepStateDirEnv[] = "KILN_STATE_DIR";
// kDefaultKeepStateDir: the state directory when neither a flag nor $KILN_STATE_DIR is set.
inline constexpr char kDefaultKeepStateDir[] = "/var/lib/kiln/builders";

// ProcessIdentity: a process as (pid, start time). The start time (field 22 of
// /proc/<pid>/stat, clock ticks since boot) defends against pid reuse: a pid whose start time
// differs is another process.
struct ProcessIdentity {
  pid_t pid = 0;
  uint64_t start_ticks = 0;
  bool operator==(const ProcessIdentity&) const = default;
};

// ParseProcStat(stat): (start_ticks, state char) from the text of /proc/<pid>/stat (the comm
// field may hold spaces and parentheses: fields are counted after the last ')'). Pure.
// InvalidArgument for malformed text.
absl::StatusOr<std::pair<uint64_t, char>> ParseProcStat(absl::string_view stat);

// IdentifyProcess(pid): the ProcessIdentity of a running process. NotFound if there is no
// such process or it is a zombie (it has exited and only waits to be reaped).
absl::StatusOr<ProcessIdentity> IdentifyProcess(pid_t pid);

// ProcessAlive(p): true if p.pid runs (not a zombie) with start time p.start_ticks.
bool ProcessAlive(const ProcessIdentity& p);

// KeepState: where a record is in its life cycle.
enum class KeepState {
  kBuilding,  // the harness (owner) is running the build; reaped if the owner dies
  kKept,      // the build failed; kept until `expires`
};

// KeepStateName(s): "building" or "kept".
const char* KeepStateName(KeepState s);

// KeepRecord: one builder in the state directory. Pure data.
struct KeepRecord {
  std::string id;              // [A-Za-z0-9._-]{1,128}, not "." / ".."; the file <id>.json
  KeepState state = KeepState::kKept;
  std::string vmm;             // backend name, e.g. "qemu"
  ProcessIdentity vmm_process; // the VMM (leader of its own process group)
  ProcessIdentity owner;       // the harness that booted it (pid 0: none)
  std::string channel_socket;  // host unix socket of the agent channel (absolute)
  // channel_transport: how channel_socket is spoken (harness/vmm/vmm.h): virtio-serial (QEMU) or
  // hybrid-vsock (Cloud Hypervisor: "CONNECT <vsock_port>\n" first). JSON "channel_transport"
  // (ChannelTransportName); a record without it (written before Cloud Hypervisor support) is
  // virtio-serial.
  ChannelTransport channel_transport = ChannelTransport::kVirtioSerial;
  // vsock_port: the guest agent's AF_VSOCK port (hybrid-vsock only). JSON "vsock_port";
  // missing: 1024.
  uint32_t vsock_port = 1024;
  std::string serial_log;      // host file of the guest serial console (absolute)
  std::string work_dir;        // the VM's work dir, removed with the builder (absolute; "" none)
  // vmm_socket_dir: a short socket dir of the VMM outside the work dir (Vm::vmm_socket_dir():
  // Cloud Hypervisor's kVmmSocketDirPrefix + 6 characters), "" none. JSON "vmm_socket_dir",
  // written only when set; missing: "". Removed with the builder: its sockets and empty
  // "*.sock.lock" files (the lock CH leaves beside its API socket), then the dir itself.
  std::string vmm_socket_dir;
  std::string job_summary;     // one line: what was built (job id, Dockerfile, tag, ...)
  std::string failure;         // why the build failed ("" while building)
  absl::Time created = absl::UnixEpoch();
  absl::Time expires = absl::InfiniteFuture();
};

// kVmmSocketDirPrefix: every KeepRecord::vmm_socket_dir is this + 6 characters [A-Za-z0-9]
// (mkdtemp's "/tmp/kiln-ch-XXXXXX" of harness/vmm/cloud_hypervisor.cc).
inline constexpr char kVmmSocketDirPrefix[] = "/tmp/kiln-ch-";

// ValidateKeepRecord(r): OkStatus or InvalidArgument naming the first bad field (id, pid <= 0,
// a relative or empty channel_socket / serial_log, expires before created, and a non-empty
// work_dir that is not what VmFactory makes: a normalized absolute <work root>/<id>, at least
// two components deep, holding serial_log; it is removed recursively with the builder; a
// non-empty vmm_socket_dir that is not kVmmSocketDirPrefix + 6 of [A-Za-z0-9]). Pure.
absl::Status ValidateKeepRecord(const KeepRecord& r);

// KeepRecordToJson(r): the record as a JSON object (times as RFC 3339 UTC strings, pids and
// start ticks as numbers, the transport as its name). Pure.
std::string KeepRecordToJson(const KeepRecord& r);

// KeepRecordFromJson(text): parses and validates a record. InvalidArgument "record: <what>"
// for malformed JSON, a missing/mistyped field, an unknown channel_transport, a vsock_port
// over 2^32-1, or a record ValidateKeepRecord refuses. The optional fields channel_transport
// and vsock_port default to virtio-serial and 1024 (records of older kiln versions). Pure.
absl::StatusOr<KeepRecord> KeepRecordFromJson(absl::string_view text);

// KeepPolicy: how failed builders are kept.
struct KeepPolicy {
  bool keep_failed_builders = false;       // the option; off: failed builders are torn down
  absl::Duration ttl = absl::Minutes(30);  // from the failure to expiry
  int max_kept = 3;                        // cap on kept builders; the oldest is reaped first
  std::string state_dir;                   // "": KeepStore::DefaultDir()
};

// ReapDecision: one record to reap and why ("expired", "vm-dead", "orphan", "over-cap").
struct ReapDecision {
  std::string id;
  std::string reason;
  bool operator==(const ReapDecision&) const = default;
};

// RecordLiveness: the observed state of a record's processes (from ProcessAlive).
struct RecordLiveness {
  bool vmm_alive = false;
  bool owner_alive = false;
};

// PlanReap(records, liveness, now, max_kept): pure. For each record, in this order of
// reasons: its VMM is not alive -> "vm-dead"; state building and owner not alive ->
// "orphan"; state kept and expires <= now -> "expired". Then, if more than max_kept
// (>= 0) kept records remain, the oldest (by created, then id) are "over-cap".
// `liveness` is parallel to `records` (same size, else the extra records count as dead).
std::vector<ReapDecision> PlanReap(const std::vector<KeepRecord>& records,
                                   const std::vector<RecordLiveness>& liveness, absl::Time now,
                                   int max_kept);

// TeardownOptions: how a VMM is stopped.
struct TeardownOptions {
  // clean_shutdown: asked first while the VMM lives (e.g. AgentPowerOff, keep_agent.h); on
  // OK the VMM gets clean_grace to exit, on an error the signals follow at once. Empty:
  // skipped.
  std::function<absl::Status(const KeepRecord&)> clean_shutdown;
  // clean_grace: how long the VMM may take to exit after clean_shutdown.
  absl::Duration clean_grace = absl::Seconds(10);
  // term_grace: after SIGTERM to the process group, before SIGKILL.
  absl::Duration term_grace = absl::Seconds(3);
};

// kKeepMarkerName: the file in a kept builder's work dir that names its record id. A work dir
// is removed recursively with its builder only if it is a real directory (no symlink on its
// path) holding this marker with the record's id: a record alone, corrupt or hand-edited,
// cannot aim the removal at another tree.
inline constexpr char kKeepMarkerName[] = ".kiln-keep";

// WriteKeepMarker(r): writes <r.work_dir>/.kiln-keep holding r.id (the harness does it when it
// registers a builder). InvalidArgument if r.work_dir is empty; errno codes for file errors.
absl::Status WriteKeepMarker(const KeepRecord& r);

// TeardownVmm(r, options): stops r's VMM if it is still the same process (ProcessAlive):
// clean_shutdown, then SIGTERM to its process group (to the pid alone if it does not lead
// its group), term_grace, SIGKILL; then removes the channel socket, the work dir and the
// vmm_socket_dir.
// Returns OkStatus when the VMM is gone; DeadlineExceeded if it survived SIGKILL for 5 s;
// InvalidArgument for a pid <= 1; errno codes if the files cannot be removed. Never signals a
// reused pid, pid 1, or this process's own group. Removes the channel socket only if it is a
// socket, and the work dir only if it holds the kKeepMarkerName marker for r.id; in the
// vmm_socket_dir (a real dir, not a symlink) only sockets and empty regular "*.sock.lock"
// files, then rmdir: a dir holding anything else is left (not an error).
absl::Status TeardownVmm(const KeepRecord& r, const TeardownOptions& options);

// KeepListing: what List() saw.
struct KeepListing {
  std::vector<KeepRecord> records;     // live records, oldest first (expired ones included)
  std::vector<ReapDecision> cleaned;   // records whose VM had died: removed during List
  // skipped: "<file>: <why>" for each *.json in the dir that is not a valid record (corrupt,
  // a symlink, too large, id not matching its name): left alone, never acted on.
  std::vector<std::string> skipped;
};

// KeepStore: the state directory. Every mutating call holds an exclusive flock on
// <dir>/.lock, so several harnesses and kilnctl can share a directory.
class KeepStore {
 public:
  // KeepStore(dir): the directory is created (0700) on first write.
  explicit KeepStore(std::string dir) : dir_(std::move(dir)) {}

  // DefaultDir(): $KILN_STATE_DIR if set and non-empty, else kDefaultKeepStateDir.
  static std::string DefaultDir();

  const std::string& dir() const { return dir_; }

  // Put(r): validates and writes <dir>/<id>.json atomically (creates or replaces).
  // InvalidArgument (ValidateKeepRecord); errno codes for file errors.
  absl::Status Put(const KeepRecord& r);

  // Keep(r, max_kept, options): Put(r), then reaps kept records over max_kept (oldest
  // first; never `r` itself unless max_kept is 0) with TeardownVmm. Returns what was reaped.
  absl::StatusOr<std::vector<ReapDecision>> Keep(const KeepRecord& r, int max_kept,
                                                 const TeardownOptions& options);

  // List(now): every record, oldest first; records whose VMM died are cleaned (socket, work
  // dir, record) and reported in `cleaned`. Unparseable record files are skipped (their
  // names in an Internal error only if nothing else could be read). errno codes for the dir.
  absl::StatusOr<KeepListing> List(absl::Time now);

  // Get(id, now): the live, unexpired record `id`. InvalidArgument for a malformed id;
  // NotFound "no kept builder <id>" for an unknown id, or for one whose VM has died (the
  // record is cleaned); FailedPrecondition "builder <id> expired at <time>" for an expired
  // one (reap it with Gc).
  absl::StatusOr<KeepRecord> Get(absl::string_view id, absl::Time now);

  // Remove(id, options): TeardownVmm + the record file. NotFound for an unknown id; works on
  // expired and dead records too.
  absl::Status Remove(absl::string_view id, const TeardownOptions& options);

  // Gc(now, options, max_kept): reaps what PlanReap decides (expired, vm-dead, orphan,
  // over-cap; max_kept < 0: no cap) and returns the decisions, in order. A teardown error
  // stops nothing: the other records are still reaped; the first error is returned after.
  absl::StatusOr<std::vector<ReapDecision>> Gc(absl::Time now, const TeardownOptions& options,
                                               int max_kept = -1);

 private:
  absl::StatusOr<std::vector<KeepRecord>> ReadAll();
  absl::Status PutLocked(const KeepRecord& r);
  absl::Status RemoveRecordFile(absl::string_view id);
  absl::Status ReapLocked(const std::vector<KeepRecord>& records,
                          const std::vector<ReapDecision>& plan, const TeardownOptions& options);

  std::string dir_;
  std::vector<std::string> skipped_;  // what the last ReadAll skipped
};

// FormatKeepTime(t): RFC 3339 UTC with milliseconds ("2024-05-01T12:00:00.000Z"), or "never"
// for InfiniteFuture. Pure; the format of the record's times.
std::string FormatKeepTime(absl::Time t);

// ValidateKeepId(id): OkStatus or InvalidArgument (pure): [A-Za-z0-9._-]{1,128}, not starting
// with "." (hidden files are never read as records; "." and ".." included).
absl::Status ValidateKeepId(absl::string_view id);

}  // namespace kiln::harness

#endif  // KILN_HARNESS_KEEP_STORE_H_
