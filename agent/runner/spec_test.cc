#include "agent/runner/spec.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::agent::runner {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

BuildSpec GoodSpec() {
  BuildSpec spec;
  spec.context_dir = "/tmp/ctx";
  spec.work_dir = "/tmp/work";
  spec.secrets["tok"] = "value";
  return spec;
}

TEST(SecretIdTest, Table) {
  struct Row {
    const char* id;
    bool ok;
  };
  const Row rows[] = {
      {"a", true},          {"npm_token", true},   {"A.b-c_9", true},
      {"9lives", true},     {"", false},           {"_x", false},
      {".x", false},        {"-x", false},         {"a/b", false},
      {"a b", false},       {"a$X", false},        {"a=b", false},
      {"\xc3\xa9t\xc3\xa9", false},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.id);
    if (r.ok) {
      EXPECT_THAT(ValidateSecretId(r.id), IsOk());
    } else {
      EXPECT_THAT(ValidateSecretId(r.id), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
    }
  }
  EXPECT_THAT(ValidateSecretId(std::string(128, 'a')), IsOk());
  EXPECT_THAT(ValidateSecretId(std::string(129, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(SecretsTest, SizeBounds) {
  std::map<std::string, std::string> s;
  EXPECT_EQ(kMaxSecretBytes, 512000);  // BuildKit's limit: a 256 KiB CA bundle fits
  s["one"] = std::string(kMaxSecretBytes, 'x');
  EXPECT_THAT(ValidateSecrets(s), IsOk());
  s["one"].push_back('y');
  absl::Status st = ValidateSecrets(s);
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("\"one\"")));
  EXPECT_THAT(std::string(st.message()), Not(HasSubstr("xxxx")));  // never echoes the value
  s.clear();
  for (int i = 0; i < 9; ++i) s["s" + std::to_string(i)] = std::string(kMaxSecretBytes, 'x');
  EXPECT_THAT(ValidateSecrets(s), StatusIs(absl::StatusCode::kResourceExhausted,
                                           HasSubstr("total")));
  s.clear();
  s["empty"] = "";
  EXPECT_THAT(ValidateSecrets(s), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("empty")));
  s.clear();
  for (int i = 0; i <= kMaxSecrets; ++i) s["s" + std::to_string(i)] = "v";
  EXPECT_THAT(ValidateSecrets(s), StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
}

TEST(RelativePathTest, Table) {
  EXPECT_THAT(ValidateRelativePath("p", "Dockerfile"), IsOk());
  EXPECT_THAT(ValidateRelativePath("p", "sub/Dockerfile.prod"), IsOk());
  for (const char* bad : {"", "/Dockerfile", "../Dockerfile", "a/../b", "./Dockerfile", "a//b",
                          "a/"}) {
    SCOPED_TRACE(bad);
    EXPECT_THAT(ValidateRelativePath("p", bad), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  }
}

TEST(ImageTagTest, Table) {
  for (const char* ok : {"kiln-build:latest", "a", "a/b/c:v1.2", "localhost:5000/x/y:t",
                         "registry.example.com/team/app", "x__y:_t"}) {
    SCOPED_TRACE(ok);
    EXPECT_THAT(ValidateImageTag(ok), IsOk());
  }
  for (const char* bad : {"", "UPPER", "a@sha256:00", "a:", "a:-x", "-a", "a/", "a b", "a/B",
                          "a..:1/"}) {
    SCOPED_TRACE(bad);
    EXPECT_THAT(ValidateImageTag(bad), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  }
}

TEST(SpecTest, GoodSpecPasses) { EXPECT_THAT(ValidateSpec(GoodSpec()), IsOk()); }

TEST(SpecTest, RejectsBadFields) {
  struct Row {
    const char* name;
    void (*mutate)(BuildSpec*);
    const char* want;
  };
  const Row rows[] = {
      {"both contexts", [](BuildSpec* s) { s->context_tar = "/x.tar"; }, "exactly one"},
      {"no context", [](BuildSpec* s) { s->context_dir.clear(); }, "exactly one"},
      {"relative context", [](BuildSpec* s) { s->context_dir = "ctx"; }, "not absolute"},
      {"dockerfile ..", [](BuildSpec* s) { s->dockerfile = "../Dockerfile"; }, "dockerfile"},
      {"build arg key", [](BuildSpec* s) { s->build_args.push_back({"1X", "v"}); }, "build arg"},
      {"build arg NUL",
       [](BuildSpec* s) { s->build_args.push_back({"X", std::string("a\0b", 3)}); }, "NUL"},
      {"target", [](BuildSpec* s) { s->target = "a b"; }, "target"},
      {"tag", [](BuildSpec* s) { s->tag = "Bad"; }, "image tag"},
      {"secret id", [](BuildSpec* s) { s->secrets["../x"] = "v"; }, "secret id"},
      {"deadline", [](BuildSpec* s) { s->deadline_ms = 0; }, "deadline"},
      {"work dir", [](BuildSpec* s) { s->work_dir = "rel"; }, "work_dir"},
      {"preload", [](BuildSpec* s) { s->preload_images.push_back("img.tar"); }, "preload"},
      {"tool path", [](BuildSpec* s) { s->tools.docker = "docker"; }, "PATH"},
      {"buildx path", [](BuildSpec* s) { s->tools.buildx = "docker-buildx"; }, "PATH"},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    BuildSpec spec = GoodSpec();
    r.mutate(&spec);
    absl::Status st = ValidateSpec(spec);
    EXPECT_FALSE(st.ok());
    EXPECT_THAT(std::string(st.message()), HasSubstr(r.want));
  }
}

TEST(SpecTest, BuilderMode) {
  BuilderMode m = BuilderMode::kRootful;
  EXPECT_TRUE(ParseBuilderMode("rootless", &m));
  EXPECT_EQ(m, BuilderMode::kRootless);
  EXPECT_EQ(BuilderModeName(m), "rootless");
  EXPECT_TRUE(ParseBuilderMode("rootful", &m));
  EXPECT_EQ(m, BuilderMode::kRootful);
  EXPECT_EQ(BuilderModeName(m), "rootful");
  for (const char* bad : {"", "Rootless", "root", "rootless ", "rootful=1"}) {
    EXPECT_FALSE(ParseBuilderMode(bad, &m)) << bad;
    EXPECT_EQ(m, BuilderMode::kRootful) << bad;
  }
  EXPECT_EQ(BuildSpec{}.mode, BuilderMode::kRootful);
}

}  // namespace
}  // namespace kiln::agent::runner
