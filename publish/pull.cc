// File: publish/pull.cc (see pull.h)
#include "publish/pull.h"

#include <filesystem>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "images/oci/image.h"
#include "images/oci/layout.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::publish {

absl::StatusOr<ImageRef> ImageRef::Parse(absl::string_view text) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid image reference \"", text, "\": ", why,
        " (expected HOST[:PORT]/REPO@sha256:<64 hex> or HOST[:PORT]/REPO:TAG)"));
  };
  ImageRef r;
  absl::string_view repo;
  if (size_t at = text.find('@'); at != absl::string_view::npos) {
    repo = text.substr(0, at);
    r.reference = std::string(text.substr(at + 1));
    r.by_digest = true;
    if (absl::Status s = ValidateDigest(r.reference); !s.ok()) return bad(s.message());
  } else {
    size_t slash = text.rfind('/');
    size_t colon = text.rfind(':');
    if (slash == absl::string_view::npos || colon == absl::string_view::npos || colon < slash) {
      return bad("no @sha256: digest and no :TAG");
    }
    repo = text.substr(0, colon);
    r.reference = std::string(text.substr(colon + 1));
    if (absl::Status s = ValidateTag(r.reference); !s.ok()) return bad(s.message());
  }
  ASSIGN_OR_RETURN(r.repository, RegistryRef::Parse(repo));
  return r;
}

std::string ImageRef::ToString() const {
  return absl::StrCat(repository.ToString(), by_digest ? "@" : ":", reference);
}

absl::StatusOr<std::string> PullImage(RegistryClient* client, absl::string_view reference,
                                      const std::string& layout_dir) {
  ASSIGN_OR_RETURN(std::string manifest_bytes, client->GetManifest(reference));
  const std::string digest = Sha256Digest(manifest_bytes);
  if (absl::StartsWith(reference, oci::kSha256Prefix) && digest != reference) {
    return absl::DataLossError(absl::StrCat("the registry served a manifest hashing to ", digest,
                                            " for ", reference, ": refused"));
  }
  ASSIGN_OR_RETURN(oci::Manifest m, oci::ParseManifest(manifest_bytes));
  std::error_code ec;
  std::filesystem::create_directories(layout_dir, ec);
  if (ec) return PosixError(ec.value(), "mkdir -p", layout_dir);
  RETURN_IF_ERROR(oci::CreateLayoutDirs(layout_dir));
  std::vector<Descriptor> blobs = m.layers;
  blobs.insert(blobs.begin(), m.config);
  for (const Descriptor& d : blobs) {
    ASSIGN_OR_RETURN(std::string bytes, client->GetBlob(d));  // digest verified
    ASSIGN_OR_RETURN(Descriptor written, oci::WriteBlob(layout_dir, bytes, d.media_type));
    if (written.digest != d.digest) {
      return absl::InternalError(absl::StrCat("wrote ", written.digest, " for ", d.digest));
    }
  }
  ASSIGN_OR_RETURN(Descriptor md, oci::WriteBlob(layout_dir, manifest_bytes, m.media_type));
  RETURN_IF_ERROR(oci::WriteLayoutFiles(layout_dir, {md}));
  return digest;
}

}  // namespace kiln::publish
