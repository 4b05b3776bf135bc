// File: harness/console.cc
#include "harness/console.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace kiln::harness {
namespace {

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
    r.steps.push_back(std::string(word.substr(5)));
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
        r.warnings.push_back(std::move(*p));
      }
      ok = true;
    }
  }
  if (!ok) r.malformed_lines.push_back(std::string(marker));
}

void ParseCheckLine(absl::string_view marker, ConsoleResult& r) {
  absl::string_view rest = marker.substr(kCheckPrefix.size());
  std::pair<absl::string_view, absl::string_view> nv =
      absl::StrSplit(rest, absl::MaxSplits(' ', 1));
  absl::string_view name = absl::StripAsciiWhitespace(nv.first);
  if (name.empty()) {
    r.malformed_lines.push_back(std::string(marker));
    return;
  }
  r.checks.push_back({std::string(name), std::string(absl::StripTrailingAsciiWhitespace(nv.second))});
}

}  // namespace

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

ConsoleResult ParseConsole(absl::string_view log) {
  ConsoleResult r;
  // Only complete lines: drop an unterminated tail.
  size_t last_nl = log.rfind('\n');
  log = last_nl == absl::string_view::npos ? absl::string_view() : log.substr(0, last_nl + 1);
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    while (!line.empty() && (line.back() == '\r' || line.back() == '\0')) line.remove_suffix(1);
    if (line.empty()) continue;
    if (size_t p = line.find(kInitPrefix); p != absl::string_view::npos) {
      ParseInitLine(line.substr(p), r);
      continue;
    }
    if (size_t p = line.find(kCheckPrefix); p != absl::string_view::npos) {
      ParseCheckLine(line.substr(p), r);
      continue;
    }
    if (r.kernel_version.empty()) {
      if (size_t p = line.find("Linux version "); p != absl::string_view::npos) {
        absl::string_view v = line.substr(p + 14);
        r.kernel_version = std::string(v.substr(0, v.find(' ')));
      }
    }
    bool lockup = absl::StrContains(line, "watchdog: BUG: soft lockup");
    bool panic = absl::StrContains(line, "Kernel panic");
    if ((lockup || panic) && r.stuck_line.empty()) r.stuck_line = std::string(line);
    r.soft_lockup |= lockup;
    r.kernel_panic |= panic;
  }
  return r;
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
