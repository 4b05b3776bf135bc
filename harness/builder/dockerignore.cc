// File: harness/builder/dockerignore.cc
#include "harness/builder/dockerignore.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace kiln::harness {
namespace {

// One compiled element of a pattern (moby/patternmatcher turns the same into a regexp).
struct Token {
  enum class Kind {
    kByte,   // one literal byte
    kStar,   // `*`: [^/]*
    kOne,    // `?`: [^/]
    kClass,  // `[...]`
    kDirs,   // `**` before more pattern (`**/` eaten): (.*/)?
    kAll,    // `**` at the end: .*
  };
  Kind kind = Kind::kByte;
  unsigned char byte = 0;
  bool negated = false;
  std::vector<std::pair<unsigned char, unsigned char>> ranges;
};

absl::Status BadPattern(absl::string_view pattern, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("bad pattern \"", pattern, "\": ", why));
}

absl::StatusOr<std::vector<Token>> Compile(absl::string_view p) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < p.size()) {
    const char c = p[i];
    Token t;
    if (c == '*') {
      if (i + 1 < p.size() && p[i + 1] == '*') {
        i += 2;
        if (i < p.size() && p[i] == '/') ++i;
        t.kind = i == p.size() ? Token::Kind::kAll : Token::Kind::kDirs;
      } else {
        t.kind = Token::Kind::kStar;
        ++i;
      }
    } else if (c == '?') {
      t.kind = Token::Kind::kOne;
      ++i;
    } else if (c == '\\') {
      if (i + 1 == p.size()) return BadPattern(p, "a trailing '\\' escapes nothing");
      t.byte = static_cast<unsigned char>(p[i + 1]);
      i += 2;
    } else if (c == '[') {
      t.kind = Token::Kind::kClass;
      ++i;
      if (i < p.size() && p[i] == '^') {
        t.negated = true;
        ++i;
      }
      // Go's filepath.Match getEsc: one class character, `\` escaping the next.
      auto get = [&](unsigned char* out_byte) -> absl::Status {
        if (i >= p.size()) return BadPattern(p, "unclosed '['");
        if (p[i] == '-' || p[i] == ']') {
          return BadPattern(p, absl::StrCat("unexpected '", std::string(1, p[i]),
                                            "' in a character class (escape it with '\\')"));
        }
        if (p[i] == '\\') {
          ++i;
          if (i >= p.size()) return BadPattern(p, "unclosed '['");
        }
        *out_byte = static_cast<unsigned char>(p[i]);
        ++i;
        return absl::OkStatus();
      };
      while (true) {
        if (i >= p.size()) return BadPattern(p, "unclosed '['");
        if (p[i] == ']' && !t.ranges.empty()) {
          ++i;
          break;
        }
        unsigned char lo = 0;
        if (absl::Status s = get(&lo); !s.ok()) return s;
        unsigned char hi = lo;
        if (i < p.size() && p[i] == '-') {
          ++i;
          if (absl::Status s = get(&hi); !s.ok()) return s;
          if (hi < lo) {
            return BadPattern(p, absl::StrCat("range ", std::string(1, lo), "-",
                                              std::string(1, hi), " is reversed"));
          }
        }
        t.ranges.emplace_back(lo, hi);
      }
    } else {
      t.byte = static_cast<unsigned char>(c);
      ++i;
    }
    out.push_back(std::move(t));
  }
  return out;
}

// Backtracking match of tokens[ti..] against s[si..], memoized (2 bits per state).
class Matcher {
 public:
  Matcher(const std::vector<Token>& tokens, absl::string_view s)
      : tokens_(tokens), s_(s), memo_((tokens.size() + 1) * (s.size() + 1), 0) {}

  bool Match(size_t ti, size_t si) {
    int8_t& m = memo_[ti * (s_.size() + 1) + si];
    if (m != 0) return m > 0;
    const bool r = Compute(ti, si);
    m = r ? 1 : -1;
    return r;
  }

 private:
  bool Compute(size_t ti, size_t si) {
    if (ti == tokens_.size()) return si == s_.size();
    const Token& t = tokens_[ti];
    switch (t.kind) {
      case Token::Kind::kByte:
        return si < s_.size() && static_cast<unsigned char>(s_[si]) == t.byte &&
               Match(ti + 1, si + 1);
      case Token::Kind::kOne:
        return si < s_.size() && s_[si] != '/' && Match(ti + 1, si + 1);
      case Token::Kind::kClass: {
        if (si >= s_.size()) return false;
        const unsigned char c = static_cast<unsigned char>(s_[si]);
        bool in = false;
        for (const auto& [lo, hi] : t.ranges) in = in || (lo <= c && c <= hi);
        return in != t.negated && Match(ti + 1, si + 1);
      }
      case Token::Kind::kStar:
        for (size_t k = si;; ++k) {
          if (Match(ti + 1, k)) return true;
          if (k == s_.size() || s_[k] == '/') return false;
        }
      case Token::Kind::kDirs:
        if (Match(ti + 1, si)) return true;
        for (size_t k = si; k < s_.size(); ++k) {
          if (s_[k] == '/' && Match(ti + 1, k + 1)) return true;
        }
        return false;
      case Token::Kind::kAll:
        return true;
    }
    return false;
  }

  const std::vector<Token>& tokens_;
  absl::string_view s_;
  std::vector<int8_t> memo_;
};

}  // namespace

std::string CleanSlashPath(absl::string_view path) {
  const bool rooted = absl::StartsWith(path, "/");
  std::vector<std::string> parts;
  for (absl::string_view e : absl::StrSplit(path, '/')) {
    if (e.empty() || e == ".") continue;
    if (e == "..") {
      if (!parts.empty() && parts.back() != "..") {
        parts.pop_back();
      } else if (!rooted) {
        parts.push_back("..");
      }
      continue;
    }
    parts.emplace_back(e);
  }
  std::string out = absl::StrCat(rooted ? "/" : "", absl::StrJoin(parts, "/"));
  return out.empty() ? "." : out;
}

absl::StatusOr<bool> MatchDockerignorePattern(absl::string_view pattern, absl::string_view path) {
  absl::StatusOr<std::vector<Token>> tokens = Compile(pattern);
  if (!tokens.ok()) return tokens.status();
  return Matcher(*tokens, path).Match(0, 0);
}

absl::StatusOr<Dockerignore> ParseDockerignore(absl::string_view text) {
  std::vector<DockerignorePattern> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripSuffix(line, "\r");
    if (line_no == 1) line = absl::StripPrefix(line, "\xEF\xBB\xBF");
    if (absl::StartsWith(line, "#")) continue;  // only a `#` in column 1 starts a comment
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    DockerignorePattern p;
    p.line = line_no;
    if (line[0] == '!') {
      p.exception = true;
      line = absl::StripAsciiWhitespace(line.substr(1));
      if (line.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            ".dockerignore line ", line_no, ": a lone '!' excludes nothing (illegal exclusion "
            "pattern \"!\")"));
      }
    }
    p.pattern = CleanSlashPath(line);
    if (p.pattern.size() > 1 && p.pattern[0] == '/') p.pattern = p.pattern.substr(1);
    if (absl::StatusOr<bool> ok = MatchDockerignorePattern(p.pattern, "."); !ok.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(".dockerignore line ", line_no, ": ", ok.status().message()));
    }
    out.push_back(std::move(p));
  }
  return Dockerignore(std::move(out));
}

struct Dockerignore::Compiled {
  std::vector<std::vector<Token>> tokens;  // per pattern
  std::vector<bool> ok;                    // false: malformed, matches nothing
};

Dockerignore::Dockerignore(std::vector<DockerignorePattern> patterns)
    : patterns_(std::move(patterns)) {
  auto c = std::make_shared<Compiled>();
  for (const DockerignorePattern& p : patterns_) {
    absl::StatusOr<std::vector<Token>> t = Compile(p.pattern);
    c->ok.push_back(t.ok());
    c->tokens.push_back(t.ok() ? *std::move(t) : std::vector<Token>{});
  }
  compiled_ = std::move(c);
}

bool Dockerignore::HasExceptions() const {
  for (const DockerignorePattern& p : patterns_) {
    if (p.exception) return true;
  }
  return false;
}

bool Dockerignore::Excluded(absl::string_view path) const {
  if (patterns_.empty()) return false;
  const std::string file = CleanSlashPath(path);
  // The parent directories as prefixes of `file`: "a", "a/b" for "a/b/c".
  std::vector<absl::string_view> parents;
  for (size_t at = file.find('/'); at != std::string::npos; at = file.find('/', at + 1)) {
    parents.push_back(absl::string_view(file).substr(0, at));
  }
  bool excluded = false;
  for (size_t i = 0; i < patterns_.size(); ++i) {
    if (patterns_[i].exception != excluded) continue;  // it could not change the answer
    if (!compiled_->ok[i]) continue;
    const std::vector<Token>& tokens = compiled_->tokens[i];
    bool m = Matcher(tokens, file).Match(0, 0);
    for (size_t j = 0; !m && j < parents.size(); ++j) m = Matcher(tokens, parents[j]).Match(0, 0);
    if (m) excluded = !patterns_[i].exception;
  }
  return excluded;
}

}  // namespace kiln::harness
