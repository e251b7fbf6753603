// strata: the daemon's binary. Subcommands: serve, generate, bench, version.
#include <cstdio>
#include <string>
#include <vector>

#include "bench/harness/cmd_bench.h"
#include "server/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: strata <command> [flags]\n"
    "  serve    --config FILE [--model PATH|org/name|synthetic:NAME]\n"
    "  generate --model PATH|org/name|synthetic:NAME --prompt TEXT [--max-tokens N]\n"
    "           [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--seed S]\n"
    "           [--repetition-penalty R] [--presence-penalty P] [--frequency-penalty F]\n"
    "           [--stop TEXT] [--kv-policy NAME] [--threads N] [--backend auto|cpu|cuda]\n"
    "           [--max-model-len N]\n"
    "  bench    --workload W1..W5|trace (--server URL | --config FILE [--compare FILE])\n"
    "           [--rates R,..] [--concurrency N] ... (strata bench --help lists all)\n"
    "  version\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (cmd == "version") {
    std::printf("strata %s\n", STRATA_VERSION);
    return 0;
  }
  if (cmd == "generate") return strata::server::RunGenerate(args);
  if (cmd == "serve") return strata::server::RunServe(args);
  if (cmd == "bench") return strata::bench::RunBench(args);
  std::fprintf(stderr, "strata: unknown command '%s'\n%s", cmd.c_str(), kUsage);
  return 2;
}
