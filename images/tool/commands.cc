// File: images/tool/commands.cc (see commands.h)
#include "images/tool/commands.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "images/tool/args.h"
#include "images/tool/bzimage.h"
#include "images/tool/file_io.h"
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

}  // namespace

const std::vector<Command>& Commands() {
  static const auto* commands = new std::vector<Command>{
      {"extract-vmlinux", "extract the ELF vmlinux from an x86 bzImage (lz4 or xz payload)",
       "--bzimage FILE --out FILE",
       "Reads the boot protocol header of the bzImage (setup_sects, payload_offset,\n"
       "payload_length), decompresses the payload (lz4 legacy frame or xz) and writes the\n"
       "ELF kernel, which QEMU and Cloud Hypervisor boot through its PVH entry note.",
       RunExtractVmlinux},
  };
  return *commands;
}

}  // namespace kiln::images
