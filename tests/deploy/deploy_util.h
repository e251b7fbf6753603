// Helpers for the deploy/ tests: paths into the checkout, `kubectl kustomize` output as YAML
// documents, the Grafana dashboard's query expressions with their variables filled in, and a
// real Prometheus server. Used from the tests' main threads only.
#pragma once

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "common/file.h"
#include "common/json.h"
#include "tests/integration/daemon.h"
#include "yaml-cpp/yaml.h"

namespace strata::testing {

inline std::string SourcePath(const std::string& relative) {
  return std::string(STRATA_SOURCE_DIR) + "/" + relative;
}

// Every kustomization the deploy/ folder ships, relative to deploy/k8s.
inline const std::vector<std::string>& Kustomizations() {
  static const std::vector<std::string> dirs = {"base", "overlays/cpu", "overlays/cuda",
                                                "overlays/pvc", "overlays/inference-gateway"};
  return dirs;
}

struct Rendered {
  int status = -1;
  std::string output;            // stdout and stderr
  std::vector<YAML::Node> docs;  // the rendered objects (status 0 only)
};

// `kubectl kustomize deploy/k8s/<dir>` with the kubectl on the PATH.
inline Rendered Kustomize(const std::string& dir) {
  Rendered r;
  const std::string err = TempPath("kustomize.err");
  r.output = Shell("kubectl kustomize " + ShellQuote(SourcePath("deploy/k8s/" + dir)) + " 2>" + err,
                   &r.status);
  if (r.status == 0) {
    for (const YAML::Node& doc : YAML::LoadAll(r.output)) {
      if (doc.IsMap()) r.docs.push_back(doc);
    }
  }
  r.output += ReadFile(err).value_or("");
  std::filesystem::remove(err);
  return r;
}

// The rendered object of `kind` named `name`; a null node when there is none.
inline YAML::Node FindObject(const Rendered& r, const std::string& kind, const std::string& name) {
  for (const YAML::Node& doc : r.docs) {
    if (doc["kind"].as<std::string>("") == kind &&
        doc["metadata"]["name"].as<std::string>("") == name) {
      return doc;
    }
  }
  return YAML::Node(YAML::NodeType::Null);
}

// The generated ConfigMap whose name starts with `prefix` (kustomize appends a content hash).
inline YAML::Node FindConfigMap(const Rendered& r, const std::string& prefix) {
  for (const YAML::Node& doc : r.docs) {
    if (doc["kind"].as<std::string>("") == "ConfigMap" &&
        doc["metadata"]["name"].as<std::string>("").rfind(prefix + "-", 0) == 0) {
      return doc;
    }
  }
  return YAML::Node(YAML::NodeType::Null);
}

// One query of a dashboard panel.
struct PanelQuery {
  std::string panel;  // the panel's title
  std::string ref_id;
  std::string expr;
};

inline Json LoadDashboard() {
  auto text = ReadFile(SourcePath("deploy/grafana/strata.json"));
  auto json = ParseJson(text.value_or(""), "deploy/grafana/strata.json");
  return json.ok() ? *json : Json();
}

// Every query of every panel (rows hold none here: the dashboard's rows are not collapsed).
inline std::vector<PanelQuery> PanelQueries(const Json& dashboard) {
  std::vector<PanelQuery> out;
  for (const Json& panel : dashboard.value("panels", Json::array())) {
    for (const Json& target : panel.value("targets", Json::array())) {
      out.push_back(
          {panel.value("title", ""), target.value("refId", ""), target.value("expr", "")});
    }
  }
  return out;
}

// Values for the dashboard's variables, as Grafana would substitute them.
struct Variables {
  std::string model = ".*";
  std::string instance = ".*";
  std::string rate_interval = "1m";
};

inline void ReplaceAll(std::string* s, const std::string& from, const std::string& to) {
  for (size_t at = s->find(from); at != std::string::npos; at = s->find(from, at + to.size())) {
    s->replace(at, from.size(), to);
  }
}

// `expr` with the variables filled in. A `$` left over is a variable this helper does not know,
// which the caller reports (Grafana would leave it in and Prometheus reject the query).
inline std::string Substitute(std::string expr, const Variables& v) {
  ReplaceAll(&expr, "$__rate_interval", v.rate_interval);
  for (const auto& [name, value] : {std::pair{"model", v.model}, {"instance", v.instance}}) {
    ReplaceAll(&expr, std::string("${") + name + "}", value);
    ReplaceAll(&expr, std::string("$") + name, value);
  }
  return expr;
}

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
