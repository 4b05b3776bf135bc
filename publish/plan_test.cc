#include "publish/plan.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::publish {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const std::string kA = "sha256:" + std::string(64, 'a');
const std::string kB = "sha256:" + std::string(64, 'b');
const std::string kC = "sha256:" + std::string(64, 'c');

TagRequest Req(const char* v, const std::string& digest) {
  TagRequest r;
  r.version = *SemVer::Parse(v);
  r.digest = digest;
  return r;
}

VersionLock Lock(std::map<std::string, std::string> m) {
  VersionLock l;
  for (auto& [k, v] : m) l.versions[k].digest = v;
  return l;
}

TEST(DecideTagsTest, FirstVersionPushesImageAndVersionTag) {
  TagDecision d = DecideTags(Req("1.0.0", kA), {}, "r/x", {});
  EXPECT_FALSE(d.refused);
  EXPECT_FALSE(d.noop);
  EXPECT_TRUE(d.push_image);
  EXPECT_TRUE(d.record_in_lock);
  EXPECT_THAT(d.tags, ElementsAre("1.0.0"));
}

TEST(DecideTagsTest, MovingTagsOnlyWhenAsked) {
  TagRequest r = Req("1.2.3", kA);
  r.move_minor = true;
  r.move_latest = true;
  EXPECT_THAT(DecideTags(r, {}, "r/x", {}).tags, ElementsAre("1.2.3", "1.2", "latest"));
  r.move_latest = false;
  EXPECT_THAT(DecideTags(r, {}, "r/x", {}).tags, ElementsAre("1.2.3", "1.2"));
}

TEST(DecideTagsTest, SameVersionSameDigestIsNoop) {
  TagDecision d = DecideTags(Req("1.0.0", kA), Lock({{"1.0.0", kA}}), "r/x", {{"1.0.0", kA}});
  EXPECT_FALSE(d.refused);
  EXPECT_TRUE(d.noop);
  EXPECT_FALSE(d.push_image);
  EXPECT_THAT(d.tags, IsEmpty());
}

TEST(DecideTagsTest, SameVersionSameDigestMovesOnlyStaleTags) {
  TagRequest r = Req("1.0.0", kA);
  r.move_latest = true;
  r.move_minor = true;
  TagDecision d = DecideTags(r, {}, "r/x", {{"1.0.0", kA}, {"1.0", kA}, {"latest", kB}});
  EXPECT_FALSE(d.noop);
  EXPECT_FALSE(d.push_image);
  EXPECT_THAT(d.tags, ElementsAre("latest"));
}

TEST(DecideTagsTest, SameVersionOtherDigestInRegistryIsRefusedEvenWithForce) {
  TagRequest r = Req("1.0.0", kB);
  r.force = true;
  TagDecision d = DecideTags(r, {}, "r/x", {{"1.0.0", kA}});
  EXPECT_TRUE(d.refused);
  EXPECT_THAT(d.status, StatusIs(absl::StatusCode::kAlreadyExists,
                                 HasSubstr("already points to " + kA)));
  EXPECT_THAT(d.tags, IsEmpty());
  EXPECT_FALSE(d.push_image);
}

TEST(DecideTagsTest, SameVersionOtherDigestInLockIsRefused) {
  TagDecision d = DecideTags(Req("1.0.0", kB), Lock({{"1.0.0", kA}}), "r/x", {});
  EXPECT_THAT(d.status, StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("locked to")));
}

TEST(DecideTagsTest, LowerOrEqualVersionRefusedUnlessForced) {
  struct Row {
    const char* version;
    bool refused;
  };
  constexpr Row kRows[] = {{"1.1.9", true},  {"1.2.0+b.1", true},  {"1.2.0-rc.1", true},
                           {"0.9.0", true},  {"1.2.1-rc.1", false}, {"1.2.1", false},
                           {"2.0.0", false}};
  VersionLock lock = Lock({{"1.2.0", kA}, {"1.0.0", kB}});
  for (const Row& row : kRows) {
    SCOPED_TRACE(row.version);
    TagDecision d = DecideTags(Req(row.version, kC), lock, "r/x", {});
    EXPECT_EQ(d.refused, row.refused);
    if (row.refused) {
      EXPECT_THAT(d.status, StatusIs(absl::StatusCode::kFailedPrecondition,
                                     HasSubstr("not newer than 1.2.0")));
      TagRequest forced = Req(row.version, kC);
      forced.force = true;
      EXPECT_FALSE(DecideTags(forced, lock, "r/x", {}).refused);
    }
  }
}

TEST(DecideTagsTest, NewestAlsoComesFromRegistryTags) {
  TagDecision d = DecideTags(Req("1.5.0", kC), Lock({{"1.0.0", kA}}), "reg/x",
                             {{"2.0.0", kB}, {"latest", kB}, {"not-semver", kA}});
  EXPECT_THAT(d.status, StatusIs(absl::StatusCode::kFailedPrecondition,
                                 HasSubstr("not newer than 2.0.0, the newest in reg/x")));
}

TEST(DecideTagsTest, MirrorOfLockedVersionToNewTargetIsAllowed) {
  // 1.0.0 -> kA is locked (pushed elsewhere); 2.0.0 exists; pushing 1.0.0 = kA to a new
  // registry is a re-push of the same content, not a new lower version.
  TagDecision d =
      DecideTags(Req("1.0.0", kA), Lock({{"1.0.0", kA}, {"2.0.0", kB}}), "mirror/x", {});
  EXPECT_FALSE(d.refused);
  EXPECT_TRUE(d.push_image);
  EXPECT_THAT(d.tags, ElementsAre("1.0.0"));
}

// The version's tag is SemVer::Tag() ("+" -> "_"); the lock keeps the semver spelling, and a
// registry tag written that way counts as that version for immutability and ordering.
TEST(DecideTagsTest, BuildMetadataIsTaggedWithUnderscore) {
  TagDecision d = DecideTags(Req("1.2.3+build.5", kA), {}, "r/x", {});
  EXPECT_FALSE(d.refused);
  EXPECT_THAT(d.tags, ElementsAre("1.2.3_build.5"));

  d = DecideTags(Req("1.2.3+build.5", kA), {}, "r/x", {{"1.2.3_build.5", kB}});
  EXPECT_TRUE(d.refused);
  EXPECT_THAT(d.status, StatusIs(absl::StatusCode::kAlreadyExists,
                                 HasSubstr("version 1.2.3+build.5 (tag 1.2.3_build.5) already")));

  d = DecideTags(Req("1.2.3+build.5", kA), {}, "r/x", {{"1.2.3_build.5", kA}});
  EXPECT_TRUE(d.noop);

  d = DecideTags(Req("1.2.3", kA), {}, "r/x", {{"1.2.4_b", ""}});
  EXPECT_THAT(d.status, StatusIs(absl::StatusCode::kFailedPrecondition,
                                 HasSubstr("not newer than 1.2.4+b")));
}

TEST(PlanBlobsTest, SkipsPresentMountsOrUploadsOthersAndDedups) {
  std::vector<Descriptor> blobs = {{"t", kA, 10, {}}, {"t", kB, 20, {}}, {"t", kA, 10, {}},
                                   {"c", kC, 5, {}}};
  BlobPlan p = PlanBlobs(blobs, {kA}, {});
  ASSERT_EQ(p.steps.size(), 3u);
  EXPECT_EQ(p.steps[0].action, BlobAction::kSkip);
  EXPECT_EQ(p.steps[1].action, BlobAction::kUpload);
  EXPECT_EQ(p.steps[2].action, BlobAction::kUpload);
  EXPECT_EQ(p.bytes_skipped, 10);
  EXPECT_EQ(p.bytes_to_send, 25);

  BlobPlan m = PlanBlobs(blobs, {kA}, {"kiln/other"});
  EXPECT_EQ(m.steps[1].action, BlobAction::kMount);
  EXPECT_EQ(m.steps[1].mount_from, "kiln/other");
  EXPECT_EQ(m.steps[0].action, BlobAction::kSkip);
}

TEST(VersionLockTest, RoundTrips) {
  VersionLock l = Lock({{"1.0.0", kA}, {"1.10.0", kB}, {"1.2.0", kC}});
  l.versions["1.0.0"].targets = {"127.0.0.1:5000/kiln/builder"};
  std::string text = l.Serialize();
  ASSERT_OK_AND_ASSIGN(VersionLock back, VersionLock::Parse(text));
  EXPECT_EQ(back.Serialize(), text);
  EXPECT_EQ(back.versions["1.0.0"].targets.count("127.0.0.1:5000/kiln/builder"), 1u);
  ASSERT_TRUE(back.Newest().has_value());
  EXPECT_EQ(back.Newest()->ToString(), "1.10.0");
}

TEST(VersionLockTest, EmptyTextIsEmptyLock) {
  ASSERT_OK_AND_ASSIGN(VersionLock l, VersionLock::Parse(" \n"));
  EXPECT_TRUE(l.versions.empty());
  EXPECT_FALSE(l.Newest().has_value());
}

TEST(VersionLockTest, RefusesMalformedFiles) {
  struct Row {
    const char* text;
    const char* why;
  };
  const Row kRows[] = {
      {"[]", "not a JSON object"},
      {"{\"schema\": 2}", "\"schema\" must be 1"},
      {"{\"schema\": 1, \"versions\": []}", "must be an object"},
      {"{\"schema\": 1, \"versions\": {\"1.2\": {\"digest\": \"x\"}}}", "invalid version"},
      {"{\"schema\": 1, \"versions\": {\"1.2.3\": {}}}", "needs a string \"digest\""},
      {"{\"schema\": 1, \"versions\": {\"1.2.3\": {\"digest\": \"md5:x\"}}}", "only sha256"},
      {"{\"schema\": 1, \"versions\": {\"1.2.3\": {\"digest\": \"sha256:ab\"}}}", "64 lowercase"},
  };
  for (const Row& r : kRows) {
    SCOPED_TRACE(r.text);
    EXPECT_THAT(VersionLock::Parse(r.text),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(r.why)));
  }
}

}  // namespace
}  // namespace kiln::publish
