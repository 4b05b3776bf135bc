// File: harness/builder/dockerignore.h
// -----------------------------------------------------------------------------
//
// `.dockerignore` as docker and BuildKit read it (moby/patternmatcher and its ignorefile
// package; Docker's "Build context" docs, ".dockerignore files"). Pure: text in, decisions out;
// //harness:build (harness/builder/build_command.h: ListContext) applies it where the context tar is
// made, so an excluded file never reaches the builder VM.
//
// The rules (ParseDockerignore):
//   - one pattern per line; a line whose FIRST character is `#` is a comment; then surrounding
//     whitespace is trimmed and blank lines are skipped; a UTF-8 BOM on line 1 is dropped;
//   - `!PATTERN` is an exception: it re-includes what earlier patterns excluded. The LAST
//     pattern that matches a path decides (so `*.md` then `!README*.md` keeps README.md);
//   - each pattern is cleaned as Go's filepath.Clean (`./a` -> `a`, `a//b/` -> `a/b`,
//     `a/../b` -> `b`) and one leading `/` is dropped: patterns are relative to the context
//     root, `/` separated;
//   - Go filepath.Match syntax: `*` any run of non-`/` bytes, `?` one non-`/` byte, `[...]` /
//     `[^...]` a class with ranges `a-z`, `\x` the byte x literally; and `**` any number of
//     directories (zero included): `**/*.go` matches `a.go` and `x/y/a.go`, a trailing `**`
//     matches everything below (`a/**` matches `a/b/c`);
//   - a pattern also matches every path BELOW a path it matches: `secrets` (or `secrets/`)
//     excludes `secrets/x/y`; and `*.md` matches only at the root (`**/*.md` everywhere).
// Bytes, not runes: a class matches one byte (a non-ASCII character in a class is not one
// element, as it is in Go).
//
// Example:
//   ASSIGN_OR_RETURN(Dockerignore ig, ParseDockerignore("*.md\n!README*.md\n.env\nsecrets/\n"));
//   ig.Excluded("notes.md")         // true
//   ig.Excluded("README-dev.md")    // false (the exception is the last match)
//   ig.Excluded("secrets/db/pass")  // true (below an excluded directory)
#ifndef KILN_HARNESS_DOCKERIGNORE_H_
#define KILN_HARNESS_DOCKERIGNORE_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::harness {

// DockerignorePattern: one parsed line.
struct DockerignorePattern {
  std::string pattern;  // cleaned, without the `!`
  bool exception = false;
  int line = 0;         // 1-based line in the file
};

class Dockerignore {
 public:
  Dockerignore() = default;
  // Compiles each pattern once (a malformed one, which ParseDockerignore refuses, matches
  // nothing).
  explicit Dockerignore(std::vector<DockerignorePattern> patterns);

  // Excluded(path): whether the context path `path` (relative to the context root, `/`
  // separated; cleaned first, so "./a/" is "a") is left out: the last pattern that matches
  // `path` or one of its parent directories decides; false if none matches.
  bool Excluded(absl::string_view path) const;

  // HasExceptions: some pattern starts with `!` (a walker must then look inside an excluded
  // directory: an exception may re-include something below it, as BuildKit does).
  bool HasExceptions() const;

  bool empty() const { return patterns_.empty(); }
  const std::vector<DockerignorePattern>& patterns() const { return patterns_; }

 private:
  struct Compiled;  // the patterns as matchers (dockerignore.cc)
  std::vector<DockerignorePattern> patterns_;
  std::shared_ptr<const Compiled> compiled_;
};

// ParseDockerignore(text): the file's patterns (rules above). InvalidArgument naming the line
// for a pattern Go's filepath.Match refuses (an unclosed `[`, an empty class `[]`, a range
// whose ends are reversed, a trailing `\`) or a lone `!`:
// ".dockerignore line 3: bad pattern \"[\": unclosed '['".
absl::StatusOr<Dockerignore> ParseDockerignore(absl::string_view text);

// MatchDockerignorePattern(pattern, path): whether one cleaned pattern matches `path` itself
// (no parent rule). InvalidArgument for a malformed pattern (see ParseDockerignore).
absl::StatusOr<bool> MatchDockerignorePattern(absl::string_view pattern, absl::string_view path);

// CleanSlashPath(path): Go's path.Clean: "" -> ".", `//` -> `/`, `.` and `..` elements
// resolved lexically, no trailing `/` (except "/"). Pure.
std::string CleanSlashPath(absl::string_view path);

}  // namespace kiln::harness

#endif  // KILN_HARNESS_DOCKERIGNORE_H_
