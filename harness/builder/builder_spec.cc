// File: harness/builder/builder_spec.cc
#include "harness/builder/builder_spec.h"

#include <dirent.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "agent/file/file.h"
#include "agent/process/process.h"
#include "images/oci/layout.h"
#include "images/tool/unpack.h"
#include "images/oci/digest.h"
#include "nlohmann/json.hpp"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::harness {
namespace {

using nlohmann::json;

int64_t CountOccurrences(absl::string_view hay, absl::string_view needle) {
  if (needle.empty()) return 0;
  int64_t n = 0;
  for (size_t pos = hay.find(needle); pos != absl::string_view::npos;
       pos = hay.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

constexpr int64_t kMaxGeneratedBytes = 500 * 1024;  // BuildKit's limit for one secret

absl::Status Bad(absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

absl::Status OnlyKeys(const json& j, absl::string_view where, std::set<std::string> keys) {
  if (!j.is_object()) return Bad(where, "want an object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (keys.count(it.key()) == 0) {
      return Bad(where, absl::StrCat("unknown key \"", it.key(), "\" (want ",
                                     absl::StrJoin(keys, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> Strings(const json& j, absl::string_view where) {
  if (!j.is_array()) return Bad(where, "want an array of strings");
  std::vector<std::string> out;
  for (const json& e : j) {
    if (!e.is_string()) return Bad(where, "want an array of strings");
    out.push_back(e.get<std::string>());
  }
  return out;
}

// Placeholders(text): the secret ids named by {{sha256:ID}} / {{value:ID}}.
std::vector<std::string> Placeholders(absl::string_view text) {
  std::vector<std::string> ids;
  size_t i = 0;
  while ((i = text.find("{{", i)) != absl::string_view::npos) {
    const size_t end = text.find("}}", i);
    if (end == absl::string_view::npos) break;
    absl::string_view body = text.substr(i + 2, end - i - 2);
    const size_t colon = body.find(':');
    if (colon != absl::string_view::npos) ids.emplace_back(body.substr(colon + 1));
    i = end + 2;
  }
  return ids;
}

std::string RandomBytes(size_t n) {
  std::string s(n, '\0');
  size_t got = 0;
  while (got < n) {
    const ssize_t r = getrandom(s.data() + got, n - got, 0);
    if (r > 0) got += static_cast<size_t>(r);
  }
  return s;
}

}  // namespace

absl::StatusOr<ScenarioSpec> ParseScenarioSpec(absl::string_view name, const std::string& dir,
                                               absl::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad("spec.json", "not valid JSON");
  RETURN_IF_ERROR(OnlyKeys(j, "spec.json", {"title", "vm", "secrets", "send", "expect"}));
  ScenarioSpec s;
  s.name = std::string(name);
  s.dir = dir;
  if (!j.contains("title") || !j["title"].is_string()) return Bad("title", "want a string");
  s.title = j["title"].get<std::string>();
  if (j.contains("vm")) {
    RETURN_IF_ERROR(OnlyKeys(j["vm"], "vm", {"builder_mode", "cgroup", "delegate"}));
    if (j["vm"].contains("cgroup")) {
      if (!j["vm"]["cgroup"].is_string()) return Bad("vm.cgroup", "want a string");
      s.cgroup = j["vm"]["cgroup"].get<std::string>();
      if (s.cgroup != "rw" && s.cgroup != "ro" && s.cgroup != "off") {
        return Bad("vm.cgroup", "want rw, ro or off");
      }
    }
    if (j["vm"].contains("delegate")) {
      if (!j["vm"]["delegate"].is_boolean()) return Bad("vm.delegate", "want a boolean");
      s.delegate = j["vm"]["delegate"].get<bool>();
    }
    if (j["vm"].contains("builder_mode")) {
      if (!j["vm"]["builder_mode"].is_string()) return Bad("vm.builder_mode", "want a string");
      s.builder_mode = j["vm"]["builder_mode"].get<std::string>();
      s.builder_mode_set = true;
      if (s.builder_mode != "rootless" && s.builder_mode != "rootful") {
        return Bad("vm.builder_mode", "want rootless or rootful");
      }
    }
  }
  if (j.contains("secrets")) {
    if (!j["secrets"].is_object()) return Bad("secrets", "want an object");
    for (auto it = j["secrets"].begin(); it != j["secrets"].end(); ++it) {
      const std::string where = absl::StrCat("secrets.", it.key());
      RETURN_IF_ERROR(OnlyKeys(it.value(), where, {"generate", "file"}));
      SecretRecipe r;
      const bool gen = it.value().contains("generate"), file = it.value().contains("file");
      if (gen == file) return Bad(where, "want exactly one of generate, file");
      if (gen) {
        const json& g = it.value()["generate"];
        RETURN_IF_ERROR(OnlyKeys(g, where + ".generate", {"bytes", "alphabet", "prefix"}));
        if (!g.contains("bytes") || !g["bytes"].is_number_integer()) {
          return Bad(where + ".generate.bytes", "want an integer");
        }
        r.bytes = g["bytes"].get<int64_t>();
        if (r.bytes < 1 || r.bytes > kMaxGeneratedBytes) {
          return Bad(where + ".generate.bytes", absl::StrCat("want 1..", kMaxGeneratedBytes));
        }
        if (g.contains("alphabet")) {
          if (!g["alphabet"].is_string()) return Bad(where + ".generate.alphabet", "want a string");
          r.alphabet = g["alphabet"].get<std::string>();
        }
        if (r.alphabet != "alnum" && r.alphabet != "hex" && r.alphabet != "binary") {
          return Bad(where + ".generate.alphabet", "want alnum, hex or binary");
        }
        if (g.contains("prefix")) {
          if (!g["prefix"].is_string()) return Bad(where + ".generate.prefix", "want a string");
          r.prefix = g["prefix"].get<std::string>();
        }
      } else {
        if (!it.value()["file"].is_string()) return Bad(where + ".file", "want a string");
        r.file = it.value()["file"].get<std::string>();
        if (r.file.empty() || r.file[0] == '/' || absl::StrContains(r.file, "..")) {
          return Bad(where + ".file", "want a relative path inside the scenario folder");
        }
      }
      s.secrets[it.key()] = r;
    }
  }
  for (const auto& [id, r] : s.secrets) s.send_secrets.push_back(id);
  if (j.contains("send")) {
    const json& send = j["send"];
    RETURN_IF_ERROR(OnlyKeys(send, "send",
                             {"secrets", "name_secrets", "host_checks", "build_args", "target",
                              "tag", "preload_busybox"}));
    for (const auto& [key, field] : std::vector<std::pair<const char*, std::vector<std::string>*>>{
             {"secrets", &s.send_secrets}, {"name_secrets", &s.name_secrets}}) {
      if (!send.contains(key)) continue;
      const std::string where = absl::StrCat("send.", key);
      ASSIGN_OR_RETURN(*field, Strings(send[key], where));
      for (const std::string& id : *field) {
        if (s.secrets.count(id) == 0) {
          return Bad(where, absl::StrCat("\"", id, "\" is not declared in secrets"));
        }
      }
    }
    if (send.contains("host_checks")) {
      if (!send["host_checks"].is_boolean()) return Bad("send.host_checks", "want a boolean");
      s.host_checks = send["host_checks"].get<bool>();
    }
    if (send.contains("build_args")) {
      if (!send["build_args"].is_object()) return Bad("send.build_args", "want an object");
      for (auto it = send["build_args"].begin(); it != send["build_args"].end(); ++it) {
        if (!it.value().is_string()) return Bad("send.build_args", "want string values");
        s.build_args[it.key()] = it.value().get<std::string>();
      }
    }
    for (const char* k : {"target", "tag"}) {
      if (!send.contains(k)) continue;
      if (!send[k].is_string()) return Bad(absl::StrCat("send.", k), "want a string");
      (std::string(k) == "target" ? s.target : s.tag) = send[k].get<std::string>();
    }
    if (send.contains("preload_busybox")) {
      if (!send["preload_busybox"].is_boolean()) return Bad("send.preload_busybox", "want a boolean");
      s.preload_busybox = send["preload_busybox"].get<bool>();
    }
  }
  if (!j.contains("send") || !j["send"].contains("name_secrets")) s.name_secrets = s.send_secrets;
  if (!j.contains("expect")) return Bad("spec.json", "no expect");
  const json& e = j["expect"];
  RETURN_IF_ERROR(OnlyKeys(
      e, "expect",
      {"result", "exit_code", "error_code", "build_exit_status", "build_ran", "step_uid",
       "log_contains", "log_excludes", "log_count_min", "log_empty", "output_contains", "leak",
       "leak_where", "error_contains", "image_files", "image_absent"}));
  if (!e.contains("result") || !e["result"].is_string()) return Bad("expect.result", "want a string");
  s.expect.result = e["result"].get<std::string>();
  if (s.expect.result != "built" && s.expect.result != "failed" && s.expect.result != "refused" &&
      s.expect.result != "vm-failed") {
    return Bad("expect.result", "want built, failed, refused or vm-failed");
  }
  for (const auto& [key, field] : std::vector<std::pair<const char*, std::optional<int>*>>{
           {"exit_code", &s.expect.exit_code}, {"build_exit_status", &s.expect.build_exit_status}}) {
    if (!e.contains(key)) continue;
    if (!e[key].is_number_integer()) return Bad(absl::StrCat("expect.", key), "want an integer");
    *field = e[key].get<int>();
  }
  if (e.contains("error_code")) {
    if (!e["error_code"].is_string()) return Bad("expect.error_code", "want a string");
    s.expect.error_code = e["error_code"].get<std::string>();
    bool known = false;
    for (int c = 1; c <= 16; ++c) {
      known = known || absl::StatusCodeToString(static_cast<absl::StatusCode>(c)) ==
                           s.expect.error_code;
    }
    if (!known) return Bad("expect.error_code", "want an absl status code (e.g. FAILED_PRECONDITION)");
  }
  for (const auto& [key, field] : std::vector<std::pair<const char*, bool*>>{
           {"log_empty", &s.expect.log_empty}, {"leak", &s.expect.leak}}) {
    if (!e.contains(key)) continue;
    if (!e[key].is_boolean()) return Bad(absl::StrCat("expect.", key), "want a boolean");
    *field = e[key].get<bool>();
  }
  if (e.contains("build_ran")) {
    if (!e["build_ran"].is_boolean()) return Bad("expect.build_ran", "want a boolean");
    s.expect.build_ran = e["build_ran"].get<bool>();
  }
  if (e.contains("step_uid")) {
    if (!e["step_uid"].is_string()) return Bad("expect.step_uid", "want a string");
    s.expect.step_uid = e["step_uid"].get<std::string>();
    const std::vector<absl::string_view> uids = absl::StrSplit(s.expect.step_uid, ' ');
    if (uids.size() != 4) return Bad("expect.step_uid", "want four uids (real effective saved fs)");
  }
  if (e.contains("log_count_min")) {
    if (!e["log_count_min"].is_object()) return Bad("expect.log_count_min", "want an object");
    for (auto it = e["log_count_min"].begin(); it != e["log_count_min"].end(); ++it) {
      if (!it.value().is_number_integer() || it.value().get<int64_t>() < 1) {
        return Bad("expect.log_count_min", absl::StrCat("\"", it.key(), "\": want an integer >= 1"));
      }
      s.expect.log_count_min[it.key()] = it.value().get<int64_t>();
    }
  }
  auto image_path = [](const std::string& path, absl::string_view where) -> absl::Status {
    if (path.empty() || path[0] == '/') return Bad(where, absl::StrCat("\"", path, "\": want a root-relative path"));
    for (absl::string_view part : absl::StrSplit(path, '/')) {
      if (part == "..") return Bad(where, absl::StrCat("\"", path, "\": no \"..\" components"));
    }
    return absl::OkStatus();
  };
  if (e.contains("image_files")) {
    if (!e["image_files"].is_object()) return Bad("expect.image_files", "want an object");
    for (auto it = e["image_files"].begin(); it != e["image_files"].end(); ++it) {
      RETURN_IF_ERROR(image_path(it.key(), "expect.image_files"));
      if (!it.value().is_string()) return Bad("expect.image_files", "want string contents");
      s.expect.image_files[it.key()] = it.value().get<std::string>();
    }
  }
  if (e.contains("image_absent")) {
    ASSIGN_OR_RETURN(s.expect.image_absent, Strings(e["image_absent"], "expect.image_absent"));
    for (const std::string& p : s.expect.image_absent) {
      RETURN_IF_ERROR(image_path(p, "expect.image_absent"));
    }
  }
  std::vector<std::string> templated;
  for (const auto& [k, v] : s.expect.log_count_min) templated.push_back(k);
  for (const auto& [k, v] : s.expect.image_files) templated.push_back(v);
  for (const std::string& t : templated) {
    for (const std::string& id : Placeholders(t)) {
      if (s.secrets.count(id) == 0) {
        return Bad("expect", absl::StrCat("placeholder names undeclared secret \"", id, "\""));
      }
    }
  }
  for (const auto& [key, field] :
       std::vector<std::pair<const char*, std::vector<std::string>*>>{
           {"log_contains", &s.expect.log_contains},
           {"log_excludes", &s.expect.log_excludes},
           {"leak_where", &s.expect.leak_where},
           {"output_contains", &s.expect.output_contains},
           {"error_contains", &s.expect.error_contains}}) {
    if (!e.contains(key)) continue;
    ASSIGN_OR_RETURN(*field, Strings(e[key], absl::StrCat("expect.", key)));
    for (const std::string& t : *field) {
      for (const std::string& id : Placeholders(t)) {
        if (s.secrets.count(id) == 0) {
          return Bad(absl::StrCat("expect.", key),
                     absl::StrCat("placeholder names undeclared secret \"", id, "\""));
        }
      }
    }
  }
  return s;
}

absl::StatusOr<ScenarioSpec> LoadScenario(const std::string& dir) {
  const std::string path = dir + "/spec.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string name = dir;
  while (!name.empty() && name.back() == '/') name.pop_back();
  name = name.substr(name.rfind('/') + 1);
  if (access((dir + "/Dockerfile").c_str(), R_OK) != 0) {
    return absl::NotFoundError(absl::StrCat(dir, "/Dockerfile: cannot read"));
  }
  absl::StatusOr<ScenarioSpec> s = ParseScenarioSpec(name, dir, ss.str());
  if (!s.ok()) return absl::Status(s.status().code(), absl::StrCat(path, ": ", s.status().message()));
  return s;
}

absl::StatusOr<std::vector<std::string>> ListScenarioDirs(const std::string& root) {
  DIR* d = opendir(root.c_str());
  if (d == nullptr) return PosixError(errno, "opendir", root);
  std::vector<std::string> out;
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    const std::string dir = absl::StrCat(root, "/", n);
    if (access((dir + "/spec.json").c_str(), R_OK) == 0) out.push_back(dir);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<ScenarioSecrets> MakeScenarioSecrets(const ScenarioSpec& spec) {
  ScenarioSecrets out;
  static constexpr char kAlnum[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  static constexpr char kHex[] = "0123456789abcdef";
  for (const auto& [id, r] : spec.secrets) {
    if (!r.file.empty()) {
      const std::string path = absl::StrCat(spec.dir, "/", r.file);
      std::ifstream in(path, std::ios::binary);
      if (!in) return absl::NotFoundError(absl::StrCat("secret ", id, ": cannot read ", path));
      std::stringstream ss;
      ss << in.rdbuf();
      out[id] = ss.str();
      continue;
    }
    std::string raw = RandomBytes(static_cast<size_t>(r.bytes));
    if (r.alphabet == "alnum") {
      for (char& c : raw) c = kAlnum[static_cast<unsigned char>(c) % (sizeof(kAlnum) - 1)];
    } else if (r.alphabet == "hex") {
      for (char& c : raw) c = kHex[static_cast<unsigned char>(c) % 16];
    }
    out[id] = r.prefix + raw;
  }
  return out;
}

std::string ExpandPlaceholders(absl::string_view text, const ScenarioSecrets& secrets) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    const size_t open = text.find("{{", i);
    if (open == absl::string_view::npos) break;
    const size_t close = text.find("}}", open);
    if (close == absl::string_view::npos) break;
    absl::StrAppend(&out, text.substr(i, open - i));
    absl::string_view body = text.substr(open + 2, close - open - 2);
    const size_t colon = body.find(':');
    auto it = colon == absl::string_view::npos ? secrets.end()
                                               : secrets.find(std::string(body.substr(colon + 1)));
    if (it != secrets.end() && body.substr(0, colon) == "sha256") {
      out += oci::Sha256Hex(it->second);
    } else if (it != secrets.end() && body.substr(0, colon) == "value") {
      out += it->second;
    } else {
      absl::StrAppend(&out, text.substr(open, close + 2 - open));
    }
    i = close + 2;
  }
  absl::StrAppend(&out, text.substr(std::min(i, text.size())));
  return out;
}

std::vector<std::string> CheckScenario(const ScenarioSpec& spec, const ScenarioSecrets& secrets,
                                       const ScenarioObservation& o) {
  std::vector<std::string> f;
  const ScenarioExpect& e = spec.expect;
  auto context = [&] {
    return o.error.empty() ? std::string() : absl::StrCat(" (error: ", o.error.substr(0, 400), ")");
  };
  if (o.result != e.result) {
    f.push_back(absl::StrCat("expected result ", e.result, ", got ", o.result, context()));
  }
  if (e.exit_code && *e.exit_code != o.exit_code) {
    f.push_back(absl::StrCat("expected exit code ", *e.exit_code, ", got ", o.exit_code, context()));
  }
  for (const std::string& t : e.log_contains) {
    const std::string want = ExpandPlaceholders(t, secrets);
    if (!absl::StrContains(o.log, want)) {
      f.push_back(absl::StrCat("expected the log to contain \"", t, "\"", context()));
    }
  }
  for (const std::string& t : e.log_excludes) {
    if (absl::StrContains(o.log, ExpandPlaceholders(t, secrets))) {
      f.push_back(absl::StrCat("expected the log not to contain \"", t, "\""));
    }
  }
  if (e.leak != !o.leaks.empty()) {
    f.push_back(e.leak ? "expected the leak scan to find a secret, it found none"
                       : absl::StrCat("expected no leak, the scan found: ",
                                      absl::StrJoin(o.leaks, "; ")));
  }
  for (const std::string& w : e.leak_where) {
    const bool seen = std::any_of(o.leaks.begin(), o.leaks.end(),
                                  [&](const std::string& l) { return absl::StrContains(l, w); });
    if (!seen) f.push_back(absl::StrCat("expected a leak finding naming \"", w, "\""));
  }
  for (const std::string& t : e.error_contains) {
    if (!absl::StrContains(o.error, ExpandPlaceholders(t, secrets))) {
      f.push_back(absl::StrCat("expected the error to contain \"", t, "\", got \"",
                               o.error.substr(0, 400), "\""));
    }
  }
  const std::string output = absl::StrCat(o.error, "\n", o.log);
  for (const std::string& t : e.output_contains) {
    if (!absl::StrContains(output, ExpandPlaceholders(t, secrets))) {
      f.push_back(absl::StrCat("expected the log or the error to contain \"", t, "\"", context()));
    }
  }
  for (const auto& [t, min] : e.log_count_min) {
    const int64_t n = CountOccurrences(o.log, ExpandPlaceholders(t, secrets));
    if (n < min) {
      f.push_back(absl::StrCat("expected \"", t, "\" at least ", min, " times in the log, got ", n));
    }
  }
  if (e.log_empty && !o.log.empty()) {
    f.push_back(absl::StrCat("expected no build log, got ", CountOccurrences(o.log, "\n"),
                             " line(s)"));
  }
  if (!e.error_code.empty() && o.error_code != e.error_code) {
    f.push_back(absl::StrCat("expected the builder's refusal to be ", e.error_code, ", got ",
                             o.error_code.empty() ? "none" : o.error_code, context()));
  }
  if (e.build_exit_status && *e.build_exit_status != o.build_exit_status) {
    f.push_back(absl::StrCat("expected the guest's build exit status ", *e.build_exit_status,
                             ", got ", o.build_exit_status, context()));
  }
  if (e.build_ran && *e.build_ran != o.build_ran) {
    f.push_back(*e.build_ran ? "expected the build to have run (the daemon came up), it never ran"
                             : "expected the build never to run (the daemon fails), it ran");
  }
  if (!e.step_uid.empty()) {
    absl::StatusOr<StepUidLine> uid = FindStepUidLine(output);
    if (!uid.ok()) {
      f.push_back(absl::StrCat("expected the RUN step's Uid ", e.step_uid, ": ",
                               uid.status().message()));
    } else if (uid->uids != e.step_uid) {
      f.push_back(absl::StrCat("expected the RUN step's Uid ", e.step_uid, ", its process ",
                               uid->comm, " has Uid ", uid->uids));
    }
  }
  // Rules for every scenario.
  if (o.result != "built" && o.has_image) {
    f.push_back(absl::StrCat("a ", o.result, " job returned an image"));
  }
  if (o.result == "refused" && o.build_exit_status != -1) {
    f.push_back("a refused job returned a BuildResult");
  }
  if (o.result == "built" && !spec.send_secrets.empty() && !o.leak_scanned) {
    f.push_back("expected a complete leak scan of the image, it did not run or failed");
  }
  if (!e.image_files.empty() || !e.image_absent.empty()) {
    if (!o.image_error.empty()) {
      f.push_back(absl::StrCat("expected to read the image's files: ", o.image_error));
    } else {
      for (const auto& [path, want] : e.image_files) {
        auto it = o.image_files.find(path);
        const std::string expanded = ExpandPlaceholders(want, secrets);
        if (it == o.image_files.end()) {
          f.push_back(absl::StrCat("expected the image to hold the file ", path, ", it does not"));
        } else if (it->second != expanded) {
          f.push_back(absl::StrCat("expected the image's ", path, " to be \"", want, "\" (",
                                   expanded.size(), " bytes), got ", it->second.size(),
                                   " bytes: \"", absl::CHexEscape(it->second.substr(0, 120)), "\""));
        }
      }
      for (const std::string& path : e.image_absent) {
        if (o.image_files.count(path) != 0) {
          f.push_back(absl::StrCat("expected the image not to hold ", path, ", it does"));
        }
      }
    }
  }
  return f;
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

absl::StatusOr<std::map<std::string, std::string>> ReadImageFiles(
    const std::string& oci_archive, const std::vector<std::string>& paths,
    const std::string& work_dir) {
  const std::string layout = work_dir + "/layout";
  const std::string root = work_dir + "/rootfs";
  std::error_code ec;
  std::filesystem::remove_all(work_dir, ec);
  std::filesystem::create_directories(layout, ec);
  std::filesystem::create_directories(root, ec);
  if (ec) return PosixError(ec.value(), "mkdir", work_dir);
  absl::StatusOr<process::Process> tar = process::Process::Spawn(
      {.argv = {"tar", "-xf", oci_archive, "-C", layout},
       .out = process::Stdio::File(work_dir + "/tar.log"),
       .err = process::Stdio::SameAsStdout()});
  if (!tar.ok()) return tar.status();
  ASSIGN_OR_RETURN(process::ProcessExit ex, tar->Wait(absl::Now() + absl::Minutes(2)));
  if (ex.signaled || ex.exit_code != 0) {
    return absl::DataLossError(absl::StrCat("tar -xf ", oci_archive, " failed (", work_dir,
                                            "/tar.log)"));
  }
  ASSIGN_OR_RETURN(oci::LayoutImage image, oci::ReadImageLayout(layout));
  RETURN_IF_ERROR(images::UnpackImage(image, root, {.same_owner = false}).status());
  std::map<std::string, std::string> out;
  for (const std::string& p : paths) {
    const std::string full = absl::StrCat(root, "/", p);
    struct stat st;
    if (lstat(full.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    ASSIGN_OR_RETURN(out[p], file::ReadFile(full));
  }
  return out;
}

ScenarioObservation RunBuilderScenario(VmFactory& factory, const ScenarioSpec& spec,
                                       const ScenarioSecrets& secrets, BuildRunOptions run,
                                       const std::string& busybox_image) {
  ScenarioObservation o;
  const std::string context = run.work_dir + "/context";
  std::error_code ec;
  std::filesystem::create_directories(run.work_dir, ec);
  std::filesystem::copy(spec.dir, context, std::filesystem::copy_options::recursive, ec);
  if (ec) {
    o.result = "harness-error";
    o.error = absl::StrCat("copy ", spec.dir, " -> ", context, ": ", ec.message());
    return o;
  }
  BuildCommand cmd;
  cmd.context = context;
  cmd.target = spec.target;
  cmd.tag = spec.tag;
  for (const auto& [k, v] : spec.build_args) cmd.build_args.push_back({k, v});
  std::map<std::string, std::string> env;  // in memory only
  for (const std::string& id : spec.send_secrets) {
    const std::string var = absl::StrCat("scenario-secret:", id);
    cmd.secrets.push_back({id, SecretSource::Kind::kEnv, var});
    env[var] = secrets.at(id);
  }
  cmd.check_secret_use = spec.host_checks;
  if (spec.preload_busybox) cmd.preload.push_back(busybox_image);
  absl::StatusOr<PreparedBuild> p =
      PrepareBuild(cmd, [&env](const std::string& n) -> std::optional<std::string> {
        auto it = env.find(n);
        if (it == env.end()) return std::nullopt;
        return it->second;
      });
  if (!p.ok()) {
    o.result = "refused";
    o.exit_code = kBuildExitUsage;
    o.error = std::string(p.status().message());
    return o;
  }
  for (const std::string& id : spec.name_secrets) {
    if (std::find(spec.send_secrets.begin(), spec.send_secrets.end(), id) ==
        spec.send_secrets.end()) {
      p->unsent_secret_ids.push_back(id);
    }
  }
  run.vm.builder_mode = spec.builder_mode;
  run.vm.cgroup = spec.cgroup;
  run.vm.delegate_cgroup = spec.delegate;
  run.vm.id = absl::StrCat("scenario-", spec.name);
  std::function<void(const agent::Log&)> pass_on = run.on_log;
  run.on_log = [&o, pass_on](const agent::Log& l) {
    absl::StrAppend(&o.log, l.text, "\n");
    if (pass_on) pass_on(l);
  };
  BuildOutcome out = RunPreparedBuild(factory, *p, run);
  o.result = out.result;
  o.exit_code = out.exit_code;
  o.error = out.error;
  o.error_code = out.refusal_code;
  o.build_exit_status = out.build_exit_status;
  o.has_image = !out.image_path.empty();
  o.leak_scanned = out.leak_scanned;
  for (const auto& [phase, ms] : out.phases_ms) {
    if (phase == "build" && ms > 0) o.build_ran = true;
  }
  for (const LeakFinding& l : out.leaks) {
    o.leaks.push_back(absl::StrCat("secret ", l.secret_id, " in ", l.artifact, ": ", l.where));
  }
  if (!spec.expect.image_files.empty() || !spec.expect.image_absent.empty()) {
    if (out.image_path.empty()) {
      o.image_error = "no image came back";
    } else {
      std::vector<std::string> paths = spec.expect.image_absent;
      for (const auto& [path, contents] : spec.expect.image_files) paths.push_back(path);
      absl::StatusOr<std::map<std::string, std::string>> files =
          ReadImageFiles(out.image_path, paths, run.work_dir + "/image-files");
      if (files.ok()) {
        o.image_files = *std::move(files);
      } else {
        o.image_error = files.status().ToString();
      }
    }
  }
  return o;
}

}  // namespace kiln::harness
