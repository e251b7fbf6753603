// A real Prometheus server for integration tests: started on a free loopback port with its data
// in a temporary folder, queried over its HTTP API with curl, killed and removed when destroyed.
// Used by the /metrics tests and the deploy/ end-to-end tests, from the test's main thread.
#pragma once

#include <chrono>
#include <cmath>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "common/file.h"
#include "common/json.h"
#include "tests/integration/daemon.h"

namespace strata::testing {

// A real Prometheus server on loopback, scraping what `config_yaml` says, with its data in a
// temporary folder; killed and removed when destroyed.
class PrometheusServer {
 public:
  explicit PrometheusServer(const std::string& config_yaml) : dir_(TempPath("prometheus")) {
    std::filesystem::create_directories(dir_);
    WriteFile(dir_ + "/prometheus.yml", config_yaml).IgnoreError();
    web_ = "127.0.0.1:" + std::to_string(FreePort());
    pid_ = std::atoi(Shell("prometheus --config.file=" + dir_ + "/prometheus.yml" +
                           " --storage.tsdb.path=" + dir_ + "/data --web.listen-address=" + web_ +
                           " > " + dir_ + "/log 2>&1 & echo $!")
                         .c_str());
  }
  ~PrometheusServer() {
    if (pid_ > 0) Shell("kill " + std::to_string(pid_) + " 2>/dev/null; sleep 0.3");
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  PrometheusServer(const PrometheusServer&) = delete;
  PrometheusServer& operator=(const PrometheusServer&) = delete;

  const std::string& dir() const { return dir_; }
  std::string Log() const { return ReadFile(dir_ + "/log").value_or(""); }

  // GET /api/v1/<path> with URL-encoded `params` ("name=value" each); the parsed response, or a
  // null Json when there was no valid answer.
  Json Api(const std::string& path, const std::vector<std::string>& params = {}) const {
    std::string cmd = "curl -sS -G --max-time 10 http://" + web_ + "/api/v1/" + path;
    for (const std::string& p : params) cmd += " --data-urlencode " + ShellQuote(p);
    auto j = ParseJson(Shell(cmd + " 2>/dev/null"), "prometheus");
    return j.ok() ? *j : Json();
  }

  // The instant vector of `query` (an empty array when there is none or the query failed; the
  // error, if any, in *error).
  Json Query(const std::string& query, std::string* error = nullptr) const {
    Json r = Api("query", {"query=" + query});
    if (!r.is_object() || r.value("status", "") != "success") {
      if (error != nullptr) *error = r.is_null() ? "no answer" : r.dump();
      return Json::array();
    }
    return r["data"].value("result", Json::array());
  }

  // Polls `query` until its first sample satisfies `ok` or `timeout_s` passes; the last value
  // seen (NaN when none).
  template <typename Pred>
  double WaitFor(const std::string& query, Pred ok, double timeout_s = 30) const {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    double seen = std::nan("");
    do {
      const Json result = Query(query);
      if (!result.empty()) seen = std::stod(result[0]["value"][1].get<std::string>());
      if (ok(seen)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    } while (std::chrono::steady_clock::now() < deadline);
    return seen;
  }

 private:
  std::string dir_;
  std::string web_;
  int pid_ = -1;
};

}  // namespace strata::testing
