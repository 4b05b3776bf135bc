// File: harness/vmm/snapshot_qmp_test.cc
// The QMP snapshot code: which migration features a QEMU offers, the save URI, and the request
// sequences of a save and a restore (stream and file RAM modes) against a scripted QMP server
// on a real unix socket.
#include "harness/vmm/snapshot_qmp.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using nlohmann::json;

json Greeting(int major, int minor) {
  return json::parse(absl::StrCat(R"({"QMP": {"version": {"qemu": {"micro": 22, "minor": )",
                                  minor, R"(, "major": )", major,
                                  R"(}, "package": "Debian"}, "capabilities": ["oob"]}})"));
}

TEST(MigrationFeaturesTest, Qemu72HasNeitherFileNorMappedRam) {
  // What QEMU 7.2.22 here answers (abridged).
  const json caps = json::parse(
      R"([{"state": false, "capability": "xbzrle"}, {"state": false, "capability": "x-ignore-shared"}])");
  MigrationFeatures f = MigrationFeaturesFrom(Greeting(7, 2), caps);
  EXPECT_EQ(f.major, 7);
  EXPECT_EQ(f.minor, 2);
  EXPECT_EQ(f.micro, 22);
  EXPECT_FALSE(f.file_uri);
  EXPECT_FALSE(f.mapped_ram);
  EXPECT_TRUE(f.ignore_shared);
  EXPECT_EQ(ChooseSaveUri(f, "/c/k/state"), "exec:cat > '/c/k/state'");
}

TEST(MigrationFeaturesTest, NewerQemuUsesFileAndReportsMappedRam) {
  const json caps = json::parse(R"([{"state": false, "capability": "mapped-ram"}])");
  MigrationFeatures f = MigrationFeaturesFrom(Greeting(9, 1), caps);
  EXPECT_TRUE(f.file_uri);
  EXPECT_TRUE(f.mapped_ram);
  EXPECT_EQ(ChooseSaveUri(f, "/c/k/state"), "file:/c/k/state");
  EXPECT_TRUE(MigrationFeaturesFrom(Greeting(8, 2), json::array()).file_uri);
  EXPECT_FALSE(MigrationFeaturesFrom(Greeting(8, 1), json::array()).file_uri);
}

TEST(MigrationFeaturesTest, MissingFieldsLeaveDefaults) {
  MigrationFeatures f = MigrationFeaturesFrom(json::object(), json::object());
  EXPECT_EQ(f.major, 0);
  EXPECT_FALSE(f.file_uri);
  EXPECT_FALSE(f.mapped_ram);
  EXPECT_FALSE(f.ignore_shared);
}

TEST(QmpArgsTest, Shapes) {
  EXPECT_EQ(SetCapabilityArgs("x-ignore-shared", true),
            json::parse(R"({"capabilities": [{"capability": "x-ignore-shared", "state": true}]})"));
  VmConfig c;
  c.restore_from = "/c/k/state";
  EXPECT_EQ(MigrateIncomingArgs(c), json::parse(R"({"uri": "exec:cat '/c/k/state'"})"));
}

// FakeQmp: a QMP server on a unix socket that answers one client from a script and records
// every request ({"execute", "arguments"}), like QEMU 7.2 does for these commands.
class FakeQmp {
 public:
  explicit FakeQmp(json capabilities) : capabilities_(std::move(capabilities)) {
    char dir[] = "/tmp/kiln-fakeqmp-XXXXXX";
    EXPECT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/qmp.sock";
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path_.c_str());
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(listen_fd_, 1), 0);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeQmp() {
    thread_.join();
    close(listen_fd_);
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  const std::string& path() const { return path_; }
  // requests(): valid after the client is done (the destructor joined, or quit was sent).
  std::vector<json> Requests() {
    thread_.join();
    thread_ = std::thread([] {});
    return requests_;
  }

 private:
  void Serve() {
    const int fd = accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) return;
    auto send_line = [fd](const json& j) {
      const std::string line = j.dump() + "\n";
      (void)!write(fd, line.data(), line.size());
    };
    send_line(json::parse(
        R"({"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}})"));
    std::string buf;
    char chunk[4096];
    while (true) {
      const size_t nl = buf.find('\n');
      if (nl == std::string::npos) {
        const ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n <= 0) break;
        buf.append(chunk, static_cast<size_t>(n));
        continue;
      }
      json req = json::parse(buf.substr(0, nl));
      buf.erase(0, nl + 1);
      requests_.push_back(req);
      const std::string cmd = req.value("execute", std::string());
      json ret = json::object();
      if (cmd == "query-migrate-capabilities") ret = capabilities_;
      if (cmd == "query-migrate") {
        ret = json::parse(R"({"status": "completed", "ram": {"transferred": 532480}})");
      }
      if (cmd == "query-status") ret = json::parse(R"({"status": "paused", "running": false})");
      // An event in between, as QEMU sends them.
      send_line(json::parse(R"({"event": "MIGRATION", "data": {"status": "active"}})"));
      send_line({{"return", ret}});
      if (cmd == "quit" || cmd == "cont") break;
    }
    close(fd);
  }

  json capabilities_;
  std::string dir_, path_;
  int listen_fd_ = -1;
  std::thread thread_;
  std::vector<json> requests_;
};

std::vector<std::string> Commands(const std::vector<json>& requests) {
  std::vector<std::string> out;
  for (const json& r : requests) out.push_back(r.value("execute", std::string()));
  return out;
}

const json kQemu72Caps = json::parse(
    R"([{"state": false, "capability": "xbzrle"}, {"state": false, "capability": "x-ignore-shared"}])");

TEST(SaveQemuSnapshotTest, FileModeSetsIgnoreSharedBeforeMigrate) {
  FakeQmp qmp(kQemu72Caps);
  const std::string state = qmp.path() + ".state";
  std::FILE* f = std::fopen(state.c_str(), "w");  // what `exec:cat >` would have written
  std::fputs("QEVM", f);
  std::fclose(f);
  absl::StatusOr<SaveStats> s =
      SaveQemuSnapshot(qmp.path(), state, absl::Seconds(10), SnapshotRam::kFile);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->ram, SnapshotRam::kFile);
  EXPECT_EQ(s->ram_stream_bytes, 532480u);
  EXPECT_EQ(s->state_bytes, 4u);
  const std::vector<json> r = qmp.Requests();
  EXPECT_THAT(Commands(r), ::testing::ElementsAre(
                               "qmp_capabilities", "query-migrate-capabilities", "stop",
                               "migrate-set-capabilities", "migrate-set-parameters", "migrate",
                               "query-migrate", "quit"));
  EXPECT_EQ(r[3]["arguments"], SetCapabilityArgs("x-ignore-shared", true));
  EXPECT_EQ(r[5]["arguments"]["uri"], absl::StrCat("exec:cat > '", state, "'"));
  unlink(state.c_str());
}

TEST(SaveQemuSnapshotTest, StreamModeSetsNoCapability) {
  FakeQmp qmp(kQemu72Caps);
  const std::string state = qmp.path() + ".state";
  std::fclose(std::fopen(state.c_str(), "w"));
  absl::StatusOr<SaveStats> s = SaveQemuSnapshot(qmp.path(), state, absl::Seconds(10));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->ram, SnapshotRam::kStream);
  EXPECT_THAT(Commands(qmp.Requests()),
              ::testing::ElementsAre("qmp_capabilities", "query-migrate-capabilities", "stop",
                                     "migrate-set-parameters", "migrate", "query-migrate",
                                     "quit"));
  unlink(state.c_str());
}

TEST(SaveQemuSnapshotTest, FileModeWithoutIgnoreSharedIsRefusedBeforeStop) {
  FakeQmp qmp(json::parse(R"([{"state": false, "capability": "xbzrle"}])"));
  absl::StatusOr<SaveStats> s =
      SaveQemuSnapshot(qmp.path(), "/nonexistent/state", absl::Seconds(10), SnapshotRam::kFile);
  EXPECT_THAT(s.status(), kiln_testing::StatusIs(absl::StatusCode::kFailedPrecondition,
                                                 ::testing::HasSubstr("x-ignore-shared")));
  // The client closes; the fake ends. Nothing was stopped or migrated.
  EXPECT_THAT(Commands(qmp.Requests()),
              ::testing::ElementsAre("qmp_capabilities", "query-migrate-capabilities"));
}

TEST(ResumeQemuVmTest, FileModeStartsTheDeferredIncomingMigration) {
  FakeQmp qmp(kQemu72Caps);
  VmConfig c;
  c.control_socket_path = qmp.path();
  c.restore_from = "/c/k/state";
  c.memory_file = "/c/k/ram";
  c.memory_file_shared = false;
  ASSERT_TRUE(QemuIncomingDeferred(c));
  absl::StatusOr<absl::Duration> d = ResumeQemuVm(c, absl::Seconds(10));
  ASSERT_TRUE(d.ok()) << d.status();
  const std::vector<json> r = qmp.Requests();
  EXPECT_THAT(Commands(r), ::testing::ElementsAre("qmp_capabilities", "migrate-set-capabilities",
                                                  "migrate-incoming", "query-status", "cont"));
  EXPECT_EQ(r[1]["arguments"], SetCapabilityArgs("x-ignore-shared", true));
  EXPECT_EQ(r[2]["arguments"], json::parse(R"({"uri": "exec:cat '/c/k/state'"})"));
}

TEST(ResumeQemuVmTest, StreamModeOnlyWaitsAndContinues) {
  FakeQmp qmp(kQemu72Caps);
  VmConfig c;
  c.control_socket_path = qmp.path();
  c.restore_from = "/c/k/state";
  absl::StatusOr<absl::Duration> d = ResumeQemuVm(c, absl::Seconds(10));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(Commands(qmp.Requests()),
              ::testing::ElementsAre("qmp_capabilities", "query-status", "cont"));
}

}  // namespace
}  // namespace kiln::harness
