// Message codec tests: a round trip for every message, one test per malformed case, every
// truncation of every message, and fixed-seed random payloads for every type.
#include "agent/protocol/messages.h"

#include <random>
#include <string>
#include <vector>

#include "agent/protocol/internal/endian.h"
#include "agent/protocol/text.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::agent {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

BuildJob SampleJob() {
  BuildJob j;
  j.job_id = "job-42.a_b";
  j.context_stream = 1;
  j.dockerfile_path = "sub/Dockerfile";
  j.dockerfile = std::string("FROM scratch\nRUN --mount=type=secret,id=tok true\n\0", 50);
  j.build_args = {{"HTTP_PROXY", ""}, {"VERSION", "1.2 \xC3\xA9"}};
  j.target = "final";
  j.network = NetworkMode::kHost;
  j.secret_ids = {"tok", "npm.rc"};
  j.preload_images = {{"debian:bookworm", 3}, {"busybox:latest", 5}};
  j.tag = "kiln/out:1";
  j.deadline_ms = 600000;
  return j;
}

// One valid instance of every message type.
std::vector<Message> AllMessages() {
  Pong pong{7, 123456, 1500, 250, 0, 4ull << 30, 3ull << 30};
  return {
      Hello{1, 0, "harness 0.1"},
      Ready{1, 3, "agent 0.1", {kCapHealth, kCapExec, "build"}},
      Ping{0xFFFFFFFFFFFFFFFFull},
      pong,
      ErrorMessage{absl::StatusCode::kFailedPrecondition, "secret \"x\" was not delivered"},
      Secret{"tok", std::string("\0\xff binary value\n", 17)},
      SampleJob(),
      Log{LogStream::kStderr, 99, "#5 [2/3] RUN make \xE2\x9C\x93"},
      BuildResult{"job-42.a_b", 0, "sha256:" + std::string(64, 'a'), 2,
                  {{"receive_context", 12}, {"build", 3400}}, ""},
      Exec{{"/bin/sh", "-c", "echo hi"}, {"PATH=/bin", "A="}, "/tmp", 7, 5000},
      ExecStarted{1234, 2, 4},
      ExecResult{-1, 9, 17, ""},
      StreamEnd{3, 1ull << 40, true, "disk full"},
      WarmUp{{{"kiln-busybox:1", 3}, {"debian:13", 5}}, 60000},
  };
}

TEST(Messages, RoundTripEveryMessage) {
  for (const Message& m : AllMessages()) {
    SCOPED_TRACE(MessageName(m));
    ASSERT_OK_AND_ASSIGN(Frame f, EncodeMessage(m));
    EXPECT_EQ(f.type, static_cast<uint8_t>(FrameTypeOf(m)));
    // Through the frame layer too.
    FrameDecoder d;
    d.Feed(EncodeFrame(f));
    ASSERT_OK_AND_ASSIGN(std::optional<Frame> back, d.Next());
    ASSERT_TRUE(back.has_value());
    ASSERT_OK_AND_ASSIGN(Message got, DecodeMessage(*back));
    EXPECT_TRUE(got == m);
  }
}

TEST(Messages, RoundTripDefaults) {
  for (const Message& m : {Message(Hello{}), Message(Ping{}), Message(Pong{}),
                           Message(ExecResult{}), Message(StreamEnd{1, 0, false, ""})}) {
    SCOPED_TRACE(MessageName(m));
    ASSERT_OK_AND_ASSIGN(Frame f, EncodeMessage(m));
    ASSERT_OK_AND_ASSIGN(Message got, DecodeMessage(f));
    EXPECT_TRUE(got == m);
  }
}

TEST(Messages, PingLayoutIsAsSpecified) {
  ASSERT_OK_AND_ASSIGN(Frame f, EncodeMessage(Ping{0x0102030405060708ull}));
  EXPECT_EQ(f.payload, std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
  ASSERT_OK_AND_ASSIGN(Frame s, EncodeMessage(Secret{"a", "b"}));
  EXPECT_EQ(s.payload, std::string("\0\0\0\x01" "a" "\0\0\0\x01" "b", 10));
}

// Every proper prefix of every message's payload is a truncated message.
TEST(Messages, EveryTruncationIsRefused) {
  for (const Message& m : AllMessages()) {
    ASSERT_OK_AND_ASSIGN(Frame f, EncodeMessage(m));
    for (size_t n = 0; n < f.payload.size(); ++n) {
      SCOPED_TRACE(testing::Message() << MessageName(m) << " cut at " << n);
      Frame cut = f;
      cut.payload.resize(n);
      EXPECT_THAT(DecodeMessage(cut), StatusIs(kInvalid, HasSubstr("truncated")));
    }
  }
}

TEST(Messages, TrailingBytes) {
  for (const Message& m : AllMessages()) {
    SCOPED_TRACE(MessageName(m));
    ASSERT_OK_AND_ASSIGN(Frame f, EncodeMessage(m));
    f.payload += "zz";
    EXPECT_THAT(DecodeMessage(f),
                StatusIs(kInvalid, HasSubstr("2 trailing bytes after the last field")));
  }
}

TEST(Messages, UnknownType) {
  EXPECT_THAT(DecodeMessage(Frame(uint8_t{0x7e}, 0, "x")),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("unknown message type 0x7e")));
}

TEST(Messages, ChunkIsNotAMessage) {
  EXPECT_THAT(DecodeMessage(Frame(FrameType::kChunk, 3, "x")),
              StatusIs(kInvalid, HasSubstr("carries stream bytes, not a message")));
}

TEST(Messages, LengthOverFieldLimit) {
  std::string p(4, '\0');
  internal::PutU32(p.data(), kMaxSecretValue + 1);
  std::string payload = std::string("\0\0\0\x01" "a", 5) + p;
  EXPECT_THAT(DecodeMessage(Frame(FrameType::kSecret, 0, payload)),
              StatusIs(kInvalid, HasSubstr("Secret.value: length 512001 exceeds limit 512000")));
}

// BuildKit accepts secrets up to 500 KiB (a CA bundle of 256 KiB is common): exactly the
// limit goes through encode, one frame, the decoder and decode; one byte more is refused on
// both sides.
TEST(Messages, SecretAtBuildKitsLimitRoundTripsAndOneByteMoreIsRefused) {
  EXPECT_EQ(kMaxSecretValue, 512000u);
  std::string value(kMaxSecretValue, '\0');
  for (size_t i = 0; i < value.size(); ++i) value[i] = static_cast<char>(i * 7 + 1);
  const Secret big{std::string(kMaxIdentifierLength, 'i'), value};
  ASSERT_OK_AND_ASSIGN(Frame f, EncodeMessage(big));
  const std::string wire = EncodeFrame(f);
  FrameDecoder decoder;
  decoder.Feed(wire);
  ASSERT_OK_AND_ASSIGN(std::optional<Frame> back, decoder.Next());
  ASSERT_TRUE(back.has_value());
  ASSERT_OK_AND_ASSIGN(Secret got, DecodeAs<Secret>(*back));
  EXPECT_TRUE(got == big);

  EXPECT_THAT(EncodeMessage(Secret{"a", std::string(kMaxSecretValue + 1, 'x')}),
              StatusIs(kInvalid, HasSubstr("Secret.value")));
  Frame over = f;  // the same frame with one more value byte, as a peer could send it
  over.payload = std::string("\0\0\0\x01" "a", 5);
  std::string len(4, '\0');
  internal::PutU32(len.data(), kMaxSecretValue + 1);
  over.payload += len + std::string(kMaxSecretValue + 1, 'x');
  EXPECT_THAT(DecodeMessage(over), StatusIs(kInvalid, HasSubstr("exceeds limit 512000")));
}

TEST(Messages, ListCountThatCannotFit) {
  // Ready with a capability count of 60 but no bytes for them.
  std::string p("\0\x01\0\0" "\0\0\0\0" "\0\0\0\x3c", 12);
  EXPECT_THAT(DecodeMessage(Frame(FrameType::kReady, 0, p)),
              StatusIs(kInvalid, HasSubstr("Ready.capabilities: truncated: list of 60 entries needs at least 240 bytes, 0 left")));
}

TEST(Messages, ListCountOverLimit) {
  std::string p("\0\x01\0\0" "\0\0\0\0" "\xff\xff\xff\xff", 12);
  EXPECT_THAT(DecodeMessage(Frame(FrameType::kReady, 0, p)),
              StatusIs(kInvalid, HasSubstr("list of 4294967295 entries exceeds limit 64")));
}

TEST(Messages, BadUtf8InLogText) {
  Log l{LogStream::kStdout, 0, "ok"};
  ASSERT_OK_AND_ASSIGN(Frame f, EncodeMessage(l));
  f.payload.back() = '\xC0';  // "o\xC0": overlong lead byte
  EXPECT_THAT(DecodeMessage(f), StatusIs(kInvalid, HasSubstr("Log.text: bad UTF-8 at byte "
                                                             "offset 1 (0xc0)")));
  EXPECT_THAT(EncodeMessage(Log{LogStream::kStdout, 0, "\xED\xA0\x80"}),  // a surrogate
              StatusIs(kInvalid, HasSubstr("bad UTF-8")));
}

TEST(Messages, NulInText) {
  EXPECT_THAT(EncodeMessage(ErrorMessage{absl::StatusCode::kInternal, std::string("a\0b", 3)}),
              StatusIs(kInvalid, HasSubstr("Error.message: NUL byte at offset 1")));
}

TEST(Messages, SecretIdRules) {
  EXPECT_THAT(EncodeMessage(Secret{"a/b", "v"}),
              StatusIs(kInvalid, HasSubstr("Secret.id: byte 0x2f at offset 1 is not in")));
  EXPECT_THAT(EncodeMessage(Secret{"", "v"}), StatusIs(kInvalid, HasSubstr("empty identifier")));
  EXPECT_THAT(EncodeMessage(Secret{"..", "v"}), StatusIs(kInvalid, HasSubstr("reserved")));
  EXPECT_THAT(EncodeMessage(Secret{std::string(129, 'a'), "v"}),
              StatusIs(kInvalid, HasSubstr("129 bytes exceeds limit 128")));
  EXPECT_THAT(EncodeMessage(Secret{"id", std::string(kMaxSecretValue + 1, 'v')}),
              StatusIs(kInvalid, HasSubstr("Secret.value: length 512001 exceeds limit")));
  EXPECT_OK(EncodeMessage(Secret{std::string(128, 'a'), std::string(kMaxSecretValue, 'v')}));
}

TEST(Messages, SecretIdRuleIsEnforcedOnDecode) {
  std::string payload = std::string("\0\0\0\x03" "a b" "\0\0\0\0", 11);
  EXPECT_THAT(DecodeMessage(Frame(FrameType::kSecret, 0, payload)),
              StatusIs(kInvalid, HasSubstr("byte 0x20 at offset 1")));
}

TEST(Messages, ErrorCodeMustBeCanonical) {
  EXPECT_THAT(EncodeMessage(ErrorMessage{absl::StatusCode::kOk, "x"}),
              StatusIs(kInvalid, HasSubstr("Error.code: must be a canonical code 1..16, got 0")));
  std::string payload("\0\x63\0\0\0\0", 6);  // code 99
  EXPECT_THAT(DecodeMessage(Frame(FrameType::kError, 0, payload)),
              StatusIs(kInvalid, HasSubstr("got 99")));
}

TEST(Messages, BoolMustBeZeroOrOne) {
  std::string payload("\0\0\0\0\0\0\0\0" "\x02" "\0\0\0\0", 13);
  EXPECT_THAT(DecodeMessage(Frame(FrameType::kStreamEnd, 1, payload)),
              StatusIs(kInvalid, HasSubstr("StreamEnd.aborted: bool must be 0 or 1, got 2")));
}

TEST(Messages, BuildJobRules) {
  struct Case {
    const char* name;
    void (*edit)(BuildJob&);
    const char* error;
  } cases[] = {
      {"absolute dockerfile", [](BuildJob& j) { j.dockerfile_path = "/etc/passwd"; },
       "must be relative"},
      {"dotdot dockerfile", [](BuildJob& j) { j.dockerfile_path = "a/../../x"; }, "\"..\""},
      {"even context stream", [](BuildJob& j) { j.context_stream = 2; },
       "BuildJob.context_stream: host stream ids are odd, got 2"},
      {"duplicate secret", [](BuildJob& j) { j.secret_ids = {"a", "a"}; },
       "secret_ids[1]: duplicate id"},
      {"bad secret id", [](BuildJob& j) { j.secret_ids = {"a;rm"}; }, "secret_ids[0]: byte 0x3b"},
      {"bad arg key", [](BuildJob& j) { j.build_args = {{"1X", "v"}}; },
       "build_args[0].key: \"1X\" is not"},
      {"duplicate arg", [](BuildJob& j) { j.build_args = {{"A", "1"}, {"A", "2"}}; },
       "duplicate key \"A\""},
      {"stream reuse", [](BuildJob& j) { j.preload_images[1].stream_id = 1; },
       "stream 1 used twice"},
      {"empty ref", [](BuildJob& j) { j.preload_images[0].ref = ""; }, ".ref: empty"},
      {"network", [](BuildJob& j) { j.network = static_cast<NetworkMode>(9); }, "unknown mode 9"},
      {"job id", [](BuildJob& j) { j.job_id = "job 1"; }, "BuildJob.job_id"},
      {"dockerfile size", [](BuildJob& j) { j.dockerfile.assign(kMaxDockerfile + 1, 'x'); },
       "BuildJob.dockerfile: length"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    BuildJob j = SampleJob();
    c.edit(j);
    EXPECT_THAT(EncodeMessage(j), StatusIs(kInvalid, HasSubstr(c.error)));
  }
}

TEST(Messages, WarmUpRules) {
  EXPECT_OK(EncodeMessage(WarmUp{}));  // no base image: the daemon alone
  EXPECT_THAT(EncodeMessage(WarmUp{{{"", 3}}, 0}),
              StatusIs(kInvalid, HasSubstr("WarmUp.preload_images[0].ref: empty")));
  EXPECT_THAT(EncodeMessage(WarmUp{{{"a:1", 2}}, 0}),
              StatusIs(kInvalid, HasSubstr("WarmUp.preload_images[0].stream_id")));
  EXPECT_THAT(EncodeMessage(WarmUp{{{"a:1", 3}, {"b:1", 3}}, 0}),
              StatusIs(kInvalid, HasSubstr("stream 3 used twice")));
  WarmUp many;
  for (uint32_t i = 0; i <= kMaxPreloadImages; ++i) many.preload_images.push_back({"a", 2 * i + 1});
  EXPECT_THAT(EncodeMessage(many), StatusIs(kInvalid, HasSubstr("WarmUp.preload_images")));
  // A WarmUp is a host -> agent message of its own frame type (protocol 1.1).
  EXPECT_EQ(FrameTypeOf(WarmUp{}), FrameType::kWarmUp);
  EXPECT_EQ(MessageName(WarmUp{}), "WarmUp");
}

TEST(Messages, BuildResultDigest) {
  BuildResult r{"j", 0, "sha256:ABC", 0, {}, ""};
  EXPECT_THAT(EncodeMessage(r), StatusIs(kInvalid, HasSubstr("is not sha256:<64 lowercase hex>")));
  r.image_digest = "";
  EXPECT_OK(EncodeMessage(r));
  r.image_stream = 3;
  EXPECT_THAT(EncodeMessage(r), StatusIs(kInvalid, HasSubstr("agent stream ids are even")));
}

TEST(Messages, ExecRules) {
  EXPECT_THAT(EncodeMessage(Exec{}), StatusIs(kInvalid, HasSubstr("Exec.argv: needs at least")));
  EXPECT_THAT(EncodeMessage(Exec{{""}, {}, "", 0, 0}), StatusIs(kInvalid, HasSubstr("empty")));
  EXPECT_THAT(EncodeMessage(Exec{{"/bin/true", std::string("a\0b", 3)}, {}, "", 0, 0}),
              StatusIs(kInvalid, HasSubstr("Exec.argv[1]: NUL byte at offset 1")));
  EXPECT_THAT(EncodeMessage(Exec{{"/bin/true"}, {"=x"}, "", 0, 0}),
              StatusIs(kInvalid, HasSubstr("Exec.env[0]: must be KEY=VALUE")));
  EXPECT_THAT(EncodeMessage(ExecStarted{1, 2, 2}),
              StatusIs(kInvalid, HasSubstr("must differ from stdout_stream")));
  EXPECT_THAT(EncodeMessage(ExecResult{300, 0, 0, ""}),
              StatusIs(kInvalid, HasSubstr("must be 0..255, got 300")));
  // Exec argv may be arbitrary bytes (not UTF-8), only NUL is refused.
  EXPECT_OK(EncodeMessage(Exec{{"/bin/echo", "\xff\xfe"}, {}, "", 0, 0}));
}

TEST(Messages, StreamEndErrorOnlyWhenAborted) {
  EXPECT_THAT(EncodeMessage(StreamEnd{1, 0, false, "x"}),
              StatusIs(kInvalid, HasSubstr("must be empty unless aborted")));
}

TEST(Messages, CapabilityNames) {
  EXPECT_THAT(EncodeMessage(Ready{1, 0, "v", {"Exec"}}),
              StatusIs(kInvalid, HasSubstr("Ready.capabilities[0]")));
}

TEST(Messages, VersionCheck) {
  EXPECT_OK(CheckCompatible(kProtocolMajor, 99));
  EXPECT_THAT(CheckCompatible(2, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("protocol major version mismatch: peer speaks 2.0, this side "
                                 "speaks 1.1")));
}

TEST(Messages, DecodeAs) {
  ASSERT_OK_AND_ASSIGN(Frame pong, EncodeMessage(Pong{}));
  EXPECT_THAT(DecodeAs<Ready>(pong), StatusIs(absl::StatusCode::kFailedPrecondition,
                                              HasSubstr("expected Ready, got Pong")));
  ASSERT_OK_AND_ASSIGN(Frame err, EncodeMessage(FromStatus(absl::NotFoundError("no such"))));
  EXPECT_THAT(DecodeAs<Ready>(err),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("peer error: no such")));
  EXPECT_OK(DecodeAs<Pong>(pong));
}

TEST(Messages, FromStatusKeepsTheLimitAndUtf8) {
  ErrorMessage e = FromStatus(absl::InternalError(std::string(kMaxErrorMessage * 2, '\xff')));
  EXPECT_OK(EncodeMessage(e));
  EXPECT_EQ(e.code, absl::StatusCode::kInternal);
}

TEST(Messages, RandomPayloadsForEveryTypeNeverCrash) {
  std::mt19937 rng(1234);
  std::vector<Frame> seeds;
  for (const Message& m : AllMessages()) seeds.push_back(*EncodeMessage(m));
  int refused = 0, total = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    Frame f = seeds[rng() % seeds.size()];
    if (iter % 2 == 0) {  // mutate a valid payload
      for (int e = 0; e < 1 + static_cast<int>(rng() % 4) && !f.payload.empty(); ++e) {
        f.payload[rng() % f.payload.size()] = static_cast<char>(rng());
      }
    } else {  // pure garbage
      f.payload.assign(rng() % 48, '\0');
      for (char& c : f.payload) c = static_cast<char>(rng());
    }
    ++total;
    absl::StatusOr<Message> m = DecodeMessage(f);
    if (!m.ok()) {
      ++refused;
      EXPECT_FALSE(m.status().message().empty());
    } else {
      EXPECT_OK(Validate(*m));  // whatever decodes is valid and re-encodes
      EXPECT_OK(EncodeMessage(*m));
    }
  }
  EXPECT_GT(refused, total / 4);
}

// ---------------------------------------------------------------------------------------
// text.h

TEST(Text, Utf8) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xE0\x80\xAF"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));          // truncated
  EXPECT_FALSE(IsValidUtf8("\x80"));              // lone continuation
  EXPECT_EQ(SanitizeUtf8(std::string("a\xff" "b\0", 4)), "a\xEF\xBF\xBD" "b\xEF\xBF\xBD");
  EXPECT_TRUE(IsValidUtf8(SanitizeUtf8("\xE2\x82\xF4\x90")));
}

}  // namespace
}  // namespace kiln::agent
