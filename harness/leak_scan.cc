// File: harness/leak_scan.cc
#include "harness/leak_scan.h"

#include <archive.h>
#include <archive_entry.h>

#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace kiln::harness {
namespace {

int64_t CountOccurrences(absl::string_view hay, absl::string_view needle) {
  if (needle.empty()) return 0;
  int64_t n = 0;
  for (size_t pos = hay.find(needle); pos != absl::string_view::npos;
       pos = hay.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

void AddHits(LeakReport& r, int64_t n, const std::string& where) {
  if (n <= 0) return;
  r.hits += n;
  if (r.where.size() < 20) r.where.push_back(absl::StrCat(where, " x", n));
}

// Reads all entries of an in-memory (possibly compressed) tar. Returns false if it is not one.
bool ForEachTarEntry(const std::string& data,
                     const std::function<void(const std::string& name, const std::string& link,
                                              const std::string& body)>& fn,
                     int64_t* entries) {
  archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  bool ok = archive_read_open_memory(a, data.data(), data.size()) == ARCHIVE_OK;
  archive_entry* e = nullptr;
  bool any = false;
  while (ok) {
    const int r = archive_read_next_header(a, &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      ok = any;
      break;
    }
    any = true;
    std::string body;
    char buf[65536];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof(buf))) > 0) body.append(buf, n);
    const char* name = archive_entry_pathname(e);
    const char* sl = archive_entry_symlink(e);
    const char* hl = archive_entry_hardlink(e);
    fn(name ? name : "", sl ? sl : (hl ? hl : ""), body);
    ++*entries;
  }
  archive_read_free(a);
  return ok && any;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

absl::StatusOr<LeakReport> ScanOciArchiveForSecret(const std::string& path,
                                                   absl::string_view secret) {
  const std::string data = ReadAll(path);
  if (data.empty()) return absl::NotFoundError(absl::StrCat("empty or missing archive ", path));
  LeakReport r;
  AddHits(r, CountOccurrences(data, secret), "archive (raw bytes)");
  std::map<std::string, std::string> blobs;
  int64_t outer_entries = 0;
  const bool ok = ForEachTarEntry(
      data,
      [&](const std::string& name, const std::string& link, const std::string& body) {
        AddHits(r, CountOccurrences(name, secret) + CountOccurrences(link, secret),
                name + " (name)");
        AddHits(r, CountOccurrences(body, secret), name);
        blobs[name] = body;
      },
      &outer_entries);
  if (!ok) return absl::DataLossError(absl::StrCat("not a readable tar: ", path));
  r.blobs = outer_entries;
  for (const auto& [name, body] : blobs) {
    if (!absl::StartsWith(name, "blobs/")) continue;
    int64_t entries = 0;
    if (ForEachTarEntry(
            body,
            [&](const std::string& n, const std::string& link, const std::string& b) {
              AddHits(r, CountOccurrences(n, secret) + CountOccurrences(link, secret),
                      name + ":" + n + " (name)");
              AddHits(r, CountOccurrences(b, secret), name + ":" + n);
            },
            &entries)) {
      ++r.layers;
      r.layer_entries += entries;
      continue;
    }
    // A JSON blob: the image config carries "history" (and "rootfs").
    nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("rootfs") && j.contains("history")) {
      r.config_scanned = true;
      r.history_entries = static_cast<int64_t>(j["history"].size());
      for (const auto& h : j["history"]) {
        AddHits(r, CountOccurrences(h.dump(), secret), name + " (history)");
      }
    }
  }
  return r;
}

LeakReport ScanLogsForSecret(const std::vector<agent::Log>& logs, absl::string_view secret) {
  LeakReport r;
  std::vector<std::pair<std::string, std::string>> forms = {{"raw", std::string(secret)}};
  if (secret.size() >= 4) {
    forms.push_back({"hex", absl::BytesToHexString(secret)});
    forms.push_back({"base64", absl::Base64Escape(secret)});
  }
  for (size_t i = 0; i < logs.size(); ++i) {
    ++r.blobs;
    for (const auto& [form, needle] : forms) {
      AddHits(r, CountOccurrences(logs[i].text, needle),
              absl::StrCat("log line ", i, " (", form, ")"));
    }
  }
  return r;
}

}  // namespace kiln::harness
