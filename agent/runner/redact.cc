// File: agent/runner/redact.cc
#include "agent/runner/redact.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace kiln::agent::runner {
namespace {

// Render(bytes, ids, redactor): bytes with each run of masked bytes (ids[i] >= 0) replaced by
// the marker of the run's first masking secret.
std::string Render(absl::string_view bytes, const int32_t* ids, const Redactor& r) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    if (ids[i] < 0) {
      out.push_back(bytes[i++]);
      continue;
    }
    const int32_t id = ids[i];
    while (i < bytes.size() && ids[i] >= 0) ++i;
    out += r.Marker(static_cast<uint32_t>(id));
  }
  return out;
}

}  // namespace

Redactor::Redactor(const std::map<std::string, std::string>& secrets) {
  std::vector<std::string> values;
  for (const auto& [id, value] : secrets) {
    markers_.push_back(absl::StrCat("[REDACTED:", id, "]"));
    values.push_back(value);
  }
  forms_ = std::make_unique<SecretForms>(values);
  for (std::string& v : values) std::fill(v.begin(), v.end(), '\0');
}

std::vector<std::pair<size_t, size_t>> Redactor::FindMatches(absl::string_view text) const {
  std::vector<std::pair<size_t, size_t>> out;
  if (forms_->empty()) return out;
  SecretMatcher m(forms_.get());
  std::vector<SecretHit> hits;
  m.Feed(text, &hits);
  for (const SecretHit& h : hits) out.emplace_back(h.begin, h.end);
  return out;
}

std::string Redactor::Redact(absl::string_view text) const {
  if (forms_->empty() || text.empty()) return std::string(text);
  SecretMatcher m(forms_.get());
  std::vector<SecretHit> hits;
  m.Feed(text, &hits);
  std::vector<int32_t> ids(text.size(), -1);
  for (const SecretHit& h : hits) {
    for (uint64_t i = h.begin; i < h.end; ++i) {
      if (ids[i] < 0) ids[i] = static_cast<int32_t>(h.secret);
    }
  }
  return Render(text, ids.data(), *this);
}

LineRedactor::LineRedactor(const Redactor* redactor, Sink sink)
    : redactor_(redactor), sink_(std::move(sink)), steps_(&redactor->forms()) {}

void LineRedactor::EmitHeld(size_t n, bool end_of_line) {
  std::string line = std::move(prefix_);
  prefix_.clear();
  line += Render(absl::string_view(held_).substr(0, n), held_id_.data(), *redactor_);
  std::fill(held_.begin(), held_.begin() + n, '\0');
  held_.erase(0, n);
  held_id_.erase(held_id_.begin(), held_id_.begin() + n);
  held_at_ += n;
  if (end_of_line) in_line_ = false;
  sink_(line);
}

void LineRedactor::Process(absl::string_view bytes, bool end_of_line, bool newline) {
  if (!in_line_) {
    const BuildkitLine split = SplitBuildkitLine(bytes);
    key_ = std::string(split.key);
    prefix_ = std::string(split.prefix);
    bytes = split.content;
    held_.clear();
    held_id_.clear();
    held_at_ = steps_.For(key_).offset();
    in_line_ = true;
  }
  if (end_of_line && !bytes.empty() && bytes.back() == '\r') bytes.remove_suffix(1);
  SecretMatcher& m = steps_.For(key_);
  held_.append(bytes.data(), bytes.size());
  held_id_.resize(held_.size(), -1);
  hits_.clear();
  m.Feed(bytes, &hits_);
  if (newline) m.Feed("\n", &hits_);
  const uint64_t held_end = held_at_ + held_.size();
  for (const SecretHit& h : hits_) {
    const uint64_t b = std::max(h.begin, held_at_), e = std::min(h.end, held_end);
    for (uint64_t i = b; i < e; ++i) {
      int32_t& id = held_id_[i - held_at_];
      if (id < 0) id = static_cast<int32_t>(h.secret);
    }
  }
  if (end_of_line) {
    EmitHeld(held_.size(), true);
    return;
  }
  // Overlong line: emit everything no later window can cover.
  const uint64_t keep_from = std::max(m.carry_begin(), held_at_);
  size_t n = static_cast<size_t>(std::min<uint64_t>(keep_from - held_at_, held_.size()));
  // Bound: a carried character can sit behind any amount of whitespace (views B, C skip it);
  // beyond kMaxLineBytes held, keep only the last 15 bytes.
  if (held_.size() - n > kMaxLineBytes) n = held_.size() - (kSecretWindowChars - 1);
  if (n > 0) EmitHeld(n, false);
}

void LineRedactor::Feed(absl::string_view bytes) {
  buf_.append(bytes.data(), bytes.size());
  size_t begin = 0;
  for (size_t nl = buf_.find('\n'); nl != std::string::npos; nl = buf_.find('\n', begin)) {
    Process(absl::string_view(buf_).substr(begin, nl - begin), true, true);
    begin = nl + 1;
  }
  std::fill(buf_.begin(), buf_.begin() + begin, '\0');
  buf_.erase(0, begin);
  if (buf_.size() + held_.size() > kMaxLineBytes) {
    Process(buf_, false, false);
    std::fill(buf_.begin(), buf_.end(), '\0');
    buf_.clear();
  }
}

void LineRedactor::Flush() {
  // The last line is read as ending in '\n' too, as the host reassembles lines (a window that
  // ends with the value's own trailing newline is masked here as well).
  if (!buf_.empty() || in_line_) Process(buf_, true, true);
  std::fill(buf_.begin(), buf_.end(), '\0');
  buf_.clear();
}

}  // namespace kiln::agent::runner
