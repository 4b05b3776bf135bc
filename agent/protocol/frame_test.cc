// Frame codec tests, one per malformed case (LevelDB db/log_test.cc style), plus round trips,
// every-byte-boundary splits and a fixed-seed garbage/mutation run.
#include "agent/protocol/frame.h"

#include <random>
#include <string>
#include <vector>

#include "agent/protocol/internal/endian.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::agent {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

class FrameTest : public ::testing::Test {
 protected:
  // Feeds `bytes` and drains every complete frame into frames_; returns the first error.
  absl::Status FeedAndDrain(absl::string_view bytes) {
    decoder_.Feed(bytes);
    while (true) {
      absl::StatusOr<std::optional<Frame>> f = decoder_.Next();
      if (!f.ok()) return f.status();
      if (!f->has_value()) return absl::OkStatus();
      frames_.push_back(std::move(**f));
    }
  }

  static std::string Valid(FrameType t = FrameType::kPing, uint32_t sid = 0,
                           std::string payload = "12345678") {
    return EncodeFrame(Frame(t, sid, std::move(payload)));
  }

  // Rewrites the CRC of an encoded frame after a header edit, so that the edit (not the
  // checksum) is what the decoder sees.
  static void FixCrc(std::string* wire) {
    const std::string payload = wire->substr(kFrameHeaderSize);
    Frame f(static_cast<uint8_t>((*wire)[4]), internal::GetU32(wire->data() + 8), payload);
    std::string again = EncodeFrame(f);
    wire->replace(16, 4, again.substr(16, 4));
  }

  FrameDecoder decoder_;
  std::vector<Frame> frames_;
};

// ---------------------------------------------------------------------------------------
// Well-formed input.

TEST_F(FrameTest, EmptyInputIsCleanEnd) {
  EXPECT_OK(FeedAndDrain(""));
  EXPECT_OK(decoder_.Finish());
  EXPECT_TRUE(frames_.empty());
}

TEST_F(FrameTest, HeaderLayoutIsAsSpecified) {
  std::string w = EncodeFrame(Frame(FrameType::kChunk, 0x01020304, "ab"));
  ASSERT_EQ(w.size(), kFrameHeaderSize + 2);
  EXPECT_EQ(w.substr(0, 4), "KILN");
  EXPECT_EQ(static_cast<uint8_t>(w[4]), 0x30);
  EXPECT_EQ(w.substr(5, 3), std::string(3, '\0'));
  EXPECT_EQ(w.substr(8, 4), std::string("\x01\x02\x03\x04", 4));
  EXPECT_EQ(w.substr(12, 4), std::string("\0\0\0\x02", 4));
  EXPECT_EQ(w.substr(20), "ab");
}

TEST_F(FrameTest, RoundTripEmptyAndMaxPayload) {
  Frame empty(FrameType::kPing, 0, "");
  std::string big(kMaxPayload, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31);
  Frame max(FrameType::kChunk, 7, big);
  ASSERT_OK(FeedAndDrain(EncodeFrame(empty) + EncodeFrame(max)));
  ASSERT_EQ(frames_.size(), 2u);
  EXPECT_EQ(frames_[0], empty);
  EXPECT_EQ(frames_[1], max);
  EXPECT_OK(decoder_.Finish());
  EXPECT_EQ(decoder_.buffered(), 0u);
}

TEST_F(FrameTest, BinaryPayloadSurvives) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  all += "KILN";  // the magic inside a payload is just bytes
  ASSERT_OK(FeedAndDrain(EncodeFrame(Frame(FrameType::kChunk, 1, all))));
  ASSERT_EQ(frames_.size(), 1u);
  EXPECT_EQ(frames_[0].payload, all);
}

TEST_F(FrameTest, SplitAtEveryByteBoundary) {
  std::string wire = Valid(FrameType::kHello, 0, "") + Valid(FrameType::kChunk, 3, std::string("xyz\0\xff", 5)) +
                     Valid(FrameType::kStreamEnd, 3, std::string(9, 'e')) + Valid();
  for (size_t i = 0; i <= wire.size(); ++i) {
    for (size_t j = i; j <= wire.size(); j += 5) {
      SCOPED_TRACE(testing::Message() << "splits " << i << ", " << j);
      FrameDecoder d;
      std::vector<Frame> got;
      for (absl::string_view part : {absl::string_view(wire).substr(0, i),
                                     absl::string_view(wire).substr(i, j - i),
                                     absl::string_view(wire).substr(j)}) {
        d.Feed(part);
        while (true) {
          auto f = d.Next();
          ASSERT_OK(f.status());
          if (!f->has_value()) break;
          got.push_back(**f);
        }
      }
      ASSERT_EQ(got.size(), 4u);
      EXPECT_EQ(got[1].payload, std::string("xyz\0\xff", 5));
      EXPECT_OK(d.Finish());
    }
  }
}

TEST_F(FrameTest, OneByteAtATime) {
  std::string wire = Valid() + Valid(FrameType::kChunk, 9, std::string(300, 'c'));
  for (char c : wire) ASSERT_OK(FeedAndDrain(absl::string_view(&c, 1)));
  ASSERT_EQ(frames_.size(), 2u);
  EXPECT_EQ(frames_[1].stream_id, 9u);
}

TEST_F(FrameTest, UnknownTypeIsDeliveredForTheMessageLayerToRefuse) {
  ASSERT_OK(FeedAndDrain(EncodeFrame(Frame(uint8_t{0x7e}, 0, "future"))));
  ASSERT_EQ(frames_.size(), 1u);
  EXPECT_EQ(frames_[0].type, 0x7e);
  EXPECT_EQ(FrameTypeName(0x7e), "0x7e");
  EXPECT_FALSE(IsKnownFrameType(0x7e));
}

// ---------------------------------------------------------------------------------------
// Malformed input: one test per case.

TEST_F(FrameTest, BadMagicFirstByte) {
  EXPECT_THAT(FeedAndDrain("X"), StatusIs(absl::StatusCode::kDataLoss,
                                         HasSubstr("bad magic: byte 0 is 0x58")));
}

TEST_F(FrameTest, BadMagicLaterByteIsReportedBeforeTheHeaderIsComplete) {
  EXPECT_THAT(FeedAndDrain("KIX"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("byte 2 is 0x58, want 0x4c")));
}

TEST_F(FrameTest, TypeZero) {
  std::string w = Valid();
  w[4] = 0;
  FixCrc(&w);
  EXPECT_THAT(FeedAndDrain(w),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("type 0 is reserved")));
}

TEST_F(FrameTest, NonZeroFlags) {
  std::string w = Valid();
  w[5] = 0x01;
  EXPECT_THAT(FeedAndDrain(w),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown flags 0x01")));
}

TEST_F(FrameTest, NonZeroReserved) {
  std::string w = Valid();
  w[7] = 0x10;
  EXPECT_THAT(FeedAndDrain(w), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("non-zero reserved field 0x0010")));
}

TEST_F(FrameTest, LengthOverLimitIsReportedFromTheHeaderAlone) {
  std::string header = Valid().substr(0, kFrameHeaderSize);
  internal::PutU32(header.data() + 12, kMaxPayload + 1);
  EXPECT_THAT(FeedAndDrain(header),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("length 1048577 exceeds limit 1048576")));
}

TEST_F(FrameTest, LengthOverACustomLimit) {
  FrameDecoder small(16);
  small.Feed(Valid(FrameType::kChunk, 1, std::string(17, 'x')));
  EXPECT_THAT(small.Next(), StatusIs(absl::StatusCode::kResourceExhausted,
                                     HasSubstr("length 17 exceeds limit 16")));
}

TEST_F(FrameTest, MaxLengthFieldDoesNotAllocate) {
  std::string header = Valid().substr(0, kFrameHeaderSize);
  internal::PutU32(header.data() + 12, 0xFFFFFFFFu);
  EXPECT_THAT(FeedAndDrain(header),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("4294967295")));
}

TEST_F(FrameTest, BadChecksumInPayload) {
  std::string w = Valid(FrameType::kChunk, 5, "payload");
  w.back() ^= 0x01;
  EXPECT_THAT(FeedAndDrain(w), StatusIs(absl::StatusCode::kDataLoss,
                                       HasSubstr("Chunk frame (stream 5, 7 bytes) has bad "
                                                 "checksum")));
}

TEST_F(FrameTest, BadChecksumInHeaderStreamId) {
  std::string w = Valid(FrameType::kChunk, 5, "payload");
  w[11] = 6;  // stream 5 -> 6: covered by the checksum
  EXPECT_THAT(FeedAndDrain(w), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("checksum")));
}

TEST_F(FrameTest, BadChecksumField) {
  std::string w = Valid();
  w[19] ^= 0x80;
  EXPECT_THAT(FeedAndDrain(w), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("checksum")));
}

TEST_F(FrameTest, ChunkWithoutStreamId) {
  std::string w = EncodeFrame(Frame(FrameType::kChunk, 0, "x"));
  EXPECT_THAT(FeedAndDrain(w), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("Chunk frame needs a stream id != 0")));
}

TEST_F(FrameTest, StreamEndWithoutStreamId) {
  std::string w = EncodeFrame(Frame(FrameType::kStreamEnd, 0, "x"));
  EXPECT_THAT(FeedAndDrain(w), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("StreamEnd frame needs a stream id")));
}

TEST_F(FrameTest, ControlFrameWithStreamId) {
  std::string w = EncodeFrame(Frame(FrameType::kPing, 4, ""));
  EXPECT_THAT(FeedAndDrain(w), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("Ping frame must have stream id 0, got 4")));
}

TEST_F(FrameTest, EmptyChunk) {
  std::string w = EncodeFrame(Frame(FrameType::kChunk, 3, ""));
  EXPECT_THAT(FeedAndDrain(w), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("empty Chunk frame on stream 3")));
}

TEST_F(FrameTest, TruncatedHeader) {
  ASSERT_OK(FeedAndDrain(Valid().substr(0, 11)));
  EXPECT_THAT(decoder_.Finish(), StatusIs(absl::StatusCode::kDataLoss,
                                          HasSubstr("truncated frame: stream ended after 11 "
                                                    "of 20 header bytes")));
}

TEST_F(FrameTest, TruncatedPayload) {
  std::string w = Valid(FrameType::kChunk, 1, "0123456789");
  ASSERT_OK(FeedAndDrain(w.substr(0, w.size() - 3)));
  EXPECT_THAT(decoder_.Finish(),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("truncated Chunk frame: stream ended after 7 of 10 payload")));
}

TEST_F(FrameTest, TrailingGarbageAfterAValidFrame) {
  EXPECT_THAT(FeedAndDrain(Valid() + "junk"),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("frame at stream offset 28: bad magic: byte 0 is 0x6a")));
  EXPECT_EQ(frames_.size(), 1u);  // the good frame before the garbage was delivered
}

TEST_F(FrameTest, ErrorIsStickyAndResetClearsIt) {
  ASSERT_FALSE(FeedAndDrain("garbage").ok());
  EXPECT_FALSE(FeedAndDrain(Valid()).ok());  // still failed: framing is lost
  EXPECT_FALSE(decoder_.Finish().ok());
  decoder_.Reset();
  EXPECT_OK(FeedAndDrain(Valid()));
  EXPECT_EQ(frames_.size(), 1u);
}

TEST_F(FrameTest, CheckFrameRejectsOversizedPayloadForSenders) {
  EXPECT_THAT(CheckFrame(Frame(FrameType::kChunk, 1, std::string(kMaxPayload + 1, 'x'))),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("exceeds limit")));
  EXPECT_OK(CheckFrame(Frame(FrameType::kChunk, 1, "x")));
}

// ---------------------------------------------------------------------------------------
// Garbage: fixed seed, never crashes, every outcome is frames or a Status.

TEST_F(FrameTest, RandomGarbageNeverCrashes) {
  std::mt19937 rng(20261101);
  int errors = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string junk(rng() % 64, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    if (iter % 3 == 0) junk.insert(0, "KILN");  // get past the magic sometimes
    FrameDecoder d(4096);
    d.Feed(junk);
    absl::Status s;
    while (true) {
      auto f = d.Next();
      if (!f.ok()) { s = f.status(); break; }
      if (!f->has_value()) { s = d.Finish(); break; }
      EXPECT_OK(CheckFrame(**f, 4096));
    }
    if (!s.ok()) ++errors;
  }
  EXPECT_GT(errors, 2900);  // garbage is (almost) always refused
}

TEST_F(FrameTest, RandomMutationsOfValidStreamsNeverCrash) {
  std::mt19937 rng(7);
  std::string good = Valid(FrameType::kHello, 0, "hi") + Valid(FrameType::kChunk, 1, "abc") +
                     Valid(FrameType::kStreamEnd, 1, std::string(9, '\0'));
  int detected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string w = good;
    const int edits = 1 + rng() % 3;
    for (int e = 0; e < edits; ++e) w[rng() % w.size()] ^= static_cast<char>(1 + rng() % 255);
    FrameDecoder d;
    d.Feed(w.substr(0, rng() % (w.size() + 1)));
    d.Feed(w.substr(std::min(w.size(), d.buffered())));
    std::vector<Frame> got;
    absl::Status s;
    while (true) {
      auto f = d.Next();
      if (!f.ok()) { s = f.status(); break; }
      if (!f->has_value()) { s = d.Finish(); break; }
      got.push_back(**f);
    }
    // CRC-32C detects every 1-3 byte change within a frame of this size.
    if (!s.ok()) ++detected;
  }
  EXPECT_EQ(detected, 3000);
}

}  // namespace
}  // namespace kiln::agent
