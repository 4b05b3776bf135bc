// File: images/tool/bzimage_test.cc
// Synthetic bzImages (a setup header + an lz4/xz payload around a fake ELF) and bad inputs.
#include "images/tool/bzimage.h"

#include <lz4.h>
#include <lzma.h>

#include <cstring>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::images {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

void PutLe32(std::string& s, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) s[off + i] = static_cast<char>(v >> (8 * i));
}
void PutLe16(std::string& s, size_t off, uint16_t v) {
  s[off] = static_cast<char>(v);
  s[off + 1] = static_cast<char>(v >> 8);
}

std::string FakeElf(size_t n) {
  std::string elf = "\x7f" "ELF";
  for (size_t i = elf.size(); i < n; ++i) elf.push_back(static_cast<char>((i * 7) % 13));
  return elf;
}

// Lz4Legacy(data, block): the kernel's `lz4 -l` + size_append format, with `block`-byte
// blocks (the real format uses 8 MiB; smaller blocks exercise the multi-block path).
std::string Lz4Legacy(const std::string& data, size_t block = 8 << 20) {
  std::string out("\x02\x21\x4c\x18", 4);
  for (size_t pos = 0; pos < data.size(); pos += block) {
    size_t n = std::min(block, data.size() - pos);
    std::string c(LZ4_compressBound(n), '\0');
    int got = LZ4_compress_default(data.data() + pos, c.data(), n, c.size());
    std::string len(4, '\0');
    PutLe32(len, 0, got);
    out += len + c.substr(0, got);
  }
  std::string trailer(4, '\0');
  PutLe32(trailer, 0, data.size());
  return out + trailer;
}

std::string Xz(const std::string& data) {
  std::string out(data.size() + 4096, '\0');
  size_t pos = 0;
  EXPECT_EQ(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, nullptr,
                                    reinterpret_cast<const uint8_t*>(data.data()), data.size(),
                                    reinterpret_cast<uint8_t*>(out.data()), &pos, out.size()),
            LZMA_OK);
  out.resize(pos);
  return out + std::string("\x10\x00\x00\x00", 4);  // size_append
}

// BzImage(payload, setup_sects, payload_offset): boot sector + setup sectors + some
// protected-mode bytes, then the payload at (setup_sects+1)*512 + payload_offset.
std::string BzImage(const std::string& payload, uint8_t setup_sects = 3,
                    uint32_t payload_offset = 100) {
  uint64_t real_sects = setup_sects == 0 ? 4 : setup_sects;
  std::string img((real_sects + 1) * 512 + payload_offset, '\0');
  img[0x1f1] = static_cast<char>(setup_sects);
  PutLe16(img, 0x1fe, 0xAA55);
  std::memcpy(&img[0x202], "HdrS", 4);
  PutLe16(img, 0x206, 0x020f);
  PutLe32(img, 0x248, payload_offset);
  PutLe32(img, 0x24c, payload.size());
  return img + payload + std::string(64, '\xee');  // trailing bytes after the payload
}

TEST(BzImageTest, ExtractsLz4Payload) {
  std::string elf = FakeElf(100000);
  ASSERT_OK_AND_ASSIGN(std::string got, ExtractVmlinux(BzImage(Lz4Legacy(elf))));
  EXPECT_EQ(got, elf);
}

TEST(BzImageTest, ExtractsMultiBlockLz4Payload) {
  std::string elf = FakeElf(50000);
  ASSERT_OK_AND_ASSIGN(std::string got, ExtractVmlinux(BzImage(Lz4Legacy(elf, 4096))));
  EXPECT_EQ(got, elf);
}

TEST(BzImageTest, SetupSectsZeroMeansFour) {
  std::string elf = FakeElf(1000);
  std::string img = BzImage(Lz4Legacy(elf), /*setup_sects=*/0, /*payload_offset=*/8);
  ASSERT_OK_AND_ASSIGN(BzImagePayload p, ParseBzImage(img));
  EXPECT_EQ(p.offset, 5u * 512 + 8);
  ASSERT_OK_AND_ASSIGN(std::string got, ExtractVmlinux(img));
  EXPECT_EQ(got, elf);
}

TEST(BzImageTest, ExtractsXzPayload) {
  std::string elf = FakeElf(20000);
  std::string img = BzImage(Xz(elf));
  ASSERT_OK_AND_ASSIGN(BzImagePayload p, ParseBzImage(img));
  EXPECT_EQ(p.format, PayloadFormat::kXz);
  ASSERT_OK_AND_ASSIGN(std::string got, ExtractVmlinux(img));
  EXPECT_EQ(got, elf);
}

TEST(BzImageTest, TruncatedHeader) {
  EXPECT_THAT(ParseBzImage(std::string(0x100, '\0')),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("too short")));
  EXPECT_THAT(ParseBzImage(""), StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("too short")));
}

TEST(BzImageTest, BadBootFlagAndMagic) {
  std::string img = BzImage(Lz4Legacy(FakeElf(100)));
  std::string no_flag = img;
  no_flag[0x1fe] = 0;
  EXPECT_THAT(ParseBzImage(no_flag),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("boot_flag")));
  std::string no_hdrs = img;
  no_hdrs[0x202] = 'X';
  EXPECT_THAT(ParseBzImage(no_hdrs),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("HdrS")));
  std::string old = img;
  PutLe16(old, 0x206, 0x0204);
  EXPECT_THAT(ParseBzImage(old), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("2.04")));
}

TEST(BzImageTest, BadPayloadMagic) {
  EXPECT_THAT(ParseBzImage(BzImage("\x01\x02\x03\x04\x05\x06\x07")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown payload magic")));
  EXPECT_THAT(ParseBzImage(BzImage("\x1f\x8b\x08\x00\x00\x00")),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("not supported")));
}

TEST(BzImageTest, PayloadBeyondEof) {
  std::string img = BzImage(Lz4Legacy(FakeElf(1000)));
  PutLe32(img, 0x24c, img.size());  // length larger than the file
  EXPECT_THAT(ParseBzImage(img),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("past the end")));
  std::string far = BzImage(Lz4Legacy(FakeElf(1000)));
  PutLe32(far, 0x248, 0xfffffff0u);  // offset past the end
  EXPECT_THAT(ParseBzImage(far), StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("past the end")));
}

TEST(BzImageTest, TruncatedLz4Block) {
  std::string lz = Lz4Legacy(FakeElf(10000));
  std::string cut = lz.substr(0, lz.size() - 20);
  EXPECT_THAT(DecompressLz4Legacy(cut), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("lz4")));
}

TEST(BzImageTest, CorruptLz4Block) {
  std::string lz = Lz4Legacy(FakeElf(10000));
  for (size_t i = 8; i < lz.size() - 4; ++i) lz[i] = '\xff';
  EXPECT_THAT(DecompressLz4Legacy(lz), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("lz4")));
}

TEST(BzImageTest, Lz4SizeTrailerMismatch) {
  std::string lz = Lz4Legacy(FakeElf(100000));
  PutLe32(lz, lz.size() - 4, 99999999);
  EXPECT_THAT(DecompressLz4Legacy(lz),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("size trailer")));
}

TEST(BzImageTest, NotAnElf) {
  std::string data(5000, 'x');
  EXPECT_THAT(ExtractVmlinux(BzImage(Lz4Legacy(data))),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("ELF")));
}

TEST(BzImageTest, CorruptXz) {
  std::string xz = Xz(FakeElf(20000));
  std::string cut = xz.substr(0, xz.size() / 2);
  EXPECT_THAT(DecompressXz(cut), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("xz")));
}

}  // namespace
}  // namespace kiln::images
