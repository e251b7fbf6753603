// /metrics as Prometheus meets it: the exposition passes `promtool check metrics` with every
// DESIGN.md §7 name present after traffic, and a real Prometheus server scraping the daemon sees
// the same counts the requests produced.
#include <gtest/gtest.h>

#include "common/json.h"
#include "tests/integration/daemon.h"
#include "tests/integration/prometheus_server.h"

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

TEST(PrometheusTest, RealPrometheusSeesTheCountersMoveWhileRequestsRun) {
  auto d = StartTiny();
  ASSERT_NE(d, nullptr);
  PrometheusServer prom("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: strata\n"
                        "    static_configs:\n      - targets: ['127.0.0.1:" +
                        std::to_string(d->http_port()) + "']\n");
  auto is = [](double want) { return [want](double v) { return v == want; }; };
  EXPECT_EQ(prom.WaitFor("up", is(1)), 1) << prom.Log();
  EXPECT_EQ(prom.WaitFor("strata_generation_tokens_total", is(0)), 0);
  Generate(*d, 2, 5);
  EXPECT_EQ(prom.WaitFor("strata_generation_tokens_total", is(10)), 10);
  EXPECT_EQ(prom.WaitFor("strata_requests_total{status=\"ok\"}", is(2)), 2);
  EXPECT_EQ(prom.WaitFor("strata_time_to_first_token_seconds_count", is(2)), 2);
  EXPECT_EQ(d->Stop(), 0);
}

}  // namespace
}  // namespace strata::testing
