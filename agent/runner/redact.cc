#include "agent/runner/redact.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace kiln::agent::runner {
namespace {

constexpr size_t kMinDerivedBytes = 8;
constexpr size_t kMinLineSegmentBytes = 4;

// AlignedBase64(value, k, url): the base64 characters that depend only on `value`'s bytes
// when `value` starts k bytes into a 3-byte group.
std::string AlignedBase64(absl::string_view value, int k, bool url) {
  std::string input(static_cast<size_t>(k), '\0');
  input.append(value.data(), value.size());
  std::string enc = url ? absl::WebSafeBase64Escape(input) : absl::Base64Escape(input);
  size_t begin = (8 * static_cast<size_t>(k) + 5) / 6;
  size_t end = (8 * (static_cast<size_t>(k) + value.size())) / 6;
  if (end <= begin || end > enc.size()) return "";
  return enc.substr(begin, end - begin);
}

}  // namespace

Redactor::Redactor(const std::map<std::string, std::string>& secrets) {
  std::set<std::string> seen;
  auto add = [&](const std::string& bytes, const std::string& id, bool derived) {
    if (bytes.empty() || (derived && bytes.size() < kMinDerivedBytes)) return;
    if (!seen.insert(bytes).second) return;
    patterns_.push_back(Pattern{bytes, absl::StrCat("[REDACTED:", id, "]")});
    max_pattern_ = std::max(max_pattern_, bytes.size());
  };
  for (const auto& [id, value] : secrets) {
    if (value.empty()) continue;
    add(value, id, false);
    if (value.find('\n') != std::string::npos) {
      for (absl::string_view seg : absl::StrSplit(value, '\n')) {
        seg = absl::StripSuffix(seg, "\r");
        if (seg.size() >= kMinLineSegmentBytes) add(std::string(seg), id, false);
      }
    }
    std::string hex = absl::BytesToHexString(value);
    add(hex, id, true);
    add(absl::AsciiStrToUpper(hex), id, true);
    for (int k = 0; k < 3; ++k) {
      add(AlignedBase64(value, k, false), id, true);
      add(AlignedBase64(value, k, true), id, true);
    }
  }
  // Longest first, so that at one position the longest pattern wins.
  std::sort(patterns_.begin(), patterns_.end(),
            [](const Pattern& a, const Pattern& b) { return a.bytes.size() > b.bytes.size(); });
}

std::vector<std::pair<size_t, size_t>> Redactor::FindMatches(absl::string_view text) const {
  std::vector<std::pair<size_t, size_t>> out;
  for (const Pattern& p : patterns_) {
    for (size_t pos = text.find(p.bytes); pos != absl::string_view::npos;
         pos = text.find(p.bytes, pos + 1)) {
      out.emplace_back(pos, pos + p.bytes.size());
    }
  }
  return out;
}

std::string Redactor::Redact(absl::string_view text) const {
  if (patterns_.empty() || text.empty()) return std::string(text);
  // masked[i]: byte i lies inside some occurrence; name[i]: the replacement of the longest
  // pattern that starts at i (patterns_ is sorted longest first).
  std::vector<bool> masked(text.size(), false);
  std::vector<const std::string*> name(text.size(), nullptr);
  for (const Pattern& p : patterns_) {
    for (size_t pos = text.find(p.bytes); pos != absl::string_view::npos;
         pos = text.find(p.bytes, pos + 1)) {
      if (name[pos] == nullptr) name[pos] = &p.replacement;
      for (size_t i = pos; i < pos + p.bytes.size(); ++i) masked[i] = true;
    }
  }
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (!masked[i]) {
      out.push_back(text[i++]);
      continue;
    }
    // One replacement per run of masked bytes (overlapping/adjacent occurrences merge).
    const std::string* repl = nullptr;
    while (i < text.size() && masked[i]) {
      if (repl == nullptr) repl = name[i];
      ++i;
    }
    out += repl != nullptr ? *repl : std::string("[REDACTED]");
  }
  return out;
}

LineRedactor::LineRedactor(const Redactor* redactor, Sink sink)
    : redactor_(redactor), sink_(std::move(sink)) {}

void LineRedactor::Emit(absl::string_view raw) {
  if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
  sink_(redactor_->Redact(raw));
}

void LineRedactor::Feed(absl::string_view bytes) {
  buf_.append(bytes.data(), bytes.size());
  size_t begin = 0;
  for (size_t nl = buf_.find('\n'); nl != std::string::npos; nl = buf_.find('\n', begin)) {
    Emit(absl::string_view(buf_).substr(begin, nl - begin));
    begin = nl + 1;
  }
  buf_.erase(0, begin);
  const size_t keep = redactor_->MaxPatternBytes();
  while (buf_.size() > kMaxLineBytes) {
    // Cut where no occurrence can straddle: an occurrence that starts before
    // size - (keep - 1) ends inside the buffer; extend the cut past any that crosses it.
    size_t cut = buf_.size() - (keep > 0 ? keep - 1 : 0);
    std::vector<std::pair<size_t, size_t>> matches = redactor_->FindMatches(buf_);
    for (bool moved = true; moved;) {
      moved = false;
      for (const auto& [s, e] : matches) {
        if (s < cut && e > cut) {
          cut = e;
          moved = true;
        }
      }
    }
    if (cut == 0 || cut >= buf_.size()) break;
    Emit(absl::string_view(buf_).substr(0, cut));
    buf_.erase(0, cut);
  }
}

void LineRedactor::Flush() {
  if (!buf_.empty()) Emit(buf_);
  buf_.clear();
}

}  // namespace kiln::agent::runner
