// File: harness/keep/keep_builder.cc
#include "harness/keep/keep_builder.h"

#include <dirent.h>
#include <errno.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::harness {
namespace {

std::string ReadWhole(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ppid from /proc/<pid>/stat (field 4), -1 if unreadable.
pid_t ParentOf(pid_t pid) {
  std::string stat = ReadWhole(absl::StrCat("/proc/", pid, "/stat"));
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::vector<absl::string_view> f =
      absl::StrSplit(absl::string_view(stat).substr(close + 1), ' ', absl::SkipEmpty());
  int ppid = -1;
  if (f.size() < 2 || !absl::SimpleAtoi(f[1], &ppid)) return -1;
  return ppid;
}

}  // namespace

absl::StatusOr<pid_t> FindVmmPid(const std::string& channel_socket) {
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return absl::InternalError("cannot open /proc");
  std::vector<pid_t> found;
  const pid_t self = ::getpid();
  while (dirent* e = ::readdir(d)) {
    int pid = 0;
    if (!absl::SimpleAtoi(e->d_name, &pid) || pid <= 0) continue;
    if (ParentOf(pid) != self) continue;
    std::string cmdline = ReadWhole(absl::StrCat("/proc/", pid, "/cmdline"));
    if (cmdline.find(channel_socket) != std::string::npos) found.push_back(pid);
  }
  ::closedir(d);
  if (found.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no child process of this harness names ", channel_socket));
  }
  if (found.size() > 1) {
    return absl::FailedPreconditionError(
        absl::StrCat(found.size(), " child processes name ", channel_socket));
  }
  return found[0];
}

absl::StatusOr<KeepRecord> KeepRecordForVm(const VmConfig& config, const std::string& serial_log,
                                           absl::string_view vmm, ProcessIdentity vmm_process,
                                           ProcessIdentity owner, absl::string_view job_summary,
                                           absl::Time now, ChannelTransport transport) {
  KeepRecord r;
  r.id = config.id;
  r.state = KeepState::kBuilding;
  r.vmm = std::string(vmm);
  r.vmm_process = vmm_process;
  r.owner = owner;
  r.channel_socket = config.channel ? config.channel->host_socket_path : "";
  r.channel_transport = transport;
  if (config.channel) r.vsock_port = config.channel->vsock_port;
  r.serial_log = serial_log;
  r.work_dir = config.work_dir;
  r.job_summary = std::string(job_summary);
  r.created = now;
  r.expires = absl::InfiniteFuture();
  RETURN_IF_ERROR(ValidateKeepRecord(r));
  return r;
}

absl::StatusOr<KeepRecord> RegisterBuilder(KeepStore& store, const Vm& vm,
                                           absl::string_view vmm_name, pid_t vmm_pid,
                                           absl::string_view job_summary,
                                           ChannelTransport transport) {
  const VmConfig& c = vm.config();
  if (!c.channel) return absl::InvalidArgumentError("RegisterBuilder: the VM has no channel");
  if (vmm_pid == 0) {
    ASSIGN_OR_RETURN(vmm_pid, FindVmmPid(c.channel->host_socket_path));
  }
  ASSIGN_OR_RETURN(ProcessIdentity vmm, IdentifyProcess(vmm_pid));
  ASSIGN_OR_RETURN(ProcessIdentity owner, IdentifyProcess(::getpid()));
  ASSIGN_OR_RETURN(KeepRecord r, KeepRecordForVm(c, vm.serial_log_path(), vmm_name, vmm, owner,
                                                 job_summary, absl::Now(), transport));
  r.vmm_socket_dir = vm.vmm_socket_dir();  // removed with the builder
  RETURN_IF_ERROR(ValidateKeepRecord(r));
  if (!r.work_dir.empty()) RETURN_IF_ERROR(WriteKeepMarker(r));  // lets teardown remove it
  RETURN_IF_ERROR(store.Put(r));
  return r;
}

absl::Status KeepFailedBuilder(KeepStore& store, KeepRecord record, absl::string_view failure,
                               const KeepPolicy& policy) {
  if (!policy.keep_failed_builders) {
    return absl::FailedPreconditionError("keep_failed_builders is off");
  }
  if (!ProcessAlive(record.vmm_process)) {
    (void)ReleaseBuilder(store, record.id);
    return absl::FailedPreconditionError(absl::StrCat(
        "builder ", record.id, " cannot be kept: its VMM (pid ", record.vmm_process.pid,
        ") is no longer running"));
  }
  std::string f = absl::StrReplaceAll(failure, {{"\n", " | "}});
  if (f.size() > 4096) f.resize(4096);
  record.state = KeepState::kKept;
  record.failure = f;
  absl::Time now = absl::Now();
  if (record.created > now) record.created = now;
  record.expires = now + policy.ttl;
  return store.Keep(record, policy.max_kept, TeardownOptions{}).status();
}

absl::Status ReleaseBuilder(KeepStore& store, absl::string_view id) {
  std::string path = absl::StrCat(store.dir(), "/", id, ".json");
  RETURN_IF_ERROR(ValidateKeepId(id));
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return absl::InternalError(absl::StrCat("unlink ", path));
  }
  return absl::OkStatus();
}

}  // namespace kiln::harness
