#include "agent/runner/dockerfile.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/runner/spec.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::agent::runner {
namespace {

// ParseDirective: "# key=value" -> (lowercase key, value); false if the line is not one.
bool ParseDirective(absl::string_view line, std::string* key, std::string* value) {
  absl::string_view s = absl::StripAsciiWhitespace(line);
  if (!absl::ConsumePrefix(&s, "#")) return false;
  s = absl::StripLeadingAsciiWhitespace(s);
  size_t eq = s.find('=');
  if (eq == absl::string_view::npos || eq == 0) return false;
  absl::string_view k = absl::StripTrailingAsciiWhitespace(s.substr(0, eq));
  for (char c : k) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c))) return false;
  }
  *key = absl::AsciiStrToLower(k);
  *value = std::string(absl::StripAsciiWhitespace(s.substr(eq + 1)));
  return true;
}

// Words(rest): whitespace-separated words, honouring '...' and "..." (quotes removed).
std::vector<std::string> Words(absl::string_view rest) {
  std::vector<std::string> words;
  std::string tok;
  bool in_word = false;
  char quote = 0;
  for (char c : rest) {
    if (quote != 0) {
      if (c == quote) {
        quote = 0;
      } else {
        tok.push_back(c);
      }
    } else if (c == '"' || c == '\'') {
      quote = c;
      in_word = true;
    } else if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
      if (in_word) words.push_back(std::move(tok));
      tok.clear();
      in_word = false;
    } else {
      tok.push_back(c);
      in_word = true;
    }
  }
  if (in_word) words.push_back(std::move(tok));
  return words;
}

// LeadingFlags(rest): the words of a RUN after its keyword up to the first one that is not a
// --flag.
std::vector<std::string> LeadingFlags(absl::string_view rest) {
  std::vector<std::string> flags;
  for (std::string& w : Words(rest)) {
    if (!absl::StartsWith(w, "--")) break;
    flags.push_back(std::move(w));
  }
  return flags;
}

// SplitCsv: one CSV record (encoding/csv rules as BuildKit uses them: ',' separates,
// "..." quotes, "" inside quotes is a quote).
std::vector<std::string> SplitCsv(absl::string_view s) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (quoted) {
      if (c == '"' && i + 1 < s.size() && s[i + 1] == '"') {
        out.back().push_back('"');
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        out.back().push_back(c);
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.emplace_back();
    } else {
      out.back().push_back(c);
    }
  }
  return out;
}

absl::Status ParseMount(absl::string_view value, int line, DockerfileInfo* info) {
  std::string type = "bind";
  std::string id, target;
  bool required = false;
  bool optional = false;
  bool has_env = false;
  for (const std::string& field : SplitCsv(value)) {
    absl::string_view f = absl::StripAsciiWhitespace(field);
    if (f.empty()) continue;
    size_t eq = f.find('=');
    std::string key = absl::AsciiStrToLower(f.substr(0, eq));
    std::string val = eq == absl::string_view::npos ? "" : std::string(f.substr(eq + 1));
    if (key == "type") {
      type = absl::AsciiStrToLower(val);
    } else if (key == "id") {
      id = val;
    } else if (key == "target" || key == "dst" || key == "destination") {
      target = val;
    } else if (key == "required") {
      // BuildKit: a bare `required` is true, else strconv.ParseBool of the value.
      if (eq == absl::string_view::npos) {
        required = true;
      } else if (val == "1" || val == "t" || val == "T" || val == "TRUE" || val == "true" ||
                 val == "True") {
        required = true;
      } else if (val == "0" || val == "f" || val == "F" || val == "FALSE" || val == "false" ||
                 val == "False") {
        optional = true;
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "Dockerfile line ", line, ": secret mount option required=\"", val,
            "\" is not a boolean (true or false)"));
      }
    } else if (key == "env") {
      has_env = true;
    }
  }
  if (type != "secret") return absl::OkStatus();
  if (has_env) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Dockerfile line ", line,
        ": secret mount option env= is not supported by the built-in BuildKit of dockerd "
        "20.10 or 26.1 (it fails with \"unexpected key 'env'\"); read the file under "
        "/run/secrets/<id> instead"));
  }
  if (id.empty()) {
    if (target.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Dockerfile line ", line, ": secret mount has neither id= nor target="));
    }
    absl::string_view t = absl::StripSuffix(target, "/");
    size_t slash = t.rfind('/');
    id = std::string(slash == absl::string_view::npos ? t : t.substr(slash + 1));
  }
  if (absl::Status s = ValidateSecretId(id); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Dockerfile line ", line, ": ", s.message(),
                     " (variables cannot be checked before the build and are refused)"));
  }
  info->secret_mounts.push_back(SecretMount{id, target, required, optional, line});
  return absl::OkStatus();
}

// ParseFrom: `FROM [--platform=...] image [AS name]`.
void ParseFrom(absl::string_view rest, int line, DockerfileInfo* info) {
  std::vector<std::string> w = Words(rest);
  size_t i = 0;
  while (i < w.size() && absl::StartsWith(w[i], "--")) ++i;
  if (i >= w.size()) return;  // BuildKit reports the malformed FROM itself
  FromInstruction f;
  f.image = w[i];
  f.line = line;
  if (i + 2 < w.size() && absl::EqualsIgnoreCase(w[i + 1], "AS")) {
    f.stage = absl::AsciiStrToLower(w[i + 2]);
  }
  info->froms.push_back(std::move(f));
}

// ParseGlobalArg: `ARG NAME[=default] ...` before the first FROM.
void ParseGlobalArg(absl::string_view rest, DockerfileInfo* info) {
  for (const std::string& word : Words(rest)) {
    const size_t eq = word.find('=');
    info->global_args[word.substr(0, eq)] =
        eq == std::string::npos ? std::string() : word.substr(eq + 1);
  }
}

}  // namespace

absl::StatusOr<DockerfileInfo> ScanDockerfile(absl::string_view text) {
  if (text.size() > kMaxDockerfileBytes) {
    return absl::InvalidArgumentError(absl::StrCat("Dockerfile is ", text.size(),
                                                   " bytes (limit ", kMaxDockerfileBytes, ")"));
  }
  if (text.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError("Dockerfile contains a NUL byte");
  }
  DockerfileInfo info;
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  size_t i = 0;
  // Parser directives: only at the very top, until the first line that is not one.
  for (; i < lines.size(); ++i) {
    std::string key, value;
    if (!ParseDirective(absl::StripSuffix(lines[i], "\r"), &key, &value)) break;
    info.directives[key] = value;
  }
  if (auto it = info.directives.find("syntax"); it != info.directives.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "Dockerfile has a \"# syntax=", it->second,
        "\" directive: BuildKit would pull that frontend image from a registry; remove it "
        "(the built-in dockerfile frontend is used)"));
  }
  char escape = '\\';
  if (auto it = info.directives.find("escape"); it != info.directives.end()) {
    if (it->second == "`") {
      escape = '`';
    } else if (it->second != "\\") {
      return absl::InvalidArgumentError(
          absl::StrCat("Dockerfile escape directive \"", it->second, "\" is not \\ or `"));
    }
  }
  std::string logical;
  int start_line = 0;
  for (; i < lines.size(); ++i) {
    absl::string_view raw = absl::StripSuffix(lines[i], "\r");
    absl::string_view trimmed = absl::StripAsciiWhitespace(raw);
    if (!trimmed.empty() && trimmed.front() == '#') continue;  // comment (also mid-continuation)
    if (logical.empty() && trimmed.empty()) continue;
    if (logical.empty()) start_line = static_cast<int>(i) + 1;
    absl::string_view body = absl::StripTrailingAsciiWhitespace(raw);
    bool continued = !body.empty() && body.back() == escape;
    if (continued) body.remove_suffix(1);
    absl::StrAppend(&logical, body, continued ? " " : "");
    if (continued && i + 1 < lines.size()) continue;
    absl::string_view inst = absl::StripLeadingAsciiWhitespace(logical);
    size_t sp = 0;
    while (sp < inst.size() && !absl::ascii_isspace(static_cast<unsigned char>(inst[sp]))) ++sp;
    if (absl::EqualsIgnoreCase(inst.substr(0, sp), "FROM")) {
      ParseFrom(inst.substr(sp), start_line, &info);
    } else if (absl::EqualsIgnoreCase(inst.substr(0, sp), "ARG") && info.froms.empty()) {
      ParseGlobalArg(inst.substr(sp), &info);
    } else if (absl::EqualsIgnoreCase(inst.substr(0, sp), "RUN")) {
      for (const std::string& flag : LeadingFlags(inst.substr(sp))) {
        absl::string_view f = flag;
        if (absl::ConsumePrefix(&f, "--mount=")) {
          absl::Status s = ParseMount(f, start_line, &info);
          if (!s.ok()) return s;
        }
      }
    }
    logical.clear();
  }
  return info;
}

absl::Status CheckSecretsDelivered(const DockerfileInfo& info,
                                   const std::map<std::string, std::string>& secrets) {
  std::vector<std::string> missing;
  std::map<std::string, int> seen;
  for (const SecretMount& m : info.secret_mounts) {
    if (m.optional) continue;  // explicit required=false: built without the file
    if (secrets.count(m.id) != 0 || seen.count(m.id) != 0) continue;
    seen[m.id] = m.line;
    missing.push_back(absl::StrCat("\"", m.id, "\" (line ", m.line, ")"));
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the Dockerfile uses secret(s) the host did not deliver: ",
                     absl::StrJoin(missing, ", ")));
  }
  return absl::OkStatus();
}

std::vector<SecretMount> OptionalSecretsAbsent(const DockerfileInfo& info,
                                               const std::map<std::string, std::string>& secrets) {
  std::vector<SecretMount> out;
  std::map<std::string, bool> seen;
  for (const SecretMount& m : info.secret_mounts) {
    if (!m.optional || secrets.count(m.id) != 0 || seen.count(m.id) != 0) continue;
    seen[m.id] = true;
    out.push_back(m);
  }
  return out;
}

std::string AbsentSecretLogLine(const SecretMount& m) {
  return absl::StrCat(kAbsentSecretLogPrefix, "\"", m.id, "\" (line ", m.line,
                      ", required=false) was not sent: the step runs without ",
                      m.target.empty() ? absl::StrCat("/run/secrets/", m.id) : m.target);
}

absl::StatusOr<std::string> ReadDockerfileInContext(const std::string& context_dir,
                                                    const std::string& relative_path) {
  if (absl::Status s = ValidateRelativePath("dockerfile path", relative_path); !s.ok()) return s;
  char root_buf[PATH_MAX];
  if (realpath(context_dir.c_str(), root_buf) == nullptr) {
    return PosixError(errno, "realpath", context_dir);
  }
  std::string root = root_buf;
  std::string full = absl::StrCat(root, "/", relative_path);
  char real_buf[PATH_MAX];
  if (realpath(full.c_str(), real_buf) == nullptr) return PosixError(errno, "realpath", full);
  std::string real = real_buf;
  if (!absl::StartsWith(real, root + "/")) {
    return absl::PermissionDeniedError(absl::StrCat(
        "dockerfile path \"", relative_path, "\" resolves outside the context (", real, ")"));
  }
  int fd = open(real.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return PosixError(errno, "open", real);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return PosixError(e, "fstat", real);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat("Dockerfile ", real, " is not a regular file"));
  }
  if (static_cast<size_t>(st.st_size) > kMaxDockerfileBytes) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat("Dockerfile ", real, " is ", st.st_size,
                                                   " bytes (limit ", kMaxDockerfileBytes, ")"));
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    ssize_t n = read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      close(fd);
      return PosixError(e, "read", real);
    }
    got += static_cast<size_t>(n);
  }
  close(fd);
  return text;
}

}  // namespace kiln::agent::runner
