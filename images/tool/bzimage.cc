// File: images/tool/bzimage.cc (see bzimage.h)
#include "images/tool/bzimage.h"

#include <lz4.h>
#include <lzma.h>

#include <cstring>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kiln::images {
namespace {

constexpr size_t kSetupSectsOffset = 0x1f1;
constexpr size_t kBootFlagOffset = 0x1fe;
constexpr size_t kHeaderMagicOffset = 0x202;
constexpr size_t kVersionOffset = 0x206;
constexpr size_t kPayloadOffsetOffset = 0x248;
constexpr size_t kPayloadLengthOffset = 0x24c;
constexpr size_t kMinHeaderSize = 0x250;
constexpr uint16_t kMinVersion = 0x0208;

constexpr uint32_t kLz4LegacyMagic = 0x184C2102;
constexpr size_t kLz4LegacyBlockSize = 8 << 20;  // 8 MiB per block, uncompressed
constexpr char kXzMagic[] = "\xfd" "7zXZ";      // + \0, compared as 6 bytes

uint32_t Le32(absl::string_view s, size_t off) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + off;
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
uint16_t Le16(absl::string_view s, size_t off) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + off;
  return static_cast<uint16_t>(p[0] | p[1] << 8);
}

}  // namespace

absl::StatusOr<BzImagePayload> ParseBzImage(absl::string_view image) {
  if (image.size() < kMinHeaderSize) {
    return absl::OutOfRangeError(absl::StrFormat(
        "bzImage: file is %d bytes, too short for the setup header (needs %d)", image.size(),
        kMinHeaderSize));
  }
  if (Le16(image, kBootFlagOffset) != 0xAA55) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bzImage: bad boot_flag 0x%04x at 0x1fe (want 0xaa55): not a bzImage",
        Le16(image, kBootFlagOffset)));
  }
  if (image.substr(kHeaderMagicOffset, 4) != "HdrS") {
    return absl::InvalidArgumentError("bzImage: no \"HdrS\" magic at 0x202: not a bzImage");
  }
  uint16_t version = Le16(image, kVersionOffset);
  if (version < kMinVersion) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bzImage: boot protocol %d.%02d has no payload fields (needs >= 2.08)", version >> 8,
        version & 0xff));
  }
  uint64_t setup_sects = static_cast<unsigned char>(image[kSetupSectsOffset]);
  if (setup_sects == 0) setup_sects = 4;
  BzImagePayload p;
  p.offset = (setup_sects + 1) * 512 + Le32(image, kPayloadOffsetOffset);
  p.length = Le32(image, kPayloadLengthOffset);
  if (p.offset > image.size() || p.length > image.size() - p.offset) {
    return absl::OutOfRangeError(absl::StrFormat(
        "bzImage: payload [%d, %d) extends past the end of the file (%d bytes)", p.offset,
        p.offset + p.length, image.size()));
  }
  absl::string_view payload = image.substr(p.offset, p.length);
  if (payload.size() >= 4 && Le32(payload, 0) == kLz4LegacyMagic) {
    p.format = PayloadFormat::kLz4Legacy;
  } else if (payload.size() >= 6 && payload.substr(0, 6) == absl::string_view(kXzMagic, 6)) {
    p.format = PayloadFormat::kXz;
  } else if (payload.size() >= 2 && (payload.substr(0, 2) == "\x1f\x8b" ||
                                     payload.substr(0, 2) == "BZ" ||
                                     payload.substr(0, 2) == "\x5d\x00" ||
                                     payload.substr(0, 2) == "\x89\x4c" ||
                                     (payload.size() >= 4 && Le32(payload, 0) == 0xFD2FB528))) {
    return absl::UnimplementedError(
        "bzImage: payload compression (gzip/bzip2/lzma/lzo/zstd) is not supported; "
        "supported: lz4 legacy, xz");
  } else {
    std::string head;
    for (size_t i = 0; i < payload.size() && i < 6; ++i)
      absl::StrAppendFormat(&head, "%02x ", static_cast<unsigned char>(payload[i]));
    return absl::InvalidArgumentError(
        absl::StrCat("bzImage: unknown payload magic ", head, "(want lz4 legacy 02 21 4c 18 "
                     "or xz fd 37 7a 58 5a 00)"));
  }
  return p;
}

absl::StatusOr<std::string> DecompressLz4Legacy(absl::string_view data) {
  if (data.size() < 4 || Le32(data, 0) != kLz4LegacyMagic) {
    return absl::InvalidArgumentError("lz4: no legacy frame magic 02 21 4c 18");
  }
  std::string out;
  auto block = std::make_unique<char[]>(kLz4LegacyBlockSize);
  size_t pos = 4;
  while (pos < data.size()) {
    if (data.size() - pos < 4) {
      return absl::DataLossError(absl::StrFormat("lz4: %d stray bytes at offset %d",
                                                 data.size() - pos, pos));
    }
    uint32_t n = Le32(data, pos);
    if (n == kLz4LegacyMagic) {  // concatenated legacy frames
      pos += 4;
      continue;
    }
    if (data.size() - pos == 4) {
      // Exactly 4 bytes left cannot be a block (size + data): the kernel's size_append
      // trailer, the uncompressed size.
      if (n != out.size()) {
        return absl::DataLossError(absl::StrFormat(
            "lz4: size trailer says %d bytes, decompressed %d", n, out.size()));
      }
      break;
    }
    if (n > LZ4_COMPRESSBOUND(kLz4LegacyBlockSize)) {
      return absl::DataLossError(
          absl::StrFormat("lz4: bad block size %d at offset %d", n, pos));
    }
    pos += 4;
    if (n > data.size() - pos) {
      return absl::DataLossError(absl::StrFormat(
          "lz4: block of %d bytes at offset %d extends past the end (%d bytes)", n, pos,
          data.size()));
    }
    int got = LZ4_decompress_safe(data.data() + pos, block.get(), static_cast<int>(n),
                                  static_cast<int>(kLz4LegacyBlockSize));
    if (got < 0) {
      return absl::DataLossError(
          absl::StrFormat("lz4: corrupt block at offset %d (LZ4 error %d)", pos, got));
    }
    out.append(block.get(), static_cast<size_t>(got));
    pos += n;
  }
  return out;
}

absl::StatusOr<std::string> DecompressXz(absl::string_view data) {
  lzma_stream strm = LZMA_STREAM_INIT;
  if (lzma_stream_decoder(&strm, UINT64_MAX, 0) != LZMA_OK) {
    return absl::InternalError("xz: lzma_stream_decoder failed");
  }
  std::string out;
  char buf[1 << 16];
  strm.next_in = reinterpret_cast<const uint8_t*>(data.data());
  strm.avail_in = data.size();
  lzma_ret ret = LZMA_OK;
  while (ret == LZMA_OK) {
    strm.next_out = reinterpret_cast<uint8_t*>(buf);
    strm.avail_out = sizeof(buf);
    ret = lzma_code(&strm, LZMA_FINISH);
    out.append(buf, sizeof(buf) - strm.avail_out);
  }
  lzma_end(&strm);
  if (ret != LZMA_STREAM_END) {
    return absl::DataLossError(absl::StrFormat("xz: corrupt or truncated stream (lzma %d)",
                                               static_cast<int>(ret)));
  }
  return out;
}

absl::StatusOr<std::string> ExtractVmlinux(absl::string_view image) {
  absl::StatusOr<BzImagePayload> p = ParseBzImage(image);
  if (!p.ok()) return p.status();
  absl::string_view payload = image.substr(p->offset, p->length);
  absl::StatusOr<std::string> elf = p->format == PayloadFormat::kLz4Legacy
                                        ? DecompressLz4Legacy(payload)
                                        : DecompressXz(payload);
  if (!elf.ok()) return elf.status();
  if (elf->size() < 4 || elf->compare(0, 4, "\x7f" "ELF") != 0) {
    return absl::DataLossError("bzImage: payload does not decompress to an ELF file");
  }
  return elf;
}

}  // namespace kiln::images
