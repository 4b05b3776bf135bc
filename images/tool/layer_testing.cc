// File: images/tool/layer_testing.cc (see layer_testing.h)
#include "images/tool/layer_testing.h"

#include <archive.h>
#include <archive_entry.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "images/oci/digest.h"
#include "images/oci/layout.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::images::testing {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

oci::Descriptor WriteTar(const std::string& path, const std::vector<E>& entries, bool gzip) {
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (gzip) archive_write_add_filter_gzip(a);
  EXPECT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK);
  for (const E& x : entries) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, x.path.c_str());
    archive_entry_set_uid(e, x.uid);
    archive_entry_set_gid(e, x.gid);
    archive_entry_set_mtime(e, 1700000000, 0);
    switch (x.type) {
      case 'f':
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, static_cast<la_int64_t>(x.data.size()));
        break;
      case 'd':
        archive_entry_set_filetype(e, AE_IFDIR);
        break;
      case 'l':
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_symlink(e, x.data.c_str());
        break;
      case 'h':
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_hardlink(e, x.data.c_str());
        break;
      case 'c':
      case 'b':
        archive_entry_set_filetype(e, x.type == 'c' ? AE_IFCHR : AE_IFBLK);
        archive_entry_set_rdevmajor(e, x.major);
        archive_entry_set_rdevminor(e, x.minor);
        break;
      case 'p':
        archive_entry_set_filetype(e, AE_IFIFO);
        break;
      default:
        ADD_FAILURE() << "unknown entry type " << x.type;
    }
    archive_entry_set_perm(e, x.mode);
    for (const auto& [k, v] : x.xattrs) {
      archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
    }
    EXPECT_EQ(archive_write_header(a, e), ARCHIVE_OK) << x.path << ": " << archive_error_string(a);
    if (x.type == 'f' && !x.data.empty()) archive_write_data(a, x.data.data(), x.data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  int64_t size = 0;
  absl::StatusOr<std::string> d = oci::Sha256FileDigest(path, &size);
  EXPECT_TRUE(d.ok()) << d.status();
  return oci::Descriptor{std::string(gzip ? oci::kMediaTypeLayerTarGzip : oci::kMediaTypeLayerTar),
                         d.ok() ? *d : "", size, {}};
}

absl::StatusOr<oci::Manifest> WriteTestImage(const std::string& layout_dir,
                                             const std::string& scratch_dir,
                                             const std::vector<std::vector<E>>& layers,
                                             const std::vector<std::string>* diff_ids) {
  RETURN_IF_ERROR(oci::CreateLayoutDirs(layout_dir));
  oci::Manifest m;
  oci::ImageConfig config;
  for (size_t i = 0; i < layers.size(); ++i) {
    // diff_id: the digest of the same entries as an uncompressed tar.
    const std::string raw = absl::StrCat(scratch_dir, "/image-layer", i, ".tar");
    config.diff_ids.push_back(WriteTar(raw, layers[i], /*gzip=*/false).digest);
    const std::string tar = absl::StrCat(scratch_dir, "/image-layer", i, ".tar.gz");
    oci::Descriptor d = WriteTar(tar, layers[i], /*gzip=*/true);
    ASSIGN_OR_RETURN(oci::Descriptor blob, oci::WriteBlob(layout_dir, ReadAll(tar), d.media_type));
    m.layers.push_back(blob);
  }
  if (diff_ids != nullptr) config.diff_ids = *diff_ids;
  ASSIGN_OR_RETURN(m.config, oci::WriteBlob(layout_dir, oci::ImageConfigJson(config),
                                            oci::kMediaTypeImageConfig));
  ASSIGN_OR_RETURN(oci::Descriptor md, oci::WriteBlob(layout_dir, oci::ManifestJson(m),
                                                      oci::kMediaTypeImageManifest));
  RETURN_IF_ERROR(oci::WriteLayoutFiles(layout_dir, {md}));
  return m;
}

}  // namespace kiln::images::testing
