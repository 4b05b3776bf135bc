#include "agent/runner/spec.h"

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace kiln::agent::runner {
namespace {

bool IsIdStart(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)); }
bool IsIdChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
}
bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// IsNameComponent: [a-z0-9]+([._]|__|[-]*)[a-z0-9]+)* simplified to [a-z0-9]+([._-]+[a-z0-9]+)*.
bool IsNameComponent(absl::string_view c) {
  if (c.empty() || !IsLowerAlnum(c.front()) || !IsLowerAlnum(c.back())) return false;
  for (char ch : c) {
    if (!IsLowerAlnum(ch) && ch != '.' && ch != '_' && ch != '-') return false;
  }
  return true;
}

// IsRegistryHost: the first component may be a host[:port] (has '.' or ':' or is localhost).
bool IsRegistryHost(absl::string_view c) {
  if (c.empty()) return false;
  for (char ch : c) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '-' &&
        ch != ':')
      return false;
  }
  return true;
}

}  // namespace

absl::string_view BuilderModeName(BuilderMode mode) {
  return mode == BuilderMode::kRootless ? "rootless" : "rootful";
}

bool ParseBuilderMode(absl::string_view text, BuilderMode* mode) {
  if (text == "rootless") {
    *mode = BuilderMode::kRootless;
    return true;
  }
  if (text == "rootful") {
    *mode = BuilderMode::kRootful;
    return true;
  }
  return false;
}

absl::string_view NetworkModeName(NetworkMode mode) {
  switch (mode) {
    case NetworkMode::kHost:
      return "host";
    case NetworkMode::kNone:
    default:
      return "none";
  }
}

absl::Status ValidateSecretId(absl::string_view id) {
  bool ok = !id.empty() && id.size() <= 128 && IsIdStart(id[0]);
  for (size_t i = 1; ok && i < id.size(); ++i) ok = IsIdChar(id[i]);
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "secret id \"", absl::CEscape(id.substr(0, 160)),
        "\" is invalid: ids must match [A-Za-z0-9][A-Za-z0-9_.-]{0,127}"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSecrets(const std::map<std::string, std::string>& secrets) {
  if (secrets.size() > static_cast<size_t>(kMaxSecrets)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many secrets: ", secrets.size(), " (limit ", kMaxSecrets, ")"));
  }
  int64_t total = 0;
  for (const auto& [id, value] : secrets) {
    if (absl::Status s = ValidateSecretId(id); !s.ok()) return s;
    if (value.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("secret \"", id, "\" has an empty value"));
    }
    if (static_cast<int64_t>(value.size()) > kMaxSecretBytes) {
      return absl::ResourceExhaustedError(absl::StrCat("secret \"", id, "\" is ", value.size(),
                                                       " bytes (limit ", kMaxSecretBytes, ")"));
    }
    total += static_cast<int64_t>(value.size());
  }
  if (total > kMaxSecretsTotalBytes) {
    return absl::ResourceExhaustedError(absl::StrCat("secrets total ", total, " bytes (limit ",
                                                     kMaxSecretsTotalBytes, ")"));
  }
  return absl::OkStatus();
}

absl::Status ValidateRelativePath(absl::string_view what, absl::string_view path) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  if (path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(what, " contains a NUL byte"));
  }
  if (path.front() == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", path, "\" is absolute; it must be relative to the context"));
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == "..") {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " \"", path, "\" has an empty, \".\" or \"..\" component"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateImageTag(absl::string_view tag) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("image tag \"", absl::CEscape(tag), "\" is invalid: ", why));
  };
  if (tag.empty() || tag.size() > 255) return bad("empty or longer than 255 characters");
  if (absl::StrContains(tag, '@')) return bad("digest references are not accepted");
  absl::string_view name = tag;
  size_t slash = tag.rfind('/');
  size_t colon = tag.rfind(':');
  if (colon != absl::string_view::npos && (slash == absl::string_view::npos || colon > slash)) {
    absl::string_view t = tag.substr(colon + 1);
    bool ok = !t.empty() && t.size() <= 128 &&
              (absl::ascii_isalnum(static_cast<unsigned char>(t[0])) || t[0] == '_');
    for (size_t i = 1; ok && i < t.size(); ++i) ok = IsIdChar(t[i]);
    if (!ok) return bad("the tag part must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
    name = tag.substr(0, colon);
  }
  std::vector<absl::string_view> parts = absl::StrSplit(name, '/');
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i == 0 && parts.size() > 1 && IsRegistryHost(parts[0]) &&
        (absl::StrContains(parts[0], '.') || absl::StrContains(parts[0], ':') ||
         parts[0] == "localhost")) {
      continue;
    }
    if (!IsNameComponent(parts[i])) {
      return bad("name components must be lowercase [a-z0-9] separated by '.', '_' or '-'");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSpec(const BuildSpec& spec) {
  if (spec.context_dir.empty() == spec.context_tar.empty()) {
    return absl::InvalidArgumentError(
        "exactly one of context_dir and context_tar must be set");
  }
  const std::string& ctx = spec.context_dir.empty() ? spec.context_tar : spec.context_dir;
  if (ctx.front() != '/') {
    return absl::InvalidArgumentError(absl::StrCat("context path \"", ctx, "\" is not absolute"));
  }
  if (absl::Status s = ValidateRelativePath("dockerfile path", spec.dockerfile); !s.ok()) return s;
  if (spec.build_args.size() > static_cast<size_t>(kMaxBuildArgs)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "too many build args: ", spec.build_args.size(), " (limit ", kMaxBuildArgs, ")"));
  }
  for (const auto& [key, value] : spec.build_args) {
    bool ok = !key.empty() && key.size() <= 256 &&
              (absl::ascii_isalpha(static_cast<unsigned char>(key[0])) || key[0] == '_');
    for (size_t i = 1; ok && i < key.size(); ++i) {
      ok = absl::ascii_isalnum(static_cast<unsigned char>(key[i])) || key[i] == '_';
    }
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "build arg key \"", absl::CEscape(key), "\" must match [A-Za-z_][A-Za-z0-9_]*"));
    }
    if (value.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("build arg ", key, " contains a NUL byte"));
    }
  }
  if (!spec.target.empty()) {
    bool ok = spec.target.size() <= 128 && IsIdStart(spec.target[0]);
    for (size_t i = 1; ok && i < spec.target.size(); ++i) ok = IsIdChar(spec.target[i]);
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "target stage \"", absl::CEscape(spec.target),
          "\" must match [A-Za-z0-9][A-Za-z0-9_.-]{0,127}"));
    }
  }
  if (absl::Status s = ValidateImageTag(spec.tag); !s.ok()) return s;
  if (absl::Status s = ValidateSecrets(spec.secrets); !s.ok()) return s;
  if (spec.deadline_ms <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("deadline_ms must be > 0 (got ", spec.deadline_ms, ")"));
  }
  if (spec.work_dir.empty() || spec.work_dir.front() != '/') {
    return absl::InvalidArgumentError("work_dir must be an absolute path");
  }
  for (const std::string& p : spec.preload_images) {
    if (p.empty() || p.front() != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("preload image path \"", p, "\" is not absolute"));
    }
  }
  for (const std::string* p : {&spec.tools.containerd, &spec.tools.dockerd, &spec.tools.docker}) {
    if (p->empty() || p->front() != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("tool path \"", *p, "\" is not absolute (PATH is never searched)"));
    }
  }
  if (!spec.tools.buildx.empty() && spec.tools.buildx.front() != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "tool path \"", spec.tools.buildx, "\" is not absolute (PATH is never searched)"));
  }
  return absl::OkStatus();
}

}  // namespace kiln::agent::runner
