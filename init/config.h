// File: init/config.h
// -----------------------------------------------------------------------------
//
// Config: the kiln.* keys of the kernel command line (docs/interfaces.md "Kernel command
// line"; the key/type/default table is in init/README.md). ParseCmdline takes the text (PID 1
// reads /proc/cmdline after mounting /proc; tests pass strings), tokenizes it the way the
// kernel does (whitespace-separated, `"` groups a value with spaces and is removed), ignores
// every key not starting with "kiln.", and rejects an unknown kiln.* key or a bad value.
// A key given twice takes its last value, as the kernel does for its own parameters.
//
// Example:
//
//   absl::StatusOr<Config> c = ParseCmdline(
//       "console=ttyS0 kiln.root=/dev/vda kiln.exec=\"/usr/lib/kiln/check cgroup\"");
//   // c->root == "/dev/vda", c->exec == {"/usr/lib/kiln/check", "cgroup"}
//   ParseCmdline("kiln.cgroup=xx");
//   // INVALID_ARGUMENT: kiln.cgroup="xx": bad value; allowed: rw|ro|off
#ifndef KILN_INIT_CONFIG_H_
#define KILN_INIT_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::init {

// The kiln.* cmdline keys.
inline constexpr absl::string_view kKeyPrefix = "kiln.";
inline constexpr absl::string_view kKeyCgroup = "kiln.cgroup";
inline constexpr absl::string_view kKeyRoot = "kiln.root";
inline constexpr absl::string_view kKeyRootFsType = "kiln.rootfstype";
inline constexpr absl::string_view kKeyOverlay = "kiln.overlay";
inline constexpr absl::string_view kKeyExec = "kiln.exec";
inline constexpr absl::string_view kKeyUid = "kiln.uid";
inline constexpr absl::string_view kKeyGid = "kiln.gid";
inline constexpr absl::string_view kKeyDeadlineMs = "kiln.deadline_ms";
inline constexpr absl::string_view kKeyDelegate = "kiln.delegate";

// Defaults.
inline constexpr absl::string_view kDefaultRootFsType = "ext4";
inline constexpr absl::string_view kOverlayTmpfs = "tmpfs";

// CgroupPolicy: kiln.cgroup. kReadWrite is the builder default; kReadOnly for untrusted
// workloads; kOff (no cgroup2 mount) exists for the negative control.
enum class CgroupPolicy { kReadWrite, kReadOnly, kOff };

// CgroupPolicyName: "rw", "ro" or "off".
absl::string_view CgroupPolicyName(CgroupPolicy policy);

// CgroupDelegate: kiln.delegate=<uid>[:<gid>]: init delegates the cgroup v2 subtree
// /sys/fs/cgroup/kiln-builder to uid:gid (init/cgroup_delegation.h). `uid` is never 0 (root
// needs no delegation; the parser refuses it); `gid` defaults to `uid`.
struct CgroupDelegate {
  uint32_t uid = 0;
  uint32_t gid = 0;

  bool operator==(const CgroupDelegate&) const = default;
};

// Config: the parsed kiln.* keys. Default-constructed: the defaults of every key.
struct Config {
  CgroupPolicy cgroup = CgroupPolicy::kReadWrite;   // kiln.cgroup
  std::string root;                                 // kiln.root; empty: stay in initramfs
  std::string rootfstype = std::string(kDefaultRootFsType);  // kiln.rootfstype
  std::string overlay = std::string(kOverlayTmpfs);  // kiln.overlay: "tmpfs" or a device
  std::vector<std::string> exec;                    // kiln.exec, split; empty: power off
  uint32_t uid = 0;                                 // kiln.uid
  uint32_t gid = 0;                                 // kiln.gid
  uint64_t deadline_ms = 0;                         // kiln.deadline_ms; 0: no deadline
  std::optional<CgroupDelegate> delegate;           // kiln.delegate; unset: no delegation
};

// SplitCmdline: the kernel command line `text` split into parameters: separated by
// whitespace; a `"` opens or closes a quoted run in which whitespace does not separate; the
// quote characters themselves are removed. An unterminated quote runs to the end of the text
// (as in the kernel's next_arg()).
std::vector<std::string> SplitCmdline(absl::string_view text);

// SplitCommand: kiln.exec's value split into argv: separated by runs of spaces/tabs; a
// single-quoted run ('...') keeps its spaces and loses its quotes (the kernel command line
// cannot nest `"`, so `kiln.exec="sh -c 'echo a b'"` gives {"sh", "-c", "echo a b"}).
// Returns INVALID_ARGUMENT for an unterminated single quote.
absl::StatusOr<std::vector<std::string>> SplitCommand(absl::string_view value);

// ParseCmdline: the Config of kernel command line `text`. Returns INVALID_ARGUMENT, with a
// message naming the key, the value and what is allowed, for: an unknown kiln.* key, a kiln.*
// key without "=value", a bad value of a known key (kiln.delegate: uid 0, a non-decimal or
// out-of-range uid or gid, an empty part), or kiln.delegate together with kiln.cgroup=ro or
// off (a subtree of a read-only or absent cgroup2 cannot be delegated), in any key order.
absl::StatusOr<Config> ParseCmdline(absl::string_view text);

}  // namespace kiln::init

#endif  // KILN_INIT_CONFIG_H_
