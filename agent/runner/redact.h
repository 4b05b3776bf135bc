// File: agent/runner/redact.h
// -----------------------------------------------------------------------------
//
// Redaction of secret values from build logs, before any line leaves the runner.
//
// What is masked is defined by agent/secret_forms.h (one definition for the guest's redactor
// and the host's leak scan): the raw value (always, whole, even 1 byte), its lines, the value
// with whitespace removed, base64 (both alphabets, any alignment, any wrap, padding or not),
// hex (any case, contiguous or spaced as od/xxd/hexdump print it) and Go-JSON-escaped; any run
// of 16 or more consecutive characters of a form is a hit (a form shorter than 16: whole;
// derived forms shorter than 8 characters are not masked). Each masked run of bytes becomes
// one "[REDACTED:<id>]".
//
// LineRedactor reads BuildKit's plain progress output, where each output line is prefixed
// "#<step> <seconds> " and steps interleave. It keeps one matcher per step, so a form wrapped
// over several lines of the SAME step (base64 at 76 columns, od's 16 bytes a line) is matched
// across the line breaks: a window that ends in the current line masks the current line's part
// of it. Lines are still emitted as soon as they end, so text already emitted is not taken
// back: a chain's first characters, if fewer than 16 of them are on earlier lines, are seen
// (at most 15 characters of a form: less than a window). See agent/README.md "Redaction: what
// is covered and what is not".
//
// Example:
//
//   Redactor r({{"tok", "hunter2"}});
//   r.Redact("echo hunter2");   // "echo [REDACTED:tok]"
//   LineRedactor lines(&r, [](absl::string_view line) { Send(line); });
//   lines.Feed(chunk);  ...  lines.Flush();
#ifndef KILN_AGENT_RUNNER_REDACT_H_
#define KILN_AGENT_RUNNER_REDACT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "agent/secret_forms.h"

namespace kiln::agent::runner {

// Redactor: masks the values of a fixed set of secrets. Thread-compatible (const methods may
// be called concurrently). Memory: see SecretForms (~80 bytes per secret byte).
class Redactor {
 public:
  // Redactor(secrets): secrets is id -> value bytes (empty values are ignored).
  explicit Redactor(const std::map<std::string, std::string>& secrets);

  // Redact(text): `text`, read as one stream, with every covered occurrence replaced; each run
  // of masked bytes becomes one "[REDACTED:<id>]".
  std::string Redact(absl::string_view text) const;

  // FindMatches(text): [begin, end) byte ranges of `text` covered by a hit (one per merged run
  // of windows of one form of one secret; ranges may overlap).
  std::vector<std::pair<size_t, size_t>> FindMatches(absl::string_view text) const;

  // MaxPatternBytes(): kSecretWindowChars (16) when there is a secret to mask, else 0.
  size_t MaxPatternBytes() const { return forms_->empty() ? 0 : kSecretWindowChars; }

  // PatternCount(): number of distinct windows searched (for tests and docs).
  size_t PatternCount() const { return forms_->WindowCount(); }

  // forms(): the window tables (for LineRedactor).
  const SecretForms& forms() const { return *forms_; }
  // Marker(secret): "[REDACTED:<id>]" of the secret with index `secret` (SecretHit::secret).
  const std::string& Marker(uint32_t secret) const { return markers_[secret]; }

 private:
  std::vector<std::string> markers_;
  std::unique_ptr<SecretForms> forms_;
};

// kMaxLineBytes: longest line LineRedactor keeps before emitting a partial line. The last
// bytes that a later window could still cover are held back, so a cut never exposes a piece
// of a form that the rest of the line would have masked.
inline constexpr size_t kMaxLineBytes = 256 * 1024;

// LineRedactor: splits a byte stream into '\n'-terminated lines and calls `sink` with each
// redacted line (without its '\n'; a trailing '\r' is dropped). Matching runs per BuildKit
// step over the lines' content after the "#<step> <seconds> " prefix (lines without it form
// one more stream). Not thread-safe.
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
  // Process(bytes, end_of_line, newline): matches `bytes` as the next part of the current
  // line; emits the line when end_of_line (feeding a '\n' first if newline), else emits what
  // no later window can reach.
  void Process(absl::string_view bytes, bool end_of_line, bool newline);
  void EmitHeld(size_t n, bool end_of_line);

  const Redactor* redactor_;
  Sink sink_;
  std::string buf_;  // bytes of the current line not processed yet
  StepMatchers steps_;
  std::vector<SecretHit> hits_;
  // The current line, once part of it was processed (overlong lines only).
  bool in_line_ = false;
  std::string key_;              // its step key
  std::string prefix_;           // its "#<step> <seconds> " prefix, until emitted
  std::string held_;             // processed, not yet emitted bytes
  std::vector<int32_t> held_id_;  // per held byte: index of the secret masking it, or -1
  uint64_t held_at_ = 0;         // stream offset of held_[0] in the step's matcher
};

}  // namespace kiln::agent::runner

#endif  // KILN_AGENT_RUNNER_REDACT_H_
