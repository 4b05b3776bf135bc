// File: agent/runner/oom.cc
#include "agent/runner/oom.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::agent::runner {

std::vector<OomKill> ParseOomKills(absl::string_view kmsg) {
  std::vector<OomKill> kills;
  for (absl::string_view line : absl::StrSplit(kmsg, '\n')) {
    if (line.empty() || line[0] == ' ') continue;
    const size_t semi = line.find(';');
    if (semi == absl::string_view::npos) continue;
    std::vector<absl::string_view> head = absl::StrSplit(line.substr(0, semi), ',');
    absl::string_view text = line.substr(semi + 1);
    const size_t at = text.find("Killed process ");
    if (head.size() < 3 || at == absl::string_view::npos) continue;
    OomKill k;
    if (!absl::SimpleAtoi(head[2], &k.time_us)) continue;
    absl::string_view rest = text.substr(at + 15);
    const size_t sp = rest.find(' ');
    if (!absl::SimpleAtoi(rest.substr(0, sp), &k.pid) || sp == absl::string_view::npos) continue;
    rest = rest.substr(sp + 1);
    if (absl::ConsumePrefix(&rest, "(")) k.name = std::string(rest.substr(0, rest.find(')')));
    bool seen = false;
    for (const OomKill& o : kills) seen = seen || o.pid == k.pid;
    if (!seen) kills.push_back(std::move(k));
  }
  return kills;
}

absl::StatusOr<std::string> ReadKernelLog(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return PosixError(errno, "open", path);
  std::string out;
  std::string rec(8192, '\0');
  while (true) {
    const ssize_t n = read(fd, rec.data(), rec.size());  // one record per read
    if (n < 0 && (errno == EINTR || errno == EPIPE)) continue;  // EPIPE: records overwritten
    if (n < 0 && errno == EAGAIN) break;                         // the end of the buffer
    if (n < 0) {
      const int e = errno;
      close(fd);
      return PosixError(e, "read", path);
    }
    if (n == 0) break;  // a regular file (tests)
    out.append(rec.data(), static_cast<size_t>(n));
    if (out.back() != '\n') out += '\n';
  }
  close(fd);
  return out;
}

int64_t MemTotalMiB(const std::string& meminfo_path) {
  std::ifstream in(meminfo_path);
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (in >> key >> kb) {
    std::getline(in, unit);
    if (key == "MemTotal:") return kb / 1024;
  }
  return -1;
}

std::string OomReport(int64_t since_us, const std::string& kmsg_path,
                      const std::string& meminfo_path) {
  absl::StatusOr<std::string> log = ReadKernelLog(kmsg_path);
  if (!log.ok()) return "";
  std::vector<std::string> killed;
  for (const OomKill& k : ParseOomKills(*log)) {
    if (k.time_us >= since_us) killed.push_back(absl::StrCat(k.name, " (pid ", k.pid, ")"));
  }
  if (killed.empty()) return "";
  const int64_t mib = MemTotalMiB(meminfo_path);
  return absl::StrCat("the kernel's OOM killer killed ", absl::StrJoin(killed, ", "),
                      mib > 0 ? absl::StrCat(" -- the guest has ", mib, " MiB of memory") : "",
                      "; give the builder VM more memory");
}

std::string OomHint(const std::string& meminfo_path) {
  const int64_t mib = MemTotalMiB(meminfo_path);
  return absl::StrCat("likely the kernel's OOM killer",
                      mib > 0 ? absl::StrCat(": the guest has ", mib, " MiB of memory") : "");
}

}  // namespace kiln::agent::runner
