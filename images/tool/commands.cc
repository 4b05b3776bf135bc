// File: images/tool/commands.cc (see commands.h)
#include "images/tool/commands.h"

#include <cstdio>
#include <cstdlib>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "images/tool/archive.h"
#include "images/tool/bzimage.h"
#include "images/tool/file_io.h"
#include "images/tool/image_disk.h"
#include "images/tool/manifest.h"
#include "images/tool/manifest_fs.h"
#include "images/tool/modules.h"
#include "images/tool/modules_kmod.h"
#include "third_party/absl_ext/status_macros.h"

// The flags of every subcommand (each subcommand's row in Commands() lists the ones it takes).
ABSL_FLAG(std::string, manifest, "", "the JSON manifest (images/tool/manifest.h)");
ABSL_FLAG(std::string, out, "", "the file to write");
ABSL_FLAG(bool, gzip, false, "gzip the archive (no timestamp in the gzip header)");
ABSL_FLAG(std::string, format, "pax", "tar format: pax or ustar");
ABSL_FLAG(std::string, archive, "", "the archive to list (cpio or tar, raw or gzip)");
ABSL_FLAG(std::string, bzimage, "", "the x86 bzImage");
ABSL_FLAG(std::string, module_dir, "", "/lib/modules/KVER of the kernel, after depmod");
ABSL_FLAG(std::string, kernel_release, "", "the kernel release KVER (no \"/\")");
ABSL_FLAG(std::vector<std::string>, module, {}, "a module name or alias to load");
ABSL_FLAG(std::string, out_dir, "", "root of the tree to write lib/modules/KVER/ into");
ABSL_FLAG(std::string, load_out, "", "the modules.load file to write (paths in load order)");
ABSL_FLAG(std::string, layout, "", "the OCI image layout directory");
ABSL_FLAG(std::string, ref, "",
          "the manifest's org.opencontainers.image.ref.name (default: the layout's only one)");
ABSL_FLAG(std::string, mkext4, "", "images/rootfs/mkext4.sh");
ABSL_FLAG(std::string, mke2fs_conf, "", "images/rootfs/mke2fs.conf");
ABSL_FLAG(int64_t, epoch, kiln::images::DiskOptions().epoch,
          "SOURCE_DATE_EPOCH of the disk's times, in seconds (>= 0)");
ABSL_FLAG(std::string, uuid, "", "file system UUID, lower-case 8-4-4-4-12");
ABSL_FLAG(std::string, hash_seed, "", "directory hash seed UUID (default: --uuid)");
ABSL_FLAG(std::string, label, kiln::images::DiskOptions().label,
          "volume label, at most 16 bytes");
ABSL_FLAG(int64_t, headroom_percent, kiln::images::DiskOptions().headroom_percent,
          "free space over the tree's size, in percent (>= 0)");
ABSL_FLAG(int64_t, extra_mib, kiln::images::DiskOptions().extra_mib,
          "more free space, in MiB (>= 0)");
ABSL_FLAG(std::vector<std::string>, device_dir, {},
          "a directory (image path) below which layers may create device nodes");
ABSL_FLAG(std::string, work_dir, "",
          "where the tree is unpacked (default: $TMPDIR, else /tmp); removed after");

namespace kiln::images {
namespace {

absl::Status RunExtractVmlinux(const ParsedCommandFlags& args) {
  RETURN_IF_ERROR(args.Require("bzimage"));
  RETURN_IF_ERROR(args.Require("out"));
  const std::string bzimage_path = absl::GetFlag(FLAGS_bzimage);
  const std::string out_path = absl::GetFlag(FLAGS_out);
  ASSIGN_OR_RETURN(std::string image, ReadFile(bzimage_path));
  absl::StatusOr<std::string> elf = ExtractVmlinux(image);
  if (!elf.ok()) {
    return absl::Status(elf.status().code(),
                        absl::StrCat(bzimage_path, ": ", elf.status().message()));
  }
  return WriteFile(out_path, *elf, 0644);
}

absl::Status WriteArchiveCommand(const ParsedCommandFlags& args, bool cpio) {
  RETURN_IF_ERROR(args.Require("manifest"));
  RETURN_IF_ERROR(args.Require("out"));
  const std::string manifest_path = absl::GetFlag(FLAGS_manifest);
  const std::string out_path = absl::GetFlag(FLAGS_out);
  ArchiveOptions opt;
  ASSIGN_OR_RETURN(opt.format, ParseArchiveFormat(cpio ? "cpio" : absl::GetFlag(FLAGS_format)));
  opt.gzip = absl::GetFlag(FLAGS_gzip);
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

absl::Status RunCpio(const ParsedCommandFlags& args) { return WriteArchiveCommand(args, true); }
absl::Status RunTar(const ParsedCommandFlags& args) { return WriteArchiveCommand(args, false); }

absl::Status RunList(const ParsedCommandFlags& args) {
  RETURN_IF_ERROR(args.Require("archive"));
  const std::string path = absl::GetFlag(FLAGS_archive);
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

absl::Status RunModules(const ParsedCommandFlags& args) {
  for (const char* required : {"module_dir", "kernel_release", "out_dir", "load_out"}) {
    RETURN_IF_ERROR(args.Require(required));
  }
  const std::string module_dir = absl::GetFlag(FLAGS_module_dir);
  const std::string kver = absl::GetFlag(FLAGS_kernel_release);
  const std::string out_dir = absl::GetFlag(FLAGS_out_dir);
  const std::string load_out = absl::GetFlag(FLAGS_load_out);
  const std::vector<std::string> names = absl::GetFlag(FLAGS_module);
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

absl::Status RunImageToDisk(const ParsedCommandFlags& args) {
  for (const char* required : {"layout", "out", "mkext4", "mke2fs_conf", "uuid"}) {
    RETURN_IF_ERROR(args.Require(required));
  }
  const std::string layout = absl::GetFlag(FLAGS_layout);
  const std::string out = absl::GetFlag(FLAGS_out);
  DiskOptions o;
  o.mkext4 = absl::GetFlag(FLAGS_mkext4);
  o.mke2fs_conf = absl::GetFlag(FLAGS_mke2fs_conf);
  o.uuid = absl::GetFlag(FLAGS_uuid);
  o.hash_seed = absl::GetFlag(FLAGS_hash_seed);
  o.label = absl::GetFlag(FLAGS_label);
  o.work_dir = absl::GetFlag(FLAGS_work_dir);
  for (auto [name, flag, dst] :
       {std::tuple<const char*, const absl::Flag<int64_t>*, int64_t*>{"epoch", &FLAGS_epoch,
                                                                     &o.epoch},
        {"headroom_percent", &FLAGS_headroom_percent, &o.headroom_percent},
        {"extra_mib", &FLAGS_extra_mib, &o.extra_mib}}) {
    *dst = absl::GetFlag(*flag);
    if (*dst < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " wants a number >= 0, got ", *dst));
    }
  }
  for (const std::string& d : absl::GetFlag(FLAGS_device_dir)) {
    ASSIGN_OR_RETURN(std::string norm, NormalizeLayerPath(d));
    if (norm.empty()) return absl::InvalidArgumentError("--device_dir must not be the root");
    o.unpack.device_dirs.push_back(norm);
  }
  ASSIGN_OR_RETURN(DiskStats s, ImageToDisk(layout, absl::GetFlag(FLAGS_ref), out, o));
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
       {.command = "kiln-image cpio", .flags = {"manifest", "out", "gzip"}},
       RunCpio},
      {"tar", "write a deterministic tar archive (ustar or pax) from a manifest",
       "--manifest FILE.json --out FILE [--format=pax|ustar] [--gzip=true|false]",
       "Like cpio, as a tar archive: uid/gid 0, empty uname/gname, fixed mtime, sorted.\n"
       "pax (default) adds extended headers only where ustar cannot hold a value.",
       {.command = "kiln-image tar", .flags = {"manifest", "out", "format", "gzip"}},
       RunTar},
      {"list", "list the members of an archive (cpio or tar, raw or gzip)",
       "--archive FILE",
       "Prints one line per member: type, mode, uid:gid, mtime, path, then the link target,\n"
       "device numbers or size.",
       {.command = "kiln-image list", .flags = {"archive"}},
       RunList},
      {"extract-vmlinux", "extract the ELF vmlinux from an x86 bzImage (lz4 or xz payload)",
       "--bzimage FILE --out FILE",
       "Reads the boot protocol header of the bzImage (setup_sects, payload_offset,\n"
       "payload_length), decompresses the payload (lz4 legacy frame or xz) and writes the\n"
       "ELF kernel, which QEMU and Cloud Hypervisor boot through its PVH entry note.",
       {.command = "kiln-image extract-vmlinux", .flags = {"bzimage", "out"}},
       RunExtractVmlinux},
      {"modules", "select kernel modules and their load order (libkmod, at build time)",
       "--module_dir DIR --kernel_release KVER --module NAME... --out_dir DIR --load_out FILE",
       "Resolves each --module (name or alias) in DIR (/lib/modules/KVER after depmod) like\n"
       "`modprobe --show-depends` (softdeps and dependencies first; no host configuration),\n"
       "copies the needed .ko files to OUT_DIR/lib/modules/KVER/ with a modules.dep of just\n"
       "those, and writes the guest's modules.load (absolute paths in load order).",
       {.command = "kiln-image modules",
        .flags = {"module_dir", "kernel_release", "module", "out_dir", "load_out"},
        .repeated = {&FLAGS_module}},
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
       {.command = "kiln-image image-to-disk",
        .flags = {"layout", "ref", "out", "mkext4", "mke2fs_conf", "uuid", "hash_seed", "label",
                  "epoch", "headroom_percent", "extra_mib", "device_dir", "work_dir"},
        .repeated = {&FLAGS_device_dir}},
       RunImageToDisk},
  };
  return *commands;
}

std::string CommandHelp(const Command& c) {
  return absl::StrCat("usage: kiln-image ", c.name, " ", c.usage, "\n\n", c.help, "\n\nflags:\n",
                      CommandFlagsHelp(c.flags));
}

absl::Status RunCommand(const Command& c, const std::vector<std::string>& args, bool* help) {
  ASSIGN_OR_RETURN(ParsedCommandFlags parsed, ParseCommandFlags(args, c.flags));
  *help = parsed.help;
  if (parsed.help) return absl::OkStatus();
  if (!parsed.positional.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", parsed.positional[0],
                                                   "\" (", c.name, " takes flags only; see --help)"));
  }
  return c.run(parsed);
}

}  // namespace kiln::images
