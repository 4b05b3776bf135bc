// micro_main: main() of kiln's micro benchmark binaries (benchmarks/micro/micro.h).
#include "benchmarks/micro/micro.h"

int main(int argc, char** argv) { return kiln::bench::MicroMain(argc, argv); }
