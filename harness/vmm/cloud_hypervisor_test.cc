// File: harness/vmm/cloud_hypervisor_test.cc
// Unit tests of the Cloud Hypervisor backend: the vm.create JSON against CH's documented
// VmConfig schema; ChApiClient and Boot()'s request sequence and error paths against an
// HTTP-over-unix-socket server in the test (FakeHttpServer); the hybrid vsock retry loop
// (slow, refused, closed, garbage and overlong replies).
#include "harness/vmm/cloud_hypervisor.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
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
#include "harness/vmm/cloud_hypervisor_fake_api.h"
#include "nlohmann/json.hpp"
#include "third_party/absl_ext/status_macros.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::Contains;
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
// CH's own VmConfig schema: testdata/ch_vmconfig_schema.json is a copy of the components.schemas
// of cloud-hypervisor's vmm/src/api/openapi/cloud-hypervisor.yaml (source and commit recorded
// in the file's "x-kiln-source"). CH itself ignores unknown keys in vm.create (serde), so a
// misspelt key would be dropped silently on a real host: this check is the guard.
// ----------------------------------------------------------------------------

const json& ChSchema() {
  static const json* schema = [] {
    const char* srcdir = std::getenv("TEST_SRCDIR");
    const char* ws = std::getenv("TEST_WORKSPACE");
    std::ifstream in(absl::StrCat(srcdir ? srcdir : ".", "/", ws ? ws : "kiln",
                                  "/harness/vmm/testdata/ch_vmconfig_schema.json"));
    auto* j = new json(json::parse(in, nullptr, /*allow_exceptions=*/false));
    return j;
  }();
  return *schema;
}

// SchemaErrorsAt(value, schema, where, out): the JSON-schema subset the OpenAPI document uses
// for VmConfig: $ref (#/components/schemas/X), type (object, array, string, integer, boolean),
// required, properties, items, enum, minimum. Stricter than CH: a key not in `properties` is an
// error, and so is a schema kept only as a placeholder (kiln does not send it yet: copy it in
// full from the API document first).
void SchemaErrorsAt(const json& v, const json& schema, const std::string& where,
                    std::vector<std::string>* out) {
  if (schema.contains("$ref")) {
    const std::string ref = schema["$ref"].get<std::string>();
    const std::string prefix = "#/components/schemas/";
    const std::string name = ref.substr(prefix.size());
    const json& schemas = ChSchema()["components"]["schemas"];
    if (ref.rfind(prefix, 0) != 0 || !schemas.contains(name)) {
      out->push_back(absl::StrCat(where, ": unresolved $ref ", ref));
      return;
    }
    if (schemas[name].value("x-kiln-placeholder", false)) {
      out->push_back(absl::StrCat(where, ": ", name,
                                  " is a placeholder in the schema copy; copy it in full"));
      return;
    }
    SchemaErrorsAt(v, schemas[name], where, out);
    return;
  }
  const std::string type = schema.value("type", "");
  const bool type_ok = type.empty() || (type == "object" && v.is_object()) ||
                       (type == "array" && v.is_array()) || (type == "string" && v.is_string()) ||
                       (type == "integer" && v.is_number_integer()) ||
                       (type == "boolean" && v.is_boolean()) ||
                       (type == "number" && v.is_number());
  if (!type_ok) {
    out->push_back(absl::StrCat(where, ": expected ", type, ", got ", v.dump()));
    return;
  }
  if (schema.contains("enum")) {
    bool found = false;
    for (const json& e : schema["enum"]) found = found || e == v;
    if (!found) out->push_back(absl::StrCat(where, ": ", v.dump(), " not in ", schema["enum"].dump()));
  }
  if (schema.contains("minimum") && v.is_number() && v < schema["minimum"]) {
    out->push_back(absl::StrCat(where, ": ", v.dump(), " < minimum ", schema["minimum"].dump()));
  }
  if (v.is_object()) {
    const json props = schema.value("properties", json::object());
    for (const json& r : schema.value("required", json::array())) {
      if (!v.contains(r.get<std::string>())) {
        out->push_back(absl::StrCat(where, ": required ", r.get<std::string>(), " missing"));
      }
    }
    for (auto it = v.begin(); it != v.end(); ++it) {
      const std::string at = where.empty() ? it.key() : absl::StrCat(where, ".", it.key());
      if (!props.contains(it.key())) {
        out->push_back(absl::StrCat(at, ": unknown key (CH would ignore it silently)"));
        continue;
      }
      SchemaErrorsAt(it.value(), props[it.key()], at, out);
    }
  }
  if (v.is_array() && schema.contains("items")) {
    for (size_t i = 0; i < v.size(); ++i) {
      SchemaErrorsAt(v[i], schema["items"], absl::StrCat(where, "[", i, "]"), out);
    }
  }
}

// SchemaErrors(vm): the violations of CH's VmConfig schema, plus the checks CH makes on a
// VmConfig at vm.boot that the schema cannot say (vmm/src/config.rs validate()): a payload
// kernel or firmware, boot_vcpus <= max_vcpus, mode File needs file, mode Socket needs socket.
std::vector<std::string> SchemaErrors(const json& vm) {
  std::vector<std::string> e;
  SchemaErrorsAt(vm, json{{"$ref", "#/components/schemas/VmConfig"}}, "", &e);
  if (!e.empty() || !vm.is_object()) return e;
  const json& p = vm["payload"];
  if (!p.contains("kernel") && !p.contains("firmware")) e.push_back("payload: kernel or firmware");
  if (vm.contains("cpus") && vm["cpus"]["boot_vcpus"] > vm["cpus"]["max_vcpus"]) {
    e.push_back("cpus: boot_vcpus > max_vcpus");
  }
  for (const char* k : {"serial", "console"}) {
    if (!vm.contains(k)) continue;
    if (vm[k]["mode"] == "File" && !vm[k].contains("file")) e.push_back(absl::StrCat(k, ": File needs file"));
    if (vm[k]["mode"] == "Socket" && !vm[k].contains("socket")) {
      e.push_back(absl::StrCat(k, ": Socket needs socket"));
    }
  }
  return e;
}

TEST(VmConfigSchema, TheCopyRecordsItsSourceAndIsCurrent) {
  const json& schema = ChSchema();
  ASSERT_FALSE(schema.is_discarded()) << "harness/vmm/testdata/ch_vmconfig_schema.json unreadable";
  const json& src = schema["x-kiln-source"];
  EXPECT_EQ(src["path"], "vmm/src/api/openapi/cloud-hypervisor.yaml");
  EXPECT_EQ(src["commit"].get<std::string>().size(), 40u);
  const json& props = schema["components"]["schemas"]["VmConfig"]["properties"];
  for (const char* k : {"payload", "cpus", "memory", "disks", "serial", "console", "rng", "vsock",
                        "rtc", "generic_vhost_user", "user_devices", "landlock_rules"}) {
    EXPECT_TRUE(props.contains(k)) << k;
  }
  EXPECT_FALSE(props.contains("sgx_epc"));  // SGX was removed in CH v48
}

TEST(VmConfigSchema, AcceptsKilnsBodyAndRejectsAMisspeltKey) {
  TempDir t;
  VmConfig c = BaseConfig(t.path());
  c.channel = Channel{"agent", "/tmp/v.sock", 3, 1024};
  ASSERT_OK_AND_ASSIGN(json good, CloudHypervisorVmConfigJson(c, CloudHypervisorPathsFor(c, "/s")));
  ASSERT_THAT(SchemaErrors(good), IsEmpty()) << good.dump(2);
  struct Typo {
    const char* name;
    void (*apply)(json&);
    const char* error;
  };
  const Typo typos[] = {
      {"disk for disks", [](json& j) { j["disk"] = j["disks"]; j.erase("disks"); }, "disk: unknown key"},
      {"initrd for initramfs",
       [](json& j) { j["payload"]["initrd"] = j["payload"]["initramfs"]; j["payload"].erase("initramfs"); },
       "payload.initrd: unknown key"},
      {"read_only for readonly", [](json& j) { j["disks"][0]["read_only"] = true; },
       "disks[0].read_only: unknown key"},
      {"path for file", [](json& j) { j["serial"]["path"] = "/x"; }, "serial.path: unknown key"},
      {"socket_path", [](json& j) { j["vsock"]["socket_path"] = "/x"; }, "vsock.socket_path: unknown key"},
      {"removed sgx_epc", [](json& j) { j["sgx_epc"] = json::array(); }, "sgx_epc: unknown key"},
  };
  for (const Typo& k : typos) {
    SCOPED_TRACE(k.name);
    json bad = good;
    k.apply(bad);
    EXPECT_THAT(SchemaErrors(bad), Contains(HasSubstr(k.error)));
  }
  // A key kiln does not send yet is valid CH but not in the copy: the test says what to do.
  json net = good;
  net["net"] = json::array({{{"tap", "tap0"}}});
  EXPECT_THAT(SchemaErrors(net), Contains(HasSubstr("NetConfig is a placeholder")));
  // Valid keys CH has today pass.
  json more = good;
  more["watchdog"] = true;
  more["memory"]["thp"] = false;
  more["disks"][0]["image_type"] = "Raw";
  EXPECT_THAT(SchemaErrors(more), IsEmpty());
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

// Handler: as CH: 200 to ping and vmm.shutdown, `overrides` by endpoint, else 204; vm.info
// says Running.
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
    } else if (ep == "vmm.shutdown") {
      resp.status = 200;  // CH answers 200, not the 204 of its API document
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
  EXPECT_THAT(SchemaErrors(json::parse(server_->requests()[1].body)), IsEmpty());
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
  // CH's body: the error chain as a JSON array (vmm/src/api/http/mod.rs error_response).
  FakeHttpResponse boom{
      .status = 500,
      .body = R"(["Error from API","The VM could not boot","Cannot open kernel file",)"
              R"j("No such file or directory (os error 2)"])j"};
  EXPECT_THAT(BootWith(Scripted({{"vm.boot", boom}})),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("PUT vm.boot: HTTP 500: Error from API: The VM could not boot: "
                                 "Cannot open kernel file: No such file or directory (os error 2)")));
  EXPECT_THAT(Sequence(), ElementsAre("GET vmm.ping", "PUT vm.create", "PUT vm.boot",
                                      "PUT vm.shutdown", "PUT vmm.shutdown"));
}

TEST_F(BootTest, VmInfoWithoutAVmIsNotFound) {
  FakeHttpResponse none{
      .status = 404,
      .body = R"(["Error from API","The VM info is not available","VM is not created"])"};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, BootWith(Scripted({{"vm.info", none}})));
  auto* ch = dynamic_cast<CloudHypervisorVm*>(vm.get());
  ASSERT_NE(ch, nullptr);
  EXPECT_THAT(ch->State(), StatusIs(absl::StatusCode::kNotFound,
                                    HasSubstr("HTTP 404: Error from API: The VM info is not "
                                              "available: VM is not created")));
}

TEST(ChApiErrorText, ChArraysOtherShapesAndHostileBodies) {
  struct Row {
    std::string body;
    std::string text;
  };
  const Row rows[] = {
      {R"(["Error from API","The VM could not boot","Cannot open kernel file"])",
       "Error from API: The VM could not boot: Cannot open kernel file"},
      {R"(["Not Found"])", "Not Found"},
      {R"({"error":"fake: boot failed"})", "fake: boot failed"},
      {R"([])", "[]"},                       // not CH's shape: shown as is
      {R"(["a",1])", R"(["a",1])"},
      {R"({"message":"x"})", R"({"message":"x"})"},
      {"Error from API: InvalidPayload\n", "Error from API: InvalidPayload"},
      {"", "(empty body)"},
      {"  \n", "(empty body)"},
      {"line1\nline2\x1b[31m", "line1\\nline2\\x1b[31m"},  // no raw control characters
      {R"(["a\nb"])", "a\\nb"},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.body);
    EXPECT_EQ(ChApiErrorText(r.body), r.text);
  }
  const std::string huge = json::array({std::string(10000, 'x')}).dump();
  EXPECT_LE(ChApiErrorText(huge).size(), 2003u);
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

// CH's muxer drops an unanswered CONNECT after kChVsockConnectRequestTimeoutMs; kiln's own
// per-attempt timeout is deliberately longer, so CH's drop decides (and a reply that comes late
// in CH's window is still taken).
TEST(HybridVsockRetry, DefaultAttemptOutlastsChsRequestTimeout) {
  EXPECT_EQ(kChVsockConnectRequestTimeoutMs, 2000);
  EXPECT_GE(HybridVsockRetry().attempt_timeout_ms, kChVsockConnectRequestTimeoutMs + 500);
}

TEST(HybridVsockRetry, ChDropsAnUnansweredConnectAfter2000ms) {
  TempDir t;
  const std::string sock = t.path() + "/vsock.sock";
  // As CH with a guest that answers each request only at the very end of CH's window: the
  // first is dropped at 2000 ms (closed), the second answered at 2000 ms.
  FakeVsockServer ch(sock, {"", "OK 5\n"},
                     absl::Milliseconds(kChVsockConnectRequestTimeoutMs));
  std::vector<absl::Status> errors;
  HybridVsockRetry retry;
  retry.attempt_errors = &errors;
  const absl::Time before = absl::Now();
  ASSERT_OK_AND_ASSIGN(auto s,
                       ConnectHybridVsockWithRetry(sock, 1024, absl::Seconds(10), kAlive, retry));
  EXPECT_GE(absl::Now() - before, absl::Milliseconds(2 * kChVsockConnectRequestTimeoutMs));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  EXPECT_EQ(ch.received().size(), 2u);
}

TEST(HybridVsockRetry, AnAnswerLateInChsWindowIsTaken) {
  TempDir t;
  const std::string sock = t.path() + "/vsock.sock";
  // A slow guest answers 1500 ms after the CONNECT, inside CH's 2000 ms window: the first
  // attempt gets it (a per-attempt timeout below that would abandon every such request).
  FakeVsockServer ch(sock, {"OK 5\n"}, absl::Milliseconds(1500));
  std::vector<absl::Status> errors;
  HybridVsockRetry retry;
  retry.attempt_errors = &errors;
  EXPECT_THAT(ConnectHybridVsockWithRetry(sock, 1024, absl::Seconds(10), kAlive, retry), IsOk());
  EXPECT_THAT(errors, IsEmpty());
  EXPECT_EQ(ch.received().size(), 1u);
}

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

// Snapshot/restore request shapes (CH docs/snapshot_restore.md, VmSnapshotConfig).
TEST(ChSnapshotTest, RequestBodyAndRestoreArgv) {
  ASSERT_OK_AND_ASSIGN(std::string body, ChSnapshotRequestBody("/var/snap/k1"));
  EXPECT_EQ(nlohmann::json::parse(body),
            nlohmann::json({{"destination_url", "file:///var/snap/k1"}}));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> argv,
                       ChRestoreArgv("/bin/ch", "/w/ch-api.sock", "/var/snap/k1"));
  EXPECT_THAT(argv, ::testing::ElementsAre("/bin/ch", "--api-socket", "/w/ch-api.sock",
                                           "--restore", "source_url=file:///var/snap/k1"));
}

TEST(ChSnapshotTest, BadDirIsInvalidArgument) {
  EXPECT_THAT(ChSnapshotRequestBody("relative/dir"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(ChSnapshotRequestBody(""), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(ChRestoreArgv("ch", "/s", "/a,prefault=on"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(ChFileUrl(std::string("/a") + char(10) + "b"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(ChFileUrl("/a/b"), IsOk());
}

TEST(ChSnapshotTest, RewriteConfigForTheNewVm) {
  VmConfig c;
  c.id = "r1";
  c.vcpus = 2;
  c.memory_mib = 512;
  c.work_dir = "/w/r1";
  c.channel = Channel{.host_socket_path = "/w/r1/vsock.sock", .vsock_cid = 7};
  CloudHypervisorPaths paths = CloudHypervisorPathsFor(c, "/w/r1");
  nlohmann::json snap = {{"cpus", {{"boot_vcpus", 2}, {"max_vcpus", 2}}},
                         {"memory", {{"size", int64_t{512} << 20}}},
                         {"serial", {{"mode", "File"}, {"file", "/old/serial.log"}}},
                         {"vsock", {{"cid", 3}, {"socket", "/old/vsock.sock"}}}};
  ASSERT_OK_AND_ASSIGN(nlohmann::json j, RewriteChSnapshotConfig(snap, c, paths));
  EXPECT_EQ(j["serial"]["file"], "/w/r1/serial.log");
  EXPECT_EQ(j["vsock"]["socket"], "/w/r1/vsock.sock");
  EXPECT_EQ(j["vsock"]["cid"], 7);
  EXPECT_EQ(j["serial"]["mode"], "File");

  VmConfig more = c;
  more.memory_mib = 1024;
  EXPECT_THAT(RewriteChSnapshotConfig(snap, more, paths),
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::HasSubstr("cannot change")));
  VmConfig no_channel = c;
  no_channel.channel.reset();
  EXPECT_THAT(RewriteChSnapshotConfig(snap, no_channel, paths),
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::HasSubstr("vsock")));
  EXPECT_THAT(RewriteChSnapshotConfig(nlohmann::json::array(), c, paths),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(ChSnapshotTest, PrepareRestoreDirMissingSnapshotIsNotFound) {
  const std::string tmp = absl::StrCat(getenv("TEST_TMPDIR"), "/prep");
  VmConfig c;
  c.vcpus = 1;
  c.memory_mib = 64;
  c.work_dir = tmp;
  EXPECT_THAT(PrepareChRestoreDir(tmp + "/no-such-snapshot", tmp + "/restore", c,
                                  CloudHypervisorPathsFor(c, tmp)),
              StatusIs(absl::StatusCode::kNotFound, ::testing::HasSubstr("no config.json")));
}

}  // namespace
}  // namespace kiln::harness
