// File: harness/builder/leak_scan.cc
#include "harness/builder/leak_scan.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fstream>
#include <functional>
#include <map>
#include <set>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/secret_forms.h"
#include "images/oci/digest.h"
#include "nlohmann/json.hpp"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::harness {
namespace {

using agent::SecretForms;
using agent::SecretHit;
using agent::SecretMatcher;

constexpr size_t kChunk = 1 << 20;
constexpr size_t kMaxJsonBlob = 16 << 20;

// Hits: one secret's forms and the report its hits go to.
class Hits {
 public:
  Hits(absl::string_view secret, LeakReport* r) : forms_({std::string(secret)}), r_(r) {}
  const SecretForms* forms() const { return &forms_; }
  void Add(const std::vector<SecretHit>& hits, const std::string& where) {
    for (const SecretHit& h : hits) {
      ++r_->hits;
      if (r_->where.size() < 20) {
        r_->where.push_back(absl::StrCat(where, " (", agent::SecretFormName(h.form), ") bytes [",
                                         h.begin, ", ", h.end, ")"));
      }
    }
  }
  // Scan(text, where): `text` as one whole stream.
  void Scan(absl::string_view text, const std::string& where) {
    SecretMatcher m(&forms_);
    std::vector<SecretHit> hits;
    m.Feed(text, &hits);
    Add(hits, where);
  }

 private:
  SecretForms forms_;
  LeakReport* r_;
};

// Stream: a matcher over one stream fed in pieces, reporting as it goes.
class Stream {
 public:
  Stream(Hits* hits, std::string where) : hits_(hits), m_(hits->forms()), where_(std::move(where)) {}
  void Feed(absl::string_view bytes) {
    found_.clear();
    m_.Feed(bytes, &found_);
    hits_->Add(found_, where_);
  }

 private:
  Hits* hits_;
  SecretMatcher m_;
  std::string where_;
  std::vector<SecretHit> found_;
};

std::string ArchiveError(archive* a) {
  const char* e = archive_error_string(a);
  return e ? e : "unknown libarchive error";
}

// Magic(head): true when `head` (a blob's first bytes) starts a tar or a compressed stream.
bool LooksLikeArchive(const std::string& head) {
  auto starts = [&](absl::string_view m) { return absl::StartsWith(head, m); };
  return starts("\x1f\x8b") || starts("\x28\xb5\x2f\xfd") || starts("BZh") ||
         starts(absl::string_view("\xfd" "7zXZ\0", 6)) ||
         (head.size() >= 262 && head.compare(257, 5, "ustar") == 0);
}

// ScanEntryNames: the name and link target of one entry.
void ScanNames(Hits& hits, archive_entry* e, const std::string& where) {
  const char* name = archive_entry_pathname(e);
  const char* sl = archive_entry_symlink(e);
  const char* hl = archive_entry_hardlink(e);
  if (name) hits.Scan(name, where + " (name)");
  if (sl) hits.Scan(sl, where + " (symlink target)");
  if (hl) hits.Scan(hl, where + " (hardlink target)");
}

// The outer archive, read through libarchive.
struct Outer {
  archive* a = nullptr;
  ~Outer() {
    if (a) archive_read_free(a);
  }
};

absl::Status OpenOuter(const std::string& path, Outer* o) {
  o->a = archive_read_new();
  archive_read_support_filter_all(o->a);
  archive_read_support_format_tar(o->a);
  if (archive_read_open_filename(o->a, path.c_str(), 65536) != ARCHIVE_OK) {
    return absl::DataLossError(absl::StrCat("not a readable tar: ", path, ": ", ArchiveError(o->a)));
  }
  return absl::OkStatus();
}

// Inner layer reads pull from the outer archive's current entry.
struct InnerSource {
  archive* outer;
  std::vector<char> buf = std::vector<char>(kChunk);
  std::string error;
};
la_ssize_t InnerRead(archive*, void* data, const void** out) {
  auto* s = static_cast<InnerSource*>(data);
  const la_ssize_t n = archive_read_data(s->outer, s->buf.data(), s->buf.size());
  if (n < 0) s->error = ArchiveError(s->outer);
  *out = s->buf.data();
  return n;
}

// ScanLayer: the outer archive's current entry `name` as a (compressed) tar, to its end.
absl::Status ScanLayer(Hits& hits, archive* outer, const std::string& name, LeakReport& r) {
  InnerSource src{outer};
  archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  absl::Status status;
  if (archive_read_open(a, &src, nullptr, InnerRead, nullptr) != ARCHIVE_OK) {
    status = absl::DataLossError(absl::StrCat("layer ", name, " is not a readable tar: ",
                                              ArchiveError(a), " ", src.error));
  }
  std::vector<char> buf(kChunk);
  int64_t entries = 0;
  while (status.ok()) {
    archive_entry* e = nullptr;
    const int rc = archive_read_next_header(a, &e);
    if (rc == ARCHIVE_EOF) break;
    if (rc < ARCHIVE_WARN) {
      status = absl::DataLossError(absl::StrCat("layer ", name, ": cannot read to its end after ",
                                                entries, " entries: ", ArchiveError(a), " ",
                                                src.error));
      break;
    }
    const std::string where = absl::StrCat(name, ":", archive_entry_pathname(e) ? archive_entry_pathname(e) : "");
    ScanNames(hits, e, where);
    Stream data(&hits, where);
    la_ssize_t n;
    while ((n = archive_read_data(a, buf.data(), buf.size())) > 0) data.Feed({buf.data(), static_cast<size_t>(n)});
    if (n < 0) {
      status = absl::DataLossError(absl::StrCat("layer ", name, ": cannot read entry ", where,
                                                ": ", ArchiveError(a), " ", src.error));
      break;
    }
    ++entries;
  }
  archive_read_free(a);
  if (!status.ok()) return status;
  ++r.layers;
  r.layer_entries += entries;
  return absl::OkStatus();
}

// BlobName(digest): the blob's path in the archive (images/oci/digest.h BlobRelPath), or "" for
// a digest without an algorithm. Not validated further: a scan reads what the archive holds.
std::string BlobName(const std::string& digest) {
  return digest.find(':') == std::string::npos ? "" : oci::BlobRelPath(digest);
}

// Walk(json, fn): every string value (and object key) in `j`.
void Walk(const nlohmann::json& j, const std::function<void(const std::string&)>& fn) {
  if (j.is_string()) {
    fn(j.get<std::string>());
  } else if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      fn(it.key());
      Walk(it.value(), fn);
    }
  } else if (j.is_array()) {
    for (const auto& v : j) Walk(v, fn);
  }
}

}  // namespace

absl::StatusOr<LeakReport> ScanOciArchiveForSecret(const std::string& path,
                                                   absl::string_view secret) {
  LeakReport r;
  Hits hits(secret, &r);
  // 1. The file's raw bytes.
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot open archive ", path));
    Stream raw(&hits, "archive (raw bytes)");
    std::vector<char> buf(kChunk);
    uint64_t total = 0;
    while (in) {
      in.read(buf.data(), buf.size());
      const std::streamsize n = in.gcount();
      if (n <= 0) break;
      total += static_cast<uint64_t>(n);
      raw.Feed({buf.data(), static_cast<size_t>(n)});
    }
    if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read archive ", path));
    if (total == 0) return absl::NotFoundError(absl::StrCat("empty archive ", path));
  }
  // 2. Every entry, streamed; keep the JSON blobs; note which blobs look like layers.
  std::map<std::string, std::string> json_blobs;
  std::set<std::string> names, archives;
  {
    Outer o;
    if (absl::Status s = OpenOuter(path, &o); !s.ok()) return s;
    std::vector<char> buf(kChunk);
    while (true) {
      archive_entry* e = nullptr;
      const int rc = archive_read_next_header(o.a, &e);
      if (rc == ARCHIVE_EOF) break;
      if (rc < ARCHIVE_WARN) {
        return absl::DataLossError(absl::StrCat("archive ", path, ": cannot read entry ",
                                                r.blobs + 1, ": ", ArchiveError(o.a)));
      }
      ++r.blobs;
      const std::string name = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
      names.insert(name);
      ScanNames(hits, e, name);
      Stream data(&hits, name);
      std::string head, body;
      bool json = false;
      la_ssize_t n;
      while ((n = archive_read_data(o.a, buf.data(), buf.size())) > 0) {
        const absl::string_view piece(buf.data(), static_cast<size_t>(n));
        data.Feed(piece);
        if (head.size() < 512) {
          const absl::string_view more = piece.substr(0, 512 - head.size());
          head.append(more.data(), more.size());
        }
        if (body.empty()) {
          const size_t first = piece.find_first_not_of(" \t\r\n");
          json = first != absl::string_view::npos && (piece[first] == '{' || piece[first] == '[');
        }
        if (json && body.size() + piece.size() <= kMaxJsonBlob) {
          body.append(piece.data(), piece.size());
        } else {
          json = false;
        }
        if (!json) body = "-";  // not (or too big to keep as) JSON
      }
      if (n < 0) {
        return absl::DataLossError(absl::StrCat("archive ", path, ": cannot read blob ", name, ": ",
                                                ArchiveError(o.a)));
      }
      if (json) json_blobs[name] = std::move(body);
      if (absl::StartsWith(name, "blobs/") && LooksLikeArchive(head)) archives.insert(name);
    }
  }
  // 3. index.json -> manifests -> config and layers; each must exist and parse.
  std::set<std::string> layers = archives, configs;
  auto parse = [&](const std::string& name) -> absl::StatusOr<nlohmann::json> {
    auto it = json_blobs.find(name);
    if (it == json_blobs.end()) {
      return absl::DataLossError(absl::StrCat("archive ", path, ": ",
                                              names.count(name) ? "not JSON: " : "missing: ", name));
    }
    nlohmann::json j = nlohmann::json::parse(it->second, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return absl::DataLossError(absl::StrCat("archive ", path, ": does not parse as a JSON object: ",
                                              name));
    }
    return j;
  };
  std::vector<std::string> pending = {"index.json"};
  std::set<std::string> seen;
  while (!pending.empty()) {
    const std::string name = pending.back();
    pending.pop_back();
    if (!seen.insert(name).second) continue;
    absl::StatusOr<nlohmann::json> j = parse(name);
    if (!j.ok()) return j.status();
    auto digest_blob = [&](const nlohmann::json& d) -> absl::StatusOr<std::string> {
      const std::string b = d.is_object() && d.contains("digest") && d["digest"].is_string()
                                ? BlobName(d["digest"].get<std::string>())
                                : "";
      if (b.empty()) {
        return absl::DataLossError(absl::StrCat("archive ", path, ": ", name,
                                                ": a descriptor without a valid digest"));
      }
      return b;
    };
    if (j->contains("manifests")) {  // an index
      if (!(*j)["manifests"].is_array()) {
        return absl::DataLossError(absl::StrCat("archive ", path, ": ", name, ": manifests is not a list"));
      }
      for (const auto& d : (*j)["manifests"]) {
        absl::StatusOr<std::string> b = digest_blob(d);
        if (!b.ok()) return b.status();
        pending.push_back(*b);
      }
    } else if (j->contains("layers") || j->contains("config")) {  // a manifest
      if (j->contains("config")) {
        absl::StatusOr<std::string> b = digest_blob((*j)["config"]);
        if (!b.ok()) return b.status();
        configs.insert(*b);
      }
      if (j->contains("layers")) {
        if (!(*j)["layers"].is_array()) {
          return absl::DataLossError(absl::StrCat("archive ", path, ": ", name, ": layers is not a list"));
        }
        for (const auto& d : (*j)["layers"]) {
          absl::StatusOr<std::string> b = digest_blob(d);
          if (!b.ok()) return b.status();
          if (!names.count(*b)) {
            return absl::DataLossError(absl::StrCat("archive ", path, ": ", name,
                                                    " lists a layer that is missing: ", *b));
          }
          layers.insert(*b);
        }
      }
    } else if (name != "index.json") {
      return absl::DataLossError(absl::StrCat("archive ", path, ": ", name,
                                              " is neither an index nor a manifest"));
    }
  }
  // Configs: the manifests' configs, and any other JSON blob carrying rootfs and history.
  for (const auto& [name, body] : json_blobs) {
    if (!absl::StartsWith(name, "blobs/")) continue;
    nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_object() && j.contains("rootfs") && j.contains("history")) configs.insert(name);
  }
  for (const std::string& name : configs) {
    absl::StatusOr<nlohmann::json> j = parse(name);
    if (!j.ok()) return j.status();
    r.config_scanned = true;
    if (j->contains("history") && (*j)["history"].is_array()) {
      const nlohmann::json& h = (*j)["history"];
      r.history_entries += static_cast<int64_t>(h.size());
      for (size_t i = 0; i < h.size(); ++i) {
        Walk(h[i], [&](const std::string& s) {
          hits.Scan(s, absl::StrCat(name, " (history[", i, "])"));
        });
      }
    }
    for (auto it = j->begin(); it != j->end(); ++it) {
      if (it.key() == "history") continue;
      Walk(it.value(), [&](const std::string& s) { hits.Scan(s, name + " (config " + it.key() + ")"); });
    }
  }
  // 4. Every layer, streamed from the outer archive, to its end.
  {
    Outer o;
    if (absl::Status s = OpenOuter(path, &o); !s.ok()) return s;
    std::set<std::string> done;
    while (true) {
      archive_entry* e = nullptr;
      const int rc = archive_read_next_header(o.a, &e);
      if (rc == ARCHIVE_EOF) break;
      if (rc < ARCHIVE_WARN) {
        return absl::DataLossError(absl::StrCat("archive ", path, ": ", ArchiveError(o.a)));
      }
      const std::string name = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
      if (!layers.count(name) || !done.insert(name).second) continue;
      if (absl::Status s = ScanLayer(hits, o.a, name, r); !s.ok()) return s;
    }
  }
  return r;
}

absl::StatusOr<LeakReport> ScanFileForSecret(const std::string& path, absl::string_view secret) {
  LeakReport r;
  Hits hits(secret, &r);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PosixError(errno, "open", path);
  absl::Cleanup close_fd = [fd] { close(fd); };
  const off_t size = lseek(fd, 0, SEEK_END);
  if (size < 0) return PosixError(errno, "lseek", path);
  std::string buf(4 * kChunk, '\0');
  for (off_t pos = 0; pos < size;) {
    const off_t data = lseek(fd, pos, SEEK_DATA);
    if (data < 0) break;  // ENXIO: only a hole is left
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) hole = size;
    ++r.blobs;
    Stream stream(&hits, absl::StrCat(path, "@", data));  // one stream per extent
    for (off_t off = data; off < hole;) {
      const ssize_t n = pread(fd, buf.data(), std::min<off_t>(buf.size(), hole - off), off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        return absl::DataLossError(absl::StrCat("reading ", path, " at byte ", off, ": ",
                                                n < 0 ? strerror(errno) : "unexpected end"));
      }
      stream.Feed(absl::string_view(buf.data(), static_cast<size_t>(n)));
      off += n;
    }
    pos = hole;
  }
  return r;
}

LeakReport ScanLogsForSecret(const std::vector<agent::Log>& logs, absl::string_view secret) {
  LeakReport r;
  Hits hits(secret, &r);
  agent::StepMatchers steps(hits.forms());
  std::vector<SecretHit> found;
  for (size_t i = 0; i < logs.size(); ++i) {
    ++r.blobs;
    const agent::BuildkitLine line = agent::SplitBuildkitLine(logs[i].text);
    SecretMatcher& m = steps.For(line.key);
    found.clear();
    m.Feed(line.content, &found);
    m.Feed("\n", &found);
    hits.Add(found, absl::StrCat("log line ", i, line.key.empty() ? "" : " step ", line.key));
  }
  return r;
}

}  // namespace kiln::harness
