// File: harness/builder/leak_scan.h
// -----------------------------------------------------------------------------
//
// The host's leak scan: occurrences of a build secret, in any form the guest's redactor masks
// (agent/secret_forms.h: one definition for both), in what came back from a builder VM (the
// OCI archive and the job's log lines). Used by the builder scenarios (builder_scenarios.h)
// after every job that sent a secret.
//
// Example:
//
//   ASSIGN_OR_RETURN(LeakReport img, ScanOciArchiveForSecret("/tmp/job.oci.tar", secret));
//   LeakReport logs = ScanLogsForSecret(response.logs, secret);
//   if (img.hits + logs.hits > 0) ... img.where names blob, entry, form and byte range
#ifndef KILN_HARNESS_LEAK_SCAN_H_
#define KILN_HARNESS_LEAK_SCAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/protocol/messages.h"

namespace kiln::harness {

// LeakReport: occurrences of a secret in an artifact. A hit is one run of 16-character windows
// (or the whole value) of one form of the secret, as agent/secret_forms.h defines them: raw,
// folded (whitespace removed), base64 (any alignment, alphabet, wrap, padding), hex (any case,
// spacing, wrap), Go-JSON-escaped.
struct LeakReport {
  int64_t hits = 0;                // total hits (0 = clean)
  int64_t blobs = 0;               // archive entries / log lines scanned
  int64_t layers = 0;              // blobs that were (possibly compressed) tars, read to the end
  int64_t layer_entries = 0;       // entries inside those layers
  bool config_scanned = false;     // an image config (with its history) was found and scanned
  int64_t history_entries = 0;     // config.history entries
  std::vector<std::string> where;  // "<blob>[:<entry>] (<form>) bytes [b, e)" per hit, first 20
};

// ScanOciArchiveForSecret(path, secret): scans the OCI archive at `path` for every form of
// `secret`: the archive file's raw bytes; every entry (name, link target, data); every layer
// (each blob a manifest lists as a layer, and every other blob that is a tar, plain or
// gzip/zstd/bzip2/xz compressed) entry by entry, streamed (names, link targets, data); every
// string of each image config (history entries reported as "(history[i])"); and every
// JSON blob raw (so Go-JSON-escaped forms are found). Streams are never loaded whole except
// JSON blobs up to 16 MiB.
// Errors: NotFound if the file is missing or empty; DataLoss if the archive, a blob or a layer
// cannot be read to its end (truncated tar or compressed stream), if index.json is missing or
// does not parse, or if an index/manifest it names is missing or does not parse.
absl::StatusOr<LeakReport> ScanOciArchiveForSecret(const std::string& path,
                                                   absl::string_view secret);

// ScanFileForSecret(path, secret): every form of `secret` in the file's bytes, read as one
// stream per data extent (SEEK_DATA/SEEK_HOLE: a hole reads as zeros and holds no form of a
// non-empty secret, so a sparse 1 GiB guest RAM file costs only the pages it holds); `where`
// names the file and the byte range; `blobs` is the number of extents read. For files a VM
// leaves on the host (snapshot state, guest RAM files).
// Errors: NotFound / PermissionDenied naming the file (errno-derived); DataLoss on a read error.
absl::StatusOr<LeakReport> ScanFileForSecret(const std::string& path, absl::string_view secret);

// ScanLogsForSecret(logs, secret): every form of `secret` in the log lines, read as the
// redactor reads them: per BuildKit step ("#<step> <seconds> " prefix stripped, the lines of
// one step one stream), so a window split over two lines of one step counts. Pure.
LeakReport ScanLogsForSecret(const std::vector<agent::Log>& logs, absl::string_view secret);

}  // namespace kiln::harness

#endif  // KILN_HARNESS_LEAK_SCAN_H_
