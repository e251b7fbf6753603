// `strata bench`: runs a BENCHMARKS.md workload against Strata over HTTP and reports it (see
// bench/README.md). Returns the process exit code.
#pragma once

#include <string>
#include <vector>

namespace strata::bench {

int RunBench(const std::vector<std::string>& args);

}  // namespace strata::bench
