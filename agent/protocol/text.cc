#include "agent/protocol/text.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kiln::agent {
namespace {

// Utf8SequenceLength: length of the well-formed sequence at s[i], or 0 if ill-formed.
size_t Utf8SequenceLength(absl::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // bounds of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // > U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (b(1) < lo || b(1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (b(k) < 0x80 || b(k) > 0xBF) return 0;
  }
  return n;
}

}  // namespace

bool IsValidUtf8(absl::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = Utf8SequenceLength(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string SanitizeUtf8(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t n = Utf8SequenceLength(s, i);
    if (n == 0 || s[i] == '\0') {
      out += "\xEF\xBF\xBD";
      i += 1;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  return out;
}

absl::Status CheckText(absl::string_view field, absl::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (s[i] == '\0') {
      return absl::InvalidArgumentError(absl::StrCat(field, ": NUL byte at offset ", i));
    }
    size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: bad UTF-8 at byte offset %d (0x%02x)", field, i,
                          static_cast<unsigned char>(s[i])));
    }
    i += n;
  }
  return absl::OkStatus();
}

absl::Status CheckIdentifier(absl::string_view field, absl::string_view s) {
  if (s.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": empty identifier"));
  if (s.size() > kMaxIdentifierLength) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": identifier of ", s.size(),
                                                   " bytes exceeds limit ",
                                                   kMaxIdentifierLength));
  }
  if (s == "." || s == "..") {
    return absl::InvalidArgumentError(absl::StrCat(field, ": identifier \"", s,
                                                   "\" is reserved"));
  }
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: byte 0x%02x at offset %d is not in [A-Za-z0-9_.-]", field,
          static_cast<unsigned char>(c), i));
    }
  }
  return absl::OkStatus();
}

}  // namespace kiln::agent
