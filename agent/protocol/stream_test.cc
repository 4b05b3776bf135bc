#include "agent/protocol/stream.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::agent {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

std::string Blob(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 13 + (i >> 8));
  return s;
}

TEST(Stream, ChunkFramesSplitsAndEnds) {
  std::vector<Frame> frames = ChunkFrames(3, Blob(10), 4);
  ASSERT_EQ(frames.size(), 4u);  // 4 + 4 + 2 + end
  EXPECT_EQ(frames[2].payload.size(), 2u);
  EXPECT_EQ(frames[3].type, static_cast<uint8_t>(FrameType::kStreamEnd));
  EXPECT_EQ(ChunkFrames(5, "").size(), 1u);
}

TEST(Stream, ReassemblesALargeBlob) {
  const std::string blob = Blob(3 * kMaxPayload + 17);
  StreamReceiver rx;
  StringSink sink;
  ASSERT_OK(rx.Expect(7, blob.size(), &sink));
  for (const Frame& f : ChunkFrames(7, blob)) {
    ASSERT_OK(CheckFrame(f));
    ASSERT_OK(rx.OnFrame(f));
  }
  EXPECT_TRUE(rx.Done(7));
  EXPECT_TRUE(rx.AllDone());
  EXPECT_EQ(sink.data(), blob);
}

TEST(Stream, InterleavedStreams) {
  StreamReceiver rx;
  StringSink a, b;
  ASSERT_OK(rx.Expect(2, 100, &a));
  ASSERT_OK(rx.Expect(4, 100, &b));
  auto fa = ChunkFrames(2, "aaaa", 1);
  auto fb = ChunkFrames(4, "bb", 1);
  for (size_t i = 0; i < std::max(fa.size(), fb.size()); ++i) {
    EXPECT_FALSE(rx.AllDone());
    if (i < fa.size()) ASSERT_OK(rx.OnFrame(fa[i]));
    if (i < fb.size()) ASSERT_OK(rx.OnFrame(fb[i]));
  }
  EXPECT_TRUE(rx.AllDone());
  EXPECT_EQ(a.data(), "aaaa");
  EXPECT_EQ(b.data(), "bb");
}

TEST(Stream, ChunkOnUnannouncedStream) {
  StreamReceiver rx;
  EXPECT_THAT(rx.OnFrame(Frame(FrameType::kChunk, 9, "x")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("Chunk frame on stream 9 which is not open")));
}

TEST(Stream, ChunkAfterEnd) {
  StreamReceiver rx;
  StringSink s;
  ASSERT_OK(rx.Expect(1, 10, &s));
  for (const Frame& f : ChunkFrames(1, "ab")) ASSERT_OK(rx.OnFrame(f));
  EXPECT_THAT(rx.OnFrame(Frame(FrameType::kChunk, 1, "x")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not open")));
}

TEST(Stream, OverTheStreamLimit) {
  StreamReceiver rx;
  StringSink s;
  ASSERT_OK(rx.Expect(1, 5, &s));
  ASSERT_OK(rx.OnFrame(Frame(FrameType::kChunk, 1, "abc")));
  EXPECT_THAT(rx.OnFrame(Frame(FrameType::kChunk, 1, "def")),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("stream 1 exceeds its limit of 5 bytes")));
  EXPECT_FALSE(rx.Done(1));
}

TEST(Stream, TotalMismatch) {
  StreamReceiver rx;
  StringSink s;
  ASSERT_OK(rx.Expect(1, 10, &s));
  ASSERT_OK(rx.OnFrame(Frame(FrameType::kChunk, 1, "abc")));
  Frame end = *EncodeMessage(StreamEnd{1, 4, false, ""});
  EXPECT_THAT(rx.OnFrame(end), StatusIs(absl::StatusCode::kDataLoss,
                                        HasSubstr("ended with total 4 bytes, but 3 bytes")));
  EXPECT_FALSE(rx.Done(1));
}

TEST(Stream, AbortedBySender) {
  StreamReceiver rx;
  StringSink s;
  ASSERT_OK(rx.Expect(1, 10, &s));
  Frame end = *EncodeMessage(StreamEnd{1, 0, true, "read context: EIO"});
  EXPECT_THAT(rx.OnFrame(end), StatusIs(absl::StatusCode::kAborted,
                                        HasSubstr("aborted by the sender: read context: EIO")));
}

TEST(Stream, MalformedStreamEnd) {
  StreamReceiver rx;
  StringSink s;
  ASSERT_OK(rx.Expect(1, 10, &s));
  EXPECT_THAT(rx.OnFrame(Frame(FrameType::kStreamEnd, 1, "xx")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("truncated")));
}

TEST(Stream, ControlFrameIsNotAStreamFrame) {
  StreamReceiver rx;
  EXPECT_THAT(rx.OnFrame(*EncodeMessage(Ping{})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not part of a stream")));
}

TEST(Stream, ExpectRules) {
  StreamReceiver rx;
  StringSink s;
  EXPECT_THAT(rx.Expect(0, 1, &s), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0")));
  ASSERT_OK(rx.Expect(1, 1, &s));
  EXPECT_THAT(rx.Expect(1, 1, &s), StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("1")));
}

class FailingSink : public StreamSink {
 public:
  absl::Status Write(absl::string_view) override { return absl::InternalError("disk full"); }
};

TEST(Stream, SinkErrorIsReturned) {
  StreamReceiver rx;
  FailingSink s;
  ASSERT_OK(rx.Expect(1, 10, &s));
  EXPECT_THAT(rx.OnFrame(Frame(FrameType::kChunk, 1, "a")),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("disk full")));
}

TEST(Stream, IdAllocatorParity) {
  StreamIdAllocator host(StreamIdAllocator::Side::kHost), agent(StreamIdAllocator::Side::kAgent);
  EXPECT_EQ(host.Next(), 1u);
  EXPECT_EQ(host.Next(), 3u);
  EXPECT_EQ(agent.Next(), 2u);
  EXPECT_EQ(agent.Next(), 4u);
  EXPECT_TRUE(IsHostStream(1) && IsAgentStream(2) && !IsAgentStream(0) && !IsHostStream(0));
}

}  // namespace
}  // namespace kiln::agent
