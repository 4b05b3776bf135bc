// File: harness/vmm/snapshot.h
// -----------------------------------------------------------------------------
//
// Warm builder snapshots (issue 12): what identifies a saved builder VM (the snapshot key) and
// where saved VMs live on the host (the snapshot cache). Pure data and plain files; the saving
// and restoring itself is the VMM's (harness/vmm/snapshot_qmp.h for QEMU), the flow is the builder
// client's (harness/builder/builder_client.h, BuilderVmOptions::warm).
//
// The key: SHA-256 over SnapshotKeyText, one "name=value" line per input: the digests of the
// kernel, the initrd and every disk, the VM config (memory, vCPUs, the device/argv shape, the
// whole guest kernel command line, which carries the cgroup mode, the builder mode and the
// agent's flags), the preloaded images, the VMM and its version string, and a format version.
// Any change of any input is a different key, so a stale snapshot is never restored: it is
// rebuilt under the new key and the old one ages out of the cache (eviction).
//
// The cache (SnapshotCache), one directory (`--snapshot_dir`, default DefaultSnapshotDir()):
//
//   <dir>/                     0700
//     <key>/                   0700, one complete snapshot (appears by rename: never partial)
//       state                  0600, the VMM's saved state (QEMU: a migration stream; a VMM
//                              whose snapshot is several files writes those instead, through
//                              GetOrMakeDir: Cloud Hypervisor's config.json, state.json,
//                              memory-ranges)
//       ram                    0600, QEMU with SnapshotRam::kFile only: the guest RAM
//                              (memory-backend-file; sparse: only touched pages take blocks);
//                              the state stream then holds device state only. A restored VM
//                              maps it private: it is only ever read after the save
//       key.txt                0600, SnapshotKeyText (what the key was made of)
//     <key>.lock               0600, flock(2): shared while a snapshot is used, exclusive
//                              while it is made or evicted
//     tmp.<key>.<pid>/         a snapshot being made (removed when that pid is gone)
//     digests/<h>              memoized file digests, h = SHA-256 of (path, device, inode,
//                              size, mtime in ns): a 500 MB disk is hashed once per change
//
// Two processes asking for the same missing snapshot make it once: the first takes the key's
// lock exclusively and makes it, the second blocks on the lock, then finds it made. After a
// snapshot is made, the least recently used others are evicted until the total is within
// max_bytes (an entry in use — its lock held shared — is skipped).
//
// Example:
//
//   ASSIGN_OR_RETURN(SnapshotCache cache, SnapshotCache::Open({.dir = flag_dir}));
//   SnapshotKeyInputs in = ...;  // digests via cache.FileDigest(path)
//   ASSIGN_OR_RETURN(SnapshotLease lease, cache.GetOrMake(SnapshotKey(in), SnapshotKeyText(in),
//       [&](const std::string& state_path) { return SaveTheVmTo(state_path); }));
//   // restore from lease.state_path(); the lease (a shared lock) keeps it from eviction.
#ifndef KILN_HARNESS_SNAPSHOT_H_
#define KILN_HARNESS_SNAPSHOT_H_

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace kiln::harness {

// kSnapshotFormatVersion: bumped when what a snapshot holds changes meaning (part of the key).
inline constexpr int kSnapshotFormatVersion = 1;

// SnapshotKeyInputs: everything a saved VM depends on. Pure data.
struct SnapshotKeyInputs {
  std::string vmm;           // "qemu"
  std::string vmm_version;   // e.g. "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"
  std::string kernel_digest;             // "sha256:<hex>" of the kernel file
  std::string initrd_digest;             // of the initrd ("" if none)
  std::vector<std::string> disk_digests;  // of each disk, in order, "<digest> ro|rw"
  int memory_mib = 0;
  int vcpus = 0;
  // devices: the VMM's device/argv shape with per-VM names blanked (QEMU: the argv of the
  // config with id, work dir and socket paths replaced by placeholders): machine, accel,
  // devices and their order, the kernel command line.
  std::string devices;
  std::string cmdline;       // the guest kernel command line (cgroup, delegate, agent flags)
  std::string cgroup;        // rw | ro | off
  std::string builder_mode;  // rootless | rootful
  // preloaded_images: "<ref> <digest>" of each image loaded before the snapshot, in order.
  std::vector<std::string> preloaded_images;
  // daemon: "" when the snapshot holds an agent at Ready only; "up" when the agent also started
  // its BuildKit daemon and loaded preloaded_images into it (WarmUp, agent/PROTOCOL.md 1.1).
  std::string daemon;
  // ram_mode: where the guest RAM is kept (harness/vmm/qemu.h SnapshotRamName): "stream" (in
  // the state stream) or "file" (the entry's `ram` file); "" for a VMM without the choice.
  std::string ram_mode;
};

// SnapshotKeyText(in): the canonical text the key is computed over: one "name=value" line per
// field in a fixed order (lists one line per element), starting with
// "format=<kSnapshotFormatVersion>"; "daemon=<daemon>" only when daemon is set, then
// "ram=<ram_mode>" only when ram_mode is set. Pure.
std::string SnapshotKeyText(const SnapshotKeyInputs& in);

// SnapshotKey(in): 64 lowercase hex characters, SHA-256 of SnapshotKeyText(in). Pure.
std::string SnapshotKey(const SnapshotKeyInputs& in);

// ValidateSnapshotKeyInputs(in): InvalidArgument naming the first empty required field (vmm,
// vmm_version, kernel_digest, devices, cmdline) or memory_mib/vcpus <= 0, or a value with a
// newline (it would break the one-line-per-field text). Pure.
absl::Status ValidateSnapshotKeyInputs(const SnapshotKeyInputs& in);

// kSnapshotStateFile, kSnapshotRamFile: the names, in a cache entry, of QEMU's saved state (a
// migration stream) and of its guest RAM file (SnapshotRam::kFile).
inline constexpr char kSnapshotStateFile[] = "state";
inline constexpr char kSnapshotRamFile[] = "ram";
// SnapshotStatePath(entry_dir), SnapshotRamPath(entry_dir): <entry_dir>/state, <entry_dir>/ram.
inline std::string SnapshotStatePath(absl::string_view entry_dir) {
  return absl::StrCat(entry_dir, "/", kSnapshotStateFile);
}
inline std::string SnapshotRamPath(absl::string_view entry_dir) {
  return absl::StrCat(entry_dir, "/", kSnapshotRamFile);
}

// kSnapshotDirEnv: environment variable naming the snapshot directory.
inline constexpr char kSnapshotDirEnv[] = "KILN_SNAPSHOT_DIR";
// kDefaultSnapshotDir: the snapshot directory when neither a flag nor the env var is set (next
// to the kept builders' state, /var/lib/kiln/builders).
inline constexpr char kDefaultSnapshotDir[] = "/var/lib/kiln/snapshots";
// kDefaultSnapshotMaxBytes: the cache's default size cap (4 GiB; a builder snapshot of a
// 1 GiB guest is ~220 MB).
inline constexpr uint64_t kDefaultSnapshotMaxBytes = uint64_t{4} << 30;

// DefaultSnapshotDir(): $KILN_SNAPSHOT_DIR if set and non-empty, else kDefaultSnapshotDir.
std::string DefaultSnapshotDir();

// SnapshotCacheOptions: where and how big.
struct SnapshotCacheOptions {
  std::string dir;  // "": DefaultSnapshotDir()
  uint64_t max_bytes = kDefaultSnapshotMaxBytes;
};

// SnapshotLease: one snapshot in use: its files, held by a shared flock on <key>.lock until
// the lease is destroyed (eviction skips it meanwhile). Move-only.
class SnapshotLease {
 public:
  SnapshotLease() = default;
  SnapshotLease(std::string key, std::string dir, int lock_fd, bool made)
      : key_(std::move(key)), dir_(std::move(dir)), lock_fd_(lock_fd), made_(made) {}
  SnapshotLease(SnapshotLease&& other) noexcept;
  SnapshotLease& operator=(SnapshotLease&& other) noexcept;
  SnapshotLease(const SnapshotLease&) = delete;
  SnapshotLease& operator=(const SnapshotLease&) = delete;
  ~SnapshotLease();

  const std::string& key() const { return key_; }
  // dir(): <cache>/<key>; state_path(): <dir>/state.
  const std::string& dir() const { return dir_; }
  std::string state_path() const { return SnapshotStatePath(dir_); }
  // ram_path(): <dir>/ram, the guest RAM file of a QEMU snapshot in SnapshotRam::kFile mode
  // (the maker writes it next to the state file; absent in stream mode).
  std::string ram_path() const { return SnapshotRamPath(dir_); }
  // made(): this call made the snapshot (false: it was in the cache already).
  bool made() const { return made_; }

 private:
  friend class SnapshotCache;
  std::string key_, dir_;
  int lock_fd_ = -1;
  bool made_ = false;
};

// SnapshotEntryInfo: one cached snapshot (List()).
struct SnapshotEntryInfo {
  std::string key;
  uint64_t bytes = 0;       // all files of the entry: blocks on disk (st_blocks * 512), as du
                            // counts them (a sparse RAM file counts its touched pages only)
  int64_t last_used_ns = 0;  // mtime of the entry dir (touched on every use)
};

// SnapshotCache: the snapshot directory. Thread-compatible; safe across processes (flock).
class SnapshotCache {
 public:
  // Open(options): creates the directory (0700, parents 0755) if missing. Errors: errno-derived
  // (PermissionDenied, ...) naming the path; InvalidArgument for max_bytes == 0.
  static absl::StatusOr<SnapshotCache> Open(SnapshotCacheOptions options);

  // SnapshotMaker: writes the VMM state to `state_path` (a new file in a fresh 0700 temporary
  // directory). Its error is GetOrMake's.
  using SnapshotMaker = std::function<absl::Status(const std::string& state_path)>;
  // SnapshotDirMaker: writes the VMM's snapshot files into `entry_dir` (a fresh, empty 0700
  // temporary directory that becomes <cache>/<key>): for a VMM whose snapshot is several files
  // (Cloud Hypervisor: config.json, state.json, memory-ranges). Regular files only, no
  // subdirectories; the name key.txt is the cache's. Its error is GetOrMakeDir's.
  using SnapshotDirMaker = std::function<absl::Status(const std::string& entry_dir)>;

  // GetOrMake(key, key_text, make): the snapshot `key` (64 lowercase hex), made with `make` if
  // the cache has none; returns its lease (shared lock held). Making: under an exclusive lock,
  // into tmp.<key>.<pid>/, files chmod 0600 and fsync'ed, key.txt written, then renamed into
  // place (atomic), then other snapshots evicted (least recently used first) until the cache
  // is within max_bytes. Errors: InvalidArgument for a bad key; make's error (nothing is left
  // behind); ResourceExhausted if the new snapshot alone is larger than max_bytes (it is
  // deleted); errno-derived codes for file errors.
  absl::StatusOr<SnapshotLease> GetOrMake(const std::string& key, absl::string_view key_text,
                                          const SnapshotMaker& make);

  // GetOrMakeDir(key, key_text, make): GetOrMake for a snapshot of several files: `make` writes
  // them into the entry's temporary directory; every regular file in it is then chmod 0600 and
  // fsync'ed, key.txt written and the directory renamed into place, as GetOrMake does.
  // GetOrMake(key, text, m) is GetOrMakeDir with a maker that calls m(<entry_dir>/state).
  // Errors: GetOrMake's; FailedPrecondition if `make` succeeded but wrote no file, or left a
  // non-regular file (a directory, a symlink) in the entry.
  absl::StatusOr<SnapshotLease> GetOrMakeDir(const std::string& key, absl::string_view key_text,
                                             const SnapshotDirMaker& make);

  // Lookup(key): the lease of a cached snapshot; NotFound if there is none (nothing is made).
  absl::StatusOr<SnapshotLease> Lookup(const std::string& key);

  // Remove(key): deletes the snapshot (waits for its users' shared locks). OK if absent. For a
  // snapshot that failed to restore.
  absl::Status Remove(const std::string& key);

  // List(): the complete snapshots, least recently used first.
  absl::StatusOr<std::vector<SnapshotEntryInfo>> List() const;

  // FileDigest(path): "sha256:<hex>" of the file's contents, memoized under digests/ by
  // (path, device, inode, size, mtime ns). Errors: the file's (NotFound naming it).
  absl::StatusOr<std::string> FileDigest(const std::string& path);

  const std::string& dir() const { return dir_; }
  uint64_t max_bytes() const { return max_bytes_; }

 private:
  SnapshotCache(std::string dir, uint64_t max_bytes) : dir_(std::move(dir)), max_bytes_(max_bytes) {}
  absl::Status Evict(const std::string& keep_key);
  void RemoveStaleTemps();

  std::string dir_;
  uint64_t max_bytes_;
};

// IsSnapshotKey(text): 64 lowercase hex characters. Pure.
bool IsSnapshotKey(absl::string_view text);

// LruVictims(entries, max_bytes, keep_key, in_use): which entries to evict, least recently
// used first, so that the rest total at most max_bytes (or as close as possible: keep_key and
// the entries in `in_use` always stay). Pure.
std::vector<std::string> LruVictims(std::vector<SnapshotEntryInfo> entries, uint64_t max_bytes,
                                    absl::string_view keep_key,
                                    const std::set<std::string>& in_use = {});

}  // namespace kiln::harness

#endif  // KILN_HARNESS_SNAPSHOT_H_
