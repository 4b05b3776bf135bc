// File: publish/pull.h
// -----------------------------------------------------------------------------
//
// Pulling an image from a registry into a local OCI image layout, every digest verified, for
// `verify --builder_image=REF` (the image a registry serves is what gets booted). Uses the
// distribution client of registry.h (credentials, TLS, retries, response caps as publish).
//
//   ImageRef::Parse("127.0.0.1:5000/kiln/builder@sha256:<hex>")  // by digest
//   ImageRef::Parse("127.0.0.1:5000/kiln/builder:1.2.3")          // by tag: resolved, and the
//                                                                 // digest is what is reported
// Example:
//
//   ASSIGN_OR_RETURN(ImageRef ref, ImageRef::Parse(text));
//   RegistryClient client(ref.repository, opts, &http);
//   ASSIGN_OR_RETURN(std::string digest, PullImage(&client, ref.reference, "/tmp/layout"));
#ifndef KILN_PUBLISH_PULL_H_
#define KILN_PUBLISH_PULL_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "publish/registry.h"

namespace kiln::publish {

// ImageRef: a registry image reference, "HOST[:PORT]/REPO@sha256:<hex>" or
// "HOST[:PORT]/REPO:TAG".
struct ImageRef {
  RegistryRef repository;
  std::string reference;   // the digest or the tag
  bool by_digest = false;

  // ImageRef::Parse(text): InvalidArgument for a missing reference (neither "@sha256:..."
  // nor ":TAG" after the last "/"), a malformed digest, a tag outside the distribution-spec
  // grammar (ValidateTag) or a bad repository (RegistryRef::Parse).
  static absl::StatusOr<ImageRef> Parse(absl::string_view text);
  std::string ToString() const;
};

// PullImage(client, reference, layout_dir): GETs the image manifest `reference` (a digest or
// a tag) and its config and layers, and writes them as an OCI image layout at `layout_dir`
// (created; index.json lists the manifest). Returns the manifest digest. DataLoss when the
// manifest does not hash to a `reference` digest or a blob does not hash to its descriptor's
// digest (nothing of it is written); InvalidArgument for an image index or a malformed
// manifest; the client's codes otherwise.
absl::StatusOr<std::string> PullImage(RegistryClient* client, absl::string_view reference,
                                      const std::string& layout_dir);

}  // namespace kiln::publish

#endif  // KILN_PUBLISH_PULL_H_
