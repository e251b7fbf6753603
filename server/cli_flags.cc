#include "server/cli_flags.h"

#include <algorithm>

#include "absl/strings/numbers.h"

namespace strata::server {

absl::StatusOr<CliFlags> CliFlags::Parse(const std::vector<std::string>& args,
                                         const std::vector<std::string>& known) {
  CliFlags flags;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0) {
      return absl::InvalidArgumentError(StrCat("unexpected argument '", a, "'"));
    }
    std::string name = a.substr(2), value;
    size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(StrCat("flag --", name, " needs a value"));
    }
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      return absl::InvalidArgumentError(StrCat("unknown flag --", name));
    }
    if (!flags.values_.emplace(name, value).second) {
      return absl::InvalidArgumentError(StrCat("flag --", name, " given twice"));
    }
  }
  return flags;
}

std::optional<std::string> CliFlags::Get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string CliFlags::GetOr(const std::string& name, const std::string& fallback) const {
  return Get(name).value_or(fallback);
}

absl::StatusOr<int64_t> CliFlags::GetInt(const std::string& name, int64_t fallback) const {
  auto v = Get(name);
  if (!v) return fallback;
  int64_t out;
  if (!absl::SimpleAtoi(*v, &out)) {
    return absl::InvalidArgumentError(StrCat("flag --", name, ": '", *v, "' is not an integer"));
  }
  return out;
}

absl::StatusOr<double> CliFlags::GetDouble(const std::string& name, double fallback) const {
  auto v = Get(name);
  if (!v) return fallback;
  double out;
  if (!absl::SimpleAtod(*v, &out)) {
    return absl::InvalidArgumentError(StrCat("flag --", name, ": '", *v, "' is not a number"));
  }
  return out;
}

}  // namespace strata::server
