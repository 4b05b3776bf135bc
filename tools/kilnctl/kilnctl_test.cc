// File: tools/kilnctl/kilnctl_test.cc
// The kilnctl binary end to end against a temp state dir: `sleep` is the VMM, and the real
// agent session (agent/server.h) serves a unix socket that stands in for the VM's channel
// (as QEMU's virtio-serial chardev socket does). The power-off request of `rm` is never sent
// to that agent (it would run on this host): rm is tested against a channel whose "agent"
// hangs up, so the SIGTERM path is exercised.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/file/file.h"
#include "agent/server.h"
#include "agent/transport.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/keep/keep_store.h"
#include "harness/keep/agent_exec.h"
#include "third_party/absl_ext/status_matchers.h"

namespace {

using ::kiln::harness::KeepRecord;
using ::kiln::harness::KeepStore;
using ::testing::HasSubstr;

std::string g_kilnctl;

struct CliRun {
  int code = -1;
  std::string out, err;
};

int Listen(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof(a.sun_path), "%s", path.c_str());
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << path;
  EXPECT_EQ(::listen(fd, 4), 0);
  return fd;
}

class KilnctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kilnctl-test-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    state_ = root_ + "/state";
  }
  void TearDown() override {
    stop_ = true;
    for (int fd : listeners_) ::shutdown(fd, SHUT_RDWR);
    for (auto& t : threads_) t.join();
    for (int fd : listeners_) ::close(fd);
    for (pid_t p : vmms_) {
      ::kill(-p, SIGKILL);
      ::waitpid(p, nullptr, 0);
    }
    std::filesystem::remove_all(root_);
  }

  // A kept builder: sleep as the VMM; serve = true: the real agent session on its socket;
  // false: an "agent" that accepts and hangs up. vsock_port != 0: a Cloud Hypervisor builder
  // (hybrid vsock): each connection must first send "CONNECT <port>\n" (recorded in
  // connect_lines_), answered "OK 1073741824\n" for that port, closed for any other.
  KeepRecord AddBuilder(const std::string& id, bool serve, absl::Duration age = absl::ZeroDuration(),
                        uint32_t vsock_port = 0) {
    KeepRecord r;
    r.id = id;
    r.vmm = vsock_port ? "cloud-hypervisor" : "qemu";
    if (vsock_port) {
      r.channel_transport = kiln::harness::ChannelTransport::kHybridVsock;
      r.vsock_port = vsock_port;
    }
    pid_t p = ::fork();
    if (p == 0) {
      ::setpgid(0, 0);
      ::execl("/bin/sleep", "sleep", "1000", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::setpgid(p, p);
    vmms_.push_back(p);
    r.vmm_process = *kiln::harness::IdentifyProcess(p);
    r.work_dir = root_ + "/work/" + id;
    std::filesystem::create_directories(r.work_dir);
    r.channel_socket = r.work_dir + "/agent.sock";
    r.serial_log = r.work_dir + "/serial.log";
    std::ofstream(r.serial_log) << "KILN-INIT: ready\nkiln-agent: job fail-1: RUN exit 1\n";
    EXPECT_TRUE(kiln::harness::WriteKeepMarker(r).ok());
    r.job_summary = "job fail-1";
    r.failure = "build: RUN false: exit 1";
    r.created = absl::Now() - age;
    r.expires = r.created + absl::Minutes(30);
    int lfd = Listen(r.channel_socket);
    listeners_.push_back(lfd);
    threads_.emplace_back([this, lfd, serve, vsock_port] {
      while (!stop_) {
        int c = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;
        if (vsock_port) {
          std::string line;
          char ch;
          while (line.size() < 64 && ::read(c, &ch, 1) == 1) {
            line.push_back(ch);
            if (ch == '\n') break;
          }
          connect_lines_.push_back(line);
          if (line != absl::StrCat("CONNECT ", vsock_port, "\n")) {
            ::close(c);  // CH: nobody listens on that port
            continue;
          }
          (void)!::write(c, "OK 1073741824\n", 14);
        }
        if (!serve) {
          ::close(c);
          continue;
        }
        kiln::agent::FdStream s(c, "test channel");
        kiln::agent::Connection conn(&s);
        kiln::agent::AgentOptions o;
        o.work_dir = root_ + "/agent-work";
        kiln::agent::AgentSession session(&conn, o);
        (void)session.Serve();
      }
    });
    EXPECT_OK(KeepStore(state_).Put(r));
    return r;
  }

  CliRun Kilnctl(std::vector<std::string> args) {
    std::string out = root_ + "/out", err = root_ + "/err";
    pid_t p = ::fork();
    if (p == 0) {
      int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(o, 1);
      ::dup2(e, 2);
      std::vector<std::string> full = {g_kilnctl, "--state_dir=" + state_};
      full.insert(full.end(), args.begin(), args.end());
      std::vector<char*> av;
      for (auto& a : full) av.push_back(a.data());
      av.push_back(nullptr);
      ::execv(av[0], av.data());
      ::_exit(99);
    }
    int st = 0;
    ::waitpid(p, &st, 0);
    CliRun r;
    r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + WTERMSIG(st);
    r.out = kiln::file::ReadFileOrEmpty(out);
    r.err = kiln::file::ReadFileOrEmpty(err);
    return r;
  }

  std::string root_, state_;
  std::vector<pid_t> vmms_;
  std::vector<int> listeners_;
  std::vector<std::thread> threads_;
  std::vector<std::string> connect_lines_;  // written by the channel threads (one per test)
  std::atomic<bool> stop_{false};
};

TEST_F(KilnctlTest, HelpAndUsageErrors) {
  CliRun h = Kilnctl({"--help"});
  EXPECT_EQ(h.code, 0);
  EXPECT_THAT(h.out, HasSubstr("exit codes:"));
  EXPECT_EQ(Kilnctl({}).code, 2);
  CliRun u = Kilnctl({"builders", "frob"});
  EXPECT_EQ(u.code, 2);
  EXPECT_THAT(u.err, HasSubstr("unknown builders subcommand \"frob\""));
  CliRun nodash = Kilnctl({"builders", "exec", "b1", "ls"});
  EXPECT_EQ(nodash.code, 2);
  EXPECT_THAT(nodash.err, HasSubstr("after `--`"));
  EXPECT_EQ(Kilnctl({"builders", "logs"}).code, 2);
  EXPECT_EQ(Kilnctl({"builders", "logs", "../x"}).code, 2);
  EXPECT_EQ(Kilnctl({"--timeout_s=-1", "builders", "list"}).code, 2);
  EXPECT_EQ(Kilnctl({"--max_kept=-5", "builders", "gc"}).code, 2);
  EXPECT_THAT(h.out, HasSubstr("--timeout_s=N     exec: the agent kills the command after N s "
                               "(default 600"));
}

// A wedged agent (it started the command, then never answers) does not hold kilnctl for ever:
// it gives up when the command's deadline + the answer grace have passed. (Before, exec
// waited up to an hour per frame, and --timeout_s defaulted to none.)
TEST(ExecOnConnectionTest, GivesUpOnAnAgentThatNeverAnswers) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  std::atomic<bool> done{false};
  std::thread agent([&] {
    kiln::agent::FdStream s(sv[1], "fake agent");
    kiln::agent::Connection conn(&s);
    if (!conn.ReadFrame(5000).ok()) return;  // the Exec
    (void)conn.Send(kiln::agent::ExecStarted{42, 2, 4}, 5000);
    while (!done) ::usleep(10000);  // wedged: the child has exited, no ExecResult comes
  });
  kiln::agent::FdStream s(sv[0], "host");
  kiln::agent::Connection conn(&s);
  kiln::harness::ExecRequest req;
  req.argv = {"sleep", "1d"};
  req.deadline_ms = 300;
  req.answer_grace_ms = 400;
  const absl::Time t0 = absl::Now();
  EXPECT_THAT(kiln::harness::ExecOnConnection(conn, req, 1, 2).status(),
              kiln_testing::StatusIs(absl::StatusCode::kDeadlineExceeded,
                                     HasSubstr("no result from the agent within the command's "
                                               "deadline (300ms) + 400ms")));
  EXPECT_LT(absl::Now() - t0, absl::Seconds(3));
  EXPECT_GE(absl::Now() - t0, absl::Milliseconds(650));
  done = true;
  agent.join();
}

// A record's failure text can come from an untrusted build's output: `list` prints no control
// characters (ESC sequences, CR), and warns about record files it skipped.
TEST_F(KilnctlTest, ListPrintsNoControlCharactersAndWarnsAboutJunk) {
  AddBuilder("b1", /*serve=*/false);
  absl::StatusOr<kiln::harness::KeepRecord> r =
      kiln::harness::KeepStore(state_).Get("b1", absl::Now());
  ASSERT_TRUE(r.ok()) << r.status();
  r->failure = "exit 1 \x1b[2J\x1b]0;pwned\x07\rhidden";
  ASSERT_TRUE(kiln::harness::KeepStore(state_).Put(*r).ok());
  std::ofstream(state_ + "/junk.json") << "{";
  CliRun l = Kilnctl({"builders", "list"});
  EXPECT_EQ(l.code, 0) << l.err;
  EXPECT_THAT(l.out, HasSubstr("exit 1"));
  for (char c : l.out) {
    const unsigned char u = static_cast<unsigned char>(c);
    EXPECT_TRUE(u >= 0x20 || u == '\n') << "control character " << static_cast<int>(u);
  }
  EXPECT_THAT(l.err, HasSubstr("warning: skipped junk.json"));
}

TEST_F(KilnctlTest, UnknownIdIsNotFound) {
  CliRun r = Kilnctl({"builders", "logs", "nope"});
  EXPECT_EQ(r.code, 3);
  EXPECT_THAT(r.err, HasSubstr("no kept builder \"nope\""));
  EXPECT_EQ(Kilnctl({"builders", "rm", "nope"}).code, 3);
  EXPECT_EQ(Kilnctl({"builders", "exec", "nope", "--", "true"}).code, 125);
}

TEST_F(KilnctlTest, ListLogsExecThroughTheAgent) {
  AddBuilder("b1", /*serve=*/true);
  CliRun l = Kilnctl({"builders", "list"});
  EXPECT_EQ(l.code, 0);
  EXPECT_THAT(l.out, HasSubstr("b1"));
  EXPECT_THAT(l.out, HasSubstr("build: RUN false: exit 1"));
  CliRun j = Kilnctl({"builders", "list", "--json"});
  EXPECT_THAT(j.out, HasSubstr("\"channel_socket\""));
  CliRun g = Kilnctl({"builders", "logs", "b1"});
  EXPECT_EQ(g.code, 0);
  EXPECT_EQ(g.out, "KILN-INIT: ready\nkiln-agent: job fail-1: RUN exit 1\n");
  CliRun e = Kilnctl({"builders", "exec", "b1", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 7"});
  EXPECT_EQ(e.code, 7);
  EXPECT_EQ(e.out, "out\n");
  EXPECT_EQ(e.err, "err\n");
  CliRun missing = Kilnctl({"builders", "exec", "b1", "--", "/no/such/program"});
  EXPECT_EQ(missing.code, 127);
  CliRun sig = Kilnctl({"builders", "exec", "b1", "--", "/bin/sh", "-c", "kill -9 $$"});
  EXPECT_EQ(sig.code, 128 + 9);
}

// A kept Cloud Hypervisor builder: exec goes through the hybrid vsock handshake to the port in
// its record, and the record's transport shows in `list --json`.
TEST_F(KilnctlTest, ExecIntoACloudHypervisorBuilderOverHybridVsock) {
  AddBuilder("ch1", /*serve=*/true, absl::ZeroDuration(), /*vsock_port=*/2048);
  CliRun j = Kilnctl({"builders", "list", "--json"});
  EXPECT_THAT(j.out, HasSubstr("\"channel_transport\": \"hybrid-vsock\""));
  CliRun e = Kilnctl({"builders", "exec", "ch1", "--", "/bin/sh", "-c", "echo via-vsock; exit 3"});
  EXPECT_EQ(e.code, 3) << e.err;
  EXPECT_EQ(e.out, "via-vsock\n");
  ASSERT_FALSE(connect_lines_.empty());
  EXPECT_EQ(connect_lines_.front(), "CONNECT 2048\n");
}

// The same socket spoken as virtio-serial (what kilnctl did before records carried the
// transport) never reaches the agent: the fake muxer sees no CONNECT line and hangs up.
TEST_F(KilnctlTest, HybridVsockBuilderIsNotReachableAsVirtioSerial) {
  KeepRecord r = AddBuilder("ch2", /*serve=*/true, absl::ZeroDuration(), /*vsock_port=*/2048);
  kiln::harness::ExecRequest req;
  req.argv = {"true"};
  req.connect_timeout_ms = 1000;
  absl::StatusOr<kiln::agent::ExecResult> res =
      kiln::harness::ExecOverChannel(r.channel_socket, req, 1, 2);
  EXPECT_FALSE(res.ok());
  ASSERT_OK_AND_ASSIGN(
      kiln::agent::ExecResult ok,
      kiln::harness::ExecOverChannel(
          kiln::harness::ChannelAddress{r.channel_transport, r.channel_socket, r.vsock_port},
          req, 1, 2));
  EXPECT_EQ(ok.exit_code, 0);
}

TEST_F(KilnctlTest, ExpiredBuilderGetsAClearErrorAndGcReapsIt) {
  KeepRecord r = AddBuilder("old", /*serve=*/false, absl::Minutes(31));
  CliRun g = Kilnctl({"builders", "logs", "old"});
  EXPECT_EQ(g.code, 4);
  EXPECT_THAT(g.err, HasSubstr("expired at"));
  EXPECT_EQ(Kilnctl({"builders", "exec", "old", "--", "true"}).code, 125);
  CliRun gc = Kilnctl({"builders", "gc", "--grace_s=0", "--connect_timeout_ms=200"});
  EXPECT_EQ(gc.code, 0);
  EXPECT_THAT(gc.out, HasSubstr("reaped old (expired)"));
  int st = 0;
  ASSERT_EQ(::waitpid(r.vmm_process.pid, &st, 0), r.vmm_process.pid);
  vmms_.clear();
  EXPECT_TRUE(WIFSIGNALED(st));
  EXPECT_FALSE(std::filesystem::exists(r.work_dir));
  EXPECT_THAT(Kilnctl({"builders", "gc"}).out, HasSubstr("nothing to reap"));
}

TEST_F(KilnctlTest, RmStopsTheVmmAndRemovesItsFiles) {
  KeepRecord r = AddBuilder("b2", /*serve=*/false);
  CliRun rm = Kilnctl({"builders", "rm", "b2", "--grace_s=1", "--connect_timeout_ms=500"});
  EXPECT_EQ(rm.code, 0) << rm.err;
  EXPECT_THAT(rm.out, HasSubstr("removed b2"));
  int st = 0;
  ASSERT_EQ(::waitpid(r.vmm_process.pid, &st, 0), r.vmm_process.pid);
  vmms_.clear();
  EXPECT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(WTERMSIG(st), SIGTERM);
  EXPECT_FALSE(std::filesystem::exists(r.channel_socket));
  EXPECT_FALSE(std::filesystem::exists(r.work_dir));
  EXPECT_EQ(Kilnctl({"builders", "logs", "b2"}).code, 3);
}

TEST_F(KilnctlTest, DeadVmIsCleanedOnList) {
  KeepRecord r = AddBuilder("gone", /*serve=*/false);
  ::kill(-r.vmm_process.pid, SIGKILL);
  ::waitpid(r.vmm_process.pid, nullptr, 0);
  vmms_.clear();
  CliRun l = Kilnctl({"builders", "list"});
  EXPECT_EQ(l.code, 0);
  EXPECT_THAT(l.err, HasSubstr("cleaned gone"));
  EXPECT_THAT(l.out, HasSubstr("no kept builders"));
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc < 2) {
    fprintf(stderr, "usage: kilnctl_test <path to kilnctl>\n");
    return 2;
  }
  g_kilnctl = std::filesystem::absolute(argv[1]);
  return RUN_ALL_TESTS();
}
