// File: harness/builder_scenarios.cc
#include "harness/builder_scenarios.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::harness {
namespace {

constexpr char kSecretId[] = "build_token";
constexpr char kBlobId[] = "build_blob";
constexpr char kBusyboxRef[] = "kiln-busybox:1";

int64_t CountOccurrences(absl::string_view hay, absl::string_view needle) {
  if (needle.empty()) return 0;
  int64_t n = 0;
  for (size_t pos = hay.find(needle); pos != absl::string_view::npos;
       pos = hay.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

std::string RandomBytes(size_t n) {
  std::string bytes(n, '\0');
  std::ifstream r("/dev/urandom", std::ios::binary);
  r.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return bytes;
}

ScenarioResult Pass(absl::string_view name, absl::string_view title, std::string summary) {
  return {std::string(name), std::string(title), absl::OkStatus(), std::move(summary)};
}
ScenarioResult Fail(absl::string_view name, absl::string_view title, std::string why) {
  return {std::string(name), std::string(title), absl::FailedPreconditionError(why), why};
}

// LogTailText: the last n log lines (for failure messages).
std::string LogTailText(const BuildResponse& r, size_t n) {
  std::vector<std::string> lines;
  for (size_t i = r.logs.size() > n ? r.logs.size() - n : 0; i < r.logs.size(); ++i) {
    lines.push_back(r.logs[i].text);
  }
  return absl::StrJoin(lines, "\n");
}

std::string Describe(const BuildResponse& r) {
  if (!r.refused.ok()) return absl::StrCat("refused: ", r.refused.ToString());
  if (!r.result) return "no result";
  return absl::StrCat("exit ", r.result->exit_status, r.result->error.empty() ? "" : ", error: ",
                      r.result->error.substr(0, 600));
}

bool Succeeded(const BuildResponse& r) {
  return r.refused.ok() && r.result && r.result->exit_status == 0 && !r.image_path.empty() &&
         absl::StartsWith(r.result->image_digest, "sha256:");
}

// The serial log as log lines (what ScanLogsForSecret reads).
std::vector<agent::Log> SerialLines(absl::string_view serial) {
  std::vector<agent::Log> lines;
  for (absl::string_view l : absl::StrSplit(serial, '\n')) {
    lines.push_back({agent::LogStream::kSystem, 0, std::string(l)});
  }
  return lines;
}

// RequireImage(r, ...): true if the build succeeded with an image; else appends the failure
// (what came back and the log tail) to *out and returns false.
bool RequireImage(const BuildResponse& r, absl::string_view name, absl::string_view title,
                  std::vector<ScenarioResult>* out) {
  if (Succeeded(r)) return true;
  out->push_back(Fail(name, title,
                      absl::StrCat("expected a successful build with an image, got ", Describe(r),
                                   "\nlog tail:\n", LogTailText(r, 15))));
  return false;
}

// The common "a build succeeded and the secret was visible and did not leak" checks.
void CheckSecretJob(const JobEvidence& ev, absl::string_view secret_sha, int min_sha_lines,
                    absl::string_view name, absl::string_view title,
                    std::vector<ScenarioResult>* out) {
  const BuildResponse& r = ev.response;
  if (!RequireImage(r, name, title, out)) return;
  const int64_t shas = CountOccurrences(r.LogText(), secret_sha);
  if (shas < min_sha_lines) {
    out->push_back(Fail(name, title,
                        absl::StrCat("expected the secret's sha256 ", secret_sha, " at least ",
                                     min_sha_lines, " times in the log, got ", shas,
                                     "\nlog tail:\n", LogTailText(r, 20))));
    return;
  }
  out->push_back(Pass(name, title,
                      absl::StrCat("secret visible to its RUN step(s): sha256 ",
                                   secret_sha.substr(0, 16), "... printed ", shas,
                                   " times; image ", r.result->image_digest.substr(0, 19),
                                   "... (", r.image_bytes, " bytes)")));
}

void CheckLeaks(const JobEvidence& ev, absl::string_view name, absl::string_view title,
                std::vector<ScenarioResult>* out) {
  if (!ev.image_leaks.ok()) {
    out->push_back(Fail(name, title, absl::StrCat("image scan failed: ",
                                                  ev.image_leaks.status().ToString())));
    return;
  }
  const LeakReport& img = *ev.image_leaks;
  const LeakReport& logs = ev.log_leaks;
  if (ev.response.image_path.empty()) {
    out->push_back(Fail(name, title, "expected an image to scan, got none"));
    return;
  }
  if (img.hits != 0 || logs.hits != 0) {
    out->push_back(Fail(name, title,
                        absl::StrCat("expected 0 secret occurrences, got ", img.hits,
                                     " in the image and ", logs.hits, " in the logs: ",
                                     absl::StrJoin(img.where, "; "), " ",
                                     absl::StrJoin(logs.where, "; "))));
    return;
  }
  if (!img.config_scanned || img.layers == 0) {
    out->push_back(Fail(name, title,
                        absl::StrCat("expected the config and at least one layer to be scanned, "
                                     "got config_scanned=",
                                     img.config_scanned, " layers=", img.layers)));
    return;
  }
  out->push_back(Pass(name, title,
                      absl::StrCat("0 secret bytes: ", img.blobs, " archive entries, ",
                                   img.layers, " layers (", img.layer_entries,
                                   " entries, decompressed), config + ", img.history_entries,
                                   " history entries; ", logs.blobs, " log lines")));
}

// MergeLeaks(into, more, id): adds the report of another secret (`id`) to `into`.
void MergeLeaks(LeakReport& into, const LeakReport& more, absl::string_view id) {
  into.hits += more.hits;
  into.blobs = std::max(into.blobs, more.blobs);
  into.layers = std::max(into.layers, more.layers);
  into.layer_entries = std::max(into.layer_entries, more.layer_entries);
  into.config_scanned = into.config_scanned || more.config_scanned;
  into.history_entries = std::max(into.history_entries, more.history_entries);
  for (const std::string& w : more.where) into.where.push_back(absl::StrCat(id, ": ", w));
}

// ScanAll(secrets, scan): the LeakReport of every secret, merged (`where` names the id).
template <typename Scan>
absl::StatusOr<LeakReport> ScanAll(const ScenarioSecrets& secrets, Scan scan) {
  LeakReport all;
  for (const auto& [id, value] : {std::pair<const char*, const std::string*>{kSecretId, &secrets.token},
                                  {kBlobId, &secrets.blob}}) {
    if (value->empty()) continue;
    absl::StatusOr<LeakReport> r = scan(*value);
    if (!r.ok()) return r.status();
    MergeLeaks(all, *r, id);
  }
  return all;
}

// The secret-redaction job (examples/secret-redaction): both secrets visible, every printed
// form masked (at least the marker counts of the file comment of builder_scenarios.h), and
// nothing of either secret in the log or the image.
void CheckRedactionJob(const JobEvidence& ev, const BuilderGroupOutcome& g,
                       absl::string_view name, absl::string_view title,
                       std::vector<ScenarioResult>* out) {
  const BuildResponse& r = ev.response;
  if (!RequireImage(r, name, title, out)) return;
  const std::string log = r.LogText();
  const int64_t token_shas = CountOccurrences(log, g.secret_sha256);
  const int64_t blob_shas = CountOccurrences(log, g.blob_sha256);
  const int64_t token_marks = CountOccurrences(log, absl::StrCat("[REDACTED:", kSecretId, "]"));
  const int64_t blob_marks = CountOccurrences(log, absl::StrCat("[REDACTED:", kBlobId, "]"));
  if (token_shas < 3 || blob_shas < 1) {
    out->push_back(Fail(name, title,
                        absl::StrCat("expected build_token's sha256 at least 3 times and "
                                     "build_blob's at least once in the log, got ", token_shas,
                                     " and ", blob_shas, "\nlog tail:\n", LogTailText(r, 20))));
    return;
  }
  if (token_marks < kMinTokenRedactions || blob_marks < kMinBlobRedactions) {
    out->push_back(Fail(name, title,
                        absl::StrCat("expected at least ", kMinTokenRedactions,
                                     " [REDACTED:build_token] and ", kMinBlobRedactions,
                                     " [REDACTED:build_blob] markers, got ", token_marks, " and ",
                                     blob_marks, "\nlog tail:\n", LogTailText(r, 40))));
    return;
  }
  std::vector<ScenarioResult> leaks;
  CheckLeaks(ev, name, title, &leaks);
  if (!leaks[0].status.ok()) {
    out->push_back(std::move(leaks[0]));
    return;
  }
  out->push_back(Pass(name, title,
                      absl::StrCat(token_marks, " [REDACTED:build_token] (", g.token_bytes,
                                   "-byte token) and ", blob_marks, " [REDACTED:build_blob] (",
                                   g.blob_bytes, "-byte binary) markers in ", r.logs.size(),
                                   " log lines; both secrets visible (sha256 printed ",
                                   token_shas, "+", blob_shas, " times); ", leaks[0].summary)));
}

// ---------------------------------------------------------------------------------------
// Jobs

struct JobFiles {
  std::string context_tar;
  std::string image_out;
};

absl::StatusOr<JobFiles> MakeJobFiles(const BuilderScenarioInputs& in, absl::string_view group,
                                      absl::string_view job, absl::string_view example) {
  JobFiles f;
  f.context_tar = absl::StrCat(in.work_dir, "/", group, "-", job, ".context.tar");
  f.image_out = absl::StrCat(in.work_dir, "/", group, "-", job, ".oci.tar");
  absl::StatusOr<uint64_t> n =
      WriteDirectoryTar(absl::StrCat(in.examples_dir, "/", example), f.context_tar,
                        SymlinkMode::kFollow);  // runfiles are symlinks
  if (!n.ok()) return n.status();
  return f;
}

// Which secrets a job is sent and names.
enum SecretUse : int { kNone = 0, kToken = 1, kBlob = 2 };

absl::StatusOr<BuildRequest> ExampleJob(const BuilderScenarioInputs& in, absl::string_view group,
                                        absl::string_view job_id, absl::string_view example,
                                        const ScenarioSecrets& secrets, int send, int name) {
  absl::StatusOr<JobFiles> f = MakeJobFiles(in, group, job_id, example);
  if (!f.ok()) return f.status();
  BuildRequest r;
  r.job_id = std::string(job_id);
  r.context_tar = f->context_tar;
  r.image_out = f->image_out;
  if (send & kToken) r.secrets[kSecretId] = secrets.token;
  if (send & kBlob) r.secrets[kBlobId] = secrets.blob;
  if (name & kToken) r.secret_ids.push_back(kSecretId);
  if (name & kBlob) r.secret_ids.push_back(kBlobId);
  r.preload = {{kBusyboxRef, in.busybox_image}};
  r.tag = absl::StrCat("kiln-test/", job_id, ":1");
  r.deadline_ms = 240000;
  return r;
}

// ---------------------------------------------------------------------------------------
// The groups

std::vector<ScenarioResult> CheckReferenceGroup(const BuilderGroupOutcome& g,
                                                absl::string_view secret) {
  std::vector<ScenarioResult> out;
  static const char* kNames[][2] = {
      {"run-no-secret", "a RUN step without secrets runs (runc in the builder VM)"},
      {"secret-default", "a RUN step reads the secret (default mount): its sha256 is in the log"},
      {"leak-scan", "0 secret bytes in the image (layers, config, history) and the logs"}};
  if (g.evidence.size() != 1) {
    for (auto& n : kNames) {
      out.push_back(Fail(n[0], n[1], absl::StrCat("the builder VM run failed: ",
                                                  g.run.status.ToString())));
    }
    return out;
  }
  const JobEvidence& ev = g.evidence[0];
  const BuildResponse& r = ev.response;
  if (Succeeded(r) && absl::StrContains(r.LogText(), "step-one")) {
    out.push_back(Pass(kNames[0][0], kNames[0][1],
                       absl::StrCat("\"step-one\" printed by RUN echo (", r.logs.size(),
                                    " log lines)")));
  } else {
    out.push_back(Fail(kNames[0][0], kNames[0][1],
                       absl::StrCat("expected a successful build printing step-one, got ",
                                    Describe(r), "\nlog tail:\n", LogTailText(r, 15))));
  }
  CheckSecretJob(ev, g.secret_sha256, 1, kNames[1][0], kNames[1][1], &out);
  CheckLeaks(ev, kNames[2][0], kNames[2][1], &out);
  return out;
}

std::vector<ScenarioResult> CheckSecretsGroup(const BuilderGroupOutcome& g,
                                              absl::string_view secret) {
  std::vector<ScenarioResult> out;
  static const char* kNames[][2] = {
      {"secret-modes", "default mount, target=, required=true each see the secret; nothing leaks"},
      {"secret-redaction",
       "a 120-byte token and a 16 KiB binary secret printed raw, base64 (-w 0), od, xxd (-p), "
       "hexdump -C: every line masked, 0 16-char windows of any form reach the host"},
      {"secret-env-refused",
       "env= (refused by the built-in frontend of dockerd 20.10 and 26.1) is refused up front"},
      {"missing-secret", "a job naming a secret the host did not send is refused"},
      {"undeclared-secret", "a Dockerfile using an undelivered secret is refused before BuildKit"},
      {"failing-step", "a failing RUN step gives a clear failure result with the log tail"}};
  constexpr size_t kJobs = 6;
  if (g.evidence.size() != kJobs) {
    for (auto& n : kNames) {
      out.push_back(Fail(n[0], n[1], absl::StrCat("the builder VM run failed after ",
                                                  g.evidence.size(), " of ", kJobs, " jobs: ",
                                                  g.run.status.ToString())));
    }
    return out;
  }
  // 0: secret-modes. 3 RUNs print the sha256 (default, target=, required=true via stdin "-");
  // its last RUN prints the secret raw/base64/hex: nothing of it may reach the host.
  {
    std::vector<ScenarioResult> modes, leaks;
    CheckSecretJob(g.evidence[0], g.secret_sha256, 3, kNames[0][0], kNames[0][1], &modes);
    CheckLeaks(g.evidence[0], kNames[0][0], kNames[0][1], &leaks);
    if (modes[0].status.ok() && !leaks[0].status.ok()) modes[0] = std::move(leaks[0]);
    if (modes[0].status.ok()) absl::StrAppend(&modes[0].summary, "; ", leaks[0].summary);
    out.push_back(std::move(modes[0]));
  }
  // 1: secret-redaction.
  CheckRedactionJob(g.evidence[1], g, kNames[1][0], kNames[1][1], &out);
  // 2: env= refused, naming env, before BuildKit (an Error reply, not a BuildResult).
  {
    const BuildResponse& r = g.evidence[2].response;
    // kiln refuses env= up front; the message pins BuildKit's own error for it.
    if (r.refused.code() == absl::StatusCode::kInvalidArgument &&
        absl::StrContains(r.refused.message(), "before BuildKit ran") &&
        absl::StrContains(r.refused.message(), "unexpected key 'env'") && !r.result) {
      out.push_back(Pass(kNames[2][0], kNames[2][1], absl::StrCat("refused: ",
                                                                 r.refused.ToString())));
    } else {
      out.push_back(Fail(kNames[2][0], kNames[2][1],
                         absl::StrCat("expected InvalidArgument \"job refused before BuildKit ran: ... "
                                      "env= ... unexpected key 'env'\", got ",
                                      Describe(r))));
    }
  }
  // 3: job names build_token, host sent nothing.
  {
    const BuildResponse& r = g.evidence[3].response;
    if (r.refused.code() == absl::StatusCode::kFailedPrecondition &&
        absl::StrContains(r.refused.message(), "did not deliver") &&
        absl::StrContains(r.refused.message(), kSecretId) && r.logs.empty()) {
      out.push_back(Pass(kNames[3][0], kNames[3][1], r.refused.ToString()));
    } else {
      out.push_back(Fail(kNames[3][0], kNames[3][1],
                         absl::StrCat("expected FailedPrecondition \"... did not deliver: [",
                                      kSecretId, "]\" and no build log, got ", Describe(r),
                                      " with ", r.logs.size(), " log lines")));
    }
  }
  // 4: job lists no secrets, its Dockerfile uses build_token.
  {
    const BuildResponse& r = g.evidence[4].response;
    if (!r.refused.ok() && absl::StrContains(r.refused.message(), "did not deliver") &&
        absl::StrContains(r.refused.message(), "before BuildKit ran") && !r.result) {
      out.push_back(Pass(kNames[4][0], kNames[4][1], r.refused.ToString()));
    } else {
      out.push_back(Fail(kNames[4][0], kNames[4][1],
                         absl::StrCat("expected a refusal before BuildKit ran naming the "
                                      "undelivered secret, got ",
                                      Describe(r))));
    }
  }
  // 5: failing RUN (exit 3).
  {
    const BuildResponse& r = g.evidence[5].response;
    if (r.refused.ok() && r.result && r.result->exit_status != 0 && r.image_path.empty() &&
        absl::StrContains(r.result->error, "ABORTED") &&
        absl::StrContains(r.result->error, "kiln-about-to-fail")) {
      out.push_back(Pass(kNames[5][0], kNames[5][1],
                         absl::StrCat("exit ", r.result->exit_status, ", error names the step (",
                                      r.result->error.size(), " bytes incl. log tail)")));
    } else {
      out.push_back(Fail(kNames[5][0], kNames[5][1],
                         absl::StrCat("expected an ABORTED BuildResult whose error quotes "
                                      "\"kiln-about-to-fail\", got ",
                                      Describe(r))));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// The matrix

constexpr char kMatrixPlainDockerfile[] =
    "FROM kiln-busybox:1\n"
    "RUN sleep 2; echo kiln-matrix-run; id -u\n";
// The step reads its own secret, then looks for the guest's paths and for any other file
// named build_token (the output lines are built at run time so that BuildKit's echo of the
// command line cannot match them).
constexpr char kMatrixSecretDockerfile[] =
    "FROM kiln-busybox:1\n"
    "RUN --mount=type=secret,id=build_token,required=true sh -c 'sleep 2; "
    "sha256sum /run/secrets/build_token; "
    "for p in /run/kiln-secrets /dev/shm/kiln-secrets /run/user/1000 /run/kiln-agent "
    "/home/builder; do if [ -e \"$p\" ]; then echo \"kiln-guest-path-visible $p\"; else "
    "echo \"kiln-guest-path-absent $p\"; fi; done; "
    "echo \"kiln-secret-files: $(find / -name build_token 2>/dev/null | tr \"\\n\" \" \")end\"'\n";
constexpr char kOnlyOwnSecretFile[] = "kiln-secret-files: /run/secrets/build_token end";

std::string ModeCgroupName(absl::string_view mode, absl::string_view cgroup) {
  return absl::StrCat("builder-", mode, "-", cgroup);
}

std::vector<const MatrixCell*> RowCells(absl::string_view mode, absl::string_view cgroup) {
  std::vector<const MatrixCell*> row;
  for (const MatrixCell& c : BuilderMatrix()) {
    if (c.mode == mode && c.cgroup == cgroup) row.push_back(&c);
  }
  return row;
}

absl::StatusOr<BuildRequest> MatrixJob(const BuilderScenarioInputs& in, absl::string_view group,
                                       MatrixRun run, const ScenarioSecrets& secrets) {
  const bool secret = run == MatrixRun::kSecret;
  absl::StatusOr<BuildRequest> r = ExampleJob(in, group, secret ? "run-secret" : "run",
                                              "reference", secrets, secret ? kToken : kNone,
                                              secret ? kToken : kNone);
  if (!r.ok()) return r.status();
  r->dockerfile = secret ? kMatrixSecretDockerfile : kMatrixPlainDockerfile;
  return r;
}

BuilderGroup MatrixGroup(const char* mode, const char* cgroup) {
  BuilderGroup g;
  g.name = ModeCgroupName(mode, cgroup);
  g.title = absl::StrCat("matrix row: ", mode, " daemon, cgroup2 ", cgroup,
                         absl::string_view(cgroup) == "rw" ? " (delegated to uid 1000)" : "",
                         ", a RUN without and a RUN with a secret");
  g.cgroup = cgroup;
  g.builder_mode = mode;
  const std::string name = g.name;
  g.jobs = [name](const BuilderScenarioInputs& in,
                  const ScenarioSecrets& secrets) -> absl::StatusOr<std::vector<BuildRequest>> {
    std::vector<BuildRequest> jobs;
    for (MatrixRun run : {MatrixRun::kPlain, MatrixRun::kSecret}) {
      absl::StatusOr<BuildRequest> r = MatrixJob(in, name, run, secrets);
      if (!r.ok()) return r.status();
      jobs.push_back(*std::move(r));
    }
    return jobs;
  };
  const std::string m = mode, c = cgroup;
  g.checks = [m, c](const BuilderGroupOutcome& o, absl::string_view) {
    std::vector<ScenarioResult> out;
    const std::vector<const MatrixCell*> row = RowCells(m, c);
    for (size_t i = 0; i < row.size(); ++i) {
      const std::string n = MatrixCellName(*row[i]);
      const std::string title =
          absl::StrCat(m, ", cgroup ", c, ", ",
                       row[i]->run == MatrixRun::kSecret ? "RUN with a secret" : "RUN",
                       ": ", MatrixOutcomeName(row[i]->outcome));
      if (i >= o.evidence.size()) {
        out.push_back(Fail(n, title, absl::StrCat("the builder VM run failed after ",
                                                  o.evidence.size(), " of ", row.size(),
                                                  " jobs: ", o.run.status.ToString())));
        continue;
      }
      absl::StatusOr<std::string> seen =
          CheckMatrixCell(*row[i], o.evidence[i].response, o.secret_sha256);
      out.push_back(seen.ok() ? Pass(n, title, *seen)
                              : Fail(n, title, std::string(seen.status().message())));
    }
    return out;
  };
  for (const MatrixCell* cell : RowCells(mode, cgroup)) {
    g.scenario_names.push_back(MatrixCellName(*cell));
  }
  return g;
}

// The agent's refusal of rootless mode without a delegated subtree (agent/runner/rootless.h).
constexpr char kUndelegatedText[] = "no subtree is delegated to uid 1000";

BuilderGroup UndelegatedGroup() {
  BuilderGroup g;
  g.name = "builder-rootless-undelegated";
  g.title =
      "rootless on a rw cgroup2 that init did not delegate: the agent refuses, naming the "
      "missing delegation (the stack itself would run the steps without cgroups)";
  g.cgroup = "rw";
  g.builder_mode = kBuilderModeRootless;
  g.delegate_cgroup = false;
  g.jobs = [](const BuilderScenarioInputs& in,
              const ScenarioSecrets& secrets) -> absl::StatusOr<std::vector<BuildRequest>> {
    absl::StatusOr<BuildRequest> r =
        MatrixJob(in, "builder-rootless-undelegated", MatrixRun::kPlain, secrets);
    if (!r.ok()) return r.status();
    return std::vector<BuildRequest>{*std::move(r)};
  };
  g.checks = [title = g.title](const BuilderGroupOutcome& o, absl::string_view) {
    constexpr char kName[] = "rootless-undelegated-refused";
    if (o.evidence.size() != 1) {
      return std::vector<ScenarioResult>{
          Fail(kName, title, absl::StrCat("the builder VM run failed: ", o.run.status.ToString()))};
    }
    const MatrixCell cell{kBuilderModeRootless, "rw", MatrixRun::kPlain, MatrixOutcome::kRefused,
                          0, kUndelegatedText, ""};
    absl::StatusOr<std::string> seen = CheckMatrixCell(cell, o.evidence[0].response, "");
    return std::vector<ScenarioResult>{seen.ok() ? Pass(kName, title, *seen)
                                                 : Fail(kName, title,
                                                        std::string(seen.status().message()))};
  };
  g.scenario_names = {"rootless-undelegated-refused"};
  return g;
}

}  // namespace

// ---------------------------------------------------------------------------------------


static_assert(4 + 87 / 3 * 4 == kTokenSecretBytes, "ghp_ + base64 of 87 bytes");

ScenarioSecrets NewScenarioSecrets(absl::string_view token) {
  ScenarioSecrets s;
  // "ghp_" + base64 text, as a GitHub token looks; 87 random bytes -> 116 characters.
  s.token = token.empty() ? absl::StrCat("ghp_", absl::Base64Escape(RandomBytes(87)))
                          : std::string(token);
  s.blob = RandomBytes(kBlobSecretBytes);
  return s;
}

absl::Status ValidateBuilderScenarioInputs(const BuilderScenarioInputs& in) {
  if (absl::Status s = ValidateBuilderArtifacts(in.artifacts); !s.ok()) return s;
  const std::pair<const char*, const std::string*> paths[] = {
      {"busybox_image", &in.busybox_image},
      {"examples_dir", &in.examples_dir},
      {"work_dir", &in.work_dir}};
  for (const auto& [name, p] : paths) {
    if (p->empty()) return absl::InvalidArgumentError(absl::StrCat(name, " is empty"));
    if (access(p->c_str(), R_OK) != 0) {
      return absl::NotFoundError(absl::StrCat(name, " not readable: ", *p));
    }
  }
  return absl::OkStatus();
}

void PrintTo(const BuilderGroup& group, std::ostream* os) { *os << group.name; }

bool BuilderGroupOutcome::AllPassed() const {
  if (scenarios.empty()) return false;
  for (const ScenarioResult& s : scenarios) {
    if (!s.status.ok()) return false;
  }
  return true;
}

const std::vector<BuilderGroup>& BuilderGroups() {
  static auto* const groups = new std::vector<BuilderGroup>{
      {"builder-reference",
       "the reference build (FROM, RUN, RUN reading a secret) in a fresh builder VM",
       "rw",
       [](const BuilderScenarioInputs& in,
          const ScenarioSecrets& secrets) -> absl::StatusOr<std::vector<BuildRequest>> {
         absl::StatusOr<BuildRequest> r = ExampleJob(in, "builder-reference", "reference",
                                                     "reference", secrets, kToken, kToken);
         if (!r.ok()) return r.status();
         return std::vector<BuildRequest>{*r};
       },
       &CheckReferenceGroup,
       {"run-no-secret", "secret-default", "leak-scan"}},
      {"builder-secrets",
       "secret mount forms, redaction, refusals and a failing step, one job after another",
       "rw",
       [](const BuilderScenarioInputs& in,
          const ScenarioSecrets& secrets) -> absl::StatusOr<std::vector<BuildRequest>> {
         std::vector<BuildRequest> jobs;
         const char* kG = "builder-secrets";
         struct J {
           const char* id;
           const char* example;
           int send, name;
         };
         const J list[] = {{"modes", "secret-modes", kToken, kToken},
                           {"redaction", "secret-redaction", kToken | kBlob, kToken | kBlob},
                           {"env", "secret-env", kToken, kToken},
                           {"missing", "reference", kNone, kToken},
                           {"undeclared", "reference", kNone, kNone},
                           {"failing", "failing", kNone, kNone}};
         for (const J& j : list) {
           absl::StatusOr<BuildRequest> r = ExampleJob(in, kG, j.id, j.example, secrets,
                                                       j.send, j.name);
           if (!r.ok()) return r.status();
           jobs.push_back(*r);
         }
         return jobs;
       },
       &CheckSecretsGroup,
       {"secret-modes", "secret-redaction", "secret-env-refused", "missing-secret",
        "undeclared-secret", "failing-step"}},
  };
  static const bool matrix_added = [] {
    for (const MatrixCell& c : BuilderMatrix()) {
      if (c.run != MatrixRun::kPlain) continue;  // one group (VM) per row
      groups->push_back(MatrixGroup(c.mode, c.cgroup));
    }
    groups->push_back(UndelegatedGroup());
    return true;
  }();
  (void)matrix_added;
  return *groups;
}

BuilderGroupOutcome RunBuilderGroup(VmFactory& factory, const BuilderGroup& group,
                                    const BuilderScenarioInputs& in) {
  BuilderGroupOutcome g;
  g.name = group.name;
  const ScenarioSecrets secrets = NewScenarioSecrets(in.secret);
  g.secret_sha256 = Sha256Hex(secrets.token);
  g.blob_sha256 = Sha256Hex(secrets.blob);
  g.token_bytes = secrets.token.size();
  g.blob_bytes = secrets.blob.size();
  auto fail_all = [&](const absl::Status& s) {
    for (const std::string& n : group.scenario_names) {
      g.scenarios.push_back(Fail(n, group.title, s.ToString()));
    }
    return g;
  };
  if (absl::Status s = ValidateBuilderScenarioInputs(in); !s.ok()) {
    g.run.status = s;
    return fail_all(s);
  }
  absl::StatusOr<std::vector<BuildRequest>> jobs = group.jobs(in, secrets);
  if (!jobs.ok()) {
    g.run.status = jobs.status();
    return fail_all(jobs.status());
  }
  BuilderVmOptions o = in.vm;
  o.id = group.name;
  o.cgroup = group.cgroup;
  if (!group.builder_mode.empty()) o.builder_mode = group.builder_mode;
  o.delegate_cgroup = group.delegate_cgroup;
  g.run = RunBuilderJobs(factory, in.artifacts, o, *jobs);
  for (BuildResponse& r : g.run.jobs) {
    JobEvidence ev;
    ev.response = r;
    if (!r.image_path.empty()) {
      const std::string path = r.image_path;
      ev.image_leaks = ScanAll(secrets, [&](const std::string& v) {
        return ScanOciArchiveForSecret(path, v);
      });
    }
    ev.log_leaks = *ScanAll(secrets, [&](const std::string& v) -> absl::StatusOr<LeakReport> {
      return ScanLogsForSecret(r.logs, v);
    });
    g.evidence.push_back(std::move(ev));
  }
  g.scenarios = group.checks(g, secrets.token);
  // A guest out of memory: every failed check says so first (the run error, printed once
  // with the serial log tail, has the details).
  if (!g.run.oom.empty()) {
    for (ScenarioResult& s : g.scenarios) {
      if (s.status.ok()) continue;
      s.summary = g.run.status.ok() ? absl::StrCat(g.run.oom, "\n", s.summary)
                                    : absl::StrCat(g.run.oom, " (see the run error)");
      s.status = absl::Status(s.status.code(), s.summary);
    }
  }
  // The serial log is something the host received too: no form of a secret may be in it.
  const std::vector<agent::Log> serial = SerialLines(g.run.serial_log);
  const LeakReport serial_leaks =
      *ScanAll(secrets, [&](const std::string& v) -> absl::StatusOr<LeakReport> {
        return ScanLogsForSecret(serial, v);
      });
  if (serial_leaks.hits > 0) {
    g.scenarios.push_back(Fail("serial-log-clean", "the guest console never shows a secret",
                               absl::StrCat(serial_leaks.hits, " occurrences in the serial log: ",
                                            absl::StrJoin(serial_leaks.where, "; "))));
  }
  return g;
}

std::vector<BuilderGroupOutcome> RunAllBuilderGroups(VmFactory& factory,
                                                     const BuilderScenarioInputs& in) {
  std::vector<BuilderGroupOutcome> out;
  for (const BuilderGroup& g : BuilderGroups()) out.push_back(RunBuilderGroup(factory, g, in));
  return out;
}

void PrintBuilderGroup(const BuilderGroupOutcome& g, std::ostream& os) {
  const BuilderRun& run = g.run;
  auto ms = [](absl::Duration d) { return absl::ToInt64Milliseconds(d); };
  os << "== " << g.name << " (VM " << run.vm_id << ", attempts " << run.attempts
     << ", lockup events " << run.lockup_events
     << (run.retry_reason.empty() ? "" : ", retried after: " + run.retry_reason) << ")\n";
  for (const ScenarioResult& s : g.scenarios) {
    os << "  " << (s.status.ok() ? "PASS " : "FAIL ") << s.name << ": " << s.title << "\n      "
       << absl::StrReplaceAll(s.summary, {{"\n", "\n      "}}) << "\n";
  }
  if (!run.status.ok()) os << "  run error: " << run.status.ToString() << "\n";
  if (!run.oom.empty() && run.status.ok()) os << "  guest OOM killer: " << run.oom << "\n";
  os << absl::StrFormat(
      "  host: vmm_start->ready %d ms, vmm_start->first result %d ms (->image %d ms), "
      "last result->vm gone %d ms, total %d ms\n",
      ms(run.vmm_start_to_ready), ms(run.vmm_start_to_first_result),
      ms(run.vmm_start_to_first_image), ms(run.last_result_to_vm_gone), ms(run.total));
  os << absl::StrFormat("  guest memory %d MiB, VMM peak RSS %d MiB\n", run.memory_mib,
                        run.vmm_peak_rss_bytes >> 20);
  for (const BuildResponse& r : run.jobs) {
    os << "  job " << r.job_id << ": " << (r.refused.ok() ? "" : "refused, ")
       << "sent->result " << ms(r.send_to_result) << " ms, context " << r.context_bytes
       << " B, preload " << r.preload_bytes << " B, image " << r.image_bytes << " B, "
       << r.logs.size() << " log lines";
    if (r.log_dropped_bytes > 0) {
      os << " (" << r.log_bytes << " B received, " << r.log_dropped_bytes
         << " B dropped by the host's cap)";
    }
    if (r.result) {
      os << "; guest phases:";
      for (const agent::Phase& p : r.result->phases) os << " " << p.name << "=" << p.duration_ms;
    }
    os << "\n";
  }
  if (!run.log_dir.empty()) os << "  logs: " << run.log_dir << "\n";
}

// ---------------------------------------------------------------------------------------
// The matrix

const std::vector<MatrixCell>& BuilderMatrix() {
  // Measured on the Debian 13 disk (ROOTLESS.md; the agent's own refusals for rootless ro).
  static const auto* cells = new std::vector<MatrixCell>{
      {kBuilderModeRootless, "rw", MatrixRun::kPlain, MatrixOutcome::kBuilt, 0, "",
       "1000 1000 1000 1000"},
      {kBuilderModeRootless, "rw", MatrixRun::kSecret, MatrixOutcome::kBuilt, 0, "",
       "1000 1000 1000 1000"},
      {kBuilderModeRootless, "ro", MatrixRun::kPlain, MatrixOutcome::kRefused, 0,
       "read-only cgroup2", ""},
      {kBuilderModeRootless, "ro", MatrixRun::kSecret, MatrixOutcome::kRefused, 0,
       "read-only cgroup2", ""},
      {kBuilderModeRootless, "off", MatrixRun::kPlain, MatrixOutcome::kStepFailed, 1,
       "runc run failed: no cgroup mount found in mountinfo", ""},
      {kBuilderModeRootless, "off", MatrixRun::kSecret, MatrixOutcome::kStepFailed, 1,
       "runc run failed: no cgroup mount found in mountinfo", ""},
      {kBuilderModeRootful, "rw", MatrixRun::kPlain, MatrixOutcome::kBuilt, 0, "", "0 0 0 0"},
      {kBuilderModeRootful, "rw", MatrixRun::kSecret, MatrixOutcome::kBuilt, 0, "", "0 0 0 0"},
      {kBuilderModeRootful, "ro", MatrixRun::kPlain, MatrixOutcome::kStepFailed, 1,
       "mkdir /sys/fs/cgroup/docker: read-only file system", ""},
      {kBuilderModeRootful, "ro", MatrixRun::kSecret, MatrixOutcome::kStepFailed, 1,
       "mkdir /sys/fs/cgroup/docker: read-only file system", ""},
      {kBuilderModeRootful, "off", MatrixRun::kPlain, MatrixOutcome::kDaemonFailed, 1,
       "failed to start daemon: Devices cgroup isn't mounted", ""},
      {kBuilderModeRootful, "off", MatrixRun::kSecret, MatrixOutcome::kDaemonFailed, 1,
       "failed to start daemon: Devices cgroup isn't mounted", ""},
  };
  return *cells;
}

std::string MatrixCellName(const MatrixCell& cell) {
  return absl::StrCat(cell.mode, "-", cell.cgroup, "-run",
                      cell.run == MatrixRun::kSecret ? "-secret" : "");
}

const char* MatrixOutcomeName(MatrixOutcome outcome) {
  switch (outcome) {
    case MatrixOutcome::kBuilt:
      return "built";
    case MatrixOutcome::kStepFailed:
      return "step fails";
    case MatrixOutcome::kDaemonFailed:
      return "daemon fails";
    case MatrixOutcome::kRefused:
      return "refused";
  }
  return "?";
}

absl::StatusOr<StepUidLine> FindStepUidLine(absl::string_view log) {
  constexpr absl::string_view kPrefix = "kiln: RUN step process ";
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    const size_t at = line.find(kPrefix);
    if (at == absl::string_view::npos) continue;
    absl::string_view rest = line.substr(at + kPrefix.size());
    const size_t open = rest.find(" (");
    const size_t close = rest.find("): Uid ");
    const size_t in = rest.find(" in cgroup ");
    if (open == absl::string_view::npos || close == absl::string_view::npos ||
        in == absl::string_view::npos || !(open < close && close < in)) {
      continue;
    }
    StepUidLine l;
    l.comm = std::string(rest.substr(open + 2, close - open - 2));
    l.uids = std::string(rest.substr(close + 7, in - close - 7));
    l.cgroup = std::string(absl::StripAsciiWhitespace(rest.substr(in + 11)));
    return l;
  }
  return absl::NotFoundError("no \"kiln: RUN step process ... Uid ...\" line in the log");
}

absl::StatusOr<std::string> CheckMatrixCell(const MatrixCell& cell, const BuildResponse& r,
                                            absl::string_view secret_sha256) {
  const std::string expected =
      cell.outcome == MatrixOutcome::kBuilt
          ? absl::StrCat("exit 0 with an image and the step's Uid ", cell.step_uid)
          : cell.outcome == MatrixOutcome::kRefused
                ? absl::StrCat("a FailedPrecondition refusal naming \"", cell.text, "\"")
                : absl::StrCat("exit ", cell.exit_status,
                               cell.outcome == MatrixOutcome::kDaemonFailed
                                   ? " before any build step (daemon failed)"
                                   : " after the build started",
                               " with \"", cell.text, "\"");
  auto fail = [&](absl::string_view why) {
    return absl::FailedPreconditionError(absl::StrCat(
        "expected ", expected, ", got ", Describe(r), why.empty() ? "" : " (", why,
        why.empty() ? "" : ")", "\nlog tail:\n", LogTailText(r, 12)));
  };
  const std::string all = r.result ? absl::StrCat(r.result->error, "\n", r.LogText())
                                   : r.LogText();
  switch (cell.outcome) {
    case MatrixOutcome::kRefused:
      if (r.refused.code() != absl::StatusCode::kFailedPrecondition || r.result ||
          !absl::StrContains(r.refused.message(), cell.text)) {
        return fail("");
      }
      return absl::StrCat("refused: ", r.refused.message().substr(0, 160));
    case MatrixOutcome::kStepFailed:
    case MatrixOutcome::kDaemonFailed: {
      if (!r.refused.ok() || !r.result || r.result->exit_status != cell.exit_status) {
        return fail("");
      }
      const bool build_ran = r.PhaseMs("build") > 0;
      if (build_ran != (cell.outcome == MatrixOutcome::kStepFailed)) {
        return fail(build_ran ? "the build ran" : "the build never ran");
      }
      const absl::string_view where =
          cell.outcome == MatrixOutcome::kDaemonFailed ? absl::string_view(r.result->error)
                                                       : absl::string_view(all);
      if (!absl::StrContains(where, cell.text)) return fail("text not found");
      return absl::StrCat("exit ", r.result->exit_status, ": ", cell.text);
    }
    case MatrixOutcome::kBuilt: {
      if (!Succeeded(r)) return fail("");
      absl::StatusOr<StepUidLine> uid = FindStepUidLine(all);
      if (!uid.ok()) return fail(uid.status().message());
      if (uid->uids != cell.step_uid) {
        return fail(absl::StrCat("the step's process ", uid->comm, " has Uid ", uid->uids));
      }
      std::string seen = absl::StrCat("exit 0, step ", uid->comm, " Uid ", uid->uids,
                                      " in ", uid->cgroup);
      if (cell.run == MatrixRun::kSecret) {
        if (secret_sha256.empty() || !absl::StrContains(all, secret_sha256)) {
          return fail("the secret's sha256 is not in the log: the step did not read it");
        }
        for (const char* p : kMatrixGuestPaths) {
          if (!absl::StrContains(all, absl::StrCat("kiln-guest-path-absent ", p, "\n"))) {
            return fail(absl::StrCat("the step saw the guest path ", p,
                                     " (or did not report on it)"));
          }
        }
        if (!absl::StrContains(all, kOnlyOwnSecretFile)) {
          return fail(absl::StrCat("expected \"", kOnlyOwnSecretFile,
                                   "\": the step found another file named build_token"));
        }
        absl::StrAppend(&seen, "; secret read through its mount only (",
                        std::size(kMatrixGuestPaths), " guest paths absent)");
      }
      return seen;
    }
  }
  return fail("unknown outcome");
}

std::vector<MatrixCellResult> MatrixResults(const std::vector<BuilderGroupOutcome>& groups) {
  std::vector<MatrixCellResult> out;
  for (const MatrixCell& cell : BuilderMatrix()) {
    const std::string group = ModeCgroupName(cell.mode, cell.cgroup);
    const std::string name = MatrixCellName(cell);
    for (const BuilderGroupOutcome& g : groups) {
      if (g.name != group) continue;
      MatrixCellResult m{cell, absl::UnknownError("not checked"), "not checked", -1};
      for (const ScenarioResult& s : g.scenarios) {
        if (s.name != name) continue;
        m.status = s.status;
        m.observed = s.summary;
      }
      const size_t job = cell.run == MatrixRun::kSecret ? 1 : 0;
      if (job < g.run.jobs.size()) m.ms = absl::ToInt64Milliseconds(g.run.jobs[job].send_to_result);
      out.push_back(std::move(m));
    }
  }
  return out;
}

std::string FormatBuilderMatrix(const std::vector<MatrixCellResult>& results) {
  std::string t = absl::StrFormat("  %-9s %-7s %-15s %-5s %9s  %s\n", "mode", "cgroup", "RUN",
                                  "", "job ms", "outcome");
  for (const MatrixCellResult& m : results) {
    std::string seen(m.observed.substr(0, m.observed.find('\n')));
    if (seen.size() > 150) seen = seen.substr(0, 147) + "...";
    absl::StrAppend(
        &t, absl::StrFormat("  %-9s %-7s %-15s %-5s %9s  %s\n", m.cell.mode,
                            absl::StrCat(m.cell.cgroup,
                                         absl::string_view(m.cell.cgroup) == "rw" ? "+d" : ""),
                            m.cell.run == MatrixRun::kSecret ? "with secret" : "no secret",
                            m.status.ok() ? "PASS" : "FAIL",
                            m.ms < 0 ? std::string("-") : absl::StrCat(m.ms), seen));
  }
  absl::StrAppend(&t, "  (rw+d: cgroup2 rw, subtree delegated to uid 1000; job ms: host, job "
                      "sent -> result)\n");
  return t;
}

}  // namespace kiln::harness
