// publish_vm_test: `bazel run //publish` end to end against a real loopback registry, with the
// verification gate booting a real builder VM: publish_bin pushes //images:builder to Debian's
// docker-registry on 127.0.0.1 (free port, temp storage) by digest, pulls that digest back,
// runs //publish:builder_verifier (//harness:verify) on the pulled image, and only then tags it.
//
// To keep this test at one builder VM (TCG: ~1 min), the gate runs a reduced builder suite:
// --verify-arg=--builder_groups=builder-reference (the reference build: FROM, RUN, RUN reading
// a secret, the leak scan), on the disk made from the pulled image. `bazel run //publish`
// gates on the whole builder suite.
//
// Flags (set by the BUILD target): --layout --publish_bin --verifier [--accel].
// SKIPPED (visibly) when docker-registry is not installed.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/file/file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "agent/process/process.h"
#include "harness/vmm/vm_test_support.h"
#include "publish/http.h"
#include "publish/registry.h"
#include "third_party/absl_ext/status_matchers.h"

ABSL_FLAG(std::string, layout, "", "the builder OCI image layout (//images:builder)");
ABSL_FLAG(std::string, publish_bin, "", "//publish:publish_bin");
ABSL_FLAG(std::string, verifier, "", "//publish:builder_verifier");
ABSL_FLAG(std::string, accel, "auto", "QEMU accel for the verifier: auto, kvm or tcg");

namespace kiln::publish {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    return -1;
  }
  close(fd);
  return ntohs(a.sin_port);
}

bool CanConnect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

std::string Abs(const std::string& p) { return fs::absolute(p).string(); }

TEST(PublishVmTest, PublishPullsBackBootsTheBuilderSuiteThenTags) {
  if (system("command -v docker-registry >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "docker-registry is not installed (tools/setup installs it)";
  }
  const std::string tmp = harness::TestTmpRoot() + "/publish-vm";
  fs::remove_all(tmp);
  fs::create_directories(tmp + "/registry");
  const int port = FreePort();
  ASSERT_GT(port, 0);
  ASSERT_OK(file::WriteFileAtomically(
      tmp + "/registry/config.yml",
      absl::StrCat("version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: ",
                   tmp, "/registry/data}}\nhttp: {addr: 127.0.0.1:", port, "}\n")));
  absl::StatusOr<process::Process> registry = process::Process::Spawn(
      {.argv = {"docker-registry", "serve", tmp + "/registry/config.yml"},
       .out = process::Stdio::File(tmp + "/registry/log"),
       .err = process::Stdio::SameAsStdout(),
       .destroy_grace = absl::Seconds(5)});
  ASSERT_OK(registry.status());
  const absl::Time up_by = absl::Now() + absl::Seconds(20);
  while (!CanConnect(port) && absl::Now() < up_by) absl::SleepFor(absl::Milliseconds(50));
  ASSERT_TRUE(CanConnect(port)) << file::ReadFileOrEmpty(tmp + "/registry/log");

  const std::string repo = absl::StrCat("127.0.0.1:", port, "/kiln/builder");
  const std::string out = tmp + "/publish.out";
  const absl::Time start = absl::Now();
  absl::StatusOr<process::Process> publish = process::Process::Spawn(
      {.argv = {Abs(absl::GetFlag(FLAGS_publish_bin)), "--layout", Abs(absl::GetFlag(FLAGS_layout)),
                "--version", "1.0.0", "--registry", repo, "--json", "--lock", tmp + "/lock.json",
                "--source-commit", "0123abcd", "--package-lock", tmp + "/registry/config.yml",
                "--verifier", Abs(absl::GetFlag(FLAGS_verifier)),
                "--verify-arg=--builder_groups=builder-reference",
                absl::StrCat("--verify-arg=--accel=", absl::GetFlag(FLAGS_accel)),
                "--verify-dir", tmp + "/verify", "--verify-timeout-s", "1200"},
       .out = process::Stdio::File(out),
       .err = process::Stdio::SameAsStdout(),
       .destroy_grace = absl::Seconds(10)});
  ASSERT_OK(publish.status());
  absl::StatusOr<process::ProcessExit> exit = publish->Wait(absl::Now() + absl::Seconds(1500));
  if (!exit.ok()) publish->Kill(absl::Seconds(10));
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const std::string text = file::ReadFileOrEmpty(out);
  const std::string report = file::ReadFileOrEmpty(tmp + "/verify/verify.log");
  ASSERT_OK(exit.status()) << text;
  ASSERT_EQ(exit->exit_code, 0) << text << "\n--- verify.log ---\n" << report;

  // The JSON line (stdout shares the file with stderr's progress lines).
  nlohmann::json j;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, "{")) j = nlohmann::json::parse(line, nullptr, false);
  }
  ASSERT_TRUE(j.is_object()) << text;
  EXPECT_EQ(j.value("ok", false), true);
  EXPECT_EQ(j.value("verification", ""), "passed");
  const std::string digest = j.value("digest", "");
  ASSERT_TRUE(absl::StartsWith(digest, "sha256:")) << text;
  std::cerr << "publish_vm_test: published " << repo << "@" << digest << " in " << seconds
            << " s, of which verification " << j.value("verify_seconds", 0.0) << " s\n";

  // The order: pulled back and verified before the tag (publish's own lines say so).
  const size_t verifying = text.find("publish: verifying " + repo + "@" + digest);
  const size_t passed = text.find("publish: verification passed");
  ASSERT_NE(verifying, std::string::npos) << text;
  ASSERT_NE(passed, std::string::npos) << text;
  EXPECT_LT(verifying, passed);
  // The verifier booted the image it was given (the pulled-back layout), by that digest.
  EXPECT_THAT(report, HasSubstr("builder image " + digest));
  EXPECT_THAT(report, HasSubstr(absl::StrCat("from ", tmp, "/verify/image")));
  EXPECT_THAT(report, HasSubstr("PASS secret-default"));
  EXPECT_THAT(report, HasSubstr("PASS leak-scan"));
  EXPECT_THAT(report, HasSubstr(" passed, 0 failed"));

  // The registry's tag names the verified digest.
  CurlTransport http(TransportOptions{});
  RegistryOptions ro;
  ro.use_tls = false;
  RegistryClient client(*RegistryRef::Parse(repo), ro, &http);
  absl::StatusOr<std::optional<std::string>> tag = client.ResolveTag("1.0.0");
  ASSERT_OK(tag.status());
  ASSERT_TRUE(tag->has_value());
  EXPECT_EQ(**tag, digest);
  registry->Kill(absl::Seconds(5));
}

}  // namespace
}  // namespace kiln::publish

int main(int argc, char** argv) { return kiln::harness::VmTestMain(argc, argv); }
