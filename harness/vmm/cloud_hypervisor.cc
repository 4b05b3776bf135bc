// File: harness/vmm/cloud_hypervisor.cc
#include "harness/vmm/cloud_hypervisor.h"

#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "harness/vmm/channel.h"
#include "agent/process/process.h"
#include "harness/vmm/vm_process.h"
#include "publish/http.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::harness {
namespace {

constexpr absl::string_view kApiSocketName = "ch-api.sock";

absl::Status MakeDirs(const std::string& path) {
  std::string partial;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    partial += std::string(part);
    if (!partial.empty() && mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
      return PosixError(errno, "mkdir", partial);
    }
    partial += "/";
  }
  return absl::OkStatus();
}

// LogTail(path, max): the last `max` bytes of a file ("" if unreadable).
std::string LogTail(const std::string& path, size_t max = 2000) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  if (s.size() > max) s = "..." + s.substr(s.size() - max);
  return s;
}

absl::Status WithLogTail(const absl::Status& status, const std::string& log_path) {
  std::string tail = LogTail(log_path);
  if (tail.empty()) {
    return absl::Status(status.code(),
                        absl::StrCat(status.message(), " (", log_path, " is empty)"));
  }
  return absl::Status(status.code(),
                      absl::StrCat(status.message(), "; tail of ", log_path, ":\n", tail));
}

// RemoveApiSocketFiles(api_socket, temp_socket_dir): once CH is gone: its API socket (if it is
// still a socket: CH removes it on an orderly exit), the `<api_socket>.lock` CH >= v53 leaves
// (only if it is a regular file), then the temp socket dir (if any; rmdir only, so anything
// else left in it keeps it and is not deleted).
void RemoveApiSocketFiles(const std::string& api_socket, const std::string& temp_socket_dir) {
  struct stat st;
  if (lstat(api_socket.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(api_socket.c_str());
  const std::string lock = ChApiSocketLockPath(api_socket);
  if (lstat(lock.c_str(), &st) == 0 && S_ISREG(st.st_mode)) unlink(lock.c_str());
  if (!temp_socket_dir.empty()) rmdir(temp_socket_dir.c_str());
}

// CloudHypervisorVmImpl: a running CH process with its VM; the process handling is
// VmProcess's.
class CloudHypervisorVmImpl : public CloudHypervisorVm {
 public:
  CloudHypervisorVmImpl(VmConfig config, CloudHypervisorPaths paths, std::string temp_socket_dir,
                        process::Process process, const CloudHypervisorOptions& options,
                        absl::Time start)
      : config_(std::move(config)),
        paths_(std::move(paths)),
        temp_socket_dir_(std::move(temp_socket_dir)),
        api_(paths_.api_socket, options.api_timeout),
        grace_(options.grace),
        vmm_(&config_, std::move(process), start, grace_, [this] {
          if (config_.channel) unlink(config_.channel->host_socket_path.c_str());
          RemoveApiSocketFiles(paths_.api_socket, temp_socket_dir_);
        }) {}
  ~CloudHypervisorVmImpl() override { Kill(); }

  const VmConfig& config() const override { return config_; }
  bool Exited() override { return vmm_.Exited(); }
  absl::StatusOr<VmExit> Wait(absl::Duration timeout) override { return vmm_.Wait(timeout); }

  // Kill: the orderly way first (vm.shutdown, vmm.shutdown: CH exits and removes its
  // sockets), then the process group: SIGTERM, grace, SIGKILL.
  void Kill() override {
    vmm_.Kill([this](process::Process& p) -> std::optional<process::ProcessExit> {
      ChApiClient quick(paths_.api_socket, grace_);
      (void)quick.Call("PUT", "vm.shutdown");
      (void)quick.Call("PUT", "vmm.shutdown");
      absl::StatusOr<process::ProcessExit> e = p.Wait(absl::Now() + grace_);
      if (!e.ok()) return std::nullopt;
      return *e;
    });
  }

  std::string serial_log_path() const override { return paths_.serial_log; }
  std::string vmm_log_path() const override { return paths_.vmm_log; }
  int64_t peak_rss_bytes() const override { return vmm_.peak_rss_bytes(); }
  pid_t vmm_pid() const override { return vmm_.pid(); }
  bool detached() const override { return vmm_.detached(); }
  std::string vmm_socket_dir() const override { return temp_socket_dir_; }

  // Detach: the CH process was spawned without PR_SET_PDEATHSIG (detachable), so once
  // released it outlives this object and the harness, with its API socket, vsock socket and
  // work dir; `kilnctl builders rm|gc` (harness/keep/keep_store.h TeardownVmm) ends it.
  absl::Status Detach() override { return vmm_.Detach(); }

  absl::StatusOr<ChVmState> State() override {
    if (Exited()) {
      return absl::FailedPreconditionError(
          absl::StrCat("VM ", config_.id, ": cloud-hypervisor has exited"));
    }
    ASSIGN_OR_RETURN(std::string body, api_.Call("GET", "vm.info"));
    return ParseChVmInfoState(body);
  }

  const ChApiClient& api() const override { return api_; }

 private:
  VmConfig config_;
  CloudHypervisorPaths paths_;
  std::string temp_socket_dir_;
  ChApiClient api_;
  absl::Duration grace_;
  VmProcess vmm_;  // last: its on_exit uses the members above
};

}  // namespace

// ----------------------------------------------------------------------------
// Pure
// ----------------------------------------------------------------------------

CloudHypervisorPaths CloudHypervisorPathsFor(const VmConfig& config,
                                             absl::string_view socket_dir) {
  CloudHypervisorPaths p;
  p.serial_log = absl::StrCat(config.work_dir, "/serial.log");
  p.vmm_log = absl::StrCat(config.work_dir, "/cloud-hypervisor.log");
  p.api_socket = absl::StrCat(socket_dir, "/", kApiSocketName);
  return p;
}

std::string ChApiSocketLockPath(absl::string_view api_socket) {
  return absl::StrCat(api_socket, ".lock");
}

std::string CloudHypervisorKernelCmdline(const VmConfig& config) {
  std::string user(absl::StripAsciiWhitespace(config.cmdline));
  if (user.empty()) return std::string(kCloudHypervisorBaseCmdline);
  return absl::StrCat(kCloudHypervisorBaseCmdline, " ", user);
}

absl::StatusOr<nlohmann::json> CloudHypervisorVmConfigJson(const VmConfig& config,
                                                           const CloudHypervisorPaths& paths) {
  RETURN_IF_ERROR(ValidateVmConfig(config));
  if (paths.serial_log.empty()) {
    return absl::InvalidArgumentError("CloudHypervisorPaths.serial_log: empty");
  }
  using nlohmann::json;
  json payload = {{"kernel", config.kernel_path},
                  {"cmdline", CloudHypervisorKernelCmdline(config)}};
  if (!config.initrd_path.empty()) payload["initramfs"] = config.initrd_path;
  json vm = {
      {"payload", payload},
      {"cpus", {{"boot_vcpus", config.vcpus}, {"max_vcpus", config.vcpus}}},
      {"memory", {{"size", static_cast<int64_t>(config.memory_mib) << 20}}},
      {"serial", {{"mode", "File"}, {"file", paths.serial_log}}},
      {"console", {{"mode", "Off"}}},
      {"rng", {{"src", "/dev/urandom"}}},
  };
  if (!config.disks.empty()) {
    json disks = json::array();
    for (const Disk& d : config.disks) {
      disks.push_back({{"path", d.path}, {"readonly", d.read_only}});
    }
    vm["disks"] = disks;
  }
  if (config.channel) {
    const Channel& c = *config.channel;
    if (c.vsock_cid < 3) {
      return absl::InvalidArgumentError(absl::StrCat(
          "channel.vsock_cid ", c.vsock_cid, ": guest CIDs start at 3 (0-2 are reserved)"));
    }
    if (c.host_socket_path.size() > kMaxUnixSocketPath) {
      return absl::InvalidArgumentError(
          absl::StrCat("channel.host_socket_path is ", c.host_socket_path.size(),
                       " bytes, over the unix socket limit of ", kMaxUnixSocketPath, ": ",
                       c.host_socket_path));
    }
    vm["vsock"] = {{"cid", c.vsock_cid}, {"socket", c.host_socket_path}};
  }
  return vm;
}

const char* ChVmStateName(ChVmState state) {
  switch (state) {
    case ChVmState::kCreated:
      return "Created";
    case ChVmState::kRunning:
      return "Running";
    case ChVmState::kShutdown:
      return "Shutdown";
    case ChVmState::kPaused:
      return "Paused";
    case ChVmState::kBreakPoint:
      return "BreakPoint";
  }
  return "Unknown";
}

absl::StatusOr<ChVmState> ParseChVmInfoState(absl::string_view body) {
  nlohmann::json j = nlohmann::json::parse(body.begin(), body.end(), nullptr,
                                           /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("vm.info: not a JSON object: \"", absl::CEscape(body.substr(0, 200)), "\""));
  }
  auto it = j.find("state");
  if (it == j.end() || !it->is_string()) {
    return absl::InvalidArgumentError("vm.info: no string \"state\"");
  }
  const std::string s = it->get<std::string>();
  for (ChVmState st : {ChVmState::kCreated, ChVmState::kRunning, ChVmState::kShutdown,
                       ChVmState::kPaused, ChVmState::kBreakPoint}) {
    if (s == ChVmStateName(st)) return st;
  }
  return absl::InvalidArgumentError(absl::StrCat("vm.info: unknown state \"", s, "\""));
}

std::string ChApiErrorText(absl::string_view body) {
  constexpr size_t kMax = 2000;
  std::string text;
  nlohmann::json j = nlohmann::json::parse(body.begin(), body.end(), nullptr,
                                           /*allow_exceptions=*/false);
  bool parsed = false;
  if (j.is_array() && !j.empty() &&
      std::all_of(j.begin(), j.end(), [](const nlohmann::json& e) { return e.is_string(); })) {
    std::vector<std::string> parts;
    for (const nlohmann::json& e : j) parts.push_back(e.get<std::string>());
    text = absl::StrJoin(parts, ": ");
    parsed = true;
  } else if (j.is_object()) {
    auto it = j.find("error");
    if (it != j.end() && it->is_string()) {
      text = it->get<std::string>();
      parsed = true;
    }
  }
  if (!parsed) text = std::string(absl::StripTrailingAsciiWhitespace(body));
  if (text.empty()) return "(empty body)";
  if (text.size() > kMax) text = absl::StrCat(text.substr(0, kMax), "...");
  std::string out;
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (u < 0x20 || u == 0x7f) {
      absl::StrAppend(&out, "\\x", absl::Hex(u, absl::kZeroPad2));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// ----------------------------------------------------------------------------
// ChApiClient
// ----------------------------------------------------------------------------

ChApiClient::ChApiClient(std::string socket_path, absl::Duration timeout)
    : socket_path_(std::move(socket_path)), timeout_(timeout) {}

absl::StatusOr<ChApiResponse> ChApiClient::Request(absl::string_view method,
                                                   absl::string_view endpoint,
                                                   absl::string_view body) const {
  const std::string what = absl::StrCat("cloud-hypervisor API ", method, " ", endpoint);
  if (method != "GET" && method != "PUT") {
    return absl::InvalidArgumentError(absl::StrCat(what, ": method must be GET or PUT"));
  }
  // One transport per request (the client is const and thread-compatible; CH's socket is
  // local, so there is no connection worth keeping). No stall bound: `timeout_` bounds the
  // whole request.
  publish::CurlTransport http(publish::TransportOptions{
      .stall_timeout_ms = 0,
      .unix_socket_path = socket_path_,
      .timeout = std::max(timeout_, absl::Milliseconds(1)),
  });
  publish::HttpRequest req;
  req.method = std::string(method);
  req.url = absl::StrCat("http://localhost/api/v1/", endpoint);
  req.headers.emplace_back("Accept", "application/json");
  if (!body.empty()) {
    req.headers.emplace_back("Content-Type", "application/json");
    req.body = std::string(body);
  }
  absl::StatusOr<publish::HttpResponse> r = http.Do(req);
  if (!r.ok()) {
    return absl::Status(r.status().code(), absl::StrCat(what, ": ", r.status().message()));
  }
  return ChApiResponse{r->status, std::move(r->body)};
}

absl::StatusOr<std::string> ChApiClient::Call(absl::string_view method,
                                              absl::string_view endpoint,
                                              absl::string_view body) const {
  ASSIGN_OR_RETURN(ChApiResponse r, Request(method, endpoint, body));
  if (r.status >= 200 && r.status < 300) return std::move(r.body);
  std::string msg = absl::StrCat("cloud-hypervisor API ", method, " ", endpoint, ": HTTP ",
                                 r.status, ": ", ChApiErrorText(r.body));
  if (r.status == 400) return absl::InvalidArgumentError(msg);
  if (r.status == 404) return absl::NotFoundError(msg);
  if (r.status > 400 && r.status < 500) return absl::FailedPreconditionError(msg);
  return absl::InternalError(msg);
}

// ----------------------------------------------------------------------------
// CloudHypervisorVmm
// ----------------------------------------------------------------------------

absl::StatusOr<std::string> ReadCloudHypervisorVersion(const std::string& binary) {
  std::string cmd = absl::StrCat("'", absl::StrReplaceAll(binary, {{"'", "'\\''"}}),
                                 "' --version 2>/dev/null");
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return PosixError(errno, "popen", binary);
  std::string out;
  char buf[512];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  const int rc = pclose(f);
  constexpr absl::string_view kPrefix = "cloud-hypervisor ";
  const size_t pos = out.find(std::string(kPrefix));
  if (rc != 0 || pos == std::string::npos) {
    return absl::NotFoundError(
        absl::StrCat("cannot run `", binary, " --version` (is Cloud Hypervisor installed?)"));
  }
  std::string rest = out.substr(pos + kPrefix.size());
  return std::string(absl::StripAsciiWhitespace(rest.substr(0, rest.find('\n'))));
}

absl::StatusOr<std::unique_ptr<CloudHypervisorVmm>> CloudHypervisorVmm::Create(
    CloudHypervisorOptions options) {
  if (options.binary.empty()) {
    return absl::InvalidArgumentError("CloudHypervisorOptions.binary: empty");
  }
  ASSIGN_OR_RETURN(std::string version, ReadCloudHypervisorVersion(options.binary));
  return std::unique_ptr<CloudHypervisorVmm>(
      new CloudHypervisorVmm(std::move(options), std::move(version)));
}

std::string CloudHypervisorVmm::Describe() const {
  return absl::StrCat("Cloud Hypervisor ", version_, " (", options_.binary, "), KVM");
}

namespace {

// StartCh(options, config, prepare, restore_dir): Boot's and Restore's common part. Chooses
// the API socket (work_dir, or a short temp dir), calls prepare(paths) (Boot: the vm.create
// JSON; Restore: the restore dir), removes stale sockets, spawns CH (plain, or ChRestoreArgv
// when restore_dir is set) and waits for vmm.ping. Failures after the spawn kill CH and carry
// its log tail.
absl::StatusOr<std::unique_ptr<CloudHypervisorVmImpl>> StartCh(
    const CloudHypervisorOptions& options, const VmConfig& config,
    const std::function<absl::Status(const CloudHypervisorPaths&)>& prepare,
    const std::string& restore_dir) {
  RETURN_IF_ERROR(MakeDirs(config.work_dir));
  // The API socket lives in work_dir unless that path is too long for sun_path.
  std::string socket_dir = config.work_dir;
  std::string temp_socket_dir;
  if (socket_dir.size() + 1 + kApiSocketName.size() > kMaxUnixSocketPath) {
    char tmpl[] = "/tmp/kiln-ch-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return PosixError(errno, "mkdtemp", tmpl);
    temp_socket_dir = socket_dir = tmpl;
  }
  CloudHypervisorPaths paths = CloudHypervisorPathsFor(config, socket_dir);
  std::vector<std::string> argv = {options.binary, "--api-socket", paths.api_socket};
  absl::Status prepared = prepare(paths);
  if (prepared.ok() && !restore_dir.empty()) {
    absl::StatusOr<std::vector<std::string>> r =
        ChRestoreArgv(options.binary, paths.api_socket, restore_dir);
    if (r.ok()) {
      argv = *std::move(r);
    } else {
      prepared = r.status();
    }
  }
  if (!prepared.ok()) {
    if (!temp_socket_dir.empty()) rmdir(temp_socket_dir.c_str());
    return prepared;
  }
  unlink(paths.serial_log.c_str());
  unlink(paths.api_socket.c_str());
  if (config.channel) unlink(config.channel->host_socket_path.c_str());

  const absl::Time start = absl::Now();
  absl::StatusOr<process::Process> process = process::Process::Spawn(
      VmmSpawnOptions(argv, paths.vmm_log, /*die_with_parent=*/!config.detachable));
  if (!process.ok()) {
    if (!temp_socket_dir.empty()) rmdir(temp_socket_dir.c_str());
    return process.status();
  }
  // From here on the Vm owns the process: its destructor tears everything down on error.
  auto vm = std::make_unique<CloudHypervisorVmImpl>(config, paths, temp_socket_dir,
                                                    std::move(*process), options, start);
  auto fail = [&](const absl::Status& s) {
    vm->Kill();
    return WithLogTail(s, paths.vmm_log);
  };

  // Wait for the API to answer vmm.ping, with backoff, while the process lives.
  const absl::Time socket_deadline = absl::Now() + options.socket_timeout;
  absl::Duration pause = absl::Milliseconds(5);
  absl::Status last = absl::UnavailableError("not tried");
  ChApiClient ping(paths.api_socket, std::min(options.api_timeout, options.socket_timeout));
  while (true) {
    if (vm->Exited()) {
      return fail(absl::FailedPreconditionError(absl::StrCat(
          "cloud-hypervisor exited before its API socket ", paths.api_socket, " answered")));
    }
    absl::StatusOr<std::string> pong = ping.Call("GET", "vmm.ping");
    if (pong.ok()) break;
    last = pong.status();
    if (last.code() != absl::StatusCode::kUnavailable) return fail(last);
    if (absl::Now() >= socket_deadline) {
      return fail(absl::DeadlineExceededError(
          absl::StrCat("cloud-hypervisor API socket ", paths.api_socket, " did not answer within ",
                       absl::FormatDuration(options.socket_timeout), " (last: ",
                       last.message(), ")")));
    }
    absl::SleepFor(std::min(pause, socket_deadline - absl::Now()));
    pause = std::min(pause * 2, absl::Milliseconds(100));
  }
  return vm;
}

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Vm>> CloudHypervisorVmm::Boot(const VmConfig& requested) {
  if (!requested.restore_from.empty()) return Restore(requested, requested.restore_from);
  RETURN_IF_ERROR(ValidateVmConfig(requested));
  ASSIGN_OR_RETURN(const VmConfig config, ResolveArtifacts(requested));
  nlohmann::json vm_json;
  ASSIGN_OR_RETURN(std::unique_ptr<CloudHypervisorVmImpl> vm,
                   StartCh(
                       options_, config,
                       [&](const CloudHypervisorPaths& paths) -> absl::Status {
                         ASSIGN_OR_RETURN(vm_json, CloudHypervisorVmConfigJson(config, paths));
                         return absl::OkStatus();
                       },
                       /*restore_dir=*/""));
  auto fail = [&](const absl::Status& s) {
    vm->Kill();
    return WithLogTail(s, vm->vmm_log_path());
  };
  if (absl::StatusOr<std::string> r = vm->api().Call("PUT", "vm.create", vm_json.dump());
      !r.ok()) {
    return fail(r.status());
  }
  if (absl::StatusOr<std::string> r = vm->api().Call("PUT", "vm.boot"); !r.ok()) {
    return fail(r.status());
  }
  return std::unique_ptr<Vm>(std::move(vm));
}

absl::StatusOr<std::unique_ptr<Vm>> CloudHypervisorVmm::Restore(const VmConfig& requested,
                                                                const std::string& snapshot_dir) {
  RETURN_IF_ERROR(ValidateVmConfig(requested));
  ASSIGN_OR_RETURN(const VmConfig config, ResolveArtifacts(requested));
  ASSIGN_OR_RETURN(std::string url, ChFileUrl(snapshot_dir));
  (void)url;
  struct stat st;
  if (stat(snapshot_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::NotFoundError(
        absl::StrCat("cloud-hypervisor snapshot dir ", snapshot_dir, ": missing"));
  }
  const std::string restore_dir = absl::StrCat(config.work_dir, "/restore");
  auto from = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat("restoring cloud-hypervisor from ", snapshot_dir,
                                               ": ", s.message()));
  };
  absl::StatusOr<std::unique_ptr<CloudHypervisorVmImpl>> started =
      StartCh(
          options_, config,
          [&](const CloudHypervisorPaths& paths) {
            return PrepareChRestoreDir(snapshot_dir, restore_dir, config, paths);
          },
          restore_dir);
  if (!started.ok()) return from(started.status());
  std::unique_ptr<CloudHypervisorVmImpl> vm = *std::move(started);
  auto fail = [&](const absl::Status& s) {
    vm->Kill();
    return from(WithLogTail(s, vm->vmm_log_path()));
  };
  absl::StatusOr<ChVmState> state = vm->State();
  if (!state.ok()) return fail(state.status());
  if (*state != ChVmState::kPaused) {
    return fail(absl::FailedPreconditionError(
        absl::StrCat("cloud-hypervisor restored from ", snapshot_dir, ": VM state ",
                     ChVmStateName(*state), ", expected Paused")));
  }
  if (absl::StatusOr<std::string> r = vm->api().Call("PUT", "vm.resume"); !r.ok()) {
    return fail(r.status());
  }
  return std::unique_ptr<Vm>(std::move(vm));
}

// ----------------------------------------------------------------------------
// Snapshot and restore
// ----------------------------------------------------------------------------

absl::StatusOr<std::string> ChFileUrl(absl::string_view dir) {
  if (dir.empty() || dir[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("cloud-hypervisor snapshot dir \"", absl::CEscape(dir),
                     "\": not an absolute path"));
  }
  for (char c : dir) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == ',' || u < 0x20 || u == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("cloud-hypervisor snapshot dir \"", absl::CEscape(dir),
                       "\": ',' or a control character (CH's --restore option syntax)"));
    }
  }
  return absl::StrCat("file://", dir);
}

absl::StatusOr<std::string> ChSnapshotRequestBody(absl::string_view dir) {
  ASSIGN_OR_RETURN(std::string url, ChFileUrl(dir));
  return nlohmann::json{{"destination_url", url}}.dump();
}

absl::StatusOr<std::vector<std::string>> ChRestoreArgv(absl::string_view binary,
                                                       absl::string_view api_socket,
                                                       absl::string_view dir) {
  ASSIGN_OR_RETURN(std::string url, ChFileUrl(dir));
  return std::vector<std::string>{std::string(binary), "--api-socket", std::string(api_socket),
                                  "--restore", absl::StrCat("source_url=", url)};
}

absl::StatusOr<nlohmann::json> RewriteChSnapshotConfig(const nlohmann::json& snapshot_config,
                                                       const VmConfig& config,
                                                       const CloudHypervisorPaths& paths) {
  if (!snapshot_config.is_object()) {
    return absl::InvalidArgumentError("snapshot config.json: not a JSON object");
  }
  nlohmann::json j = snapshot_config;
  const int64_t want_mem = static_cast<int64_t>(config.memory_mib) << 20;
  const nlohmann::json cpus = j.value("cpus", nlohmann::json::object());
  const nlohmann::json mem = j.value("memory", nlohmann::json::object());
  const int64_t have_vcpus = cpus.is_object() ? cpus.value("boot_vcpus", int64_t{-1}) : -1;
  const int64_t have_mem = mem.is_object() ? mem.value("size", int64_t{-1}) : -1;
  if (have_vcpus != config.vcpus || have_mem != want_mem) {
    return absl::FailedPreconditionError(absl::StrCat(
        "snapshot config.json has boot_vcpus ", have_vcpus, ", memory ", have_mem,
        " bytes; the VM asks for ", config.vcpus, " vCPUs, ", want_mem,
        " bytes (a restore cannot change them)"));
  }
  const bool has_vsock = j.contains("vsock") && j["vsock"].is_object();
  if (has_vsock != config.channel.has_value()) {
    return absl::FailedPreconditionError(
        has_vsock ? "snapshot has a vsock device, the VM config no channel"
                  : "the VM config has a channel, the snapshot no vsock device");
  }
  if (has_vsock) {
    j["vsock"]["socket"] = config.channel->host_socket_path;
    j["vsock"]["cid"] = config.channel->vsock_cid;
  }
  if (j.contains("serial") && j["serial"].is_object()) j["serial"]["file"] = paths.serial_log;
  return j;
}

absl::StatusOr<ChSaveStats> SaveChSnapshot(CloudHypervisorVm& vm, const std::string& dir) {
  ASSIGN_OR_RETURN(std::string body, ChSnapshotRequestBody(dir));
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::NotFoundError(
        absl::StrCat("cloud-hypervisor snapshot dir ", dir, ": missing (CH does not create it)"));
  }
  if (vm.Exited()) {
    return absl::FailedPreconditionError(
        absl::StrCat("VM ", vm.config().id, ": cloud-hypervisor has exited"));
  }
  ChSaveStats stats;
  absl::Time t0 = absl::Now();
  RETURN_IF_ERROR(vm.api().Call("PUT", "vm.pause").status());
  stats.pause = absl::Now() - t0;
  t0 = absl::Now();
  RETURN_IF_ERROR(vm.api().Call("PUT", "vm.snapshot", body).status());
  stats.snapshot = absl::Now() - t0;
  int found = 0;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return PosixError(errno, "opendir", dir);
  absl::Status chmod_status;
  while (dirent* e = readdir(d)) {
    const std::string path = absl::StrCat(dir, "/", e->d_name);
    if (lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (chmod(path.c_str(), 0600) != 0 && chmod_status.ok()) {
      chmod_status = PosixError(errno, "chmod", path);
    }
    stats.state_bytes += static_cast<uint64_t>(st.st_size);
    for (const char* f : kChSnapshotFiles) found += (std::string(e->d_name) == f);
  }
  closedir(d);
  RETURN_IF_ERROR(chmod_status);
  if (found == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cloud-hypervisor answered vm.snapshot but wrote none of config.json, state.json, "
        "memory-ranges into ", dir));
  }
  return stats;
}

absl::Status PrepareChRestoreDir(const std::string& snapshot_dir, const std::string& restore_dir,
                                 const VmConfig& config, const CloudHypervisorPaths& paths) {
  for (const char* f : kChSnapshotFiles) {
    const std::string path = absl::StrCat(snapshot_dir, "/", f);
    if (!IsRegularFile(path)) {
      return absl::NotFoundError(absl::StrCat("cloud-hypervisor snapshot ", snapshot_dir,
                                              ": no ", f, " (not a complete CH snapshot)"));
    }
  }
  std::ifstream in(absl::StrCat(snapshot_dir, "/config.json"));
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cloud-hypervisor snapshot ", snapshot_dir, "/config.json: not JSON"));
  }
  ASSIGN_OR_RETURN(nlohmann::json rewritten, RewriteChSnapshotConfig(j, config, paths));
  // What CH would only find out while restoring (its error does not name the file): a
  // state.json that is not JSON, a memory-ranges shorter than the guest RAM config.json has.
  {
    const std::string state_path = absl::StrCat(snapshot_dir, "/state.json");
    std::ifstream state_in(state_path);
    nlohmann::json state = nlohmann::json::parse(state_in, nullptr, /*allow_exceptions=*/false);
    if (state.is_discarded() || !state.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat("cloud-hypervisor snapshot ", state_path,
                                                     ": not a JSON object (corrupt snapshot)"));
    }
    const std::string ram_path = absl::StrCat(snapshot_dir, "/memory-ranges");
    const int64_t want = static_cast<int64_t>(config.memory_mib) << 20;
    struct stat st;
    if (stat(ram_path.c_str(), &st) != 0) return PosixError(errno, "stat", ram_path);
    if (st.st_size < want) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cloud-hypervisor snapshot ", ram_path, ": ", st.st_size, " bytes, shorter than the ",
          want, " bytes of guest RAM in its config.json (truncated snapshot)"));
    }
  }
  RETURN_IF_ERROR(MakeDirs(restore_dir));
  if (chmod(restore_dir.c_str(), 0700) != 0) return PosixError(errno, "chmod", restore_dir);
  for (const char* f : kChSnapshotFiles) {
    const std::string dst = absl::StrCat(restore_dir, "/", f);
    unlink(dst.c_str());
    if (std::string(f) == "config.json") continue;
    const std::string src = absl::StrCat(snapshot_dir, "/", f);
    if (symlink(src.c_str(), dst.c_str()) != 0) return PosixError(errno, "symlink", dst);
  }
  const std::string cfg = absl::StrCat(restore_dir, "/config.json");
  int fd = open(cfg.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return PosixError(errno, "open", cfg);
  const std::string text = rewritten.dump();
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      close(fd);
      return PosixError(err, "write", cfg);
    }
    off += static_cast<size_t>(n);
  }
  if (close(fd) != 0) return PosixError(errno, "close", cfg);
  return absl::OkStatus();
}

// ----------------------------------------------------------------------------
// Channel
// ----------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<agent::FdStream>> ConnectHybridVsockWithRetry(
    absl::string_view uds_path, uint32_t port, absl::Duration timeout,
    const std::function<bool()>& alive, const HybridVsockRetry& retry) {
  const ChannelAddress address{ChannelTransport::kHybridVsock, std::string(uds_path), port};
  const absl::Time deadline = absl::Now() + timeout;
  absl::Duration pause = absl::Milliseconds(std::max(1, retry.initial_backoff_ms));
  const absl::Duration max_pause = absl::Milliseconds(std::max(1, retry.max_backoff_ms));
  absl::Status last;
  int attempts = 0;
  while (true) {
    if (alive && !alive()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "hybrid vsock ", uds_path, " port ", port, ": VM exited after ", attempts,
          " attempt(s)", last.ok() ? "" : absl::StrCat(" (last: ", last.message(), ")")));
    }
    const int64_t remaining_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (remaining_ms <= 0 && attempts > 0) break;
    const int attempt_ms = static_cast<int>(
        std::max<int64_t>(1, std::min<int64_t>(retry.attempt_timeout_ms, remaining_ms)));
    ++attempts;
    absl::StatusOr<std::unique_ptr<agent::FdStream>> s = ConnectChannelOnce(address, attempt_ms);
    if (s.ok()) return s;
    last = s.status();
    if (retry.attempt_errors != nullptr) retry.attempt_errors->push_back(last);
    if (!IsRetryableConnectError(last)) return last;  // bad path, not a vsock muxer, ...
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) break;
    absl::SleepFor(std::min(pause, left));
    pause = std::min(pause * 2, max_pause);
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "hybrid vsock ", uds_path, " port ", port, ": no connection within ",
      absl::FormatDuration(timeout), " after ", attempts, " attempt(s) (last: ", last.message(),
      ")"));
}

absl::StatusOr<std::unique_ptr<agent::FdStream>> ConnectChannel(Vm& vm, absl::Duration timeout) {
  if (!vm.config().channel) {
    return absl::FailedPreconditionError(
        absl::StrCat("VM ", vm.config().id, " has no channel"));
  }
  const Channel& c = *vm.config().channel;
  return ConnectHybridVsockWithRetry(c.host_socket_path, c.vsock_port, timeout,
                                     [&vm] { return !vm.Exited(); });
}

}  // namespace kiln::harness
