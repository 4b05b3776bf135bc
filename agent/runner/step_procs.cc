#include "agent/file/file.h"
#include "agent/runner/step_procs.h"

#include <dirent.h>

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace kiln::agent::runner {
namespace {

}  // namespace

std::optional<ProcIds> ParseStatusIds(absl::string_view status, absl::string_view key) {
  const std::string prefix = absl::StrCat(key, ":");
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (!absl::ConsumePrefix(&line, prefix)) continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::ByAnyChar(" \t"),
                                                      absl::SkipEmpty());
    if (f.size() != 4) return std::nullopt;
    ProcIds ids;
    for (size_t i = 0; i < 4; ++i) {
      if (!absl::SimpleAtoi(f[i], &ids.ids[i]) || ids.ids[i] < 0) return std::nullopt;
    }
    return ids;
  }
  return std::nullopt;
}

std::string ParseStatusName(absl::string_view status) {
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (absl::ConsumePrefix(&line, "Name:")) {
      return std::string(absl::StripAsciiWhitespace(line));
    }
  }
  return "";
}

std::optional<std::string> UnifiedCgroupPath(absl::string_view cgroup) {
  for (absl::string_view line : absl::StrSplit(cgroup, '\n')) {
    if (absl::ConsumePrefix(&line, "0::")) return std::string(line);
  }
  return std::nullopt;
}

bool IsStepCgroup(absl::string_view path, const std::vector<std::string>& prefixes,
                  const std::vector<std::string>& excluded) {
  for (const std::string& e : excluded) {
    if (absl::StartsWith(path, e)) return false;
  }
  for (const std::string& p : prefixes) {
    if (absl::StartsWith(path, p)) return true;
  }
  return false;
}

std::string StepLine(long pid, absl::string_view comm, const ProcIds& uids,
                     absl::string_view cgroup) {
  return absl::StrCat("kiln: RUN step process ", pid, " (", comm, "): Uid ", uids.ids[0], " ",
                      uids.ids[1], " ", uids.ids[2], " ", uids.ids[3], " in cgroup ", cgroup);
}

StepWatcher::StepWatcher(std::string proc_root, std::vector<std::string> prefixes,
                         std::vector<std::string> excluded)
    : proc_root_(std::move(proc_root)),
      prefixes_(std::move(prefixes)),
      excluded_(std::move(excluded)) {}

std::vector<std::string> StepWatcher::Poll() {
  std::vector<std::string> lines;
  DIR* d = opendir(proc_root_.c_str());
  if (d == nullptr) return lines;
  while (struct dirent* e = readdir(d)) {
    long pid;
    if (!absl::SimpleAtoi(e->d_name, &pid) || seen_.count(pid) > 0) continue;
    const std::string dir = absl::StrCat(proc_root_, "/", e->d_name);
    std::optional<std::string> cg = UnifiedCgroupPath(file::ReadFileOrEmpty(dir + "/cgroup"));
    if (!cg.has_value() || !IsStepCgroup(*cg, prefixes_, excluded_)) continue;
    const std::string status = file::ReadFileOrEmpty(dir + "/status");
    const std::string comm = ParseStatusName(status);
    std::optional<ProcIds> uids = ParseStatusIds(status, "Uid");
    if (!uids.has_value() || absl::StartsWith(comm, "runc")) continue;
    seen_.insert(pid);
    lines.push_back(StepLine(pid, comm, *uids, *cg));
  }
  closedir(d);
  return lines;
}

}  // namespace kiln::agent::runner
