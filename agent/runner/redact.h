// File: agent/runner/redact.h
// -----------------------------------------------------------------------------
//
// Redaction of secret values from build logs, before any line leaves the runner.
//
// What is covered (each occurrence is replaced by "[REDACTED:<id>]"):
//   - the raw value, any length (fail closed: even a 1-byte secret is masked);
//   - each line of a multi-line value (>= 4 bytes), since BuildKit's plain progress output
//     prefixes every output line ("#6 0.105 "), so a printed multi-line value never appears
//     contiguously;
//   - lowercase and uppercase hex of the value (`xxd -p`, `od`-less dumps, sha tools do not
//     apply: a hash is not the secret);
//   - base64 of the value in the standard and URL-safe alphabets, at each of the 3 byte
//     alignments (so the value is found even inside a longer base64 blob), padding ignored.
//     Derived (hex/base64) forms shorter than 8 characters are not masked (too many false
//     positives); the raw form always is.
// What is NOT covered: other encodings (gzip, rot13, URL-encoding, JSON \u escapes), values
// printed with bytes interleaved, a value split over two lines by the command itself.
//
// LineRedactor turns a byte stream (reads of any size) into redacted lines: a value split
// across reads is still found, because lines are redacted whole; a line longer than
// kMaxLineBytes is cut only at a point where no occurrence can straddle the cut.
//
// Example:
//
//   Redactor r({{"tok", "hunter2"}});
//   r.Redact("echo hunter2");   // "echo [REDACTED:tok]"
//   LineRedactor lines(&r, [](absl::string_view line) { Send(line); });
//   lines.Feed(chunk);  ...  lines.Flush();
#ifndef KILN_AGENT_RUNNER_REDACT_H_
#define KILN_AGENT_RUNNER_REDACT_H_

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace kiln::agent::runner {

// Redactor: masks the values of a fixed set of secrets. Thread-compatible (const methods may
// be called concurrently).
class Redactor {
 public:
  // Redactor(secrets): secrets is id -> value bytes (empty values are ignored).
  explicit Redactor(const std::map<std::string, std::string>& secrets);

  // Redact(text): `text` with every covered occurrence replaced (leftmost, longest first).
  std::string Redact(absl::string_view text) const;

  // FindMatches(text): [begin, end) byte ranges of every occurrence of every pattern.
  std::vector<std::pair<size_t, size_t>> FindMatches(absl::string_view text) const;

  // MaxPatternBytes(): length of the longest pattern (0 when there are no secrets).
  size_t MaxPatternBytes() const { return max_pattern_; }

  // PatternCount(): number of distinct byte patterns searched (for tests and docs).
  size_t PatternCount() const { return patterns_.size(); }

 private:
  struct Pattern {
    std::string bytes;
    std::string replacement;
  };
  std::vector<Pattern> patterns_;
  size_t max_pattern_ = 0;
};

// kMaxLineBytes: longest line LineRedactor keeps before emitting a (safe) partial line.
inline constexpr size_t kMaxLineBytes = 256 * 1024;

// LineRedactor: splits a byte stream into '\n'-terminated lines and calls `sink` with each
// redacted line (without its '\n'; a trailing '\r' is dropped). Not thread-safe.
class LineRedactor {
 public:
  using Sink = std::function<void(absl::string_view line)>;
  // LineRedactor(redactor, sink): `redactor` must outlive this object.
  LineRedactor(const Redactor* redactor, Sink sink);

  // Feed(bytes): appends bytes; emits every completed line.
  void Feed(absl::string_view bytes);
  // Flush(): emits the incomplete last line, if any.
  void Flush();

 private:
  void Emit(absl::string_view raw);
  const Redactor* redactor_;
  Sink sink_;
  std::string buf_;
};

}  // namespace kiln::agent::runner

#endif  // KILN_AGENT_RUNNER_REDACT_H_
