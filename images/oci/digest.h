// File: images/oci/digest.h
// -----------------------------------------------------------------------------
//
// Content digests as the OCI image-spec v1.0.2 uses them (descriptor.md, section "Digests";
// v1.0.0 calls it "Digests and Verification":
// `algorithm ":" encoded`; kiln supports only the registered algorithm sha256, whose encoded
// part is 64 lowercase hex characters), computed with OpenSSL's EVP SHA-256, and where a blob
// with a given digest lives in an OCI image layout ("Image Layout" section "Blobs":
// `blobs/<alg>/<encoded>`).
//
// Units: sizes are bytes. Errors: InvalidArgument for a malformed digest (the message quotes
// it); errno-derived codes (NotFound, PermissionDenied, ...) from file I/O.
//
// Example:
//
//   std::string d = Sha256Digest("abc");        // "sha256:ba7816bf..."
//   RETURN_IF_ERROR(ValidateDigest(d));
//   std::string p = BlobPath("/tmp/layout", d);  // "/tmp/layout/blobs/sha256/ba7816bf..."
#ifndef KILN_IMAGES_OCI_DIGEST_H_
#define KILN_IMAGES_OCI_DIGEST_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace kiln::oci {

// "sha256:" — the algorithm prefix of every digest kiln writes or accepts.
inline constexpr absl::string_view kSha256Prefix = "sha256:";

// Sha256Hasher: incremental SHA-256 (for streams too large to hold, e.g. layers being
// compressed). Not copyable. Finish() may be called once.
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(const Sha256Hasher&) = delete;
  Sha256Hasher& operator=(const Sha256Hasher&) = delete;

  void Update(const void* data, size_t n);
  void Update(absl::string_view bytes) { Update(bytes.data(), bytes.size()); }
  // HexDigest(): the 64 lowercase hex characters of the SHA-256 of everything Update()d.
  std::string HexDigest();
  // Digest(): "sha256:" + HexDigest().
  std::string Digest();

 private:
  EVP_MD_CTX* ctx_;
};

// Sha256Hex(bytes): 64 lowercase hex characters (what `sha256sum` prints). Pure.
std::string Sha256Hex(absl::string_view bytes);

// Sha256Digest(bytes): "sha256:" + Sha256Hex(bytes), an OCI digest. Pure.
std::string Sha256Digest(absl::string_view bytes);

// Sha256FileDigest(path, size): streams the file at `path` (1 MiB reads) through SHA-256;
// returns "sha256:<hex>" and sets *size to its length in bytes when `size` is non-null.
// errno-derived codes from open/read (NotFound for a missing file).
absl::StatusOr<std::string> Sha256FileDigest(const std::string& path, int64_t* size = nullptr);

// ValidateDigest(digest): ok for "sha256:<64 lowercase hex>"; InvalidArgument otherwise, the
// message quoting the digest (another algorithm: "only sha256 digests are supported"). Pure.
absl::Status ValidateDigest(absl::string_view digest);

// DigestHex(digest): the encoded part (after the first ':'); the whole string when there is
// no ':'. Pure; does not validate.
absl::string_view DigestHex(absl::string_view digest);

// BlobRelPath(digest): "blobs/<algorithm>/<encoded>", the blob's path inside a layout or an
// OCI archive. Pure; validate `digest` first when it comes from input (a digest holding '/'
// or ".." would name another path).
std::string BlobRelPath(absl::string_view digest);

// BlobPath(layout_dir, digest): layout_dir + "/" + BlobRelPath(digest). Pure.
std::string BlobPath(absl::string_view layout_dir, absl::string_view digest);

}  // namespace kiln::oci

#endif  // KILN_IMAGES_OCI_DIGEST_H_
