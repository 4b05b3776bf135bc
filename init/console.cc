// File: init/console.cc
#include "init/console.h"

#include <sys/wait.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace kiln::init {
namespace {

constexpr absl::string_view kErrnoTag = " [errno ";

std::string FormatProblem(absl::string_view kind, absl::string_view step,
                          const absl::Status& status) {
  int err = ErrnoOf(status);
  std::string detail = absl::StrReplaceAll(DetailOf(status), {{"\n", " "}, {"\r", " "}});
  return absl::StrCat(kConsolePrefix, kind, " step=", step, " errno=", err, " (",
                      strerror(err), "): ", detail, "\n");
}

}  // namespace

int ErrnoOf(const absl::Status& status) {
  absl::string_view msg = status.message();
  size_t at = msg.rfind(kErrnoTag);
  if (at == absl::string_view::npos || msg.empty() || msg.back() != ']') return 0;
  absl::string_view num = msg.substr(at + kErrnoTag.size());
  num.remove_suffix(1);
  int err = 0;
  if (!absl::SimpleAtoi(num, &err) || err < 0) return 0;
  return err;
}

std::string DetailOf(const absl::Status& status) {
  absl::string_view msg = status.message();
  if (ErrnoOf(status) != 0) msg = msg.substr(0, msg.rfind(kErrnoTag));
  return std::string(msg);
}

std::string FormatStep(absl::string_view step, absl::string_view fields) {
  return absl::StrCat(kConsolePrefix, "step=", step, fields.empty() ? "" : " ", fields, "\n");
}

std::string FormatWarning(absl::string_view step, const absl::Status& status) {
  return FormatProblem("warning", step, status);
}

std::string FormatFatal(absl::string_view step, const absl::Status& status) {
  return FormatProblem("fatal", step, status);
}

std::string FormatReady(int64_t uptime_ms) {
  return absl::StrCat(kConsolePrefix, "ready uptime_ms=", uptime_ms, "\n");
}

std::string FormatExit(int wait_status, int64_t uptime_ms) {
  if (WIFSIGNALED(wait_status)) {
    return absl::StrCat(kConsolePrefix, "exit signal=", WTERMSIG(wait_status),
                        " uptime_ms=", uptime_ms, "\n");
  }
  return absl::StrCat(kConsolePrefix, "exit status=", WEXITSTATUS(wait_status),
                      " uptime_ms=", uptime_ms, "\n");
}

}  // namespace kiln::init
