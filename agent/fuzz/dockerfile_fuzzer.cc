// File: agent/fuzz/dockerfile_fuzzer.cc
// libFuzzer target for runner::ScanDockerfile (dockerfile.h), the fail-closed scanner of
// secret mounts and parser directives. The input is a Dockerfile. Invariants (abort on
// violation):
//   - nothing crashes; a refusal is a non-OK status with a message;
//   - every secret mount found has an id that passes ValidateSecretId and a line number
//     within the text;
//   - CheckSecretsDelivered with no secrets is OK iff there is no secret mount, and with
//     every found id delivered it is OK.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "agent/runner/dockerfile.h"
#include "agent/runner/spec.h"

namespace {
void Check(bool ok) {
  if (!ok) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kiln::agent::runner;
  absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<DockerfileInfo> info = ScanDockerfile(text);
  if (!info.ok()) {
    Check(!info.status().message().empty());
    return 0;
  }
  const int lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 1;
  std::map<std::string, std::string> all;
  for (const SecretMount& m : info->secret_mounts) {
    Check(ValidateSecretId(m.id).ok());
    Check(m.line >= 1 && m.line <= lines);
    all[m.id] = "v";
  }
  // With nothing delivered, only explicit required=false mounts pass (dockerfile.h).
  const bool all_optional = std::all_of(info->secret_mounts.begin(), info->secret_mounts.end(),
                                        [](const SecretMount& m) { return m.optional; });
  Check(CheckSecretsDelivered(*info, {}).ok() == all_optional);
  Check(OptionalSecretsAbsent(*info, all).empty());
  Check(CheckSecretsDelivered(*info, all).ok());
  return 0;
}

std::vector<std::string> KilnFuzzSeeds() {
  return {
      "FROM busybox\nRUN --mount=type=secret,id=tok cat /run/secrets/tok\n",
      "# escape=`\nFROM x\nRUN --mount=type=secret,id=a,target=/t `\n  --mount=type=secret,id=b true\n",
      "# syntax=docker/dockerfile:1\nFROM x\n",
      "FROM x\nrun --mount=type=secret,target=/run/secrets/npm,required=true npm ci\n",
      "FROM x\nRUN --mount=type=secret,id=$X true\n",
      "FROM x\nRUN --mount=type=secret,id=e,env=E true\n",
      "FROM x\nRUN \\\n --mount=\"type=secret,id=q\" \\\n true\n# comment\nRUN echo hi\n",
      "FROM x\nRUN --mount=type=bind,target=/x --mount=type=secret,id=z,mode=0400,uid=1 true\n",
  };
}
extern const char kKilnFuzzName[] = "dockerfile_fuzzer";
extern const int kKilnFuzzMutations = 100000;
