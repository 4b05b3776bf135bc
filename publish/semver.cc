#include "publish/semver.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace kiln::publish {
namespace {

absl::Status Bad(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid version \"", text, "\": ", why,
                   " (expected strict semver MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], e.g. 1.2.3)"));
}

bool AllDigits(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

bool IdentChars(absl::string_view s) {
  for (char c : s)
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
  return true;
}

absl::StatusOr<uint64_t> Numeric(absl::string_view text, absl::string_view part,
                                 absl::string_view name) {
  if (part.empty()) return Bad(text, absl::StrCat(name, " is empty"));
  if (!AllDigits(part))
    return Bad(text, absl::StrCat(name, " \"", part, "\" is not a decimal number"));
  if (part.size() > 1 && part[0] == '0')
    return Bad(text, absl::StrCat(name, " \"", part, "\" has a leading zero"));
  if (part.size() > 19) return Bad(text, absl::StrCat(name, " \"", part, "\" is too large"));
  uint64_t v = 0;
  for (char c : part) v = v * 10 + static_cast<uint64_t>(c - '0');
  if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return Bad(text, absl::StrCat(name, " \"", part, "\" is too large"));
  return v;
}

absl::StatusOr<std::vector<std::string>> Identifiers(absl::string_view text,
                                                     absl::string_view part,
                                                     absl::string_view name, bool numeric_rule) {
  std::vector<std::string> out;
  for (absl::string_view id : absl::StrSplit(part, '.')) {
    if (id.empty()) return Bad(text, absl::StrCat("empty ", name, " identifier"));
    if (!IdentChars(id))
      return Bad(text, absl::StrCat(name, " identifier \"", id,
                                    "\" has characters other than [0-9A-Za-z-]"));
    if (numeric_rule && AllDigits(id) && id.size() > 1 && id[0] == '0')
      return Bad(text, absl::StrCat("numeric ", name, " identifier \"", id,
                                    "\" has a leading zero"));
    out.emplace_back(id);
  }
  return out;
}

}  // namespace

absl::StatusOr<SemVer> SemVer::Parse(absl::string_view text) {
  if (text.empty()) return Bad(text, "empty");
  if (text[0] == 'v' || text[0] == 'V') return Bad(text, "leading \"v\" is not allowed");
  if (!absl::ascii_isdigit(static_cast<unsigned char>(text[0])))
    return Bad(text, "must start with the major version number");
  for (char c : text)
    if (absl::ascii_isspace(static_cast<unsigned char>(c)))
      return Bad(text, "contains whitespace");
  SemVer v;
  absl::string_view rest = text;
  if (size_t plus = rest.find('+'); plus != absl::string_view::npos) {
    absl::string_view build = rest.substr(plus + 1);
    rest = rest.substr(0, plus);
    if (build.empty()) return Bad(text, "empty build metadata after \"+\"");
    auto ids = Identifiers(text, build, "build", /*numeric_rule=*/false);
    if (!ids.ok()) return ids.status();
    v.build = *std::move(ids);
  }
  if (size_t dash = rest.find('-'); dash != absl::string_view::npos) {
    absl::string_view pre = rest.substr(dash + 1);
    rest = rest.substr(0, dash);
    if (pre.empty()) return Bad(text, "empty pre-release after \"-\"");
    auto ids = Identifiers(text, pre, "pre-release", /*numeric_rule=*/true);
    if (!ids.ok()) return ids.status();
    v.prerelease = *std::move(ids);
  }
  std::vector<absl::string_view> parts = absl::StrSplit(rest, '.');
  if (parts.size() < 3)
    return Bad(text, absl::StrCat("has ", parts.size(), " numeric component",
                                  parts.size() == 1 ? "" : "s", ", needs 3"));
  if (parts.size() > 3)
    return Bad(text, absl::StrCat("has ", parts.size(), " numeric components, needs 3"));
  auto major = Numeric(text, parts[0], "major");
  if (!major.ok()) return major.status();
  auto minor = Numeric(text, parts[1], "minor");
  if (!minor.ok()) return minor.status();
  auto patch = Numeric(text, parts[2], "patch");
  if (!patch.ok()) return patch.status();
  v.major = *major;
  v.minor = *minor;
  v.patch = *patch;
  return v;
}

std::string SemVer::ToString() const {
  std::string s = absl::StrCat(major, ".", minor, ".", patch);
  if (!prerelease.empty()) absl::StrAppend(&s, "-", absl::StrJoin(prerelease, "."));
  if (!build.empty()) absl::StrAppend(&s, "+", absl::StrJoin(build, "."));
  return s;
}

std::string SemVer::MinorTag() const { return absl::StrCat(major, ".", minor); }

std::string SemVer::Tag() const {
  std::string s = ToString();
  std::replace(s.begin(), s.end(), '+', '_');
  return s;
}

absl::StatusOr<SemVer> SemVer::ParseTag(absl::string_view tag) {
  std::string text(tag);
  std::replace(text.begin(), text.end(), '_', '+');
  return Parse(text);
}

int SemVer::Compare(const SemVer& a, const SemVer& b) {
  auto cmp = [](uint64_t x, uint64_t y) { return x < y ? -1 : (x > y ? 1 : 0); };
  if (int c = cmp(a.major, b.major)) return c;
  if (int c = cmp(a.minor, b.minor)) return c;
  if (int c = cmp(a.patch, b.patch)) return c;
  // A version without pre-release has higher precedence than one with.
  if (a.prerelease.empty() || b.prerelease.empty())
    return a.prerelease.empty() == b.prerelease.empty() ? 0 : (a.prerelease.empty() ? 1 : -1);
  for (size_t i = 0; i < a.prerelease.size() && i < b.prerelease.size(); ++i) {
    const std::string& x = a.prerelease[i];
    const std::string& y = b.prerelease[i];
    bool xn = AllDigits(x), yn = AllDigits(y);
    if (xn && yn) {
      if (x.size() != y.size()) return x.size() < y.size() ? -1 : 1;
      if (int c = x.compare(y)) return c < 0 ? -1 : 1;
    } else if (xn != yn) {
      return xn ? -1 : 1;  // numeric identifiers have lower precedence
    } else if (int c = x.compare(y)) {
      return c < 0 ? -1 : 1;
    }
  }
  return cmp(a.prerelease.size(), b.prerelease.size());
}

}  // namespace kiln::publish
