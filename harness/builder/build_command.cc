// File: harness/builder/build_command.cc
#include "harness/builder/build_command.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "agent/runner/context_tar.h"
#include "agent/runner/spec.h"
#include "agent/ustar.h"
#include "harness/builder/dockerignore.h"
#include "harness/builder/leak_scan.h"
#include "agent/process/process.h"
#include "images/oci/image.h"
#include "nlohmann/json.hpp"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::harness {

const char kBuildExitCodesHelp[] =
    "Exit status:\n"
    "  0  built, and the leak scan found no secret (\"clean\")\n"
    "  1  the build failed (a step failed, or the builder refused the job before BuildKit ran)\n"
    "  2  usage or input error: nothing was booted (missing context or Dockerfile, unreadable\n"
    "     or oversized secret, duplicate secret id, bad .dockerignore pattern, context path\n"
    "     escaping the context, FROM of an image that was not preloaded, bad --warm, ...)\n"
    "  3  built (or failed) but a secret was found in the image (layer entry, config, history)\n"
    "     or in a log the host received\n"
    "  4  the VM or VMM failed (after the one retry of a stuck guest)\n";

namespace {

using agent::runner::DockerfileInfo;
using agent::runner::FromInstruction;

// Fields(value): "k=v,k2=v2" -> ordered (lowercase key, value); a field without '=' has "".
std::vector<std::pair<std::string, std::string>> Fields(absl::string_view value) {
  std::vector<std::pair<std::string, std::string>> out;
  for (absl::string_view f : absl::StrSplit(value, ',', absl::SkipEmpty())) {
    const size_t eq = f.find('=');
    out.emplace_back(absl::AsciiStrToLower(absl::StripAsciiWhitespace(f.substr(0, eq))),
                     eq == absl::string_view::npos ? "" : std::string(f.substr(eq + 1)));
  }
  return out;
}

bool ValidArgKey(absl::string_view k) {
  if (k.empty() || k.size() > 256) return false;
  if (!(absl::ascii_isalpha(k[0]) || k[0] == '_')) return false;
  return std::all_of(k.begin(), k.end(), [](char c) { return absl::ascii_isalnum(c) || c == '_'; });
}

std::string Basename(absl::string_view path) {
  path = absl::StripSuffix(path, "/");
  const size_t slash = path.rfind('/');
  return std::string(slash == absl::string_view::npos ? path : path.substr(slash + 1));
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, int64_t max_bytes,
                                          absl::string_view what) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return PosixError(errno, std::string(what), path);
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", path, " is not a regular file"));
  }
  if (st.st_size > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(what, " ", path, " is ", st.st_size,
                                                     " bytes (limit ", max_bytes, ")"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return PosixError(errno == 0 ? EACCES : errno, std::string(what), path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return PosixError(errno == 0 ? EIO : errno, std::string(what), path);
  return ss.str();
}

std::string Absolute(const std::string& path) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) != nullptr) return buf;
  return path;
}

// Refs of a docker-archive's manifest.json / an OCI index.json.
absl::StatusOr<std::vector<std::string>> RefsFromJson(absl::string_view name,
                                                      const std::string& body,
                                                      const std::string& path) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::DataLossError(absl::StrCat(path, ": ", name, " is not valid JSON"));
  }
  std::vector<std::string> refs;
  if (name == "manifest.json") {
    if (!j.is_array()) return absl::DataLossError(absl::StrCat(path, ": manifest.json is not an array"));
    for (const auto& m : j) {
      if (!m.is_object() || !m.contains("RepoTags") || !m["RepoTags"].is_array()) continue;
      for (const auto& t : m["RepoTags"]) {
        if (t.is_string()) refs.push_back(t.get<std::string>());
      }
    }
    return refs;
  }
  if (!j.is_object() || !j.contains("manifests") || !j["manifests"].is_array()) {
    return absl::DataLossError(absl::StrCat(path, ": index.json has no manifests array"));
  }
  for (const auto& m : j["manifests"]) {
    if (!m.is_object() || !m.contains("annotations") || !m["annotations"].is_object()) continue;
    const auto& a = m["annotations"];
    if (a.contains("io.containerd.image.name") && a["io.containerd.image.name"].is_string()) {
      refs.push_back(a["io.containerd.image.name"].get<std::string>());
    } else if (a.contains(std::string(oci::kAnnotationRefName)) &&
               a[std::string(oci::kAnnotationRefName)].is_string()) {
      const std::string r = a[std::string(oci::kAnnotationRefName)].get<std::string>();
      if (absl::StrContains(r, ":") || absl::StrContains(r, "/")) refs.push_back(r);
    }
  }
  return refs;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Flag values

absl::StatusOr<SecretSource> ParseSecretFlag(absl::string_view value) {
  SecretSource s;
  std::string type, src, env;
  for (const auto& [k, v] : Fields(value)) {
    if (k == "id") {
      s.id = v;
    } else if (k == "src" || k == "source") {
      src = v;
    } else if (k == "env") {
      env = v;
    } else if (k == "type") {
      type = absl::AsciiStrToLower(v);
      if (type != "file" && type != "env") {
        return absl::InvalidArgumentError(
            absl::StrCat("--secret ", value, ": type=", v, " (want file or env)"));
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "--secret ", value, ": unknown key \"", k, "\" (want id=, src=, env=, type=)"));
    }
  }
  if (!src.empty() && !env.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--secret ", value, ": give either src= or env=, not both"));
  }
  if (type == "env" && env.empty()) std::swap(src, env);
  if (!env.empty()) {
    s.kind = SecretSource::Kind::kEnv;
    s.src = env;
    if (!ValidArgKey(env)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--secret ", value, ": env=", env, " is not a variable name"));
    }
  } else if (!src.empty()) {
    s.kind = SecretSource::Kind::kFile;
    s.src = src;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "--secret ", value, ": no source: want id=ID,src=FILE or id=ID,env=VARIABLE"));
  }
  if (s.id.empty()) s.id = s.kind == SecretSource::Kind::kFile ? Basename(s.src) : s.src;
  if (absl::Status st = agent::runner::ValidateSecretId(s.id); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--secret ", value, ": ", st.message()));
  }
  return s;
}

EnvLookup SystemEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

absl::StatusOr<std::optional<agent::BuildArg>> ParseBuildArgFlag(absl::string_view value,
                                                                 const EnvLookup& env) {
  const size_t eq = value.find('=');
  const std::string key(value.substr(0, eq));
  if (!ValidArgKey(key)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--build-arg ", value, ": \"", key, "\" is not an argument name ([A-Za-z_][A-Za-z0-9_]*)"));
  }
  if (eq != absl::string_view::npos) {
    return std::optional<agent::BuildArg>(agent::BuildArg{key, std::string(value.substr(eq + 1))});
  }
  std::optional<std::string> v = env(key);
  if (!v) return std::optional<agent::BuildArg>();
  return std::optional<agent::BuildArg>(agent::BuildArg{key, *v});
}

absl::StatusOr<OutputSpec> ParseOutputFlag(absl::string_view value) {
  OutputSpec o;
  std::string type;
  for (const auto& [k, v] : Fields(value)) {
    if (k == "type") {
      type = absl::AsciiStrToLower(v);
    } else if (k == "dest" || k == "output") {
      o.dest = v;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--output ", value, ": unknown key \"", k, "\" (want type=, dest=)"));
    }
  }
  if (type == "oci") {
    o.kind = OutputSpec::Kind::kOci;
    if (o.dest.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--output ", value, ": type=oci needs dest=FILE"));
    }
  } else if (type == "docker") {
    o.kind = OutputSpec::Kind::kDocker;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "--output ", value, ": type \"", type,
        "\" is not offered (want type=oci,dest=FILE or type=docker[,dest=FILE]; the builder VM "
        "has no registry)"));
  }
  return o;
}

std::string NormalizeImageRef(absl::string_view ref) {
  std::string r(ref);
  for (absl::string_view prefix : {"docker.io/library/", "index.docker.io/library/",
                                   "docker.io/", "index.docker.io/"}) {
    if (absl::StartsWith(r, prefix)) {
      r = r.substr(prefix.size());
      break;
    }
  }
  if (absl::StartsWith(r, "library/") && std::count(r.begin(), r.end(), '/') == 1) {
    r = r.substr(std::string("library/").size());
  }
  if (absl::StrContains(r, "@")) return r;
  const size_t slash = r.rfind('/');
  const size_t colon = r.rfind(':');
  if (colon == std::string::npos || (slash != std::string::npos && colon < slash)) {
    absl::StrAppend(&r, ":latest");
  }
  return r;
}

absl::StatusOr<std::string> ExpandFromImage(absl::string_view image,
                                            const std::map<std::string, std::string>& args) {
  auto lookup = [&](const std::string& n) -> std::optional<std::string> {
    auto it = args.find(n);
    if (it == args.end()) return std::nullopt;
    return it->second;
  };
  std::string out;
  size_t i = 0;
  while (i < image.size()) {
    const char c = image[i];
    if (c != '$') {
      out.push_back(c);
      ++i;
      continue;
    }
    if (i + 1 < image.size() && image[i + 1] == '{') {
      const size_t close = image.find('}', i + 2);
      if (close == absl::string_view::npos) {
        return absl::InvalidArgumentError(absl::StrCat("unterminated ${ in \"", image, "\""));
      }
      absl::string_view body = image.substr(i + 2, close - i - 2);
      size_t op = 0;
      while (op < body.size() && (absl::ascii_isalnum(body[op]) || body[op] == '_')) ++op;
      const std::string name(body.substr(0, op));
      std::optional<std::string> v = lookup(name);
      if (op == body.size()) {
        out += v.value_or("");
      } else if (absl::StartsWith(body.substr(op), ":-")) {
        out += (v && !v->empty()) ? *v : std::string(body.substr(op + 2));
      } else if (absl::StartsWith(body.substr(op), ":+")) {
        out += (v && !v->empty()) ? std::string(body.substr(op + 2)) : "";
      } else {
        return absl::UnimplementedError(absl::StrCat("cannot expand \"${", body, "}\""));
      }
      i = close + 1;
      continue;
    }
    size_t j = i + 1;
    while (j < image.size() && (absl::ascii_isalnum(image[j]) || image[j] == '_')) ++j;
    if (j == i + 1) {
      out.push_back('$');
      ++i;
      continue;
    }
    out += lookup(std::string(image.substr(i + 1, j - i - 1))).value_or("");
    i = j;
  }
  return out;
}

absl::Status CheckBasesPreloaded(const DockerfileInfo& info,
                                 const std::vector<agent::BuildArg>& build_args,
                                 const std::vector<std::string>& preloaded,
                                 absl::string_view target) {
  std::map<std::string, std::string> args = info.global_args;
  for (const agent::BuildArg& a : build_args) {
    if (args.count(a.key) != 0) args[a.key] = a.value;  // only declared ARGs reach a FROM
  }
  std::set<std::string> have;
  for (const std::string& r : preloaded) have.insert(NormalizeImageRef(r));
  std::set<std::string> stages;
  const std::string want_target = absl::AsciiStrToLower(target);
  for (const FromInstruction& f : info.froms) {
    absl::StatusOr<std::string> image = ExpandFromImage(f.image, args);
    if (image.ok()) {
      const std::string lower = absl::AsciiStrToLower(*image);
      if (lower != "scratch" && stages.count(lower) == 0 &&
          have.count(NormalizeImageRef(*image)) == 0) {
        std::vector<std::string> list(have.begin(), have.end());
        return absl::FailedPreconditionError(absl::StrCat(
            "Dockerfile line ", f.line, ": FROM ", f.image,
            *image == f.image ? "" : absl::StrCat(" (", *image, ")"),
            " is not preloaded: the builder VM has no network. Save it where it exists "
            "(docker save ", *image, " -o FILE) and pass --preload FILE (preloaded: ",
            list.empty() ? "none" : absl::StrJoin(list, ", "), ")"));
      }
    }
    if (!f.stage.empty()) stages.insert(f.stage);
    if (!want_target.empty() && f.stage == want_target) break;  // later stages never build
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ArchiveImageRefs(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return PosixError(errno, "--preload", path);
  std::vector<std::string> refs;
  if (S_ISDIR(st.st_mode)) {
    const std::string index = path + "/index.json";
    if (access((path + "/oci-layout").c_str(), R_OK) != 0 || access(index.c_str(), R_OK) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--preload ", path, ": a directory must be an OCI image layout (oci-layout, index.json)"));
    }
    ASSIGN_OR_RETURN(std::string body, ReadSmallFile(index, 16 << 20, "--preload index.json"));
    ASSIGN_OR_RETURN(refs, RefsFromJson("index.json", body, path));
  } else {
    archive* a = archive_read_new();
    archive_read_support_format_tar(a);
    archive_read_support_filter_all(a);
    if (archive_read_open_filename(a, path.c_str(), 1 << 16) != ARCHIVE_OK) {
      std::string e = archive_error_string(a) ? archive_error_string(a) : "unreadable";
      archive_read_free(a);
      return absl::InvalidArgumentError(absl::StrCat("--preload ", path, ": not a tar: ", e));
    }
    std::map<std::string, std::string> json;  // manifest.json / index.json / oci-layout
    archive_entry* e;
    int r;
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
      std::string name = archive_entry_pathname(e);
      if (absl::StartsWith(name, "./")) name = name.substr(2);
      if (name != "manifest.json" && name != "index.json" && name != "oci-layout") continue;
      if (archive_entry_size(e) > (16 << 20)) continue;
      std::string body(static_cast<size_t>(archive_entry_size(e)), '\0');
      if (archive_read_data(a, body.data(), body.size()) != static_cast<la_ssize_t>(body.size())) {
        archive_read_free(a);
        return absl::DataLossError(absl::StrCat("--preload ", path, ": cannot read ", name));
      }
      json[name] = std::move(body);
    }
    const bool bad = r != ARCHIVE_EOF;
    std::string err = bad && archive_error_string(a) ? archive_error_string(a) : "";
    archive_read_free(a);
    if (bad && json.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--preload ", path, ": not a tar: ", err));
    }
    if (json.count("manifest.json")) {
      ASSIGN_OR_RETURN(refs, RefsFromJson("manifest.json", json["manifest.json"], path));
    } else if (json.count("index.json") && json.count("oci-layout")) {
      ASSIGN_OR_RETURN(refs, RefsFromJson("index.json", json["index.json"], path));
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "--preload ", path, ": neither a docker-archive (manifest.json, docker save) nor an "
          "OCI archive/layout (oci-layout + index.json)"));
    }
  }
  if (refs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--preload ", path, ": names no image (docker-archive: RepoTags; OCI: an "
        "io.containerd.image.name or full org.opencontainers.image.ref.name annotation); a FROM "
        "could not use it"));
  }
  return refs;
}

namespace {

// ContextWalk: ListContext's recursive walk over one directory.
struct ContextWalk {
  const std::string& dir;
  const Dockerignore& ignore;
  const std::set<std::string>& keep;  // always sent
  std::map<std::string, std::string>* links;  // sent symlinks: relative path -> target

  // Walk(rel, out, excluded): appends what is sent below `rel` ("" = the root).
  absl::Status Walk(const std::string& rel, std::vector<ContextListing::Entry>* out,
                    int* excluded) {
    const std::string path = rel.empty() ? dir : absl::StrCat(dir, "/", rel);
    DIR* d = opendir(path.c_str());
    if (d == nullptr) return PosixError(errno, "read context directory", path);
    std::vector<std::string> names;
    while (dirent* e = readdir(d)) {
      if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) names.push_back(e->d_name);
    }
    closedir(d);
    std::sort(names.begin(), names.end());
    for (const std::string& n : names) {
      const std::string r = rel.empty() ? n : absl::StrCat(rel, "/", n);
      const std::string full = absl::StrCat(dir, "/", r);
      const bool kept = keep.count(r) != 0;
      const bool is_excluded = !kept && ignore.Excluded(r);
      struct stat est;
      if (lstat(full.c_str(), &est) != 0) {
        if (is_excluded) {
          ++*excluded;
          continue;
        }
        return PosixError(errno, "stat", full);
      }
      if (is_excluded) {
        // An excluded directory is still looked into when an exception or a kept file may
        // re-include something below it (BuildKit does the same); else it is skipped whole.
        bool look_inside = S_ISDIR(est.st_mode) && ignore.HasExceptions();
        for (const std::string& k : keep) look_inside = look_inside || absl::StartsWith(k, r + "/");
        if (!S_ISDIR(est.st_mode) || !look_inside) {
          ++*excluded;
          continue;
        }
        std::vector<ContextListing::Entry> below;
        int below_excluded = 0;
        absl::Status s = Walk(r, &below, &below_excluded);
        if (!s.ok() || below.empty()) {  // nothing below is sent: the directory counts once
          ++*excluded;
          continue;
        }
        out->push_back({r, ContextListing::Entry::Kind::kDir});
        out->insert(out->end(), below.begin(), below.end());
        *excluded += below_excluded;
        continue;
      }
      if (r.size() > 99) {
        return absl::InvalidArgumentError(absl::StrCat(
            "context entry name too long (", r.size(), " bytes; the context tar holds 99): ", r,
            " (leave it out with .dockerignore)"));
      }
      if (S_ISDIR(est.st_mode)) {
        out->push_back({r, ContextListing::Entry::Kind::kDir});
        RETURN_IF_ERROR(Walk(r, out, excluded));
      } else if (S_ISLNK(est.st_mode)) {
        char buf[PATH_MAX];
        const ssize_t len = readlink(full.c_str(), buf, sizeof(buf) - 1);
        if (len < 0) return PosixError(errno, "readlink", full);
        (*links)[r] = std::string(buf, static_cast<size_t>(len));
        out->push_back({r, ContextListing::Entry::Kind::kSymlink});
      } else if (S_ISREG(est.st_mode)) {
        out->push_back({r, ContextListing::Entry::Kind::kFile});
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "context entry ", r, " is not a file, directory or symlink (a device, FIFO or "
            "socket cannot be sent; leave it out with .dockerignore)"));
      }
    }
    return absl::OkStatus();
  }
};

}  // namespace

absl::StatusOr<ContextListing> ListContext(const std::string& dir,
                                           const std::string& dockerfile_path) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return PosixError(errno, "context", dir);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("context ", dir, " is not a directory"));
  }
  ContextListing listing;
  Dockerignore ignore;
  const std::string ignore_path = absl::StrCat(dir, "/.dockerignore");
  if (lstat(ignore_path.c_str(), &st) == 0) {
    listing.has_dockerignore = true;
    ASSIGN_OR_RETURN(std::string text, ReadSmallFile(ignore_path, 1 << 20, ".dockerignore"));
    absl::StatusOr<Dockerignore> parsed = ParseDockerignore(text);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(  // "CONTEXT/.dockerignore line N: ..."
          absl::StrCat(ignore_path, absl::StripPrefix(parsed.status().message(), ".dockerignore")));
    }
    ignore = *std::move(parsed);
    listing.patterns = static_cast<int>(ignore.patterns().size());
  }
  std::set<std::string> keep = {".dockerignore"};
  const std::string root = absl::StrCat(absl::StripSuffix(Absolute(dir), "/"), "/");
  const std::string df = dockerfile_path.empty() ? "" : Absolute(dockerfile_path);
  if (absl::StartsWith(df, root)) keep.insert(CleanSlashPath(df.substr(root.size())));
  std::map<std::string, std::string> links;
  ContextWalk walk{dir, ignore, keep, &links};
  RETURN_IF_ERROR(walk.Walk("", &listing.entries, &listing.excluded));
  for (const auto& [path, target] : links) {
    if (absl::StartsWith(target, "/")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "context path ", path, " -> ", target, " is an absolute symlink: it would escape the "
          "context (the builder refuses it); make it relative and inside the context"));
    }
    int64_t steps = 1 << 20;
    absl::StatusOr<std::string> resolved = agent::runner::ResolveInArchive(path, links, &steps);
    if (!resolved.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("context path ", path, " -> ", target,
                                                     " escapes the context: ",
                                                     resolved.status().message()));
    }
  }
  return listing;
}

absl::StatusOr<uint64_t> WriteContextTar(const std::string& dir, const ContextListing& listing,
                                         const std::string& out_path) {
  agent::UstarWriter w;
  RETURN_IF_ERROR(w.Open(out_path));
  for (const ContextListing::Entry& e : listing.entries) {
    const std::string full = absl::StrCat(dir, "/", e.path);
    switch (e.kind) {
      case ContextListing::Entry::Kind::kDir:
        RETURN_IF_ERROR(w.Dir(e.path + "/"));
        break;
      case ContextListing::Entry::Kind::kSymlink: {
        char buf[PATH_MAX];
        const ssize_t n = readlink(full.c_str(), buf, sizeof(buf) - 1);
        if (n < 0) return PosixError(errno, "readlink", full);
        RETURN_IF_ERROR(w.Symlink(e.path, std::string(buf, static_cast<size_t>(n))));
        break;
      }
      case ContextListing::Entry::Kind::kFile: {
        struct stat st;
        if (lstat(full.c_str(), &st) != 0) return PosixError(errno, "stat", full);
        RETURN_IF_ERROR(w.File(e.path, full, st.st_size));
        break;
      }
    }
  }
  RETURN_IF_ERROR(w.Finish());
  struct stat st;
  if (stat(out_path.c_str(), &st) != 0) return PosixError(errno, "stat", out_path);
  return static_cast<uint64_t>(st.st_size);
}

absl::Status ApplyWarmFlags(absl::string_view warm, const std::string& snapshot_dir,
                            BuilderVmOptions* vm) {
  absl::StatusOr<WarmMode> mode = ParseWarmMode(warm);
  if (!mode.ok()) return absl::InvalidArgumentError(absl::StrCat("--warm: ", mode.status().message()));
  vm->warm = *mode;
  vm->snapshot_dir = snapshot_dir;
  return absl::OkStatus();
}

absl::StatusOr<SplitArgv> SplitBuildArgv(const std::vector<std::string>& args) {
  static const std::map<std::string, std::string>* const kNames =
      new std::map<std::string, std::string>{
          {"secret", "secret"}, {"build-arg", "build-arg"}, {"build_arg", "build-arg"},
          {"output", "output"}, {"o", "output"},           {"preload", "preload"},
          {"file", "file"},     {"f", "file"},             {"tag", "tag"},
          {"t", "tag"},         {"target", "target"}};
  SplitArgv out;
  if (!args.empty()) out.rest.push_back(args[0]);
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      out.rest.insert(out.rest.end(), args.begin() + static_cast<long>(i), args.end());
      break;
    }
    absl::string_view body = a;
    if (!absl::ConsumePrefix(&body, "--") && !absl::ConsumePrefix(&body, "-")) {
      out.rest.push_back(a);
      continue;
    }
    const size_t eq = body.find('=');
    if (body.substr(0, eq) == "no-cache") {  // docker's spelling of the absl flag no_cache
      out.rest.push_back(absl::StrCat("--no_cache", body.substr(std::string("no-cache").size())));
      continue;
    }
    auto it = kNames->find(std::string(body.substr(0, eq)));
    if (it == kNames->end()) {
      out.rest.push_back(a);
      continue;
    }
    std::string value;
    if (eq != absl::string_view::npos) {
      value = std::string(body.substr(eq + 1));
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat(a, " needs a value"));
    }
    out.values[it->second].push_back(std::move(value));
  }
  return out;
}

std::string ResolveUserPath(const std::string& path, const std::string& base) {
  if (path.empty() || path[0] == '/' || base.empty()) return path;
  return absl::StrCat(absl::StripSuffix(base, "/"), "/", path);
}

// ---------------------------------------------------------------------------------------------
// PrepareBuild

absl::StatusOr<PreparedBuild> PrepareBuild(const BuildCommand& cmd, const EnvLookup& env) {
  PreparedBuild p;
  p.command = cmd;
  if (cmd.context.empty()) return absl::InvalidArgumentError("no CONTEXT directory given");
  // 1. The context.
  {
    struct stat st;
    if (stat(cmd.context.c_str(), &st) != 0) {
      return absl::NotFoundError(absl::StrCat("context ", cmd.context, ": ", std::strerror(errno)));
    }
  }
  p.context_dir = Absolute(cmd.context);
  p.dockerfile_path = cmd.dockerfile.empty() ? absl::StrCat(p.context_dir, "/Dockerfile")
                                             : cmd.dockerfile;
  // What is sent (after .dockerignore), and only that, is checked.
  ASSIGN_OR_RETURN(p.context, ListContext(p.context_dir, p.dockerfile_path));
  // 2. The Dockerfile.
  {
    struct stat st;
    if (stat(p.dockerfile_path.c_str(), &st) != 0) {
      return absl::NotFoundError(absl::StrCat("Dockerfile ", p.dockerfile_path, ": ",
                                              std::strerror(errno),
                                              cmd.dockerfile.empty() ? " (pass -f FILE)" : ""));
    }
  }
  ASSIGN_OR_RETURN(p.dockerfile_text,
                   ReadSmallFile(p.dockerfile_path,
                                 static_cast<int64_t>(agent::kMaxDockerfile), "Dockerfile"));
  if (absl::StatusOr<agent::runner::DockerfileInfo> info =
          agent::runner::ScanDockerfile(p.dockerfile_text);
      info.ok()) {
    p.dockerfile_info = *std::move(info);
  } else if (cmd.check_secret_use) {
    return info.status();
  }
  // 3. Secrets: unique ids, readable, within the limits.
  for (const SecretSource& s : cmd.secrets) {
    if (p.secrets.count(s.id) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--secret id=", s.id, " is given twice (secret ids must be unique)"));
    }
    std::string value;
    if (s.kind == SecretSource::Kind::kFile) {
      absl::StatusOr<std::string> v =
          ReadSmallFile(s.src, agent::runner::kMaxSecretBytes, "secret file");
      if (!v.ok()) {
        return absl::Status(v.status().code(),
                            absl::StrCat("--secret id=", s.id, ": ", v.status().message(),
                                         absl::IsResourceExhausted(v.status())
                                             ? " (BuildKit's limit for one secret)"
                                             : ""));
      }
      value = std::move(*v);
    } else {
      std::optional<std::string> v = env(s.src);
      if (!v) {
        return absl::InvalidArgumentError(absl::StrCat("--secret id=", s.id, ",env=", s.src,
                                                       ": the variable is not set"));
      }
      value = std::move(*v);
      p.env_vars_used.push_back(s.src);
    }
    p.secrets[s.id] = std::move(value);
  }
  if (absl::Status s = agent::runner::ValidateSecrets(p.secrets); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("--secret: ", s.message()));
  }
  // 4. The Dockerfile's secrets: every non-optional one must be sent.
  if (cmd.check_secret_use) {
    RETURN_IF_ERROR(agent::runner::CheckSecretsDelivered(p.dockerfile_info, p.secrets));
  }
  // 5. Other flags the guest would refuse.
  if (!cmd.tag.empty()) {
    if (absl::Status s = agent::runner::ValidateImageTag(cmd.tag); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--tag: ", s.message()));
    }
  }
  std::set<std::string> keys;
  for (const agent::BuildArg& a : cmd.build_args) {
    if (!keys.insert(a.key).second) {
      return absl::InvalidArgumentError(absl::StrCat("--build-arg ", a.key, " is given twice"));
    }
  }
  // 6. Preloads, and the FROMs they must cover.
  std::vector<std::string> refs;
  for (const std::string& path : cmd.preload) {
    PreloadInput in;
    in.path = path;
    struct stat st;
    in.is_directory = stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
    ASSIGN_OR_RETURN(in.refs, ArchiveImageRefs(path));
    refs.insert(refs.end(), in.refs.begin(), in.refs.end());
    p.preload.push_back(std::move(in));
  }
  RETURN_IF_ERROR(CheckBasesPreloaded(p.dockerfile_info, cmd.build_args, refs, cmd.target));
  for (const OutputSpec& o : cmd.outputs) {
    if (o.dest.empty()) continue;
    const size_t slash = o.dest.rfind('/');
    const std::string parent = slash == std::string::npos ? "." : o.dest.substr(0, slash);
    if (access(parent.empty() ? "/" : parent.c_str(), W_OK) != 0) {
      return PosixError(errno, "--output dest directory", parent);
    }
  }
  return p;
}

// ---------------------------------------------------------------------------------------------
// Running it

std::pair<int, std::string> ClassifyOutcome(const BuilderRun& run, bool leaks_found) {
  if (!run.status.ok() || run.jobs.empty()) return {kBuildExitVm, "vm-failed"};
  const BuildResponse& r = run.jobs.front();
  std::string word = "built";
  if (!r.refused.ok()) {
    word = "refused";
  } else if (!r.result || r.result->exit_status != 0 || r.image_path.empty()) {
    word = "failed";
  }
  if (leaks_found) return {kBuildExitLeak, word};
  return {word == "built" ? kBuildExitOk : kBuildExitFailed, word};
}

namespace {

void AddLeaks(const LeakReport& rep, const std::string& id, const std::string& artifact,
              std::vector<LeakFinding>* out) {
  for (const std::string& w : rep.where) out->push_back({id, artifact, w});
  if (rep.hits > 0 && rep.where.empty()) {
    out->push_back({id, artifact, absl::StrCat(rep.hits, " hit(s)")});
  }
}

absl::Status CopyFile(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) return PosixError(errno, "open", from);
  const std::string tmp = to + ".partial";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return PosixError(errno, "create", tmp);
    out << in.rdbuf();
    if (!out.good()) return PosixError(errno == 0 ? EIO : errno, "write", tmp);
  }
  if (rename(tmp.c_str(), to.c_str()) != 0) return PosixError(errno, "rename", to);
  return absl::OkStatus();
}

}  // namespace

BuildOutcome RunPreparedBuild(VmFactory& factory, const PreparedBuild& p,
                              const BuildRunOptions& options) {
  const absl::Time t0 = absl::Now();
  BuildOutcome o;
  auto progress = [&](absl::string_view line) {
    if (options.progress) options.progress(line);
  };
  auto fail = [&](int code, std::string word, const absl::Status& s) {
    o.exit_code = code;
    o.result = std::move(word);
    o.error = std::string(s.message());
    o.total_ms = absl::ToInt64Milliseconds(absl::Now() - t0);
    return o;
  };
  {
    std::error_code ec;
    std::filesystem::create_directories(options.work_dir, ec);
    if (ec) {
      return fail(kBuildExitUsage, "input-error",
                  absl::InternalError(absl::StrCat("mkdir -p ", options.work_dir, ": ", ec.message())));
    }
  }
  // The context as a tar: what ListContext listed (.dockerignore applied; symlinks kept, as
  // docker sends them).
  const std::string context_tar = options.work_dir + "/context.tar";
  absl::StatusOr<uint64_t> ctx_bytes = WriteContextTar(p.context_dir, p.context, context_tar);
  if (!ctx_bytes.ok()) return fail(kBuildExitUsage, "input-error", ctx_bytes.status());
  progress(absl::StrCat("context ", p.context_dir, ": ", *ctx_bytes, " bytes (tar), ",
                        p.context.entries.size(), " entries"));
  if (p.context.has_dockerignore) {
    progress(absl::StrCat(".dockerignore: ", p.context.patterns, " patterns, ",
                          p.context.excluded, " entries excluded (not sent)"));
  }
  BuildRequest job;
  job.job_id = "build";
  job.context_tar = context_tar;
  job.dockerfile = p.dockerfile_text;
  job.build_args = p.command.build_args;
  job.target = p.command.target;
  job.tag = p.command.tag;
  job.secrets = p.secrets;
  for (const auto& [id, v] : p.secrets) job.secret_ids.push_back(id);
  for (const std::string& id : p.unsent_secret_ids) job.secret_ids.push_back(id);
  job.deadline_ms = options.job_deadline_ms;
  job.image_out = options.work_dir + "/image.oci.tar";
  job.on_log = options.on_log;
  for (size_t i = 0; i < p.preload.size(); ++i) {
    const PreloadInput& in = p.preload[i];
    std::string path = in.path;
    if (in.is_directory) {
      path = absl::StrCat(options.work_dir, "/preload-", i, ".oci.tar");
      absl::StatusOr<uint64_t> n = WriteDirectoryTar(in.path, path, SymlinkMode::kFollow);
      if (!n.ok()) return fail(kBuildExitUsage, "input-error", n.status());
    }
    job.preload.push_back({in.refs.front(), path});
  }
  BuilderVmOptions vm = options.vm;
  BuilderRun run = RunBuilderJobs(factory, options.artifacts, vm, {job});
  o.attempts = run.attempts;
  o.vm_total_ms = absl::ToInt64Milliseconds(run.total);
  o.vm_id = run.vm_id;
  o.kept_id = run.kept_id;
  o.log_dir = run.log_dir;
  if (!run.build_log_paths.empty()) o.build_log = run.build_log_paths.front();
  o.vmm_start_to_ready_ms =
      run.status.ok() || run.vmm_start_to_ready > absl::ZeroDuration()
          ? absl::ToInt64Milliseconds(run.vmm_start_to_ready)
          : -1;
  o.tag = p.command.tag.empty() ? "kiln-build:latest" : p.command.tag;
  const BuildResponse* r = run.jobs.empty() ? nullptr : &run.jobs.front();
  if (r != nullptr && !r->refused.ok()) {
    o.refusal_code = absl::StatusCodeToString(r->refused.code());
  }
  if (r != nullptr) o.image_path = r->image_path;
  if (r != nullptr && r->result) {
    o.build_exit_status = r->result->exit_status;
    o.digest = r->result->image_digest;
    o.image_bytes = r->image_bytes;
    for (const agent::Phase& ph : r->result->phases) {
      o.phases_ms.emplace_back(ph.name, static_cast<int64_t>(ph.duration_ms));
    }
  }
  // The leak scan: every secret, in the image, the log the host received and the serial log.
  if (p.command.leak_scan && !p.secrets.empty()) {
    std::vector<agent::Log> serial;
    for (absl::string_view l : absl::StrSplit(run.serial_log, '\n')) {
      serial.push_back({agent::LogStream::kSystem, 0, std::string(l)});
    }
    std::vector<agent::Log> logs = r != nullptr ? r->logs : std::vector<agent::Log>{};
    if (r != nullptr && r->result && !r->result->error.empty()) {
      logs.push_back({agent::LogStream::kSystem, 0, r->result->error});
    }
    if (r != nullptr && !r->refused.ok()) {
      logs.push_back({agent::LogStream::kSystem, 0, std::string(r->refused.message())});
    }
    bool scanned = true;
    for (const auto& [id, value] : p.secrets) {
      if (r != nullptr && !r->image_path.empty()) {
        absl::StatusOr<LeakReport> img = ScanOciArchiveForSecret(r->image_path, value);
        if (img.ok()) {
          AddLeaks(*img, id, "image", &o.leaks);
        } else {
          scanned = false;
          o.leaks.push_back({id, "image", absl::StrCat("the image could not be scanned: ",
                                                       img.status().message())});
        }
      }
      AddLeaks(ScanLogsForSecret(logs, value), id, "log", &o.leaks);
      AddLeaks(ScanLogsForSecret(serial, value), id, "serial log", &o.leaks);
    }
    o.leak_scanned = scanned;
    // The most telling findings first: a layer entry or a config/history field ("<blob>:<entry>
    // (form)" / "(history[i])") before raw byte ranges of whole blobs and of the archive.
    std::stable_partition(o.leaks.begin(), o.leaks.end(), [](const LeakFinding& l) {
      const size_t paren = l.where.find(" (");
      const absl::string_view head = absl::string_view(l.where).substr(0, paren);
      return absl::StrContains(head, ":") || absl::StrContains(l.where, "history");
    });
    progress(absl::StrCat("leak scan of ", p.secrets.size(), " secret(s): ",
                          o.leaks.empty() ? "clean" : absl::StrCat(o.leaks.size(), " finding(s)")));
  }
  const auto [code, word] = ClassifyOutcome(run, !o.leaks.empty());
  o.exit_code = code;
  o.result = word;
  if (!run.status.ok()) {
    o.error = std::string(run.status.message());
  } else if (r != nullptr && !r->refused.ok()) {
    o.error = std::string(r->refused.message());
  } else if (r != nullptr && r->result && r->result->exit_status != 0) {
    o.error = r->result->error;
  }
  if (!run.keep_status.ok()) {
    absl::StrAppend(&o.error, o.error.empty() ? "" : "; ", "keeping the failed builder failed: ",
                    run.keep_status.message());
  }
  // The outputs (only from a clean, successful build).
  if (code == kBuildExitOk && r != nullptr) {
    for (const OutputSpec& out : p.command.outputs) {
      if (!out.dest.empty()) {
        if (absl::Status s = CopyFile(r->image_path, out.dest); !s.ok()) {
          return fail(kBuildExitFailed, "output-failed", s);
        }
        o.outputs.push_back(absl::StrCat(out.kind == OutputSpec::Kind::kOci ? "oci " : "docker ",
                                         out.dest));
        progress(absl::StrCat("wrote ", out.dest));
        continue;
      }
      // type=docker without dest: load into the host's dockerd.
      absl::StatusOr<process::Process> load = process::Process::Spawn(
          {.argv = {"/usr/bin/docker", "load", "-i", r->image_path},
           .out = process::Stdio::File(options.work_dir + "/docker-load.log"),
           .err = process::Stdio::SameAsStdout()});
      absl::StatusOr<process::ProcessExit> ex =
          load.ok() ? load->Wait(absl::Now() + absl::Minutes(5))
                    : absl::StatusOr<process::ProcessExit>(load.status());
      if (!ex.ok() || ex->signaled || ex->exit_code != 0) {
        return fail(kBuildExitFailed, "output-failed",
                    absl::InternalError(absl::StrCat(
                        "docker load -i ", r->image_path, " failed (see ", options.work_dir,
                        "/docker-load.log)", ex.ok() ? "" : absl::StrCat(": ", ex.status().message()))));
      }
      o.outputs.push_back(absl::StrCat("docker load ", o.tag));
      progress(absl::StrCat("loaded ", o.tag, " into the host's dockerd"));
    }
  }
  o.total_ms = absl::ToInt64Milliseconds(absl::Now() - t0);
  return o;
}

std::string FormatSummary(const BuildOutcome& o) {
  std::string s = absl::StrCat("kiln build: ", o.result);
  if (!o.digest.empty()) absl::StrAppend(&s, " ", o.digest, " ", o.image_bytes, " bytes");
  if (!o.tag.empty() && !o.digest.empty()) absl::StrAppend(&s, ", tag ", o.tag);
  absl::StrAppend(&s, "; phases:");
  if (o.vmm_start_to_ready_ms >= 0) absl::StrAppend(&s, " boot->ready ", o.vmm_start_to_ready_ms, " ms");
  for (const auto& [name, ms] : o.phases_ms) {
    if (name == "total") continue;
    absl::StrAppend(&s, ", ", name, " ", ms, " ms");
  }
  absl::StrAppend(&s, "; total ", o.total_ms, " ms (VM ", o.vm_id, " ", o.vm_total_ms,
                  " ms, attempts ", o.attempts, ")\n");
  if (!o.error.empty()) {
    absl::StrAppend(&s, "error: ", absl::StrReplaceAll(o.error, {{"\n", "\n  "}}), "\n");
  }
  if (!o.leak_scanned && o.leaks.empty()) {
    absl::StrAppend(&s, "leak scan: not run (no secrets)\n");
  } else if (o.leaks.empty()) {
    absl::StrAppend(&s, "leak scan: clean (image, config, history, log, serial log)\n");
  } else {
    for (const LeakFinding& l : o.leaks) {
      absl::StrAppend(&s, "leak scan: LEAK: secret ", l.secret_id, " in ", l.artifact, ": ",
                      l.where, "\n");
    }
  }
  for (const std::string& out : o.outputs) absl::StrAppend(&s, "output: ", out, "\n");
  if (!o.kept_id.empty()) {
    absl::StrAppend(&s, "kept builder: ", o.kept_id, " (kilnctl builders exec ", o.kept_id,
                    " -- sh; kilnctl builders rm ", o.kept_id, ")\n");
  }
  if (!o.log_dir.empty()) {
    absl::StrAppend(&s, "logs: ", o.log_dir, "/serial.log",
                    o.build_log.empty() ? "" : absl::StrCat(", ", o.build_log), "\n");
  }
  absl::StrAppend(&s, "exit ", o.exit_code, "\n");
  return s;
}

std::string BuildOutcomeJson(const BuildOutcome& o) {
  nlohmann::json j;
  j["exit_code"] = o.exit_code;
  j["result"] = o.result;
  j["error"] = o.error;
  j["refusal_code"] = o.refusal_code;
  j["build_exit_status"] = o.build_exit_status;
  j["digest"] = o.digest;
  j["image_bytes"] = o.image_bytes;
  j["tag"] = o.tag;
  j["leak_scan"] = o.leaks.empty() ? (o.leak_scanned ? "clean" : "not run") : "leak";
  nlohmann::json leaks = nlohmann::json::array();
  for (const LeakFinding& l : o.leaks) {
    leaks.push_back({{"secret_id", l.secret_id}, {"artifact", l.artifact}, {"where", l.where}});
  }
  j["leaks"] = leaks;
  nlohmann::json phases = nlohmann::json::object();
  for (const auto& [name, ms] : o.phases_ms) phases[name] = ms;
  j["phases_ms"] = phases;
  j["vmm_start_to_ready_ms"] = o.vmm_start_to_ready_ms;
  j["total_ms"] = o.total_ms;
  j["vm_total_ms"] = o.vm_total_ms;
  j["attempts"] = o.attempts;
  j["vm_id"] = o.vm_id;
  j["kept_id"] = o.kept_id;
  j["log_dir"] = o.log_dir;
  j["build_log"] = o.build_log;
  j["outputs"] = o.outputs;
  return j.dump(/*indent=*/-1, ' ', /*ensure_ascii=*/false,
                nlohmann::json::error_handler_t::replace);
}

}  // namespace kiln::harness
