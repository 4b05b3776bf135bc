// File: harness/keep/keep_store_test.cc
// KeepStore with a temp state dir and real child processes (`sleep` stands in for a VMM).
#include "harness/keep/keep_store.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// A `sleep` in its own process group, like the VMM (agent/process: setpgid at spawn).
pid_t SpawnSleeper() {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    ::execl("/bin/sleep", "sleep", "1000", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  return pid;
}

ProcessIdentity Identify(pid_t pid) {
  absl::StatusOr<ProcessIdentity> id = IdentifyProcess(pid);
  EXPECT_OK(id);
  return id.ok() ? *id : ProcessIdentity{pid, 0};
}

// Reaps `pid` (our child) within 5 s; returns the wait status or -1.
int Reap(pid_t pid) {
  for (int i = 0; i < 500; ++i) {
    int st = 0;
    if (::waitpid(pid, &st, WNOHANG) == pid) return st;
    ::usleep(10000);
  }
  return -1;
}

class KeepStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/keep-store-test-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    ASSERT_FALSE(root_.empty());
  }
  void TearDown() override {
    for (pid_t p : children_) {
      ::kill(-p, SIGKILL);
      ::waitpid(p, nullptr, 0);
    }
    std::filesystem::remove_all(root_);
  }

  KeepRecord Record(const std::string& id, pid_t vmm, absl::Time created) {
    KeepRecord r;
    r.id = id;
    r.vmm = "qemu";
    r.vmm_process = Identify(vmm);
    r.owner = Identify(::getpid());
    r.work_dir = absl::StrCat(root_, "/work/", id);
    std::filesystem::create_directories(r.work_dir);
    r.channel_socket = r.work_dir + "/agent.sock";
    r.serial_log = r.work_dir + "/serial.log";
    std::ofstream(r.serial_log) << "KILN-INIT: ready\n";
    std::ofstream(r.channel_socket) << "";  // stands in for the socket
    EXPECT_OK(WriteKeepMarker(r));
    r.job_summary = "job fail-1 (Dockerfile)";
    r.failure = "RUN exit 1";
    r.created = created;
    r.expires = created + absl::Minutes(30);
    return r;
  }

  pid_t Child() {
    pid_t p = SpawnSleeper();
    children_.push_back(p);
    return p;
  }

  std::string root_;
  std::vector<pid_t> children_;
  absl::Time t0_ = absl::FromUnixSeconds(1700000000);
};

TEST(ProcStatTest, ParsesStartTimeAfterCommWithSpacesAndParens) {
  std::string stat = "1234 (we) ird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 "
                     "987654 1000 200 18446744073709551615";
  ASSERT_OK_AND_ASSIGN(auto p, ParseProcStat(stat));
  EXPECT_EQ(p.first, 987654u);
  EXPECT_EQ(p.second, 'S');
}

TEST(ProcStatTest, RejectsMalformed) {
  EXPECT_THAT(ParseProcStat("1234 noparen S 1"), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(ParseProcStat("1 (x) S 1 2"), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(ParseProcStat("1 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 abc"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("starttime")));
}

TEST(ProcessTest, StartTimeDefendsAgainstPidReuse) {
  ProcessIdentity self = Identify(::getpid());
  EXPECT_TRUE(ProcessAlive(self));
  ProcessIdentity reused = self;
  reused.start_ticks += 1;
  EXPECT_FALSE(ProcessAlive(reused));
  EXPECT_FALSE(ProcessAlive({0, 0}));
}

TEST(ProcessTest, ZombieIsNotAlive) {
  pid_t p = ::fork();
  if (p == 0) ::_exit(0);
  ::usleep(200000);
  EXPECT_THAT(IdentifyProcess(p), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  ::waitpid(p, nullptr, 0);
}

// MinimalRecord(vmm): the smallest valid record (id "a", no work dir), for the pure tests.
KeepRecord MinimalRecord(const std::string& vmm) {
  KeepRecord r;
  r.id = "a";
  r.vmm = vmm;
  r.vmm_process = {5, 6};
  r.channel_socket = "/s";
  r.serial_log = "/l";
  return r;
}

TEST(RecordTest, JsonRoundTrip) {
  KeepRecord r;
  r.id = "builder-secrets";
  r.state = KeepState::kBuilding;
  r.vmm = "qemu";
  r.vmm_process = {4242, 123456789};
  r.owner = {17, 99};
  r.channel_socket = "/tmp/w/builder-secrets/agent.sock";
  r.serial_log = "/tmp/w/builder-secrets/serial.log";
  r.work_dir = "/tmp/w/builder-secrets";
  r.job_summary = "job \"x\"\nwith newline";
  r.failure = "exit 1: ünïcode";
  r.created = absl::FromUnixMillis(1700000000123);
  r.expires = r.created + absl::Minutes(30);
  std::string j = KeepRecordToJson(r);
  EXPECT_THAT(j, HasSubstr("\"created\": \"2023-11-14T22:13:20.123Z\""));
  ASSERT_OK_AND_ASSIGN(KeepRecord back, KeepRecordFromJson(j));
  EXPECT_EQ(back.id, r.id);
  EXPECT_EQ(back.state, KeepState::kBuilding);
  EXPECT_EQ(back.vmm_process, r.vmm_process);
  EXPECT_EQ(back.owner, r.owner);
  EXPECT_EQ(back.job_summary, r.job_summary);
  EXPECT_EQ(back.failure, r.failure);
  EXPECT_EQ(back.created, r.created);
  EXPECT_EQ(back.expires, r.expires);
  EXPECT_EQ(back.channel_transport, ChannelTransport::kVirtioSerial);
  EXPECT_EQ(KeepRecordToJson(back), j);
}

TEST(RecordTest, HybridVsockChannelRoundTrips) {
  KeepRecord r;
  r.id = "builder-ch";
  r.vmm = "cloud-hypervisor";
  r.vmm_process = {4242, 1};
  r.channel_socket = "/tmp/kiln-bc-x/agent.sock";
  r.channel_transport = ChannelTransport::kHybridVsock;
  r.vsock_port = 2048;
  r.serial_log = "/tmp/w/serial.log";
  const std::string j = KeepRecordToJson(r);
  EXPECT_THAT(j, HasSubstr("\"channel_transport\": \"hybrid-vsock\""));
  EXPECT_THAT(j, HasSubstr("\"vsock_port\": 2048"));
  ASSERT_OK_AND_ASSIGN(KeepRecord back, KeepRecordFromJson(j));
  EXPECT_EQ(back.channel_transport, ChannelTransport::kHybridVsock);
  EXPECT_EQ(back.vsock_port, 2048u);
  EXPECT_EQ(back.channel_socket, r.channel_socket);
  EXPECT_EQ(KeepRecordToJson(back), j);
}

// A record written before Cloud Hypervisor support (no channel_transport / vsock_port) still
// reads, as a virtio-serial channel.
TEST(RecordTest, OldRecordWithoutTransportIsVirtioSerial) {
  const std::string old = R"({
  "channel_socket": "/tmp/kiln-bc-abc/agent.sock",
  "created": "2024-05-01T12:00:00.000Z",
  "expires": "2024-05-01T12:30:00.000Z",
  "failure": "job fail-1 exit_status 1",
  "id": "builder-old",
  "job_summary": "job fail-1",
  "owner_pid": 10,
  "owner_start_ticks": 11,
  "serial_log": "/tmp/w/builder-old/serial.log",
  "state": "kept",
  "vmm": "qemu",
  "vmm_pid": 12,
  "vmm_start_ticks": 13,
  "work_dir": "/tmp/w/builder-old"
})";
  ASSERT_OK_AND_ASSIGN(KeepRecord r, KeepRecordFromJson(old));
  EXPECT_EQ(r.channel_transport, ChannelTransport::kVirtioSerial);
  EXPECT_EQ(r.vsock_port, 1024u);
  EXPECT_EQ(r.channel_socket, "/tmp/kiln-bc-abc/agent.sock");
  EXPECT_EQ(r.vmm_process.pid, 12);
}

TEST(RecordTest, BadTransportFieldsAreRefusedByName) {
  KeepRecord r = MinimalRecord("cloud-hypervisor");
  r.channel_transport = ChannelTransport::kHybridVsock;
  const std::string good = KeepRecordToJson(r);
  ASSERT_OK(KeepRecordFromJson(good));
  std::string bad = good;
  bad.replace(bad.find("\"hybrid-vsock\""), 14, "\"carrier-pigeon\"");
  EXPECT_THAT(KeepRecordFromJson(bad), StatusIs(absl::StatusCode::kInvalidArgument,
                                                HasSubstr("carrier-pigeon")));
  bad = good;
  bad.replace(bad.find("\"hybrid-vsock\""), 14, "7");
  EXPECT_THAT(KeepRecordFromJson(bad), StatusIs(absl::StatusCode::kInvalidArgument,
                                                HasSubstr("channel_transport")));
  bad = good;
  bad.replace(bad.find("\"vsock_port\": 1024"), 18, "\"vsock_port\": 4294967296");
  EXPECT_THAT(KeepRecordFromJson(bad), StatusIs(absl::StatusCode::kInvalidArgument,
                                                HasSubstr("vsock_port")));
  bad = good;
  bad.replace(bad.find("\"vsock_port\": 1024"), 18, "\"vsock_port\": -1");
  EXPECT_THAT(KeepRecordFromJson(bad), StatusIs(absl::StatusCode::kInvalidArgument,
                                                HasSubstr("vsock_port")));
}

TEST(RecordTest, BadJsonIsRefusedByName) {
  EXPECT_THAT(KeepRecordFromJson("{"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not valid JSON")));
  EXPECT_THAT(KeepRecordFromJson("[1]"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("object")));
  KeepRecord r = MinimalRecord("qemu");
  std::string good = KeepRecordToJson(r);
  ASSERT_OK(KeepRecordFromJson(good));
  std::string bad_pid = good;
  bad_pid.replace(bad_pid.find("\"vmm_pid\": 5"), 12, "\"vmm_pid\": -5");
  EXPECT_THAT(KeepRecordFromJson(bad_pid), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vmm_pid")));
  std::string bad_id = good;
  bad_id.replace(bad_id.find("\"id\": \"a\""), 9, "\"id\": \"../x\"");
  EXPECT_THAT(KeepRecordFromJson(bad_id), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside")));
  std::string bad_state = good;
  bad_state.replace(bad_state.find("\"kept\""), 6, "\"zombie\"");
  EXPECT_THAT(KeepRecordFromJson(bad_state), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("state")));
  std::string bad_time = good;
  bad_time.replace(bad_time.find("\"never\""), 7, "\"tomorrow\"");
  EXPECT_THAT(KeepRecordFromJson(bad_time), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expires")));
}

TEST(RecordTest, ValidateRefusesDangerousPaths) {
  KeepRecord r = MinimalRecord("qemu");
  EXPECT_OK(ValidateKeepRecord(r));
  r.work_dir = "/";
  EXPECT_THAT(ValidateKeepRecord(r), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("work_dir")));
  r.work_dir = "rel/dir";
  EXPECT_THAT(ValidateKeepRecord(r), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("work_dir")));
  // Only <work root>/<id> holding the serial log: a corrupted record must not aim the
  // recursive removal at another tree.
  r.serial_log = "/w/vms/a/serial.log";
  r.work_dir = "/w/vms/a";
  EXPECT_OK(ValidateKeepRecord(r));
  for (const char* bad : {"/home", "/a", "/w/vms/b", "/w/vms/../a", "/w//a", "/w/./a", "/w/vms/a/"}) {
    r.work_dir = bad;
    EXPECT_THAT(ValidateKeepRecord(r), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("work_dir")))
        << bad;
  }
  r.work_dir = "/w/vms/a";
  r.serial_log = "/w/vms/other/serial.log";
  EXPECT_THAT(ValidateKeepRecord(r), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("serial_log")));
  r.serial_log = "/l";
  r.work_dir = "";
  r.channel_socket = "agent.sock";
  EXPECT_THAT(ValidateKeepRecord(r), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("channel_socket")));
  EXPECT_THAT(ValidateKeepId(".."), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(ValidateKeepId(std::string(129, 'a')), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

// Cloud Hypervisor's short API socket dir travels with the record (optional field) and must be
// one of kiln's /tmp/kiln-ch-XXXXXX dirs: a record cannot aim the cleanup elsewhere.
TEST(RecordTest, VmmSocketDirRoundTripsAndIsValidated) {
  KeepRecord r = MinimalRecord("cloud-hypervisor");
  EXPECT_THAT(KeepRecordToJson(r), ::testing::Not(HasSubstr("vmm_socket_dir")));
  r.vmm_socket_dir = "/tmp/kiln-ch-Ab12Cd";
  const std::string j = KeepRecordToJson(r);
  EXPECT_THAT(j, HasSubstr("\"vmm_socket_dir\": \"/tmp/kiln-ch-Ab12Cd\""));
  ASSERT_OK_AND_ASSIGN(KeepRecord back, KeepRecordFromJson(j));
  EXPECT_EQ(back.vmm_socket_dir, r.vmm_socket_dir);
  for (const char* bad : {"/tmp", "/etc", "/tmp/kiln-ch-", "/tmp/kiln-ch-Ab12C", "/tmp/kiln-ch-Ab12Cde",
                          "/tmp/kiln-ch-../etc", "/tmp/kiln-ch-Ab12Cd/", "/tmp/kiln-ch-Ab.2Cd",
                          "tmp/kiln-ch-Ab12Cd"}) {
    r.vmm_socket_dir = bad;
    EXPECT_THAT(ValidateKeepRecord(r),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vmm_socket_dir")))
        << bad;
  }
  std::string hostile = j;
  hostile.replace(hostile.find("/tmp/kiln-ch-Ab12Cd"), 19, "/home/user/.ssh");
  EXPECT_THAT(KeepRecordFromJson(hostile),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vmm_socket_dir")));
}

TEST(PlanReapTest, ReasonsAndCapOldestFirst) {
  absl::Time t = absl::FromUnixSeconds(1000);
  auto rec = [&](std::string id, KeepState s, int created_min) {
    KeepRecord r;
    r.id = std::move(id);
    r.state = s;
    r.created = t + absl::Minutes(created_min);
    r.expires = r.created + absl::Minutes(30);
    return r;
  };
  std::vector<KeepRecord> rs = {
      rec("dead", KeepState::kKept, 0),      rec("orphan", KeepState::kBuilding, 1),
      rec("old", KeepState::kKept, 2),       rec("mid", KeepState::kKept, 20),
      rec("new", KeepState::kKept, 25),      rec("building", KeepState::kBuilding, 26),
  };
  std::vector<RecordLiveness> l = {{false, true}, {true, false}, {true, true},
                                   {true, true},  {true, true},  {true, true}};
  // now = t+40min: "old" (expires t+32) is expired; mid/new stay; cap 1 -> "mid" over cap.
  EXPECT_THAT(PlanReap(rs, l, t + absl::Minutes(40), 1),
              ElementsAre(ReapDecision{"dead", "vm-dead"}, ReapDecision{"orphan", "orphan"},
                          ReapDecision{"old", "expired"}, ReapDecision{"mid", "over-cap"}));
  EXPECT_THAT(PlanReap(rs, l, t + absl::Minutes(40), -1),
              ElementsAre(ReapDecision{"dead", "vm-dead"}, ReapDecision{"orphan", "orphan"},
                          ReapDecision{"old", "expired"}));
  // Liveness shorter than records: missing ones count as dead.
  EXPECT_THAT(PlanReap(rs, {}, t, -1).size(), 6u);
}

TEST_F(KeepStoreTest, PutListGetAndAtomicFile) {
  KeepStore store(root_ + "/state");
  pid_t vmm = Child();
  KeepRecord r = Record("b1", vmm, t0_);
  ASSERT_OK(store.Put(r));
  // Exactly the record file (+ the lock), no temp file left.
  std::vector<std::string> names;
  for (auto& e : std::filesystem::directory_iterator(root_ + "/state")) {
    names.push_back(e.path().filename());
  }
  std::sort(names.begin(), names.end());
  EXPECT_THAT(names, ElementsAre(".lock", "b1.json"));
  ASSERT_OK_AND_ASSIGN(KeepListing l, store.List(t0_));
  ASSERT_EQ(l.records.size(), 1u);
  EXPECT_EQ(l.records[0].id, "b1");
  EXPECT_THAT(l.cleaned, IsEmpty());
  ASSERT_OK_AND_ASSIGN(KeepRecord g, store.Get("b1", t0_ + absl::Minutes(1)));
  EXPECT_EQ(g.vmm_process.pid, vmm);
}

TEST_F(KeepStoreTest, UnknownExpiredAndMalformedIdsGetClearErrors) {
  KeepStore store(root_ + "/state");
  EXPECT_THAT(store.Get("nope", t0_), StatusIs(absl::StatusCode::kNotFound, HasSubstr("no kept builder \"nope\"")));
  EXPECT_THAT(store.Get("../etc", t0_), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(store.Remove("nope", {}), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  ASSERT_OK(store.Put(Record("b1", Child(), t0_)));
  EXPECT_THAT(store.Get("b1", t0_ + absl::Minutes(31)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("expired at")));
}

TEST_F(KeepStoreTest, DeadVmIsDetectedAndCleanedByList) {
  KeepStore store(root_ + "/state");
  pid_t vmm = SpawnSleeper();
  KeepRecord r = Record("b1", vmm, t0_);
  ASSERT_OK(store.Put(r));
  ::kill(vmm, SIGKILL);
  Reap(vmm);
  ASSERT_OK_AND_ASSIGN(KeepListing l, store.List(t0_));
  EXPECT_THAT(l.records, IsEmpty());
  EXPECT_THAT(l.cleaned, ElementsAre(ReapDecision{"b1", "vm-dead"}));
  EXPECT_FALSE(std::filesystem::exists(r.work_dir));
  EXPECT_FALSE(std::filesystem::exists(root_ + "/state/b1.json"));
}

TEST_F(KeepStoreTest, GetOfADeadVmSaysGone) {
  KeepStore store(root_ + "/state");
  pid_t vmm = SpawnSleeper();
  ASSERT_OK(store.Put(Record("b1", vmm, t0_)));
  ::kill(vmm, SIGKILL);
  Reap(vmm);
  EXPECT_THAT(store.Get("b1", t0_), StatusIs(absl::StatusCode::kNotFound, HasSubstr("is gone")));
  EXPECT_THAT(store.Get("b1", t0_), StatusIs(absl::StatusCode::kNotFound, HasSubstr("no kept builder")));
}

TEST_F(KeepStoreTest, ReusedPidIsNeverSignaled) {
  KeepStore store(root_ + "/state");
  pid_t vmm = Child();
  KeepRecord r = Record("b1", vmm, t0_);
  r.vmm_process.start_ticks += 7;  // "another process now has this pid"
  ASSERT_OK(store.Put(r));
  ASSERT_OK_AND_ASSIGN(std::vector<ReapDecision> d, store.Gc(t0_, {}));
  EXPECT_THAT(d, ElementsAre(ReapDecision{"b1", "vm-dead"}));
  EXPECT_TRUE(ProcessAlive(Identify(vmm)));  // untouched
}

TEST_F(KeepStoreTest, RemoveAsksCleanShutdownThenSignalsTheGroup) {
  KeepStore store(root_ + "/state");
  pid_t vmm = SpawnSleeper();
  KeepRecord r = Record("b1", vmm, t0_);
  ASSERT_OK(store.Put(r));
  int asked = 0;
  TeardownOptions o;
  o.clean_shutdown = [&](const KeepRecord& k) {
    ++asked;
    EXPECT_EQ(k.id, "b1");
    return absl::UnavailableError("agent unreachable");  // signals follow at once
  };
  o.clean_grace = absl::Seconds(30);  // not waited: the power-off could not be asked
  const absl::Time start = absl::Now();
  ASSERT_OK(store.Remove("b1", o));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(asked, 1);
  int st = Reap(vmm);
  ASSERT_NE(st, -1);
  EXPECT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(WTERMSIG(st), SIGTERM);
  EXPECT_FALSE(std::filesystem::exists(r.channel_socket));
  EXPECT_FALSE(std::filesystem::exists(r.work_dir));
  EXPECT_THAT(store.Get("b1", t0_), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

// MakeSocketFile(path): leaves a unix socket file at `path` (bound, then closed).
void MakeSocketFile(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << path;
  ::close(fd);
}

// A kept Cloud Hypervisor builder whose API socket lives in a short /tmp/kiln-ch-XXXXXX dir:
// the teardown removes the socket, the empty .lock CH leaves beside it, and the dir; a dir
// holding anything else keeps that (and the dir), and the teardown still succeeds.
TEST_F(KeepStoreTest, RemoveCleansTheVmmSocketDir) {
  KeepStore store(root_ + "/state");
  char t1[] = "/tmp/kiln-ch-XXXXXX";
  const std::string dir = ::mkdtemp(t1);
  MakeSocketFile(dir + "/ch-api.sock");
  std::ofstream(dir + "/ch-api.sock.lock").close();
  pid_t vmm = SpawnSleeper();
  KeepRecord r = Record("b1", vmm, t0_);
  r.vmm_socket_dir = dir;
  ASSERT_OK(store.Put(r));
  ASSERT_OK(store.Remove("b1", {}));
  Reap(vmm);
  EXPECT_FALSE(std::filesystem::exists(dir)) << dir << " left behind";

  char t2[] = "/tmp/kiln-ch-XXXXXX";
  const std::string other = ::mkdtemp(t2);
  MakeSocketFile(other + "/ch-api.sock");
  std::ofstream(other + "/notes.txt") << "not the VMM's";
  std::ofstream(other + "/x.sock.lock") << "not empty: not CH's lock";
  pid_t vmm2 = SpawnSleeper();
  KeepRecord r2 = Record("b2", vmm2, t0_);
  r2.vmm_socket_dir = other;
  ASSERT_OK(store.Put(r2));
  ASSERT_OK(store.Remove("b2", {}));
  Reap(vmm2);
  EXPECT_FALSE(std::filesystem::exists(other + "/ch-api.sock"));
  EXPECT_TRUE(std::filesystem::exists(other + "/notes.txt"));
  EXPECT_TRUE(std::filesystem::exists(other + "/x.sock.lock"));
  std::filesystem::remove_all(other);
}

TEST_F(KeepStoreTest, SigtermIgnoredMeansSigkillAfterGrace) {
  KeepStore store(root_ + "/state");
  pid_t vmm = ::fork();
  if (vmm == 0) {
    ::setpgid(0, 0);
    ::signal(SIGTERM, SIG_IGN);
    ::execl("/bin/sleep", "sleep", "1000", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::setpgid(vmm, vmm);
  ::usleep(100000);
  ASSERT_OK(store.Put(Record("stubborn", vmm, t0_)));
  TeardownOptions o;
  o.term_grace = absl::Milliseconds(300);
  absl::Time start = absl::Now();
  ASSERT_OK(store.Remove("stubborn", o));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));
  int st = Reap(vmm);
  ASSERT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(WTERMSIG(st), SIGKILL);
}

// A record is data anyone with write access to the state dir could have edited: it must not
// aim signals or deletions at what is not its builder's.
TEST_F(KeepStoreTest, HostileRecordsCannotSignalInitOrDeleteOtherFiles) {
  KeepStore store(root_ + "/state");
  // pid 1: refused by validation, and by the teardown itself.
  KeepRecord init = Record("init", Child(), t0_);
  init.vmm_process = {1, 1};
  EXPECT_THAT(store.Put(init), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vmm_pid")));
  EXPECT_THAT(TeardownVmm(init, {}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("pid 1")));

  // A dead VMM whose record names a regular file as its socket and a work dir without the
  // marker (another tree): the record goes, the files stay.
  pid_t gone = Child();
  KeepRecord r = Record("b1", gone, t0_);
  const std::string victim_dir = root_ + "/victim/b1";
  std::filesystem::create_directories(victim_dir);
  std::ofstream(victim_dir + "/thesis.txt") << "years of work";
  std::ofstream(root_ + "/important.txt") << "keep me";
  r.channel_socket = root_ + "/important.txt";
  r.work_dir = victim_dir;
  r.serial_log = victim_dir + "/serial.log";
  ASSERT_OK(store.Put(r));
  // A second dead record whose "socket" is a directory: it must not block the listing.
  pid_t gone2 = Child();
  KeepRecord r2 = Record("b2", gone2, t0_);
  std::filesystem::create_directories(root_ + "/adir");
  r2.channel_socket = root_ + "/adir";
  ASSERT_OK(store.Put(r2));
  // A live one, listed whatever happens to the others.
  KeepRecord live = Record("b3", Child(), t0_);
  ASSERT_OK(store.Put(live));
  ::kill(gone, SIGKILL);
  ::kill(gone2, SIGKILL);
  Reap(gone);
  Reap(gone2);
  // A symlinked record and a corrupt one: skipped, named, never acted on.
  std::filesystem::create_symlink(store.dir() + "/b3.json", store.dir() + "/link.json");
  std::ofstream(store.dir() + "/junk.json") << "{not json";

  ASSERT_OK_AND_ASSIGN(KeepListing l, store.List(t0_));
  ASSERT_EQ(l.records.size(), 1u);
  EXPECT_EQ(l.records[0].id, "b3");
  EXPECT_EQ(l.cleaned.size(), 2u);
  EXPECT_THAT(l.skipped, ::testing::UnorderedElementsAre(HasSubstr("link.json: not a regular file"),
                                                         HasSubstr("junk.json")));
  EXPECT_TRUE(std::filesystem::exists(root_ + "/important.txt"));
  EXPECT_TRUE(std::filesystem::exists(victim_dir + "/thesis.txt"));
  EXPECT_TRUE(std::filesystem::exists(root_ + "/adir"));
  EXPECT_TRUE(std::filesystem::exists(store.dir() + "/link.json"));
}

TEST_F(KeepStoreTest, WorkDirBehindASymlinkIsNotRemoved) {
  KeepStore store(root_ + "/state");
  pid_t vmm = Child();
  KeepRecord r = Record("b1", vmm, t0_);
  // The real dir holds the marker, but the record reaches it through a symlinked parent.
  std::filesystem::create_symlink(root_ + "/work", root_ + "/lnk");
  r.work_dir = root_ + "/lnk/b1";
  r.serial_log = r.work_dir + "/serial.log";
  ASSERT_OK(store.Put(r));
  ASSERT_OK(store.Remove("b1", {}));
  EXPECT_TRUE(std::filesystem::exists(root_ + "/work/b1/serial.log"));
}

TEST_F(KeepStoreTest, ReadingAMissingOrSharedStateDirChangesNothing) {
  KeepStore missing(root_ + "/no/such/state");
  ASSERT_OK_AND_ASSIGN(KeepListing l, missing.List(t0_));
  EXPECT_TRUE(l.records.empty());
  EXPECT_FALSE(std::filesystem::exists(root_ + "/no"));  // not created by a read
  EXPECT_THAT(missing.Get("b1", t0_), StatusIs(absl::StatusCode::kNotFound, HasSubstr("no kept builder")));
  const std::string shared = root_ + "/shared";
  std::filesystem::create_directories(shared);
  ::chmod(shared.c_str(), 01777);
  ASSERT_OK(KeepStore(shared).List(t0_).status());
  struct stat st;
  ASSERT_EQ(::stat(shared.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 01777u);  // an existing dir's mode is never changed
}

TEST_F(KeepStoreTest, KeepReapsOldestOverCap) {
  KeepStore store(root_ + "/state");
  pid_t a = SpawnSleeper(), b = SpawnSleeper(), c = SpawnSleeper();
  children_.push_back(c);
  ASSERT_OK(store.Put(Record("a", a, t0_)));
  ASSERT_OK(store.Put(Record("b", b, t0_ + absl::Minutes(1))));
  ASSERT_OK_AND_ASSIGN(std::vector<ReapDecision> d,
                       store.Keep(Record("c", c, t0_ + absl::Minutes(2)), 2, {}));
  EXPECT_THAT(d, ElementsAre(ReapDecision{"a", "over-cap"}));
  EXPECT_NE(Reap(a), -1);
  ASSERT_OK_AND_ASSIGN(KeepListing l, store.List(t0_));
  ASSERT_EQ(l.records.size(), 2u);
  EXPECT_EQ(l.records[0].id, "b");
  EXPECT_EQ(l.records[1].id, "c");
  ::kill(-b, SIGKILL);
  Reap(b);
}

TEST_F(KeepStoreTest, GcReapsExpiredKeepsFresh) {
  KeepStore store(root_ + "/state");
  pid_t old_vmm = SpawnSleeper();
  pid_t fresh = Child();
  ASSERT_OK(store.Put(Record("old", old_vmm, t0_)));
  ASSERT_OK(store.Put(Record("fresh", fresh, t0_ + absl::Minutes(20))));
  ASSERT_OK_AND_ASSIGN(std::vector<ReapDecision> d, store.Gc(t0_ + absl::Minutes(31), {}));
  EXPECT_THAT(d, ElementsAre(ReapDecision{"old", "expired"}));
  EXPECT_NE(Reap(old_vmm), -1);
  EXPECT_TRUE(ProcessAlive(Identify(fresh)));
  ASSERT_OK(store.Get("fresh", t0_ + absl::Minutes(31)));
}

// "The harness process died": a child harness boots a VMM (in its own group, not our
// child), writes its records and is SIGKILLed. The VMM is re-parented to us (subreaper), so
// we can prove that Gc killed it and nothing is left behind.
TEST_F(KeepStoreTest, HarnessDiedGcFindsAndCleansItsVms) {
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  std::string dir = root_ + "/state";
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t harness = ::fork();
  if (harness == 0) {
    ::close(pipefd[0]);
    KeepStore store(dir);
    pid_t kept_vmm = SpawnSleeper();
    pid_t building_vmm = SpawnSleeper();
    KeepRecord kept = Record("kept-1", kept_vmm, t0_);
    KeepRecord building = Record("building-1", building_vmm, t0_);
    building.state = KeepState::kBuilding;
    building.failure = "";
    if (!store.Put(kept).ok() || !store.Put(building).ok()) ::_exit(1);
    pid_t pids[2] = {kept_vmm, building_vmm};
    (void)!::write(pipefd[1], pids, sizeof(pids));
    ::pause();
    ::_exit(0);
  }
  ::close(pipefd[1]);
  pid_t pids[2] = {0, 0};
  ASSERT_EQ(::read(pipefd[0], pids, sizeof(pids)), static_cast<ssize_t>(sizeof(pids)));
  ::close(pipefd[0]);
  ::kill(harness, SIGKILL);
  ASSERT_NE(Reap(harness), -1);
  ASSERT_TRUE(ProcessAlive(Identify(pids[0])));
  ASSERT_TRUE(ProcessAlive(Identify(pids[1])));

  KeepStore store(dir);
  // Before expiry: the builder that was still building is an orphan; the kept one stays.
  ASSERT_OK_AND_ASSIGN(std::vector<ReapDecision> d, store.Gc(t0_ + absl::Minutes(1), {}));
  EXPECT_THAT(d, ElementsAre(ReapDecision{"building-1", "orphan"}));
  int st = Reap(pids[1]);
  ASSERT_NE(st, -1);
  EXPECT_TRUE(WIFSIGNALED(st));
  // After expiry: the kept one goes too.
  ASSERT_OK_AND_ASSIGN(d, store.Gc(t0_ + absl::Minutes(31), {}));
  EXPECT_THAT(d, ElementsAre(ReapDecision{"kept-1", "expired"}));
  st = Reap(pids[0]);
  ASSERT_NE(st, -1);
  EXPECT_TRUE(WIFSIGNALED(st));
  ASSERT_OK_AND_ASSIGN(KeepListing l, store.List(t0_));
  EXPECT_THAT(l.records, IsEmpty());
  EXPECT_FALSE(std::filesystem::exists(root_ + "/work/kept-1"));
  EXPECT_FALSE(std::filesystem::exists(root_ + "/work/building-1"));
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
}

}  // namespace
}  // namespace kiln::harness
