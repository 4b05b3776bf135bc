#include "agent/runner/daemon_plan.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::agent::runner {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(DaemonPlanTest, LayoutAndContainerdConfig) {
  RunLayout l = MakeRunLayout("/w", "/w/run");
  EXPECT_EQ(l.docker_socket, "/w/run/docker.sock");
  EXPECT_EQ(l.docker_data_root, "/w/docker");
  std::string toml = ContainerdConfigToml(l);
  EXPECT_THAT(toml, HasSubstr("address = \"/w/run/containerd.sock\""));
  EXPECT_THAT(toml, HasSubstr("address = \"/w/run/containerd.sock.ttrpc\""));
  EXPECT_THAT(toml, HasSubstr("root = \"/w/containerd/root\""));
  EXPECT_THAT(toml, HasSubstr("disabled_plugins = [\"io.containerd.grpc.v1.cri\"]"));
  EXPECT_THAT(ContainerdArgv(ToolPaths{}, l),
              ElementsAre("/usr/bin/containerd", "--config", "/w/run/containerd.toml"));
}

TEST(DaemonPlanTest, DockerdArgv) {
  RunLayout l = MakeRunLayout("/w", "/w/run");
  std::vector<std::string> argv = DockerdArgv(ToolPaths{}, l);
  EXPECT_EQ(argv[0], "/usr/sbin/dockerd");
  for (const char* want :
       {"--containerd=/w/run/containerd.sock", "--iptables=false", "--ip-forward=false",
        "--ip-masq=false", "--bridge=none", "--data-root=/w/docker",
        "--exec-root=/w/run/docker-exec", "--pidfile=/w/run/docker.pid",
        "--host=unix:///w/run/docker.sock"}) {
    EXPECT_THAT(argv, Contains(want));
  }
}

TEST(DaemonPlanTest, DockerBuildArgv) {
  BuildSpec spec;
  spec.tag = "app:1";
  spec.dockerfile = "sub/Dockerfile";
  spec.target = "final";
  spec.build_args = {{"A", "1=2"}, {"B", ""}};
  RunLayout l = MakeRunLayout("/w", "/w/run");
  std::vector<std::string> argv =
      DockerBuildArgv(spec, l, "/ctx", {{"tok", "/run/kiln-secrets/job-x/tok"}});
  EXPECT_THAT(argv, ElementsAre("/usr/bin/docker", "-H", "unix:///w/run/docker.sock", "build",
                                "--network=none", "--progress=plain", "-t", "app:1", "-f",
                                "/ctx/sub/Dockerfile", "--target", "final", "--build-arg", "A=1=2",
                                "--build-arg", "B=", "--secret",
                                "id=tok,src=/run/kiln-secrets/job-x/tok", "/ctx"));
  spec.network = NetworkMode::kHost;
  spec.no_cache = true;
  argv = DockerBuildArgv(spec, l, "/ctx", {});
  EXPECT_THAT(argv, Contains("--network=host"));
  EXPECT_THAT(argv, Contains("--no-cache"));
  EXPECT_THAT(argv, Not(Contains("--secret")));
  EXPECT_THAT(DockerBuildEnv(l), Contains("DOCKER_BUILDKIT=1"));
  EXPECT_THAT(DockerBuildEnv(l), Contains("DOCKER_HOST=unix:///w/run/docker.sock"));
}

// buildx direct (Debian 13): the same flags after `docker-buildx build`; the daemon comes from
// DOCKER_HOST (DockerBuildEnv), since buildx's standalone mode has no -H.
TEST(DaemonPlanTest, DockerBuildArgvWithBuildxDirect) {
  BuildSpec spec;
  spec.tag = "app:1";
  RunLayout l = MakeRunLayout("/w", "/w/run");
  std::vector<std::string> argv = DockerBuildArgv(
      spec, l, "/ctx", {{"tok", "/run/kiln-secrets/job-x/tok"}}, BuildClient::kBuildx);
  EXPECT_THAT(argv, ElementsAre("/usr/libexec/docker/cli-plugins/docker-buildx", "build",
                                "--network=none", "--progress=plain", "-t", "app:1", "-f",
                                "/ctx/Dockerfile", "--secret",
                                "id=tok,src=/run/kiln-secrets/job-x/tok", "/ctx"));
  EXPECT_THAT(argv, Not(Contains("-H")));
}

TEST(DaemonPlanTest, BuildClientIsBuildxOnlyWhenItsFileIsExecutable) {
  ToolPaths tools;
  EXPECT_EQ(BuildClientFor(tools, true), BuildClient::kBuildx);
  EXPECT_EQ(BuildClientFor(tools, false), BuildClient::kDockerCli);  // Debian 12: no buildx
  tools.buildx = "";
  EXPECT_EQ(BuildClientFor(tools, true), BuildClient::kDockerCli);  // switched off
  EXPECT_EQ(BuildClientName(BuildClient::kBuildx), "docker-buildx build");
  EXPECT_EQ(BuildClientName(BuildClient::kDockerCli), "docker build");
}

}  // namespace
}  // namespace kiln::agent::runner
