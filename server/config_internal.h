// Helpers shared by config.cc (validation) and config_yaml.cc (YAML reading); not for other
// modules. Stateless; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "server/config.h"

namespace strata::server::config_internal {

// InvalidArgument "config: PATH: PROBLEM". The key path also rides along as a status payload so
// the loaders can append the file line where that key was written.
absl::Status ConfigError(std::string_view path, std::string_view problem);
// The same with a whole message of the caller's making ("config: unknown key 'a.b' ...").
absl::Status ConfigErrorAt(std::string_view path, std::string_view message);

// The key path a ConfigError carries, if any.
std::optional<std::string> ErrorPath(const absl::Status& status);

// The fields a sparsity type takes (see SparsityConfig), or nullptr for an unknown type.
const std::vector<std::string_view>* SparsityFieldsOf(std::string_view type);
// Every sparsity field, in declaration order.
const std::vector<std::string_view>& AllSparsityFields();
// The member holding `field`. REQUIRES: `field` is in AllSparsityFields().
int64_t SparsityConfig::*SparsityMember(std::string_view field);

}  // namespace strata::server::config_internal
