// File: harness/cloud_hypervisor_test.cc
// Unit tests of the Cloud Hypervisor backend: the vm.create JSON against CH's documented
// VmConfig schema; ChApiClient and Boot()'s request sequence and error paths against an
// HTTP-over-unix-socket server in the test (FakeHttpServer); the hybrid vsock retry loop
// (slow, refused, closed, garbage and overlong replies).
#include "harness/cloud_hypervisor.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/transport.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/cloud_hypervisor_fake_api.h"
#include "nlohmann/json.hpp"
#include "third_party/absl_ext/status_macros.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using json = nlohmann::json;

// TempDir: a fresh short directory under /tmp (unix socket paths must fit in 108 bytes).
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/kiln-ch-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { (void)system(absl::StrCat("rm -rf '", path_, "'").c_str()); }
  const std::string& path() const { return path_; }
  std::string File(absl::string_view name, absl::string_view content = "x") const {
    std::string p = absl::StrCat(path_, "/", name);
    std::ofstream(p) << content;
    return p;
  }

 private:
  std::string path_;
};

VmConfig BaseConfig(const std::string& dir) {
  VmConfig c;
  c.id = "vm1";
  c.kernel_path = dir + "/vmlinux";
  c.initrd_path = dir + "/initrd";
  c.disks = {{dir + "/root.ext4", true}, {dir + "/scratch.ext4", false}};
  c.cmdline = "kiln.root=/dev/vda kiln.cgroup=rw";
  c.vcpus = 2;
  c.memory_mib = 512;
  c.work_dir = dir + "/work";
  return c;
}

// ----------------------------------------------------------------------------
// The documented schema (cloud-hypervisor's vmm/src/api/openapi/cloud-hypervisor.yaml), as
// data: which objects exist, their required fields, and the enums.
// ----------------------------------------------------------------------------

const std::set<std::string> kVmConfigKeys = {
    "cpus",  "memory", "payload", "rate_limit_groups", "disks", "net", "rng",     "balloon",
    "fs",    "pmem",   "serial",  "console",           "debug_console",  "devices", "vdpa",
    "vsock", "sgx_epc", "numa",   "iommu",             "watchdog",       "pvpanic", "pci_segments",
    "platform", "tpm", "landlock_enable", "landlock_rules"};
const std::set<std::string> kConsoleModes = {"Off", "Pty", "Tty", "File", "Socket", "Null"};

// SchemaErrors(vm): every violation of the schema subset kiln uses.
std::vector<std::string> SchemaErrors(const json& vm) {
  std::vector<std::string> e;
  if (!vm.is_object()) return {"VmConfig: not an object"};
  for (auto it = vm.begin(); it != vm.end(); ++it) {
    if (!kVmConfigKeys.count(it.key())) e.push_back("VmConfig: unknown field " + it.key());
  }
  // PayloadConfig: kernel or firmware; cmdline and initramfs are strings.
  if (!vm.contains("payload") || !vm["payload"].is_object()) {
    e.push_back("payload: required object");
  } else {
    const json& p = vm["payload"];
    if (!(p.contains("kernel") && p["kernel"].is_string()) && !p.contains("firmware")) {
      e.push_back("payload: kernel (string) or firmware required");
    }
    for (const char* k : {"cmdline", "initramfs"}) {
      if (p.contains(k) && !p[k].is_string()) e.push_back(absl::StrCat("payload.", k, ": string"));
    }
  }
  // CpusConfig: boot_vcpus and max_vcpus required, integers >= 1, boot <= max.
  if (vm.contains("cpus")) {
    const json& c = vm["cpus"];
    if (!c.contains("boot_vcpus") || !c["boot_vcpus"].is_number_integer() ||
        !c.contains("max_vcpus") || !c["max_vcpus"].is_number_integer()) {
      e.push_back("cpus: boot_vcpus and max_vcpus (integers) required");
    } else if (c["boot_vcpus"].get<int>() < 1 ||
               c["boot_vcpus"].get<int>() > c["max_vcpus"].get<int>()) {
      e.push_back("cpus: need 1 <= boot_vcpus <= max_vcpus");
    }
  }
  // MemoryConfig: size (int64, bytes) required.
  if (vm.contains("memory") &&
      (!vm["memory"].contains("size") || !vm["memory"]["size"].is_number_integer())) {
    e.push_back("memory: size (integer bytes) required");
  }
  // DiskConfig: path string; readonly bool.
  if (vm.contains("disks")) {
    if (!vm["disks"].is_array()) e.push_back("disks: array");
    for (const json& d : vm["disks"]) {
      if (!d.contains("path") || !d["path"].is_string()) e.push_back("disks[]: path required");
      if (d.contains("readonly") && !d["readonly"].is_boolean()) e.push_back("disks[]: readonly bool");
    }
  }
  // ConsoleConfig (serial, console): mode required, one of the enum; file with mode File.
  for (const char* k : {"serial", "console"}) {
    if (!vm.contains(k)) continue;
    const json& c = vm[k];
    if (!c.contains("mode") || !c["mode"].is_string() ||
        !kConsoleModes.count(c["mode"].get<std::string>())) {
      e.push_back(absl::StrCat(k, ".mode: one of Off, Pty, Tty, File, Socket, Null"));
    } else if (c["mode"] == "File" && !(c.contains("file") && c["file"].is_string())) {
      e.push_back(absl::StrCat(k, ": mode File needs file"));
    }
  }
  // RngConfig: src required.
  if (vm.contains("rng") && !(vm["rng"].contains("src") && vm["rng"]["src"].is_string())) {
    e.push_back("rng: src required");
  }
  // VsockConfig: cid (int64 >= 3) and socket (string) required.
  if (vm.contains("vsock")) {
    const json& v = vm["vsock"];
    if (!v.contains("cid") || !v["cid"].is_number_integer() || v["cid"].get<int64_t>() < 3) {
      e.push_back("vsock: cid (integer >= 3) required");
    }
    if (!v.contains("socket") || !v["socket"].is_string()) e.push_back("vsock: socket required");
  }
  return e;
}

TEST(VmConfigSchema, TheCheckerCatchesViolations) {
  // The checker must be able to fail: each mutation of a valid config is caught.
  TempDir t;
  VmConfig c = BaseConfig(t.path());
  c.channel = Channel{"agent", "/tmp/v.sock", 3, 1024};
  ASSERT_OK_AND_ASSIGN(json good, CloudHypervisorVmConfigJson(c, CloudHypervisorPathsFor(c, "/s")));
  ASSERT_THAT(SchemaErrors(good), IsEmpty());
  struct Mutation {
    const char* name;
    void (*apply)(json&);
  };
  const Mutation mutations[] = {
      {"no payload", [](json& j) { j.erase("payload"); }},
      {"no kernel", [](json& j) { j["payload"].erase("kernel"); }},
      {"lowercase mode", [](json& j) { j["serial"]["mode"] = "file"; }},
      {"unknown console mode", [](json& j) { j["console"]["mode"] = "Disabled"; }},
      {"File without file", [](json& j) { j["serial"].erase("file"); }},
      {"boot > max", [](json& j) { j["cpus"]["boot_vcpus"] = 4; }},
      {"memory in MiB string", [](json& j) { j["memory"]["size"] = "512M"; }},
      {"cid 2", [](json& j) { j["vsock"]["cid"] = 2; }},
      {"unknown field", [](json& j) { j["kernel"] = json{{"path", "x"}}; }},
  };
  for (const Mutation& m : mutations) {
    SCOPED_TRACE(m.name);
    json bad = good;
    m.apply(bad);
    EXPECT_THAT(SchemaErrors(bad), ::testing::Not(IsEmpty()));
  }
}

TEST(CloudHypervisorVmConfigJson, FollowsTheSchemaWithTheRightValues) {
  TempDir t;
  VmConfig c = BaseConfig(t.path());
  c.channel = Channel{"agent", "/tmp/kiln-vsock.sock", 7, 1024};
  CloudHypervisorPaths paths = CloudHypervisorPathsFor(c, "/run/s");
  EXPECT_EQ(paths.api_socket, "/run/s/ch-api.sock");
  EXPECT_EQ(paths.serial_log, c.work_dir + "/serial.log");
  EXPECT_EQ(paths.vmm_log, c.work_dir + "/cloud-hypervisor.log");
  ASSERT_OK_AND_ASSIGN(json j, CloudHypervisorVmConfigJson(c, paths));
  EXPECT_THAT(SchemaErrors(j), IsEmpty()) << j.dump(2);
  EXPECT_EQ(j["payload"]["kernel"], c.kernel_path);
  EXPECT_EQ(j["payload"]["initramfs"], c.initrd_path);
  EXPECT_EQ(j["payload"]["cmdline"],
            "console=ttyS0 panic=-1 softlockup_panic=1 kiln.root=/dev/vda kiln.cgroup=rw");
  EXPECT_EQ(j["cpus"], (json{{"boot_vcpus", 2}, {"max_vcpus", 2}}));
  EXPECT_EQ(j["memory"]["size"], int64_t{512} * 1024 * 1024);
  EXPECT_EQ(j["disks"], (json::array({{{"path", c.disks[0].path}, {"readonly", true}},
                                      {{"path", c.disks[1].path}, {"readonly", false}}})));
  EXPECT_EQ(j["serial"], (json{{"mode", "File"}, {"file", paths.serial_log}}));
  EXPECT_EQ(j["console"], (json{{"mode", "Off"}}));
  EXPECT_EQ(j["rng"], (json{{"src", "/dev/urandom"}}));
  EXPECT_EQ(j["vsock"], (json{{"cid", 7}, {"socket", "/tmp/kiln-vsock.sock"}}));
}

TEST(CloudHypervisorVmConfigJson, OptionalPartsAreOmitted) {
  VmConfig c = BaseConfig("/x");
  c.initrd_path.clear();
  c.disks.clear();
  c.cmdline = "  ";
  ASSERT_OK_AND_ASSIGN(json j, CloudHypervisorVmConfigJson(c, CloudHypervisorPathsFor(c, "/s")));
  EXPECT_THAT(SchemaErrors(j), IsEmpty());
  EXPECT_FALSE(j["payload"].contains("initramfs"));
  EXPECT_FALSE(j.contains("disks"));
  EXPECT_FALSE(j.contains("vsock"));
  EXPECT_EQ(j["payload"]["cmdline"], std::string(kCloudHypervisorBaseCmdline));
}

TEST(CloudHypervisorVmConfigJson, BadInput) {
  const CloudHypervisorPaths paths = CloudHypervisorPathsFor(BaseConfig("/x"), "/s");
  VmConfig c = BaseConfig("/x");
  c.vcpus = 0;
  EXPECT_THAT(CloudHypervisorVmConfigJson(c, paths),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vcpus")));
  c = BaseConfig("/x");
  c.kernel_path.clear();
  EXPECT_THAT(CloudHypervisorVmConfigJson(c, paths),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("kernel")));
  c = BaseConfig("/x");
  c.channel = Channel{"agent", "/tmp/v.sock", 2, 1024};
  EXPECT_THAT(CloudHypervisorVmConfigJson(c, paths),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vsock_cid 2")));
  c.channel = Channel{"agent", "/tmp/" + std::string(200, 'a'), 3, 1024};
  EXPECT_THAT(CloudHypervisorVmConfigJson(c, paths),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("107")));
  EXPECT_THAT(CloudHypervisorVmConfigJson(BaseConfig("/x"), CloudHypervisorPaths{}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("serial_log")));
}

TEST(ParseChVmInfoState, States) {
  struct Row {
    const char* body;
    absl::StatusCode code;
    ChVmState state;
  };
  const Row rows[] = {
      {R"({"state":"Created","config":{}})", absl::StatusCode::kOk, ChVmState::kCreated},
      {R"({"state":"Running"})", absl::StatusCode::kOk, ChVmState::kRunning},
      {R"({"state":"Shutdown"})", absl::StatusCode::kOk, ChVmState::kShutdown},
      {R"({"state":"Paused"})", absl::StatusCode::kOk, ChVmState::kPaused},
      {R"({"state":"BreakPoint"})", absl::StatusCode::kOk, ChVmState::kBreakPoint},
      {R"({"state":"running"})", absl::StatusCode::kInvalidArgument, {}},
      {R"({"state":3})", absl::StatusCode::kInvalidArgument, {}},
      {R"({})", absl::StatusCode::kInvalidArgument, {}},
      {R"([1])", absl::StatusCode::kInvalidArgument, {}},
      {"not json", absl::StatusCode::kInvalidArgument, {}},
      {"", absl::StatusCode::kInvalidArgument, {}},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.body);
    absl::StatusOr<ChVmState> s = ParseChVmInfoState(r.body);
    ASSERT_EQ(s.status().code(), r.code) << s.status();
    if (s.ok()) {
      EXPECT_EQ(*s, r.state);
      // ChVmStateName round-trips.
      ASSERT_OK_AND_ASSIGN(ChVmState again, ParseChVmInfoState(absl::StrCat(
                                                R"({"state":")", ChVmStateName(*s), R"("})")));
      EXPECT_EQ(again, *s);
    }
  }
}

// ----------------------------------------------------------------------------
// ChApiClient against FakeHttpServer
// ----------------------------------------------------------------------------

TEST(ChApiClient, StatusesBodiesAndTransportErrors) {
  TempDir t;
  const std::string sock = t.path() + "/api.sock";
  ASSERT_OK_AND_ASSIGN(
      auto server, FakeHttpServer::Start(sock, [](const FakeHttpRequest& r) {
        FakeHttpResponse resp;
        if (absl::EndsWith(r.path, "/vm.boot")) resp.status = 204;
        if (absl::EndsWith(r.path, "/vmm.ping")) {
          resp.status = 200;
          resp.body = R"({"version":"v1"})";
        }
        if (absl::EndsWith(r.path, "/bad")) {
          resp.status = 400;
          resp.body = "Error from API: The VM could not be created: InvalidPayload\n";
        }
        if (absl::EndsWith(r.path, "/boom")) resp.status = 500;
        if (absl::EndsWith(r.path, "/gone")) resp.status = 404;
        if (absl::EndsWith(r.path, "/nope")) resp.status = 405;
        if (absl::EndsWith(r.path, "/close")) resp.close_without_reply = true;
        if (absl::EndsWith(r.path, "/slow")) resp.delay = absl::Milliseconds(800);
        return resp;
      }));
  ChApiClient api(sock, absl::Milliseconds(300));

  EXPECT_THAT(api.Call("PUT", "vm.boot"), IsOk());
  ASSERT_OK_AND_ASSIGN(std::string pong, api.Call("GET", "vmm.ping"));
  EXPECT_EQ(pong, R"({"version":"v1"})");
  ASSERT_OK_AND_ASSIGN(ChApiResponse raw, api.Request("PUT", "bad", R"({"a":1})"));
  EXPECT_EQ(raw.status, 400);
  EXPECT_THAT(api.Call("PUT", "bad", "{}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("cloud-hypervisor API PUT bad: HTTP 400: Error from API: The VM "
                                 "could not be created: InvalidPayload")));
  EXPECT_THAT(api.Call("PUT", "boom"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("HTTP 500: (empty body)")));
  EXPECT_THAT(api.Call("GET", "gone"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("404")));
  EXPECT_THAT(api.Call("GET", "nope"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("405")));
  EXPECT_THAT(api.Call("PUT", "close"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("PUT close")));
  const absl::Time before = absl::Now();
  EXPECT_THAT(api.Call("GET", "slow"),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("GET slow")));
  EXPECT_LT(absl::Now() - before, absl::Milliseconds(750));
  EXPECT_THAT(api.Call("DELETE", "vm.boot"), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));

  std::vector<FakeHttpRequest> reqs = server->requests();
  ASSERT_GE(reqs.size(), 3u);
  EXPECT_EQ(reqs[0].method, "PUT");
  EXPECT_EQ(reqs[0].path, "/api/v1/vm.boot");
  EXPECT_EQ(reqs[0].body, "");
  EXPECT_EQ(reqs[1].method, "GET");
  EXPECT_EQ(reqs[2].body, R"({"a":1})");
}

TEST(ChApiClient, NoServer) {
  TempDir t;
  ChApiClient api(t.path() + "/missing.sock", absl::Seconds(1));
  EXPECT_THAT(api.Call("GET", "vmm.ping"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("missing.sock")));
}

// ----------------------------------------------------------------------------
// CloudHypervisorVmm::Boot against an in-test API server. The "binary" is a shell script that
// answers --version, marks that it was spawned, and sleeps (or exits early); the test thread
// serves the API socket once the script runs.
// ----------------------------------------------------------------------------

class BootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    t_.File("vmlinux");
    t_.File("initrd");
    t_.File("root.ext4");
    t_.File("scratch.ext4");
    config_ = BaseConfig(t_.path());
    script_ = t_.File("fake-ch.sh", absl::StrCat(R"(#!/bin/sh
if [ "$1" = --version ]; then echo "cloud-hypervisor v1.2.3-test"; exit 0; fi
if [ -e ")", t_.path(), R"(/exit-early" ]; then echo "fake-ch: unknown option $1" >&2; exit 3; fi
touch ")", t_.path(), R"(/spawned"
exec sleep 30
)"));
    chmod(script_.c_str(), 0755);
    options_.binary = script_;
    options_.api_timeout = absl::Milliseconds(500);
    options_.socket_timeout = absl::Seconds(5);
    options_.grace = absl::Milliseconds(200);
  }

  // BootWith(handler): Boot while a thread serves `handler` on the API socket once the
  // script has been spawned. The server stays up until the test ends.
  absl::StatusOr<std::unique_ptr<Vm>> BootWith(FakeHttpHandler handler) {
    ASSIGN_OR_RETURN(auto vmm, CloudHypervisorVmm::Create(options_));
    EXPECT_EQ(vmm->version(), "v1.2.3-test");
    const std::string api = CloudHypervisorPathsFor(config_, config_.work_dir).api_socket;
    const std::string spawned = t_.path() + "/spawned";
    std::atomic<bool> done{false};
    std::thread server_thread([&] {
      while (!done && access(spawned.c_str(), F_OK) != 0) absl::SleepFor(absl::Milliseconds(2));
      if (done) return;
      absl::StatusOr<std::unique_ptr<FakeHttpServer>> s = FakeHttpServer::Start(api, handler);
      if (s.ok()) server_ = std::move(*s);
    });
    absl::StatusOr<std::unique_ptr<Vm>> vm = vmm->Boot(config_);
    done = true;
    server_thread.join();
    return vm;
  }

  std::vector<std::string> Sequence() const {
    std::vector<std::string> out;
    if (server_ == nullptr) return out;
    for (const FakeHttpRequest& r : server_->requests()) {
      out.push_back(absl::StrCat(r.method, " ", r.path.substr(r.path.rfind('/') + 1)));
    }
    return out;
  }

  TempDir t_;
  VmConfig config_;
  std::string script_;
  CloudHypervisorOptions options_;
  std::unique_ptr<FakeHttpServer> server_;
};

// Handler: 200 to ping, `overrides` by endpoint, else 204; vm.info says Running.
FakeHttpHandler Scripted(std::map<std::string, FakeHttpResponse> overrides) {
  return [overrides](const FakeHttpRequest& r) {
    std::string ep = r.path.substr(r.path.rfind('/') + 1);
    if (auto it = overrides.find(ep); it != overrides.end()) return it->second;
    FakeHttpResponse resp;
    if (ep == "vmm.ping") {
      resp.status = 200;
      resp.body = R"({"version":"v1.2.3-test"})";
    } else if (ep == "vm.info") {
      resp.status = 200;
      resp.body = R"({"state":"Running","config":{}})";
    }
    return resp;
  };
}

TEST_F(BootTest, SequenceCreateBootInfoShutdown) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, BootWith(Scripted({})));
  EXPECT_THAT(Sequence(), ElementsAre("GET vmm.ping", "PUT vm.create", "PUT vm.boot"));
  // The vm.create body is exactly the pure JSON.
  ASSERT_OK_AND_ASSIGN(json want, CloudHypervisorVmConfigJson(
                                      config_, CloudHypervisorPathsFor(config_, config_.work_dir)));
  EXPECT_EQ(json::parse(server_->requests()[1].body), want);
  auto* ch = dynamic_cast<CloudHypervisorVm*>(vm.get());
  ASSERT_NE(ch, nullptr);
  ASSERT_OK_AND_ASSIGN(ChVmState state, ch->State());
  EXPECT_EQ(state, ChVmState::kRunning);
  EXPECT_FALSE(vm->Exited());
  vm->Kill();  // vm.shutdown, vmm.shutdown; the script does not exit: group kill after grace
  EXPECT_THAT(Sequence(), ElementsAre("GET vmm.ping", "PUT vm.create", "PUT vm.boot",
                                      "GET vm.info", "PUT vm.shutdown", "PUT vmm.shutdown"));
  EXPECT_TRUE(vm->Exited());
  ASSERT_OK_AND_ASSIGN(VmExit exit, vm->Wait(absl::Seconds(1)));
  EXPECT_EQ(exit.kind, VmExit::Kind::kKilled);
  EXPECT_THAT(ch->State(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("exited")));
  EXPECT_NE(access(CloudHypervisorPathsFor(config_, config_.work_dir).api_socket.c_str(), F_OK),
            0);
}

TEST_F(BootTest, CreateRejectedWith400AndBody) {
  FakeHttpResponse bad{.status = 400, .body = "Error from API: InvalidPayload: no kernel"};
  absl::StatusOr<std::unique_ptr<Vm>> vm = BootWith(Scripted({{"vm.create", bad}}));
  EXPECT_THAT(vm, StatusIs(absl::StatusCode::kInvalidArgument,
                           HasSubstr("PUT vm.create: HTTP 400: Error from API: InvalidPayload")));
  // Boot tore the VMM down: orderly requests, then the process group.
  EXPECT_THAT(Sequence(), ElementsAre("GET vmm.ping", "PUT vm.create", "PUT vm.shutdown",
                                      "PUT vmm.shutdown"));
}

TEST_F(BootTest, BootFailsWith500) {
  FakeHttpResponse boom{.status = 500, .body = R"({"error":"KVM_CREATE_VM failed"})"};
  EXPECT_THAT(BootWith(Scripted({{"vm.boot", boom}})),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("PUT vm.boot: HTTP 500: {\"error\":\"KVM_CREATE_VM failed\"}")));
}

TEST_F(BootTest, ConnectionClosedOnCreate) {
  FakeHttpResponse closed{.close_without_reply = true};
  EXPECT_THAT(BootWith(Scripted({{"vm.create", closed}})),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("PUT vm.create")));
}

TEST_F(BootTest, SlowCreateHitsTheApiTimeout) {
  FakeHttpResponse slow{.delay = absl::Seconds(2)};
  EXPECT_THAT(BootWith(Scripted({{"vm.create", slow}})),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("PUT vm.create")));
}

TEST_F(BootTest, SocketNeverAnswers) {
  options_.socket_timeout = absl::Milliseconds(300);
  ASSERT_OK_AND_ASSIGN(auto vmm, CloudHypervisorVmm::Create(options_));
  const absl::Time before = absl::Now();
  EXPECT_THAT(vmm->Boot(config_), StatusIs(absl::StatusCode::kDeadlineExceeded,
                                           HasSubstr("did not answer within 300ms")));
  EXPECT_LT(absl::Now() - before, absl::Seconds(3));
}

TEST_F(BootTest, ProcessExitsEarlyWithItsLog) {
  t_.File("exit-early");
  ASSERT_OK_AND_ASSIGN(auto vmm, CloudHypervisorVmm::Create(options_));
  EXPECT_THAT(vmm->Boot(config_),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("exited before its API socket"),
                             HasSubstr("fake-ch: unknown option --api-socket"))));
}

TEST_F(BootTest, MissingArtifactsAndBinary) {
  ASSERT_OK_AND_ASSIGN(auto vmm, CloudHypervisorVmm::Create(options_));
  VmConfig c = config_;
  c.kernel_path = t_.path() + "/no-such-vmlinux";
  EXPECT_THAT(vmm->Boot(c), StatusIs(absl::StatusCode::kNotFound, HasSubstr("kernel")));
  c = config_;
  c.disks[1].path = t_.path() + "/no-such-disk";
  EXPECT_THAT(vmm->Boot(c), StatusIs(absl::StatusCode::kNotFound, HasSubstr("no-such-disk")));
  c = config_;
  c.id = "bad id";
  EXPECT_THAT(vmm->Boot(c), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  CloudHypervisorOptions o = options_;
  o.binary = t_.path() + "/no-such-cloud-hypervisor";
  EXPECT_THAT(CloudHypervisorVmm::Create(o),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no-such-cloud-hypervisor")));
}

TEST_F(BootTest, LongWorkDirPutsTheApiSocketInATempDir) {
  config_.work_dir = t_.path() + "/" + std::string(100, 'w');
  options_.socket_timeout = absl::Milliseconds(200);
  ASSERT_OK_AND_ASSIGN(auto vmm, CloudHypervisorVmm::Create(options_));
  // No server: the ping times out, naming the short socket path it used.
  EXPECT_THAT(vmm->Boot(config_), StatusIs(absl::StatusCode::kDeadlineExceeded,
                                           HasSubstr("/tmp/kiln-ch-")));
}

// ----------------------------------------------------------------------------
// Hybrid vsock with retry. (agent/transport_test.cc covers the single handshake's parse,
// success, early close, bad and overlong reply; here: the retry loop around it.)
// ----------------------------------------------------------------------------

// FakeVsockServer: a hybrid vsock unix socket answering connection i with replies[i] (the
// last one repeats) after `delay`; an empty reply closes the connection (no guest listener).
class FakeVsockServer {
 public:
  FakeVsockServer(std::string path, std::vector<std::string> replies,
                  absl::Duration delay = absl::ZeroDuration())
      : replies_(std::move(replies)), delay_(delay) {
    listener_ = std::move(agent::UnixListener::Listen(path).value());
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeVsockServer() {
    stop_ = true;
    thread_.join();
  }
  std::vector<std::string> received() {
    absl::MutexLock lock(&mu_);
    return received_;
  }

 private:
  void Serve() {
    size_t i = 0;
    while (!stop_) {
      absl::StatusOr<std::unique_ptr<agent::FdStream>> s = listener_->Accept(20);
      if (!s.ok()) continue;
      char buf[64];
      absl::StatusOr<size_t> n = (*s)->Read(buf, sizeof(buf), 1000);
      {
        absl::MutexLock lock(&mu_);
        received_.push_back(n.ok() ? std::string(buf, *n) : "");
      }
      const std::string& reply = replies_[std::min(i++, replies_.size() - 1)];
      if (delay_ > absl::ZeroDuration()) absl::SleepFor(delay_);
      if (!reply.empty()) {
        (void)(*s)->Write(reply, 1000);
        // Keep the stream open a moment so that the client reads the reply, then echo 1 byte.
        char c;
        absl::StatusOr<size_t> m = (*s)->Read(&c, 1, 300);
        if (m.ok() && *m == 1) (void)(*s)->Write(absl::string_view(&c, 1), 1000);
      }
    }
  }
  std::unique_ptr<agent::UnixListener> listener_;
  std::vector<std::string> replies_;
  absl::Duration delay_;
  std::atomic<bool> stop_{false};
  absl::Mutex mu_;
  std::vector<std::string> received_;
  std::thread thread_;
};

const auto kAlive = [] { return true; };

TEST(HybridVsockRetry, RetriesUntilTheGuestListens) {
  TempDir t;
  const std::string sock = t.path() + "/vsock.sock";
  FakeVsockServer ch(sock, {"", "", "OK 1073741824\n"});
  ASSERT_OK_AND_ASSIGN(auto s, ConnectHybridVsockWithRetry(sock, 1024, absl::Seconds(5), kAlive));
  EXPECT_THAT(ch.received(), ElementsAre("CONNECT 1024\n", "CONNECT 1024\n", "CONNECT 1024\n"));
  ASSERT_OK(s->Write("k", 1000));
  char c = 0;
  ASSERT_OK_AND_ASSIGN(size_t n, s->Read(&c, 1, 1000));
  EXPECT_EQ(n, 1u);
  EXPECT_EQ(c, 'k');
}

TEST(HybridVsockRetry, SocketAppearsLate) {
  TempDir t;
  const std::string sock = t.path() + "/vsock.sock";
  std::unique_ptr<FakeVsockServer> ch;
  std::thread late([&] {
    absl::SleepFor(absl::Milliseconds(150));
    ch = std::make_unique<FakeVsockServer>(sock, std::vector<std::string>{"OK 5\n"});
  });
  HybridVsockRetry retry;
  retry.attempt_timeout_ms = 50;
  absl::StatusOr<std::unique_ptr<agent::FdStream>> s =
      ConnectHybridVsockWithRetry(sock, 1024, absl::Seconds(5), kAlive, retry);
  late.join();
  EXPECT_THAT(s, IsOk());
}

TEST(HybridVsockRetry, GarbageReplyIsNotRetriedAndNamesIt) {
  TempDir t;
  const std::string sock = t.path() + "/vsock.sock";
  FakeVsockServer ch(sock, {"HELLO\n"});
  // A whole reply line other than "OK <n>": not CH's vsock muxer; retrying cannot help.
  EXPECT_THAT(ConnectHybridVsockWithRetry(sock, 1024, absl::Seconds(5), kAlive),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("port 1024"), HasSubstr("HELLO"))));
  EXPECT_EQ(ch.received().size(), 1u);
}

TEST(HybridVsockRetry, OverlongReplyIsNotRetried) {
  TempDir t;
  const std::string sock = t.path() + "/vsock.sock";
  FakeVsockServer ch(sock, {std::string(100, 'O')});
  EXPECT_THAT(ConnectHybridVsockWithRetry(sock, 1024, absl::Seconds(2), kAlive),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("64 bytes")));
  EXPECT_EQ(ch.received().size(), 1u);
}

TEST(HybridVsockRetry, SlowReply) {
  TempDir t;
  const std::string sock = t.path() + "/vsock.sock";
  {
    FakeVsockServer ch(sock, {"OK 9\n"}, absl::Milliseconds(300));
    EXPECT_THAT(ConnectHybridVsockWithRetry(sock, 1024, absl::Seconds(5), kAlive), IsOk());
  }
  FakeVsockServer ch(sock, {"OK 9\n"}, absl::Milliseconds(300));
  HybridVsockRetry retry;
  retry.attempt_timeout_ms = 50;
  EXPECT_THAT(ConnectHybridVsockWithRetry(sock, 1024, absl::Milliseconds(250), kAlive, retry),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("attempt(s)")));
}

TEST(HybridVsockRetry, RefusedConnection) {
  TempDir t;
  const std::string sock = t.path() + "/vsock.sock";
  // A socket file nobody listens on: connect(2) gets ECONNREFUSED.
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, sock.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  close(fd);
  HybridVsockRetry retry;
  retry.attempt_timeout_ms = 100;
  EXPECT_THAT(ConnectHybridVsockWithRetry(sock, 1024, absl::Milliseconds(300), kAlive, retry),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("refused")));
}

TEST(HybridVsockRetry, StopsWhenTheVmExits) {
  TempDir t;
  const std::string sock = t.path() + "/vsock.sock";
  std::atomic<int> calls{0};
  HybridVsockRetry retry;
  retry.attempt_timeout_ms = 50;
  const absl::Time before = absl::Now();
  EXPECT_THAT(ConnectHybridVsockWithRetry(sock, 1024, absl::Seconds(10),
                                          [&] { return ++calls < 3; }, retry),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("VM exited")));
  EXPECT_LT(absl::Now() - before, absl::Seconds(2));
  EXPECT_EQ(calls, 3);
}

}  // namespace
}  // namespace kiln::harness
