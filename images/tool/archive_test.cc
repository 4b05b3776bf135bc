// File: images/tool/archive_test.cc
// WriteArchive/ListArchive round trips, determinism (same manifest twice -> same sha256),
// the gzip header, tar specifics, ExpandTrees on a real directory, and bad inputs.
#include "images/tool/archive.h"

#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "images/tool/file_io.h"
#include "images/tool/manifest.h"
#include "images/tool/manifest_fs.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::images {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

std::string Sha256Hex(const std::string& data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  std::string hex;
  for (unsigned char c : md) {
    static const char kHex[] = "0123456789abcdef";
    hex += kHex[c >> 4];
    hex += kHex[c & 15];
  }
  return hex;
}

const std::map<std::string, std::string>& Contents() {
  static const auto* m = new std::map<std::string, std::string>{
      {"src/init", std::string("\x7f" "ELF init binary", 16)},
      {"src/modules.load", "/lib/modules/k/kernel/a.ko\n"},
      {"src/a.ko", std::string(70000, 'k')},
  };
  return *m;
}

absl::StatusOr<std::string> MapReader(const std::string& source) {
  auto it = Contents().find(source);
  if (it == Contents().end()) return absl::NotFoundError("no " + source);
  return it->second;
}

constexpr char kManifest[] = R"({"entries": [
  {"type": "file", "path": "init", "mode": "0755", "source": "src/init"},
  {"type": "chardev", "path": "dev/console", "major": 5, "minor": 1},
  {"type": "file", "path": "etc/kiln/modules.load", "source": "src/modules.load"},
  {"type": "file", "path": "lib/modules/k/kernel/a.ko", "source": "src/a.ko"},
  {"type": "symlink", "path": "bin/sh", "target": "/init"}
]})";

absl::StatusOr<std::string> Build(const char* manifest_json, ArchiveOptions opt) {
  absl::StatusOr<Manifest> m = ParseManifestJson(manifest_json);
  if (!m.ok()) return m.status();
  absl::StatusOr<std::vector<ArchiveEntry>> plan = PlanArchive(*m);
  if (!plan.ok()) return plan.status();
  return WriteArchive(*plan, opt, MapReader);
}

TEST(ArchiveTest, CpioRoundTrip) {
  ASSERT_OK_AND_ASSIGN(std::string bytes, Build(kManifest, {ArchiveFormat::kCpioNewc, false, 0}));
  EXPECT_EQ(bytes.substr(0, 6), "070701");  // newc magic
  ASSERT_OK_AND_ASSIGN(std::vector<ListedEntry> got, ListArchive(bytes));
  std::vector<std::string> paths;
  for (const ListedEntry& e : got) paths.push_back(e.path);
  EXPECT_THAT(paths, ::testing::ElementsAre("bin", "bin/sh", "dev", "dev/console", "etc",
                                            "etc/kiln", "etc/kiln/modules.load", "init", "lib",
                                            "lib/modules", "lib/modules/k", "lib/modules/k/kernel",
                                            "lib/modules/k/kernel/a.ko"));
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(got[i].path);
    EXPECT_EQ(got[i].uid, 0);
    EXPECT_EQ(got[i].gid, 0);
    EXPECT_EQ(got[i].mtime, 0);
    EXPECT_EQ(got[i].inode, i + 1);
  }
  EXPECT_EQ(got[1].type, EntryType::kSymlink);
  EXPECT_EQ(got[1].target, "/init");
  EXPECT_EQ(got[3].type, EntryType::kCharDev);
  EXPECT_EQ(got[3].major, 5u);
  EXPECT_EQ(got[3].minor, 1u);
  EXPECT_EQ(got[3].mode, 0600u);
  EXPECT_EQ(got[7].mode, 0755u);
  EXPECT_EQ(got[7].content, Contents().at("src/init"));
  EXPECT_EQ(got[12].content, Contents().at("src/a.ko"));
  EXPECT_EQ(got[12].mode, 0644u);
  EXPECT_EQ(got[0].type, EntryType::kDir);
  EXPECT_EQ(got[0].mode, 0755u);
}

TEST(ArchiveTest, SameManifestTwiceGivesSameBytes) {
  for (bool gzip : {false, true}) {
    for (ArchiveFormat f : {ArchiveFormat::kCpioNewc, ArchiveFormat::kTarUstar, ArchiveFormat::kTarPax}) {
      ASSERT_OK_AND_ASSIGN(std::string a, Build(kManifest, {f, gzip, 0}));
      sleep(gzip && f == ArchiveFormat::kCpioNewc ? 1 : 0);  // a wall-clock time would differ
      ASSERT_OK_AND_ASSIGN(std::string b, Build(kManifest, {f, gzip, 0}));
      EXPECT_EQ(Sha256Hex(a), Sha256Hex(b)) << "format " << static_cast<int>(f) << " gzip " << gzip;
    }
  }
}

TEST(ArchiveTest, MtimeChangesTheBytes) {
  ASSERT_OK_AND_ASSIGN(std::string a, Build(kManifest, {ArchiveFormat::kCpioNewc, false, 0}));
  ASSERT_OK_AND_ASSIGN(std::string b, Build(kManifest, {ArchiveFormat::kCpioNewc, false, 1700000000}));
  EXPECT_NE(Sha256Hex(a), Sha256Hex(b));
  ASSERT_OK_AND_ASSIGN(std::vector<ListedEntry> got, ListArchive(b));
  EXPECT_EQ(got[0].mtime, 1700000000);
}

TEST(ArchiveTest, GzipHeaderHasNoTimestamp) {
  ASSERT_OK_AND_ASSIGN(std::string gz, Build(kManifest, {ArchiveFormat::kCpioNewc, true, 0}));
  ASSERT_GE(gz.size(), 10u);
  EXPECT_EQ(gz.substr(0, 2), "\x1f\x8b");
  EXPECT_EQ(gz[3] & 0x08, 0) << "FNAME flag set";
  EXPECT_EQ(gz.substr(4, 4), std::string(4, '\0')) << "gzip MTIME is not 0";
  ASSERT_OK_AND_ASSIGN(std::vector<ListedEntry> got, ListArchive(gz));
  EXPECT_EQ(got.size(), 13u);
}

TEST(ArchiveTest, TarHasEmptyOwnerNames) {
  for (ArchiveFormat f : {ArchiveFormat::kTarUstar, ArchiveFormat::kTarPax}) {
    ASSERT_OK_AND_ASSIGN(std::string bytes, Build(kManifest, {f, false, 0}));
    EXPECT_EQ(bytes.substr(257, 5), "ustar");
    ASSERT_OK_AND_ASSIGN(std::vector<ListedEntry> got, ListArchive(bytes));
    ASSERT_EQ(got.size(), 13u);
    for (const ListedEntry& e : got) {
      SCOPED_TRACE(e.path);
      EXPECT_EQ(e.uname, "");
      EXPECT_EQ(e.gname, "");
      EXPECT_EQ(e.uid, 0);
    }
    EXPECT_EQ(got[3].type, EntryType::kCharDev);
  }
}

TEST(ArchiveTest, LongPathNeedsPax) {
  std::string long_path(300, 'a');
  for (size_t i = 50; i < long_path.size(); i += 50) long_path[i] = '/';
  std::string json = R"({"entries": [{"type": "file", "path": ")" + long_path +
                     R"(", "source": "src/init"}]})";
  EXPECT_THAT(Build(json.c_str(), {ArchiveFormat::kTarUstar, false, 0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("use pax")));
  ASSERT_OK_AND_ASSIGN(std::string pax, Build(json.c_str(), {ArchiveFormat::kTarPax, false, 0}));
  ASSERT_OK_AND_ASSIGN(std::vector<ListedEntry> got, ListArchive(pax));
  EXPECT_EQ(got.back().path, long_path);
}

TEST(ArchiveTest, ReaderErrorPropagates) {
  EXPECT_THAT(Build(R"({"entries": [{"type": "file", "path": "x", "source": "missing"}]})",
                    {ArchiveFormat::kCpioNewc, false, 0}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
}

TEST(ArchiveTest, ListRejectsGarbageAndTruncation) {
  EXPECT_THAT(ListArchive("this is not an archive at all, not even close......"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an archive")));
  ASSERT_OK_AND_ASSIGN(std::string bytes, Build(kManifest, {ArchiveFormat::kCpioNewc, false, 0}));
  EXPECT_FALSE(ListArchive(bytes.substr(0, bytes.size() / 2)).ok());
}

TEST(ArchiveTest, MtimeFromEnv) {
  EXPECT_THAT(MtimeFromEnv(""), ::testing::Eq(absl::StatusOr<int64_t>(0)));
  ASSERT_OK_AND_ASSIGN(int64_t t, MtimeFromEnv("1700000000"));
  EXPECT_EQ(t, 1700000000);
  EXPECT_THAT(MtimeFromEnv("-5"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("SOURCE_DATE_EPOCH")));
  EXPECT_THAT(MtimeFromEnv("12x"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("SOURCE_DATE_EPOCH")));
}

TEST(ArchiveTest, ParseArchiveFormat) {
  EXPECT_THAT(ParseArchiveFormat("zip"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("zip")));
  ASSERT_OK_AND_ASSIGN(ArchiveFormat f, ParseArchiveFormat("newc"));
  EXPECT_EQ(f, ArchiveFormat::kCpioNewc);
}

// A real tree on disk, expanded twice (after touching mtimes and modes): same bytes.
TEST(ExpandTreesTest, TreeFromDiskIsDeterministic) {
  std::string dir = std::string(std::getenv("TEST_TMPDIR")) + "/tree";
  ASSERT_OK(MakeDirs(dir + "/lib/modules/k/kernel/fs"));
  ASSERT_OK(WriteFile(dir + "/lib/modules/k/kernel/fs/b.ko", "bbbb", 0555));
  ASSERT_OK(WriteFile(dir + "/lib/modules/k/modules.dep", "kernel/fs/b.ko:\n", 0600));
  std::string json = R"({"entries": [{"type": "tree", "path": "", "source": ")" + dir +
                     R"("}, {"type": "dir", "path": "etc"}]})";
  auto build = [&]() -> absl::StatusOr<std::string> {
    absl::StatusOr<Manifest> m = ParseManifestJson(json);
    if (!m.ok()) return m.status();
    absl::StatusOr<Manifest> x = ExpandTrees(*m);
    if (!x.ok()) return x.status();
    absl::StatusOr<std::vector<ArchiveEntry>> plan = PlanArchive(*x);
    if (!plan.ok()) return plan.status();
    return WriteArchive(*plan, {ArchiveFormat::kCpioNewc, true, 0}, ReadFile);
  };
  ASSERT_OK_AND_ASSIGN(std::string a, build());
  ASSERT_EQ(chmod((dir + "/lib/modules/k/modules.dep").c_str(), 0644), 0);
  ASSERT_OK_AND_ASSIGN(std::string b, build());
  EXPECT_EQ(Sha256Hex(a), Sha256Hex(b));
  ASSERT_OK_AND_ASSIGN(std::vector<ListedEntry> got, ListArchive(a));
  std::map<std::string, uint32_t> modes;
  for (const ListedEntry& e : got) modes[e.path] = e.mode;
  EXPECT_EQ(modes.at("lib/modules/k/kernel/fs/b.ko"), 0644u);  // not the host's 0555
  EXPECT_EQ(modes.at("lib/modules/k/modules.dep"), 0644u);
  EXPECT_EQ(modes.at("lib"), 0755u);
  EXPECT_EQ(modes.count("etc"), 1u);
}

TEST(ExpandTreesTest, BadSources) {
  std::string tmp = std::getenv("TEST_TMPDIR");
  ASSERT_OK(WriteFile(tmp + "/plain", "x"));
  Manifest m;
  ManifestEntry t;
  t.type = EntryType::kTree;
  t.source = tmp + "/plain";
  m.entries = {t};
  EXPECT_THAT(ExpandTrees(m), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a directory")));
  m.entries[0].source = tmp + "/does-not-exist";
  EXPECT_THAT(ExpandTrees(m), StatusIs(absl::StatusCode::kNotFound, HasSubstr("does-not-exist")));
  ASSERT_OK(MakeDirs(tmp + "/withlink"));
  ASSERT_EQ(symlink("/nonexistent-target", (tmp + "/withlink/dangling").c_str()), 0);
  m.entries[0].source = tmp + "/withlink";
  EXPECT_THAT(ExpandTrees(m), StatusIs(absl::StatusCode::kNotFound, HasSubstr("dangling")));
}

}  // namespace
}  // namespace kiln::images
