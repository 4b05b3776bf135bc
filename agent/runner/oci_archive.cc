#include "agent/runner/oci_archive.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
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
#include "agent/runner/ustar.h"
#include "nlohmann/json.hpp"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::agent::runner {
namespace {

using json = nlohmann::json;

constexpr char kManifestType[] = "application/vnd.oci.image.manifest.v1+json";
constexpr char kConfigType[] = "application/vnd.oci.image.config.v1+json";
constexpr char kLayerTar[] = "application/vnd.oci.image.layer.v1.tar";
constexpr char kLayerTarGzip[] = "application/vnd.oci.image.layer.v1.tar+gzip";

std::string ToHex(const unsigned char* d, unsigned n) {
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(d), n));
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return PosixError(errno ? errno : ENOENT, "open", path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  if (s.size() > limit) {
    return absl::DataLossError(absl::StrCat(path, " is larger than ", limit, " bytes"));
  }
  return s;
}

json DescriptorJson(const OciDescriptor& d) {
  return json{{"mediaType", d.media_type}, {"digest", d.digest}, {"size", d.size}};
}

}  // namespace

std::string Sha256Hex(absl::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &n, EVP_sha256(), nullptr);
  return ToHex(md, n);
}

absl::StatusOr<std::string> Sha256File(const std::string& path, int64_t* size) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PosixError(errno, "open", path);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  int64_t total = 0;
  while (true) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      EVP_MD_CTX_free(ctx);
      return PosixError(e, "read", path);
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(n));
    total += n;
  }
  close(fd);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx, md, &n);
  EVP_MD_CTX_free(ctx);
  if (size != nullptr) *size = total;
  return ToHex(md, n);
}

std::string OciManifestJson(const OciDescriptor& config, const std::vector<OciDescriptor>& layers) {
  json m;
  m["schemaVersion"] = 2;
  m["mediaType"] = kManifestType;
  m["config"] = DescriptorJson(config);
  m["layers"] = json::array();
  for (const OciDescriptor& l : layers) m["layers"].push_back(DescriptorJson(l));
  return m.dump();
}

std::string OciIndexJson(const OciDescriptor& manifest, absl::string_view tag) {
  std::string t(tag);
  size_t slash = t.rfind('/');
  size_t colon = t.rfind(':');
  std::string ref = (colon != std::string::npos && (slash == std::string::npos || colon > slash))
                        ? t.substr(colon + 1)
                        : "latest";
  json d = DescriptorJson(manifest);
  d["annotations"] = json{{"org.opencontainers.image.ref.name", ref},
                          {"io.containerd.image.name", t}};
  json idx;
  idx["schemaVersion"] = 2;
  idx["manifests"] = json::array({d});
  return idx.dump();
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
      ReadSmallFile(scratch_dir + "/manifest.json", 1 << 20);
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
  absl::StatusOr<std::string> config_text = ReadSmallFile(config_path, 16 << 20);
  if (!config_text.ok()) return config_text.status();
  json cfg = json::parse(*config_text, nullptr, false);
  if (!cfg.is_object() || !cfg["rootfs"].is_object() || !cfg["rootfs"]["diff_ids"].is_array()) {
    return absl::DataLossError("image config has no rootfs.diff_ids");
  }
  img.config = OciDescriptor{kConfigType, "sha256:" + Sha256Hex(*config_text),
                             static_cast<int64_t>(config_text->size())};
  const json& diff_ids = cfg["rootfs"]["diff_ids"];
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
    absl::StatusOr<std::string> hex = Sha256File(path, &size);
    if (!hex.ok()) return hex.status();
    unsigned char magic[2] = {0, 0};
    if (std::ifstream f(path, std::ios::binary); f) f.read(reinterpret_cast<char*>(magic), 2);
    bool gz = magic[0] == 0x1f && magic[1] == 0x8b;
    std::string digest = "sha256:" + *hex;
    if (!gz && (!diff_ids[i].is_string() || diff_ids[i].get<std::string>() != digest)) {
      return absl::DataLossError(absl::StrCat("layer ", i, " (", *rel, ") has digest ", digest,
                                              " but the config's diff_id is ",
                                              diff_ids[i].dump()));
    }
    img.layers.push_back(OciDescriptor{gz ? kLayerTarGzip : kLayerTar, digest, size});
    layer_paths.push_back(path);
  }
  const std::string manifest = OciManifestJson(img.config, img.layers);
  img.manifest = OciDescriptor{kManifestType, "sha256:" + Sha256Hex(manifest),
                               static_cast<int64_t>(manifest.size())};
  img.manifest_digest = img.manifest.digest;

  // docker-compatible manifest.json (dockerd 20.10 `docker load` reads only this).
  json compat = json::array();
  json entry;
  entry["Config"] = "blobs/sha256/" + img.config.digest.substr(7);
  entry["RepoTags"] = json::array({std::string(tag)});
  entry["Layers"] = json::array();
  for (const OciDescriptor& l : img.layers) entry["Layers"].push_back("blobs/sha256/" + l.digest.substr(7));
  compat.push_back(entry);

  const std::string tmp = out_path + ".tmp";
  {
    UstarWriter w;
    absl::Status s = w.Open(tmp);
    if (s.ok()) s = w.Bytes("oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
    if (s.ok()) s = w.Bytes("index.json", OciIndexJson(img.manifest, tag));
    if (s.ok()) s = w.Bytes("manifest.json", compat.dump());
    if (s.ok()) s = w.Dir("blobs/");
    if (s.ok()) s = w.Dir("blobs/sha256/");
    if (s.ok()) s = w.Bytes("blobs/sha256/" + img.config.digest.substr(7), *config_text);
    std::set<std::string> written;
    for (size_t i = 0; s.ok() && i < img.layers.size(); ++i) {
      if (!written.insert(img.layers[i].digest).second) continue;  // a repeated layer
      s = w.File("blobs/sha256/" + img.layers[i].digest.substr(7), layer_paths[i],
                 img.layers[i].size);
    }
    if (s.ok()) s = w.Bytes("blobs/sha256/" + img.manifest.digest.substr(7), manifest);
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
  auto blob_path = [&](const json& desc, std::string* path) -> absl::Status {
    if (!desc.is_object() || !desc["digest"].is_string()) {
      return absl::DataLossError("OCI descriptor without a digest");
    }
    std::string digest = desc["digest"].get<std::string>();
    if (digest.size() != 71 || digest.rfind("sha256:", 0) != 0 ||
        digest.find_first_not_of("0123456789abcdef", 7) != std::string::npos) {
      return absl::DataLossError(absl::StrCat("unsupported OCI digest \"", digest, "\""));
    }
    *path = absl::StrCat("blobs/sha256/", digest.substr(7));
    int64_t size = 0;
    absl::StatusOr<std::string> hex = Sha256File(scratch_dir + "/" + *path, &size);
    if (!hex.ok()) return hex.status();
    if ("sha256:" + *hex != digest) {
      return absl::DataLossError(absl::StrCat("OCI blob ", *path, " does not match its digest"));
    }
    return absl::OkStatus();
  };
  absl::StatusOr<std::string> index_text = ReadSmallFile(scratch_dir + "/index.json", 1 << 20);
  if (!index_text.ok()) return index_text.status();
  json index = json::parse(*index_text, nullptr, false);
  if (!index.is_object() || !index["manifests"].is_array() || index["manifests"].size() != 1) {
    return absl::DataLossError("OCI index.json must list exactly one manifest");
  }
  const json& mdesc = index["manifests"][0];
  std::string tag;
  if (mdesc.contains("annotations") && mdesc["annotations"].is_object()) {
    const json& ann = mdesc["annotations"];
    if (ann.contains("io.containerd.image.name") && ann["io.containerd.image.name"].is_string()) {
      tag = ann["io.containerd.image.name"].get<std::string>();
    } else if (ann.contains("org.opencontainers.image.ref.name") &&
               ann["org.opencontainers.image.ref.name"].is_string()) {
      std::string ref = ann["org.opencontainers.image.ref.name"].get<std::string>();
      if (ref.find_first_of(":/") != std::string::npos) tag = ref;
    }
  }
  if (tag.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "OCI archive ", oci_archive,
        " names no image (annotation io.containerd.image.name or a full "
        "org.opencontainers.image.ref.name); a FROM line could not refer to it"));
  }
  std::string manifest_rel;
  if (absl::Status s = blob_path(mdesc, &manifest_rel); !s.ok()) return s;
  absl::StatusOr<std::string> mtext = ReadSmallFile(scratch_dir + "/" + manifest_rel, 4 << 20);
  if (!mtext.ok()) return mtext.status();
  json m = json::parse(*mtext, nullptr, false);
  if (!m.is_object() || !m["layers"].is_array()) {
    return absl::DataLossError("OCI manifest has no layers array");
  }
  std::string config_rel;
  if (absl::Status s = blob_path(m["config"], &config_rel); !s.ok()) return s;
  std::vector<std::string> layer_rels;
  for (const json& l : m["layers"]) {
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
