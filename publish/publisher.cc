#include "publish/publisher.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/file/file.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::publish {
namespace {

using json = nlohmann::json;

}  // namespace

// ---------------------------------------------------------------------------------------------
// LayoutTarget

absl::Status LayoutTarget::Init() {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return PosixError(ec.value(), "mkdir -p", dir_);
  RETURN_IF_ERROR(oci::CreateLayoutDirs(dir_));
  struct stat st;
  if (stat((dir_ + "/oci-layout").c_str(), &st) != 0)
    RETURN_IF_ERROR(file::WriteFileAtomically(dir_ + "/oci-layout", oci::kLayoutMarkerJson));
  if (stat((dir_ + "/index.json").c_str(), &st) != 0)
    RETURN_IF_ERROR(file::WriteFileAtomically(dir_ + "/index.json", oci::IndexJson({})));
  return absl::OkStatus();
}

bool LayoutTarget::Exists() const {
  struct stat st;
  return stat((dir_ + "/index.json").c_str(), &st) == 0 ||
         stat((dir_ + "/oci-layout").c_str(), &st) == 0;
}

absl::StatusOr<std::vector<std::string>> LayoutTarget::ListTags() {
  if (!Exists()) return std::vector<std::string>();
  ASSIGN_OR_RETURN(std::vector<Descriptor> manifests, oci::ReadLayoutIndex(dir_));
  std::vector<std::string> tags;
  for (const Descriptor& m : manifests) {
    auto it = m.annotations.find(std::string(oci::kAnnotationRefName));
    if (it != m.annotations.end()) tags.push_back(it->second);
  }
  return tags;
}

absl::StatusOr<std::optional<std::string>> LayoutTarget::ResolveTag(absl::string_view tag) {
  if (!Exists()) return std::optional<std::string>();
  ASSIGN_OR_RETURN(std::vector<Descriptor> manifests, oci::ReadLayoutIndex(dir_));
  for (const Descriptor& m : manifests) {
    auto it = m.annotations.find(std::string(oci::kAnnotationRefName));
    if (it != m.annotations.end() && it->second == tag) return std::optional<std::string>(m.digest);
  }
  return std::optional<std::string>();
}

absl::StatusOr<bool> LayoutTarget::HasBlob(const Descriptor& d) {
  struct stat st;
  return stat(oci::BlobPath(dir_, d.digest).c_str(), &st) == 0 && st.st_size == d.size;
}

absl::Status LayoutTarget::PutBlob(const Descriptor& d, const std::string& path,
                                   const std::string&, std::function<void(int64_t)> on_progress) {
  std::string dst = oci::BlobPath(dir_, d.digest);
  std::string tmp = absl::StrCat(dst, ".tmp.", getpid());
  int in = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return PosixError(errno, "open", path);
  absl::Cleanup close_in = [in] { close(in); };
  int out = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) return PosixError(errno, "open", tmp);
  absl::Cleanup close_out = [out, &tmp] {
    close(out);
    unlink(tmp.c_str());  // no-op after the rename
  };
  std::string buf(1 << 20, '\0');
  int64_t done = 0;
  for (;;) {
    ssize_t r = read(in, buf.data(), buf.size());
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return PosixError(errno, "read", path);
    if (r == 0) break;
    for (ssize_t off = 0; off < r;) {
      ssize_t w = write(out, buf.data() + off, static_cast<size_t>(r - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return PosixError(errno, "write", tmp);
      off += w;
    }
    done += r;
    bytes_sent_ += r;
    if (on_progress) on_progress(done);
  }
  if (done != d.size)
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", done, " bytes, expected ", d.size));
  if (fsync(out) != 0) return PosixError(errno, "fsync", tmp);
  if (rename(tmp.c_str(), dst.c_str()) != 0) return PosixError(errno, "rename", dst);
  return absl::OkStatus();
}

absl::Status LayoutTarget::PutManifest(absl::string_view reference, absl::string_view bytes,
                                       absl::string_view media_type) {
  std::string digest = Sha256Digest(bytes);
  RETURN_IF_ERROR(file::WriteFileAtomically(oci::BlobPath(dir_, digest), bytes));
  if (absl::StartsWith(reference, oci::kSha256Prefix)) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::string text, file::ReadFile(dir_ + "/index.json"));
  json index = json::parse(text, nullptr, false);
  if (!index.is_object() || !index["manifests"].is_array())
    return absl::InvalidArgumentError(absl::StrCat(dir_, "/index.json: no manifests array"));
  json kept = json::array();
  for (const json& m : index["manifests"])
    if (!(m.contains("annotations") &&
          m["annotations"].value(std::string(oci::kAnnotationRefName), "") == reference))
      kept.push_back(m);
  kept.push_back(oci::DescriptorToJson(
      Descriptor{std::string(media_type), digest, static_cast<int64_t>(bytes.size()),
                 {{std::string(oci::kAnnotationRefName), std::string(reference)}}}));
  index["manifests"] = kept;
  index["schemaVersion"] = 2;
  return file::WriteFileAtomically(dir_ + "/index.json", index.dump());
}

// ---------------------------------------------------------------------------------------------

absl::StatusOr<VersionLock> ReadLockFile(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0 && errno == ENOENT) return VersionLock{};
  ASSIGN_OR_RETURN(std::string text, file::ReadFile(path));
  absl::StatusOr<VersionLock> lock = VersionLock::Parse(text);
  if (!lock.ok())
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", lock.status().message()));
  return lock;
}

absl::Status WriteLockFile(const std::string& path, const VersionLock& lock) {
  return file::WriteFileAtomically(path, lock.Serialize());
}

namespace {
constexpr absl::string_view kVerificationPayload = "type.kiln.dev/publish.verification-failed";
}  // namespace

absl::Status VerificationFailed(absl::Status status) {
  if (!status.ok()) status.SetPayload(kVerificationPayload, absl::Cord("1"));
  return status;
}

bool IsVerificationFailure(const absl::Status& status) {
  return status.GetPayload(kVerificationPayload).has_value();
}

absl::StatusOr<PublishResult> Publish(const PublishOptions& opts, PublishTarget* target) {
  auto log = [&](absl::string_view s) {
    if (opts.log) opts.log(s);
  };
  PublishResult res;
  res.target = target->Name();
  res.dry_run = opts.dry_run;

  // 0. The tags must be valid distribution-spec tags: a registry refuses a manifest PUT to
  // anything else (docker-registry says HTTP 404) only after every blob went up.
  std::vector<std::string> ours = {opts.version.Tag()};
  if (opts.move_minor) ours.push_back(opts.version.MinorTag());
  if (opts.move_latest) ours.push_back(std::string(kLatestTag));
  for (const std::string& t : ours) {
    if (absl::Status s = ValidateTag(t); !s.ok())
      return absl::InvalidArgumentError(absl::StrCat("version ", opts.version.ToString(),
                                                     " cannot be published: ", s.message()));
  }

  // 1. The image, annotated.
  ASSIGN_OR_RETURN(oci::LayoutImage img, oci::ReadImageLayout(opts.layout_dir, opts.ref));
  std::map<std::string, std::string> annotations = opts.annotations;
  annotations[std::string(oci::kAnnotationVersion)] = opts.version.ToString();
  ASSIGN_OR_RETURN(std::string manifest, AnnotateManifest(img.manifest_bytes, annotations));
  res.digest = Sha256Digest(manifest);

  // 2. Policy, before anything is written.
  VersionLock lock;
  if (!opts.lock_path.empty()) {
    ASSIGN_OR_RETURN(lock, ReadLockFile(opts.lock_path));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> tags, target->ListTags());
  std::map<std::string, std::string> existing;
  for (const std::string& t : tags) existing[t] = "";  // digest needed only for ours
  for (const std::string& t : ours) {
    if (!existing.count(t)) continue;
    ASSIGN_OR_RETURN(std::optional<std::string> d, target->ResolveTag(t));
    if (d) existing[t] = *d; else existing.erase(t);
  }
  TagRequest req{.version = opts.version, .digest = res.digest, .force = opts.force,
                 .move_latest = opts.move_latest, .move_minor = opts.move_minor};
  TagDecision decision = DecideTags(req, lock, target->Name(), existing);
  res.note = decision.note;
  log(decision.note);
  if (decision.refused) return decision.status;
  res.tags = decision.tags;

  // 3. Blob plan.
  if (decision.push_image) {
    std::vector<Descriptor> blobs = img.layers;
    blobs.push_back(img.config);
    std::set<std::string> present;
    for (const Descriptor& b : blobs) {
      ASSIGN_OR_RETURN(bool have, target->HasBlob(b));
      if (have) present.insert(b.digest);
    }
    std::vector<std::string> sources = opts.mount_from;
    if (std::optional<RegistryRef> me = target->Registry()) {
      for (const auto& [v, e] : lock.versions)
        for (const std::string& t : e.targets) {
          absl::StatusOr<RegistryRef> r = RegistryRef::Parse(t);
          if (r.ok() && r->host == me->host && r->repository != me->repository &&
              std::find(sources.begin(), sources.end(), r->repository) == sources.end())
            sources.push_back(r->repository);
        }
    }
    BlobPlan plan = PlanBlobs(blobs, present, sources);
    res.blobs = plan.steps;
    res.bytes_skipped = plan.bytes_skipped;
    if (opts.dry_run) return res;

    // 4. Blobs, then the manifest by digest.
    const int64_t sent_before = target->BytesSent();
    for (const BlobStep& step : plan.steps) {
      if (step.action == BlobAction::kSkip) continue;
      std::string upload_url;
      if (step.action == BlobAction::kMount) {
        ASSIGN_OR_RETURN(bool mounted, target->MountBlob(step.desc, step.mount_from, &upload_url));
        if (mounted) {
          ++res.blobs_mounted;
          if (opts.on_blob) opts.on_blob(step, step.desc.size);
          continue;
        }
      }
      std::function<void(int64_t)> progress;
      if (opts.on_blob) progress = [&](int64_t done) { opts.on_blob(step, done); };
      RETURN_IF_ERROR(
          target->PutBlob(step.desc, img.BlobPath(step.desc.digest), upload_url, progress));
    }
    res.bytes_uploaded = target->BytesSent() - sent_before;
    RETURN_IF_ERROR(target->PutManifest(res.digest, manifest, img.media_type));

    // 4b. The verification gate: the digest is in the target, untagged, until it passes.
    if (opts.verify) {
      const absl::Time start = absl::Now();
      absl::Status v = opts.verify(res.digest);
      res.verify_time = absl::Now() - start;
      if (!v.ok()) {
        absl::Status out(v.code(), absl::StrCat(target->Name(), "@", res.digest,
                                                " is in the target untagged: ", v.message()));
        if (IsVerificationFailure(v)) out = VerificationFailed(out);
        return out;
      }
      res.verified = true;
    }
  } else if (opts.dry_run) {
    res.noop = decision.noop;
    return res;
  }

  // 5. Tags last, then the lock.
  res.noop = decision.noop;
  for (const std::string& t : decision.tags)
    RETURN_IF_ERROR(target->PutManifest(t, manifest, img.media_type));
  if (!opts.lock_path.empty() && decision.record_in_lock && target->Registry()) {
    VersionLock::Entry& e = lock.versions[opts.version.ToString()];
    bool changed = e.digest != res.digest || !e.targets.count(target->Name());
    e.digest = res.digest;
    e.targets.insert(target->Name());
    if (changed) RETURN_IF_ERROR(WriteLockFile(opts.lock_path, lock));
  }
  return res;
}

}  // namespace kiln::publish
