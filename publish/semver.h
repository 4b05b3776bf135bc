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
