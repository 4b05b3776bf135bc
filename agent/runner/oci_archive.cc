#include "agent/file/file.h"
#include "agent/runner/oci_archive.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include <archive.h>
#include <archive_entry.h>

#include "agent/runner/context_tar.h"
#include "agent/ustar.h"
#include "images/oci/digest.h"
#include "images/oci/image.h"
#include "images/oci/layout.h"
#include "nlohmann/json.hpp"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::agent::runner {
namespace {

using json = nlohmann::json;

}  // namespace

std::string OciIndexJson(const OciDescriptor& manifest, absl::string_view tag) {
  std::string t(tag);
  size_t slash = t.rfind('/');
  size_t colon = t.rfind(':');
  std::string ref = (colon != std::string::npos && (slash == std::string::npos || colon > slash))
                        ? t.substr(colon + 1)
                        : "latest";
  oci::Descriptor d = manifest;
  d.annotations = {{std::string(oci::kAnnotationRefName), ref},
                   {std::string(oci::kAnnotationContainerdImageName), t}};
  return oci::IndexJson({d});
}

absl::StatusOr<OciImage> ConvertDockerArchiveToOci(const std::string& docker_archive,
                                                   const std::string& scratch_dir,
                                                   const std::string& out_path,
                                                   absl::string_view tag) {
  if (mkdir(scratch_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return PosixError(errno, "mkdir", scratch_dir);
  }
  ContextTarLimits limits;
  limits.max_entry_bytes = int64_t{64} << 30;
  limits.max_total_bytes = int64_t{256} << 30;
  absl::StatusOr<ContextTarStats> x = ExtractContextTar(docker_archive, scratch_dir, limits);
  if (!x.ok()) {
    return absl::Status(x.status().code(),
                        absl::StrCat("unpacking docker-archive: ", x.status().message()));
  }
  absl::StatusOr<std::string> manifest_text =
      file::ReadFile(scratch_dir + "/manifest.json", 1 << 20);
  if (!manifest_text.ok()) return manifest_text.status();
  json dm = json::parse(*manifest_text, nullptr, /*allow_exceptions=*/false);
  if (!dm.is_array() || dm.size() != 1 || !dm[0].is_object() || !dm[0]["Config"].is_string() ||
      !dm[0]["Layers"].is_array()) {
    return absl::DataLossError(
        "docker-archive manifest.json must hold exactly one image with Config and Layers");
  }
  OciImage img;
  const std::string config_rel = dm[0]["Config"].get<std::string>();
  absl::StatusOr<std::string> norm_cfg = NormalizeEntryPath(config_rel);
  if (!norm_cfg.ok()) return absl::DataLossError(norm_cfg.status().message());
  const std::string config_path = scratch_dir + "/" + *norm_cfg;
  absl::StatusOr<std::string> config_text = file::ReadFile(config_path, 16 << 20);
  if (!config_text.ok()) return config_text.status();
  absl::StatusOr<oci::ImageConfig> cfg = oci::ParseImageConfig(*config_text);
  if (!cfg.ok()) {
    return absl::DataLossError(absl::StrCat("docker-archive ", config_rel, ": ", cfg.status().message()));
  }
  img.config = OciDescriptor{std::string(oci::kMediaTypeImageConfig), oci::Sha256Digest(*config_text),
                             static_cast<int64_t>(config_text->size()), {}};
  const std::vector<std::string>& diff_ids = cfg->diff_ids;
  if (diff_ids.size() != dm[0]["Layers"].size()) {
    return absl::DataLossError(absl::StrCat("docker-archive has ", dm[0]["Layers"].size(),
                                            " layers but the config lists ", diff_ids.size(),
                                            " diff_ids"));
  }
  std::vector<std::string> layer_paths;
  for (size_t i = 0; i < diff_ids.size(); ++i) {
    if (!dm[0]["Layers"][i].is_string()) return absl::DataLossError("layer path is not a string");
    absl::StatusOr<std::string> rel = NormalizeEntryPath(dm[0]["Layers"][i].get<std::string>());
    if (!rel.ok()) return absl::DataLossError(rel.status().message());
    std::string path = scratch_dir + "/" + *rel;
    int64_t size = 0;
    absl::StatusOr<std::string> digest = oci::Sha256FileDigest(path, &size);
    if (!digest.ok()) return digest.status();
    unsigned char magic[2] = {0, 0};
    if (std::ifstream f(path, std::ios::binary); f) f.read(reinterpret_cast<char*>(magic), 2);
    bool gz = magic[0] == 0x1f && magic[1] == 0x8b;
    if (!gz && diff_ids[i] != *digest) {
      return absl::DataLossError(absl::StrCat("layer ", i, " (", *rel, ") has digest ", *digest,
                                              " but the config's diff_id is \"", diff_ids[i],
                                              "\""));
    }
    img.layers.push_back(OciDescriptor{
        std::string(gz ? oci::kMediaTypeLayerTarGzip : oci::kMediaTypeLayerTar), *digest, size, {}});
    layer_paths.push_back(path);
  }
  oci::Manifest m;
  m.config = img.config;
  m.layers = img.layers;
  const std::string manifest = oci::ManifestJson(m);
  img.manifest = OciDescriptor{std::string(oci::kMediaTypeImageManifest), oci::Sha256Digest(manifest),
                               static_cast<int64_t>(manifest.size()), {}};
  img.manifest_digest = img.manifest.digest;

  // docker-compatible manifest.json (dockerd 20.10 `docker load` reads only this).
  json compat = json::array();
  json entry;
  entry["Config"] = oci::BlobRelPath(img.config.digest);
  entry["RepoTags"] = json::array({std::string(tag)});
  entry["Layers"] = json::array();
  for (const OciDescriptor& l : img.layers) entry["Layers"].push_back(oci::BlobRelPath(l.digest));
  compat.push_back(entry);

  const std::string tmp = out_path + ".tmp";
  {
    UstarWriter w;
    absl::Status s = w.Open(tmp);
    if (s.ok()) s = w.Bytes(std::string(oci::kLayoutMarkerFile), std::string(oci::kLayoutMarkerJson));
    if (s.ok()) s = w.Bytes(std::string(oci::kLayoutIndexFile), OciIndexJson(img.manifest, tag));
    if (s.ok()) s = w.Bytes("manifest.json", compat.dump());
    if (s.ok()) s = w.Dir("blobs/");
    if (s.ok()) s = w.Dir("blobs/sha256/");
    if (s.ok()) s = w.Bytes(oci::BlobRelPath(img.config.digest), *config_text);
    std::set<std::string> written;
    for (size_t i = 0; s.ok() && i < img.layers.size(); ++i) {
      if (!written.insert(img.layers[i].digest).second) continue;  // a repeated layer
      s = w.File(oci::BlobRelPath(img.layers[i].digest), layer_paths[i],
                 img.layers[i].size);
    }
    if (s.ok()) s = w.Bytes(oci::BlobRelPath(img.manifest.digest), manifest);
    if (s.ok()) s = w.Finish();
    if (!s.ok()) {
      unlink(tmp.c_str());
      return s;
    }
  }
  if (rename(tmp.c_str(), out_path.c_str()) != 0) return PosixError(errno, "rename", tmp);
  struct stat st;
  if (stat(out_path.c_str(), &st) != 0) return PosixError(errno, "stat", out_path);
  img.archive_bytes = st.st_size;
  return img;
}

absl::StatusOr<ArchiveKind> DetectArchiveKind(const std::string& path) {
  struct archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  archive_read_support_format_gnutar(a);
  archive_read_support_filter_all(a);
  if (archive_read_open_filename(a, path.c_str(), 64 * 1024) != ARCHIVE_OK) {
    std::string err = archive_error_string(a) ? archive_error_string(a) : "unreadable";
    archive_read_free(a);
    return absl::DataLossError(absl::StrCat("image archive ", path, ": ", err));
  }
  bool manifest = false, index = false, layout = false;
  struct archive_entry* e;
  int r;
  while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
    absl::StatusOr<std::string> name = NormalizeEntryPath(archive_entry_pathname(e));
    if (name.ok()) {
      manifest |= *name == "manifest.json";
      index |= *name == "index.json";
      layout |= *name == "oci-layout";
    }
    archive_read_data_skip(a);
  }
  std::string err = r == ARCHIVE_EOF ? "" : (archive_error_string(a) ? archive_error_string(a) : "");
  archive_read_free(a);
  if (r != ARCHIVE_EOF) return absl::DataLossError(absl::StrCat("image archive ", path, ": ", err));
  if (manifest) return ArchiveKind::kDockerArchive;
  if (index && layout) return ArchiveKind::kOciArchive;
  return ArchiveKind::kUnknown;
}

absl::StatusOr<std::string> OciArchiveToDockerArchive(const std::string& oci_archive,
                                                      const std::string& scratch_dir,
                                                      const std::string& out_path) {
  if (mkdir(scratch_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return PosixError(errno, "mkdir", scratch_dir);
  }
  ContextTarLimits limits;
  limits.max_entry_bytes = int64_t{64} << 30;
  limits.max_total_bytes = int64_t{256} << 30;
  absl::StatusOr<ContextTarStats> x = ExtractContextTar(oci_archive, scratch_dir, limits);
  if (!x.ok()) {
    return absl::Status(x.status().code(),
                        absl::StrCat("unpacking OCI archive: ", x.status().message()));
  }
  // blob_path: the blob a (parsed, hence digest-validated) descriptor names, checked against
  // its digest.
  auto blob_path = [&](const oci::Descriptor& desc, std::string* path) -> absl::Status {
    *path = oci::BlobRelPath(desc.digest);
    absl::StatusOr<std::string> got = oci::Sha256FileDigest(scratch_dir + "/" + *path);
    if (!got.ok()) return got.status();
    if (*got != desc.digest) {
      return absl::DataLossError(absl::StrCat("OCI blob ", *path, " does not match its digest"));
    }
    return absl::OkStatus();
  };
  absl::StatusOr<std::string> index_text = file::ReadFile(scratch_dir + "/index.json", 1 << 20);
  if (!index_text.ok()) return index_text.status();
  absl::StatusOr<std::vector<oci::Descriptor>> index = oci::ParseIndex(*index_text, "OCI index.json");
  if (!index.ok()) return absl::DataLossError(index.status().message());
  if (index->size() != 1) {
    return absl::DataLossError("OCI index.json must list exactly one manifest");
  }
  const oci::Descriptor& mdesc = (*index)[0];
  std::string tag;
  const auto& ann = mdesc.annotations;
  if (auto it = ann.find(std::string(oci::kAnnotationContainerdImageName)); it != ann.end()) {
    tag = it->second;
  } else if (auto ref = ann.find(std::string(oci::kAnnotationRefName)); ref != ann.end()) {
    if (ref->second.find_first_of(":/") != std::string::npos) tag = ref->second;
  }
  if (tag.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "OCI archive ", oci_archive,
        " names no image (annotation io.containerd.image.name or a full "
        "org.opencontainers.image.ref.name); a FROM line could not refer to it"));
  }
  std::string manifest_rel;
  if (absl::Status s = blob_path(mdesc, &manifest_rel); !s.ok()) return s;
  absl::StatusOr<std::string> mtext = file::ReadFile(scratch_dir + "/" + manifest_rel, 4 << 20);
  if (!mtext.ok()) return mtext.status();
  absl::StatusOr<oci::Manifest> m = oci::ParseManifest(*mtext);
  if (!m.ok()) return absl::DataLossError(absl::StrCat("OCI manifest: ", m.status().message()));
  std::string config_rel;
  if (absl::Status s = blob_path(m->config, &config_rel); !s.ok()) return s;
  std::vector<std::string> layer_rels;
  for (const oci::Descriptor& l : m->layers) {
    std::string rel;
    if (absl::Status s = blob_path(l, &rel); !s.ok()) return s;
    layer_rels.push_back(rel);
  }
  json compat = json::array({json{{"Config", config_rel},
                                  {"RepoTags", json::array({tag})},
                                  {"Layers", layer_rels}}});
  UstarWriter w;
  absl::Status s = w.Open(out_path);
  if (s.ok()) s = w.Bytes("manifest.json", compat.dump());
  if (s.ok()) s = w.Dir("blobs/");
  if (s.ok()) s = w.Dir("blobs/sha256/");
  std::set<std::string> written;
  std::vector<std::string> all = layer_rels;
  all.insert(all.begin(), config_rel);
  for (const std::string& rel : all) {
    if (!s.ok() || !written.insert(rel).second) continue;
    struct stat st;
    if (stat((scratch_dir + "/" + rel).c_str(), &st) != 0) {
      s = PosixError(errno, "stat", scratch_dir + "/" + rel);
      break;
    }
    s = w.File(rel, scratch_dir + "/" + rel, st.st_size);
  }
  if (s.ok()) s = w.Finish();
  if (!s.ok()) {
    unlink(out_path.c_str());
    return s;
  }
  return tag;
}

}  // namespace kiln::agent::runner
