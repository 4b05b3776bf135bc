#include "agent/protocol/stream.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::agent {

std::vector<Frame> ChunkFrames(uint32_t stream_id, absl::string_view data, size_t chunk_bytes) {
  chunk_bytes = std::clamp<size_t>(chunk_bytes, 1, kMaxPayload);
  std::vector<Frame> frames;
  for (size_t off = 0; off < data.size(); off += chunk_bytes) {
    frames.emplace_back(FrameType::kChunk, stream_id, std::string(data.substr(off, chunk_bytes)));
  }
  StreamEnd end;
  end.stream_id = stream_id;
  end.total_bytes = data.size();
  absl::StatusOr<Frame> f = EncodeMessage(end);
  if (f.ok()) frames.push_back(*std::move(f));  // fails only for stream_id 0 (REQUIRES)
  return frames;
}

absl::Status StreamReceiver::Expect(uint32_t stream_id, uint64_t max_bytes, StreamSink* sink) {
  if (stream_id == 0) return absl::InvalidArgumentError("stream id 0 is not a stream");
  auto [it, inserted] = streams_.try_emplace(stream_id);
  if (!inserted) {
    return absl::AlreadyExistsError(absl::StrCat("stream ", stream_id, " already announced"));
  }
  it->second.max_bytes = max_bytes;
  it->second.sink = sink;
  return absl::OkStatus();
}

absl::Status StreamReceiver::OnFrame(const Frame& frame) {
  const bool chunk = frame.type == static_cast<uint8_t>(FrameType::kChunk);
  const bool end = frame.type == static_cast<uint8_t>(FrameType::kStreamEnd);
  if (!chunk && !end) {
    return absl::InvalidArgumentError(
        absl::StrCat(FrameTypeName(frame.type), " frame is not part of a stream"));
  }
  auto it = streams_.find(frame.stream_id);
  if (it == streams_.end() || it->second.done || it->second.failed) {
    return absl::InvalidArgumentError(
        absl::StrCat(FrameTypeName(frame.type), " frame on stream ", frame.stream_id,
                     " which is not open (never announced, or already ended)"));
  }
  State& st = it->second;
  if (chunk) {
    if (st.received + frame.payload.size() > st.max_bytes) {
      st.failed = true;
      return absl::ResourceExhaustedError(absl::StrCat(
          "stream ", frame.stream_id, " exceeds its limit of ", st.max_bytes, " bytes"));
    }
    st.received += frame.payload.size();
    if (absl::Status s = st.sink->Write(frame.payload); !s.ok()) {
      st.failed = true;
      return s;
    }
    return absl::OkStatus();
  }
  absl::StatusOr<Message> m = DecodeMessage(frame);
  if (!m.ok()) {
    st.failed = true;
    return m.status();
  }
  const StreamEnd& e = std::get<StreamEnd>(*m);
  st.failed = true;  // until proven complete
  if (e.aborted) {
    return absl::AbortedError(absl::StrCat("stream ", frame.stream_id,
                                           " aborted by the sender: ", e.error));
  }
  if (e.total_bytes != st.received) {
    return absl::DataLossError(absl::StrCat("stream ", frame.stream_id, " ended with total ",
                                            e.total_bytes, " bytes, but ", st.received,
                                            " bytes were received"));
  }
  st.failed = false;
  st.done = true;
  return absl::OkStatus();
}

bool StreamReceiver::Done(uint32_t stream_id) const {
  auto it = streams_.find(stream_id);
  return it != streams_.end() && it->second.done;
}

bool StreamReceiver::AllDone() const {
  for (const auto& [id, st] : streams_) {
    if (!st.done) return false;
  }
  return true;
}

std::vector<uint32_t> StreamReceiver::Unfinished() const {
  std::vector<uint32_t> ids;
  for (const auto& [id, st] : streams_) {
    if (!st.done) ids.push_back(id);
  }
  return ids;
}

uint64_t StreamReceiver::Received(uint32_t stream_id) const {
  auto it = streams_.find(stream_id);
  return it == streams_.end() ? 0 : it->second.received;
}

}  // namespace kiln::agent
