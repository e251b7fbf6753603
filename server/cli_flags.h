// A small command-line flag parser for the strata subcommands: `--name value` or `--name=value`,
// every flag declared up front so an unknown or repeated flag is an error naming it.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace strata::server {

class CliFlags {
 public:
  // `known`: accepted flag names without dashes.
  static absl::StatusOr<CliFlags> Parse(const std::vector<std::string>& args,
                                        const std::vector<std::string>& known);

  std::optional<std::string> Get(const std::string& name) const;
  std::string GetOr(const std::string& name, const std::string& fallback) const;
  absl::StatusOr<int64_t> GetInt(const std::string& name, int64_t fallback) const;
  absl::StatusOr<double> GetDouble(const std::string& name, double fallback) const;

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace strata::server
