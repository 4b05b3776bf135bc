// File: publish/plan.h
// -----------------------------------------------------------------------------
//
// The publish plan as pure data: no I/O here. Three pieces:
//
//  - VersionLock: the lock file (publish/builder.lock.json) recording version -> manifest
//    digest and where each version was pushed; parsed and written as JSON.
//  - DecideTags(): the version policy. Given the version, the new manifest digest, the lock
//    and the tags the target already holds, decides: refuse (and why), no-op, or which
//    manifest/tags to write.
//  - PlanBlobs(): given the image's blobs and which of them the target already has (from
//    HEAD requests), which to skip, which to cross-repository mount and which to upload.
//
// Example:
//
//   TagRequest req{.version = *SemVer::Parse("1.2.3"), .digest = "sha256:...",
//                  .move_latest = true};
//   TagDecision d = DecideTags(req, lock, existing_tags);
//   if (d.refused) return d.status;            // FailedPrecondition / AlreadyExists
//   if (d.noop) ...;                            // already published, nothing to do
//   BlobPlan p = PlanBlobs(blobs, present, {"kiln/other"});
#ifndef KILN_PUBLISH_PLAN_H_
#define KILN_PUBLISH_PLAN_H_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "publish/oci.h"
#include "publish/semver.h"

namespace kiln::publish {

// ---------------------------------------------------------------------------------------------
// Lock file
// ---------------------------------------------------------------------------------------------

// VersionLock: the contents of the lock file. JSON schema (keys sorted, 2-space indent):
//
//   {"schema": 1,
//    "versions": {"1.2.3": {"digest": "sha256:...", "targets": ["127.0.0.1:5000/kiln/builder"]}}}
//
// A version maps to exactly one manifest digest, whatever the target it was pushed to.
struct VersionLock {
  struct Entry {
    std::string digest;
    std::set<std::string> targets;  // "HOST[:PORT]/REPO" the version was pushed to
  };
  std::map<std::string, Entry> versions;  // keyed by SemVer::ToString()

  // VersionLock::Parse(json): InvalidArgumentError (naming the key) for a malformed file, an
  // unknown schema, a key that is not strict semver or a bad digest. Empty text -> empty lock.
  static absl::StatusOr<VersionLock> Parse(absl::string_view json);

  // Serialize(): deterministic JSON text (sorted keys, trailing newline).
  std::string Serialize() const;

  // Newest(): the highest version in the lock by semver precedence, if any.
  std::optional<SemVer> Newest() const;
};

// ---------------------------------------------------------------------------------------------
// Version policy
// ---------------------------------------------------------------------------------------------

inline constexpr absl::string_view kLatestTag = "latest";

// TagRequest: what the user asked for.
struct TagRequest {
  SemVer version;
  std::string digest;         // manifest digest of the (annotated) image to publish
  bool force = false;         // publish a version <= the newest published one
  bool move_latest = false;   // also point "latest" at this image
  bool move_minor = false;    // also point "MAJOR.MINOR" at this image
};

// TagDecision: the outcome of the policy.
struct TagDecision {
  bool refused = false;
  absl::Status status;                // why refused: FailedPrecondition (ordering, needs
                                      // --force) or AlreadyExists (version is immutable)
  bool noop = false;                  // nothing to write: the version already points here
  bool push_image = false;            // upload blobs and PUT the manifest by digest
  std::vector<std::string> tags;      // tags to PUT, in order: the version's Tag() first, then moving
  bool record_in_lock = false;        // record version -> digest (and the target) in the lock
  std::string note;                   // human-readable summary of the decision
};

// DecideTags(req, lock, target, existing): the version policy.
//  1. If the target's tag `version` points to another digest, or the lock records another
//     digest for `version`: refused, AlreadyExists (versions are immutable; --force does not
//     override this).
//  2. If the version tag already points to `digest`: no blobs, no manifest; only requested
//     moving tags that point elsewhere are written; noop when there are none.
//  3. Else, when the lock does not already hold version -> digest (a mirror push), the
//     version must be newer than every version in the lock and every semver tag in
//     `existing`; otherwise refused, FailedPrecondition, unless req.force.
// The version's tag is SemVer::Tag() ("+" mapped to "_"); the lock is keyed by
// SemVer::ToString(). `existing` maps the target's tags to their manifest digests; only the
// digests of the version tag and the requested moving tags are read (others may be ""), and
// tags that SemVer::ParseTag does not accept are ignored for ordering. `target` is "HOST[:PORT]/REPO" (or a layout path), used in messages.
TagDecision DecideTags(const TagRequest& req, const VersionLock& lock, absl::string_view target,
                       const std::map<std::string, std::string>& existing);

// ---------------------------------------------------------------------------------------------
// Blob plan
// ---------------------------------------------------------------------------------------------

// BlobAction: what to do with one blob.
enum class BlobAction { kSkip, kMount, kUpload };

// BlobStep: one blob and its action. For kMount, `mount_from` is the source repository; the
// executor falls back to an upload when the registry declines the mount.
struct BlobStep {
  Descriptor desc;
  BlobAction action = BlobAction::kUpload;
  std::string mount_from;
};

// BlobPlan: the blob steps (layers in manifest order, then the config; duplicates removed)
// and the byte totals (bytes).
struct BlobPlan {
  std::vector<BlobStep> steps;
  int64_t bytes_to_send = 0;   // sizes of kUpload and kMount steps (a mount may send none)
  int64_t bytes_skipped = 0;   // sizes of kSkip steps
};

// PlanBlobs(blobs, present, mount_sources): kSkip for digests in `present` (the target
// answered HEAD 200), kMount from mount_sources[0] when `mount_sources` is non-empty, else
// kUpload. Duplicate digests in `blobs` appear once.
BlobPlan PlanBlobs(const std::vector<Descriptor>& blobs, const std::set<std::string>& present,
                   const std::vector<std::string>& mount_sources);

}  // namespace kiln::publish

#endif  // KILN_PUBLISH_PLAN_H_
