// The strata subcommands. Each takes the arguments after its name and returns the exit code.
#pragma once

#include <string>
#include <vector>

namespace strata::server {

int RunGenerate(const std::vector<std::string>& args);
int RunServe(const std::vector<std::string>& args);

}  // namespace strata::server
