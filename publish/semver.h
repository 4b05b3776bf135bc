// File: publish/semver.h
// -----------------------------------------------------------------------------
//
// Strict Semantic Versioning 2.0.0 (https://semver.org) for builder image versions: parsing
// with precise error messages, and precedence ordering (semver.org section 11).
//
// Accepted: `1.2.3`, `0.1.0`, `1.0.0-rc.1`, `1.0.0-alpha+build.5`.
// Refused (absl::InvalidArgumentError naming the problem): `1.2` (missing patch),
// `v1.2.3` (leading "v"), `1.2.3.4` (four components), `01.2.3` (leading zero),
// `1.2.3-01` (numeric pre-release identifier with a leading zero), `1.2.3-` (empty
// identifier), `1.2.3+a..b`, components larger than 2^63-1.
//
// Example:
//
//   ASSIGN_OR_RETURN(kiln::publish::SemVer v, kiln::publish::SemVer::Parse("1.2.3-rc.1"));
//   v.ToString();                       // "1.2.3-rc.1"
//   v < *SemVer::Parse("1.2.3");        // true: a pre-release precedes its release
//   v.MinorTag();                       // "1.2"
#ifndef KILN_PUBLISH_SEMVER_H_
#define KILN_PUBLISH_SEMVER_H_

#include <compare>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::publish {

// SemVer: one parsed semantic version. Value type; compare with <, ==, ... (precedence:
// build metadata is ignored by ordering, as semver.org section 10 requires, but kept by
// ToString()).
struct SemVer {
  uint64_t major = 0;
  uint64_t minor = 0;
  uint64_t patch = 0;
  std::vector<std::string> prerelease;  // dot-separated identifiers after '-'
  std::vector<std::string> build;       // dot-separated identifiers after '+'

  // SemVer::Parse(text): parses `text` strictly as MAJOR.MINOR.PATCH[-PRE][+BUILD].
  // Returns InvalidArgumentError with a message quoting `text` and saying what is wrong.
  static absl::StatusOr<SemVer> Parse(absl::string_view text);

  // ToString(): the canonical text (round-trips Parse).
  std::string ToString() const;

  // MinorTag(): "MAJOR.MINOR", the moving minor tag for this version (e.g. "1.2").
  std::string MinorTag() const;

  // Tag(): the version as an OCI distribution-spec tag (grammar
  // `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`): ToString() with the build-metadata separator "+",
  // which tags cannot hold, mapped to "_", as Helm does ("1.2.3+build.5" -> "1.2.3_build.5";
  // "1.2.3-rc.1" is unchanged). One-to-one: semver itself has no "_". Every other character
  // semver allows is a tag character; the result may still be longer than a tag's 128
  // characters (ValidateTag in publish/registry.h says so).
  std::string Tag() const;

  // SemVer::ParseTag(tag): the version a tag written by Tag() names: Parse() of `tag` with
  // "_" mapped back to "+" (so "1.2.3+b" and "1.2.3_b" both parse as 1.2.3+b).
  static absl::StatusOr<SemVer> ParseTag(absl::string_view tag);

  // IsPrerelease(): true when the version has pre-release identifiers.
  bool IsPrerelease() const { return !prerelease.empty(); }

  // Compare(a, b): <0, 0 or >0 by semver precedence (build metadata ignored).
  static int Compare(const SemVer& a, const SemVer& b);

  friend bool operator<(const SemVer& a, const SemVer& b) { return Compare(a, b) < 0; }
  friend bool operator<=(const SemVer& a, const SemVer& b) { return Compare(a, b) <= 0; }
  friend bool operator>(const SemVer& a, const SemVer& b) { return Compare(a, b) > 0; }
  friend bool operator>=(const SemVer& a, const SemVer& b) { return Compare(a, b) >= 0; }
  // operator==: same precedence (build metadata ignored).
  friend bool operator==(const SemVer& a, const SemVer& b) { return Compare(a, b) == 0; }
};

}  // namespace kiln::publish

#endif  // KILN_PUBLISH_SEMVER_H_
