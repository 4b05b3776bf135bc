// File: init/config.cc
#include "init/config.h"

#include <limits>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::init {
namespace {

absl::Status BadValue(absl::string_view key, absl::string_view value,
                      absl::string_view allowed, absl::string_view why = "bad value") {
  return absl::InvalidArgumentError(
      absl::StrCat(key, "=\"", value, "\": ", why, "; allowed: ", allowed));
}

// IsDevicePath: an absolute path with at least one character after the slash, no "..".
bool IsAbsolutePath(absl::string_view v) {
  return v.size() > 1 && v[0] == '/' && !absl::StrContains(v, "/../") &&
         !absl::EndsWith(v, "/..");
}

bool IsFsTypeName(absl::string_view v) {
  if (v.empty() || v.size() > 32) return false;
  for (char c : v) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '_' && c != '.') return false;
  }
  return true;
}

// ParseDecimal: a plain unsigned decimal (digits only: no sign, no spaces) <= max.
template <typename T>
bool ParseDecimal(absl::string_view v, T max, T* out) {
  if (v.empty() || v.size() > 20) return false;
  for (char c : v) {
    if (!absl::ascii_isdigit(c)) return false;
  }
  uint64_t n = 0;
  if (!absl::SimpleAtoi(v, &n) || n > static_cast<uint64_t>(max)) return false;
  *out = static_cast<T>(n);
  return true;
}

absl::Status ApplyKey(absl::string_view key, absl::string_view value, Config* c) {
  if (key == kKeyCgroup) {
    if (value == "rw") {
      c->cgroup = CgroupPolicy::kReadWrite;
    } else if (value == "ro") {
      c->cgroup = CgroupPolicy::kReadOnly;
    } else if (value == "off") {
      c->cgroup = CgroupPolicy::kOff;
    } else {
      return BadValue(key, value, "rw|ro|off");
    }
  } else if (key == kKeyRoot) {
    if (!IsAbsolutePath(value)) return BadValue(key, value, "an absolute device path, e.g. /dev/vda");
    c->root = std::string(value);
  } else if (key == kKeyRootFsType) {
    if (!IsFsTypeName(value)) return BadValue(key, value, "a file system type, e.g. ext4|erofs");
    c->rootfstype = std::string(value);
  } else if (key == kKeyOverlay) {
    if (value != kOverlayTmpfs && !IsAbsolutePath(value)) {
      return BadValue(key, value, "tmpfs|an absolute device path, e.g. /dev/vdb");
    }
    c->overlay = std::string(value);
  } else if (key == kKeyExec) {
    absl::StatusOr<std::vector<std::string>> argv = SplitCommand(value);
    constexpr absl::string_view kAllowed =
        "a non-empty command split on spaces; '...' keeps spaces";
    if (!argv.ok()) return BadValue(key, value, kAllowed, argv.status().message());
    if (argv->empty()) return BadValue(key, value, kAllowed, "empty command");
    c->exec = *std::move(argv);
  } else if (key == kKeyUid || key == kKeyGid) {
    uint32_t id = 0;
    // 4294967295 is (uid_t)-1, which setuid(2) rejects.
    if (!ParseDecimal<uint32_t>(value, std::numeric_limits<uint32_t>::max() - 1, &id)) {
      return BadValue(key, value, "a decimal integer in [0, 4294967294]");
    }
    (key == kKeyUid ? c->uid : c->gid) = id;
  } else if (key == kKeyDeadlineMs) {
    // Bounded so that deadline arithmetic on int64 ms cannot overflow.
    constexpr uint64_t kMax = uint64_t{1} << 50;
    if (!ParseDecimal<uint64_t>(value, kMax, &c->deadline_ms)) {
      return BadValue(key, value, absl::StrCat("a decimal integer of ms in [0, ", kMax, "]"));
    }
  } else if (key == kKeyDelegate) {
    constexpr absl::string_view kAllowed =
        "<uid>[:<gid>], decimal, uid in [1, 4294967294], gid in [0, 4294967294] (default: uid)";
    constexpr uint32_t kMaxId = std::numeric_limits<uint32_t>::max() - 1;
    absl::string_view uid_text = value, gid_text = value;
    if (size_t colon = value.find(':'); colon != absl::string_view::npos) {
      uid_text = value.substr(0, colon);
      gid_text = value.substr(colon + 1);
    }
    CgroupDelegate d;
    if (!ParseDecimal<uint32_t>(uid_text, kMaxId, &d.uid) ||
        !ParseDecimal<uint32_t>(gid_text, kMaxId, &d.gid)) {
      return BadValue(key, value, kAllowed);
    }
    if (d.uid == 0) {
      return BadValue(key, value, kAllowed, "uid 0 (root needs no delegation)");
    }
    c->delegate = d;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown key ", key, "=\"", value, "\"; known keys: ", kKeyCgroup, ", ", kKeyRoot, ", ",
        kKeyRootFsType, ", ", kKeyOverlay, ", ", kKeyExec, ", ", kKeyUid, ", ", kKeyGid, ", ",
        kKeyDeadlineMs, ", ", kKeyDelegate));
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view CgroupPolicyName(CgroupPolicy policy) {
  switch (policy) {
    case CgroupPolicy::kReadWrite: return "rw";
    case CgroupPolicy::kReadOnly: return "ro";
    case CgroupPolicy::kOff: return "off";
  }
  return "?";
}

std::vector<std::string> SplitCmdline(absl::string_view text) {
  std::vector<std::string> out;
  std::string cur;
  bool in_token = false, in_quote = false;
  for (char ch : text) {
    if (ch == '"') {
      in_quote = !in_quote;
      in_token = true;
      continue;
    }
    if (!in_quote && absl::ascii_isspace(static_cast<unsigned char>(ch))) {
      if (in_token) out.push_back(std::move(cur));
      cur.clear();
      in_token = false;
      continue;
    }
    cur.push_back(ch);
    in_token = true;
  }
  if (in_token) out.push_back(std::move(cur));
  return out;
}

absl::StatusOr<std::vector<std::string>> SplitCommand(absl::string_view value) {
  std::vector<std::string> out;
  std::string cur;
  bool in_token = false, in_quote = false;
  for (char ch : value) {
    if (ch == '\'') {
      in_quote = !in_quote;
      in_token = true;
      continue;
    }
    if (!in_quote && (ch == ' ' || ch == '\t' || ch == '\n')) {
      if (in_token) out.push_back(std::move(cur));
      cur.clear();
      in_token = false;
      continue;
    }
    cur.push_back(ch);
    in_token = true;
  }
  if (in_quote) return absl::InvalidArgumentError("unterminated ' quote");
  if (in_token) out.push_back(std::move(cur));
  return out;
}

absl::StatusOr<Config> ParseCmdline(absl::string_view text) {
  Config config;
  for (const std::string& param : SplitCmdline(text)) {
    if (!absl::StartsWith(param, kKeyPrefix)) continue;  // not ours (console=, panic=, ...)
    size_t eq = param.find('=');
    if (eq == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(param, ": missing value; write ", param, "=<value>"));
    }
    RETURN_IF_ERROR(ApplyKey(absl::string_view(param).substr(0, eq),
                             absl::string_view(param).substr(eq + 1), &config));
  }
  // Keys that depend on each other are checked once all are read (any order on the line).
  if (config.delegate && config.cgroup != CgroupPolicy::kReadWrite) {
    return absl::InvalidArgumentError(absl::StrCat(
        kKeyDelegate, "=\"", config.delegate->uid, ":", config.delegate->gid, "\" with ",
        kKeyCgroup, "=", CgroupPolicyName(config.cgroup),
        ": a read-only or absent cgroup2 cannot be delegated; allowed: ", kKeyDelegate,
        " only with ", kKeyCgroup, "=rw (the default)"));
  }
  return config;
}

}  // namespace kiln::init
