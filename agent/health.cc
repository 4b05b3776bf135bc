#include "agent/file/file.h"
#include "agent/health.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::agent {
namespace {

absl::Status Bad(absl::string_view file, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": cannot parse ", what));
}

absl::StatusOr<uint64_t> Milli(absl::string_view file, absl::string_view field) {
  double v;
  if (!absl::SimpleAtod(field, &v) || v < 0 || v > 1e15) {
    return Bad(file, absl::StrCat("\"", field, "\""));
  }
  return static_cast<uint64_t>(v * 1000 + 0.5);
}

}  // namespace

absl::Status ParseHealth(absl::string_view uptime, absl::string_view loadavg,
                         absl::string_view meminfo, Pong* pong) {
  std::vector<absl::string_view> u = absl::StrSplit(uptime, ' ', absl::SkipWhitespace());
  if (u.empty()) return Bad("/proc/uptime", "empty file");
  ASSIGN_OR_RETURN(pong->uptime_ms, Milli("/proc/uptime", u[0]));
  std::vector<absl::string_view> l = absl::StrSplit(loadavg, ' ', absl::SkipWhitespace());
  if (l.size() < 3) return Bad("/proc/loadavg", "three load averages");
  ASSIGN_OR_RETURN(uint64_t l1, Milli("/proc/loadavg", l[0]));
  ASSIGN_OR_RETURN(uint64_t l5, Milli("/proc/loadavg", l[1]));
  ASSIGN_OR_RETURN(uint64_t l15, Milli("/proc/loadavg", l[2]));
  pong->load1_milli = static_cast<uint32_t>(std::min<uint64_t>(l1, UINT32_MAX));
  pong->load5_milli = static_cast<uint32_t>(std::min<uint64_t>(l5, UINT32_MAX));
  pong->load15_milli = static_cast<uint32_t>(std::min<uint64_t>(l15, UINT32_MAX));
  bool total = false, avail = false;
  for (absl::string_view line : absl::StrSplit(meminfo, '\n')) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (f.size() < 2) continue;
    uint64_t kb;
    if (f[0] == "MemTotal:" || f[0] == "MemAvailable:") {
      if (!absl::SimpleAtoi(f[1], &kb)) return Bad("/proc/meminfo", f[0]);
      (f[0] == "MemTotal:" ? pong->mem_total_bytes : pong->mem_available_bytes) = kb * 1024;
      (f[0] == "MemTotal:" ? total : avail) = true;
    }
  }
  if (!total || !avail) return Bad("/proc/meminfo", "MemTotal and MemAvailable");
  return absl::OkStatus();
}

absl::StatusOr<Pong> ReadHealth(absl::string_view proc_root, uint64_t nonce) {
  const std::string root(proc_root);
  ASSIGN_OR_RETURN(std::string uptime, file::ReadFile(root + "/uptime"));
  ASSIGN_OR_RETURN(std::string loadavg, file::ReadFile(root + "/loadavg"));
  ASSIGN_OR_RETURN(std::string meminfo, file::ReadFile(root + "/meminfo"));
  Pong pong;
  pong.nonce = nonce;
  RETURN_IF_ERROR(ParseHealth(uptime, loadavg, meminfo, &pong));
  return pong;
}

}  // namespace kiln::agent
