// File: agent/runner/daemon_plan.h
// -----------------------------------------------------------------------------
//
// Pure plans for the processes of one build: where containerd and dockerd keep their sockets,
// state and logs (RunLayout), containerd's small config, dockerd's argv and the
// `docker build` argv. No I/O: unit-tested as data; runner.cc carries them out.
//
// dockerd is started with its own containerd (`--containerd=<sock>`), because letting dockerd
// start containerd costs a 1 s gRPC dial timeout plus backoff (platform notes: 6-7 s vs
// 3.4-6 s to ready in a TCG VM), and with --bridge=none --iptables=false --ip-forward=false
// --ip-masq=false, so no bridge/veth/iptables support is needed.
//
// Example:
//
//   RunLayout l = MakeRunLayout("/var/lib/kiln/job1", "/var/lib/kiln/job1/run");
//   std::string toml = ContainerdConfigToml(l);
//   std::vector<std::string> argv = DockerdArgv(spec.tools, l);
#ifndef KILN_AGENT_RUNNER_DAEMON_PLAN_H_
#define KILN_AGENT_RUNNER_DAEMON_PLAN_H_

#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "agent/runner/spec.h"

namespace kiln::agent::runner {

// RunLayout: every path of one build's daemons.
struct RunLayout {
  std::string run_dir;             // short path: sockets (unix socket paths <= 107 bytes)
  std::string containerd_config;   // <run_dir>/containerd.toml
  std::string containerd_socket;   // <run_dir>/containerd.sock
  std::string containerd_root;     // <work_dir>/containerd/root
  std::string containerd_state;    // <run_dir>/containerd-state
  std::string containerd_log;      // <work_dir>/containerd.log
  std::string docker_socket;       // <run_dir>/docker.sock
  std::string docker_data_root;    // <work_dir>/docker
  std::string docker_exec_root;    // <run_dir>/docker-exec
  std::string docker_pidfile;      // <run_dir>/docker.pid
  std::string docker_config_dir;   // <run_dir>/docker-config (the CLI's DOCKER_CONFIG)
  std::string dockerd_log;         // <work_dir>/dockerd.log
  std::string image_tar;           // <work_dir>/image.docker.tar (GET /images/{name}/get)
  std::string export_dir;          // <work_dir>/export (docker-archive unpacked)
};

// MakeRunLayout(work_dir, run_dir): the layout below the two directories.
// REQUIRES: run_dir + "/containerd.sock.ttrpc" fits a unix socket path (<= 107 bytes).
RunLayout MakeRunLayout(const std::string& work_dir, const std::string& run_dir);

// kMaxSocketPathBytes: longest usable AF_UNIX path (sun_path is 108 bytes with the NUL).
inline constexpr size_t kMaxSocketPathBytes = 107;

// ContainerdConfigToml(layout): containerd 1.6 config (version 2): own root/state, gRPC and
// ttrpc sockets in run_dir, the CRI plugin disabled, no metrics/debug listeners.
std::string ContainerdConfigToml(const RunLayout& layout);

// ContainerdArgv(tools, layout): `containerd --config <toml>`.
std::vector<std::string> ContainerdArgv(const ToolPaths& tools, const RunLayout& layout);

// DockerdArgv(tools, layout): dockerd with --containerd, no bridge/iptables, own data/exec
// roots, pidfile and unix socket (no TCP), --shutdown-timeout=2.
std::vector<std::string> DockerdArgv(const ToolPaths& tools, const RunLayout& layout);

// DaemonEnv(): the environment of containerd/dockerd: PATH=/usr/sbin:/usr/bin:/sbin:/bin
// (runc and containerd-shim-runc-v2 are found there), HOME=/root, no proxies.
std::vector<std::string> DaemonEnv();

// BuildClient: which process talks to BuildKit for a build.
//   kDockerCli  `docker -H unix://<sock> build ...`: the docker CLI (docker 20.10: its own
//               BuildKit client; docker-cli >= 23: it probes its plugins, running
//               `docker-buildx docker-cli-plugin-metadata`, then runs `docker-buildx build`)
//   kBuildx     `docker-buildx build ...` directly (buildx's standalone mode; DOCKER_HOST names
//               the daemon, "default" builder, docker driver: the image lands in dockerd's
//               store exactly as through the CLI). Same flags, same output, same exit codes.
// Why: each Go process start costs seconds under TCG. Measured in a TCG builder VM (Debian 13,
// rootful dockerd, the reference two-RUN secret build, host load 7-9): `docker build` made its
// first API call 5.9 s / 3.3 s after it started, `docker-buildx build` 0.6 s / 0.9 s; whole
// builds 17.9 / 14.3 s vs 9.8 / 13.6 s.
enum class BuildClient { kDockerCli, kBuildx };

// BuildClientFor(tools, buildx_executable): kBuildx when tools.buildx is set and
// `buildx_executable` (the caller's access(tools.buildx, X_OK) == 0), else kDockerCli. Pure.
BuildClient BuildClientFor(const ToolPaths& tools, bool buildx_executable);

// BuildClientName(client): "docker build" or "docker-buildx build" (for log lines).
absl::string_view BuildClientName(BuildClient client);

// DockerBuildArgv(spec, layout, context_dir, secret_files, client): the build argv:
//   kDockerCli: <docker> -H unix://<sock> build <flags> <context>
//   kBuildx:    <buildx> build <flags> <context>       (DockerBuildEnv names the daemon)
// with <flags> = --network=<mode> --progress=plain -t <tag> -f <context>/<dockerfile>
//   [--target T] [--no-cache] [--build-arg K=V]... [--secret id=X,src=FILE]...
// secret_files: id -> path of the file holding the value.
std::vector<std::string> DockerBuildArgv(const BuildSpec& spec, const RunLayout& layout,
                                         const std::string& context_dir,
                                         const std::map<std::string, std::string>& secret_files,
                                         BuildClient client = BuildClient::kDockerCli);

// DockerBuildEnv(layout): DOCKER_BUILDKIT=1, DOCKER_HOST=unix://<sock> (buildx standalone reads
// it; the CLI's -H wins over it), DOCKER_CONFIG=<run_dir>/docker-config, HOME=<run_dir>, PATH
// as DaemonEnv.
std::vector<std::string> DockerBuildEnv(const RunLayout& layout);

}  // namespace kiln::agent::runner

#endif  // KILN_AGENT_RUNNER_DAEMON_PLAN_H_
