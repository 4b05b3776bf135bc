#include "images/oci/digest.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::oci {

Sha256Hasher::Sha256Hasher() : ctx_(EVP_MD_CTX_new()) {
  EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr);
}

Sha256Hasher::~Sha256Hasher() { EVP_MD_CTX_free(ctx_); }

void Sha256Hasher::Update(const void* data, size_t n) {
  if (n > 0) EVP_DigestUpdate(ctx_, data, n);
}

std::string Sha256Hasher::HexDigest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_, md, &len);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(md), len));
}

std::string Sha256Hasher::Digest() { return absl::StrCat(kSha256Prefix, HexDigest()); }

std::string Sha256Hex(absl::string_view bytes) {
  Sha256Hasher h;
  h.Update(bytes);
  return h.HexDigest();
}

std::string Sha256Digest(absl::string_view bytes) {
  return absl::StrCat(kSha256Prefix, Sha256Hex(bytes));
}

absl::StatusOr<std::string> Sha256FileDigest(const std::string& path, int64_t* size) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PosixError(errno, "open", path);
  absl::Cleanup close_fd = [fd] { close(fd); };
  Sha256Hasher h;
  std::string buf(1 << 20, '\0');
  int64_t total = 0;
  for (;;) {
    ssize_t r = read(fd, buf.data(), buf.size());
    if (r < 0) {
      if (errno == EINTR) continue;
      return PosixError(errno, "read", path);
    }
    if (r == 0) break;
    h.Update(buf.data(), static_cast<size_t>(r));
    total += r;
  }
  if (size != nullptr) *size = total;
  return h.Digest();
}

absl::Status ValidateDigest(absl::string_view digest) {
  if (!absl::StartsWith(digest, kSha256Prefix)) {
    return absl::InvalidArgumentError(
        absl::StrCat("digest \"", digest, "\": only sha256 digests are supported"));
  }
  absl::string_view hex = digest.substr(kSha256Prefix.size());
  bool ok = hex.size() == 64;
  for (char c : hex) ok = ok && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("digest \"", digest, "\": expected sha256:<64 lowercase hex>"));
  }
  return absl::OkStatus();
}

absl::string_view DigestHex(absl::string_view digest) {
  size_t colon = digest.find(':');
  return colon == absl::string_view::npos ? digest : digest.substr(colon + 1);
}

std::string BlobRelPath(absl::string_view digest) {
  size_t colon = digest.find(':');
  if (colon == absl::string_view::npos) return absl::StrCat("blobs/sha256/", digest);
  return absl::StrCat("blobs/", digest.substr(0, colon), "/", digest.substr(colon + 1));
}

std::string BlobPath(absl::string_view layout_dir, absl::string_view digest) {
  return absl::StrCat(layout_dir, "/", BlobRelPath(digest));
}

}  // namespace kiln::oci
