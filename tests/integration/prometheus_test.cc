// /metrics as Prometheus meets it: the exposition passes `promtool check metrics` with every
// DESIGN.md §7 name present after traffic, and a real Prometheus server scraping the daemon sees
// the same counts the requests produced.
#include <gtest/gtest.h>

#include "common/json.h"
#include "tests/integration/daemon.h"

namespace strata::testing {
namespace {

std::unique_ptr<DaemonProcess> StartTiny() {
  std::string error;
  auto d = DaemonProcess::Start("model:\n  path: synthetic:tiny\n  served_name: tiny\n", &error);
  EXPECT_NE(d, nullptr) << error;
  return d;
}

void Generate(const DaemonProcess& d, int requests, int max_tokens) {
  for (int i = 0; i < requests; ++i) {
    auto r = Curl("POST", d.url("/v1/completions"),
                  Json{{"prompt", "metrics " + std::to_string(i)},
                       {"max_tokens", max_tokens},
                       {"ignore_eos", true}}
                      .dump());
    ASSERT_EQ(r.http_code, 200) << r.body;
  }
}

TEST(PrometheusTest, ExpositionPassesPromtoolAndHasEveryContractName) {
  auto d = StartTiny();
  ASSERT_NE(d, nullptr);
  Generate(*d, 3, 4);
  Curl("POST", d->url("/v1/completions"), R"({"prompt":"x","max_tokens":0})");  // one invalid
  const std::string file = TempPath("metrics.txt");
  ASSERT_TRUE(WriteFile(file, Curl("GET", d->url("/metrics")).body).ok());
  int status = -1;
  const std::string lint = Shell("promtool check metrics < " + file + " 2>&1", &status);
  EXPECT_EQ(status, 0) << lint;
  const std::string m = *ReadFile(file);
  for (const char* name :
       {"strata_time_to_first_token_seconds_bucket", "strata_time_per_output_token_seconds_count",
        "strata_e2e_request_latency_seconds_sum", "strata_request_queue_time_seconds_count",
        "strata_prompt_tokens_total", "strata_generation_tokens_total", "strata_requests_total",
        "strata_prefix_cache_queries_tokens_total", "strata_prefix_cache_hits_tokens_total",
        "strata_kv_transfer_bytes_total", "strata_kv_tier_errors_total",
        "strata_preemptions_total", "strata_slo_requests_total", "strata_num_requests_running",
        "strata_num_requests_waiting", "strata_kv_cache_usage_ratio", "strata_cache_config_info",
        "strata_build_info"}) {
    EXPECT_GE(MetricSample(m, name), 0) << name << " missing in\n" << m;
  }
  EXPECT_EQ(MetricSample(m, "strata_generation_tokens_total"), 12);
  EXPECT_EQ(MetricSample(m, "strata_requests_total", "status=\"ok\""), 3);
  EXPECT_EQ(MetricSample(m, "strata_requests_total", "status=\"invalid\""), 1);
  EXPECT_EQ(MetricSample(m, "strata_time_to_first_token_seconds_count"), 3);
  EXPECT_EQ(MetricSample(m, "strata_e2e_request_latency_seconds_count"), 3);
  EXPECT_EQ(MetricSample(m, "strata_slo_requests_total", "outcome=\"met\""), 3);
  EXPECT_EQ(MetricSample(m, "strata_cache_config_info", "block_size=\"16\""), 1);
  std::filesystem::remove(file);
  EXPECT_EQ(d->Stop(), 0);
}

// The latest value Prometheus holds for `query`, or -1 while it has none.
double Query(const std::string& web, const std::string& query) {
  auto r = Curl("GET", "http://" + web + "/api/v1/query?query=" + query);
  auto j = ParseJson(r.body, "prometheus");
  if (r.http_code != 200 || !j.ok() || (*j)["data"]["result"].empty()) return -1;
  return std::stod((*j)["data"]["result"][0]["value"][1].get<std::string>());
}

// Polls until `query` has `want` (or time runs out); returns the last value seen.
double WaitFor(const std::string& web, const std::string& query, double want) {
  double seen = -1;
  for (int i = 0; i < 120 && seen != want; ++i) {
    seen = Query(web, query);
    if (seen != want) std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return seen;
}

TEST(PrometheusTest, RealPrometheusSeesTheCountersMoveWhileRequestsRun) {
  auto d = StartTiny();
  ASSERT_NE(d, nullptr);
  const std::string dir = TempPath("prometheus");
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(WriteFile(dir + "/prometheus.yml",
                        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: strata\n"
                        "    static_configs:\n      - targets: ['127.0.0.1:" +
                            std::to_string(d->http_port()) + "']\n")
                  .ok());
  const std::string web = "127.0.0.1:" + std::to_string(FreePort());
  const std::string pid = Shell("prometheus --config.file=" + dir + "/prometheus.yml" +
                                " --storage.tsdb.path=" + dir + "/data --web.listen-address=" +
                                web + " > " + dir + "/log 2>&1 & echo $!");
  const std::string log = dir + "/log";
  EXPECT_EQ(WaitFor(web, "up", 1), 1) << ReadFile(log).value_or("");
  EXPECT_EQ(WaitFor(web, "strata_generation_tokens_total", 0), 0);
  Generate(*d, 2, 5);
  EXPECT_EQ(WaitFor(web, "strata_generation_tokens_total", 10), 10);
  EXPECT_EQ(WaitFor(web, "strata_requests_total%7Bstatus%3D%22ok%22%7D", 2), 2);
  EXPECT_EQ(WaitFor(web, "strata_time_to_first_token_seconds_count", 2), 2);
  Shell("kill " + std::to_string(std::stoi(pid)) + " 2>/dev/null; sleep 0.5");
  std::filesystem::remove_all(dir);
  EXPECT_EQ(d->Stop(), 0);
}

}  // namespace
}  // namespace strata::testing
