// File: harness/testdata/ch_fake_cloud_hypervisor.cc
// A fake `cloud-hypervisor` for cloud_hypervisor_vm_lifecycle_test: serves the REST API on
// `--api-socket PATH` (harness/cloud_hypervisor_fake_api.h) well enough to drive
// CloudHypervisorVmm through create -> boot -> info -> shutdown -> exit. No VM is started.
//
//   --version                 prints "cloud-hypervisor v99.0.0-fake"
//   GET  vmm.ping             200 {"version": "v99.0.0-fake"}
//   PUT  vm.create            checks the body is a VmConfig with payload.kernel and
//                             serial.file (else 400 with a body); writes the serial log
//   PUT  vm.boot              writes `KILN-INIT: ready`; then per fake.mode= in the cmdline:
//                               poweroff  writes the end marker and exits 0
//                               hang      starts a grandchild `sleep 300` (its pid in
//                                         <serial dir>/grandchild.pid), ignores SIGTERM and
//                                         answers 500 to vm.shutdown/vmm.shutdown
//                               bad-boot  answers 500 {"error": "fake: boot failed"}
//                               (other)   runs until vm.shutdown/vmm.shutdown
//                             fake.rss_mib=N touches N MiB first (peak RSS checks)
//   GET  vm.info              {"state": "Created|Running|Shutdown", "config": {...}}
//   PUT  vm.shutdown          state Shutdown
//   PUT  vmm.shutdown         exits 0 after the reply
// With a vsock {socket} in the config it also listens there and answers the hybrid vsock
// handshake "CONNECT <port>\n" with "OK 1073741824\n", then echoes bytes.
// Every request line is appended to <serial dir>/requests.log.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "agent/transport.h"
#include "harness/cloud_hypervisor_fake_api.h"
#include "nlohmann/json.hpp"

namespace {

using kiln::harness::FakeHttpRequest;
using kiln::harness::FakeHttpResponse;

struct State {
  absl::Mutex mu;
  std::string vm_state = "";  // "" until created
  nlohmann::json config;
  std::string serial;
  std::string mode;
  std::string dir;
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

void ServeVsock(std::string path, State* st) {
  absl::StatusOr<std::unique_ptr<kiln::agent::UnixListener>> l =
      kiln::agent::UnixListener::Listen(path);
  if (!l.ok()) return;
  while (!st->exit.HasBeenNotified()) {
    absl::StatusOr<std::unique_ptr<kiln::agent::FdStream>> s = (*l)->Accept(100);
    if (!s.ok()) continue;
    std::string line;
    char c;
    while (line.size() < 64) {
      absl::StatusOr<size_t> n = (*s)->Read(&c, 1, 2000);
      if (!n.ok() || *n == 0) break;
      line.push_back(c);
      if (c == '\n') break;
    }
    if (!absl::StartsWith(line, "CONNECT ")) continue;
    if (!(*s)->Write("OK 1073741824\n", 1000).ok()) continue;
    char buf[256];
    while (true) {
      absl::StatusOr<size_t> n = (*s)->Read(buf, sizeof(buf), 2000);
      if (!n.ok() || *n == 0) break;
      if (!(*s)->Write(absl::string_view(buf, *n), 1000).ok()) break;
    }
  }
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
    if (j.is_discarded() || !j.contains("payload") || !j["payload"].contains("kernel") ||
        !j.contains("serial") || !j["serial"].contains("file")) {
      resp.status = 400;
      resp.body = R"({"error":"fake: not a VmConfig with payload.kernel and serial.file"})";
      return resp;
    }
    st->config = j;
    st->serial = j["serial"]["file"].get<std::string>();
    st->dir = st->serial.substr(0, st->serial.rfind('/'));
    Append(st->dir + "/requests.log", r.method + " " + r.path);
    const std::string cmdline = j["payload"].value("cmdline", "");
    st->mode = CmdlineValue(cmdline, "fake.mode");
    std::ofstream(st->serial) << "Linux version 6.1.0-fake (fake)\nCommand line: " << cmdline
                              << "\n";
    st->vm_state = "Created";
    if (j.contains("vsock")) {
      std::thread(ServeVsock, j["vsock"]["socket"].get<std::string>(), st).detach();
    }
    int rss_mib = 0;
    if (absl::SimpleAtoi(CmdlineValue(cmdline, "fake.rss_mib"), &rss_mib) && rss_mib > 0) {
      size_t n = static_cast<size_t>(rss_mib) << 20;
      char* p = static_cast<char*>(malloc(n));
      memset(p, 1, n);
      st->config["_touched"] = static_cast<int>(p[n - 1]);
    }
  } else if (r.method == "PUT" && ep == "vm.boot") {
    if (st->vm_state != "Created") {
      resp.status = 500;
      resp.body = R"({"error":"fake: vm.boot before vm.create"})";
      return resp;
    }
    if (st->mode == "bad-boot") {
      resp.status = 500;
      resp.body = R"({"error":"fake: boot failed"})";
      return resp;
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
      resp.status = 500;
      resp.body = R"({"error":"fake: VM is not created"})";
      return resp;
    }
    resp.status = 200;
    resp.body = nlohmann::json{{"state", st->vm_state}, {"config", st->config}}.dump();
  } else if (r.method == "PUT" && (ep == "vm.shutdown" || ep == "vmm.shutdown")) {
    if (st->mode == "hang") {
      resp.status = 500;
      resp.body = R"({"error":"fake: hung"})";
      return resp;
    }
    if (ep == "vm.shutdown") {
      st->vm_state = "Shutdown";
    } else {
      resp.after_reply = [st] { st->exit.Notify(); };
    }
  } else {
    resp.status = 404;
    resp.body = absl::StrCat(R"({"error":"fake: no endpoint )", r.method, " ", r.path, "\"}");
  }
  return resp;
}

}  // namespace

int main(int argc, char** argv) {
  std::string api_socket;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--version") == 0) {
      std::cout << "cloud-hypervisor v99.0.0-fake\n";
      return 0;
    }
    if (std::strcmp(argv[i], "--api-socket") == 0 && i + 1 < argc) api_socket = argv[++i];
  }
  if (api_socket.empty()) {
    std::cerr << "fake cloud-hypervisor: --api-socket PATH required\n";
    return 2;
  }
  static State st;
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
  // Skip the server's destructor (it would wait for its thread, which called us).
  std::fflush(nullptr);
  _exit(st.exit_code);
}
