// File: images/tool/bzimage.h
// -----------------------------------------------------------------------------
//
// Extracts the uncompressed kernel ELF (vmlinux) from an x86 bzImage, as the kernel's own
// scripts/extract-vmlinux does, but from the boot protocol header instead of by scanning for
// magic numbers. Debian ships no extract-vmlinux; kiln boots the vmlinux directly (PVH entry).
//
// Layout (Documentation/x86/boot.rst, boot protocol >= 2.08):
//   0x1f1  u8   setup_sects     number of 512-byte setup sectors after the boot sector
//                               (0 means 4)
//   0x1fe  u16  boot_flag       0xAA55
//   0x202  u32  header          "HdrS"
//   0x206  u16  version         boot protocol version (payload fields need >= 0x0208)
//   0x248  u32  payload_offset  relative to the start of the protected-mode code,
//                               i.e. to (setup_sects + 1) * 512
//   0x24c  u32  payload_length  bytes
// The payload is compressed: lz4 legacy frame (magic 02 21 4c 18, Debian's cloud kernel) or
// xz (magic fd 37 7a 58 5a 00, Debian's generic kernel). The kernel build appends the
// uncompressed size as a little-endian u32 after the compressed stream ("size_append").
//
// Example:
//   ASSIGN_OR_RETURN(std::string bz, kiln::images::ReadFile("vmlinuz"));
//   ASSIGN_OR_RETURN(std::string elf, kiln::images::ExtractVmlinux(bz));
#ifndef KILN_IMAGES_TOOL_BZIMAGE_H_
#define KILN_IMAGES_TOOL_BZIMAGE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::images {

// PayloadFormat: the compression of a bzImage payload, recognised by its magic bytes.
enum class PayloadFormat { kLz4Legacy, kXz };

// BzImagePayload: where the compressed kernel sits inside a bzImage (offsets in bytes from
// the start of the file).
struct BzImagePayload {
  uint64_t offset = 0;
  uint64_t length = 0;
  PayloadFormat format = PayloadFormat::kLz4Legacy;
};

// ParseBzImage(image): locates the payload described by the setup header of `image` (the
// whole bzImage file). Pure: no I/O.
// Returns OUT_OF_RANGE if the file is too short for the header or the payload extends past
// its end; INVALID_ARGUMENT if the boot flag, "HdrS" magic, protocol version (< 2.08) or the
// payload's compression magic is wrong (UNIMPLEMENTED for a known but unsupported
// compression: gzip, bzip2, lzma, lzo, zstd).
absl::StatusOr<BzImagePayload> ParseBzImage(absl::string_view image);

// DecompressLz4Legacy(data): decodes an lz4 legacy frame (magic 0x184C2102, then blocks of
// u32 LE compressed size + data, each expanding to at most 8 MiB). A trailing 4-byte
// little-endian size (the kernel's size_append) is accepted and must match the output size.
// Returns the decompressed bytes; INVALID_ARGUMENT on a bad magic; DATA_LOSS on a truncated
// or corrupt block or a size trailer that does not match.
absl::StatusOr<std::string> DecompressLz4Legacy(absl::string_view data);

// DecompressXz(data): decodes one .xz stream (trailing bytes after the stream, such as the
// kernel's size_append, are ignored). Returns DATA_LOSS on corrupt or truncated input.
absl::StatusOr<std::string> DecompressXz(absl::string_view data);

// ExtractVmlinux(image): ParseBzImage + decompression; checks that the result is an ELF
// file (\x7fELF). Returns the vmlinux bytes or the errors above (DATA_LOSS if the payload
// does not decompress to an ELF file).
absl::StatusOr<std::string> ExtractVmlinux(absl::string_view image);

}  // namespace kiln::images

#endif  // KILN_IMAGES_TOOL_BZIMAGE_H_
