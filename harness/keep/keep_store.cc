// File: harness/keep/keep_store.cc
#include "harness/keep/keep_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/file/file.h"
#include "nlohmann/json.hpp"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::harness {
namespace {

using json = nlohmann::json;

}  // namespace

std::string FormatKeepTime(absl::Time t) {
  if (t == absl::InfiniteFuture()) return "never";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

namespace {

absl::StatusOr<absl::Time> ParseTime(const std::string& s) {
  if (s == "never") return absl::InfiniteFuture();
  absl::Time t;
  std::string err;
  if (!absl::ParseTime("%Y-%m-%dT%H:%M:%E*SZ", s, absl::UTCTimeZone(), &t, &err)) {
    return absl::InvalidArgumentError(absl::StrCat("bad time \"", s, "\": ", err));
  }
  return t;
}

bool IsAbsolute(const std::string& p) { return !p.empty() && p[0] == '/'; }

bool StateDirExists(const std::string& dir) {
  struct stat st;
  return ::stat(dir.c_str(), &st) == 0 || errno != ENOENT;  // other errors: let Acquire say
}

// kMaxRecordBytes: a record file larger than this is not one of ours (they are ~1 KiB).
constexpr off_t kMaxRecordBytes = 64 << 10;

// Holds an exclusive flock on <dir>/.lock for its lifetime.
class DirLock {
 public:
  // Acquire(dir, create): with `create`, a missing dir is made (0700, parents too); an
  // existing dir's mode is never changed. Without it, a missing dir is NotFound.
  static absl::StatusOr<DirLock> Acquire(const std::string& dir, bool create) {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) {
      if (errno != ENOENT) return PosixError(errno, "stat state dir", dir);
      if (!create) {
        return absl::NotFoundError(absl::StrCat("state dir ", dir, " does not exist"));
      }
      std::error_code ec;
      std::filesystem::create_directories(dir, ec);
      if (ec) return PosixError(ec.value(), "create state dir", dir);
      ::chmod(dir.c_str(), 0700);
    } else if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat("state dir ", dir, " is not a directory"));
    }
    std::string path = dir + "/.lock";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return PosixError(errno, "open", path);
    while (::flock(fd, LOCK_EX) != 0) {
      if (errno != EINTR) {
        int e = errno;
        ::close(fd);
        return PosixError(e, "flock", path);
      }
    }
    return DirLock(fd);
  }
  DirLock(DirLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  ~DirLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the flock
  }

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_;
};

// Waits until `p` is no longer alive or `timeout` passes; returns whether it is gone.
bool WaitGone(const ProcessIdentity& p, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (ProcessAlive(p)) {
    if (absl::Now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// IsKeptWorkDir(r): r.work_dir is a real directory (no symlink in its path) holding the
// marker WriteKeepMarker wrote for r.id: only then is it removed recursively.
bool IsKeptWorkDir(const KeepRecord& r) {
  if (r.work_dir.empty() || !IsAbsolute(r.work_dir) || r.work_dir == "/") return false;
  char resolved[PATH_MAX];
  if (::realpath(r.work_dir.c_str(), resolved) == nullptr || r.work_dir != resolved) return false;
  const std::string marker = absl::StrCat(r.work_dir, "/", kKeepMarkerName);
  struct stat st;
  if (::lstat(marker.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > 256) return false;
  std::ifstream in(marker);
  std::string id;
  std::getline(in, id);
  return id == r.id;
}

bool IsVmmSocketDirName(absl::string_view dir) {
  if (!absl::StartsWith(dir, kVmmSocketDirPrefix)) return false;
  absl::string_view rest = dir.substr(std::string_view(kVmmSocketDirPrefix).size());
  return rest.size() == 6 && std::all_of(rest.begin(), rest.end(), [](char c) {
           return absl::ascii_isalnum(static_cast<unsigned char>(c));
         });
}

// RemoveVmmSocketDir(dir): in a real (not symlinked) kVmmSocketDirPrefix dir: its sockets and
// empty "*.sock.lock" files, then rmdir (a dir holding anything else is left). "" or already
// gone: OK.
absl::Status RemoveVmmSocketDir(const std::string& dir) {
  if (dir.empty() || !IsVmmSocketDirName(dir)) return absl::OkStatus();
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) {
    return errno == ENOENT ? absl::OkStatus() : PosixError(errno, "lstat", dir);
  }
  if (!S_ISDIR(st.st_mode)) return absl::OkStatus();  // a symlink or file: not ours
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      const std::string path = absl::StrCat(dir, "/", name);
      if (::lstat(path.c_str(), &st) != 0) continue;
      if (S_ISSOCK(st.st_mode) ||
          (S_ISREG(st.st_mode) && st.st_size == 0 && absl::EndsWith(name, ".sock.lock"))) {
        ::unlink(path.c_str());
      }
    }
    ::closedir(d);
  }
  // Anything else in it (ENOTEMPTY) is not the VMM's: the dir stays, and so does the record's
  // teardown success (else `kilnctl builders rm` could never finish).
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT && errno != ENOTEMPTY && errno != EEXIST) {
    return PosixError(errno, "rmdir", dir);
  }
  return absl::OkStatus();
}

absl::Status RemoveVmFiles(const KeepRecord& r) {
  absl::Status first;
  struct stat st;
  // Only a socket: a record may name anything, and a regular file is not the VM's to delete.
  if (!r.channel_socket.empty() && ::lstat(r.channel_socket.c_str(), &st) == 0 &&
      S_ISSOCK(st.st_mode) && ::unlink(r.channel_socket.c_str()) != 0 && errno != ENOENT) {
    first = PosixError(errno, "unlink", r.channel_socket);
  }
  if (IsKeptWorkDir(r)) {
    std::error_code ec;
    std::filesystem::remove_all(r.work_dir, ec);
    if (ec && first.ok()) first = PosixError(ec.value(), "remove work dir", r.work_dir);
  }
  if (absl::Status s = RemoveVmmSocketDir(r.vmm_socket_dir); !s.ok() && first.ok()) first = s;
  return first;
}

RecordLiveness Observe(const KeepRecord& r) {
  RecordLiveness l;
  l.vmm_alive = ProcessAlive(r.vmm_process);
  l.owner_alive = r.owner.pid > 0 && ProcessAlive(r.owner);
  return l;
}

}  // namespace

absl::StatusOr<std::pair<uint64_t, char>> ParseProcStat(absl::string_view stat) {
  size_t close = stat.rfind(')');
  if (close == absl::string_view::npos) {
    return absl::InvalidArgumentError("proc stat: no ')' after comm");
  }
  std::vector<absl::string_view> f =
      absl::StrSplit(stat.substr(close + 1), ' ', absl::SkipEmpty());
  // After comm: f[0] = state (field 3), ..., starttime is field 22 -> f[19].
  if (f.size() < 20 || f[0].size() != 1) {
    return absl::InvalidArgumentError("proc stat: too few fields after comm");
  }
  uint64_t start = 0;
  if (!absl::SimpleAtoi(f[19], &start)) {
    return absl::InvalidArgumentError(absl::StrCat("proc stat: bad starttime \"", f[19], "\""));
  }
  return std::make_pair(start, f[0][0]);
}

absl::StatusOr<ProcessIdentity> IdentifyProcess(pid_t pid) {
  if (pid <= 0) return absl::InvalidArgumentError(absl::StrCat("bad pid ", pid));
  std::string path = absl::StrCat("/proc/", pid, "/stat");
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("no process ", pid));
  std::stringstream ss;
  ss << in.rdbuf();
  ASSIGN_OR_RETURN(auto parsed, ParseProcStat(ss.str()));
  if (parsed.second == 'Z' || parsed.second == 'X') {
    return absl::NotFoundError(absl::StrCat("process ", pid, " has exited (zombie)"));
  }
  return ProcessIdentity{pid, parsed.first};
}

bool ProcessAlive(const ProcessIdentity& p) {
  if (p.pid <= 0) return false;
  absl::StatusOr<ProcessIdentity> now = IdentifyProcess(p.pid);
  return now.ok() && now->start_ticks == p.start_ticks;
}

const char* KeepStateName(KeepState s) {
  return s == KeepState::kBuilding ? "building" : "kept";
}

absl::Status ValidateKeepId(absl::string_view id) {
  if (id.empty() || id.size() > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("builder id must be 1..128 characters, got ", id.size()));
  }
  for (char c : id) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
          c == '-')) {
      return absl::InvalidArgumentError(
          absl::StrCat("builder id \"", id, "\" has a character outside [A-Za-z0-9._-]"));
    }
  }
  if (id[0] == '.') {
    return absl::InvalidArgumentError(
        absl::StrCat("builder id \"", id, "\" may not start with '.' (hidden files are skipped)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateKeepRecord(const KeepRecord& r) {
  RETURN_IF_ERROR(ValidateKeepId(r.id));
  if (r.vmm.empty()) return absl::InvalidArgumentError("record.vmm is empty");
  // pid 1 is init: never a VMM, and kill(-1) would signal every process.
  if (r.vmm_process.pid <= 1) return absl::InvalidArgumentError("record.vmm_pid must be > 1");
  if (r.owner.pid < 0 || r.owner.pid == 1) {
    return absl::InvalidArgumentError("record.owner_pid must be 0 (none) or > 1");
  }
  if (!IsAbsolute(r.channel_socket)) {
    return absl::InvalidArgumentError("record.channel_socket must be an absolute path");
  }
  if (!IsAbsolute(r.serial_log)) {
    return absl::InvalidArgumentError("record.serial_log must be an absolute path");
  }
  if (!r.work_dir.empty()) {
    // The work dir is removed recursively with the builder: accept only what VmFactory makes,
    // <work root>/<vm id> holding the serial log, so that a corrupted or hand-edited record
    // cannot aim the removal at another tree (/home, /var/lib, ...).
    if (!IsAbsolute(r.work_dir) || r.work_dir == "/") {
      return absl::InvalidArgumentError("record.work_dir must be an absolute path other than /");
    }
    std::vector<absl::string_view> parts =
        absl::StrSplit(absl::string_view(r.work_dir).substr(1), '/');
    for (absl::string_view p : parts) {
      if (p.empty() || p == "." || p == "..") {
        return absl::InvalidArgumentError(
            absl::StrCat("record.work_dir \"", r.work_dir, "\" is not a normalized path"));
      }
    }
    if (parts.size() < 2 || parts.back() != r.id) {
      return absl::InvalidArgumentError(absl::StrCat(
          "record.work_dir \"", r.work_dir, "\" must be <work root>/<id> (id \"", r.id, "\")"));
    }
    if (!absl::StartsWith(r.serial_log, r.work_dir + "/")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "record.serial_log \"", r.serial_log, "\" must be inside record.work_dir \"",
          r.work_dir, "\""));
    }
  }
  if (!r.vmm_socket_dir.empty() && !IsVmmSocketDirName(r.vmm_socket_dir)) {
    return absl::InvalidArgumentError(absl::StrCat("record.vmm_socket_dir \"", r.vmm_socket_dir,
                                                   "\" must be ", kVmmSocketDirPrefix,
                                                   "XXXXXX"));
  }
  if (r.expires < r.created) return absl::InvalidArgumentError("record.expires is before created");
  return absl::OkStatus();
}

std::string KeepRecordToJson(const KeepRecord& r) {
  json j = {
      {"id", r.id},
      {"state", KeepStateName(r.state)},
      {"vmm", r.vmm},
      {"vmm_pid", r.vmm_process.pid},
      {"vmm_start_ticks", r.vmm_process.start_ticks},
      {"owner_pid", r.owner.pid},
      {"owner_start_ticks", r.owner.start_ticks},
      {"channel_socket", r.channel_socket},
      {"channel_transport", ChannelTransportName(r.channel_transport)},
      {"vsock_port", r.vsock_port},
      {"serial_log", r.serial_log},
      {"work_dir", r.work_dir},
      {"job_summary", r.job_summary},
      {"failure", r.failure},
      {"created", FormatKeepTime(r.created)},
      {"expires", FormatKeepTime(r.expires)},
  };
  if (!r.vmm_socket_dir.empty()) j["vmm_socket_dir"] = r.vmm_socket_dir;
  return j.dump(2) + "\n";
}

absl::StatusOr<KeepRecord> KeepRecordFromJson(absl::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("record: not valid JSON");
  if (!j.is_object()) return absl::InvalidArgumentError("record: not a JSON object");
  auto str = [&](const char* k) -> absl::StatusOr<std::string> {
    auto it = j.find(k);
    if (it == j.end() || !it->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("record: field \"", k, "\" must be a string"));
    }
    return it->get<std::string>();
  };
  auto num = [&](const char* k) -> absl::StatusOr<uint64_t> {
    auto it = j.find(k);
    if (it == j.end() || !it->is_number_unsigned()) {
      return absl::InvalidArgumentError(
          absl::StrCat("record: field \"", k, "\" must be a non-negative integer"));
    }
    return it->get<uint64_t>();
  };
  KeepRecord r;
  ASSIGN_OR_RETURN(r.id, str("id"));
  ASSIGN_OR_RETURN(std::string state, str("state"));
  if (state == "building") {
    r.state = KeepState::kBuilding;
  } else if (state == "kept") {
    r.state = KeepState::kKept;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("record: state must be building or kept, got \"", state, "\""));
  }
  ASSIGN_OR_RETURN(r.vmm, str("vmm"));
  ASSIGN_OR_RETURN(uint64_t vmm_pid, num("vmm_pid"));
  ASSIGN_OR_RETURN(r.vmm_process.start_ticks, num("vmm_start_ticks"));
  ASSIGN_OR_RETURN(uint64_t owner_pid, num("owner_pid"));
  ASSIGN_OR_RETURN(r.owner.start_ticks, num("owner_start_ticks"));
  if (vmm_pid > 0x7fffffff || owner_pid > 0x7fffffff) {
    return absl::InvalidArgumentError("record: pid out of range");
  }
  r.vmm_process.pid = static_cast<pid_t>(vmm_pid);
  r.owner.pid = static_cast<pid_t>(owner_pid);
  ASSIGN_OR_RETURN(r.channel_socket, str("channel_socket"));
  if (j.contains("channel_transport")) {  // optional: absent in records before CH support
    ASSIGN_OR_RETURN(std::string transport, str("channel_transport"));
    absl::StatusOr<ChannelTransport> t = ParseChannelTransport(transport);
    if (!t.ok()) return absl::InvalidArgumentError(absl::StrCat("record: ", t.status().message()));
    r.channel_transport = *t;
  }
  if (j.contains("vsock_port")) {
    ASSIGN_OR_RETURN(uint64_t port, num("vsock_port"));
    if (port > 0xffffffffu) return absl::InvalidArgumentError("record: vsock_port out of range");
    r.vsock_port = static_cast<uint32_t>(port);
  }
  ASSIGN_OR_RETURN(r.serial_log, str("serial_log"));
  ASSIGN_OR_RETURN(r.work_dir, str("work_dir"));
  if (j.contains("vmm_socket_dir")) {  // optional: only records of CH VMs with a short socket dir
    ASSIGN_OR_RETURN(r.vmm_socket_dir, str("vmm_socket_dir"));
  }
  ASSIGN_OR_RETURN(r.job_summary, str("job_summary"));
  ASSIGN_OR_RETURN(r.failure, str("failure"));
  ASSIGN_OR_RETURN(std::string created, str("created"));
  ASSIGN_OR_RETURN(std::string expires, str("expires"));
  absl::StatusOr<absl::Time> c = ParseTime(created);
  if (!c.ok()) return absl::InvalidArgumentError(absl::StrCat("record: created: ", c.status().message()));
  absl::StatusOr<absl::Time> e = ParseTime(expires);
  if (!e.ok()) return absl::InvalidArgumentError(absl::StrCat("record: expires: ", e.status().message()));
  r.created = *c;
  r.expires = *e;
  absl::Status v = ValidateKeepRecord(r);
  if (!v.ok()) return absl::InvalidArgumentError(absl::StrCat("record: ", v.message()));
  return r;
}

std::vector<ReapDecision> PlanReap(const std::vector<KeepRecord>& records,
                                   const std::vector<RecordLiveness>& liveness, absl::Time now,
                                   int max_kept) {
  std::vector<ReapDecision> out;
  std::vector<const KeepRecord*> kept_left;
  for (size_t i = 0; i < records.size(); ++i) {
    const KeepRecord& r = records[i];
    RecordLiveness l = i < liveness.size() ? liveness[i] : RecordLiveness{};
    if (!l.vmm_alive) {
      out.push_back({r.id, "vm-dead"});
    } else if (r.state == KeepState::kBuilding && !l.owner_alive) {
      out.push_back({r.id, "orphan"});
    } else if (r.state == KeepState::kKept && r.expires <= now) {
      out.push_back({r.id, "expired"});
    } else if (r.state == KeepState::kKept) {
      kept_left.push_back(&r);
    }
  }
  if (max_kept >= 0 && static_cast<int>(kept_left.size()) > max_kept) {
    std::sort(kept_left.begin(), kept_left.end(), [](const KeepRecord* a, const KeepRecord* b) {
      return a->created != b->created ? a->created < b->created : a->id < b->id;
    });
    size_t excess = kept_left.size() - static_cast<size_t>(max_kept);
    for (size_t i = 0; i < excess; ++i) out.push_back({kept_left[i]->id, "over-cap"});
  }
  return out;
}

absl::Status WriteKeepMarker(const KeepRecord& r) {
  if (r.work_dir.empty()) return absl::InvalidArgumentError("record.work_dir is empty");
  const std::string path = absl::StrCat(r.work_dir, "/", kKeepMarkerName);
  return file::WriteFileAtomically(path, absl::StrCat(r.id, "\n"));
}

absl::Status TeardownVmm(const KeepRecord& r, const TeardownOptions& options) {
  const ProcessIdentity& p = r.vmm_process;
  if (p.pid <= 1) {
    return absl::InvalidArgumentError(absl::StrCat("builder ", r.id, ": VMM pid ", p.pid,
                                                   " is not a VMM; nothing signalled"));
  }
  if (ProcessAlive(p) && options.clean_shutdown) {
    // Best effort; the signals follow. When the agent could not even be asked (e.g. it is busy
    // with the job of a harness that died), there is nothing to wait for.
    if (options.clean_shutdown(r).ok()) WaitGone(p, options.clean_grace);
  }
  if (ProcessAlive(p)) {
    // The VMM leads its own process group (agent/process makes one at spawn): signal the
    // group so helpers die too. Otherwise only the pid.
    // Never our own group (a record naming this process or its group leader).
    const pid_t pgid = ::getpgid(p.pid);
    pid_t target = pgid == p.pid && pgid > 1 && pgid != ::getpgrp() ? -p.pid : p.pid;
    ::kill(target, SIGTERM);
    if (!WaitGone(p, options.term_grace)) {
      if (ProcessAlive(p)) ::kill(target, SIGKILL);
      if (!WaitGone(p, absl::Seconds(5))) {
        return absl::DeadlineExceededError(
            absl::StrCat("VMM pid ", p.pid, " of builder ", r.id, " survived SIGKILL for 5 s"));
      }
    }
  }
  return RemoveVmFiles(r);
}

std::string KeepStore::DefaultDir() {
  const char* env = ::getenv(kKeepStateDirEnv);
  if (env != nullptr && env[0] != '\0') return env;
  return kDefaultKeepStateDir;
}

absl::Status KeepStore::PutLocked(const KeepRecord& r) {
  RETURN_IF_ERROR(ValidateKeepRecord(r));
  return file::WriteFileAtomically(absl::StrCat(dir_, "/", r.id, ".json"), KeepRecordToJson(r),
                                   0600);
}

absl::Status KeepStore::Put(const KeepRecord& r) {
  RETURN_IF_ERROR(ValidateKeepRecord(r));
  ASSIGN_OR_RETURN(DirLock lock, DirLock::Acquire(dir_, /*create=*/true));
  return PutLocked(r);
}

absl::Status KeepStore::RemoveRecordFile(absl::string_view id) {
  std::string path = absl::StrCat(dir_, "/", id, ".json");
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return PosixError(errno, "unlink", path);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<KeepRecord>> KeepStore::ReadAll() {
  std::vector<KeepRecord> out;
  DIR* d = ::opendir(dir_.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return out;
    return PosixError(errno, "opendir", dir_);
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n.empty() || n[0] == '.' || !absl::EndsWith(n, ".json")) continue;
    names.push_back(n);
  }
  ::closedir(d);
  skipped_.clear();
  for (const std::string& n : names) {
    const std::string path = dir_ + "/" + n;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) continue;  // gone meanwhile
    if (!S_ISREG(st.st_mode)) {  // a symlink or another type: never followed
      skipped_.push_back(absl::StrCat(n, ": not a regular file"));
      continue;
    }
    if (st.st_size > kMaxRecordBytes) {
      skipped_.push_back(absl::StrCat(n, ": ", st.st_size, " bytes, over ", kMaxRecordBytes));
      continue;
    }
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    absl::StatusOr<KeepRecord> r = KeepRecordFromJson(ss.str());
    if (!r.ok()) {  // not ours or corrupt: left alone, but said
      skipped_.push_back(absl::StrCat(n, ": ", r.status().message()));
      continue;
    }
    if (r->id + ".json" != n) {
      skipped_.push_back(absl::StrCat(n, ": its id is \"", r->id, "\""));
      continue;
    }
    out.push_back(*std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const KeepRecord& a, const KeepRecord& b) {
    return a.created != b.created ? a.created < b.created : a.id < b.id;
  });
  return out;
}

absl::Status KeepStore::ReapLocked(const std::vector<KeepRecord>& records,
                                   const std::vector<ReapDecision>& plan,
                                   const TeardownOptions& options) {
  absl::Status first;
  for (const ReapDecision& d : plan) {
    auto it = std::find_if(records.begin(), records.end(),
                           [&](const KeepRecord& r) { return r.id == d.id; });
    if (it == records.end()) continue;
    absl::Status s = TeardownVmm(*it, options);
    if (s.ok()) s = RemoveRecordFile(it->id);
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

absl::StatusOr<std::vector<ReapDecision>> KeepStore::Keep(const KeepRecord& r, int max_kept,
                                                          const TeardownOptions& options) {
  RETURN_IF_ERROR(ValidateKeepRecord(r));
  ASSIGN_OR_RETURN(DirLock lock, DirLock::Acquire(dir_, /*create=*/true));
  RETURN_IF_ERROR(PutLocked(r));
  ASSIGN_OR_RETURN(std::vector<KeepRecord> all, ReadAll());
  // Only the cap here (the rest is Gc's job): every record counts as alive.
  std::vector<RecordLiveness> live(all.size(), RecordLiveness{true, true});
  std::vector<ReapDecision> plan;
  for (const ReapDecision& d : PlanReap(all, live, absl::InfinitePast(), max_kept)) {
    if (d.reason == "over-cap" && (d.id != r.id || max_kept == 0)) plan.push_back(d);
  }
  RETURN_IF_ERROR(ReapLocked(all, plan, options));
  return plan;
}

absl::StatusOr<KeepListing> KeepStore::List(absl::Time now) {
  (void)now;
  if (!StateDirExists(dir_)) return KeepListing{};  // nothing was ever kept here
  ASSIGN_OR_RETURN(DirLock lock, DirLock::Acquire(dir_, /*create=*/false));
  ASSIGN_OR_RETURN(std::vector<KeepRecord> all, ReadAll());
  KeepListing out;
  std::vector<ReapDecision> dead;
  for (const KeepRecord& r : all) {
    if (ProcessAlive(r.vmm_process)) {
      out.records.push_back(r);
    } else {
      dead.push_back({r.id, "vm-dead"});
    }
  }
  // Cleaning is best effort here: one record whose files cannot be removed must not hide
  // the others (its record file is removed all the same).
  for (const ReapDecision& d : dead) {
    auto it = std::find_if(all.begin(), all.end(), [&](const KeepRecord& r) { return r.id == d.id; });
    (void)RemoveVmFiles(*it);
    (void)RemoveRecordFile(d.id);
  }
  out.cleaned = std::move(dead);
  out.skipped = std::move(skipped_);
  return out;
}

absl::StatusOr<KeepRecord> KeepStore::Get(absl::string_view id, absl::Time now) {
  RETURN_IF_ERROR(ValidateKeepId(id));
  if (!StateDirExists(dir_)) {
    return absl::NotFoundError(absl::StrCat("no kept builder \"", id, "\" in ", dir_,
                                            " (see `kilnctl builders list`)"));
  }
  ASSIGN_OR_RETURN(DirLock lock, DirLock::Acquire(dir_, /*create=*/false));
  ASSIGN_OR_RETURN(std::vector<KeepRecord> all, ReadAll());
  auto it = std::find_if(all.begin(), all.end(), [&](const KeepRecord& r) { return r.id == id; });
  if (it == all.end()) {
    return absl::NotFoundError(absl::StrCat("no kept builder \"", id, "\" in ", dir_,
                                            " (see `kilnctl builders list`)"));
  }
  if (!ProcessAlive(it->vmm_process)) {
    RETURN_IF_ERROR(ReapLocked(all, {{it->id, "vm-dead"}}, TeardownOptions{}));
    return absl::NotFoundError(absl::StrCat("kept builder \"", id, "\" is gone: its VMM (pid ",
                                            it->vmm_process.pid,
                                            ") has exited; its record was removed"));
  }
  if (it->state == KeepState::kKept && it->expires <= now) {
    return absl::FailedPreconditionError(absl::StrCat(
        "kept builder \"", id, "\" expired at ", FormatKeepTime(it->expires),
        "; `kilnctl builders gc` reaps it (or `rm` it)"));
  }
  return *it;
}

absl::Status KeepStore::Remove(absl::string_view id, const TeardownOptions& options) {
  RETURN_IF_ERROR(ValidateKeepId(id));
  if (!StateDirExists(dir_)) {
    return absl::NotFoundError(absl::StrCat("no kept builder \"", id, "\" in ", dir_,
                                            " (see `kilnctl builders list`)"));
  }
  ASSIGN_OR_RETURN(DirLock lock, DirLock::Acquire(dir_, /*create=*/false));
  ASSIGN_OR_RETURN(std::vector<KeepRecord> all, ReadAll());
  auto it = std::find_if(all.begin(), all.end(), [&](const KeepRecord& r) { return r.id == id; });
  if (it == all.end()) {
    return absl::NotFoundError(absl::StrCat("no kept builder \"", id, "\" in ", dir_));
  }
  RETURN_IF_ERROR(TeardownVmm(*it, options));
  return RemoveRecordFile(id);
}

absl::StatusOr<std::vector<ReapDecision>> KeepStore::Gc(absl::Time now,
                                                        const TeardownOptions& options,
                                                        int max_kept) {
  if (!StateDirExists(dir_)) return std::vector<ReapDecision>{};
  ASSIGN_OR_RETURN(DirLock lock, DirLock::Acquire(dir_, /*create=*/false));
  ASSIGN_OR_RETURN(std::vector<KeepRecord> all, ReadAll());
  std::vector<RecordLiveness> live;
  for (const KeepRecord& r : all) live.push_back(Observe(r));
  std::vector<ReapDecision> plan = PlanReap(all, live, now, max_kept);
  RETURN_IF_ERROR(ReapLocked(all, plan, options));
  return plan;
}

}  // namespace kiln::harness
