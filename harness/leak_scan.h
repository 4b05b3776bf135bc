// File: harness/leak_scan.h
// -----------------------------------------------------------------------------
//
// The host's leak scan: occurrences of a build secret in what came back from a builder VM
// (the OCI archive and the job's log lines). Used by the builder scenarios
// (builder_scenarios.h) after every job that sent a secret.
#ifndef KILN_HARNESS_LEAK_SCAN_H_
#define KILN_HARNESS_LEAK_SCAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/protocol/messages.h"

namespace kiln::harness {

// LeakReport: occurrences of a secret in an artifact.
struct LeakReport {
  int64_t hits = 0;                // total occurrences (0 = clean)
  int64_t blobs = 0;               // archive entries / log lines scanned
  int64_t layers = 0;              // blobs that were (possibly compressed) tars, opened
  int64_t layer_entries = 0;       // entries inside those layers
  bool config_scanned = false;     // the image config (with its history) was found and scanned
  int64_t history_entries = 0;     // config.history entries
  std::vector<std::string> where;  // "<blob>[:<entry>] (<form>)" per hit, at most 20
};

// ScanOciArchiveForSecret(path, secret): every entry of the OCI archive (raw), each blob that
// is a tar (any compression) entry by entry (names, link targets, data), and the config's
// history, for `secret` as raw bytes. Errors: NotFound/DataLoss if the archive cannot be read.
absl::StatusOr<LeakReport> ScanOciArchiveForSecret(const std::string& path,
                                                   absl::string_view secret);

// ScanLogsForSecret(logs, secret): every log line for the raw value and (if >= 4 bytes) its
// lowercase hex and standard base64 forms. Pure.
LeakReport ScanLogsForSecret(const std::vector<agent::Log>& logs, absl::string_view secret);


}  // namespace kiln::harness

#endif  // KILN_HARNESS_LEAK_SCAN_H_
