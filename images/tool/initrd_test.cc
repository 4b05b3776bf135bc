// File: images/tool/initrd_test.cc
// Checks the real //images:initrd (argv[1]) against docs/interfaces.md "initrd layout", and
// that an independently built twin (argv[2]) has the same bytes.
#include <openssl/sha.h>

#include <map>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "images/tool/archive.h"
#include "images/tool/file_io.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::images {
namespace {

std::string* initrd_path = nullptr;
std::string* twin_path = nullptr;

std::string Sha256(const std::string& data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof(md));
}

class InitrdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(bytes_, ReadFile(*initrd_path));
    ASSERT_OK_AND_ASSIGN(std::vector<ListedEntry> entries, ListArchive(bytes_));
    for (ListedEntry& e : entries) by_path_[e.path] = std::move(e);
  }
  const ListedEntry* Find(const std::string& path) {
    auto it = by_path_.find(path);
    return it == by_path_.end() ? nullptr : &it->second;
  }
  std::string bytes_;
  std::map<std::string, ListedEntry> by_path_;
};

TEST_F(InitrdTest, IsGzipWithoutTimestamp) {
  ASSERT_GE(bytes_.size(), 10u);
  EXPECT_EQ(bytes_.substr(0, 2), "\x1f\x8b");
  EXPECT_EQ(bytes_.substr(4, 4), std::string(4, '\0'));
}

TEST_F(InitrdTest, HasInitAndConsole) {
  const ListedEntry* init = Find("init");
  ASSERT_NE(init, nullptr) << "no /init";
  EXPECT_EQ(init->type, EntryType::kFile);
  EXPECT_EQ(init->mode, 0755u);
  EXPECT_TRUE(absl::StartsWith(init->content, "\x7f" "ELF")) << "/init is not an ELF file";
  const ListedEntry* console = Find("dev/console");
  ASSERT_NE(console, nullptr) << "no /dev/console";
  EXPECT_EQ(console->type, EntryType::kCharDev);
  EXPECT_EQ(console->major, 5u);
  EXPECT_EQ(console->minor, 1u);
}

TEST_F(InitrdTest, OwnershipAndTimesAreFixed) {
  for (const auto& [path, e] : by_path_) {
    SCOPED_TRACE(path);
    EXPECT_EQ(e.uid, 0);
    EXPECT_EQ(e.gid, 0);
    EXPECT_EQ(e.mtime, 0);
  }
}

TEST_F(InitrdTest, ModulesLoadListsShippedModulesInDependencyOrder) {
  const ListedEntry* load = Find("etc/kiln/modules.load");
  ASSERT_NE(load, nullptr) << "no /etc/kiln/modules.load";
  std::vector<std::string> lines = absl::StrSplit(load->content, '\n', absl::SkipEmpty());
  ASSERT_FALSE(lines.empty());
  EXPECT_TRUE(absl::EndsWith(load->content, "\n"));
  // /lib/modules/<kver>/...: one kernel release, and its modules.dep in the archive.
  std::vector<std::string> parts = absl::StrSplit(lines[0], '/');
  ASSERT_GE(parts.size(), 4u);
  std::string prefix = "/lib/modules/" + parts[3] + "/";
  const ListedEntry* dep = Find("lib/modules/" + parts[3] + "/modules.dep");
  ASSERT_NE(dep, nullptr) << "no modules.dep for " << parts[3];
  std::map<std::string, std::vector<std::string>> deps;
  for (absl::string_view l : absl::StrSplit(dep->content, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(l, absl::MaxSplits(':', 1));
    deps[kv.first] = absl::StrSplit(kv.second, ' ', absl::SkipEmpty());
  }
  std::set<std::string> loaded;
  std::set<std::string> names;
  for (const std::string& line : lines) {
    SCOPED_TRACE(line);
    ASSERT_TRUE(absl::StartsWith(line, prefix));
    std::string rel = line.substr(prefix.size());
    const ListedEntry* ko = Find(line.substr(1));
    ASSERT_NE(ko, nullptr) << "listed but not shipped";
    EXPECT_EQ(ko->type, EntryType::kFile);
    EXPECT_TRUE(absl::StartsWith(ko->content, "\x7f" "ELF"));
    ASSERT_TRUE(deps.count(rel)) << "not in modules.dep";
    for (const std::string& d : deps[rel]) EXPECT_TRUE(loaded.count(d)) << "loaded before " << d;
    loaded.insert(rel);
    names.insert(rel.substr(rel.rfind('/') + 1));
  }
  for (const char* want : {"virtio_pci.ko", "virtio_mmio.ko", "virtio_blk.ko", "virtio_console.ko",
                           "virtio_net.ko", "vsock.ko", "vmw_vsock_virtio_transport.ko",
                           "overlay.ko", "erofs.ko", "crc32c-intel.ko", "libcrc32c.ko", "tun.ko"}) {
    EXPECT_TRUE(names.count(want)) << "missing module " << want;
  }
  // Softdep: crc32c before libcrc32c.
  auto pos = [&](const char* n) {
    for (size_t i = 0; i < lines.size(); ++i)
      if (absl::EndsWith(lines[i], std::string("/") + n)) return i;
    return lines.size();
  };
  EXPECT_LT(pos("crc32c-intel.ko"), pos("libcrc32c.ko"));
  // Every shipped .ko is listed.
  for (const auto& [path, e] : by_path_) {
    if (absl::EndsWith(path, ".ko")) EXPECT_TRUE(loaded.count(path.substr(prefix.size() - 1))) << path;
  }
}

TEST_F(InitrdTest, TwinBuildHasSameBytes) {
  ASSERT_OK_AND_ASSIGN(std::string twin, ReadFile(*twin_path));
  EXPECT_EQ(Sha256(bytes_), Sha256(twin)) << "two builds of the same initrd differ";
}

}  // namespace
}  // namespace kiln::images

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <initrd.cpio.gz> <twin.cpio.gz>\n", argv[0]);
    return 2;
  }
  kiln::images::initrd_path = new std::string(argv[1]);
  kiln::images::twin_path = new std::string(argv[2]);
  return RUN_ALL_TESTS();
}
