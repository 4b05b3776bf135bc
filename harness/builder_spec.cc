// File: harness/builder_spec.cc
#include "harness/builder_spec.h"

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
#include "absl/strings/str_join.h"
#include "images/oci/digest.h"
#include "nlohmann/json.hpp"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::harness {
namespace {

using nlohmann::json;

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
    RETURN_IF_ERROR(OnlyKeys(j["vm"], "vm", {"builder_mode"}));
    if (j["vm"].contains("builder_mode")) {
      if (!j["vm"]["builder_mode"].is_string()) return Bad("vm.builder_mode", "want a string");
      s.builder_mode = j["vm"]["builder_mode"].get<std::string>();
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
    RETURN_IF_ERROR(
        OnlyKeys(send, "send", {"secrets", "build_args", "target", "tag", "preload_busybox"}));
    if (send.contains("secrets")) {
      ASSIGN_OR_RETURN(s.send_secrets, Strings(send["secrets"], "send.secrets"));
      for (const std::string& id : s.send_secrets) {
        if (s.secrets.count(id) == 0) {
          return Bad("send.secrets", absl::StrCat("\"", id, "\" is not declared in secrets"));
        }
      }
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
  if (!j.contains("expect")) return Bad("spec.json", "no expect");
  const json& e = j["expect"];
  RETURN_IF_ERROR(OnlyKeys(e, "expect", {"result", "exit_code", "log_contains", "log_excludes",
                                         "leak", "leak_where", "error_contains"}));
  if (!e.contains("result") || !e["result"].is_string()) return Bad("expect.result", "want a string");
  s.expect.result = e["result"].get<std::string>();
  if (s.expect.result != "built" && s.expect.result != "failed" && s.expect.result != "refused" &&
      s.expect.result != "vm-failed") {
    return Bad("expect.result", "want built, failed, refused or vm-failed");
  }
  if (e.contains("exit_code")) {
    if (!e["exit_code"].is_number_integer()) return Bad("expect.exit_code", "want an integer");
    s.expect.exit_code = e["exit_code"].get<int>();
  }
  for (const auto& [key, field] :
       std::vector<std::pair<const char*, std::vector<std::string>*>>{
           {"log_contains", &s.expect.log_contains},
           {"log_excludes", &s.expect.log_excludes},
           {"leak_where", &s.expect.leak_where},
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
  if (e.contains("leak")) {
    if (!e["leak"].is_boolean()) return Bad("expect.leak", "want a boolean");
    s.expect.leak = e["leak"].get<bool>();
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
    if (!absl::StrContains(o.error, t)) {
      f.push_back(absl::StrCat("expected the error to contain \"", t, "\", got \"",
                               o.error.substr(0, 400), "\""));
    }
  }
  return f;
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
  run.vm.builder_mode = spec.builder_mode;
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
  for (const LeakFinding& l : out.leaks) {
    o.leaks.push_back(absl::StrCat("secret ", l.secret_id, " in ", l.artifact, ": ", l.where));
  }
  return o;
}

}  // namespace kiln::harness
