// File: publish/publisher.h
// -----------------------------------------------------------------------------
//
// Publish(): executes a publish against a PublishTarget, a registry repository
// (RegistryTarget, OCI distribution-spec) or a local OCI image layout directory
// (LayoutTarget). The order is fixed and is what makes a push safe:
//
//   1. read the image from the input layout, stamp its annotations -> manifest digest
//   2. read the tags the target holds and the lock file; DecideTags() (plan.h): refuse or
//      no-op here, before anything is written
//   3. HEAD every blob; PlanBlobs(): skip / cross-repository mount / upload
//   4. upload, then PUT the manifest by digest (the registry checks all blobs are present)
//   4b. the verification gate (PublishOptions::verify): main.cc pulls that digest back into a
//      clean directory (every digest verified, pull.h) and runs //harness:verify's builder
//      suite on it; a failure stops here, leaving the digest in the target untagged
//   5. only then PUT the tags (version first, then moving tags), then update the lock file
//
// The version's tag is SemVer::Tag(): "+" (build metadata) becomes "_", which the
// distribution-spec tag grammar allows; a version whose tag would still be invalid (longer
// than 128 characters) is refused before step 1.
//
// A failure before step 5 leaves no tag written, so a tag never points at a partial image.
//
// Example:
//
//   RegistryTarget target(&client, ref);
//   PublishOptions o{.layout_dir = "/layout", .version = *SemVer::Parse("1.2.3"),
//                    .lock_path = "publish/builder.lock.json"};
//   ASSIGN_OR_RETURN(PublishResult r, Publish(o, &target));
#ifndef KILN_PUBLISH_PUBLISHER_H_
#define KILN_PUBLISH_PUBLISHER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "publish/oci.h"
#include "publish/plan.h"
#include "publish/registry.h"
#include "publish/semver.h"

namespace kiln::publish {

// PublishTarget: where an image is published. Methods return the codes documented in
// registry.h (RegistryTarget) or PosixError codes (LayoutTarget).
class PublishTarget {
 public:
  virtual ~PublishTarget() = default;
  // Name(): "HOST[:PORT]/REPO" for a registry, "oci-layout:DIR" for a layout.
  virtual std::string Name() const = 0;
  // Registry(): the registry reference, or nullopt for a layout.
  virtual std::optional<RegistryRef> Registry() const = 0;
  virtual absl::StatusOr<std::vector<std::string>> ListTags() = 0;
  virtual absl::StatusOr<std::optional<std::string>> ResolveTag(absl::string_view tag) = 0;
  virtual absl::StatusOr<bool> HasBlob(const Descriptor& d) = 0;
  // MountBlob: true when mounted; false with *upload_url set (or empty) to upload instead.
  virtual absl::StatusOr<bool> MountBlob(const Descriptor& d, absl::string_view from,
                                         std::string* upload_url) = 0;
  virtual absl::Status PutBlob(const Descriptor& d, const std::string& path,
                               const std::string& upload_url,
                               std::function<void(int64_t)> on_progress) = 0;
  // PutManifest(reference, ...): reference is the manifest digest or a tag.
  virtual absl::Status PutManifest(absl::string_view reference, absl::string_view bytes,
                                   absl::string_view media_type) = 0;
  // BytesSent(): blob bytes sent so far (bytes), including re-sent bytes after faults.
  virtual int64_t BytesSent() const = 0;
};

// RegistryTarget: a PublishTarget over a RegistryClient (not owned).
class RegistryTarget : public PublishTarget {
 public:
  RegistryTarget(RegistryClient* client, RegistryRef ref) : client_(client), ref_(std::move(ref)) {}
  std::string Name() const override { return ref_.ToString(); }
  std::optional<RegistryRef> Registry() const override { return ref_; }
  absl::StatusOr<std::vector<std::string>> ListTags() override { return client_->ListTags(); }
  absl::StatusOr<std::optional<std::string>> ResolveTag(absl::string_view tag) override {
    return client_->ResolveTag(tag);
  }
  absl::StatusOr<bool> HasBlob(const Descriptor& d) override { return client_->HasBlob(d.digest); }
  absl::StatusOr<bool> MountBlob(const Descriptor& d, absl::string_view from,
                                 std::string* upload_url) override {
    return client_->MountBlob(d.digest, from, upload_url);
  }
  absl::Status PutBlob(const Descriptor& d, const std::string& path, const std::string& upload_url,
                       std::function<void(int64_t)> on_progress) override {
    return client_->UploadBlob(d, path, upload_url, std::move(on_progress));
  }
  absl::Status PutManifest(absl::string_view reference, absl::string_view bytes,
                           absl::string_view media_type) override {
    return client_->PutManifest(reference, bytes, media_type);
  }
  int64_t BytesSent() const override { return client_->stats().bytes_sent; }

 private:
  RegistryClient* client_;
  RegistryRef ref_;
};

// LayoutTarget: a local OCI image layout directory as a target. Tags are index.json entries
// annotated org.opencontainers.image.ref.name; blobs are copied (write to a temporary file,
// then rename). Init() creates the layout if missing; a layout not created yet (neither
// index.json nor oci-layout exists, e.g. a fresh --oci-dir under --dry-run) holds no tags
// and no blobs.
class LayoutTarget : public PublishTarget {
 public:
  explicit LayoutTarget(std::string dir) : dir_(std::move(dir)) {}
  // Init(): creates DIR/oci-layout, DIR/index.json and DIR/blobs/sha256 when missing.
  absl::Status Init();
  // Exists(): DIR/index.json or DIR/oci-layout exists.
  bool Exists() const;
  std::string Name() const override { return "oci-layout:" + dir_; }
  std::optional<RegistryRef> Registry() const override { return std::nullopt; }
  absl::StatusOr<std::vector<std::string>> ListTags() override;
  absl::StatusOr<std::optional<std::string>> ResolveTag(absl::string_view tag) override;
  absl::StatusOr<bool> HasBlob(const Descriptor& d) override;
  absl::StatusOr<bool> MountBlob(const Descriptor&, absl::string_view, std::string*) override {
    return false;
  }
  absl::Status PutBlob(const Descriptor& d, const std::string& path, const std::string& upload_url,
                       std::function<void(int64_t)> on_progress) override;
  absl::Status PutManifest(absl::string_view reference, absl::string_view bytes,
                           absl::string_view media_type) override;
  int64_t BytesSent() const override { return bytes_sent_; }

 private:
  std::string dir_;
  int64_t bytes_sent_ = 0;
};

// kAnnotationVerification: stamped on the manifest (so it is part of the digest) as
// "skipped" when the publish was asked to skip the verification gate (--skip_verify).
inline constexpr absl::string_view kAnnotationVerification = "dev.kiln.publish.verification";

// VerificationFailed(status): `status` marked as "the image did not pass verification" (a
// pulled-back blob or manifest not matching its digest, or a gate suite failing), which
// publish exits 6 for; same code and message. IsVerificationFailure(status): so marked.
absl::Status VerificationFailed(absl::Status status);
bool IsVerificationFailure(const absl::Status& status);

// PublishOptions: what to publish and how.
struct PublishOptions {
  std::string layout_dir;                        // input OCI image layout
  std::string ref;                               // manifest in it ("" = the only one)
  SemVer version;
  std::map<std::string, std::string> annotations;  // stamped on the manifest (plus version)
  bool force = false;
  bool move_latest = false;
  bool move_minor = false;
  bool dry_run = false;                          // decide and plan; write nothing
  std::string lock_path;                         // "" = no lock file
  std::vector<std::string> mount_from;           // repositories on the same registry
  // on_blob(step, bytes_done): progress of one blob (may be empty).
  std::function<void(const BlobStep&, int64_t)> on_blob;
  // log(line): human-readable progress lines (may be empty).
  std::function<void(absl::string_view)> log;
  // verify(digest): the verification gate (may be empty: no gate). Called once the manifest
  // is in the target by digest and before any tag is written, only when the version's tag is
  // new there (not for a no-op, a dry run, or moving tags onto a version already published).
  // A non-OK status stops the publish: no tag, no lock entry; Publish returns it with the
  // digest prepended to the message (code and VerificationFailed mark kept).
  std::function<absl::Status(const std::string& digest)> verify;
};

// PublishResult: the outcome (printed by --json).
struct PublishResult {
  std::string digest;                  // manifest digest
  std::string target;                  // PublishTarget::Name()
  bool noop = false;
  bool dry_run = false;
  std::vector<std::string> tags;       // tags written (or to write, in a dry run)
  std::vector<BlobStep> blobs;         // the blob plan
  int64_t bytes_uploaded = 0;          // blob bytes sent (bytes)
  int64_t bytes_skipped = 0;           // bytes of blobs the target already held
  int64_t blobs_mounted = 0;
  std::string note;                    // the policy decision in words
  bool verified = false;               // opts.verify ran and passed
  absl::Duration verify_time;          // wall time spent in opts.verify
};

// ReadLockFile(path): the lock at `path`; an empty lock when the file does not exist.
absl::StatusOr<VersionLock> ReadLockFile(const std::string& path);
// WriteLockFile(path, lock): atomic replace (temporary file + rename).
absl::Status WriteLockFile(const std::string& path, const VersionLock& lock);

// Publish(opts, target): the steps in the file comment, after checking that every tag it
// would write (the version's SemVer::Tag(), "MAJOR.MINOR", "latest") is a valid
// distribution-spec tag (ValidateTag; InvalidArgument naming the version otherwise, before
// anything is read or sent). Returns the policy's AlreadyExists/FailedPrecondition when
// refused, InvalidArgument for a bad input layout, and the target's errors otherwise.
absl::StatusOr<PublishResult> Publish(const PublishOptions& opts, PublishTarget* target);

}  // namespace kiln::publish

#endif  // KILN_PUBLISH_PUBLISHER_H_
