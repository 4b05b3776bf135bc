// File: agent/protocol/internal/wire.h
// Field-level encoding of message payloads (PROTOCOL.md "Field encoding"): big-endian
// integers, u32-length-prefixed bytes/strings, u32-count-prefixed lists. WireReader bounds
// every length by the bytes that remain and names the field in every error.
// Internal to //agent:protocol.
#ifndef KILN_AGENT_PROTOCOL_INTERNAL_WIRE_H_
#define KILN_AGENT_PROTOCOL_INTERNAL_WIRE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "agent/protocol/internal/endian.h"
#include "agent/protocol/text.h"

namespace kiln::agent::internal {

class WireWriter {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U16(uint16_t v) { char b[2]; PutU16(b, v); out_.append(b, 2); }
  void U32(uint32_t v) { char b[4]; PutU32(b, v); out_.append(b, 4); }
  void U64(uint64_t v) { char b[8]; PutU64(b, v); out_.append(b, 8); }
  void I32(int32_t v) { U32(static_cast<uint32_t>(v)); }
  void Bool(bool v) { U8(v ? 1 : 0); }
  void Bytes(absl::string_view v) { U32(static_cast<uint32_t>(v.size())); out_.append(v.data(), v.size()); }
  void Count(size_t n) { U32(static_cast<uint32_t>(n)); }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class WireReader {
 public:
  WireReader(absl::string_view message, absl::string_view in) : message_(message), in_(in) {}

  absl::Status U8(absl::string_view field, uint8_t* v) {
    if (absl::Status s = Need(field, 1); !s.ok()) return s;
    *v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return absl::OkStatus();
  }
  absl::Status U16(absl::string_view field, uint16_t* v) {
    if (absl::Status s = Need(field, 2); !s.ok()) return s;
    *v = GetU16(in_.data());
    in_.remove_prefix(2);
    return absl::OkStatus();
  }
  absl::Status U32(absl::string_view field, uint32_t* v) {
    if (absl::Status s = Need(field, 4); !s.ok()) return s;
    *v = GetU32(in_.data());
    in_.remove_prefix(4);
    return absl::OkStatus();
  }
  absl::Status U64(absl::string_view field, uint64_t* v) {
    if (absl::Status s = Need(field, 8); !s.ok()) return s;
    *v = GetU64(in_.data());
    in_.remove_prefix(8);
    return absl::OkStatus();
  }
  absl::Status I32(absl::string_view field, int32_t* v) {
    uint32_t u;
    if (absl::Status s = U32(field, &u); !s.ok()) return s;
    *v = static_cast<int32_t>(u);
    return absl::OkStatus();
  }
  absl::Status Bool(absl::string_view field, bool* v) {
    uint8_t b;
    if (absl::Status s = U8(field, &b); !s.ok()) return s;
    if (b > 1) return Err(field, absl::StrCat("bool must be 0 or 1, got ", b));
    *v = b == 1;
    return absl::OkStatus();
  }
  // Bytes: u32 length + that many bytes, length <= max.
  absl::Status Bytes(absl::string_view field, size_t max, std::string* v) {
    uint32_t n;
    if (absl::Status s = U32(field, &n); !s.ok()) return s;
    if (n > max) return Err(field, absl::StrCat("length ", n, " exceeds limit ", max));
    if (absl::Status s = Need(field, n); !s.ok()) return s;
    v->assign(in_.data(), n);
    in_.remove_prefix(n);
    return absl::OkStatus();
  }
  // Text: Bytes that must be valid UTF-8 (no NUL).
  absl::Status Text(absl::string_view field, size_t max, std::string* v) {
    if (absl::Status s = Bytes(field, max, v); !s.ok()) return s;
    return CheckText(absl::StrCat(message_, ".", field), *v);
  }
  // Count: a list's u32 element count, <= max_count, and each element needs at least
  // min_bytes, so a count the remaining bytes cannot hold is refused before any allocation.
  absl::Status Count(absl::string_view field, size_t max_count, size_t min_bytes, uint32_t* n) {
    if (absl::Status s = U32(field, n); !s.ok()) return s;
    if (*n > max_count) {
      return Err(field, absl::StrCat("list of ", *n, " entries exceeds limit ", max_count));
    }
    if (static_cast<uint64_t>(*n) * min_bytes > in_.size()) {
      return Err(field, absl::StrCat("truncated: list of ", *n, " entries needs at least ",
                                     static_cast<uint64_t>(*n) * min_bytes, " bytes, ",
                                     in_.size(), " left"));
    }
    return absl::OkStatus();
  }
  // Done: the payload must end after the last field.
  absl::Status Done() const {
    if (in_.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(message_, ": ", in_.size(), " trailing bytes after the last field"));
  }
  absl::Status Err(absl::string_view field, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(message_, ".", field, ": ", what));
  }

 private:
  absl::Status Need(absl::string_view field, size_t n) const {
    if (in_.size() >= n) return absl::OkStatus();
    return Err(field, absl::StrCat("truncated: needs ", n, " bytes, ", in_.size(), " left"));
  }

  absl::string_view message_;
  absl::string_view in_;
};

}  // namespace kiln::agent::internal

#endif  // KILN_AGENT_PROTOCOL_INTERNAL_WIRE_H_
