// File: harness/builder/builder_scenarios.cc
#include "harness/builder/builder_scenarios.h"

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
absl::StatusOr<LeakReport> ScanAll(const GroupSecrets& secrets, Scan scan) {
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
                                        const GroupSecrets& secrets, int send, int name) {
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

}  // namespace

// ---------------------------------------------------------------------------------------


static_assert(4 + 87 / 3 * 4 == kTokenSecretBytes, "ghp_ + base64 of 87 bytes");

GroupSecrets NewScenarioSecrets(absl::string_view token) {
  GroupSecrets s;
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
          const GroupSecrets& secrets) -> absl::StatusOr<std::vector<BuildRequest>> {
         absl::StatusOr<BuildRequest> r = ExampleJob(in, "builder-reference", "reference",
                                                     "reference", secrets, kToken, kToken);
         if (!r.ok()) return r.status();
         return std::vector<BuildRequest>{*r};
       },
       &CheckReferenceGroup,
       {"run-no-secret", "secret-default", "leak-scan"}},
  };
  return *groups;
}

BuilderGroupOutcome RunBuilderGroup(VmFactory& factory, const BuilderGroup& group,
                                    const BuilderScenarioInputs& in) {
  BuilderGroupOutcome g;
  g.name = group.name;
  const GroupSecrets secrets = NewScenarioSecrets(in.secret);
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

}  // namespace kiln::harness
