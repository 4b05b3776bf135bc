#include "publish/publisher.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::publish {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
namespace fs = std::filesystem;

// FakeTarget: an in-memory registry that records every call, in order.
class FakeTarget : public PublishTarget {
 public:
  std::string Name() const override { return "reg:5000/kiln/builder"; }
  std::optional<RegistryRef> Registry() const override {
    return *RegistryRef::Parse("reg:5000/kiln/builder");
  }
  absl::StatusOr<std::vector<std::string>> ListTags() override {
    calls.push_back("list");
    std::vector<std::string> out;
    for (const auto& [t, d] : tags) out.push_back(t);
    return out;
  }
  absl::StatusOr<std::optional<std::string>> ResolveTag(absl::string_view tag) override {
    calls.push_back(absl::StrCat("resolve ", tag));
    auto it = tags.find(std::string(tag));
    return it == tags.end() ? std::nullopt : std::optional<std::string>(it->second);
  }
  absl::StatusOr<bool> HasBlob(const Descriptor& d) override {
    calls.push_back("head " + d.digest.substr(7, 6));
    return blobs.count(d.digest) > 0;
  }
  absl::StatusOr<bool> MountBlob(const Descriptor& d, absl::string_view from,
                                 std::string*) override {
    calls.push_back(absl::StrCat("mount ", d.digest.substr(7, 6), " from ", from));
    return false;
  }
  absl::Status PutBlob(const Descriptor& d, const std::string&, const std::string&,
                       std::function<void(int64_t)>) override {
    calls.push_back("upload " + d.digest.substr(7, 6));
    if (fail_uploads) return absl::UnavailableError("injected");
    blobs.insert(d.digest);
    sent += d.size;
    return absl::OkStatus();
  }
  absl::Status PutManifest(absl::string_view ref, absl::string_view bytes,
                           absl::string_view) override {
    calls.push_back(absl::StartsWith(ref, "sha256:") ? "manifest by digest"
                                                     : absl::StrCat("tag ", ref));
    if (!absl::StartsWith(ref, "sha256:")) tags[std::string(ref)] = Sha256Digest(bytes);
    return absl::OkStatus();
  }
  int64_t BytesSent() const override { return sent; }

  std::map<std::string, std::string> tags;
  std::set<std::string> blobs;
  std::vector<std::string> calls;
  bool fail_uploads = false;
  int64_t sent = 0;
};

class PublishTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(std::getenv("TEST_TMPDIR")) /
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(root_);
    layout_ = root_ / "layout";
    fs::create_directories(layout_ / "blobs/sha256");
    std::ofstream(layout_ / "oci-layout") << R"({"imageLayoutVersion":"1.0.0"})";
    config_ = Put("{}");
    layer_ = Put("layer-bytes");
    std::string m = absl::StrCat(
        R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)",
        R"("config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")",
        config_, R"(","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar",)",
        R"("digest":")", layer_, R"(","size":11}]})");
    std::string md = Put(m);
    std::ofstream(layout_ / "index.json")
        << absl::StrCat(R"({"schemaVersion":2,"manifests":[{"mediaType":")", oci::kMediaTypeImageManifest,
                        R"(","digest":")", md, R"(","size":)", m.size(), "}]}");
    opts_.layout_dir = layout_.string();
    opts_.version = *SemVer::Parse("1.0.0");
    opts_.lock_path = (root_ / "lock.json").string();
    opts_.annotations = {{std::string(oci::kAnnotationRevision), "abc"}};
  }
  std::string Put(const std::string& data) {
    std::string d = Sha256Digest(data);
    std::ofstream(layout_ / "blobs/sha256" / d.substr(7), std::ios::binary) << data;
    return d;
  }
  fs::path root_, layout_;
  std::string config_, layer_;
  PublishOptions opts_;
  FakeTarget target_;
};

TEST_F(PublishTest, UploadsThenManifestByDigestThenTagsThenLock) {
  opts_.move_latest = true;
  ASSERT_OK_AND_ASSIGN(PublishResult r, Publish(opts_, &target_));
  std::string l = layer_.substr(7, 6), c = config_.substr(7, 6);
  EXPECT_THAT(target_.calls, ElementsAre("list", "head " + l, "head " + c, "upload " + l,
                                         "upload " + c, "manifest by digest", "tag 1.0.0",
                                         "tag latest"));
  EXPECT_EQ(r.bytes_uploaded, 13);
  EXPECT_EQ(target_.tags["1.0.0"], r.digest);
  ASSERT_OK_AND_ASSIGN(VersionLock lock, ReadLockFile(opts_.lock_path));
  EXPECT_EQ(lock.versions["1.0.0"].digest, r.digest);
  EXPECT_EQ(lock.versions["1.0.0"].targets.count("reg:5000/kiln/builder"), 1u);
}

TEST_F(PublishTest, VerificationRunsAfterTheManifestByDigestAndBeforeAnyTag) {
  opts_.move_latest = true;
  std::string verified;
  opts_.verify = [&](const std::string& digest) {
    target_.calls.push_back("verify");
    verified = digest;
    return absl::OkStatus();
  };
  ASSERT_OK_AND_ASSIGN(PublishResult r, Publish(opts_, &target_));
  std::string l = layer_.substr(7, 6), c = config_.substr(7, 6);
  EXPECT_THAT(target_.calls, ElementsAre("list", "head " + l, "head " + c, "upload " + l,
                                         "upload " + c, "manifest by digest", "verify",
                                         "tag 1.0.0", "tag latest"));
  EXPECT_EQ(verified, r.digest);
  EXPECT_TRUE(r.verified);
  // The same version again is a no-op: nothing to tag, nothing to verify.
  target_.calls.clear();
  ASSERT_OK_AND_ASSIGN(PublishResult again, Publish(opts_, &target_));
  EXPECT_TRUE(again.noop);
  EXPECT_FALSE(again.verified);
  EXPECT_THAT(target_.calls, ElementsAre("list", "resolve 1.0.0", "resolve latest"));
}

TEST_F(PublishTest, FailedVerificationLeavesTheDigestUntaggedAndNoLock) {
  opts_.move_latest = true;
  opts_.verify = [](const std::string&) {
    return VerificationFailed(absl::AbortedError("builder suite: 1 check failed"));
  };
  absl::StatusOr<PublishResult> r = Publish(opts_, &target_);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(IsVerificationFailure(r.status()));
  EXPECT_THAT(r.status(), StatusIs(absl::StatusCode::kAborted,
                                   HasSubstr("reg:5000/kiln/builder@sha256:")));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("untagged: builder suite: 1 check failed"));
  EXPECT_EQ(target_.calls.back(), "manifest by digest");
  EXPECT_TRUE(target_.tags.empty());
  EXPECT_FALSE(fs::exists(opts_.lock_path));
  // A failure that is not the image's (e.g. the registry went away mid pull-back) keeps its
  // own code and is not marked.
  opts_.verify = [](const std::string&) { return absl::UnavailableError("connection refused"); };
  r = Publish(opts_, &target_);
  EXPECT_THAT(r.status(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("untagged")));
  EXPECT_FALSE(IsVerificationFailure(r.status()));
  EXPECT_TRUE(target_.tags.empty());
}

TEST_F(PublishTest, RefusalWritesNothing) {
  target_.tags["1.0.0"] = "sha256:" + std::string(64, 'f');
  EXPECT_THAT(Publish(opts_, &target_),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("immutable")));
  EXPECT_THAT(target_.calls, ElementsAre("list", "resolve 1.0.0"));
  EXPECT_FALSE(fs::exists(opts_.lock_path));
}

TEST_F(PublishTest, FailedUploadWritesNoManifestNoTagNoLock) {
  target_.fail_uploads = true;
  EXPECT_THAT(Publish(opts_, &target_), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));
  for (const std::string& call : target_.calls) {
    EXPECT_FALSE(absl::StartsWith(call, "tag ")) << call;
    EXPECT_FALSE(absl::StartsWith(call, "manifest")) << call;
  }
  EXPECT_TRUE(target_.tags.empty());
  EXPECT_FALSE(fs::exists(opts_.lock_path));
}

TEST_F(PublishTest, SecondPublishIsNoopAndAnnotationsAreStamped) {
  ASSERT_OK_AND_ASSIGN(PublishResult first, Publish(opts_, &target_));
  target_.calls.clear();
  ASSERT_OK_AND_ASSIGN(PublishResult again, Publish(opts_, &target_));
  EXPECT_TRUE(again.noop);
  EXPECT_EQ(again.digest, first.digest);
  EXPECT_THAT(target_.calls, ElementsAre("list", "resolve 1.0.0"));
  // Another revision annotation is other content: refused for the same version.
  opts_.annotations[std::string(oci::kAnnotationRevision)] = "def";
  EXPECT_THAT(Publish(opts_, &target_), StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("immutable")));
}

TEST_F(PublishTest, DryRunPlansWithoutWriting) {
  opts_.dry_run = true;
  target_.blobs.insert(layer_);
  ASSERT_OK_AND_ASSIGN(PublishResult r, Publish(opts_, &target_));
  EXPECT_TRUE(r.dry_run);
  EXPECT_EQ(r.bytes_skipped, 11);
  ASSERT_EQ(r.blobs.size(), 2u);
  EXPECT_EQ(r.blobs[0].action, BlobAction::kSkip);
  EXPECT_EQ(r.blobs[1].action, BlobAction::kUpload);
  EXPECT_THAT(r.tags, ElementsAre("1.0.0"));
  EXPECT_TRUE(target_.tags.empty());
  EXPECT_FALSE(fs::exists(opts_.lock_path));
}

TEST_F(PublishTest, MountsFromRepositoriesInTheLock) {
  VersionLock lock;
  lock.versions["0.9.0"] = {"sha256:" + std::string(64, 'e'), {"reg:5000/kiln/other",
                                                               "elsewhere:1/kiln/x"}};
  ASSERT_OK(WriteLockFile(opts_.lock_path, lock));
  ASSERT_OK(Publish(opts_, &target_).status());
  EXPECT_THAT(target_.calls, ::testing::Contains("mount " + layer_.substr(7, 6) +
                                                 " from kiln/other"));
}

TEST_F(PublishTest, LayoutTargetRoundTrip) {
  LayoutTarget out((root_ / "out").string());
  ASSERT_OK(out.Init());
  ASSERT_OK_AND_ASSIGN(PublishResult r, Publish(opts_, &out));
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> d, out.ResolveTag("1.0.0"));
  EXPECT_EQ(d, r.digest);
  ASSERT_OK_AND_ASSIGN(oci::LayoutImage img, oci::ReadImageLayout((root_ / "out").string(), "1.0.0"));
  EXPECT_EQ(img.manifest_digest, r.digest);
  EXPECT_THAT(img.manifest_bytes, HasSubstr("\"org.opencontainers.image.version\":\"1.0.0\""));
  // Local layouts are not recorded in the repository's lock file.
  EXPECT_FALSE(fs::exists(opts_.lock_path));
  ASSERT_OK_AND_ASSIGN(PublishResult again, Publish(opts_, &out));
  EXPECT_TRUE(again.noop);
}

// A version the policy accepts but whose tag the distribution spec does not (longer than
// 128 characters) is refused before anything is read from or sent to the target.
TEST_F(PublishTest, VersionWithoutAValidTagIsRefusedBeforeAnyUpload) {
  opts_.version = *SemVer::Parse("1.0.0-" + std::string(130, 'a'));
  EXPECT_THAT(Publish(opts_, &target_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("cannot be published"),
                                        HasSubstr("136 characters, at most 128"))));
  EXPECT_THAT(target_.calls, IsEmpty());
  EXPECT_FALSE(fs::exists(opts_.lock_path));
}

// Build metadata: the tag is written with "_" (registry and local layout alike), the lock
// and the version annotation keep "+".
TEST_F(PublishTest, BuildMetadataVersionIsTaggedWithUnderscore) {
  opts_.version = *SemVer::Parse("1.0.0+build.7");
  ASSERT_OK_AND_ASSIGN(PublishResult r, Publish(opts_, &target_));
  EXPECT_THAT(r.tags, ElementsAre("1.0.0_build.7"));
  EXPECT_EQ(target_.tags["1.0.0_build.7"], r.digest);
  ASSERT_OK_AND_ASSIGN(VersionLock lock, ReadLockFile(opts_.lock_path));
  EXPECT_EQ(lock.versions["1.0.0+build.7"].digest, r.digest);
  target_.calls.clear();
  ASSERT_OK_AND_ASSIGN(PublishResult again, Publish(opts_, &target_));
  EXPECT_TRUE(again.noop);

  LayoutTarget out((root_ / "out").string());
  ASSERT_OK(out.Init());
  ASSERT_OK_AND_ASSIGN(PublishResult l, Publish(opts_, &out));
  ASSERT_OK_AND_ASSIGN(oci::LayoutImage img,
                       oci::ReadImageLayout((root_ / "out").string(), "1.0.0_build.7"));
  EXPECT_EQ(img.manifest_digest, l.digest);
  EXPECT_THAT(img.manifest_bytes,
              HasSubstr("\"org.opencontainers.image.version\":\"1.0.0+build.7\""));
}

// --dry-run into a layout directory that does not exist yet plans (no tags, no blobs there)
// and creates nothing.
TEST_F(PublishTest, DryRunIntoAFreshLayoutPlansAndCreatesNothing) {
  const fs::path fresh = root_ / "fresh" / "oci";
  LayoutTarget out(fresh.string());
  EXPECT_FALSE(out.Exists());
  opts_.dry_run = true;
  ASSERT_OK_AND_ASSIGN(PublishResult r, Publish(opts_, &out));
  EXPECT_TRUE(r.dry_run);
  EXPECT_THAT(r.tags, ElementsAre("1.0.0"));
  ASSERT_EQ(r.blobs.size(), 2u);
  EXPECT_EQ(r.blobs[0].action, BlobAction::kUpload);
  EXPECT_FALSE(fs::exists(root_ / "fresh"));
}

}  // namespace
}  // namespace kiln::publish
