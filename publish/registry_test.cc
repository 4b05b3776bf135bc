#include "publish/registry.h"

#include <filesystem>

#include <cstdio>
#include <deque>
#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "images/oci/image.h"
#include "images/oci/layout.h"
#include "publish/pull.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::publish {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::AllOf;
using ::testing::Contains;

// FakeTransport: answers requests from a script, in order, and records them.
class FakeTransport : public HttpTransport {
 public:
  struct Reply {
    absl::StatusOr<HttpResponse> resp;
  };
  void Add(int status, std::multimap<std::string, std::string> headers = {},
           std::string body = "") {
    HttpResponse r;
    r.status = status;
    r.headers = std::move(headers);
    r.body = std::move(body);
    script_.push_back({r});
  }
  void AddError(absl::Status s) { script_.push_back({s}); }

  absl::StatusOr<HttpResponse> Do(const HttpRequest& req) override {
    HttpRequest copy = req;
    if (!req.body_file.empty()) {  // materialize the streamed range for assertions
      std::ifstream in(req.body_file, std::ios::binary);
      in.seekg(req.body_offset);
      copy.body.resize(static_cast<size_t>(req.body_length));
      in.read(copy.body.data(), req.body_length);
    }
    requests.push_back(copy);
    if (script_.empty()) return absl::InternalError("fake: no scripted reply for " + req.url);
    Reply r = script_.front();
    script_.pop_front();
    return r.resp;
  }
  bool Done() const { return script_.empty(); }

  std::vector<HttpRequest> requests;

 private:
  std::deque<Reply> script_;
};

std::string HeaderOf(const HttpRequest& r, absl::string_view name) {
  for (const auto& [k, v] : r.headers)
    if (absl::EqualsIgnoreCase(k, name)) return v;
  return "";
}

class RegistryClientTest : public ::testing::Test {
 protected:
  RegistryClientTest() : ref_(*RegistryRef::Parse("127.0.0.1:5000/kiln/builder")) {
    opts_.use_tls = false;
    opts_.sleep = [this](absl::Duration d) { sleeps_.push_back(d); };
  }
  std::string WriteBlob(const std::string& data) {
    std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/blob";
    std::ofstream(path, std::ios::binary) << data;
    return path;
  }
  RegistryRef ref_;
  RegistryOptions opts_;
  FakeTransport http_;
  std::vector<absl::Duration> sleeps_;
};

TEST_F(RegistryClientTest, ChunkedUploadRequestShapes) {
  opts_.chunk_bytes = 4;
  RegistryClient c(ref_, opts_, &http_);
  const std::string data = "0123456789";
  Descriptor d{"application/octet-stream", Sha256Digest(data), 10, {}};
  http_.Add(202, {{"location", "/v2/kiln/builder/blobs/uploads/u1?_state=a"}});
  http_.Add(202, {{"location", "/v2/kiln/builder/blobs/uploads/u1?_state=b"}});
  http_.Add(202, {{"location", "/v2/kiln/builder/blobs/uploads/u1?_state=c"}});
  http_.Add(202, {{"location", "http://127.0.0.1:5000/v2/kiln/builder/blobs/uploads/u1?_state=d"}});
  http_.Add(201, {{"docker-content-digest", d.digest}});
  std::vector<int64_t> progress;
  ASSERT_OK(c.UploadBlob(d, WriteBlob(data), "", [&](int64_t n) { progress.push_back(n); }));
  ASSERT_EQ(http_.requests.size(), 5u);
  const auto& r = http_.requests;
  EXPECT_EQ(r[0].method, "POST");
  EXPECT_EQ(r[0].url, "http://127.0.0.1:5000/v2/kiln/builder/blobs/uploads/");
  EXPECT_EQ(r[1].method, "PATCH");
  EXPECT_EQ(r[1].url, "http://127.0.0.1:5000/v2/kiln/builder/blobs/uploads/u1?_state=a");
  EXPECT_EQ(HeaderOf(r[1], "Content-Range"), "0-3");
  EXPECT_EQ(HeaderOf(r[1], "Content-Type"), "application/octet-stream");
  EXPECT_EQ(r[1].body, "0123");
  EXPECT_EQ(HeaderOf(r[2], "Content-Range"), "4-7");
  EXPECT_EQ(r[2].body, "4567");
  EXPECT_EQ(HeaderOf(r[3], "Content-Range"), "8-9");
  EXPECT_EQ(r[3].body, "89");
  EXPECT_EQ(r[4].method, "PUT");
  EXPECT_EQ(r[4].url, "http://127.0.0.1:5000/v2/kiln/builder/blobs/uploads/u1?_state=d&digest=" +
                          std::string("sha256%3A") + d.digest.substr(7));
  EXPECT_EQ(HeaderOf(r[4], "Content-Type"), "application/octet-stream");
  EXPECT_TRUE(r[4].body.empty());
  EXPECT_EQ(c.stats().bytes_sent, 10);
}

TEST_F(RegistryClientTest, ResumesFromRegistryOffsetAfterConnectionReset) {
  opts_.chunk_bytes = 4;
  RegistryClient c(ref_, opts_, &http_);
  const std::string data = "0123456789";
  Descriptor d{"t", Sha256Digest(data), 10, {}};
  http_.Add(202, {{"location", "/up?s=1"}});
  http_.Add(202, {{"location", "/up?s=2"}});                       // 0-3 ok
  http_.AddError(absl::UnavailableError("connection reset"));       // 4-7 lost
  http_.Add(204, {{"range", "0-5"}, {"location", "/up?s=3"}});       // registry holds 6 bytes
  http_.Add(202, {{"location", "/up?s=4"}});                       // 6-9
  http_.Add(201);
  ASSERT_OK(c.UploadBlob(d, WriteBlob(data), "", nullptr));
  const auto& r = http_.requests;
  ASSERT_EQ(r.size(), 6u);
  EXPECT_EQ(r[3].method, "GET");
  EXPECT_EQ(r[3].url, "http://127.0.0.1:5000/up?s=2");
  EXPECT_EQ(HeaderOf(r[4], "Content-Range"), "6-9");
  EXPECT_EQ(r[4].body, "6789");
  EXPECT_EQ(c.stats().resumes, 1);
  EXPECT_EQ(c.stats().restarts, 0);
  EXPECT_EQ(sleeps_.size(), 1u);
}

TEST_F(RegistryClientTest, RestartsWhenUploadSessionIsGone) {
  RegistryClient c(ref_, opts_, &http_);
  Descriptor d{"t", Sha256Digest("ab"), 2, {}};
  http_.Add(202, {{"location", "/up1"}});
  http_.Add(500);                          // PATCH fails
  http_.Add(404);                          // GET status: BLOB_UPLOAD_UNKNOWN
  http_.Add(202, {{"location", "/up2"}});  // new POST
  http_.Add(202, {{"location", "/up2"}});  // PATCH 0-1
  http_.Add(201);
  ASSERT_OK(c.UploadBlob(d, WriteBlob("ab"), "", nullptr));
  EXPECT_EQ(http_.requests[3].method, "POST");
  EXPECT_EQ(HeaderOf(http_.requests[4], "Content-Range"), "0-1");
  EXPECT_EQ(c.stats().restarts, 1);
}

TEST_F(RegistryClientTest, RetriesServerErrorsWithBackoffThenGivesUp) {
  opts_.max_attempts = 3;
  RegistryClient c(ref_, opts_, &http_);
  http_.Add(503);
  http_.Add(429, {{"retry-after", "2"}});
  http_.Add(200);
  ASSERT_OK_AND_ASSIGN(bool have, c.HasBlob(Sha256Digest("x")));
  EXPECT_TRUE(have);
  EXPECT_THAT(sleeps_, ::testing::ElementsAre(absl::Milliseconds(200), absl::Seconds(2)));
  EXPECT_EQ(http_.requests[0].method, "HEAD");

  http_.Add(500);
  http_.Add(500);
  http_.Add(500);
  EXPECT_THAT(c.HasBlob(Sha256Digest("x")),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("HTTP 500 after 3 attempts")));
  http_.AddError(absl::UnavailableError("Connection refused"));
  http_.AddError(absl::UnavailableError("Connection refused"));
  http_.AddError(absl::UnavailableError("Connection refused"));
  EXPECT_THAT(c.Ping(), StatusIs(absl::StatusCode::kUnavailable,
                                 HasSubstr("Connection refused (after 3 attempts)")));
}

TEST_F(RegistryClientTest, BasicChallengeIsAnsweredOnceAndRejectionIsUnauthenticated) {
  opts_.credentials = Credentials{"u", "p"};
  RegistryClient c(ref_, opts_, &http_);
  http_.Add(401, {{"www-authenticate", "Basic realm=\"r\""}});
  http_.Add(200);
  ASSERT_OK(c.Ping());
  EXPECT_EQ(HeaderOf(http_.requests[1], "Authorization"), "Basic " + absl::Base64Escape("u:p"));
  // Later requests carry the header from the start.
  http_.Add(404);
  ASSERT_OK_AND_ASSIGN(bool have, c.HasBlob(Sha256Digest("y")));
  EXPECT_FALSE(have);
  EXPECT_EQ(HeaderOf(http_.requests[2], "Authorization"), "Basic " + absl::Base64Escape("u:p"));

  RegistryClient bad(ref_, opts_, &http_);
  http_.Add(401, {{"www-authenticate", "Basic realm=\"r\""}});
  http_.Add(401, {{"www-authenticate", "Basic realm=\"r\""}});
  EXPECT_THAT(bad.Ping(), StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("rejected")));

  opts_.credentials.reset();
  RegistryClient anon(ref_, opts_, &http_);
  http_.Add(401, {{"www-authenticate", "Basic realm=\"r\""}});
  EXPECT_THAT(anon.Ping(), StatusIs(absl::StatusCode::kUnauthenticated,
                                    HasSubstr("requires authentication")));
}

TEST_F(RegistryClientTest, BearerChallengeFetchesTokenWithScopes) {
  opts_.credentials = Credentials{"u", "p"};
  RegistryClient c(ref_, opts_, &http_);
  http_.Add(401, {{"www-authenticate",
                   "Bearer realm=\"https://auth.example/token\",service=\"reg\","
                   "scope=\"repository:kiln/builder:pull\""}});
  http_.Add(200, {}, R"({"token":"T0K"})");
  http_.Add(200);
  ASSERT_OK_AND_ASSIGN(bool have, c.HasBlob(Sha256Digest("z")));
  EXPECT_TRUE(have);
  const auto& r = http_.requests;
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[1].method, "GET");
  EXPECT_EQ(r[1].url,
            "https://auth.example/token?service=reg&scope=repository%3Akiln%2Fbuilder%3Apull&"
            "scope=repository%3Akiln%2Fbuilder%3Apull%2Cpush");
  EXPECT_EQ(HeaderOf(r[1], "Authorization"), "Basic " + absl::Base64Escape("u:p"));
  EXPECT_EQ(HeaderOf(r[2], "Authorization"), "Bearer T0K");

  RegistryClient denied(ref_, opts_, &http_);
  http_.Add(401, {{"www-authenticate", "Bearer realm=\"https://auth.example/token\""}});
  http_.Add(401);
  EXPECT_THAT(denied.Ping(), StatusIs(absl::StatusCode::kUnauthenticated,
                                      HasSubstr("token endpoint https://auth.example/token "
                                                "refused the credentials of user \"u\"")));
}

TEST_F(RegistryClientTest, MountAndManifestShapes) {
  RegistryClient c(ref_, opts_, &http_);
  std::string d = Sha256Digest("m");
  std::string url;
  http_.Add(201);
  ASSERT_OK_AND_ASSIGN(bool mounted, c.MountBlob(d, "kiln/other", &url));
  EXPECT_TRUE(mounted);
  EXPECT_EQ(http_.requests[0].method, "POST");
  EXPECT_EQ(http_.requests[0].url, "http://127.0.0.1:5000/v2/kiln/builder/blobs/uploads/?mount=" +
                                       std::string("sha256%3A") + d.substr(7) +
                                       "&from=kiln%2Fother");
  http_.Add(202, {{"location", "/v2/kiln/builder/blobs/uploads/x"}});
  ASSERT_OK_AND_ASSIGN(mounted, c.MountBlob(d, "kiln/other", &url));
  EXPECT_FALSE(mounted);
  EXPECT_EQ(url, "http://127.0.0.1:5000/v2/kiln/builder/blobs/uploads/x");

  const std::string manifest = R"({"schemaVersion":2})";
  http_.Add(201, {{"docker-content-digest", Sha256Digest(manifest)}});
  ASSERT_OK(c.PutManifest("1.2.3", manifest, oci::kMediaTypeImageManifest));
  const HttpRequest& put = http_.requests.back();
  EXPECT_EQ(put.method, "PUT");
  EXPECT_EQ(put.url, "http://127.0.0.1:5000/v2/kiln/builder/manifests/1.2.3");
  EXPECT_EQ(HeaderOf(put, "Content-Type"), oci::kMediaTypeImageManifest);
  EXPECT_EQ(put.body, manifest);

  http_.Add(201, {{"docker-content-digest", Sha256Digest("other")}});
  EXPECT_THAT(c.PutManifest("1.2.3", manifest, oci::kMediaTypeImageManifest),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("registry stored manifest")));

  http_.Add(400, {}, R"({"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown"}]})");
  EXPECT_THAT(c.PutManifest("1.2.3", manifest, oci::kMediaTypeImageManifest),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("MANIFEST_BLOB_UNKNOWN")));
}

TEST_F(RegistryClientTest, TagsAndResolve) {
  RegistryClient c(ref_, opts_, &http_);
  http_.Add(404);
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> tags, c.ListTags());
  EXPECT_TRUE(tags.empty());
  http_.Add(200, {{"link", "</v2/kiln/builder/tags/list?n=1000&last=b>; rel=\"next\""}},
            R"({"name":"kiln/builder","tags":["a","b"]})");
  http_.Add(200, {}, R"({"name":"kiln/builder","tags":["c"]})");
  ASSERT_OK_AND_ASSIGN(tags, c.ListTags());
  EXPECT_THAT(tags, ::testing::ElementsAre("a", "b", "c"));
  EXPECT_EQ(http_.requests.back().url,
            "http://127.0.0.1:5000/v2/kiln/builder/tags/list?n=1000&last=b");

  http_.Add(200, {{"docker-content-digest", Sha256Digest("q")}});
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> got, c.ResolveTag("1.0.0"));
  EXPECT_EQ(got, Sha256Digest("q"));
  EXPECT_THAT(HeaderOf(http_.requests.back(), "Accept"), HasSubstr(oci::kMediaTypeImageManifest));
  http_.Add(404);
  ASSERT_OK_AND_ASSIGN(got, c.ResolveTag("9.9.9"));
  EXPECT_FALSE(got.has_value());
}

// A Location or Link that leaves the registry's origin is refused before anything is sent to
// it; one that stays (in any spelling RFC 3986 allows) is followed.
TEST_F(RegistryClientTest, UploadLocationMustStayOnTheRegistryOrigin) {
  struct Row {
    bool tls;
    const char* location;
    const char* why;  // "" = followed
    const char* followed;
  };
  constexpr Row kRows[] = {
      {false, "http://127.0.0.1:5001/v2/up", "another origin (http://127.0.0.1:5001)", ""},
      {false, "http://127.0.0.2:5000/v2/up", "another origin (http://127.0.0.2:5000)", ""},
      {false, "http://127.0.0.1/v2/up", "another origin (http://127.0.0.1:80)", ""},
      {false, "//evil.example:5000/v2/up", "another origin (http://evil.example:5000)", ""},
      {false, "http://127.0.0.1:5000@evil.example/v2/up", "userinfo", ""},
      {false, "https://127.0.0.1:5000/v2/up", "another origin (https://127.0.0.1:5000)", ""},
      {false, "ftp://127.0.0.1:5000/v2/up", "not http or https", ""},
      {false, "/v2/up\x01", "control character", ""},
      {true, "http://127.0.0.1:5000/v2/up", "downgrades https to plain http", ""},
      {true, "http://127.0.0.1:443/v2/up", "downgrades https to plain http", ""},
      {false, "HTTP://127.0.0.1:5000/v2/up?s=1", "", "http://127.0.0.1:5000/v2/up?s=1"},
      {false, "u1?s=1", "", "http://127.0.0.1:5000/v2/kiln/builder/blobs/uploads/u1?s=1"},
      {false, "../../x/up", "", "http://127.0.0.1:5000/v2/kiln/builder/x/up"},
      {true, "https://127.0.0.1:5000/v2/up", "", "https://127.0.0.1:5000/v2/up"},
  };
  for (const Row& row : kRows) {
    SCOPED_TRACE(row.location);
    opts_.use_tls = row.tls;
    opts_.credentials = Credentials{"u", "p"};
    FakeTransport http;
    RegistryClient c(ref_, opts_, &http);
    Descriptor d{"t", Sha256Digest("ab"), 2, {}};
    http.Add(401, {{"www-authenticate", "Basic realm=\"r\""}});
    http.Add(202, {{"location", row.location}});
    if (row.why[0] == '\0') {
      http.Add(202, {});
      http.Add(201, {});
      ASSERT_OK(c.UploadBlob(d, WriteBlob("ab"), "", nullptr));
      ASSERT_EQ(http.requests.size(), 4u);
      EXPECT_EQ(http.requests[2].url, row.followed);
      EXPECT_EQ(HeaderOf(http.requests[2], "Authorization"), "Basic " + absl::Base64Escape("u:p"));
      continue;
    }
    EXPECT_THAT(c.UploadBlob(d, WriteBlob("ab"), "", nullptr),
                StatusIs(absl::StatusCode::kInternal,
                         AllOf(HasSubstr(row.why), HasSubstr("refusing to follow it"))));
    EXPECT_EQ(http.requests.size(), 2u) << http.requests.back().url;  // POST (401), POST
  }
}

TEST_F(RegistryClientTest, PatchStatusMountAndLinkLocationsAreChecked) {
  opts_.chunk_bytes = 1;
  opts_.credentials = Credentials{"u", "p"};
  Descriptor d{"t", Sha256Digest("ab"), 2, {}};
  {  // the Location of a PATCH reply
    FakeTransport http;
    RegistryClient c(ref_, opts_, &http);
    http.Add(202, {{"location", "/up?s=1"}});
    http.Add(202, {{"location", "http://127.0.0.1:6000/up?s=2"}});
    EXPECT_THAT(c.UploadBlob(d, WriteBlob("ab"), "", nullptr),
                StatusIs(absl::StatusCode::kInternal, HasSubstr("another origin")));
    EXPECT_EQ(http.requests.size(), 2u);
  }
  {  // the Location of an upload-status reply (resume)
    FakeTransport http;
    RegistryClient c(ref_, opts_, &http);
    http.Add(202, {{"location", "/up?s=1"}});
    http.AddError(absl::UnavailableError("reset"));
    http.Add(204, {{"range", "0-0"}, {"location", "http://evil.example:5000/up"}});
    EXPECT_THAT(c.UploadBlob(d, WriteBlob("ab"), "", nullptr),
                StatusIs(absl::StatusCode::kInternal, HasSubstr("another origin")));
    EXPECT_EQ(http.requests.size(), 3u);
  }
  {  // the upload session a declined mount opens
    FakeTransport http;
    RegistryClient c(ref_, opts_, &http);
    std::string url;
    http.Add(202, {{"location", "http://127.0.0.1:5000.evil.example/up"}});
    EXPECT_THAT(c.MountBlob(d.digest, "kiln/other", &url),
                StatusIs(absl::StatusCode::kInternal, HasSubstr("refusing to follow it")));
    http.Add(202, {{"location", "http://reg.evil.example:5000/up"}});
    EXPECT_THAT(c.MountBlob(d.digest, "kiln/other", &url),
                StatusIs(absl::StatusCode::kInternal, HasSubstr("another origin")));
    EXPECT_TRUE(url.empty());
  }
  {  // the next tag page
    FakeTransport http;
    RegistryClient c(ref_, opts_, &http);
    http.Add(200, {{"link", "<http://127.0.0.1:5999/v2/kiln/builder/tags/list?last=b>; rel=\"next\""}},
             R"({"tags":["a","b"]})");
    EXPECT_THAT(c.ListTags(), StatusIs(absl::StatusCode::kInternal,
                                       AllOf(HasSubstr("Link"), HasSubstr("another origin"))));
    EXPECT_EQ(http.requests.size(), 1u);
  }
}

TEST_F(RegistryClientTest, RedirectsAreNotFollowed) {
  opts_.credentials = Credentials{"u", "p"};
  FakeTransport http;
  RegistryClient c(ref_, opts_, &http);
  http.Add(307, {{"location", "http://127.0.0.1:7000/blob"}});
  EXPECT_THAT(c.HasBlob(Sha256Digest("x")),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("another origin")));
  http.Add(308, {{"location", "/v2/elsewhere"}});
  EXPECT_THAT(c.HasBlob(Sha256Digest("x")),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("does not follow redirects")));
  EXPECT_EQ(http.requests.size(), 2u);
}

TEST_F(RegistryClientTest, RequestsToAnotherOriginAreNeverSent) {
  FakeTransport http;
  RegistryClient c(ref_, opts_, &http);
  Descriptor d{"t", Sha256Digest("ab"), 2, {}};
  // A caller-supplied upload URL (e.g. a stale one) on another origin.
  EXPECT_THAT(c.UploadBlob(d, WriteBlob("ab"), "http://127.0.0.1:5001/up", nullptr),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("not the registry's origin")));
  EXPECT_TRUE(http.requests.empty());
}

TEST_F(RegistryClientTest, TokenRealmIsCheckedBeforeCredentialsAreSent) {
  opts_.credentials = Credentials{"u", "p"};
  struct Row {
    bool tls;
    const char* realm;
    const char* why;  // "" = used
  };
  constexpr Row kRows[] = {
      {true, "http://auth.example/token", "refusing to send credentials or take a token over plain HTTP"},
      {true, "HTTP://127.0.0.1:5000/token", "over plain HTTP"},
      {true, "/token", "not an absolute URL"},
      {true, "https://u:p@auth.example/token", "userinfo"},
      {true, "file:///etc/token", "not http or https"},
      {false, "http://auth.example/token", ""},  // a plain-http registry may have a plain realm
      {true, "https://auth.example/token", ""},  // another host, named by the registry: fine
  };
  for (const Row& row : kRows) {
    SCOPED_TRACE(row.realm);
    opts_.use_tls = row.tls;
    FakeTransport http;
    RegistryClient c(ref_, opts_, &http);
    http.Add(401, {{"www-authenticate", absl::StrCat("Bearer realm=\"", row.realm, "\"")}});
    if (row.why[0] == '\0') {
      http.Add(200, {}, R"({"token":"T"})");
      http.Add(200);
      ASSERT_OK(c.Ping());
      ASSERT_EQ(http.requests.size(), 3u);
      EXPECT_EQ(HeaderOf(http.requests[1], "Authorization"), "Basic " + absl::Base64Escape("u:p"));
      EXPECT_EQ(http.requests[1].max_response_bytes, kMaxTokenResponseBytes);
      continue;
    }
    EXPECT_THAT(c.Ping(), StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr(row.why)));
    EXPECT_EQ(http.requests.size(), 1u);  // only the challenged request: no token call
  }
  // A token endpoint that redirects is not followed.
  opts_.use_tls = true;
  FakeTransport http;
  RegistryClient c(ref_, opts_, &http);
  http.Add(401, {{"www-authenticate", "Bearer realm=\"https://auth.example/token\""}});
  http.Add(302, {{"location", "http://evil.example/token"}});
  EXPECT_THAT(c.Ping(), StatusIs(absl::StatusCode::kUnauthenticated,
                                 HasSubstr("does not follow redirects")));
  EXPECT_EQ(http.requests.size(), 2u);
}

TEST_F(RegistryClientTest, ResponseCapsPerRequestKind) {
  FakeTransport http;
  RegistryClient c(ref_, opts_, &http);
  http.Add(200, {}, "{}");
  ASSERT_OK(c.GetManifest("1.0.0").status());
  EXPECT_EQ(http.requests.back().max_response_bytes, kMaxManifestBytes);
  http.Add(200, {}, R"({"tags":[]})");
  ASSERT_OK(c.ListTags().status());
  EXPECT_EQ(http.requests.back().max_response_bytes, kMaxTagListBytes);
  http.Add(404);
  ASSERT_OK(c.HasBlob(Sha256Digest("x")).status());
  EXPECT_EQ(http.requests.back().max_response_bytes, kDefaultMaxResponseBytes);
  EXPECT_EQ(kMaxManifestBytes, 4 << 20);

  // An oversized reply is not retried, and a PATCH that got one does not resume.
  http.AddError(absl::ResourceExhaustedError("response body exceeds"));
  EXPECT_THAT(c.GetManifest("1.0.0"), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("exceeds")));
  Descriptor d{"t", Sha256Digest("ab"), 2, {}};
  http.Add(202, {{"location", "/up"}});
  http.AddError(absl::ResourceExhaustedError("response body exceeds"));
  const size_t before = http.requests.size();
  EXPECT_THAT(c.UploadBlob(d, WriteBlob("ab"), "", nullptr),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("exceeds")));
  EXPECT_EQ(http.requests.size(), before + 2);
  EXPECT_TRUE(http.Done());
  // A stall is not retried either (DeadlineExceeded), so a stalled registry fails fast.
  http.AddError(absl::DeadlineExceededError("stall timeout"));
  EXPECT_THAT(c.HasBlob(Sha256Digest("x")), StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("stall")));
  EXPECT_TRUE(http.Done());
}

// The OCI distribution-spec tag grammar: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
TEST(ValidateTagTest, DistributionSpecGrammar) {
  for (const std::string& good :
       {std::string("1.2.3"), std::string("latest"), std::string("_x"), std::string("1.0.0_b.5"),
        std::string("A-b.c_D"), std::string(128, 'a')}) {
    SCOPED_TRACE(good);
    EXPECT_OK(ValidateTag(good));
  }
  struct Row {
    std::string tag;
    const char* why;
  };
  const Row kRows[] = {
      {"", "empty"},
      {"1.0.0+build.5", "character \"+\" at position 5 is not allowed"},
      {".x", "first character \".\" at position 0"},
      {"-x", "first character \"-\" at position 0"},
      {"a/b", "character \"/\" at position 1"},
      {"a:b", "character \":\""},
      {"a b", "character \" \""},
      {std::string("a\nb"), "character \"\\n\""},
      {std::string(129, 'a'), "129 characters, at most 128"},
  };
  for (const Row& r : kRows) {
    SCOPED_TRACE(r.tag);
    EXPECT_THAT(ValidateTag(r.tag),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         ::testing::AllOf(HasSubstr(r.why), HasSubstr("not a valid tag"),
                                          HasSubstr("[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"))));
  }
}

// A manifest PUT to a reference outside the tag grammar sends nothing.
TEST_F(RegistryClientTest, PutManifestRefusesAnInvalidTagWithoutSending) {
  RegistryClient c(ref_, opts_, &http_);
  EXPECT_THAT(c.PutManifest("1.0.0+build.5", "{}", oci::kMediaTypeImageManifest),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a valid tag")));
  EXPECT_TRUE(http_.requests.empty());
}

// GetBlob refuses a blob whose bytes do not hash to its digest (a tampered registry).
TEST_F(RegistryClientTest, GetBlobVerifiesTheDigest) {
  RegistryClient c(ref_, opts_, &http_);
  const std::string blob = "layer bytes";
  Descriptor d{std::string(oci::kMediaTypeLayerTarGzip), Sha256Digest(blob),
               static_cast<int64_t>(blob.size()), {}};
  http_.Add(200, {}, blob);
  ASSERT_OK_AND_ASSIGN(std::string got, c.GetBlob(d));
  EXPECT_EQ(got, blob);
  EXPECT_EQ(http_.requests.back().url,
            "http://127.0.0.1:5000/v2/kiln/builder/blobs/" + d.digest);
  EXPECT_EQ(http_.requests.back().max_response_bytes, d.size);
  http_.Add(200, {}, "layer bytez");  // same size, other bytes
  EXPECT_THAT(c.GetBlob(d), StatusIs(absl::StatusCode::kDataLoss,
                                     HasSubstr("not the blob " + d.digest)));
  http_.Add(200, {}, "layer");  // short
  EXPECT_THAT(c.GetBlob(d), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("refused")));
  d.size = kMaxPullBlobBytes + 1;
  const size_t sent = http_.requests.size();
  EXPECT_THAT(c.GetBlob(d), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most")));
  EXPECT_EQ(http_.requests.size(), sent);
}

TEST(ImageRefTest, ParsesDigestAndTagReferences) {
  const std::string hex(64, 'a');
  ASSERT_OK_AND_ASSIGN(ImageRef r, ImageRef::Parse("127.0.0.1:5000/kiln/builder@sha256:" + hex));
  EXPECT_TRUE(r.by_digest);
  EXPECT_EQ(r.repository.ToString(), "127.0.0.1:5000/kiln/builder");
  EXPECT_EQ(r.reference, "sha256:" + hex);
  ASSERT_OK_AND_ASSIGN(r, ImageRef::Parse("127.0.0.1:5000/kiln/builder:1.2.3_b"));
  EXPECT_FALSE(r.by_digest);
  EXPECT_EQ(r.repository.host, "127.0.0.1:5000");
  EXPECT_EQ(r.reference, "1.2.3_b");
  EXPECT_EQ(r.ToString(), "127.0.0.1:5000/kiln/builder:1.2.3_b");
  for (const char* bad : {"127.0.0.1:5000/kiln/builder", "127.0.0.1:5000/kiln/builder@sha256:ab",
                          "127.0.0.1:5000/kiln/builder:1.2.3+b", "reg/Kiln:1"}) {
    SCOPED_TRACE(bad);
    EXPECT_THAT(ImageRef::Parse(bad), StatusIs(absl::StatusCode::kInvalidArgument,
                                               HasSubstr("invalid")));
  }
}

// PullImage writes an OCI layout whose every blob was verified; a tampered layer or a
// manifest that is not the digest asked for is refused and nothing of it is written.
TEST_F(RegistryClientTest, PullImageVerifiesEveryDigest) {
  const std::string config = "{}", layer = "layer-bytes";
  oci::Manifest m;
  m.config = {std::string(oci::kMediaTypeImageConfig), Sha256Digest(config), 2, {}};
  m.layers = {{std::string(oci::kMediaTypeLayerTarGzip), Sha256Digest(layer), 11, {}}};
  const std::string manifest = oci::ManifestJson(m);
  const std::string digest = Sha256Digest(manifest);
  const std::string dir = std::string(std::getenv("TEST_TMPDIR")) + "/pulled";
  std::filesystem::remove_all(dir);
  RegistryClient c(ref_, opts_, &http_);

  http_.Add(200, {}, manifest);
  http_.Add(200, {}, config);
  http_.Add(200, {}, layer);
  ASSERT_OK_AND_ASSIGN(std::string got, PullImage(&c, digest, dir));
  EXPECT_EQ(got, digest);
  ASSERT_OK_AND_ASSIGN(oci::LayoutImage img, oci::ReadImageLayout(dir));
  EXPECT_EQ(img.manifest_digest, digest);
  EXPECT_EQ(img.layers.size(), 1u);

  std::filesystem::remove_all(dir);
  http_.Add(200, {}, manifest);
  http_.Add(200, {}, config);
  http_.Add(200, {}, "layer-bytez");  // tampered
  EXPECT_THAT(PullImage(&c, digest, dir),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr(m.layers[0].digest)));
  EXPECT_FALSE(std::filesystem::exists(oci::BlobPath(dir, m.layers[0].digest)));

  http_.Add(200, {}, manifest + " ");
  EXPECT_THAT(PullImage(&c, digest, dir),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("manifest hashing to")));
}

TEST(RegistryRefTest, ParseAndLoopback) {
  struct Row {
    const char* text;
    bool ok;
    bool loopback;
  };
  constexpr Row kRows[] = {
      {"127.0.0.1:5000/kiln/builder", true, true},
      {"127.1.2.3/x", true, true},
      {"localhost:5000/x", true, true},
      {"LOCALHOST/x", true, true},
      {"[::1]:5000/x", true, true},
      {"128.0.0.1:5000/x", true, false},
      {"127.0.0.1.example.com/x", true, false},
      {"registry.example.com/kiln/builder", true, false},
      {"http://127.0.0.1:5000/x", false, false},
      {"127.0.0.1:5000", false, false},
      {"127.0.0.1:5000/", false, false},
      {"127.0.0.1:5000/x:1.0", false, false},
      {"127.0.0.1:5000/Kiln", false, false},
      {"127.0.0.1:5000/a//b", false, false},
  };
  for (const Row& r : kRows) {
    SCOPED_TRACE(r.text);
    absl::StatusOr<RegistryRef> ref = RegistryRef::Parse(r.text);
    EXPECT_EQ(ref.ok(), r.ok) << ref.status();
    if (ref.ok()) EXPECT_EQ(ref->IsLoopback(), r.loopback);
    if (!ref.ok())
      EXPECT_THAT(ref, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--registry")));
  }
}

TEST(DockerConfigTest, FindsAuthByHost) {
  std::string cfg = R"({"auths":{"https://reg:5000":{"auth":")" + absl::Base64Escape("u:p:x") +
                    R"("},"other":{"username":"a","password":"b"}}})";
  ASSERT_OK_AND_ASSIGN(auto c, CredentialsFromDockerConfig(cfg, "reg:5000"));
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->username, "u");
  EXPECT_EQ(c->password, "p:x");
  ASSERT_OK_AND_ASSIGN(c, CredentialsFromDockerConfig(cfg, "other"));
  EXPECT_EQ(c->username, "a");
  ASSERT_OK_AND_ASSIGN(c, CredentialsFromDockerConfig(cfg, "missing"));
  EXPECT_FALSE(c.has_value());
  EXPECT_THAT(CredentialsFromDockerConfig("nope", "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a JSON object")));
  EXPECT_THAT(CredentialsFromDockerConfig(R"({"auths":{"x":{"auth":"!!"}}})", "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not base64")));
}

TEST(ChallengeTest, Parses) {
  Challenge c = ParseChallenge(
      R"(Bearer realm="https://a/token",service="registry.docker.io",scope="repository:x:pull,push")");
  EXPECT_EQ(c.scheme, "bearer");
  EXPECT_THAT(c.params, Contains(Pair("realm", "https://a/token")));
  EXPECT_THAT(c.params, Contains(Pair("service", "registry.docker.io")));
  EXPECT_THAT(c.params, Contains(Pair("scope", "repository:x:pull,push")));
  EXPECT_EQ(ParseChallenge("Basic realm=\"x\"").scheme, "basic");
}

}  // namespace
}  // namespace kiln::publish
