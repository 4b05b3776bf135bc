// File: images/tool/manifest_test.cc
// ParseManifestJson and PlanArchive: good manifests, and one test per hostile input.
#include "images/tool/manifest.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::images {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

ManifestEntry File(std::string path, uint32_t mode = 0644) {
  ManifestEntry e;
  e.type = EntryType::kFile;
  e.path = std::move(path);
  e.mode = mode;
  e.source = "src/" + e.path;
  return e;
}

ManifestEntry Dir(std::string path) {
  ManifestEntry e;
  e.type = EntryType::kDir;
  e.path = std::move(path);
  e.mode = 0700;
  return e;
}

TEST(ManifestTest, ParsesEveryType) {
  ASSERT_OK_AND_ASSIGN(Manifest m, ParseManifestJson(R"({"entries": [
    {"type": "file", "path": "init", "mode": "0755", "source": "out/init"},
    {"type": "dir", "path": "etc/kiln"},
    {"type": "symlink", "path": "bin/sh", "target": "/bin/busybox"},
    {"type": "chardev", "path": "dev/console", "mode": "0600", "major": 5, "minor": 1},
    {"type": "tree", "path": "", "source": "out/modules"}
  ]})"));
  ASSERT_EQ(m.entries.size(), 5u);
  EXPECT_EQ(m.entries[0].type, EntryType::kFile);
  EXPECT_EQ(m.entries[0].mode, 0755u);
  EXPECT_EQ(m.entries[0].source, "out/init");
  EXPECT_EQ(m.entries[1].mode, 0755u);  // default for dir
  EXPECT_EQ(m.entries[2].target, "/bin/busybox");
  EXPECT_EQ(m.entries[2].mode, 0777u);
  EXPECT_EQ(m.entries[3].major, 5u);
  EXPECT_EQ(m.entries[3].minor, 1u);
  EXPECT_EQ(m.entries[4].type, EntryType::kTree);
}

TEST(ManifestTest, RejectsBadJsonAndShapes) {
  EXPECT_THAT(ParseManifestJson("{"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("JSON")));
  EXPECT_THAT(ParseManifestJson("[]"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("entries")));
  EXPECT_THAT(ParseManifestJson(R"({"entries": [], "x": 1})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("one key")));
}

TEST(ManifestTest, RejectsBadEntries) {
  struct Case {
    const char* json;
    const char* error;
  } cases[] = {
      {R"({"type": "file", "path": "/init", "source": "x"})", "absolute"},
      {R"({"type": "file", "path": "a/../init", "source": "x"})", "\"..\""},
      {R"({"type": "file", "path": "../init", "source": "x"})", "\"..\""},
      {R"({"type": "file", "path": "a//b", "source": "x"})", "empty or \".\""},
      {R"({"type": "file", "path": "./a", "source": "x"})", "empty or \".\""},
      {R"({"type": "file", "path": "a/", "source": "x"})", "empty or \".\""},
      {R"({"type": "file", "path": "", "source": "x"})", "empty guest path"},
      {R"({"type": "file", "path": "init"})", "missing \"source\""},
      {R"({"type": "file", "source": "x"})", "missing \"path\""},
      {R"({"path": "x", "source": "x"})", "missing \"type\""},
      {R"({"type": "fifo", "path": "x"})", "unknown type"},
      {R"({"type": "file", "path": "x", "source": "x", "mode": "755x"})", "octal"},
      {R"({"type": "file", "path": "x", "source": "x", "mode": "17777"})", "above 07777"},
      {R"({"type": "file", "path": "x", "source": "x", "mode": 493})", "not a string"},
      {R"({"type": "file", "path": "x", "source": "x", "owner": "root"})", "unknown key"},
      {R"({"type": "symlink", "path": "x"})", "missing \"target\""},
      {R"({"type": "symlink", "path": "x", "target": "y", "mode": "0644"})", "not allowed"},
      {R"({"type": "dir", "path": "x", "source": "y"})", "not allowed"},
      {R"({"type": "dir", "path": "x", "target": "y"})", "not allowed"},
      {R"({"type": "chardev", "path": "dev/c", "major": 5})", "missing \"minor\""},
      {R"({"type": "chardev", "path": "dev/c", "major": -1, "minor": 1})", "device number"},
      {R"({"type": "dir", "path": "x", "major": 1})", "not allowed"},
      {R"({"type": "tree", "path": "", "source": "d", "mode": "0755"})", "not allowed"},
      {"1", "not a JSON object"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.json);
    EXPECT_THAT(ParseManifestJson(std::string(R"({"entries": [)") + c.json + "]}"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.error)));
  }
}

TEST(ManifestTest, ErrorNamesTheEntryIndex) {
  EXPECT_THAT(ParseManifestJson(R"({"entries": [{"type": "dir", "path": "a"},
                                                {"type": "dir", "path": "/b"}]})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("entry 1")));
}

TEST(PlanArchiveTest, SortsAddsParentsAndNumbersInodes) {
  Manifest m;
  m.entries = {File("lib/modules/k/a.ko"), File("init", 0755), File("etc/kiln/modules.load"),
               Dir("etc")};
  ASSERT_OK_AND_ASSIGN(std::vector<ArchiveEntry> plan, PlanArchive(m));
  std::vector<std::string> paths;
  for (const ArchiveEntry& a : plan) paths.push_back(a.path);
  EXPECT_THAT(paths, ::testing::ElementsAre("etc", "etc/kiln", "etc/kiln/modules.load", "init",
                                            "lib", "lib/modules", "lib/modules/k",
                                            "lib/modules/k/a.ko"));
  for (size_t i = 0; i < plan.size(); ++i) EXPECT_EQ(plan[i].inode, i + 1);
  EXPECT_EQ(plan[0].mode, 0700u);  // the explicit dir keeps its mode
  EXPECT_EQ(plan[1].mode, 0755u);  // implied parent
  EXPECT_EQ(plan[1].type, EntryType::kDir);
  EXPECT_EQ(plan[3].mode, 0755u);
}

TEST(PlanArchiveTest, OrderDoesNotDependOnInputOrder) {
  Manifest a, b;
  a.entries = {File("x/y"), File("a-b"), File("a/b")};
  b.entries = {File("a/b"), File("x/y"), File("a-b")};
  ASSERT_OK_AND_ASSIGN(std::vector<ArchiveEntry> pa, PlanArchive(a));
  ASSERT_OK_AND_ASSIGN(std::vector<ArchiveEntry> pb, PlanArchive(b));
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].path, pb[i].path);
    EXPECT_EQ(pa[i].inode, pb[i].inode);
  }
}

TEST(PlanArchiveTest, RejectsDuplicates) {
  Manifest m;
  m.entries = {File("init"), File("init")};
  EXPECT_THAT(PlanArchive(m), StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("\"init\"")));
  Manifest d;
  d.entries = {Dir("etc"), Dir("etc")};
  EXPECT_THAT(PlanArchive(d), StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("etc")));
}

TEST(PlanArchiveTest, RejectsEntryBelowAFile) {
  Manifest m;
  m.entries = {File("init"), File("init/x")};
  EXPECT_THAT(PlanArchive(m),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a dir")));
}

TEST(PlanArchiveTest, RejectsHostilePathsAndTrees) {
  Manifest m;
  m.entries = {File("../etc/passwd")};
  EXPECT_THAT(PlanArchive(m), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("..")));
  Manifest abs;
  abs.entries = {File("/init")};
  EXPECT_THAT(PlanArchive(abs), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("absolute")));
  Manifest tree;
  ManifestEntry t;
  t.type = EntryType::kTree;
  t.source = "d";
  tree.entries = {t};
  EXPECT_THAT(PlanArchive(tree), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ExpandTrees")));
}

TEST(CheckGuestPathTest, NulByte) {
  EXPECT_THAT(CheckGuestPath(std::string("a\0b", 3)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NUL")));
  EXPECT_OK(CheckGuestPath("", /*allow_root=*/true));
  EXPECT_OK(CheckGuestPath("lib/modules/6.1.0-57-cloud-amd64/kernel/fs/erofs/erofs.ko"));
}

}  // namespace
}  // namespace kiln::images
