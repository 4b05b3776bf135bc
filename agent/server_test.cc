// The agent session over a socketpair: a host Connection in the test thread, AgentSession in
// another thread. Covers the handshake, health, exec (with stdin, failure, deadline), secrets
// policy, a full build job exchange with streamed context and image (fake runner), and bad
// input (garbage, unknown types, stray chunks).
#include "agent/file/file.h"
#include "agent/server.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/health.h"
#include "agent/protocol/stream.h"
#include "agent/transport.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::agent {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int kT = 10000;  // ms

std::string TempDir() {
  std::string t = std::string(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp") +
                  "/server_XXXXXX";
  return mkdtemp(t.data());
}

class AgentTest : public ::testing::Test {
 protected:
  void Start(BuildRunner runner = nullptr, uint64_t max_stdin = 64 << 20) {
    dir_ = TempDir();
    std::ofstream(dir_ + "/uptime") << "12.34 20.00\n";
    std::ofstream(dir_ + "/loadavg") << "0.50 1.25 2.00 1/100 42\n";
    std::ofstream(dir_ + "/meminfo") << "MemTotal:  2048 kB\nMemFree: 1 kB\nMemAvailable: 1024 kB\n";
    auto pair = *StreamPair();
    host_stream_ = std::move(pair.first);
    agent_stream_ = std::move(pair.second);
    host_ = std::make_unique<Connection>(host_stream_.get());
    agent_conn_ = std::make_unique<Connection>(agent_stream_.get());
    AgentOptions o;
    o.proc_root = dir_;
    o.work_dir = dir_ + "/work";
    o.io_timeout_ms = kT;
    o.runner = std::move(runner);
    o.max_exec_stdin_bytes = max_stdin;
    o.keep_failed_jobs = keep_failed_jobs_;
    if (default_exec_deadline_ms_) o.default_exec_deadline_ms = default_exec_deadline_ms_;
    if (before_start_) before_start_(o);
    thread_ = std::thread([this, o] {
      AgentSession session(agent_conn_.get(), o);
      serve_status_ = session.Serve();
      (void)agent_stream_->Close();  // as the agent's main loop does
    });
  }
  void TearDown() override {
    if (host_stream_) (void)host_stream_->Close();
    if (thread_.joinable()) thread_.join();
  }
  Ready Handshake() {
    absl::StatusOr<Ready> r = HostHandshake(*host_, "test host", kT);
    EXPECT_OK(r);
    return r.ok() ? *r : Ready{};
  }
  Message Read() {
    absl::StatusOr<Message> m = host_->ReadMessage(kT);
    EXPECT_OK(m);
    return m.ok() ? *m : Message(Ping{});
  }
  absl::Status ReadError() {
    absl::StatusOr<Message> m = host_->ReadMessage(kT);
    if (!m.ok()) return absl::InternalError("no message: " + m.status().ToString());
    if (auto* e = std::get_if<ErrorMessage>(&*m)) return ToStatus(*e);
    return absl::InternalError("not an Error: " + MessageName(*m));
  }
  void ExpectAlive() {  // the session still answers
    ASSERT_OK(host_->Send(Ping{77}, kT));
    ASSERT_OK_AND_ASSIGN(Frame f, host_->ReadFrame(kT));
    ASSERT_OK_AND_ASSIGN(Pong p, DecodeAs<Pong>(f));
    EXPECT_EQ(p.nonce, 77u);
  }

  struct ExecOutput {
    ExecStarted started;
    std::string out, err;
    ExecResult result;
    bool started_seen = false;
  };
  ExecOutput RunExec(const Exec& e, const std::string& stdin_data = "") {
    ExecOutput o;
    EXPECT_OK(host_->Send(e, kT));
    if (e.stdin_stream) EXPECT_OK(host_->SendBytes(e.stdin_stream, stdin_data, kT));
    StreamReceiver rx;
    StringSink out, err;
    while (true) {
      absl::StatusOr<Frame> f = host_->ReadFrame(kT);
      if (!f.ok()) {
        ADD_FAILURE() << f.status();
        return o;
      }
      if (f->type == static_cast<uint8_t>(FrameType::kChunk) ||
          f->type == static_cast<uint8_t>(FrameType::kStreamEnd)) {
        EXPECT_OK(rx.OnFrame(*f));
        continue;
      }
      absl::StatusOr<Message> m = DecodeMessage(*f);
      EXPECT_OK(m);
      if (!m.ok()) return o;
      if (auto* s = std::get_if<ExecStarted>(&*m)) {
        o.started = *s;
        o.started_seen = true;
        EXPECT_OK(rx.Expect(s->stdout_stream, 1 << 30, &out));
        EXPECT_OK(rx.Expect(s->stderr_stream, 1 << 30, &err));
      } else if (auto* r = std::get_if<ExecResult>(&*m)) {
        o.result = *r;
        if (o.started_seen) EXPECT_TRUE(rx.AllDone());
        break;
      } else {
        ADD_FAILURE() << "unexpected " << MessageName(*m);
        return o;
      }
    }
    o.out = out.data();
    o.err = err.data();
    return o;
  }

  bool keep_failed_jobs_ = false;
  uint64_t default_exec_deadline_ms_ = 0;
  std::function<void(AgentOptions&)> before_start_;  // runs after dir_ is made
  std::string dir_;
  std::unique_ptr<FdStream> host_stream_, agent_stream_;
  std::unique_ptr<Connection> host_, agent_conn_;
  std::thread thread_;
  absl::Status serve_status_;
};

TEST_F(AgentTest, HandshakeAnnouncesVersionAndCapabilities) {
  Start();
  Ready r = Handshake();
  EXPECT_EQ(r.protocol_major, kProtocolMajor);
  EXPECT_THAT(r.capabilities, ElementsAre("health", "exec"));
}

TEST_F(AgentTest, MajorVersionMismatchIsRefused) {
  Start();
  ASSERT_OK(host_->Send(Hello{kProtocolMajor + 1, 0, "future host"}, kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                    HasSubstr("protocol major version mismatch: peer speaks 2.0")));
  ASSERT_OK(host_->Send(Ping{1}, kT));  // still no session
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("before Hello")));
}

TEST_F(AgentTest, RequestBeforeHello) {
  Start();
  ASSERT_OK(host_->Send(Ping{1}, kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                    HasSubstr("Ping before Hello: send Hello first")));
}

TEST_F(AgentTest, PingReportsHealth) {
  Start();
  Handshake();
  ASSERT_OK(host_->Send(Ping{42}, kT));
  Message m = Read();
  ASSERT_TRUE(std::holds_alternative<Pong>(m));
  EXPECT_EQ(std::get<Pong>(m), (Pong{42, 12340, 500, 1250, 2000, 2048 * 1024, 1024 * 1024}));
}

TEST_F(AgentTest, ExecStreamsOutputAndExitCode) {
  Start();
  Handshake();
  ExecOutput o = RunExec(Exec{{"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, {}, "", 0, 0});
  ASSERT_TRUE(o.started_seen);
  EXPECT_EQ(o.out, "out\n");
  EXPECT_EQ(o.err, "err\n");
  EXPECT_EQ(o.result.exit_code, 3);
  EXPECT_EQ(o.result.signal, 0);
  EXPECT_TRUE(IsAgentStream(o.started.stdout_stream));
  ExpectAlive();
}

TEST_F(AgentTest, ExecWithBinaryStdinEnvAndCwd) {
  Start();
  Handshake();
  const std::string in = std::string("bin\0ary\xff", 8) + std::string(200000, 'z');
  ExecOutput o = RunExec(Exec{{"/bin/sh", "-c", "cat; echo \"$KILN_X\" >&2; pwd >&2"},
                              {"KILN_X=yes", "PATH=/bin:/usr/bin"}, "/tmp", 1, 0},
                         in);
  EXPECT_EQ(o.result.exit_code, 0);
  EXPECT_TRUE(o.out == in);
  EXPECT_EQ(o.err, "yes\n/tmp\n");
}

TEST_F(AgentTest, ExecOfAMissingProgram) {
  Start();
  Handshake();
  ExecOutput o = RunExec(Exec{{"/no/such/program"}, {}, "", 0, 0});
  EXPECT_FALSE(o.started_seen);
  EXPECT_EQ(o.result.exit_code, 127);
  EXPECT_THAT(o.result.error, HasSubstr("exec /no/such/program (cwd /): No such file"));
  ExpectAlive();
}

TEST_F(AgentTest, ExecStdinOverTheLimitIsRefused) {
  Start(nullptr, /*max_stdin=*/1000);
  Handshake();
  ASSERT_OK(host_->Send(Exec{{"/bin/cat"}, {}, "", 1, 0}, kT));
  ASSERT_OK(host_->SendBytes(1, std::string(3000, 'x'), kT));  // rest is dropped
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kResourceExhausted,
                                    HasSubstr("stream 1 exceeds its limit of 1000 bytes")));
  ExpectAlive();
}

TEST_F(AgentTest, ExecThatIgnoresItsStdinDoesNotHurtTheAgent) {
  Start();
  Handshake();
  ExecOutput o = RunExec(Exec{{"/bin/true"}, {}, "", 1, 0}, std::string(4 << 20, 'x'));
  EXPECT_EQ(o.result.exit_code, 0);
  ExpectAlive();
}

TEST_F(AgentTest, ExecDeadlineKillsTheProcess) {
  Start();
  Handshake();
  ExecOutput o = RunExec(Exec{{"/bin/sleep", "30"}, {}, "", 0, 200});
  EXPECT_EQ(o.result.exit_code, -1);
  EXPECT_EQ(o.result.signal, 9);
  EXPECT_THAT(o.result.error, HasSubstr("deadline of 200 ms exceeded"));
  EXPECT_LT(o.result.duration_ms, 5000u);
}

BuildJob Job(std::vector<std::string> secret_ids) {
  BuildJob j;
  j.job_id = "job1";
  j.context_stream = 1;
  j.secret_ids = std::move(secret_ids);
  j.preload_images = {{"busybox:latest", 3}};
  return j;
}

TEST_F(AgentTest, BuildJobNamingAnUndeliveredSecretIsRefused) {
  Start([](const BuildInputs&) -> absl::StatusOr<BuildOutcome> {
    ADD_FAILURE() << "runner must not run";
    return BuildOutcome{};
  });
  Handshake();
  ASSERT_OK(host_->Send(Secret{"a", "1"}, kT));
  ASSERT_OK(host_->Send(Job({"a", "npm_token"}), kT));
  ASSERT_OK(host_->SendBytes(1, "context", kT));  // discarded silently
  ASSERT_OK(host_->SendBytes(3, "image", kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                    HasSubstr("names secrets the host did not deliver: [npm_token]")));
  ExpectAlive();
}

TEST_F(AgentTest, BuildJobWithABadStreamTotalIsRefused) {
  Start([](const BuildInputs&) -> absl::StatusOr<BuildOutcome> {
    ADD_FAILURE() << "runner must not run";
    return BuildOutcome{};
  });
  Handshake();
  ASSERT_OK(host_->Send(Job({}), kT));
  ASSERT_OK(host_->SendFrame(Frame(FrameType::kChunk, 1, "ctx"), kT));
  ASSERT_OK(host_->Send(StreamEnd{1, 99, false, ""}, kT));
  ASSERT_OK(host_->SendBytes(3, "preload", kT));  // dropped with the refused job
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kDataLoss,
                                    HasSubstr("ended with total 99 bytes, but 3 bytes")));
  ExpectAlive();
}

TEST_F(AgentTest, BuildJobWithoutARunner) {
  Start();
  Handshake();
  ASSERT_OK(host_->Send(Job({}), kT));
  ASSERT_OK(host_->SendBytes(1, "context", kT));
  ASSERT_OK(host_->SendBytes(3, "", kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("no build runner")));
  ExpectAlive();
}

TEST_F(AgentTest, BuildJobStreamsContextInAndImageOut) {
  std::string context(2 * kMaxPayload + 333, '\0');
  for (size_t i = 0; i < context.size(); ++i) context[i] = static_cast<char>(i % 251);
  BuildInputs seen;
  std::string seen_context, seen_preload;
  Start([&](const BuildInputs& in) -> absl::StatusOr<BuildOutcome> {
    seen_context = file::ReadFileOrEmpty(in.context_tar);
    seen_preload = file::ReadFileOrEmpty(in.preload_paths.at(0));
    seen.secrets = in.secrets;
    in.log(LogStream::kStdout, "#1 [1/1] RUN true");
    BuildOutcome out;
    out.exit_status = 0;
    out.image_digest = "sha256:" + std::string(64, 'b');
    out.image_path = in.context_tar;  // echo the context back as the "image"
    out.phases = {{"build", 5}};
    return out;
  });
  Handshake();
  ASSERT_OK(host_->Send(Secret{"tok", std::string("s3cr\0t", 6)}, kT));
  ASSERT_OK(host_->Send(Job({"tok"}), kT));
  ASSERT_OK(host_->SendBytes(1, context, kT));
  ASSERT_OK(host_->SendBytes(3, "preload archive", kT));

  Message log = Read();
  ASSERT_TRUE(std::holds_alternative<Log>(log));
  EXPECT_EQ(std::get<Log>(log).text, "#1 [1/1] RUN true");
  Message res = Read();
  ASSERT_TRUE(std::holds_alternative<BuildResult>(res));
  const BuildResult& r = std::get<BuildResult>(res);
  EXPECT_EQ(r.job_id, "job1");
  EXPECT_EQ(r.image_digest, "sha256:" + std::string(64, 'b'));
  ASSERT_TRUE(IsAgentStream(r.image_stream));
  ASSERT_EQ(r.phases.size(), 2u);
  EXPECT_EQ(r.phases[0].name, "receive_context");
  StreamReceiver rx;
  StringSink image;
  ASSERT_OK(rx.Expect(r.image_stream, 1 << 30, &image));
  while (!rx.Done(r.image_stream)) {
    ASSERT_OK_AND_ASSIGN(Frame f, host_->ReadFrame(kT));
    ASSERT_OK(rx.OnFrame(f));
  }
  EXPECT_TRUE(image.data() == context);
  EXPECT_TRUE(seen_context == context);
  EXPECT_EQ(seen_preload, "preload archive");
  EXPECT_EQ(seen.secrets.at("tok"), std::string("s3cr\0t", 6));
  // The job's secrets are gone after the job: the same job again is refused.
  ASSERT_OK(host_->Send(Job({"tok"}), kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("[tok]")));
}

// KeepCase: one run of a job for the keep_failed_jobs tests.
struct KeepCase {
  bool keep;
  int exit_status;      // the runner's result (when runner_ok)
  bool runner_ok;       // false: the runner returns an error
  bool dir_left;        // expected: <work>/job1 still there after the reply
};

class KeepFailedJobsTest : public AgentTest, public ::testing::WithParamInterface<KeepCase> {};

TEST_P(KeepFailedJobsTest, JobDirIsKeptOnlyForAFailedJobWithTheOption) {
  const KeepCase c = GetParam();
  keep_failed_jobs_ = c.keep;
  std::string secret_file;
  Start([&](const BuildInputs& in) -> absl::StatusOr<BuildOutcome> {
    // A build leaves state in its work dir, as dockerd's data root would.
    std::ofstream(in.context_tar.substr(0, in.context_tar.rfind('/')) + "/daemon.log")
        << "dockerd: level=error\n";
    if (!c.runner_ok) return absl::AbortedError("dockerd did not come up");
    BuildOutcome out;
    out.exit_status = c.exit_status;
    return out;
  });
  Handshake();
  ASSERT_OK(host_->Send(Secret{"tok", "kiln-keep-secret"}, kT));
  ASSERT_OK(host_->Send(Job({"tok"}), kT));
  ASSERT_OK(host_->SendBytes(1, "context bytes", kT));
  ASSERT_OK(host_->SendBytes(3, "preload archive", kT));
  std::vector<std::string> logs;
  Message m = Read();
  while (std::holds_alternative<Log>(m)) {
    logs.push_back(std::get<Log>(m).text);
    m = Read();
  }
  if (c.runner_ok) {
    ASSERT_TRUE(std::holds_alternative<BuildResult>(m)) << MessageName(m);
  } else {
    ASSERT_TRUE(std::holds_alternative<ErrorMessage>(m)) << MessageName(m);
  }
  ExpectAlive();  // the reply is complete: the dir has been dealt with
  const std::string job_dir = dir_ + "/work/job1";
  struct stat st;
  EXPECT_EQ(stat(job_dir.c_str(), &st) == 0, c.dir_left) << job_dir;
  if (c.dir_left) {
    EXPECT_EQ(file::ReadFileOrEmpty(job_dir + "/context.tar"), "context bytes");
    EXPECT_EQ(file::ReadFileOrEmpty(job_dir + "/daemon.log"), "dockerd: level=error\n");
    ASSERT_EQ(logs.size(), 1u);
    EXPECT_THAT(logs[0], HasSubstr("job1 failed: kept for inspection in " + job_dir));
    // The secret never lands in the job dir.
    for (const auto& e : std::filesystem::recursive_directory_iterator(job_dir)) {
      EXPECT_EQ(file::ReadFileOrEmpty(e.path().string()).find("kiln-keep-secret"), std::string::npos)
          << e.path();
    }
  } else {
    EXPECT_TRUE(logs.empty());
  }
}

TEST_F(AgentTest, OnlyTheLastFailedJobDirIsKept) {
  keep_failed_jobs_ = true;
  Start([](const BuildInputs&) -> absl::StatusOr<BuildOutcome> {
    BuildOutcome out;
    out.exit_status = 1;
    return out;
  });
  Handshake();
  for (const char* id : {"first", "second"}) {
    BuildJob j;
    j.job_id = id;
    j.context_stream = 1;
    ASSERT_OK(host_->Send(j, kT));
    ASSERT_OK(host_->SendBytes(1, "context", kT));
    Message m = Read();
    while (std::holds_alternative<Log>(m)) m = Read();
    ASSERT_TRUE(std::holds_alternative<BuildResult>(m)) << MessageName(m);
  }
  ExpectAlive();
  struct stat st;
  EXPECT_NE(stat((dir_ + "/work/first").c_str(), &st), 0) << "the earlier failed job's dir stayed";
  EXPECT_EQ(stat((dir_ + "/work/second").c_str(), &st), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, KeepFailedJobsTest,
    ::testing::Values(KeepCase{true, 3, true, true},     // failed build, keep: kept
                      KeepCase{true, 0, true, false},    // passed build: removed even so
                      KeepCase{true, 0, false, true},    // runner error, keep: kept
                      KeepCase{false, 3, true, false},   // failed build, no keep: removed
                      KeepCase{false, 0, false, false}));

// ---- Secrets: size limit, one job, fail closed ----------------------------------------

TEST_F(AgentTest, SecretsAreConsumedByOneJobEvenWhenTheJobIsRefused) {
  int runs = 0;
  Start([&](const BuildInputs&) -> absl::StatusOr<BuildOutcome> {
    ++runs;
    return BuildOutcome{};
  });
  Handshake();
  ASSERT_OK(host_->Send(Secret{"a", "value-a"}, kT));
  ASSERT_OK(host_->Send(Job({"a", "b"}), kT));  // b missing: refused, and a is gone with it
  ASSERT_OK(host_->SendBytes(1, "context", kT));
  ASSERT_OK(host_->SendBytes(3, "image", kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("[b]")));
  ASSERT_OK(host_->Send(Job({"a"}), kT));  // names a without sending it again
  ASSERT_OK(host_->SendBytes(1, "context", kT));
  ASSERT_OK(host_->SendBytes(3, "image", kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                    HasSubstr("did not deliver: [a]")));
  EXPECT_EQ(runs, 0);
  ExpectAlive();
}

TEST_F(AgentTest, SecretsOfAJobRefusedForABadStreamAreWipedToo) {
  Start([](const BuildInputs&) -> absl::StatusOr<BuildOutcome> { return BuildOutcome{}; });
  Handshake();
  ASSERT_OK(host_->Send(Secret{"a", "value-a"}, kT));
  ASSERT_OK(host_->Send(Job({"a"}), kT));
  ASSERT_OK(host_->SendFrame(Frame(FrameType::kChunk, 1, "ctx"), kT));
  ASSERT_OK(host_->Send(StreamEnd{1, 99, false, ""}, kT));  // bad total: refused
  ASSERT_OK(host_->SendBytes(3, "preload", kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("total 99")));
  ASSERT_OK(host_->Send(Job({"a"}), kT));
  ASSERT_OK(host_->SendBytes(1, "context", kT));
  ASSERT_OK(host_->SendBytes(3, "image", kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("[a]")));
}

TEST_F(AgentTest, SecretsOfAJobTheRunnerRefusesAreNotReusable) {
  Start([](const BuildInputs&) -> absl::StatusOr<BuildOutcome> {
    return absl::InvalidArgumentError("bad Dockerfile");
  });
  Handshake();
  ASSERT_OK(host_->Send(Secret{"a", "value-a"}, kT));
  ASSERT_OK(host_->Send(Job({"a"}), kT));
  ASSERT_OK(host_->SendBytes(1, "context", kT));
  ASSERT_OK(host_->SendBytes(3, "image", kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Dockerfile")));
  ASSERT_OK(host_->Send(Job({"a"}), kT));
  ASSERT_OK(host_->SendBytes(1, "context", kT));
  ASSERT_OK(host_->SendBytes(3, "image", kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("[a]")));
}

// BuildKit's limit, 500 KiB (a CA bundle): delivered whole through a session and handed to the
// runner byte for byte; one byte more is refused and the session goes on.
TEST_F(AgentTest, SecretOf500KiBIsDeliveredAndOneByteMoreIsRefused) {
  std::string big(kMaxSecretValue, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131) >> 3);
  std::string seen;
  Start([&](const BuildInputs& in) -> absl::StatusOr<BuildOutcome> {
    seen = in.secrets.at("ca_bundle");
    return BuildOutcome{};
  });
  Handshake();
  ASSERT_OK(host_->Send(Secret{"ca_bundle", big}, kT));
  ASSERT_OK(host_->Send(Job({"ca_bundle"}), kT));
  ASSERT_OK(host_->SendBytes(1, "context", kT));
  ASSERT_OK(host_->SendBytes(3, "image", kT));
  Message m = Read();
  ASSERT_TRUE(std::holds_alternative<BuildResult>(m)) << MessageName(m);
  EXPECT_EQ(seen.size(), kMaxSecretValue);
  EXPECT_TRUE(seen == big);

  // One byte over, as a peer would send it (the encoder refuses to build it).
  std::string payload = std::string("\0\0\0\x09" "ca_bundle", 13);
  std::string len(4, '\0');
  const uint32_t n = kMaxSecretValue + 1;
  len[0] = static_cast<char>(n >> 24);
  len[1] = static_cast<char>(n >> 16);
  len[2] = static_cast<char>(n >> 8);
  len[3] = static_cast<char>(n);
  payload += len + big + "x";
  ASSERT_OK(host_->SendFrame(Frame(FrameType::kSecret, 0, payload), kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("Secret.value: length 512001 exceeds limit 512000")));
  ExpectAlive();
}

// ---- Exec edges ------------------------------------------------------------------------

TEST_F(AgentTest, ExecReturnsWhenTheChildExitsEvenIfABackgroundProcessHoldsItsOutput) {
  Start();
  Handshake();
  const int64_t t0 = absl::ToUnixMillis(absl::Now());
  ExecOutput o = RunExec(Exec{{"/bin/sh", "-c", "sleep 1d & echo hi"}, {}, "", 0, 0});
  const int64_t took = absl::ToUnixMillis(absl::Now()) - t0;
  if (o.started_seen) kill(-static_cast<pid_t>(o.started.pid), SIGKILL);  // the sleep
  EXPECT_EQ(o.result.exit_code, 0);
  EXPECT_EQ(o.out, "hi\n");
  EXPECT_TRUE(o.result.error.empty()) << o.result.error;
  EXPECT_LT(took, 5000);
  ExpectAlive();
}

// A leftover process that never stops writing (`yes &`) does not keep the exec going either.
TEST_F(AgentTest, ExecReturnsWhenTheChildExitsEvenIfABackgroundProcessKeepsWriting) {
  Start();
  Handshake();
  const int64_t t0 = absl::ToUnixMillis(absl::Now());
  ExecOutput o = RunExec(Exec{{"/bin/sh", "-c", "yes & echo hi"}, {}, "", 0, 0});
  const int64_t took = absl::ToUnixMillis(absl::Now()) - t0;
  if (o.started_seen) kill(-static_cast<pid_t>(o.started.pid), SIGKILL);  // the yes
  EXPECT_EQ(o.result.exit_code, 0);
  EXPECT_THAT(o.out, HasSubstr("hi\n"));
  EXPECT_LT(took, 10000);
  ExpectAlive();
}

TEST_F(AgentTest, ExecWithoutADeadlineGetsTheAgentsDefault) {
  default_exec_deadline_ms_ = 300;
  Start();
  Handshake();
  ExecOutput o = RunExec(Exec{{"/bin/sleep", "30"}, {}, "", 0, /*deadline_ms=*/0});
  EXPECT_EQ(o.result.signal, 9);
  EXPECT_THAT(o.result.error, HasSubstr("deadline of 300 ms exceeded (the agent's default"));
  EXPECT_LT(o.result.duration_ms, 5000u);
}

TEST(AgentDefaults, ExecDeadlineDefaultIsThirtyMinutes) {
  EXPECT_EQ(AgentOptions{}.default_exec_deadline_ms, 30u * 60 * 1000);
}

// An exec'd program starts with default signal dispositions and an empty mask, whatever the
// agent ignores (SIGPIPE, and here SIGUSR2 too) or blocks.
TEST_F(AgentTest, ExecChildStartsWithDefaultSignalDispositions) {
  struct sigaction old_usr2;
  struct sigaction ign;
  memset(&ign, 0, sizeof(ign));
  ign.sa_handler = SIG_IGN;
  sigaction(SIGUSR2, &ign, &old_usr2);
  Start();
  Handshake();
  ExecOutput o = RunExec(Exec{{"/bin/grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"}, {}, "", 0, 0});
  sigaction(SIGUSR2, &old_usr2, nullptr);
  EXPECT_EQ(o.out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

// ---- Job log cap ---------------------------------------------------------------------

TEST_F(AgentTest, AJobsLogIsCappedKeepingHeadAndTail) {
  const std::string filler(16 << 10, 'x');
  const int lines = static_cast<int>((12 << 20) / filler.size());  // 12 MiB of output
  Start([&](const BuildInputs& in) -> absl::StatusOr<BuildOutcome> {
    for (int i = 0; i < lines; ++i) in.log(LogStream::kStdout, absl::StrCat("line ", i, " ", filler));
    return BuildOutcome{};
  });
  Handshake();
  ASSERT_OK(host_->Send(Job({}), kT));
  ASSERT_OK(host_->SendBytes(1, "context", kT));
  ASSERT_OK(host_->SendBytes(3, "image", kT));
  std::vector<std::string> texts;
  size_t bytes = 0;
  Message m = Read();
  while (std::holds_alternative<Log>(m)) {
    bytes += std::get<Log>(m).text.size();
    texts.push_back(std::get<Log>(m).text);
    m = Read();
  }
  ASSERT_TRUE(std::holds_alternative<BuildResult>(m)) << MessageName(m);
  EXPECT_LE(bytes, kMaxJobLogBytes + kMaxLogLine);
  ASSERT_GT(texts.size(), 2u);
  EXPECT_THAT(texts.front(), ::testing::StartsWith("line 0 "));
  EXPECT_THAT(texts.back(), ::testing::StartsWith(absl::StrCat("line ", lines - 1, " ")));
  int notes = 0;
  for (const std::string& t : texts) {
    if (absl::StrContains(t, "log truncated")) {
      ++notes;
      EXPECT_THAT(t, HasSubstr("lines dropped"));
    }
  }
  EXPECT_EQ(notes, 1);
}

// ---- Work dir ------------------------------------------------------------------------

TEST_F(AgentTest, AWorkDirWithoutTheMarkerIsNotCleared) {
  before_start_ = [this](AgentOptions& o) {
    o.work_dir = dir_ + "/not-ours";
    mkdir(o.work_dir.c_str(), 0700);
    std::ofstream(o.work_dir + "/precious") << "data";
  };
  Start([](const BuildInputs&) -> absl::StatusOr<BuildOutcome> { return BuildOutcome{}; });
  Handshake();
  ASSERT_OK(host_->Send(Job({}), kT));
  ASSERT_OK(host_->SendBytes(1, "context", kT));
  ASSERT_OK(host_->SendBytes(3, "image", kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                    HasSubstr("no marker file")));
  EXPECT_EQ(file::ReadFileOrEmpty(dir_ + "/not-ours/precious"), "data");
  ExpectAlive();
}

TEST_F(AgentTest, MalformedMessageGetsAnErrorAndTheSessionGoesOn) {
  Start();
  Handshake();
  ASSERT_OK(host_->SendFrame(Frame(FrameType::kSecret, 0, "\0\0\0\x03" "a/b\0\0\0\0"), kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Secret")));
  ExpectAlive();
}

TEST_F(AgentTest, UnknownTypeGetsUnimplementedAndTheSessionGoesOn) {
  Start();
  Handshake();
  ASSERT_OK(host_->SendFrame(Frame(uint8_t{0x60}, 0, "from the future"), kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("0x60")));
  ExpectAlive();
}

TEST_F(AgentTest, StrayChunk) {
  Start();
  Handshake();
  ASSERT_OK(host_->SendFrame(Frame(FrameType::kChunk, 9, "x"), kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("outside of a request that announced it")));
  ExpectAlive();
}

TEST_F(AgentTest, AgentOnlyMessageFromTheHost) {
  Start();
  Handshake();
  ASSERT_OK(host_->Send(Pong{}, kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("Pong is not a host -> agent message")));
}

TEST_F(AgentTest, GarbageEndsTheSessionWithAnError) {
  Start();
  Handshake();
  ASSERT_OK(host_stream_->Write("\x16\x03\x01 TLS hello?", kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("bad magic")));
  EXPECT_THAT(host_->ReadFrame(kT), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("closed")));
  thread_.join();
  EXPECT_THAT(serve_status_, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("bad magic")));
}

TEST_F(AgentTest, HostClosingEndsTheSession) {
  Start();
  Handshake();
  ASSERT_OK(host_stream_->Close());
  thread_.join();
  EXPECT_THAT(serve_status_, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("peer closed")));
}

// ---- ServeChannel: one host session after another on a virtio-serial port --------------

// FakeVirtioPort: a virtio-serial port as virtio_console shows it to the guest: reads end of
// stream while no host is connected and nothing is queued, and discards queued input when the
// guest closes the port (port_fops_release). Each Open() is one open(2) of the port.
struct FakeVirtioPort {
  bool host_connected = false;
  std::string inbuf;      // host -> agent, queued in the guest
  std::string from_agent;  // agent -> host
  int opens = 0;
  size_t discarded = 0;
  int idle_eofs = 0;
  // on_idle_eof(n): called at the n-th (1-based) end of stream read while no host is
  // connected: the test's "a host connects now" (while the agent waits to retry).
  std::function<void(int)> on_idle_eof;

  class Stream : public ByteStream {
   public:
    explicit Stream(FakeVirtioPort* port) : port_(port) {}
    absl::StatusOr<size_t> Read(char* buf, size_t n, int) override {
      if (closed_) return absl::FailedPreconditionError("closed");
      if (port_->inbuf.empty()) {
        if (!port_->host_connected && port_->on_idle_eof) port_->on_idle_eof(++port_->idle_eofs);
        return size_t{0};
      }
      const size_t k = std::min(n, port_->inbuf.size());
      port_->inbuf.copy(buf, k);
      port_->inbuf.erase(0, k);
      return k;
    }
    absl::Status Write(absl::string_view data, int) override {
      port_->from_agent.append(data.data(), data.size());
      port_->host_connected = false;  // the host read the reply and went away
      return absl::OkStatus();
    }
    absl::Status Close() override {
      if (!closed_) {
        port_->discarded += port_->inbuf.size();
        port_->inbuf.clear();
      }
      closed_ = true;
      return absl::OkStatus();
    }

   private:
    FakeVirtioPort* port_;
    bool closed_ = false;
  };

  ChannelOpener Opener() {
    return [this]() -> absl::StatusOr<std::unique_ptr<ByteStream>> {
      ++opens;
      return std::make_unique<Stream>(this);
    };
  }

  void HostSends(const Message& m) {
    host_connected = true;
    inbuf += EncodeFrame(*EncodeMessage(m));
  }

  std::vector<Frame> FramesFromAgent() {
    FrameDecoder d;
    d.Feed(from_agent);
    std::vector<Frame> out;
    while (true) {
      absl::StatusOr<std::optional<Frame>> f = d.Next();
      if (!f.ok() || !f->has_value()) break;
      out.push_back(**f);
    }
    return out;
  }
};

AgentOptions LoopAgentOptions() {
  AgentOptions o;
  o.work_dir = TempDir();
  o.io_timeout_ms = kT;
  return o;
}

// Issue 6: a second host (kilnctl builders exec) connected while the agent waited after the
// first host's end of stream; its Hello must be answered, not discarded by a close/reopen.
TEST(ServeChannel, HelloArrivingWhileTheAgentWaitsIsServedOnTheSamePort) {
  FakeVirtioPort port;
  port.on_idle_eof = [&](int n) {
    if (n == 1) port.HostSends(Hello{kProtocolMajor, kProtocolMinor, "kilnctl"});
  };
  ServeLoopOptions loop;
  loop.retry_ms = 1;
  loop.keep_open_on_eof = true;
  loop.max_sessions = 3;  // idle EOF, the exec host's session, idle EOF
  std::vector<std::string> said;
  loop.say = [&](const std::string& l) { said.push_back(l); };
  ASSERT_OK(ServeChannel(port.Opener(), LoopAgentOptions(), loop));
  EXPECT_EQ(port.opens, 1);
  EXPECT_EQ(port.discarded, 0u);
  std::vector<Frame> frames = port.FramesFromAgent();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_OK(DecodeAs<Ready>(frames[0]).status());
  EXPECT_THAT(said, ::testing::IsEmpty());
}

// Without keep_open_on_eof (vsock: one stream per connection) the stream is closed and the
// next one opened after each session; on a virtio-serial port that loses the queued Hello,
// which this test pins down as the reason keep_open_on_eof exists.
TEST(ServeChannel, ReopeningAfterEachSessionLosesInputQueuedInAVirtioPort) {
  FakeVirtioPort port;
  port.on_idle_eof = [&](int n) {
    if (n == 1) port.HostSends(Hello{kProtocolMajor, kProtocolMinor, "kilnctl"});
  };
  ServeLoopOptions loop;
  loop.retry_ms = 1;
  loop.max_sessions = 2;
  ASSERT_OK(ServeChannel(port.Opener(), LoopAgentOptions(), loop));
  EXPECT_EQ(port.opens, 2);
  EXPECT_GT(port.discarded, 0u);
  EXPECT_TRUE(port.from_agent.empty());
}

TEST(ServeChannel, OnceReturnsAfterOneSessionWithItsError) {
  FakeVirtioPort port;
  port.host_connected = true;
  port.inbuf = "garbage that is no frame";
  ServeLoopOptions loop;
  loop.once = true;
  loop.keep_open_on_eof = true;
  std::vector<std::string> said;
  loop.say = [&](const std::string& l) { said.push_back(l); };
  EXPECT_THAT(ServeChannel(port.Opener(), LoopAgentOptions(), loop),
              StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
  ASSERT_EQ(said.size(), 1u);
  EXPECT_THAT(said[0], HasSubstr("session ended: "));
}

TEST(ServeChannel, OpenErrorsAreReportedOnceAndRetried) {
  FakeVirtioPort port;
  int attempts = 0;
  ChannelOpener open = [&]() -> absl::StatusOr<std::unique_ptr<ByteStream>> {
    if (++attempts < 3) return absl::NotFoundError("no virtio-serial port named \"x\"");
    return port.Opener()();
  };
  ServeLoopOptions loop;
  loop.retry_ms = 1;
  loop.keep_open_on_eof = true;
  loop.max_sessions = 1;
  std::vector<std::string> said;
  loop.say = [&](const std::string& l) { said.push_back(l); };
  ASSERT_OK(ServeChannel(open, LoopAgentOptions(), loop));
  EXPECT_EQ(attempts, 3);
  ASSERT_EQ(said.size(), 1u);
  EXPECT_THAT(said[0], HasSubstr("no virtio-serial port"));
}

TEST(Health, Parse) {
  Pong p;
  ASSERT_OK(ParseHealth("1.5 2\n", "0.00 0.01 10.5 1/2 3\n",
                        "MemTotal: 10 kB\nMemAvailable: 5 kB\n", &p));
  EXPECT_EQ(p.uptime_ms, 1500u);
  EXPECT_EQ(p.load5_milli, 10u);
  EXPECT_EQ(p.load15_milli, 10500u);
  EXPECT_EQ(p.mem_available_bytes, 5120u);
  EXPECT_THAT(ParseHealth("x", "0 0 0", "", &p),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("/proc/uptime")));
  EXPECT_THAT(ParseHealth("1", "0 0", "", &p),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("/proc/loadavg")));
  EXPECT_THAT(ParseHealth("1", "0 0 0", "MemTotal: 1 kB\n", &p),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("MemAvailable")));
}

}  // namespace
}  // namespace kiln::agent

namespace kiln::agent {
namespace {

// ---------------------------------------------------------------------------------------
// WarmUp (protocol 1.1): the daemon started and base images loaded before any job.

TEST_F(AgentTest, WarmUpReceivesTheBaseImagesAndAnswersABuildResult) {
  std::vector<std::string> seen_images;
  before_start_ = [&](AgentOptions& o) {
    o.warm_up = [&](const WarmUpInputs& in) -> absl::StatusOr<BuildOutcome> {
      for (const std::string& p : in.preload_paths) seen_images.push_back(file::ReadFileOrEmpty(p));
      EXPECT_EQ(in.deadline_ms, 5000u);
      in.log(LogStream::kStderr, "[kiln-runner] dockerd ready in 7 ms (warm: before any job)");
      BuildOutcome out;
      out.phases = {{"dockerd_start", 7}, {"preload", 3}};
      return out;
    };
  };
  Start([](const BuildInputs&) -> absl::StatusOr<BuildOutcome> { return BuildOutcome{}; });
  Ready r = Handshake();
  EXPECT_THAT(r.capabilities, ElementsAre("health", "exec", "build", "warm"));
  ASSERT_OK(host_->Send(WarmUp{{{"kiln-busybox:1", 1}, {"base:2", 3}}, 5000}, kT));
  ASSERT_OK(host_->SendBytes(1, "busybox archive", kT));
  ASSERT_OK(host_->SendBytes(3, "second archive", kT));
  Message m = Read();
  ASSERT_TRUE(std::holds_alternative<Log>(m)) << MessageName(m);
  m = Read();
  ASSERT_TRUE(std::holds_alternative<BuildResult>(m)) << MessageName(m);
  const BuildResult& res = std::get<BuildResult>(m);
  EXPECT_EQ(res.job_id, kWarmUpJobId);
  EXPECT_EQ(res.exit_status, 0);
  ASSERT_EQ(res.phases.size(), 3u);
  EXPECT_EQ(res.phases[0].name, "receive_images");
  EXPECT_EQ(res.phases[1].name, "dockerd_start");
  EXPECT_THAT(seen_images, ElementsAre("busybox archive", "second archive"));
  // The received archives are gone: the images live in the daemon now.
  struct stat st;
  EXPECT_NE(stat((dir_ + "/work/warm-up").c_str(), &st), 0);
  ExpectAlive();
}

TEST_F(AgentTest, WarmUpWithSecretsPendingIsRefusedAndTheSecretsWiped) {
  bool called = false;
  before_start_ = [&](AgentOptions& o) {
    o.warm_up = [&](const WarmUpInputs&) -> absl::StatusOr<BuildOutcome> {
      called = true;
      return BuildOutcome{};
    };
  };
  Start([](const BuildInputs&) -> absl::StatusOr<BuildOutcome> { return BuildOutcome{}; });
  Handshake();
  ASSERT_OK(host_->Send(Secret{"tok", "kiln-warm-secret"}, kT));
  ASSERT_OK(host_->Send(WarmUp{{{"kiln-busybox:1", 1}}, 0}, kT));
  ASSERT_OK(host_->SendBytes(1, "archive", kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                    HasSubstr("WarmUp with secrets pending")));
  EXPECT_FALSE(called);
  // The secret is gone: a job naming it is refused.
  ASSERT_OK(host_->Send(Job({"tok"}), kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("[tok]")));
}

TEST_F(AgentTest, WarmUpWithoutTheCapabilityIsUnimplemented) {
  Start([](const BuildInputs&) -> absl::StatusOr<BuildOutcome> { return BuildOutcome{}; });
  Ready r = Handshake();
  EXPECT_THAT(r.capabilities, ElementsAre("health", "exec", "build"));
  ASSERT_OK(host_->Send(WarmUp{{{"kiln-busybox:1", 1}}, 0}, kT));
  ASSERT_OK(host_->SendBytes(1, "archive", kT));
  EXPECT_THAT(ReadError(), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("\"warm\"")));
  ExpectAlive();  // the dropped stream did not break the session
}

}  // namespace
}  // namespace kiln::agent
