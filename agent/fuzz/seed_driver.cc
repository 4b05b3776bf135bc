// File: agent/fuzz/seed_driver.cc
// A deterministic driver for the agent's libFuzzer targets without libFuzzer (gcc, inside
// Bazel): runs the target's seed corpus (KilnFuzzSeeds(), defined beside its
// LLVMFuzzerTestOneInput) and a fixed number of fixed-seed mutations of it (bit flips, byte
// replacements, truncations, splices, inserted 32-bit values) through LLVMFuzzerTestOneInput.
// A violated invariant aborts, so the cc_test fails. With KILN_FUZZ_WRITE_CORPUS=<dir> it
// also writes the seeds there for a libFuzzer run (run_libfuzzer.sh).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
std::vector<std::string> KilnFuzzSeeds();
extern const char kKilnFuzzName[];
extern const int kKilnFuzzMutations;

int main() {
  std::vector<std::string> corpus = KilnFuzzSeeds();
  if (const char* dir = std::getenv("KILN_FUZZ_WRITE_CORPUS")) {
    for (size_t i = 0; i < corpus.size(); ++i) {
      std::ofstream(std::string(dir) + "/seed-" + std::to_string(i), std::ios::binary)
          << corpus[i];
    }
  }
  auto run = [](const std::string& s) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  };
  size_t runs = 0;
  for (const std::string& c : corpus) {
    run(c);
    ++runs;
  }
  std::mt19937 rng(20261204);
  for (int iter = 0; iter < kKilnFuzzMutations; ++iter) {
    std::string s = corpus[rng() % corpus.size()];
    if (s.empty()) s = "x";
    switch (rng() % 5) {
      case 0: s[rng() % s.size()] ^= static_cast<char>(1u << (rng() % 8)); break;
      case 1: s[rng() % s.size()] = static_cast<char>(rng()); break;
      case 2: s.resize(rng() % s.size() + 1); break;
      case 3: s += corpus[rng() % corpus.size()]; break;
      default: {
        const size_t at = rng() % (s.size() + 1);
        const uint32_t v = rng();
        s.insert(at, std::string(reinterpret_cast<const char*>(&v), 4));
      }
    }
    run(s);
    ++runs;
  }
  std::printf("%s: %zu inputs, no invariant violated\n", kKilnFuzzName, runs);
  return 0;
}
