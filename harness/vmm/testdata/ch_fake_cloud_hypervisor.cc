// File: harness/vmm/testdata/ch_fake_cloud_hypervisor.cc
// A fake `cloud-hypervisor` for cloud_hypervisor_vm_lifecycle_test: serves the REST API on
// `--api-socket PATH` (harness/vmm/cloud_hypervisor_fake_api.h) well enough to drive
// CloudHypervisorVmm through create -> boot -> info -> shutdown -> exit. No VM is started.
//
// It behaves as the real Cloud Hypervisor does where kiln can tell the difference (read in CH's
// source: vmm/src/api/http/mod.rs, http_endpoint.rs, virtio-devices/src/vsock/csm/mod.rs; see
// harness/README.md "Cloud Hypervisor" for the commits):
//   - At start it creates `<api-socket>.lock`, holds a write lock on it, and never removes it;
//     on exit it removes the API socket only (CH >= v53).
//   - Error bodies are JSON arrays of strings: the chain of error messages, outermost first
//     (`["Error from API","The VM could not boot","Cannot open kernel file",...]`).
//   - vm.create only stores the config: a body that is not a JSON object answers 400
//     `["Failed to deserialize JSON", ...]`; everything else is checked at vm.boot.
//
//   --version                 prints "cloud-hypervisor v99.0.0-fake"
//   GET  vmm.ping             200 {"version": "v99.0.0-fake"}
//   PUT  vm.create            stores the config (204); writes the serial log if serial.file
//   PUT  vm.boot              404 before vm.create. Checks the stored config as CH does at boot
//                             (500 with CH's error chain): payload.kernel given and readable,
//                             each disk opened and locked (readonly: a read lock, else a write
//                             lock; another process holding a conflicting lock -> "Error
//                             locking disk images: ..."). Then creates the vsock socket (as CH
//                             does at boot, not at create), writes `KILN-INIT: ready`, and per
//                             fake.mode= in the cmdline:
//                               poweroff  writes the end marker and exits 0
//                               hang      starts a grandchild `sleep 300` (its pid in
//                                         <serial dir>/grandchild.pid), ignores SIGTERM and
//                                         answers 500 to vm.shutdown/vmm.shutdown
//                               bad-boot  answers 500 ["Error from API","The VM could not
//                                         boot","fake: boot failed"]
//                               (other)   runs until vm.shutdown/vmm.shutdown
//                             fake.rss_mib=N touches N MiB first (peak RSS checks)
//   GET  vm.info              404 before vm.create; else {"state": ..., "config": {...}}:
//                             Created, Running, and Created again after vm.shutdown (CH drops
//                             the VM and keeps its config)
//   PUT  vm.shutdown          204; 500 unless Running or Paused
//   PUT  vmm.shutdown         200 (the API document says 204; CH answers 200), exits 0 after
//   PUT  vm.pause             Running -> Paused (204); 500 otherwise (CH: "The VM could not
//                             pause", "Invalid VM state transition: Paused to Paused")
//   PUT  vm.resume            Paused -> Running (204); 500 otherwise
//   PUT  vm.snapshot          {"destination_url":"file://<dir>"}: only while Paused (else 500
//                             "Trying to snapshot while VM is running"); <dir> must be an
//                             existing directory ("Destination is not a directory"). Writes,
//                             0600 as CH does, config.json (the VmConfig of vm.create or of
//                             the restore), state.json ({"fake_vm_state": ..., "memory_bytes":
//                             N, "vsock_echoed_bytes": n}) and memory-ranges (a sparse file of
//                             the guest's memory.size bytes, "KILN-FAKE-RAM" at offset 0). The
//                             VM stays Paused.
// Snapshot and restore follow CH's docs/snapshot_restore.md:
//   --restore source_url=file://<dir>[,resume=true][,prefault=..][,memory_restore_mode=..]
//                             instead of vm.create + vm.boot: reads <dir>/config.json (CH's
//                             recv_vm_config), <dir>/state.json and <dir>/memory-ranges (whose
//                             size must be state.json's memory_bytes), creates the serial file
//                             and binds the vsock socket named in config.json (as CH's vsock
//                             muxer does when it builds the device: a path that exists is
//                             "Address already in use"), locks the disks, and starts the VM in
//                             state Paused (Running with resume=true). The guest's vsock
//                             listener is back once the VM runs again (connections do not
//                             survive a restore: the host connects anew, docs/vsock.md). Any
//                             failure ends the process with exit 1 and CH's error chain on
//                             stderr ("Error: Cloud Hypervisor exited with the following chain
//                             of errors:" / "  0: Error restoring VM" / "  1: The VM could not
//                             be restored" / "  2: ...", naming the file).
// With a vsock {socket} in the config it listens there from vm.boot and answers the hybrid
// vsock handshake "CONNECT <port>\n" with "OK 1073741824\n", then echoes bytes. The guest
// "listens" fake.vsock_ready_ms=N ms after vm.boot (default 0) and only while the VM runs (not
// while Paused): a CONNECT before then is held and, like CH's muxer (CONN_REQUEST_TIMEOUT_MS =
// 2000), dropped (closed without a reply) if the guest has not answered 2000 ms after it
// arrived.
// Every request line is appended to <serial dir>/requests.log.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "agent/transport.h"
#include "harness/vmm/cloud_hypervisor_fake_api.h"
#include "nlohmann/json.hpp"

namespace {

using kiln::harness::FakeHttpRequest;
using kiln::harness::FakeHttpResponse;

// CH's muxer drops a host-initiated connection the guest has not answered after this long.
constexpr absl::Duration kConnRequestTimeout = absl::Milliseconds(2000);

struct State {
  absl::Mutex mu;
  std::string vm_state = "";  // "" until created
  nlohmann::json config;
  std::string serial;
  std::string mode;
  std::string dir;
  std::vector<int> disk_fds;  // open and locked while the VM runs
  bool vsock_started = false;
  // vsock_ready: when the guest's listener answers (InfiniteFuture while the VM is not
  // running: a paused guest answers nothing).
  absl::Time vsock_ready = absl::InfinitePast();
  int64_t vsock_echoed = 0;  // bytes echoed (part of the "guest state" a snapshot holds)
  absl::Notification exit;
  int exit_code = 0;
};

void Append(const std::string& path, const std::string& line) {
  std::ofstream out(path, std::ios::app);
  out << line << "\n";
}

std::string CmdlineValue(const std::string& cmdline, const std::string& key) {
  size_t pos = cmdline.find(key + "=");
  if (pos == std::string::npos) return "";
  pos += key.size() + 1;
  return cmdline.substr(pos, cmdline.find(' ', pos) - pos);
}

// ErrorBody(chain): CH's error body, a JSON array of the error chain's messages.
std::string ErrorBody(std::vector<std::string> chain) { return nlohmann::json(chain).dump(); }

FakeHttpResponse Error(int status, std::vector<std::string> chain) {
  FakeHttpResponse resp;
  resp.status = status;
  resp.body = ErrorBody(std::move(chain));
  return resp;
}

// OsError(errno): Rust's io::Error display, "No such file or directory (os error 2)".
std::string OsError(int err) { return absl::StrCat(std::strerror(err), " (os error ", err, ")"); }

// LockFd(fd, write): an open file description lock on the whole file, as CH's block::fcntl.
bool LockFd(int fd, bool write) {
  struct flock fl {};
  fl.l_type = write ? F_WRLCK : F_RDLCK;
  fl.l_whence = SEEK_SET;
  return fcntl(fd, F_OFD_SETLK, &fl) == 0;
}

void HandleVsockConnection(std::unique_ptr<kiln::agent::FdStream> s, State* st) {
  const absl::Time arrived = absl::Now();
  std::string line;
  char c;
  while (line.size() < 64) {
    absl::StatusOr<size_t> n = s->Read(&c, 1, 2000);
    if (!n.ok() || *n == 0) break;
    line.push_back(c);
    if (c == '\n') break;
  }
  if (!absl::StartsWith(line, "CONNECT ")) return;
  // Wait for the guest to answer (its listener up, the VM running); CH kills the connection
  // 2000 ms after the request arrived if it has not.
  while (true) {
    absl::Time ready;
    {
      absl::MutexLock lock(&st->mu);
      ready = st->vsock_ready;
    }
    const absl::Time now = absl::Now();
    if (ready <= now) break;
    if (now >= arrived + kConnRequestTimeout) return;
    absl::SleepFor(std::min({ready - now, arrived + kConnRequestTimeout - now,
                             absl::Milliseconds(10)}));
  }
  if (!s->Write("OK 1073741824\n", 1000).ok()) return;
  char buf[256];
  while (true) {
    absl::StatusOr<size_t> n = s->Read(buf, sizeof(buf), 2000);
    if (!n.ok() || *n == 0) break;
    if (!s->Write(absl::string_view(buf, *n), 1000).ok()) break;
    absl::MutexLock lock(&st->mu);
    st->vsock_echoed += static_cast<int64_t>(*n);
  }
}

void ServeVsock(std::unique_ptr<kiln::agent::UnixListener> l, State* st) {
  while (!st->exit.HasBeenNotified()) {
    absl::StatusOr<std::unique_ptr<kiln::agent::FdStream>> s = l->Accept(100);
    if (!s.ok()) continue;
    std::thread(HandleVsockConnection, std::move(*s), st).detach();
  }
}

FakeHttpResponse LockDisks(State* st, const std::string& context);

// CheckAndLockAtBoot(st): what CH would reject at vm.boot in the stored config; locks the disks.
FakeHttpResponse CheckAndLockAtBoot(State* st) {
  const nlohmann::json& j = st->config;
  const std::string boot = "The VM could not boot";
  if (!j.contains("payload") || !j["payload"].is_object() || !j["payload"].contains("kernel")) {
    return Error(500, {"Error from API", boot, "No kernel or firmware payload"});
  }
  const std::string kernel = j["payload"]["kernel"].get<std::string>();
  if (int fd = open(kernel.c_str(), O_RDONLY | O_CLOEXEC); fd < 0) {
    return Error(500, {"Error from API", boot, "Cannot open kernel file", OsError(errno)});
  } else {
    close(fd);
  }
  return LockDisks(st, boot);
}

// LockDisks(st, context): opens and locks the config's disks as CH does when it builds them.
FakeHttpResponse LockDisks(State* st, const std::string& context) {
  const nlohmann::json& j = st->config;
  const std::string boot = context;
  if (j.contains("disks")) {
    for (const nlohmann::json& d : j["disks"]) {
      const std::string path = d.value("path", "");
      const bool readonly = d.value("readonly", false);
      int fd = open(path.c_str(), (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
      if (fd < 0) {
        return Error(500, {"Error from API", boot, "Error from device manager",
                           "Cannot create virtio-blk device", OsError(errno)});
      }
      if (!LockFd(fd, !readonly)) {
        close(fd);
        for (int held : st->disk_fds) close(held);
        st->disk_fds.clear();
        return Error(500, {"Error from API", boot,
                           "Error locking disk images: Another instance likely holds a lock",
                           absl::StrCat("Failed to get ", readonly ? "Read" : "Write",
                                        " lock for disk image: ", path),
                           "The file is already locked"});
      }
      st->disk_fds.push_back(fd);
    }
  }
  return FakeHttpResponse{};
}

// StartVsock(st): binds the vsock socket config.vsock.socket (CH's muxer: bind fails if the
// path exists) and serves it.
absl::Status StartVsock(State* st) {
  const std::string path = st->config["vsock"].value("socket", "");
  struct stat sb;
  if (lstat(path.c_str(), &sb) == 0) {
    return absl::AlreadyExistsError(absl::StrCat(
        "Error binding to the host Unix socket ", path, ": Address already in use (os error 98)"));
  }
  absl::StatusOr<std::unique_ptr<kiln::agent::UnixListener>> l =
      kiln::agent::UnixListener::Listen(path);
  if (!l.ok()) return l.status();
  st->vsock_started = true;
  std::thread(ServeVsock, std::move(*l), st).detach();
  return absl::OkStatus();
}

// WriteFile0600(path, data): as CH writes snapshot files (File::create, mode 0600).
bool WriteFile0600(const std::string& path, const std::string& data, std::string* error) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    *error = OsError(errno);
    return false;
  }
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n <= 0) {
      *error = OsError(errno);
      close(fd);
      return false;
    }
    off += static_cast<size_t>(n);
  }
  close(fd);
  return true;
}

int64_t MemoryBytes(const nlohmann::json& config) {
  if (!config.contains("memory") || !config["memory"].is_object()) return 0;
  return config["memory"].value("size", int64_t{0});
}

// SnapshotInto(st, url): vm.snapshot's work (the caller holds st->mu, the VM is Paused).
FakeHttpResponse SnapshotInto(State* st, const std::string& url) {
  const std::string what = "The VM could not be snapshotted";
  if (!absl::StartsWith(url, "file://")) {
    return Error(500, {"Error from API", what,
                       absl::StrCat("Failed to send migratable component snapshot: Could not "
                                    "extract path from URL: ", url)});
  }
  const std::string dir = url.substr(7);
  struct stat sb;
  if (stat(dir.c_str(), &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    return Error(500, {"Error from API", what,
                       "Failed to send migratable component snapshot: Destination is not a "
                       "directory"});
  }
  nlohmann::json config = st->config;
  config.erase("_touched");
  const int64_t mem = MemoryBytes(config);
  const nlohmann::json state = {{"fake_vm_state", st->vm_state},
                                {"memory_bytes", mem},
                                {"vsock_echoed_bytes", st->vsock_echoed}};
  std::string err;
  if (!WriteFile0600(dir + "/config.json", config.dump(), &err) ||
      !WriteFile0600(dir + "/state.json", state.dump(), &err) ||
      !WriteFile0600(dir + "/memory-ranges", "KILN-FAKE-RAM", &err)) {
    return Error(500, {"Error from API", what,
                       absl::StrCat("Failed to send migratable component snapshot: ", err)});
  }
  if (truncate((dir + "/memory-ranges").c_str(), std::max<int64_t>(mem, 13)) != 0) {
    return Error(500, {"Error from API", what,
                       absl::StrCat("Failed to snapshot migratable component: ",
                                    OsError(errno))});
  }
  return FakeHttpResponse{};
}

std::string ReadAll(const std::string& path, int* err) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *err = errno != 0 ? errno : ENOENT;
    return "";
  }
  std::stringstream ss;
  ss << in.rdbuf();
  *err = 0;
  return ss.str();
}

// RestoreFrom(st, value): the --restore option value; "" on success, else the rest of CH's
// error chain (after "Error restoring VM", "The VM could not be restored").
std::string RestoreFrom(State* st, const std::string& value) {
  std::string url;
  bool resume = false;
  for (absl::string_view opt : absl::StrSplit(value, ',')) {
    if (absl::ConsumePrefix(&opt, "source_url=")) {
      url = std::string(opt);
    } else if (opt == "resume=true" || opt == "resume=on") {
      resume = true;
    } else if (!absl::StartsWith(opt, "prefault=") && !absl::StartsWith(opt, "resume=") &&
               !absl::StartsWith(opt, "memory_restore_mode=")) {
      return absl::StrCat("Error parsing --restore: unknown option ", opt);
    }
  }
  if (!absl::StartsWith(url, "file://")) {
    return absl::StrCat("Failed to send migratable component snapshot: Could not extract path "
                        "from URL: ", url);
  }
  const std::string dir = url.substr(7);
  struct stat sb;
  if (stat(dir.c_str(), &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    return "Failed to send migratable component snapshot: Destination is not a directory";
  }
  int err = 0;
  const std::string config_text = ReadAll(dir + "/config.json", &err);
  if (err != 0) {
    return absl::StrCat("Failed to send migratable component snapshot: ", dir,
                        "/config.json: ", OsError(err));
  }
  nlohmann::json config = nlohmann::json::parse(config_text, nullptr, false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::StrCat("Failed to receive migratable component snapshot: ", dir,
                        "/config.json: expected a VmConfig object");
  }
  const std::string state_text = ReadAll(dir + "/state.json", &err);
  if (err != 0) {
    return absl::StrCat("Failed to send migratable component snapshot: ", dir,
                        "/state.json: ", OsError(err));
  }
  nlohmann::json state = nlohmann::json::parse(state_text, nullptr, false);
  if (state.is_discarded() || !state.is_object()) {
    return absl::StrCat("Failed to receive migratable component snapshot: ", dir,
                        "/state.json: expected a snapshot object");
  }
  const std::string ram = dir + "/memory-ranges";
  if (stat(ram.c_str(), &sb) != 0) {
    return absl::StrCat("Failed to restore migratable component: ", ram, ": ", OsError(errno));
  }
  const int64_t want = state.value("memory_bytes", int64_t{0});
  if (sb.st_size < want) {
    return absl::StrCat("Failed to restore migratable component: ", ram, ": ", sb.st_size,
                        " bytes, the memory ranges need ", want, ": failed to fill whole buffer");
  }
  st->config = config;
  st->vsock_echoed = state.value("vsock_echoed_bytes", int64_t{0});
  if (config.contains("serial") && config["serial"].is_object() &&
      config["serial"].contains("file")) {
    st->serial = config["serial"]["file"].get<std::string>();
    st->dir = st->serial.substr(0, st->serial.rfind('/'));
    std::string e;
    if (!WriteFile0600(st->serial, "", &e)) {
      return absl::StrCat("Error creating console devices: Error creating serial output file ",
                          st->serial, ": ", e);
    }
  }
  const std::string cmdline =
      config.contains("payload") ? config["payload"].value("cmdline", "") : std::string();
  st->mode = CmdlineValue(cmdline, "fake.mode");
  if (FakeHttpResponse locked = LockDisks(st, "restore"); locked.status != 204) {
    // The chain after "Error from API", "restore".
    nlohmann::json chain = nlohmann::json::parse(locked.body, nullptr, false);
    std::string text;
    for (size_t i = 2; i < chain.size(); ++i) {
      text += (text.empty() ? "" : ": ") + chain[i].get<std::string>();
    }
    return text;
  }
  st->vsock_ready = resume ? absl::Now() : absl::InfiniteFuture();
  if (config.contains("vsock") && config["vsock"].is_object()) {
    if (absl::Status v = StartVsock(st); !v.ok()) {
      return absl::StrCat("Error from device manager: Cannot create virtio-vsock device: ",
                          v.message());
    }
  }
  st->vm_state = resume ? "Running" : "Paused";
  if (!st->dir.empty()) Append(st->dir + "/requests.log", "RESTORE " + url);
  return "";
}

FakeHttpResponse Handle(State* st, const FakeHttpRequest& r) {
  absl::MutexLock lock(&st->mu);
  if (!st->dir.empty()) Append(st->dir + "/requests.log", r.method + " " + r.path);
  const std::string ep = r.path.substr(r.path.rfind('/') + 1);
  FakeHttpResponse resp;
  if (r.method == "GET" && ep == "vmm.ping") {
    resp.status = 200;
    resp.body = R"({"version":"v99.0.0-fake"})";
  } else if (r.method == "PUT" && ep == "vm.create") {
    nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return Error(400, {"Failed to deserialize JSON", "expected a VmConfig object"});
    }
    st->config = j;
    if (j.contains("serial") && j["serial"].contains("file")) {
      st->serial = j["serial"]["file"].get<std::string>();
      st->dir = st->serial.substr(0, st->serial.rfind('/'));
      Append(st->dir + "/requests.log", r.method + " " + r.path);
    }
    const std::string cmdline =
        j.contains("payload") ? j["payload"].value("cmdline", "") : std::string();
    st->mode = CmdlineValue(cmdline, "fake.mode");
    if (!st->serial.empty()) {
      std::ofstream(st->serial) << "Linux version 6.1.0-fake (fake)\nCommand line: " << cmdline
                                << "\n";
    }
    st->vm_state = "Created";
    int rss_mib = 0;
    if (absl::SimpleAtoi(CmdlineValue(cmdline, "fake.rss_mib"), &rss_mib) && rss_mib > 0) {
      size_t n = static_cast<size_t>(rss_mib) << 20;
      char* p = static_cast<char*>(malloc(n));
      memset(p, 1, n);
      st->config["_touched"] = static_cast<int>(p[n - 1]);
    }
  } else if (r.method == "PUT" && ep == "vm.boot") {
    if (st->vm_state.empty()) {
      return Error(404, {"Error from API", "The VM could not boot", "VM is not created"});
    }
    if (st->vm_state != "Created") {
      return Error(500, {"Error from API", "The VM could not boot",
                         absl::StrCat("invalid VM state transition: ", st->vm_state, " to Running")});
    }
    if (FakeHttpResponse bad = CheckAndLockAtBoot(st); bad.status != 204) return bad;
    if (st->mode == "bad-boot") {
      return Error(500, {"Error from API", "The VM could not boot", "fake: boot failed"});
    }
    if (st->config.contains("vsock") && !st->vsock_started) {
      const std::string cmdline = st->config["payload"].value("cmdline", "");
      int ready_ms = 0;
      (void)absl::SimpleAtoi(CmdlineValue(cmdline, "fake.vsock_ready_ms"), &ready_ms);
      st->vsock_ready = absl::Now() + absl::Milliseconds(ready_ms);
      if (absl::Status v = StartVsock(st); !v.ok()) {
        return Error(500, {"Error from API", "The VM could not boot", "Error from device manager",
                           "Cannot create virtio-vsock device", std::string(v.message())});
      }
    }
    st->vm_state = "Running";
    Append(st->serial, "KILN-INIT: ready uptime_ms=1");
    if (st->mode == "poweroff") {
      Append(st->serial, "KILN-INIT: exit status=0 uptime_ms=2");
      resp.after_reply = [st] { st->exit.Notify(); };
    } else if (st->mode == "hang") {
      pid_t pid = fork();
      if (pid == 0) {
        execlp("sleep", "sleep", "300", nullptr);
        _exit(127);
      }
      Append(st->dir + "/grandchild.pid", std::to_string(pid));
      signal(SIGTERM, SIG_IGN);
    }
  } else if (r.method == "GET" && ep == "vm.info") {
    if (st->vm_state.empty()) {
      return Error(404, {"Error from API", "The VM info is not available", "VM is not created"});
    }
    resp.status = 200;
    resp.body = nlohmann::json{{"state", st->vm_state}, {"config", st->config}}.dump();
  } else if (r.method == "PUT" && ep == "vm.pause") {
    if (st->vm_state != "Running") {
      return Error(500, {"Error from API", "The VM could not pause",
                         st->vm_state.empty()
                             ? std::string("VM is not created")
                             : absl::StrCat("Invalid VM state transition: ", st->vm_state,
                                            " to Paused")});
    }
    st->vm_state = "Paused";
    st->vsock_ready = absl::InfiniteFuture();
  } else if (r.method == "PUT" && ep == "vm.resume") {
    if (st->vm_state != "Paused") {
      return Error(500, {"Error from API", "The VM could not resume",
                         st->vm_state.empty()
                             ? std::string("VM is not created")
                             : absl::StrCat("Invalid VM state transition: ", st->vm_state,
                                            " to Running")});
    }
    st->vm_state = "Running";
    st->vsock_ready = absl::Now();
  } else if (r.method == "PUT" && ep == "vm.snapshot") {
    nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("destination_url") ||
        !j["destination_url"].is_string()) {
      return Error(400, {"Failed to deserialize JSON", "missing field `destination_url`"});
    }
    if (st->vm_state != "Paused") {
      return Error(500, {"Error from API", "The VM could not be snapshotted",
                         st->vm_state.empty()
                             ? std::string("VM is not created")
                             : "Failed to snapshot migratable component: Trying to snapshot "
                               "while VM is running"});
    }
    return SnapshotInto(st, j["destination_url"].get<std::string>());
  } else if (r.method == "PUT" && (ep == "vm.shutdown" || ep == "vmm.shutdown")) {
    if (st->mode == "hang") {
      return Error(500, {"Error from API", "The VM could not shut down", "fake: hung"});
    }
    if (ep == "vm.shutdown") {
      if (st->vm_state != "Running" && st->vm_state != "Paused") {
        return Error(500, {"Error from API", "The VM could not shut down", "VM is not running"});
      }
      st->vm_state = "Created";
      for (int fd : st->disk_fds) close(fd);
      st->disk_fds.clear();
    } else {
      resp.status = 200;
      resp.after_reply = [st] { st->exit.Notify(); };
    }
  } else {
    return Error(404, {"Not Found"});
  }
  return resp;
}

}  // namespace

int main(int argc, char** argv) {
  std::string api_socket;
  std::string restore;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--version") == 0) {
      std::cout << "cloud-hypervisor v99.0.0-fake\n";
      return 0;
    }
    if (std::strcmp(argv[i], "--api-socket") == 0 && i + 1 < argc) api_socket = argv[++i];
    if (std::strcmp(argv[i], "--restore") == 0 && i + 1 < argc) restore = argv[++i];
  }
  if (api_socket.empty()) {
    std::cerr << "fake cloud-hypervisor: --api-socket PATH required\n";
    return 2;
  }
  // As CH >= v53: <api-socket>.lock, created if missing, write-locked for the process's life,
  // never removed.
  const std::string lock_path = api_socket + ".lock";
  int lock_fd = open(lock_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0 || !LockFd(lock_fd, /*write=*/true)) {
    std::cerr << "fake cloud-hypervisor: API socket " << api_socket << " in use ("
              << std::strerror(errno) << ")\n";
    return 1;
  }
  static State st;
  if (!restore.empty()) {
    // CH's VMM thread restores before it serves another request (vmm.ping waits for it); a
    // failed restore ends the process with the error chain.
    absl::MutexLock lock(&st.mu);
    const std::string error = RestoreFrom(&st, restore);
    if (!error.empty()) {
      std::cerr << "Error: Cloud Hypervisor exited with the following chain of errors:\n"
                << "  0: Error restoring VM\n  1: The VM could not be restored\n  2: " << error
                << "\n";
      std::fflush(nullptr);
      _exit(1);
    }
  }
  absl::StatusOr<std::unique_ptr<kiln::harness::FakeHttpServer>> server =
      kiln::harness::FakeHttpServer::Start(
          api_socket, [](const FakeHttpRequest& r) { return Handle(&st, r); });
  if (!server.ok()) {
    std::cerr << "fake cloud-hypervisor: " << server.status() << "\n";
    return 1;
  }
  std::cerr << "fake cloud-hypervisor: serving " << api_socket << "\n";
  st.exit.WaitForNotification();
  std::cerr << "fake cloud-hypervisor: exiting\n";
  // CH removes its API socket (not the .lock) on exit. Skip the server's destructor (it would
  // wait for its thread, which called us).
  unlink(api_socket.c_str());
  std::fflush(nullptr);
  _exit(st.exit_code);
}
