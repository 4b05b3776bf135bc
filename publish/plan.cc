#include "publish/plan.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kiln::publish {

using json = nlohmann::json;

absl::StatusOr<VersionLock> VersionLock::Parse(absl::string_view text) {
  VersionLock lock;
  bool blank = true;
  for (char c : text) blank = blank && (c == ' ' || c == '\n' || c == '\t' || c == '\r');
  if (blank) return lock;
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (!j.is_object()) return absl::InvalidArgumentError("lock file: not a JSON object");
  if (j.value("schema", 0) != 1)
    return absl::InvalidArgumentError("lock file: \"schema\" must be 1");
  if (!j.contains("versions")) return lock;
  if (!j["versions"].is_object())
    return absl::InvalidArgumentError("lock file: \"versions\" must be an object");
  for (auto& [k, v] : j["versions"].items()) {
    auto sv = SemVer::Parse(k);
    if (!sv.ok())
      return absl::InvalidArgumentError(absl::StrCat("lock file: key: ", sv.status().message()));
    if (sv->ToString() != k)
      return absl::InvalidArgumentError(absl::StrCat("lock file: key \"", k, "\" not canonical"));
    if (!v.is_object() || !v.contains("digest") || !v["digest"].is_string())
      return absl::InvalidArgumentError(
          absl::StrCat("lock file: versions[\"", k, "\"] needs a string \"digest\""));
    Entry e;
    e.digest = v["digest"].get<std::string>();
    if (absl::Status s = ValidateDigest(e.digest); !s.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("lock file: versions[\"", k, "\"]: ", s.message()));
    if (v.contains("targets")) {
      if (!v["targets"].is_array())
        return absl::InvalidArgumentError(
            absl::StrCat("lock file: versions[\"", k, "\"].targets must be an array"));
      for (auto& t : v["targets"])
        if (t.is_string()) e.targets.insert(t.get<std::string>());
    }
    lock.versions[k] = std::move(e);
  }
  return lock;
}

std::string VersionLock::Serialize() const {
  json j = json::object();
  j["schema"] = 1;
  j["versions"] = json::object();
  for (const auto& [k, e] : versions) {
    j["versions"][k] = {{"digest", e.digest}, {"targets", e.targets}};
  }
  return j.dump(2) + "\n";
}

std::optional<SemVer> VersionLock::Newest() const {
  std::optional<SemVer> best;
  for (const auto& [k, e] : versions) {
    auto v = SemVer::Parse(k);
    if (v.ok() && (!best || *v > *best)) best = *v;
  }
  return best;
}

TagDecision DecideTags(const TagRequest& req, const VersionLock& lock, absl::string_view target,
                       const std::map<std::string, std::string>& existing) {
  TagDecision d;
  const std::string version = req.version.ToString();
  const std::string tag = req.version.Tag();  // the version's tag ("+" -> "_")
  const std::string as_tag = tag == version ? "" : absl::StrCat(" (tag ", tag, ")");
  auto refuse = [&](absl::Status s) {
    d.refused = true;
    d.status = std::move(s);
    d.note = std::string(d.status.message());
    return d;
  };
  auto tag_it = existing.find(tag);
  if (tag_it != existing.end() && tag_it->second != req.digest) {
    return refuse(absl::AlreadyExistsError(absl::StrCat(
        "version ", version, as_tag, " already points to ", tag_it->second, " in ", target,
        "; this image is ", req.digest, ". Versions are immutable: publish a new version")));
  }
  auto lock_it = lock.versions.find(version);
  if (lock_it != lock.versions.end() && lock_it->second.digest != req.digest) {
    return refuse(absl::AlreadyExistsError(absl::StrCat(
        "version ", version, " is locked to ", lock_it->second.digest,
        " in the lock file; this image is ", req.digest,
        ". Versions are immutable: publish a new version")));
  }
  std::vector<std::string> moving;
  if (req.move_minor) moving.push_back(req.version.MinorTag());
  if (req.move_latest) moving.push_back(std::string(kLatestTag));

  if (tag_it != existing.end()) {  // same digest: already published here
    for (const std::string& t : moving) {
      auto e = existing.find(t);
      if (e == existing.end() || e->second != req.digest) d.tags.push_back(t);
    }
    d.noop = d.tags.empty();
    d.record_in_lock = true;  // harmless if already recorded; records a missing target
    d.note = d.noop ? absl::StrCat("version ", version, " already points to ", req.digest,
                                   ": nothing to do")
                    : absl::StrCat("version ", version, " already published; moving ",
                                   absl::StrJoin(d.tags, ", "));
    return d;
  }

  const bool mirror = lock_it != lock.versions.end();  // same digest recorded: a re-push
  if (!mirror) {
    std::optional<SemVer> newest = lock.Newest();
    std::string newest_where = "the lock file";
    for (const auto& [existing_tag, digest] : existing) {
      auto v = SemVer::ParseTag(existing_tag);
      if (v.ok() && (!newest || *v > *newest)) {
        newest = *v;
        newest_where = std::string(target);
      }
    }
    if (newest && req.version <= *newest && !req.force) {
      return refuse(absl::FailedPreconditionError(absl::StrCat(
          "version ", version, " is not newer than ", newest->ToString(), ", the newest in ",
          newest_where, "; publish a higher version or pass --force")));
    }
  }
  d.push_image = true;
  d.record_in_lock = true;
  d.tags.push_back(tag);
  for (const std::string& t : moving) d.tags.push_back(t);
  d.note = absl::StrCat("publishing ", version, " as ", req.digest, " (tags: ",
                        absl::StrJoin(d.tags, ", "), ")");
  return d;
}

BlobPlan PlanBlobs(const std::vector<Descriptor>& blobs, const std::set<std::string>& present,
                   const std::vector<std::string>& mount_sources) {
  BlobPlan plan;
  std::set<std::string> seen;
  for (const Descriptor& b : blobs) {
    if (!seen.insert(b.digest).second) continue;
    BlobStep step{b, BlobAction::kUpload, ""};
    if (present.count(b.digest)) {
      step.action = BlobAction::kSkip;
      plan.bytes_skipped += b.size;
    } else {
      if (!mount_sources.empty()) {
        step.action = BlobAction::kMount;
        step.mount_from = mount_sources.front();
      }
      plan.bytes_to_send += b.size;
    }
    plan.steps.push_back(std::move(step));
  }
  return plan;
}

}  // namespace kiln::publish
