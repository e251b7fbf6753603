#include "server/hub_env.h"

#include <cstdlib>
#include <string>

#include "absl/strings/ascii.h"
#include "common/file.h"

namespace strata::server {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

}  // namespace

engine::HubOptions HubOptionsFromEnv() {
  engine::HubOptions opts;
  std::string hf_home = Env("HF_HOME");
  if (hf_home.empty()) {
    const std::string xdg = Env("XDG_CACHE_HOME");
    hf_home = (xdg.empty() ? Env("HOME") + "/.cache" : xdg) + "/huggingface";
  }
  opts.cache_dir = Env("HF_HUB_CACHE");
  if (opts.cache_dir.empty()) opts.cache_dir = hf_home + "/hub";
  if (std::string endpoint = Env("HF_ENDPOINT"); !endpoint.empty()) {
    while (endpoint.size() > 1 && endpoint.back() == '/') endpoint.pop_back();
    opts.endpoint = endpoint;
  }
  opts.token = Env("HF_TOKEN");
  if (opts.token.empty()) {
    absl::StatusOr<std::string> stored = ReadFile(hf_home + "/token");
    if (stored.ok()) opts.token = std::string(absl::StripAsciiWhitespace(*stored));
  }
  const std::string offline = Env("HF_HUB_OFFLINE");
  opts.offline = offline == "1" || offline == "true" || offline == "TRUE" || offline == "yes";
  return opts;
}

}  // namespace strata::server
