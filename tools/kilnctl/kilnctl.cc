// File: tools/kilnctl/kilnctl.cc
// kilnctl: the operator CLI of kiln. `kilnctl builders list|logs|exec|rm|gc` works on the
// builders kept by `keep_failed_builders` (harness/keep/keep_store.h). Exit codes: see kUsage.
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "harness/keep/keep_store.h"
#include "nlohmann/json.hpp"
#include "harness/keep/agent_exec.h"

ABSL_FLAG(std::string, state_dir, "",
          "keep state directory (default: $KILN_STATE_DIR, else /var/lib/kiln/builders)");
ABSL_FLAG(bool, follow, false, "logs: keep printing new serial output until the VM exits");
ABSL_FLAG(bool, json, false, "list: print the records as a JSON array");
ABSL_FLAG(int, max_kept, -1, "gc: also reap the oldest kept builders over this many (-1: no cap)");
ABSL_FLAG(int, timeout_s, kiln::harness::kDefaultExecTimeoutS,
          "exec: the agent kills the command after this many seconds (0: no deadline of "
          "kilnctl's own; the agent's default, 30 min, applies)");
ABSL_FLAG(int, connect_timeout_ms, 30000, "exec: connect + handshake timeout to the agent");
ABSL_FLAG(int, poweroff_timeout_ms, 5000,
          "rm/gc: how long to try asking the agent to power off before the signals (an idle "
          "agent answers in ms; one still busy with a dead harness's job never does)");
ABSL_FLAG(int, grace_s, 10, "rm/gc: how long the guest may take to power off before SIGTERM");

namespace {

using kiln::harness::KeepRecord;
using kiln::harness::KeepStore;

constexpr char kUsage[] = R"(kilnctl: inspect builder VMs kept by keep_failed_builders.

usage:
  kilnctl builders list [--json]            kept builders (dead ones are cleaned)
  kilnctl builders logs ID [--follow]       the guest serial log (--follow: until the VM exits)
  kilnctl builders exec ID -- CMD [ARG...]  run CMD in the builder through its agent;
                                            stdout/stderr streamed, its exit code returned
  kilnctl builders rm ID                    power off through the agent, then SIGTERM/SIGKILL
                                            the VMM's process group; remove sockets + work dir
  kilnctl builders gc [--max_kept=N]        reap expired, dead and orphaned builders

flags:
  --state_dir=DIR   state directory (default $KILN_STATE_DIR, else /var/lib/kiln/builders)
  --timeout_s=N     exec: the agent kills the command after N s (default 600; 0: no
                    deadline of kilnctl's own, the agent's default of 30 min applies);
                    kilnctl gives up 30 s after the deadline if the agent does not answer
  --grace_s=N       rm/gc: clean power-off grace before signals (default 10)
  --connect_timeout_ms=N  exec: connect + handshake to the agent (default 30000)
  --poweroff_timeout_ms=N rm/gc: asking the agent to power off (default 5000), then signals

exit codes:
  0  success                        3  unknown builder, or its VM has died
  1  other error (I/O, agent)       4  builder expired (`gc` or `rm` it)
  2  usage error
  exec: the command's exit code (128+N if killed by signal N); 127 if the agent could
        not start it; 125 if kilnctl itself failed (unknown/expired id, agent unreachable).
)";

int Usage(const std::string& why) {
  std::cerr << "kilnctl: " << why << "\n(run `kilnctl --help` for usage)\n";
  return 2;
}

int ExitFor(const absl::Status& s) {
  std::cerr << "kilnctl: " << s.message() << "\n";
  switch (s.code()) {
    case absl::StatusCode::kOk:
      return 0;
    case absl::StatusCode::kNotFound:
      return 3;
    case absl::StatusCode::kFailedPrecondition:
      return 4;
    case absl::StatusCode::kInvalidArgument:
      return 2;
    default:
      return 1;
  }
}

// Short(s, n): s on one line for the table, at most n bytes: control characters (a record's
// failure text may come from an untrusted build's output: ESC sequences, CR) become spaces.
std::string Short(std::string s, size_t n) {
  for (char& c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = ' ';
  }
  if (s.size() > n) s = s.substr(0, n - 3) + "...";
  return s;
}

std::string Ago(absl::Duration d) {
  int64_t s = absl::ToInt64Seconds(d);
  if (s < 0) return "-";
  if (s < 120) return absl::StrCat(s, "s");
  if (s < 7200) return absl::StrCat(s / 60, "m");
  return absl::StrCat(s / 3600, "h");
}

// ChannelOf(r): where and how the kept builder's agent is reached (virtio-serial under QEMU,
// hybrid vsock under Cloud Hypervisor; old records are virtio-serial).
kiln::harness::ChannelAddress ChannelOf(const KeepRecord& r) {
  return {r.channel_transport, r.channel_socket, r.vsock_port};
}

kiln::harness::TeardownOptions Teardown() {
  kiln::harness::TeardownOptions o;
  int ms = absl::GetFlag(FLAGS_poweroff_timeout_ms);
  o.clean_shutdown = [ms](const KeepRecord& r) {
    return kiln::harness::AgentPowerOff(ChannelOf(r), ms);
  };
  o.clean_grace = absl::Seconds(absl::GetFlag(FLAGS_grace_s));
  return o;
}

int List(KeepStore& store) {
  absl::Time now = absl::Now();
  absl::StatusOr<kiln::harness::KeepListing> l = store.List(now);
  if (!l.ok()) return ExitFor(l.status());
  for (const auto& d : l->cleaned) {
    std::cerr << "kilnctl: cleaned " << d.id << " (its VM had exited)\n";
  }
  for (const std::string& s : l->skipped) {
    std::cerr << "kilnctl: warning: skipped " << Short(s, 200) << "\n";
  }
  if (absl::GetFlag(FLAGS_json)) {
    nlohmann::json a = nlohmann::json::array();
    for (const KeepRecord& r : l->records) {
      a.push_back(nlohmann::json::parse(kiln::harness::KeepRecordToJson(r)));
    }
    std::cout << a.dump(2) << "\n";
    return 0;
  }
  if (l->records.empty()) {
    std::cout << "no kept builders in " << store.dir() << "\n";
    return 0;
  }
  std::cout << absl::StrFormat("%-24s %-8s %-12s %-5s %-8s %-28s %s\n", "ID", "STATE",
                               "VMM/PID", "AGE", "EXPIRES", "JOB", "FAILURE");
  for (const KeepRecord& r : l->records) {
    std::string expires = r.expires == absl::InfiniteFuture() ? "-"
                          : r.expires <= now                  ? "expired"
                                                              : "in " + Ago(r.expires - now);
    std::cout << absl::StrFormat("%-24s %-8s %-12s %-5s %-8s %-28s %s\n", r.id,
                                 kiln::harness::KeepStateName(r.state),
                                 absl::StrCat(r.vmm, "/", r.vmm_process.pid), Ago(now - r.created),
                                 expires, Short(r.job_summary, 28), Short(r.failure, 60));
  }
  return 0;
}

int Logs(KeepStore& store, const std::string& id) {
  absl::StatusOr<KeepRecord> r = store.Get(id, absl::Now());
  if (!r.ok()) return ExitFor(r.status());
  struct stat st;
  if (::lstat(r->serial_log.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return ExitFor(absl::NotFoundError(
        absl::StrCat("serial log ", r->serial_log, " is missing or not a regular file")));
  }
  std::ifstream in(r->serial_log, std::ios::binary);
  if (!in) return ExitFor(absl::NotFoundError(absl::StrCat("cannot read ", r->serial_log)));
  char buf[65536];
  while (true) {
    in.read(buf, sizeof(buf));
    std::streamsize n = in.gcount();
    if (n > 0) {
      std::cout.write(buf, n);
      std::cout.flush();
      continue;
    }
    if (!absl::GetFlag(FLAGS_follow)) return 0;
    if (!kiln::harness::ProcessAlive(r->vmm_process)) {
      std::cerr << "kilnctl: the VM of " << id << " has exited\n";
      return 0;
    }
    in.clear();  // EOF: wait for more
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

int Exec(KeepStore& store, const std::string& id, const std::vector<std::string>& cmd) {
  absl::StatusOr<KeepRecord> r = store.Get(id, absl::Now());
  if (!r.ok()) {
    ExitFor(r.status());
    return 125;
  }
  kiln::harness::ExecRequest req;
  req.argv = cmd;
  req.deadline_ms = static_cast<uint64_t>(absl::GetFlag(FLAGS_timeout_s)) * 1000;
  req.connect_timeout_ms = absl::GetFlag(FLAGS_connect_timeout_ms);
  absl::StatusOr<kiln::agent::ExecResult> res =
      kiln::harness::ExecOverChannel(ChannelOf(*r), req, STDOUT_FILENO, STDERR_FILENO);
  if (!res.ok()) {
    std::cerr << "kilnctl: " << res.status().message() << "\n";
    return 125;
  }
  if (!res->error.empty()) std::cerr << "kilnctl: " << res->error << "\n";
  if (res->exit_code >= 0) return res->exit_code;
  return 128 + res->signal;
}

int Rm(KeepStore& store, const std::string& id) {
  absl::Time start = absl::Now();
  absl::Status s = store.Remove(id, Teardown());
  if (!s.ok()) return ExitFor(s);
  std::cout << "removed " << id << " in " << absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(100))) << "\n";
  return 0;
}

int Gc(KeepStore& store) {
  absl::StatusOr<std::vector<kiln::harness::ReapDecision>> d =
      store.Gc(absl::Now(), Teardown(), absl::GetFlag(FLAGS_max_kept));
  if (!d.ok()) return ExitFor(d.status());
  if (d->empty()) std::cout << "nothing to reap\n";
  for (const auto& x : *d) std::cout << "reaped " << x.id << " (" << x.reason << ")\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Split at the first "--": what follows is exec's command, never parsed as flags.
  std::vector<char*> front;
  std::vector<std::string> tail;
  bool dashdash = false;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (dashdash) {
      tail.push_back(a);
    } else if (i > 0 && a == "--") {
      dashdash = true;
    } else {
      if (i > 0 && (a == "--help" || a == "-h" || a == "help")) {
        std::cout << kUsage;
        return 0;
      }
      front.push_back(argv[i]);
    }
  }
  absl::SetProgramUsageMessage(kUsage);
  std::vector<char*> pos = absl::ParseCommandLine(static_cast<int>(front.size()), front.data());
  std::vector<std::string> args(pos.begin() + 1, pos.end());
  if (args.empty()) return Usage("no command given");
  if (absl::GetFlag(FLAGS_timeout_s) < 0) return Usage("--timeout_s must be >= 0");
  if (absl::GetFlag(FLAGS_max_kept) < -1) return Usage("--max_kept must be >= 0, or -1 (no cap)");
  if (absl::GetFlag(FLAGS_grace_s) < 0) return Usage("--grace_s must be >= 0");
  if (absl::GetFlag(FLAGS_connect_timeout_ms) < 1 || absl::GetFlag(FLAGS_poweroff_timeout_ms) < 1) {
    return Usage("--connect_timeout_ms and --poweroff_timeout_ms must be >= 1");
  }
  if (args[0] != "builders") return Usage(absl::StrCat("unknown command \"", args[0], "\""));
  if (args.size() < 2) return Usage("builders: no subcommand (list, logs, exec, rm, gc)");
  std::string dir = absl::GetFlag(FLAGS_state_dir);
  KeepStore store(dir.empty() ? KeepStore::DefaultDir() : dir);
  const std::string& sub = args[1];
  auto need_id = [&](size_t n_extra_ok) -> std::string {
    if (args.size() < 3) return "";
    if (args.size() > 3 + n_extra_ok) return "";
    return args[2];
  };
  if (sub == "list") {
    if (args.size() != 2 || dashdash) return Usage("builders list takes no arguments");
    return List(store);
  }
  if (sub == "gc") {
    if (args.size() != 2 || dashdash) return Usage("builders gc takes no arguments");
    return Gc(store);
  }
  if (sub == "logs" || sub == "rm") {
    std::string id = need_id(0);
    if (id.empty() || dashdash) return Usage(absl::StrCat("usage: kilnctl builders ", sub, " ID"));
    return sub == "logs" ? Logs(store, id) : Rm(store, id);
  }
  if (sub == "exec") {
    if (!dashdash || tail.empty()) {
      return Usage("builders exec: give the command after `--`: kilnctl builders exec ID -- CMD");
    }
    std::string id = need_id(0);
    if (id.empty()) return Usage("usage: kilnctl builders exec ID -- CMD [ARG...]");
    return Exec(store, id, tail);
  }
  return Usage(absl::StrCat("unknown builders subcommand \"", sub, "\""));
}
