// Helpers for the deploy/ tests: paths into the checkout, `kubectl kustomize` output as YAML
// documents, and the Grafana dashboard's query expressions with their variables filled in. Used
// from the tests' main threads only.
#pragma once

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "common/file.h"
#include "common/json.h"
#include "tests/integration/daemon.h"
#include "tests/integration/prometheus_server.h"
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

}  // namespace strata::testing
