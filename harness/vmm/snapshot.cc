// File: harness/vmm/snapshot.cc
#include "harness/vmm/snapshot.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>
#include <cerrno>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "images/oci/digest.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::harness {
namespace {

constexpr char kKeyFile[] = "key.txt";
constexpr char kTmpPrefix[] = "tmp.";

absl::Status MakeDirs(const std::string& path, mode_t leaf_mode) {
  std::string partial;
  std::vector<std::string> parts = absl::StrSplit(path, '/');
  for (size_t i = 0; i < parts.size(); ++i) {
    partial += parts[i];
    const bool leaf = i + 1 == parts.size();
    if (!partial.empty() && mkdir(partial.c_str(), leaf ? leaf_mode : 0755) != 0 &&
        errno != EEXIST) {
      return PosixError(errno, "mkdir", partial);
    }
    partial += "/";
  }
  return absl::OkStatus();
}

// WriteFileSync(path, data): a new 0600 file with `data`, fsync'ed.
absl::Status WriteFileSync(const std::string& path, absl::string_view data) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return PosixError(errno, "open", path);
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      close(fd);
      return PosixError(e, "write", path);
    }
    off += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) {
    const int e = errno;
    close(fd);
    return PosixError(e, "fsync", path);
  }
  close(fd);
  return absl::OkStatus();
}

absl::Status FsyncPath(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PosixError(errno, "open", path);
  const int r = fsync(fd);
  const int e = errno;
  close(fd);
  return r == 0 ? absl::OkStatus() : PosixError(e, "fsync", path);
}

// RemoveFlatDir(dir): unlinks every entry of `dir` (files only: snapshot entries are flat),
// then the dir. OK if it does not exist.
absl::Status RemoveFlatDir(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return errno == ENOENT ? absl::OkStatus() : PosixError(errno, "opendir", dir);
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    const std::string p = absl::StrCat(dir, "/", name);
    // An empty subdirectory (a maker's mistake, refused by SealEntryFiles) goes too.
    if (unlink(p.c_str()) != 0 && errno != ENOENT && rmdir(p.c_str()) != 0) {
      const int err = errno;
      closedir(d);
      return PosixError(err, "unlink", p);
    }
  }
  closedir(d);
  if (rmdir(dir.c_str()) != 0 && errno != ENOENT) return PosixError(errno, "rmdir", dir);
  return absl::OkStatus();
}

uint64_t FlatDirBytes(const std::string& dir) {
  uint64_t total = 0;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return 0;
  while (dirent* e = readdir(d)) {
    struct stat st;
    // Blocks on disk, not the apparent size: a file-mode RAM file is sparse (1 GiB apparent,
    // its touched pages allocated), and the cap is about the disk the cache takes.
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
      total += static_cast<uint64_t>(st.st_blocks) * 512;
    }
  }
  closedir(d);
  return total;
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

absl::StatusOr<int> OpenLock(const std::string& path) {
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return PosixError(errno, "open", path);
  return fd;
}

absl::Status Flock(int fd, int op, const std::string& path) {
  while (flock(fd, op) != 0) {
    if (errno == EINTR) continue;
    return PosixError(errno, "flock", path);
  }
  return absl::OkStatus();
}

void Touch(const std::string& path) { utimensat(AT_FDCWD, path.c_str(), nullptr, 0); }

}  // namespace

std::string SnapshotKeyText(const SnapshotKeyInputs& in) {
  std::string s = absl::StrCat("format=", kSnapshotFormatVersion, "\n");
  absl::StrAppend(&s, "vmm=", in.vmm, "\n", "vmm_version=", in.vmm_version, "\n");
  absl::StrAppend(&s, "kernel=", in.kernel_digest, "\n", "initrd=", in.initrd_digest, "\n");
  for (const std::string& d : in.disk_digests) absl::StrAppend(&s, "disk=", d, "\n");
  absl::StrAppend(&s, "memory_mib=", in.memory_mib, "\n", "vcpus=", in.vcpus, "\n");
  absl::StrAppend(&s, "devices=", in.devices, "\n", "cmdline=", in.cmdline, "\n");
  absl::StrAppend(&s, "cgroup=", in.cgroup, "\n", "builder_mode=", in.builder_mode, "\n");
  for (const std::string& p : in.preloaded_images) absl::StrAppend(&s, "preload=", p, "\n");
  if (!in.daemon.empty()) absl::StrAppend(&s, "daemon=", in.daemon, "\n");
  if (!in.ram_mode.empty()) absl::StrAppend(&s, "ram=", in.ram_mode, "\n");
  return s;
}

std::string SnapshotKey(const SnapshotKeyInputs& in) {
  return oci::Sha256Hex(SnapshotKeyText(in));
}

absl::Status ValidateSnapshotKeyInputs(const SnapshotKeyInputs& in) {
  const std::pair<const char*, const std::string*> required[] = {
      {"vmm", &in.vmm}, {"vmm_version", &in.vmm_version}, {"kernel_digest", &in.kernel_digest},
      {"devices", &in.devices}, {"cmdline", &in.cmdline}};
  for (const auto& [name, value] : required) {
    if (value->empty()) {
      return absl::InvalidArgumentError(absl::StrCat("SnapshotKeyInputs.", name, ": empty"));
    }
  }
  if (in.memory_mib <= 0 || in.vcpus <= 0) {
    return absl::InvalidArgumentError("SnapshotKeyInputs: memory_mib and vcpus must be > 0");
  }
  std::vector<const std::string*> all = {&in.vmm, &in.vmm_version, &in.kernel_digest,
                                         &in.initrd_digest, &in.devices, &in.cmdline,
                                         &in.cgroup, &in.builder_mode, &in.daemon,
                                         &in.ram_mode};
  for (const std::string& d : in.disk_digests) all.push_back(&d);
  for (const std::string& p : in.preloaded_images) all.push_back(&p);
  for (const std::string* v : all) {
    if (absl::StrContains(*v, '\n')) {
      return absl::InvalidArgumentError(
          absl::StrCat("SnapshotKeyInputs: a value contains a newline: ", v->substr(0, 80)));
    }
  }
  return absl::OkStatus();
}

std::string DefaultSnapshotDir() {
  const char* env = ::getenv(kSnapshotDirEnv);
  if (env != nullptr && env[0] != '\0') return env;
  return kDefaultSnapshotDir;
}

bool IsSnapshotKey(absl::string_view text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::vector<std::string> LruVictims(std::vector<SnapshotEntryInfo> entries, uint64_t max_bytes,
                                    absl::string_view keep_key,
                                    const std::set<std::string>& in_use) {
  std::stable_sort(entries.begin(), entries.end(),
                   [](const SnapshotEntryInfo& a, const SnapshotEntryInfo& b) {
                     return a.last_used_ns < b.last_used_ns;
                   });
  uint64_t total = 0;
  for (const SnapshotEntryInfo& e : entries) total += e.bytes;
  std::vector<std::string> victims;
  for (const SnapshotEntryInfo& e : entries) {
    if (total <= max_bytes) break;
    if (e.key == keep_key || in_use.count(e.key) > 0) continue;
    victims.push_back(e.key);
    total -= e.bytes;
  }
  return victims;
}

// ---------------------------------------------------------------------------------------------
// SnapshotLease

SnapshotLease::SnapshotLease(SnapshotLease&& o) noexcept
    : key_(std::move(o.key_)), dir_(std::move(o.dir_)), lock_fd_(o.lock_fd_), made_(o.made_) {
  o.lock_fd_ = -1;
}

SnapshotLease& SnapshotLease::operator=(SnapshotLease&& o) noexcept {
  if (this != &o) {
    if (lock_fd_ >= 0) close(lock_fd_);
    key_ = std::move(o.key_);
    dir_ = std::move(o.dir_);
    lock_fd_ = o.lock_fd_;
    made_ = o.made_;
    o.lock_fd_ = -1;
  }
  return *this;
}

SnapshotLease::~SnapshotLease() {
  if (lock_fd_ >= 0) close(lock_fd_);  // releases the flock
}

// ---------------------------------------------------------------------------------------------
// SnapshotCache

absl::StatusOr<SnapshotCache> SnapshotCache::Open(SnapshotCacheOptions options) {
  if (options.max_bytes == 0) return absl::InvalidArgumentError("snapshot max_bytes: must be > 0");
  std::string dir = options.dir.empty() ? DefaultSnapshotDir() : options.dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  RETURN_IF_ERROR(MakeDirs(dir, 0700));
  RETURN_IF_ERROR(MakeDirs(dir + "/digests", 0700));
  return SnapshotCache(dir, options.max_bytes);
}

absl::StatusOr<SnapshotLease> SnapshotCache::Lookup(const std::string& key) {
  if (!IsSnapshotKey(key)) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot key \"", key, "\": not 64 hex"));
  }
  const std::string lock_path = absl::StrCat(dir_, "/", key, ".lock");
  const std::string entry = absl::StrCat(dir_, "/", key);
  ASSIGN_OR_RETURN(int fd, OpenLock(lock_path));
  SnapshotLease lease(key, entry, fd, /*made=*/false);  // owns fd from here
  RETURN_IF_ERROR(Flock(fd, LOCK_SH, lock_path));
  if (!Exists(absl::StrCat(entry, "/", kKeyFile))) {
    return absl::NotFoundError(absl::StrCat("no snapshot ", key, " in ", dir_));
  }
  Touch(entry);
  return lease;
}

absl::StatusOr<SnapshotLease> SnapshotCache::GetOrMake(const std::string& key,
                                                       absl::string_view key_text,
                                                       const SnapshotMaker& make) {
  return GetOrMakeDir(key, key_text, [&make](const std::string& entry_dir) -> absl::Status {
    const std::string state = SnapshotStatePath(entry_dir);
    RETURN_IF_ERROR(make(state));
    if (!Exists(state)) {
      return absl::FailedPreconditionError(
          absl::StrCat("the snapshot maker wrote no state file ", state));
    }
    return absl::OkStatus();
  });
}

namespace {

// SealEntryFiles(dir): chmod 0600 + fsync of every entry of a freshly made snapshot dir;
// FailedPrecondition for an empty dir or a non-regular entry.
absl::Status SealEntryFiles(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return PosixError(errno, "opendir", dir);
  std::vector<std::string> files;
  absl::Status s;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    const std::string p = absl::StrCat(dir, "/", name);
    struct stat st;
    if (lstat(p.c_str(), &st) != 0) {
      s = PosixError(errno, "lstat", p);
      break;
    }
    if (!S_ISREG(st.st_mode)) {
      s = absl::FailedPreconditionError(
          absl::StrCat("snapshot entry ", p, ": not a regular file (entries are flat)"));
      break;
    }
    files.push_back(p);
  }
  closedir(d);
  RETURN_IF_ERROR(s);
  if (files.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("the snapshot maker wrote no file in ", dir));
  }
  for (const std::string& p : files) {
    if (chmod(p.c_str(), 0600) != 0) return PosixError(errno, "chmod", p);
    RETURN_IF_ERROR(FsyncPath(p));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SnapshotLease> SnapshotCache::GetOrMakeDir(const std::string& key,
                                                          absl::string_view key_text,
                                                          const SnapshotDirMaker& make) {
  if (!IsSnapshotKey(key)) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot key \"", key, "\": not 64 hex"));
  }
  const std::string lock_path = absl::StrCat(dir_, "/", key, ".lock");
  const std::string entry = absl::StrCat(dir_, "/", key);
  const std::string done_marker = absl::StrCat(entry, "/", kKeyFile);
  ASSIGN_OR_RETURN(int fd, OpenLock(lock_path));
  // The fd is owned by a lease from here on (closed on every error path).
  SnapshotLease shared(key, entry, fd, /*made=*/false);
  RETURN_IF_ERROR(Flock(fd, LOCK_SH, lock_path));
  if (Exists(done_marker)) {
    Touch(entry);
    return shared;
  }
  // Missing: make it under the exclusive lock. Whoever gets it first makes it; the others
  // block here and then find it made.
  RETURN_IF_ERROR(Flock(fd, LOCK_EX, lock_path));
  if (Exists(done_marker)) {
    RETURN_IF_ERROR(Flock(fd, LOCK_SH, lock_path));
    Touch(entry);
    return shared;
  }
  RemoveStaleTemps();
  if (Exists(entry)) RETURN_IF_ERROR(RemoveFlatDir(entry));  // incomplete leftover
  const std::string tmp = absl::StrCat(dir_, "/", kTmpPrefix, key, ".", getpid());
  RETURN_IF_ERROR(RemoveFlatDir(tmp));
  if (mkdir(tmp.c_str(), 0700) != 0) return PosixError(errno, "mkdir", tmp);
  absl::Status s = make(tmp);
  if (s.ok()) s = SealEntryFiles(tmp);
  if (s.ok()) s = WriteFileSync(absl::StrCat(tmp, "/", kKeyFile), key_text);
  const uint64_t bytes = s.ok() ? FlatDirBytes(tmp) : 0;
  if (s.ok() && bytes > max_bytes_) {
    s = absl::ResourceExhaustedError(absl::StrCat("snapshot of ", bytes,
                                                  " bytes is larger than the cache cap of ",
                                                  max_bytes_, " bytes"));
  }
  if (s.ok() && rename(tmp.c_str(), entry.c_str()) != 0) s = PosixError(errno, "rename", tmp);
  if (!s.ok()) {
    RemoveFlatDir(tmp).IgnoreError();
    return s;
  }
  FsyncPath(dir_).IgnoreError();
  RETURN_IF_ERROR(Flock(fd, LOCK_SH, lock_path));
  RETURN_IF_ERROR(Evict(key));
  shared.made_ = true;
  return shared;
}

absl::Status SnapshotCache::Remove(const std::string& key) {
  if (!IsSnapshotKey(key)) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot key \"", key, "\": not 64 hex"));
  }
  const std::string lock_path = absl::StrCat(dir_, "/", key, ".lock");
  ASSIGN_OR_RETURN(int fd, OpenLock(lock_path));
  SnapshotLease holder(key, "", fd, false);
  RETURN_IF_ERROR(Flock(fd, LOCK_EX, lock_path));
  return RemoveFlatDir(absl::StrCat(dir_, "/", key));
}

absl::StatusOr<std::vector<SnapshotEntryInfo>> SnapshotCache::List() const {
  std::vector<SnapshotEntryInfo> out;
  DIR* d = opendir(dir_.c_str());
  if (d == nullptr) return PosixError(errno, "opendir", dir_);
  while (dirent* e = readdir(d)) {
    if (!IsSnapshotKey(e->d_name)) continue;
    const std::string entry = absl::StrCat(dir_, "/", e->d_name);
    struct stat st;
    if (stat(entry.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    if (!Exists(absl::StrCat(entry, "/", kKeyFile))) continue;
    SnapshotEntryInfo info;
    info.key = e->d_name;
    info.bytes = FlatDirBytes(entry);
    info.last_used_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
    out.push_back(std::move(info));
  }
  closedir(d);
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.last_used_ns < b.last_used_ns;
  });
  return out;
}

absl::Status SnapshotCache::Evict(const std::string& keep_key) {
  ASSIGN_OR_RETURN(std::vector<SnapshotEntryInfo> entries, List());
  // Take every other entry's lock exclusively if nobody uses it (held until the end, so it
  // cannot come into use meanwhile); the ones in use are not evicted.
  std::map<std::string, SnapshotLease> held;
  std::set<std::string> in_use;
  for (const SnapshotEntryInfo& e : entries) {
    if (e.key == keep_key) continue;
    const std::string lock_path = absl::StrCat(dir_, "/", e.key, ".lock");
    absl::StatusOr<int> fd = OpenLock(lock_path);
    if (!fd.ok()) {
      in_use.insert(e.key);
      continue;
    }
    SnapshotLease holder(e.key, "", *fd, false);
    if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
      in_use.insert(e.key);
      continue;
    }
    held.emplace(e.key, std::move(holder));
  }
  for (const std::string& victim : LruVictims(entries, max_bytes_, keep_key, in_use)) {
    RETURN_IF_ERROR(RemoveFlatDir(absl::StrCat(dir_, "/", victim)));
  }
  return absl::OkStatus();
}

void SnapshotCache::RemoveStaleTemps() {
  DIR* d = opendir(dir_.c_str());
  if (d == nullptr) return;
  std::vector<std::string> stale;
  while (dirent* e = readdir(d)) {
    absl::string_view name = e->d_name;
    if (!absl::StartsWith(name, kTmpPrefix)) continue;
    int pid = 0;
    const size_t dot = name.rfind('.');
    if (dot == absl::string_view::npos || !absl::SimpleAtoi(name.substr(dot + 1), &pid) ||
        pid <= 0) {
      continue;
    }
    if (kill(pid, 0) != 0 && errno == ESRCH) stale.push_back(std::string(name));
  }
  closedir(d);
  for (const std::string& s : stale) RemoveFlatDir(absl::StrCat(dir_, "/", s)).IgnoreError();
}

absl::StatusOr<std::string> SnapshotCache::FileDigest(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return PosixError(errno, "stat", path);
  char real[PATH_MAX];
  const std::string abs = realpath(path.c_str(), real) != nullptr ? real : path;
  const std::string id = oci::Sha256Hex(absl::StrCat(
      abs, "\n", st.st_dev, "\n", st.st_ino, "\n", st.st_size, "\n", st.st_mtim.tv_sec, ".",
      st.st_mtim.tv_nsec));
  const std::string memo = absl::StrCat(dir_, "/digests/", id);
  if (const int fd = open(memo.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
    char buf[80];
    const ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    if (n == 71) {
      std::string d(buf, 71);
      if (oci::ValidateDigest(d).ok()) return d;
    }
  }
  ASSIGN_OR_RETURN(std::string digest, oci::Sha256FileDigest(path));
  const std::string tmp = absl::StrCat(memo, ".", getpid());
  if (WriteFileSync(tmp, digest).ok()) {
    if (rename(tmp.c_str(), memo.c_str()) != 0) unlink(tmp.c_str());
  }
  return digest;
}

}  // namespace kiln::harness
