// File: agent/secret_forms.h
// -----------------------------------------------------------------------------
//
// Where does a secret appear in a byte stream, and in which form. One library for both ends:
// the guest's log redactor (agent/runner/redact.h) masks what it finds, the host's leak scan
// (harness/builder/leak_scan.h) reports it. Pure: no I/O, no globals; linkable into the static agent.
//
// Forms of a secret value V (each one a string of "form characters"):
//   raw      V itself; also each line of a multi-line V (4..15 bytes: matched whole), and V
//            with its whitespace removed ("folded": what `fold`, `cut` or a wrapped terminal
//            print)
//   base64   the characters of base64(P + V + S) that depend only on V, for each of the 3 byte
//            alignments of V (len(P) mod 3); standard and URL alphabets; any line wrap width
//            (`base64`, `base64 -w N`, `openssl base64`), with or without '=' padding
//   hex      hex of V, lower, upper or mixed case, contiguous or spaced and wrapped at any
//            width (`od -An -tx1`, `od -tx1` with offsets, `xxd`, `xxd -p`, `hexdump -C`)
//   json     V escaped as Go's encoding/json writes a string: \" \\ \n \r \t, \u00XX for
//            other control bytes (\u0008, \u000c as Go < 1.22), \u003c \u003e \u0026 for < > &,
//            \u2028 \u2029, \ufffd for each byte of invalid UTF-8
//
// The rule: any window of kSecretWindowChars (16) consecutive characters of a form is a hit.
// A form shorter than 16 characters is a hit only whole: the raw value always (even 1 byte);
// a derived form (folded, base64, hex, json) only when it has at least kMinDerivedFormChars
// (8) characters (shorter derived forms are too common to mask: hex of a 2-byte secret).
//
// How (channels): the matcher reads the input through three canonical views at once, and
// looks each window of the last 1..16 characters of each view up in a table of hashes:
//   A  raw bytes                                         raw, json, raw line segments
//   B  whitespace removed, '-' -> '+', '_' -> '/'        base64 (both alphabets), folded raw
//   C  whitespace removed, ASCII lowercased              hex
// Whitespace is ' ', \t, \n, \v, \f, \r. So "67 68 70\n5f 41" is the hex run "676870 5f41" in
// view C, and a hit there reports the ORIGINAL byte range it covers (spaces and newlines
// inside it included). The matcher carries the last 15 characters of each view between
// Feed() calls, so a window split over two Feed()s (two lines of one build step) is found.
//
// Hashes: a 64-bit polynomial rolling hash per window length, finalized with the view and the
// length; per view one sorted array of the windows' hashes (48 bits of hash + 16 bits naming
// the secret and form) with a directory of its top bits, so a lookup reads ~2 entries. A false
// positive (probability ~ windows / 2^48 per lookup) only over-reports.
//
// Memory (SecretForms): per secret byte about 8 windows (raw 1, folded 1, base64 4, hex 2;
// json only where it differs from raw: up to 6 more for random binary secrets) x (8 bytes
// hash + 2-4 bytes directory) = ~80-100 bytes for text secrets, ~120-150 for random binary
// ones: ~12 KiB for a 124-byte token, 5-9 MiB for 64 KiB, 40-75 MiB for BuildKit's 500 KiB
// maximum. Construction needs about as much again, transiently.
// A SecretMatcher is ~500 bytes.
//
// Example:
//
//   SecretForms forms({"hunter2-Sup3rSecret!"});
//   SecretMatcher m(&forms);
//   std::vector<SecretHit> hits;
//   m.Feed("68756e746572322d53\n", &hits);  // 18 hex chars: hit [0, 18), form kHex
//   m.Feed("7570\n", &hits);                // the run continues across the line: [3, 23)
//   // begin/end are offsets in the whole stream fed so far (0 = the first byte fed).
#ifndef KILN_AGENT_SECRET_FORMS_H_
#define KILN_AGENT_SECRET_FORMS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace kiln::agent {

// kSecretWindowChars: a run of this many consecutive characters of a form is a hit.
inline constexpr size_t kSecretWindowChars = 16;
// kMinDerivedFormChars: a derived form shorter than this is not matched at all.
inline constexpr size_t kMinDerivedFormChars = 8;

// SecretForm: which encoding of the secret a hit is in.
enum class SecretForm : uint8_t { kRaw = 0, kBase64 = 1, kHex = 2, kJson = 3 };

// SecretFormName(f): "raw", "base64", "hex" or "json".
absl::string_view SecretFormName(SecretForm f);

// JsonEscapeLikeGo(value): `value` as Go's encoding/json writes it inside a string literal
// (HTML escaping on, as dockerd writes image configs), without the surrounding quotes.
std::string JsonEscapeLikeGo(absl::string_view value);

// SecretHit: one run of windows of one form of one secret in a stream. [begin, end) are byte
// offsets in the stream a SecretMatcher was fed (counted from its first byte). Windows of the
// same secret and form found in one Feed() that overlap or touch are merged into one hit.
struct SecretHit {
  uint64_t begin = 0;
  uint64_t end = 0;
  uint32_t secret = 0;  // index into the values given to SecretForms
  SecretForm form = SecretForm::kRaw;
};

// SecretForms: the window tables of a fixed set of secret values. Immutable after
// construction; thread-compatible (const methods may be called concurrently).
class SecretForms {
 public:
  // SecretForms(values): the forms of each value. Empty values match nothing (their index is
  // kept, so SecretHit::secret always indexes `values`). REQUIRES: values.size() <= 8192.
  explicit SecretForms(const std::vector<std::string>& values);
  ~SecretForms();
  SecretForms(const SecretForms&) = delete;
  SecretForms& operator=(const SecretForms&) = delete;

  // empty(): true when no value has any form (no secrets, or all empty).
  bool empty() const { return window_count_ == 0; }
  // secret_count(): values.size() as given.
  size_t secret_count() const { return secret_count_; }
  // WindowCount(): distinct windows (hashes) held, over all secrets and forms.
  size_t WindowCount() const;
  // MemoryBytes(): heap bytes held by the tables and the Bloom filter.
  size_t MemoryBytes() const;
  // Wipe(): zeroes and frees every table (the hashes are derived from the secret). Afterwards
  // the object matches nothing.
  void Wipe();

 private:
  friend class SecretMatcher;
  struct Table {
    uint32_t secret;
    SecretForm form;
  };
  // Index: one view's windows. keys: sorted; each is a 64-bit window hash whose low 16 bits
  // are replaced by its table number. bucket[b] .. bucket[b + 1]: the keys whose top `bits`
  // bits are b.
  struct Index {
    std::vector<uint64_t> keys;
    std::vector<uint32_t> bucket;
    int shift = 64;
  };
  static constexpr uint64_t kTagMask = 0xffff;
  // Lookup(view, key): the table holding `key`, or nullptr.
  const Table* Lookup(int view, uint64_t key) const;

  size_t secret_count_ = 0;
  size_t window_count_ = 0;
  uint32_t lengths_[3] = {0, 0, 0};  // per view: bit L set = windows of length L exist
  Index index_[3];
  std::vector<Table> tables_;
};

// SecretMatcher: streaming search of one byte stream for the windows of a SecretForms.
// Not thread-safe; `forms` must outlive it.
class SecretMatcher {
 public:
  explicit SecretMatcher(const SecretForms* forms);

  // Feed(bytes, hits): continues the stream with `bytes`; appends to *hits every window that
  // ENDS inside `bytes` (its begin may lie in earlier Feed()s, at most 15 form characters
  // back plus the whitespace between them).
  void Feed(absl::string_view bytes, std::vector<SecretHit>* hits);

  // offset(): bytes fed so far (the stream offset of the next byte).
  uint64_t offset() const { return offset_; }

  // carry_begin(): the stream offset of the oldest carried character: a later window can
  // cover bytes from here on, never before. offset() when nothing is carried.
  uint64_t carry_begin() const;

  // Reset(): forgets the carried characters (offsets keep counting).
  void Reset();

 private:
  struct View {
    std::array<uint8_t, kSecretWindowChars> ring{};
    std::array<uint64_t, kSecretWindowChars> at{};  // stream offset of each ring character
    uint64_t count = 0;                              // characters seen
    std::array<uint64_t, kSecretWindowChars + 1> hash{};  // rolling hash per length
    int last_hit = -1;  // index in *hits of this view's last hit in this Feed()
  };
  void Push(int v, uint8_t c, uint64_t at, std::vector<SecretHit>* hits);

  const SecretForms* forms_;
  uint64_t offset_ = 0;
  View views_[3];
};

// BuildkitLine: a line of BuildKit's plain progress output split into its step key and the
// command's output. "#6 0.105 hello" -> key "#6", content "hello". Lines without the
// "#<step> <seconds> " prefix (BuildKit's own status lines, or any other text) get key "".
struct BuildkitLine {
  absl::string_view key;
  absl::string_view prefix;   // "#6 0.105 " (empty when key is "")
  absl::string_view content;  // the rest of the line
};

// SplitBuildkitLine(line): see BuildkitLine.
BuildkitLine SplitBuildkitLine(absl::string_view line);

// StepMatchers: one SecretMatcher per step key, so that a form wrapped over several output
// lines of the same step is found across them while steps interleave. At most `max_steps`
// keys are kept; the least recently used is forgotten beyond that.
class StepMatchers {
 public:
  explicit StepMatchers(const SecretForms* forms, size_t max_steps = 1024);
  // For(key): the matcher of step `key` (created on first use).
  SecretMatcher& For(absl::string_view key);

 private:
  const SecretForms* forms_;
  size_t max_steps_;
  uint64_t tick_ = 0;
  absl::flat_hash_map<std::string, std::pair<uint64_t, SecretMatcher>> steps_;
};

}  // namespace kiln::agent

#endif  // KILN_AGENT_SECRET_FORMS_H_
