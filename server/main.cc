// strata: the daemon's binary. Subcommands: serve, generate, bench, version.
#include <cstdio>
#include <string_view>

int main(int argc, char** argv) {
  if (argc >= 2 && std::string_view(argv[1]) == "version") {
    std::printf("strata %s\n", STRATA_VERSION);
    return 0;
  }
  std::fprintf(stderr, "usage: strata serve|generate|bench|version ...\n");
  return 2;
}
