#include "publish/origin.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::publish {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

// RFC 3986 section 5.4: every normal and abnormal example, against its base.
TEST(ResolveReferenceTest, Rfc3986Examples) {
  constexpr const char* kBase = "http://a/b/c/d;p?q";
  struct Row {
    const char* ref;
    const char* want;
  };
  constexpr Row kRows[] = {
      // 5.4.1 normal
      {"g:h", "g:h"},
      {"g", "http://a/b/c/g"},
      {"./g", "http://a/b/c/g"},
      {"g/", "http://a/b/c/g/"},
      {"/g", "http://a/g"},
      {"//g", "http://g"},
      {"?y", "http://a/b/c/d;p?y"},
      {"g?y", "http://a/b/c/g?y"},
      {"#s", "http://a/b/c/d;p?q#s"},
      {"g#s", "http://a/b/c/g#s"},
      {"g?y#s", "http://a/b/c/g?y#s"},
      {";x", "http://a/b/c/;x"},
      {"g;x", "http://a/b/c/g;x"},
      {"g;x?y#s", "http://a/b/c/g;x?y#s"},
      {"", "http://a/b/c/d;p?q"},
      {".", "http://a/b/c/"},
      {"./", "http://a/b/c/"},
      {"..", "http://a/b/"},
      {"../", "http://a/b/"},
      {"../g", "http://a/b/g"},
      {"../..", "http://a/"},
      {"../../", "http://a/"},
      {"../../g", "http://a/g"},
      // 5.4.2 abnormal
      {"../../../g", "http://a/g"},
      {"../../../../g", "http://a/g"},
      {"/./g", "http://a/g"},
      {"/../g", "http://a/g"},
      {"g.", "http://a/b/c/g."},
      {".g", "http://a/b/c/.g"},
      {"g..", "http://a/b/c/g.."},
      {"..g", "http://a/b/c/..g"},
      {"./../g", "http://a/b/g"},
      {"./g/.", "http://a/b/c/g/"},
      {"g/./h", "http://a/b/c/g/h"},
      {"g/../h", "http://a/b/c/h"},
      {"g;x=1/./y", "http://a/b/c/g;x=1/y"},
      {"g;x=1/../y", "http://a/b/c/y"},
      {"g?y/./x", "http://a/b/c/g?y/./x"},
      {"g?y/../x", "http://a/b/c/g?y/../x"},
      {"g#s/./x", "http://a/b/c/g#s/./x"},
      {"g#s/../x", "http://a/b/c/g#s/../x"},
      {"http:g", "http:g"},  // strict parser
  };
  for (const Row& r : kRows) {
    SCOPED_TRACE(r.ref);
    ASSERT_OK_AND_ASSIGN(std::string got, ResolveReference(kBase, r.ref));
    EXPECT_EQ(got, r.want);
  }
}

TEST(ResolveReferenceTest, RegistryLocations) {
  const std::string req = "https://reg.example:5000/v2/kiln/builder/blobs/uploads/";
  struct Row {
    const char* ref;
    const char* want;
  };
  constexpr Row kRows[] = {
      {"/v2/kiln/builder/blobs/uploads/u1?_state=a",
       "https://reg.example:5000/v2/kiln/builder/blobs/uploads/u1?_state=a"},
      {"u1?_state=a", "https://reg.example:5000/v2/kiln/builder/blobs/uploads/u1?_state=a"},
      {"../tags/list?last=b", "https://reg.example:5000/v2/kiln/builder/blobs/tags/list?last=b"},
      {"//evil.example/steal", "https://evil.example/steal"},
      {"http://reg.example:5000/x", "http://reg.example:5000/x"},
  };
  for (const Row& r : kRows) {
    SCOPED_TRACE(r.ref);
    ASSERT_OK_AND_ASSIGN(std::string got, ResolveReference(req, r.ref));
    EXPECT_EQ(got, r.want);
  }
  // The base of an authority-only URL gets a "/" before a relative path (5.2.3).
  ASSERT_OK_AND_ASSIGN(std::string got, ResolveReference("http://h:1", "x"));
  EXPECT_EQ(got, "http://h:1/x");
  EXPECT_THAT(ResolveReference("/relative/base", "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not absolute")));
  EXPECT_THAT(ResolveReference(req, "/a b"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("whitespace")));
  EXPECT_THAT(ResolveReference(req, "/a\r\nSet-Cookie: x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("control character")));
}

TEST(OriginTest, SameAndDifferentOrigins) {
  const Origin https_reg{"https", "reg.example", 443};
  const Origin http_loop{"http", "127.0.0.1", 5000};
  const Origin v6{"http", "[::1]", 5000};
  struct Row {
    const char* url;
    const Origin* want;  // the origin it must equal
    bool same;
  };
  const Row kRows[] = {
      {"https://reg.example/v2/", &https_reg, true},
      {"https://reg.example:443/v2/", &https_reg, true},    // explicit default port
      {"https://reg.example:/v2/", &https_reg, true},       // empty port = default (RFC 3986 6.2.3)
      {"HTTPS://REG.Example/v2/", &https_reg, true},        // scheme and host case
      {"https://reg.example:8443/v2/", &https_reg, false},  // another port
      {"http://reg.example/v2/", &https_reg, false},        // downgrade
      {"http://reg.example:443/v2/", &https_reg, false},    // downgrade, same port number
      {"https://reg.example.evil/v2/", &https_reg, false},
      {"https://reg.example./v2/", &https_reg, false},      // trailing dot: not equal, refused
      {"http://127.0.0.1:5000/v2/x", &http_loop, true},
      {"http://127.0.0.1:5001/v2/x", &http_loop, false},
      {"http://127.0.0.1/v2/x", &http_loop, false},         // default 80 != 5000
      {"http://localhost:5000/v2/x", &http_loop, false},    // names are not resolved
      {"http://[::1]:5000/v2/", &v6, true},
      {"http://[0:0:0:0:0:0:0:1]:5000/v2/", &v6, false},  // not canonicalized: refused
      {"http://[::1]/v2/", &v6, false},
  };
  for (const Row& r : kRows) {
    SCOPED_TRACE(r.url);
    ASSERT_OK_AND_ASSIGN(Origin o, OriginOf(r.url));
    EXPECT_EQ(o == *r.want, r.same) << o.ToString();
  }
  ASSERT_OK_AND_ASSIGN(Origin o, OriginOf("http://[::1]"));
  EXPECT_EQ(o.ToString(), "http://[::1]:80");
}

TEST(OriginTest, RefusesWhatCannotBeAnOrigin) {
  struct Row {
    const char* url;
    const char* why;
  };
  constexpr Row kRows[] = {
      {"/v2/x", "not an absolute URL"},
      {"//reg.example/v2/", "not an absolute URL"},
      {"ftp://reg.example/x", "not http or https"},
      {"file:///etc/passwd", "not http or https"},
      {"https:///x", "no host"},
      {"https://:443/x", "no host"},
      {"https://user:pass@reg.example/x", "userinfo"},
      {"https://reg.example:443@evil.example/x", "userinfo"},
      {"https://@reg.example/x", "userinfo"},
      {"https://reg.example:0/x", "out of range"},
      {"https://reg.example:65536/x", "out of range"},
      {"https://reg.example:99999999999/x", "out of range"},
      {"https://reg.example:+443/x", "not a number"},
      {"https://reg.example:44a/x", "not a number"},
      {"https://[::1/x", "unterminated"},
      {"https://[::1]x/x", "junk after"},
      {"https://[]/x", "empty IPv6"},
      {"https://reg.exa mple/x", "whitespace"},
      {"https://reg\\example/x", "bad character"},
  };
  for (const Row& r : kRows) {
    SCOPED_TRACE(r.url);
    EXPECT_THAT(OriginOf(r.url), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(r.why)));
  }
}

}  // namespace
}  // namespace kiln::publish
