// File: agent/protocol/stream.h
// -----------------------------------------------------------------------------
//
// Streams: how bulk bytes (a build context tar, base image archives, the result image, exec
// stdin/stdout/stderr) cross the channel (PROTOCOL.md "Streams"). A control message announces
// a stream id; the sender then sends Chunk frames (1..kMaxPayload bytes each) on that id and
// closes it with one StreamEnd{total_bytes}. The host allocates odd ids, the agent even ids.
//
// StreamReceiver is the receiving side as a pure state machine: it accepts only announced
// streams, bounds each stream's size, checks the StreamEnd total, and hands bytes to a sink
// (a file for contexts, memory in tests).
//
// Example (agent receiving a build context into a file sink):
//
//   StreamReceiver rx;
//   RETURN_IF_ERROR(rx.Expect(job.context_stream, /*max_bytes=*/8ull << 30, &file_sink));
//   while (!rx.Done(job.context_stream)) {
//     ASSIGN_OR_RETURN(Frame f, conn.ReadFrame(deadline_ms));
//     RETURN_IF_ERROR(rx.OnFrame(f));
//   }
#ifndef KILN_AGENT_PROTOCOL_STREAM_H_
#define KILN_AGENT_PROTOCOL_STREAM_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/protocol/frame.h"
#include "agent/protocol/messages.h"

namespace kiln::agent {

// StreamSink: where a received stream's bytes go.
class StreamSink {
 public:
  virtual ~StreamSink() = default;
  // Write(bytes): appends bytes. An error aborts the stream (StreamReceiver returns it).
  virtual absl::Status Write(absl::string_view bytes) = 0;
};

// StringSink: keeps a stream in memory (small streams, tests).
class StringSink : public StreamSink {
 public:
  absl::Status Write(absl::string_view bytes) override {
    data_.append(bytes.data(), bytes.size());
    return absl::OkStatus();
  }
  const std::string& data() const { return data_; }

 private:
  std::string data_;
};

// StreamIdAllocator: hands out this side's stream ids: odd ids from 1 on the host, even ids
// from 2 on the agent. Wraps around to the first id after 2^32 - 2 ids.
class StreamIdAllocator {
 public:
  enum class Side { kHost, kAgent };
  explicit StreamIdAllocator(Side side) : next_(side == Side::kHost ? 1 : 2), first_(next_) {}
  uint32_t Next() {
    const uint32_t id = next_;
    next_ += 2;
    if (next_ < 2) next_ = first_;  // wrapped
    return id;
  }

 private:
  uint32_t next_;
  uint32_t first_;
};

// ChunkFrames(stream_id, data, chunk_bytes): `data` as Chunk frames of at most `chunk_bytes`
// (<= kMaxPayload) each, followed by its StreamEnd frame. Empty data gives only the
// StreamEnd. For data in memory; large files are sent chunk by chunk by the transport.
// REQUIRES: stream_id != 0, 0 < chunk_bytes <= kMaxPayload.
std::vector<Frame> ChunkFrames(uint32_t stream_id, absl::string_view data,
                               size_t chunk_bytes = kMaxPayload);

// StreamReceiver: reassembles announced streams from Chunk/StreamEnd frames.
// Not thread-safe.
class StreamReceiver {
 public:
  // Expect(stream_id, max_bytes, sink): announces a stream of at most `max_bytes` bytes.
  // Errors: InvalidArgument for id 0; AlreadyExists if the id is already in use.
  absl::Status Expect(uint32_t stream_id, uint64_t max_bytes, StreamSink* sink);

  // OnFrame(frame): takes a Chunk or StreamEnd frame. Errors:
  //   InvalidArgument    not a Chunk/StreamEnd frame; stream not announced (or already
  //                      ended); bad StreamEnd payload
  //   ResourceExhausted  the stream grew past its max_bytes
  //   DataLoss           StreamEnd total differs from the bytes received
  //   Aborted            the sender aborted the stream (its error message is included)
  //   the sink's error
  // After an error the stream is closed (later frames on it are refused as not announced).
  absl::Status OnFrame(const Frame& frame);

  // Done(stream_id): whether the stream ended successfully.
  bool Done(uint32_t stream_id) const;

  // AllDone(): whether every announced stream ended successfully.
  bool AllDone() const;

  // Unfinished(): ids of announced streams that have not ended successfully (still open, or
  // failed while the sender may still be sending), ascending.
  std::vector<uint32_t> Unfinished() const;

  // Received(stream_id): bytes received so far on the stream (0 if unknown).
  uint64_t Received(uint32_t stream_id) const;

 private:
  struct State {
    uint64_t max_bytes = 0;
    uint64_t received = 0;
    StreamSink* sink = nullptr;
    bool done = false;
    bool failed = false;
  };
  std::map<uint32_t, State> streams_;
};

}  // namespace kiln::agent

#endif  // KILN_AGENT_PROTOCOL_STREAM_H_
