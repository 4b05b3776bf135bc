// File: images/tool/manifest.cc (see manifest.h)
#include "images/tool/manifest.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace kiln::images {
namespace {

uint32_t DefaultMode(EntryType t) {
  switch (t) {
    case EntryType::kDir:
      return 0755;
    case EntryType::kFile:
      return 0644;
    case EntryType::kSymlink:
      return 0777;
    case EntryType::kCharDev:
      return 0600;
    case EntryType::kTree:
      return 0;
  }
  return 0;
}

absl::StatusOr<uint32_t> ParseMode(const std::string& s) {
  if (s.empty() || s.size() > 5) return absl::InvalidArgumentError(absl::StrCat("bad mode \"", s, "\""));
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '7') {
      return absl::InvalidArgumentError(
          absl::StrCat("bad mode \"", s, "\": want an octal string such as \"0755\""));
    }
    v = v * 8 + static_cast<uint32_t>(c - '0');
  }
  if (v > 07777) return absl::InvalidArgumentError(absl::StrCat("mode \"", s, "\" above 07777"));
  return v;
}

absl::StatusOr<EntryType> ParseType(const std::string& s) {
  for (EntryType t : {EntryType::kDir, EntryType::kFile, EntryType::kSymlink,
                      EntryType::kCharDev, EntryType::kTree}) {
    if (s == EntryTypeName(t)) return t;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown type \"", s, "\" (want dir, file, symlink, chardev or tree)"));
}

absl::StatusOr<ManifestEntry> ParseEntry(const nlohmann::json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("entry is not a JSON object");
  static const char* const kKeys[] = {"type", "path", "mode", "source", "target", "major", "minor"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (std::find_if(std::begin(kKeys), std::end(kKeys),
                     [&](const char* k) { return it.key() == k; }) == std::end(kKeys)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown key \"", it.key(), "\""));
    }
  }
  auto str = [&](const char* key, std::string* out) -> absl::Status {
    if (!j.contains(key)) return absl::OkStatus();
    if (!j[key].is_string()) return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" is not a string"));
    *out = j[key].get<std::string>();
    return absl::OkStatus();
  };
  auto num = [&](const char* key, uint32_t* out) -> absl::Status {
    if (!j.contains(key)) return absl::InvalidArgumentError(absl::StrCat("missing \"", key, "\""));
    if (!j[key].is_number_unsigned() || j[key].get<uint64_t>() > 0xfffff) {
      return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" is not a device number"));
    }
    *out = j[key].get<uint32_t>();
    return absl::OkStatus();
  };
  ManifestEntry e;
  std::string type, mode;
  if (absl::Status s = str("type", &type); !s.ok()) return s;
  if (type.empty()) return absl::InvalidArgumentError("missing \"type\"");
  absl::StatusOr<EntryType> t = ParseType(type);
  if (!t.ok()) return t.status();
  e.type = *t;
  if (!j.contains("path")) return absl::InvalidArgumentError("missing \"path\"");
  for (const char* k : {"path", "mode", "source", "target"}) {
    std::string* dst = k == std::string("path")     ? &e.path
                       : k == std::string("mode")   ? &mode
                       : k == std::string("source") ? &e.source
                                                    : &e.target;
    if (absl::Status s = str(k, dst); !s.ok()) return s;
  }
  if (absl::Status s = CheckGuestPath(e.path, e.type == EntryType::kTree); !s.ok()) return s;
  e.mode = DefaultMode(e.type);
  if (!mode.empty()) {
    if (e.type == EntryType::kTree || e.type == EntryType::kSymlink) {
      return absl::InvalidArgumentError(absl::StrCat("\"mode\" is not allowed for ", type));
    }
    absl::StatusOr<uint32_t> m = ParseMode(mode);
    if (!m.ok()) return m.status();
    e.mode = *m;
  }
  bool wants_source = e.type == EntryType::kFile || e.type == EntryType::kTree;
  if (wants_source && e.source.empty()) return absl::InvalidArgumentError("missing \"source\"");
  if (!wants_source && !e.source.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("\"source\" is not allowed for ", type));
  }
  if (e.type == EntryType::kSymlink && e.target.empty()) {
    return absl::InvalidArgumentError("missing \"target\"");
  }
  if (e.type != EntryType::kSymlink && !e.target.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("\"target\" is not allowed for ", type));
  }
  if (e.type == EntryType::kCharDev) {
    if (absl::Status s = num("major", &e.major); !s.ok()) return s;
    if (absl::Status s = num("minor", &e.minor); !s.ok()) return s;
  } else if (j.contains("major") || j.contains("minor")) {
    return absl::InvalidArgumentError(absl::StrCat("\"major\"/\"minor\" are not allowed for ", type));
  }
  return e;
}

}  // namespace

const char* EntryTypeName(EntryType type) {
  switch (type) {
    case EntryType::kDir:
      return "dir";
    case EntryType::kFile:
      return "file";
    case EntryType::kSymlink:
      return "symlink";
    case EntryType::kCharDev:
      return "chardev";
    case EntryType::kTree:
      return "tree";
  }
  return "?";
}

absl::Status CheckGuestPath(absl::string_view path, bool allow_root) {
  if (path.empty()) {
    if (allow_root) return absl::OkStatus();
    return absl::InvalidArgumentError("empty guest path");
  }
  if (path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError("guest path contains a NUL byte");
  }
  if (path[0] == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("absolute guest path \"", path, "\": write it relative to the root"));
  }
  for (absl::string_view c : absl::StrSplit(path, '/')) {
    if (c == "..") return absl::InvalidArgumentError(absl::StrCat("\"..\" in guest path \"", path, "\""));
    if (c.empty() || c == ".") {
      return absl::InvalidArgumentError(
          absl::StrCat("empty or \".\" component in guest path \"", path, "\""));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Manifest> ParseManifestJson(absl::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr,
                                           /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("manifest: not valid JSON");
  if (!j.is_object() || !j.contains("entries") || !j["entries"].is_array() || j.size() != 1) {
    return absl::InvalidArgumentError("manifest: want an object with one key, \"entries\" (array)");
  }
  Manifest m;
  size_t i = 0;
  for (const nlohmann::json& je : j["entries"]) {
    absl::StatusOr<ManifestEntry> e = ParseEntry(je);
    if (!e.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("manifest entry ", i, ": ", e.status().message()));
    }
    m.entries.push_back(std::move(*e));
    ++i;
  }
  return m;
}

absl::StatusOr<std::vector<ArchiveEntry>> PlanArchive(const Manifest& manifest) {
  std::map<std::string, ArchiveEntry> by_path;  // sorted bytewise
  std::map<std::string, bool> implied;          // implied parent dirs not given explicitly
  for (const ManifestEntry& e : manifest.entries) {
    if (e.type == EntryType::kTree) {
      return absl::InvalidArgumentError(
          absl::StrCat("tree entry \"", e.path, "\" was not expanded (ExpandTrees)"));
    }
    if (absl::Status s = CheckGuestPath(e.path); !s.ok()) return s;
    if (by_path.count(e.path)) {
      return absl::AlreadyExistsError(absl::StrCat("duplicate entry \"", e.path, "\""));
    }
    ArchiveEntry a;
    a.type = e.type;
    a.path = e.path;
    a.mode = e.mode;
    a.source = e.source;
    a.target = e.target;
    a.major = e.major;
    a.minor = e.minor;
    by_path.emplace(e.path, std::move(a));
    implied.erase(e.path);
    for (size_t pos = e.path.find('/'); pos != std::string::npos; pos = e.path.find('/', pos + 1)) {
      std::string parent = e.path.substr(0, pos);
      if (!by_path.count(parent)) implied[parent] = true;
    }
  }
  for (const auto& [parent, unused] : implied) {
    if (by_path.count(parent)) continue;
    ArchiveEntry d;
    d.type = EntryType::kDir;
    d.path = parent;
    d.mode = 0755;
    by_path.emplace(parent, std::move(d));
  }
  std::vector<ArchiveEntry> plan;
  plan.reserve(by_path.size());
  uint64_t inode = 1;
  for (auto& [path, a] : by_path) {
    for (size_t pos = path.find('/'); pos != std::string::npos; pos = path.find('/', pos + 1)) {
      const ArchiveEntry& parent = by_path.at(path.substr(0, pos));
      if (parent.type != EntryType::kDir) {
        return absl::FailedPreconditionError(absl::StrCat(
            "entry \"", path, "\" lies below \"", parent.path, "\", which is a ",
            EntryTypeName(parent.type), ", not a dir"));
      }
    }
    a.inode = inode++;
    plan.push_back(std::move(a));
  }
  return plan;
}

}  // namespace kiln::images
