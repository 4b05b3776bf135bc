// File: agent/secret_forms.cc
#include "agent/secret_forms.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"

namespace kiln::agent {
namespace {

constexpr uint64_t kP = 0x100000001b3ULL * 0x9E3779B97F4A7C15ULL | 1ULL;  // odd multiplier

struct Powers {
  uint64_t p[kSecretWindowChars + 1];
  constexpr Powers() : p() {
    p[0] = 1;
    for (size_t i = 1; i <= kSecretWindowChars; ++i) p[i] = p[i - 1] * kP;
  }
};
constexpr Powers kPow;

inline uint64_t Mix(uint64_t x) {  // splitmix64 finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

inline uint64_t FinalKey(uint64_t h, size_t len, int view) {
  return Mix(h + static_cast<uint64_t>(len) * 0x9E3779B97F4A7C15ULL +
             static_cast<uint64_t>(view + 1) * 0xD6E8FEB86659FD93ULL);
}

inline bool IsSpace(uint8_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// Canonical character of byte c in view v, or -1 when the view skips it.
inline int Canon(int v, uint8_t c) {
  if (v == 0) return c;
  if (IsSpace(c)) return -1;
  if (v == 1) return c == '-' ? '+' : (c == '_' ? '/' : c);
  return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

std::string CanonString(int v, absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    const int c = Canon(v, static_cast<uint8_t>(ch));
    if (c >= 0) out.push_back(static_cast<char>(c));
  }
  return out;
}

// AlignedBase64(value, k): the base64 characters that depend only on `value`'s bytes when
// `value` starts k bytes into a 3-byte group (standard alphabet).
std::string AlignedBase64(absl::string_view value, int k) {
  std::string input(static_cast<size_t>(k), '\0');
  input.append(value.data(), value.size());
  std::string enc = absl::Base64Escape(input);
  const size_t begin = (8 * static_cast<size_t>(k) + 5) / 6;
  const size_t end = (8 * (static_cast<size_t>(k) + value.size())) / 6;
  if (end <= begin || end > enc.size()) return "";
  std::string out = enc.substr(begin, end - begin);
  std::fill(enc.begin(), enc.end(), '\0');
  std::fill(input.begin(), input.end(), '\0');
  return out;
}

void Zero(std::string& s) {
  std::fill(s.begin(), s.end(), '\0');
  s.clear();
}

}  // namespace

absl::string_view SecretFormName(SecretForm f) {
  switch (f) {
    case SecretForm::kRaw:
      return "raw";
    case SecretForm::kBase64:
      return "base64";
    case SecretForm::kHex:
      return "hex";
    case SecretForm::kJson:
      return "json";
  }
  return "unknown";
}

std::string JsonEscapeLikeGo(absl::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() + 8);
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t b = static_cast<uint8_t>(s[i]);
    if (b < 0x80) {
      switch (b) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (b < 0x20 || b == '<' || b == '>' || b == '&') {
            out += "\\u00";
            out.push_back(kHex[b >> 4]);
            out.push_back(kHex[b & 15]);
          } else {
            out.push_back(static_cast<char>(b));
          }
      }
      ++i;
      continue;
    }
    // UTF-8: a valid sequence is copied (U+2028/2029 escaped), each invalid byte is \ufffd.
    size_t len = 0;
    uint32_t cp = 0;
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
      cp = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      cp = b & 0x0F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      cp = b & 0x07;
    }
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      const uint8_t c = static_cast<uint8_t>(s[i + k]);
      if ((c & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (c & 0x3F);
    }
    if (ok) {
      if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
          (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
        ok = false;
      }
    }
    if (!ok) {
      out += "\\ufffd";
      ++i;
    } else if (cp == 0x2028 || cp == 0x2029) {
      out += cp == 0x2028 ? "\\u2028" : "\\u2029";
      i += len;
    } else {
      out.append(s.data() + i, len);
      i += len;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// SecretForms

SecretForms::SecretForms(const std::vector<std::string>& values) : secret_count_(values.size()) {
  std::map<std::tuple<uint32_t, SecretForm, int>, std::vector<uint64_t>> keys;
  // Add(s, form, view, min): s is already canonical for `view`.
  auto add = [&](uint32_t secret, const std::string& s, SecretForm form, int view,
                 size_t min_whole) {
    if (s.empty()) return;
    size_t w;
    if (s.size() >= kSecretWindowChars) {
      w = kSecretWindowChars;
    } else if (s.size() >= min_whole) {
      w = s.size();
    } else {
      return;
    }
    lengths_[view] |= 1u << w;
    std::vector<uint64_t>& out = keys[{secret, form, view}];
    uint64_t h = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      const uint64_t in = static_cast<uint8_t>(s[i]) + 1ULL;
      const uint64_t gone = i >= w ? static_cast<uint8_t>(s[i - w]) + 1ULL : 0;
      h = h * kP + in - gone * kPow.p[w];
      if (i + 1 >= w) out.push_back(FinalKey(h, w, view));
    }
  };
  for (uint32_t i = 0; i < values.size(); ++i) {
    const std::string& v = values[i];
    if (v.empty()) continue;
    add(i, v, SecretForm::kRaw, 0, 1);
    if (v.find('\n') != std::string::npos) {
      size_t start = 0;
      while (start <= v.size()) {
        size_t nl = v.find('\n', start);
        if (nl == std::string::npos) nl = v.size();
        std::string seg = v.substr(start, nl - start);
        if (!seg.empty() && seg.back() == '\r') seg.pop_back();
        if (seg.size() >= 4 && seg.size() < kSecretWindowChars) {
          add(i, seg, SecretForm::kRaw, 0, 4);
        }
        Zero(seg);
        start = nl + 1;
      }
    }
    std::string tmp = JsonEscapeLikeGo(v);
    if (tmp != v) add(i, tmp, SecretForm::kJson, 0, kMinDerivedFormChars);
    Zero(tmp);
    tmp = CanonString(1, v);
    add(i, tmp, SecretForm::kRaw, 1, kMinDerivedFormChars);
    Zero(tmp);
    for (int k = 0; k < 3; ++k) {
      tmp = AlignedBase64(v, k);
      add(i, tmp, SecretForm::kBase64, 1, kMinDerivedFormChars);
      Zero(tmp);
    }
    tmp = absl::BytesToHexString(v);
    add(i, tmp, SecretForm::kHex, 2, kMinDerivedFormChars);
    Zero(tmp);
  }
  // One sorted, tagged array per view, with a directory of ~1 bucket per key.
  std::vector<uint64_t> per_view[3];
  for (auto& [k, v] : keys) {
    const uint64_t tag = tables_.size();
    tables_.push_back(Table{std::get<0>(k), std::get<1>(k)});
    for (uint64_t key : v) per_view[std::get<2>(k)].push_back((key & ~kTagMask) | tag);
    std::fill(v.begin(), v.end(), 0);
    std::vector<uint64_t>().swap(v);
  }
  for (int view = 0; view < 3; ++view) {
    std::vector<uint64_t>& ks = per_view[view];
    std::sort(ks.begin(), ks.end());
    ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
    ks.shrink_to_fit();
    window_count_ += ks.size();
    Index& ix = index_[view];
    int bits = 0;
    while (bits < 40 && (size_t{2} << bits) < ks.size()) ++bits;  // 1-2 keys a bucket
    ix.shift = 64 - bits;
    ix.bucket.assign((size_t{1} << bits) + 1, 0);
    for (uint64_t key : ks) ++ix.bucket[(bits == 0 ? 0 : key >> ix.shift) + 1];
    for (size_t i = 1; i < ix.bucket.size(); ++i) ix.bucket[i] += ix.bucket[i - 1];
    ix.keys = std::move(ks);
  }
  if (window_count_ == 0) {
    tables_.clear();
    lengths_[0] = lengths_[1] = lengths_[2] = 0;
  }
}

SecretForms::~SecretForms() { Wipe(); }

void SecretForms::Wipe() {
  for (Index& ix : index_) {
    std::fill(ix.keys.begin(), ix.keys.end(), 0);
    std::vector<uint64_t>().swap(ix.keys);
    std::vector<uint32_t>().swap(ix.bucket);
    ix.shift = 64;
  }
  tables_.clear();
  window_count_ = 0;
  lengths_[0] = lengths_[1] = lengths_[2] = 0;
}

size_t SecretForms::WindowCount() const { return window_count_; }

size_t SecretForms::MemoryBytes() const {
  size_t n = tables_.capacity() * sizeof(Table);
  for (const Index& ix : index_) {
    n += ix.keys.capacity() * sizeof(uint64_t) + ix.bucket.capacity() * sizeof(uint32_t);
  }
  return n;
}

const SecretForms::Table* SecretForms::Lookup(int view, uint64_t key) const {
  const Index& ix = index_[view];
  if (ix.keys.empty()) return nullptr;
  const uint64_t b = ix.shift >= 64 ? 0 : key >> ix.shift;
  const uint64_t want = key & ~kTagMask;
  for (uint32_t i = ix.bucket[b], e = ix.bucket[b + 1]; i < e; ++i) {
    const uint64_t k = ix.keys[i];
    if ((k & ~kTagMask) == want) return &tables_[k & kTagMask];
    if (k > want) break;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------
// SecretMatcher

SecretMatcher::SecretMatcher(const SecretForms* forms) : forms_(forms) {}

uint64_t SecretMatcher::carry_begin() const {
  uint64_t begin = offset_;
  for (int v = 0; v < 3; ++v) {
    const View& w = views_[v];
    if (forms_->lengths_[v] == 0 || w.count == 0) continue;
    const uint64_t carried = std::min<uint64_t>(w.count, kSecretWindowChars - 1);
    begin = std::min(begin, w.at[(w.count - carried) % kSecretWindowChars]);
  }
  return begin;
}

void SecretMatcher::Reset() {
  for (View& w : views_) w = View{};
}

inline void SecretMatcher::Push(int v, uint8_t c, uint64_t at, std::vector<SecretHit>* hits) {
  View& w = views_[v];
  const uint32_t lens = forms_->lengths_[v];
  const size_t slot = w.count % kSecretWindowChars;
  const uint64_t in = c + 1ULL;
  for (uint32_t bits = lens; bits != 0; bits &= bits - 1) {
    const int len = __builtin_ctz(bits);
    const uint64_t gone =
        w.count >= static_cast<uint64_t>(len)
            ? w.ring[(w.count - len) % kSecretWindowChars] + 1ULL
            : 0;
    w.hash[len] = w.hash[len] * kP + in - gone * kPow.p[len];
  }
  w.ring[slot] = c;
  w.at[slot] = at;
  ++w.count;
  for (uint32_t bits = lens; bits != 0; bits &= bits - 1) {
    const int len = __builtin_ctz(bits);
    if (w.count < static_cast<uint64_t>(len)) continue;
    const SecretForms::Table* t = forms_->Lookup(v, FinalKey(w.hash[len], len, v));
    if (t == nullptr) continue;
    const uint64_t begin = w.at[(w.count - len) % kSecretWindowChars];
    const uint64_t end = at + 1;
    if (w.last_hit >= 0) {
      SecretHit& last = (*hits)[w.last_hit];
      if (last.secret == t->secret && last.form == t->form && begin <= last.end) {
        last.begin = std::min(last.begin, begin);
        last.end = std::max(last.end, end);
        continue;
      }
    }
    w.last_hit = static_cast<int>(hits->size());
    hits->push_back(SecretHit{begin, end, t->secret, t->form});
  }
}

void SecretMatcher::Feed(absl::string_view bytes, std::vector<SecretHit>* hits) {
  if (forms_->empty()) {
    offset_ += bytes.size();
    return;
  }
  for (View& w : views_) w.last_hit = -1;
  const size_t first = hits->size();
  const bool a = forms_->lengths_[0] != 0, b = forms_->lengths_[1] != 0,
             c = forms_->lengths_[2] != 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    const uint8_t ch = static_cast<uint8_t>(bytes[i]);
    const uint64_t at = offset_ + i;
    if (a) Push(0, ch, at, hits);
    if (IsSpace(ch)) continue;
    if (b) Push(1, static_cast<uint8_t>(Canon(1, ch)), at, hits);
    if (c) Push(2, static_cast<uint8_t>(Canon(2, ch)), at, hits);
  }
  offset_ += bytes.size();
  // The same run is usually found in more than one view (raw text in A and B): merge the
  // overlapping hits of one secret and form found by this Feed().
  if (hits->size() - first > 1) {
    std::sort(hits->begin() + first, hits->end(), [](const SecretHit& x, const SecretHit& y) {
      return std::tie(x.secret, x.form, x.begin) < std::tie(y.secret, y.form, y.begin);
    });
    size_t out = first;
    for (size_t i = first + 1; i < hits->size(); ++i) {
      SecretHit& last = (*hits)[out];
      const SecretHit& h = (*hits)[i];
      if (h.secret == last.secret && h.form == last.form && h.begin <= last.end) {
        last.end = std::max(last.end, h.end);
      } else {
        (*hits)[++out] = h;
      }
    }
    hits->resize(out + 1);
    std::sort(hits->begin() + first, hits->end(),
              [](const SecretHit& x, const SecretHit& y) { return x.begin < y.begin; });
  }
}

// ---------------------------------------------------------------------------------------
// BuildKit lines and per-step matchers

BuildkitLine SplitBuildkitLine(absl::string_view line) {
  BuildkitLine out;
  out.content = line;
  // "#" digits " " digits ["." digits] " "
  size_t i = 0;
  if (line.empty() || line[0] != '#') return out;
  ++i;
  const size_t step_begin = i;
  while (i < line.size() && absl::ascii_isdigit(static_cast<unsigned char>(line[i]))) ++i;
  if (i == step_begin || i >= line.size() || line[i] != ' ') return out;
  const size_t key_end = i;
  ++i;
  const size_t secs_begin = i;
  while (i < line.size() && absl::ascii_isdigit(static_cast<unsigned char>(line[i]))) ++i;
  if (i == secs_begin) return out;
  if (i < line.size() && line[i] == '.') {
    ++i;
    while (i < line.size() && absl::ascii_isdigit(static_cast<unsigned char>(line[i]))) ++i;
  }
  if (i < line.size() && line[i] != ' ') return out;
  if (i < line.size()) ++i;  // the space; "#6 0.105" alone is an empty output line
  out.key = line.substr(0, key_end);
  out.prefix = line.substr(0, i);
  out.content = line.substr(i);
  return out;
}

StepMatchers::StepMatchers(const SecretForms* forms, size_t max_steps)
    : forms_(forms), max_steps_(max_steps == 0 ? 1 : max_steps) {}

SecretMatcher& StepMatchers::For(absl::string_view key) {
  ++tick_;
  auto it = steps_.find(key);
  if (it != steps_.end()) {
    it->second.first = tick_;
    return it->second.second;
  }
  if (steps_.size() >= max_steps_) {
    auto oldest = steps_.begin();
    for (auto j = steps_.begin(); j != steps_.end(); ++j) {
      if (j->second.first < oldest->second.first) oldest = j;
    }
    steps_.erase(oldest);
  }
  return steps_.try_emplace(std::string(key), tick_, SecretMatcher(forms_)).first->second.second;
}

}  // namespace kiln::agent
