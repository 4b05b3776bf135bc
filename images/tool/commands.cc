// File: images/tool/commands.cc (see commands.h)
#include "images/tool/commands.h"

#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "images/tool/archive.h"
#include "images/tool/args.h"
#include "images/tool/bzimage.h"
#include "images/tool/file_io.h"
#include "images/tool/image_disk.h"
#include "images/tool/manifest.h"
#include "images/tool/manifest_fs.h"
#include "images/tool/modules.h"
#include "images/tool/modules_kmod.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::images {
namespace {

absl::Status RunExtractVmlinux(const std::vector<std::string>& argv) {
  ASSIGN_OR_RETURN(Args args, ParseArgs(argv, {"bzimage", "out"}));
  ASSIGN_OR_RETURN(std::string bzimage_path, args.Require("bzimage"));
  ASSIGN_OR_RETURN(std::string out_path, args.Require("out"));
  ASSIGN_OR_RETURN(std::string image, ReadFile(bzimage_path));
  absl::StatusOr<std::string> elf = ExtractVmlinux(image);
  if (!elf.ok()) {
    return absl::Status(elf.status().code(),
                        absl::StrCat(bzimage_path, ": ", elf.status().message()));
  }
  return WriteFile(out_path, *elf, 0644);
}

absl::Status WriteArchiveCommand(const std::vector<std::string>& argv, bool cpio) {
  ASSIGN_OR_RETURN(Args args, ParseArgs(argv, {"manifest", "out", "gzip", "format"}));
  ASSIGN_OR_RETURN(std::string manifest_path, args.Require("manifest"));
  ASSIGN_OR_RETURN(std::string out_path, args.Require("out"));
  ArchiveOptions opt;
  ASSIGN_OR_RETURN(opt.format, ParseArchiveFormat(cpio ? "cpio" : args.Get("format", "pax")));
  if (cpio && args.Has("format")) return absl::InvalidArgumentError("cpio takes no --format");
  std::string gzip = args.Get("gzip", "false");
  if (gzip != "true" && gzip != "false") {
    return absl::InvalidArgumentError("--gzip wants true or false");
  }
  opt.gzip = gzip == "true";
  const char* sde = std::getenv("SOURCE_DATE_EPOCH");
  ASSIGN_OR_RETURN(opt.mtime, MtimeFromEnv(sde ? sde : ""));
  ASSIGN_OR_RETURN(std::string text, ReadFile(manifest_path));
  absl::StatusOr<Manifest> m = ParseManifestJson(text);
  if (!m.ok()) {
    return absl::Status(m.status().code(), absl::StrCat(manifest_path, ": ", m.status().message()));
  }
  ASSIGN_OR_RETURN(Manifest expanded, ExpandTrees(*m));
  ASSIGN_OR_RETURN(std::vector<ArchiveEntry> plan, PlanArchive(expanded));
  ASSIGN_OR_RETURN(std::string bytes, WriteArchive(plan, opt, ReadFile));
  return WriteFile(out_path, bytes, 0644);
}

absl::Status RunCpio(const std::vector<std::string>& argv) { return WriteArchiveCommand(argv, true); }
absl::Status RunTar(const std::vector<std::string>& argv) { return WriteArchiveCommand(argv, false); }

absl::Status RunList(const std::vector<std::string>& argv) {
  ASSIGN_OR_RETURN(Args args, ParseArgs(argv, {"archive"}));
  ASSIGN_OR_RETURN(std::string path, args.Require("archive"));
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  ASSIGN_OR_RETURN(std::vector<ListedEntry> entries, ListArchive(bytes));
  for (const ListedEntry& e : entries) {
    std::string extra;
    if (e.type == EntryType::kSymlink) extra = absl::StrCat(" -> ", e.target);
    if (e.type == EntryType::kCharDev) extra = absl::StrCat(" ", e.major, ":", e.minor);
    if (e.type == EntryType::kFile) extra = absl::StrCat(" ", e.content.size());
    std::printf("%s\t%04o\t%lld:%lld\t%lld\t%s%s\n", EntryTypeName(e.type), e.mode,
                static_cast<long long>(e.uid), static_cast<long long>(e.gid),
                static_cast<long long>(e.mtime), e.path.c_str(), extra.c_str());
  }
  return absl::OkStatus();
}

absl::Status RunModules(const std::vector<std::string>& argv) {
  ASSIGN_OR_RETURN(Args args, ParseArgs(argv, {"module_dir", "kernel_release", "module",
                                               "out_dir", "load_out"}));
  ASSIGN_OR_RETURN(std::string module_dir, args.Require("module_dir"));
  ASSIGN_OR_RETURN(std::string kver, args.Require("kernel_release"));
  ASSIGN_OR_RETURN(std::string out_dir, args.Require("out_dir"));
  ASSIGN_OR_RETURN(std::string load_out, args.Require("load_out"));
  std::vector<std::string> names = args.GetAll("module");
  if (names.empty()) return absl::InvalidArgumentError("no --module given");
  if (kver.find('/') != std::string::npos || kver.empty() || kver == "." || kver == "..") {
    return absl::InvalidArgumentError(absl::StrCat("bad --kernel_release \"", kver, "\""));
  }
  std::vector<std::vector<std::string>> orders;
  for (const std::string& n : names) {
    absl::StatusOr<ProbeOrder> o = ResolveProbeOrder(module_dir, n);
    if (!o.ok()) return o.status();
    orders.push_back(o->paths);
  }
  ModuleSet set = MergeProbeOrders(orders);
  ASSIGN_OR_RETURN(std::string dep_text, ReadFile(module_dir + "/modules.dep"));
  ASSIGN_OR_RETURN(std::string dep, FilterModulesDep(dep_text, set));
  std::string root = absl::StrCat(out_dir, "/lib/modules/", kver);
  RETURN_IF_ERROR(MakeDirs(root));
  for (const std::string& p : set.load_order) {
    RETURN_IF_ERROR(CheckGuestPath(p));
    std::string dst = absl::StrCat(root, "/", p);
    RETURN_IF_ERROR(MakeDirs(dst.substr(0, dst.rfind('/'))));
    ASSIGN_OR_RETURN(std::string ko, ReadFile(absl::StrCat(module_dir, "/", p)));
    RETURN_IF_ERROR(WriteFile(dst, ko, 0644));
  }
  RETURN_IF_ERROR(WriteFile(root + "/modules.dep", dep, 0644));
  return WriteFile(load_out, ModulesLoadText(kver, set), 0644);
}

absl::Status RunImageToDisk(const std::vector<std::string>& argv) {
  ASSIGN_OR_RETURN(Args args, ParseArgs(argv, {"layout", "ref", "out", "mkext4", "mke2fs_conf",
                                               "epoch", "uuid", "hash_seed", "label",
                                               "headroom_percent", "extra_mib", "device_dir",
                                               "work_dir"}));
  ASSIGN_OR_RETURN(std::string layout, args.Require("layout"));
  ASSIGN_OR_RETURN(std::string out, args.Require("out"));
  DiskOptions o;
  ASSIGN_OR_RETURN(o.mkext4, args.Require("mkext4"));
  ASSIGN_OR_RETURN(o.mke2fs_conf, args.Require("mke2fs_conf"));
  ASSIGN_OR_RETURN(o.uuid, args.Require("uuid"));
  o.hash_seed = args.Get("hash_seed");
  o.label = args.Get("label", o.label);
  o.work_dir = args.Get("work_dir");
  for (auto [name, dst] : {std::pair<const char*, int64_t*>{"epoch", &o.epoch},
                           {"headroom_percent", &o.headroom_percent},
                           {"extra_mib", &o.extra_mib}}) {
    if (!args.Has(name)) continue;
    if (!absl::SimpleAtoi(args.Get(name), dst) || *dst < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " wants a number >= 0, got \"", args.Get(name), "\""));
    }
  }
  for (const std::string& d : args.GetAll("device_dir")) {
    ASSIGN_OR_RETURN(std::string norm, NormalizeLayerPath(d));
    if (norm.empty()) return absl::InvalidArgumentError("--device_dir must not be the root");
    o.unpack.device_dirs.push_back(norm);
  }
  ASSIGN_OR_RETURN(DiskStats s, ImageToDisk(layout, args.Get("ref"), out, o));
  std::fprintf(stderr,
               "kiln-image image-to-disk: %s: %lld layers (%lld bytes), %lld entries, %lld "
               "whiteouts, %lld opaque dirs; verify+unpack %lld ms, mkext4 %lld ms\n",
               s.manifest_digest.c_str(), static_cast<long long>(s.unpack.layers),
               static_cast<long long>(s.unpack.layer_bytes),
               static_cast<long long>(s.unpack.entries),
               static_cast<long long>(s.unpack.whiteouts),
               static_cast<long long>(s.unpack.opaque_dirs),
               static_cast<long long>(s.unpack_ms), static_cast<long long>(s.mkfs_ms));
  return absl::OkStatus();
}

}  // namespace

const std::vector<Command>& Commands() {
  static const auto* commands = new std::vector<Command>{
      {"cpio", "write a deterministic newc cpio archive (initramfs) from a manifest",
       "--manifest FILE.json --out FILE [--gzip=true|false]",
       "Reads the JSON manifest (images/tool/manifest.h: file, dir, symlink, chardev, tree\n"
       "entries), adds parent directories, sorts entries by path and writes a newc cpio with\n"
       "fixed mtime (SOURCE_DATE_EPOCH or 0), uid/gid 0 and fixed inode numbers. --gzip=true\n"
       "compresses it with no timestamp in the gzip header.",
       RunCpio},
      {"tar", "write a deterministic tar archive (ustar or pax) from a manifest",
       "--manifest FILE.json --out FILE [--format=pax|ustar] [--gzip=true|false]",
       "Like cpio, as a tar archive: uid/gid 0, empty uname/gname, fixed mtime, sorted.\n"
       "pax (default) adds extended headers only where ustar cannot hold a value.",
       RunTar},
      {"list", "list the members of an archive (cpio or tar, raw or gzip)",
       "--archive FILE",
       "Prints one line per member: type, mode, uid:gid, mtime, path, then the link target,\n"
       "device numbers or size.",
       RunList},
      {"extract-vmlinux", "extract the ELF vmlinux from an x86 bzImage (lz4 or xz payload)",
       "--bzimage FILE --out FILE",
       "Reads the boot protocol header of the bzImage (setup_sects, payload_offset,\n"
       "payload_length), decompresses the payload (lz4 legacy frame or xz) and writes the\n"
       "ELF kernel, which QEMU and Cloud Hypervisor boot through its PVH entry note.",
       RunExtractVmlinux},
      {"modules", "select kernel modules and their load order (libkmod, at build time)",
       "--module_dir DIR --kernel_release KVER --module NAME... --out_dir DIR --load_out FILE",
       "Resolves each --module (name or alias) in DIR (/lib/modules/KVER after depmod) like\n"
       "`modprobe --show-depends` (softdeps and dependencies first; no host configuration),\n"
       "copies the needed .ko files to OUT_DIR/lib/modules/KVER/ with a modules.dep of just\n"
       "those, and writes the guest's modules.load (absolute paths in load order).",
       RunModules},
      {"image-to-disk", "make an ext4 root disk from an OCI image layout (layers + whiteouts)",
       "--layout DIR [--ref NAME] --out FILE --mkext4 mkext4.sh --mke2fs_conf FILE --uuid UUID\n"
       "    [--hash_seed UUID] [--label L] [--epoch S] [--headroom_percent N] [--extra_mib N]\n"
       "    [--device_dir DIR]... [--work_dir DIR]",
       "Reads the image (manifest --ref, or the layout's only one), verifies the config and\n"
       "every layer digest, unpacks the layers in manifest order into a temporary tree with\n"
       "OCI whiteouts (.wh.NAME, .wh..wh..opq) applied, keeping modes, numeric owners,\n"
       "xattrs and hard links, refusing hostile layers (paths or links out of the root,\n"
       "device nodes outside --device_dir), then runs mkext4.sh on the tree (fixed UUID,\n"
       "hash seed, label, times: the same image gives the same disk). Needs root.\n"
       "Prints the manifest digest, counts and times (ms) on stderr.",
       RunImageToDisk},
  };
  return *commands;
}

}  // namespace kiln::images
