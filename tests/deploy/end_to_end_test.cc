// The observability stack end to end, without a cluster: a real `strata serve` with three SLO
// classes gets real traffic (curl), a real Prometheus scrapes it every second and evaluates
// deploy/prometheus's rules, and then every query of every panel of deploy/grafana/strata.json
// (variables filled in as Grafana would) returns data: a non-empty result with a finite value.
// The endpoint picker's metric specs of overlays/inference-gateway are checked against the same
// kind of live exposition.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>
#include <sstream>

#include "absl/strings/str_split.h"
#include "tests/deploy/deploy_util.h"

namespace strata::testing {
namespace {

// `interactive` is met by every request, `strict` (targets no request can meet) by none, and
// `batch` (no targets, the default class) by all.
constexpr char kConfig[] = R"(model:
  path: synthetic:tiny
  served_name: tiny
engine:
  threads: 1
slo_classes:
  interactive:
    ttft_ms: 60000
    tpot_ms: 60000
  strict:
    ttft_ms: 0.001
    tpot_ms: 0.001
  batch: {}
scheduler:
  default_slo_class: batch
)";

constexpr int kMaxTokens = 8;

double NowEpochSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// `n` completions of the same 96-byte prompt (so later ones hit the prefix cache).
void Send(const DaemonProcess& d, int n, const std::string& slo_class) {
  Json body = {{"prompt", std::string(96, 'a') + " tell me about KV caches"},
               {"max_tokens", kMaxTokens},
               {"ignore_eos", true}};
  if (!slo_class.empty()) body["slo_class"] = slo_class;
  for (int i = 0; i < n; ++i) {
    const CurlResult r = Curl("POST", d.url("/v1/completions"), body.dump());
    ASSERT_EQ(r.http_code, 200) << r.body;
  }
}

// The value of `result` (an instant vector) whose `label` is `value`; NaN when there is none.
double ValueWhere(const Json& result, const std::string& label, const std::string& value) {
  for (const Json& sample : result) {
    if (sample["metric"].value(label, "") == value) {
      return std::stod(sample["value"][1].get<std::string>());
    }
  }
  return std::nan("");
}

bool AnyFinite(const Json& result) {
  for (const Json& sample : result) {
    if (std::isfinite(std::stod(sample["value"][1].get<std::string>()))) return true;
  }
  return false;
}

// deploy/prometheus/strata-rules.yaml evaluated every second instead of every 30 s, so the test
// sees the recorded series within its time.
std::string FastRecordingRules() {
  std::string rules = ReadFile(SourcePath("deploy/prometheus/strata-rules.yaml")).value_or("");
  ReplaceAll(&rules, "interval: 30s", "interval: 1s");
  const std::string file = TempPath("strata-rules.yaml");
  WriteFile(file, rules).IgnoreError();
  return file;
}

class EndToEndTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    daemon_ = DaemonProcess::Start(kConfig, &error);
    ASSERT_NE(daemon_, nullptr) << error;
    instance_ = "127.0.0.1:" + std::to_string(daemon_->http_port());
    rules_ = FastRecordingRules();
    prometheus_ = std::make_unique<PrometheusServer>(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "rule_files:\n  - " +
        rules_ + "\n  - " + SourcePath("deploy/prometheus/strata-alerts.yaml") +
        "\nscrape_configs:\n  - job_name: strata\n    static_configs:\n"
        "      - targets: ['" +
        instance_ + "']\n");
    ASSERT_EQ(prometheus_->WaitFor(R"(up{job="strata"})", [](double v) { return v == 1; }), 1)
        << prometheus_->Log();
  }
  void TearDown() override {
    prometheus_.reset();
    std::error_code ec;
    std::filesystem::remove(rules_, ec);
    if (daemon_) {
      EXPECT_EQ(daemon_->Stop(), 0);
    }
  }

  // Sends the traffic, then waits until Prometheus holds the final counts from two scrapes that
  // both started after the last response.
  void SendTrafficAndWaitForTwoScrapes() {
    Send(*daemon_, 3, "interactive");
    Send(*daemon_, 2, "strict");
    Send(*daemon_, 2, "");
    Curl("POST", daemon_->url("/v1/completions"), R"({"prompt":"x","max_tokens":0})");
    const double done = NowEpochSeconds();
    const double tokens = 7 * kMaxTokens;
    EXPECT_EQ(prometheus_->WaitFor(R"(strata_generation_tokens_total{model="tiny"})",
                                   [&](double v) { return v == tokens; }),
              tokens);
    // Scrapes are 1 s apart: a latest sample 1.05 s after `done` had one before it after `done`.
    EXPECT_GT(prometheus_->WaitFor(R"(timestamp(strata_generation_tokens_total{model="tiny"}))",
                                   [&](double ts) { return ts > done + 1.05; }),
              done + 1.05);
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<PrometheusServer> prometheus_;
  std::string instance_;
  std::string rules_;
};

TEST_F(EndToEndTest, EveryDashboardPanelQueryReturnsData) {
  SendTrafficAndWaitForTwoScrapes();
  const Json dashboard = LoadDashboard();
  const Variables vars{.model = "tiny", .instance = instance_, .rate_interval = "1m"};
  std::string failures;
  int checked = 0;
  for (const PanelQuery& q : PanelQueries(dashboard)) {
    const std::string expr = Substitute(q.expr, vars);
    std::string error;
    const Json result = prometheus_->Query(expr, &error);
    ++checked;
    if (result.empty()) {
      failures += q.panel + " [" + q.ref_id + "]: no data for " + expr + " " + error + "\n";
    } else if (!AnyFinite(result)) {
      failures += q.panel + " [" + q.ref_id + "]: only NaN/Inf for " + expr + "\n";
    }
  }
  EXPECT_GE(checked, 15);
  EXPECT_TRUE(failures.empty()) << failures;
}

// The attainment panel reads 0 for a class that missed every request (its `met` series exists
// at zero from start-up) and 1 for a class that met every request.
TEST_F(EndToEndTest, SloAttainmentPanelShowsZeroForAClassThatMissedEverything) {
  SendTrafficAndWaitForTwoScrapes();
  const Json dashboard = LoadDashboard();
  std::string expr;
  for (const Json& panel : dashboard["panels"]) {
    if (panel.value("title", "") == "SLO attainment by class") {
      expr = panel["targets"][0]["expr"].get<std::string>();
    }
  }
  ASSERT_FALSE(expr.empty());
  const Json result = prometheus_->Query(
      Substitute(expr, {.model = "tiny", .instance = instance_, .rate_interval = "1m"}));
  EXPECT_EQ(ValueWhere(result, "class", "interactive"), 1) << result.dump();
  EXPECT_EQ(ValueWhere(result, "class", "strict"), 0) << result.dump();
  EXPECT_EQ(ValueWhere(result, "class", "batch"), 1) << result.dump();
}

// Grafana fills the `model` and `instance` drop-downs from label_values(SELECTOR, LABEL).
TEST_F(EndToEndTest, VariableQueriesListTheModelAndTheInstance) {
  const std::regex label_values(R"(label_values\((.*), (\w+)\))");
  const std::map<std::string, std::string> want = {{"model", "tiny"}, {"instance", instance_}};
  const Json dashboard = LoadDashboard();
  for (const Json& v : dashboard["templating"]["list"]) {
    if (v.value("type", "") != "query") continue;
    std::smatch m;
    const std::string query = v.value("query", "");
    ASSERT_TRUE(std::regex_match(query, m, label_values)) << query;
    const std::string selector = Substitute(m[1], {.model = "tiny", .instance = instance_});
    const Json result = prometheus_->Query("count by (" + m[2].str() + ") (" + selector + ")");
    EXPECT_EQ(ValueWhere(result, m[2], want.at(v["name"].get<std::string>())), 1)
        << query << ": " << result.dump();
  }
}

// deploy/prometheus's rules load into a real Prometheus, evaluate without errors, and the
// recorded attainment matches the traffic.
TEST_F(EndToEndTest, RecordingAndAlertRulesEvaluateOnTheLiveSeries) {
  SendTrafficAndWaitForTwoScrapes();
  EXPECT_EQ(prometheus_->WaitFor(R"(strata:slo_attainment:ratio_rate5m{class="strict"})",
                                 [](double v) { return v == 0; }),
            0);
  EXPECT_EQ(prometheus_->WaitFor(R"(strata:slo_attainment:ratio_rate5m{class="interactive"})",
                                 [](double v) { return v == 1; }),
            1);
  const Json groups = prometheus_->Api("rules")["data"]["groups"];
  std::map<std::string, int> rules_per_group;
  for (const Json& g : groups) {
    for (const Json& rule : g["rules"]) {
      ++rules_per_group[g["name"].get<std::string>()];
      EXPECT_NE(rule.value("health", ""), "err") << rule.dump();
    }
  }
  EXPECT_EQ(rules_per_group["strata-slo"], 4);
  EXPECT_EQ(rules_per_group["strata-alerts"], 7);
}

// A `--*-metric` flag of the EPP (name{label=value,...}) and whether `exposition` has a sample of
// that name carrying those labels.
bool ExpositionHas(const std::string& exposition, const std::string& spec) {
  const size_t brace = spec.find('{');
  const std::string name = spec.substr(0, brace);
  std::vector<std::string> labels;
  if (brace != std::string::npos) {
    for (absl::string_view kv :
         absl::StrSplit(spec.substr(brace + 1, spec.size() - brace - 2), ',')) {
      const size_t eq = kv.find('=');
      labels.push_back(std::string(kv.substr(0, eq)) + "=\"" + std::string(kv.substr(eq + 1)) +
                       "\"");
    }
  }
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + "{", 0) != 0 && line.rfind(name + " ", 0) != 0) continue;
    if (std::all_of(labels.begin(), labels.end(),
                    [&](const std::string& l) { return line.find(l) != std::string::npos; })) {
      return true;
    }
  }
  return false;
}

TEST(EndpointPickerMetricsTest, EveryMetricTheEppReadsIsInTheExposition) {
  const Rendered r = Kustomize("overlays/inference-gateway");
  ASSERT_EQ(r.status, 0) << r.output;
  const YAML::Node epp = FindObject(r, "Deployment", "strata-epp");
  ASSERT_TRUE(epp.IsMap());
  std::string error;
  auto d = DaemonProcess::Start("model:\n  path: synthetic:tiny\n", &error);
  ASSERT_NE(d, nullptr) << error;
  const std::string exposition = Curl("GET", d->url("/metrics")).body;
  int specs = 0;
  for (const YAML::Node& arg : epp["spec"]["template"]["spec"]["containers"][0]["args"]) {
    const std::string a = arg.as<std::string>();
    const size_t eq = a.find('=');
    if (a.find("-metric=") == std::string::npos || eq + 1 == a.size()) continue;  // LoRA: off
    ++specs;
    EXPECT_TRUE(ExpositionHas(exposition, a.substr(eq + 1))) << a << " not in\n" << exposition;
  }
  EXPECT_EQ(specs, 4);
  // Prefix-aware routing reads the KV block size from this label.
  EXPECT_TRUE(ExpositionHas(exposition, "strata_cache_config_info{block_size=16}"));
  EXPECT_EQ(d->Stop(), 0);
}

}  // namespace
}  // namespace strata::testing
