// File: harness/vmm/console.cc
#include "harness/vmm/console.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::harness {
namespace {

// Keep(list, item, r): appends unless the list is full (counted in r.dropped_records).
template <typename T>
void Keep(std::vector<T>& list, T item, ConsoleResult& r) {
  if (list.size() >= kMaxConsoleRecords) {
    ++r.dropped_records;
    return;
  }
  list.push_back(std::move(item));
}

// Field(text, key): the value of the whitespace-separated token `key=<value>` in `text`.
std::optional<absl::string_view> Field(absl::string_view text, absl::string_view key) {
  for (absl::string_view tok : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&tok, key) && absl::ConsumePrefix(&tok, "=")) return tok;
  }
  return std::nullopt;
}

template <typename T>
std::optional<T> IntField(absl::string_view text, absl::string_view key) {
  std::optional<absl::string_view> v = Field(text, key);
  T out;
  if (!v || !absl::SimpleAtoi(*v, &out)) return std::nullopt;
  return out;
}

// ParseProblem(rest, line): `step=<s> errno=<n> (<strerror>): <detail>`.
std::optional<InitProblem> ParseProblem(absl::string_view rest, absl::string_view line) {
  InitProblem p;
  p.line = std::string(line);
  absl::string_view fields = rest;
  size_t colon = rest.find("): ");
  if (colon != absl::string_view::npos) {
    p.detail = std::string(rest.substr(colon + 3));
    fields = rest.substr(0, colon);
  } else if (size_t c = rest.find(": "); c != absl::string_view::npos) {
    p.detail = std::string(rest.substr(c + 2));
    fields = rest.substr(0, c);
  }
  std::optional<absl::string_view> step = Field(fields, "step");
  if (!step || step->empty()) return std::nullopt;
  p.step = std::string(*step);
  if (std::optional<int> e = IntField<int>(fields, "errno")) p.errnum = *e;
  return p;
}

void ParseInitLine(absl::string_view marker, ConsoleResult& r) {
  absl::string_view rest = marker.substr(kInitPrefix.size());
  rest = absl::StripAsciiWhitespace(rest);
  std::pair<absl::string_view, absl::string_view> kw =
      absl::StrSplit(rest, absl::MaxSplits(' ', 1));
  absl::string_view word = kw.first, args = kw.second;
  bool ok = false;
  if (absl::StartsWith(word, "step=")) {
    Keep(r.steps, std::string(word.substr(5)), r);
    ok = word.size() > 5;
  } else if (word == "ready") {
    r.ready = true;
    r.ready_uptime_ms = IntField<int64_t>(args, "uptime_ms");
    ok = true;
  } else if (word == "exit") {
    std::optional<int> status = IntField<int>(args, "status");
    std::optional<int> sig = IntField<int>(args, "signal");
    if (status || sig) {
      r.exit_status = status;
      r.exit_signal = sig;
      r.exit_uptime_ms = IntField<int64_t>(args, "uptime_ms");
      ok = true;
    }
  } else if (word == "fatal" || word == "warning") {
    if (std::optional<InitProblem> p = ParseProblem(args, marker)) {
      if (word == "fatal") {
        if (!r.fatal) r.fatal = std::move(*p);
      } else {
        Keep(r.warnings, std::move(*p), r);
      }
      ok = true;
    }
  }
  if (!ok) Keep(r.malformed_lines, std::string(marker), r);
}

void ParseCheckLine(absl::string_view marker, ConsoleResult& r) {
  absl::string_view rest = marker.substr(kCheckPrefix.size());
  std::pair<absl::string_view, absl::string_view> nv =
      absl::StrSplit(rest, absl::MaxSplits(' ', 1));
  absl::string_view name = absl::StripAsciiWhitespace(nv.first);
  if (name.empty()) {
    Keep(r.malformed_lines, std::string(marker), r);
    return;
  }
  Keep(r.checks,
       CheckLine{std::string(name), std::string(absl::StripTrailingAsciiWhitespace(nv.second))},
       r);
}

// ParseKilledProcess(rest): "<pid> (<name>) ..." after "Killed process ".
OomKill ParseKilledProcess(absl::string_view rest) {
  OomKill k;
  size_t digits = 0;
  while (digits < rest.size() && absl::ascii_isdigit(static_cast<unsigned char>(rest[digits]))) {
    ++digits;
  }
  (void)absl::SimpleAtoi(rest.substr(0, digits), &k.pid);
  rest.remove_prefix(digits);
  if (absl::ConsumePrefix(&rest, " (")) {
    const size_t close = rest.find(')');
    k.process = std::string(rest.substr(0, close));
  }
  return k;
}

// ParseOomLine(line, r): the OOM killer's lines (OomKill). Returns whether it was one.
bool ParseOomLine(absl::string_view line, ConsoleResult& r, bool& last_is_summary) {
  constexpr absl::string_view kKilled = "Killed process ";
  if (size_t k = line.find(kKilled); k != absl::string_view::npos &&
                                     (absl::StrContains(line, "Out of memory: ") ||
                                      absl::StrContains(line, "Memory cgroup out of memory: "))) {
    OomKill kill = ParseKilledProcess(line.substr(k + kKilled.size()));
    kill.memcg = absl::StrContains(line, "Memory cgroup out of memory: ");
    kill.line = std::string(line);
    if (last_is_summary && !r.oom_kills.empty() && r.oom_kills.back().pid == kill.pid) {
      r.oom_kills.back() = std::move(kill);  // the summary's kill, now with its Killed line
    } else {
      Keep(r.oom_kills, std::move(kill), r);
    }
    last_is_summary = false;
    return true;
  }
  if (size_t p = line.find("oom-kill:"); p != absl::string_view::npos) {
    OomKill kill;
    for (absl::string_view kv : absl::StrSplit(line.substr(p + 9), ',')) {
      if (absl::ConsumePrefix(&kv, "task=")) kill.process = std::string(kv);
      if (absl::ConsumePrefix(&kv, "pid=")) (void)absl::SimpleAtoi(kv, &kill.pid);
      if (absl::StartsWith(kv, "oom_memcg=") || kv == "constraint=CONSTRAINT_MEMCG") {
        kill.memcg = true;
      }
    }
    kill.line = std::string(line);
    const size_t before = r.oom_kills.size();
    Keep(r.oom_kills, std::move(kill), r);
    last_is_summary = r.oom_kills.size() > before;
    return true;
  }
  if (absl::StrContains(line, "Out of memory and no killable processes")) {
    OomKill kill;
    kill.line = std::string(line);
    Keep(r.oom_kills, std::move(kill), r);
    last_is_summary = false;
    return true;
  }
  return false;
}

}  // namespace

bool ConsoleResult::GuestOutOfMemory() const {
  for (const OomKill& k : oom_kills) {
    if (!k.memcg) return true;
  }
  return false;
}

std::string ConsoleResult::OomKilledProcesses(bool memcg) const {
  std::vector<std::string> names;
  for (const OomKill& k : oom_kills) {
    if (k.memcg != memcg) continue;
    if (k.process.empty()) {
      names.push_back("no killable process");
    } else {
      names.push_back(k.pid > 0 ? absl::StrCat(k.process, " (pid ", k.pid, ")") : k.process);
    }
  }
  return absl::StrJoin(names, ", ");
}

std::string GuestOomMessage(const ConsoleResult& console, int memory_mib,
                            absl::string_view memory_flag) {
  if (console.GuestOutOfMemory()) {
    return absl::StrCat("guest out of memory (OOM killer killed ", console.OomKilledProcesses(),
                        "); the VM had ", memory_mib, " MiB; raise ", memory_flag);
  }
  if (!console.oom_kills.empty()) {
    return absl::StrCat("a memory cgroup limit in the guest was hit (OOM killer killed ",
                        console.OomKilledProcesses(/*memcg=*/true), "); the VM had ",
                        memory_mib, " MiB");
  }
  return "";
}

std::optional<std::string> ConsoleResult::Check(absl::string_view name) const {
  for (auto it = checks.rbegin(); it != checks.rend(); ++it) {
    if (it->name == name) return it->value;
  }
  return std::nullopt;
}

std::vector<std::string> ConsoleResult::CheckAll(absl::string_view name) const {
  std::vector<std::string> out;
  for (const CheckLine& c : checks) {
    if (c.name == name) out.push_back(c.value);
  }
  return out;
}

void ConsoleParser::Line(absl::string_view line) {
  ConsoleResult& r = result_;
  while (!line.empty() && (line.back() == '\r' || line.back() == '\0')) line.remove_suffix(1);
  if (line.empty()) return;
  if (size_t p = line.find(kInitPrefix); p != absl::string_view::npos) {
    ParseInitLine(line.substr(p), r);
    return;
  }
  if (size_t p = line.find(kCheckPrefix); p != absl::string_view::npos) {
    ParseCheckLine(line.substr(p), r);
    return;
  }
  if (r.kernel_version.empty()) {
    if (size_t p = line.find("Linux version "); p != absl::string_view::npos) {
      absl::string_view v = line.substr(p + 14);
      r.kernel_version = std::string(v.substr(0, v.find(' ')));
    }
  }
  if (ParseOomLine(line, r, last_is_oom_summary_)) return;
  bool lockup = absl::StrContains(line, "watchdog: BUG: soft lockup");
  bool panic = absl::StrContains(line, "Kernel panic");
  if ((lockup || panic) && r.stuck_line.empty()) r.stuck_line = std::string(line);
  r.soft_lockup |= lockup;
  r.kernel_panic |= panic;
}

void ConsoleParser::Feed(absl::string_view bytes) {
  while (!bytes.empty()) {
    const size_t nl = bytes.find('\n');
    const absl::string_view piece = bytes.substr(0, nl);  // up to the newline (or all)
    if (!skipping_) {
      const size_t room = kMaxConsoleLineBytes - partial_.size();
      partial_.append(piece.data(), std::min(room, piece.size()));
      if (piece.size() > room) {
        ++result_.long_lines;
        skipping_ = true;
      }
    }
    if (nl == absl::string_view::npos) return;  // the line goes on in a later Feed
    Line(partial_);
    partial_.clear();
    skipping_ = false;
    bytes.remove_prefix(nl + 1);
  }
}

ConsoleResult ParseConsole(absl::string_view log) {
  ConsoleParser p;
  p.Feed(log);
  return p.result();
}

SerialLogFollower::SerialLogFollower(std::string path, SerialLogLimits limits)
    : path_(std::move(path)), limits_(limits) {}

absl::Status SerialLogFollower::Poll() {
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return PosixError(errno, "open serial log", path_);
  }
  char buf[64 << 10];
  uint64_t this_poll = 0;
  absl::Status status;
  while (this_poll < limits_.max_read_per_poll) {
    const size_t want =
        static_cast<size_t>(std::min<uint64_t>(sizeof(buf), limits_.max_read_per_poll - this_poll));
    const ssize_t n = ::pread(fd, buf, want, static_cast<off_t>(offset_));
    if (n < 0) {
      if (errno == EINTR) continue;
      status = PosixError(errno, "read serial log", path_);
      break;
    }
    if (n == 0) break;
    absl::string_view got(buf, static_cast<size_t>(n));
    offset_ += got.size();
    this_poll += got.size();
    parser_.Feed(got);
    if (head_.size() < limits_.head_bytes) {
      const size_t take = std::min(limits_.head_bytes - head_.size(), got.size());
      head_.append(got.data(), take);
      got.remove_prefix(take);
    }
    tail_.append(got.data(), got.size());
    if (tail_.size() > 2 * limits_.tail_bytes) tail_.erase(0, tail_.size() - limits_.tail_bytes);
  }
  ::close(fd);
  return status;
}

absl::Status SerialLogFollower::PollToEnd() {
  while (true) {
    const uint64_t before = offset_;
    if (absl::Status s = Poll(); !s.ok()) return s;
    if (offset_ == before) return absl::OkStatus();
  }
}

std::string SerialLogFollower::Text() const {
  if (!truncated()) return head_ + tail_;
  const absl::string_view tail = absl::string_view(tail_).substr(
      tail_.size() > limits_.tail_bytes ? tail_.size() - limits_.tail_bytes : 0);
  return absl::StrCat(head_, "\n[kiln: ", offset_ - head_.size() - tail.size(),
                      " bytes of the serial log not kept (host cap: first ",
                      limits_.head_bytes, " + last ", limits_.tail_bytes, " bytes)]\n", tail);
}

std::string SerialLogFollower::Tail(int max_lines) const {
  if (offset_ > head_.size() + tail_.size()) return LogTail(tail_, max_lines);  // trimmed
  if (tail_.empty()) return LogTail(head_, max_lines);
  return LogTail(head_ + tail_, max_lines);
}

std::string LogTail(absl::string_view log, int max_lines) {
  std::vector<absl::string_view> lines = absl::StrSplit(log, '\n');
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  size_t start = lines.size() > static_cast<size_t>(max_lines) ? lines.size() - max_lines : 0;
  std::string out;
  for (size_t i = start; i < lines.size(); ++i) {
    for (char c : lines[i]) {
      if (c == '\r') continue;
      unsigned char u = static_cast<unsigned char>(c);
      out.push_back((u < 0x20 && c != '\t') || u == 0x7f ? '?' : c);
    }
    out.push_back('\n');
  }
  return out;
}

}  // namespace kiln::harness
