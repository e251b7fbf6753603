#include "bench/harness/prom_text.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "common/file.h"

namespace strata::bench {
namespace {

// Two scrapes of `strata serve --config configs/default.yaml` (synthetic:tiny): at start-up, and
// after two identical completions of 48 prompt and 8 generated tokens, the second hitting 32
// prompt tokens in the device tier.
const std::string kData = STRATA_SOURCE_DIR "/tests/bench/data/";

PromSamples Parsed(std::string_view text) {
  absl::StatusOr<PromSamples> s = ParsePromText(text);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : PromSamples{};
}

PromSamples Fixture(const std::string& name) {
  absl::StatusOr<std::string> text = ReadFile(kData + name);
  EXPECT_TRUE(text.ok()) << text.status();
  return Parsed(text.ok() ? *text : "");
}

std::string ParseError(std::string_view text) {
  absl::StatusOr<PromSamples> s = ParsePromText(text);
  if (s.ok()) return "(parsed fine)";
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << s.status();
  return std::string(s.status().message());
}

TEST(PromTextTest, ParsesTheDaemonsScrape) {
  PromSamples s = Fixture("metrics_after.txt");
  // 4 histograms x (count + sum + 22 buckets), 16 counter and 5 gauge series.
  EXPECT_EQ(s.size(), 4u * 24 + 16 + 5);
  EXPECT_EQ(s.at("strata_prompt_tokens_total{model=\"synthetic:tiny\"}"), 96);
  EXPECT_EQ(s.at("strata_prefix_cache_hits_tokens_total{model=\"synthetic:tiny\",tier=\"device\"}"),
            32);
  EXPECT_EQ(s.at("strata_slo_requests_total{class=\"default\",model=\"synthetic:tiny\","
                 "outcome=\"met\"}"),
            2);
  EXPECT_EQ(s.at("strata_time_to_first_token_seconds_bucket{le=\"+Inf\",model=\"synthetic:tiny\"}"),
            2);
  EXPECT_EQ(
      s.at("strata_time_to_first_token_seconds_bucket{le=\"0.005\",model=\"synthetic:tiny\"}"), 1);
  EXPECT_DOUBLE_EQ(s.at("strata_request_queue_time_seconds_sum{model=\"synthetic:tiny\"}"),
                   0.0003410720091778785);
  EXPECT_EQ(s.at("strata_cache_config_info{block_size=\"16\",model=\"synthetic:tiny\","
                 "num_device_blocks=\"32768\"}"),
            1);
}

TEST(PromTextTest, KeysSortLabelsByNameAndKeepEscapes) {
  PromSamples s = Parsed(
      "# HELP m A \"help\" line with \\ and\n"
      "# TYPE m counter\n"
      "m{z=\"1\",a=\"say \\\"hi\\\"\\\\\\nbye\"} 3\n"
      "m2{ b = \"2\" , a=\"\",} 4\n"
      "plain 5\n");
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s.at("m{a=\"say \\\"hi\\\"\\\\\\nbye\",z=\"1\"}"), 3);
  EXPECT_EQ(s.at("m2{a=\"\",b=\"2\"}"), 4);
  EXPECT_EQ(s.at("plain"), 5);
  // The unescaped value matches: the key reads back into the labels it came from.
  EXPECT_EQ(SumSamples(s, "m", {{"a", "say \"hi\"\\\nbye"}}), 3);
  EXPECT_EQ(SumSamples(s, "m", {{"a", "say"}}), 0);
}

TEST(PromTextTest, SpecialValuesTimestampsAndBlankLines) {
  PromSamples s = Parsed(
      "\n"
      "a +Inf\n"
      "b -Inf\n"
      "c NaN\n"
      "d 1.5e3 1700000000000\n"
      "e{x=\"y\"}\t-0.25\t-12\r\n"
      "   \n"
      "f 7 \n");
  ASSERT_EQ(s.size(), 6u);
  EXPECT_EQ(s.at("a"), INFINITY);
  EXPECT_EQ(s.at("b"), -INFINITY);
  EXPECT_TRUE(std::isnan(s.at("c")));
  EXPECT_EQ(s.at("d"), 1500);
  EXPECT_EQ(s.at("e{x=\"y\"}"), -0.25);
  EXPECT_EQ(s.at("f"), 7);
}

TEST(PromTextTest, MalformedLinesNameTheLine) {
  struct Case {
    const char* line;
    const char* why;
  };
  const Case cases[] = {
      {"m", "expected a blank before the value"},
      {"m{a=\"1\" 2", "expected ',' or '}' after a label"},
      {"m{a=1} 2", "expected '\"' before a label value"},
      {"m{a=\"1} 2", "unterminated label value"},
      {"m{a=\"\\t\"} 2", "bad escape"},
      {"m{a=\"1\",a=\"2\"} 2", "label a given twice"},
      {"m{=\"1\"} 2", "expected a label name"},
      {"1m 2", "expected a metric name"},
      {"m abc", "bad sample value 'abc'"},
      {"m inf", "bad sample value 'inf'"},
      {"m 1,5", "bad sample value '1,5'"},
      {"m 1 1.5", "bad timestamp '1.5'"},
      {"m 1 2 3", "unexpected text after the timestamp"},
      {"x 2", "series x given twice"},
  };
  for (const Case& c : cases) {
    std::string error = ParseError(StrCat("# TYPE x gauge\nx 1\n", c.line, "\n"));
    EXPECT_NE(error.find(StrCat("metrics line 3 '", c.line, "'")), std::string::npos) << error;
    EXPECT_NE(error.find(c.why), std::string::npos) << c.line << " -> " << error;
  }
}

TEST(PromTextTest, SumSamplesTakesTheExactNameAndAllMatchedLabels) {
  PromSamples s = Parsed(
      "t_total{model=\"a\",tier=\"disk\"} 1\n"
      "t_total{model=\"b\",tier=\"disk\"} 2\n"
      "t_total{model=\"b\",tier=\"host\"} 4\n"
      "t_total_extra 8\n"
      "t_totalx 16\n"
      "t 32\n");
  EXPECT_EQ(SumSamples(s, "t_total"), 7);
  EXPECT_EQ(SumSamples(s, "t_total", {{"tier", "disk"}}), 3);
  EXPECT_EQ(SumSamples(s, "t_total", {{"tier", "disk"}, {"model", "b"}}), 2);
  EXPECT_EQ(SumSamples(s, "t_total", {{"kind", "io"}}), 0);
  EXPECT_EQ(SumSamples(s, "t"), 32);
  EXPECT_EQ(SumSamples(s, "missing"), 0);
}

TEST(PromTextTest, DiffOfTheDaemonsScrapes) {
  MetricsDelta d = DiffMetrics(Fixture("metrics_before.txt"), Fixture("metrics_after.txt"));
  EXPECT_EQ(d.prompt_tokens, 96);
  EXPECT_EQ(d.generation_tokens, 16);
  EXPECT_EQ(d.prefix_query_tokens, 96);
  EXPECT_EQ(d.prefix_hit_tokens,
            (std::map<std::string, double>{{"device", 32}, {"disk", 0}, {"host", 0}}));
  EXPECT_DOUBLE_EQ(d.HitRate("device"), 32.0 / 96);
  EXPECT_EQ(d.HitRate("disk"), 0);
  EXPECT_EQ(d.transfer_bytes,
            (std::map<std::string, double>{
                {"device->host", 0}, {"disk->host", 0}, {"host->device", 0}, {"host->disk", 0}}));
  EXPECT_EQ(d.tier_errors, (std::map<std::string, double>{
                               {"disk/checksum", 0}, {"disk/full", 0}, {"disk/io", 0}}));
  EXPECT_EQ(d.slo_requests, (std::map<std::string, double>{{"default/met", 2}}));
  EXPECT_EQ(d.preemptions, 0);
  EXPECT_EQ(d.queue_time_count, 2);
  EXPECT_DOUBLE_EQ(d.queue_time_sum_s, 0.0003410720091778785);
}

// Two models behind one scrape, a series that appears only after, and one that only rose.
TEST(PromTextTest, DiffSumsOverModelsPerLabelGroup) {
  PromSamples before = Parsed(
      "strata_prefix_cache_queries_tokens_total{model=\"a\"} 100\n"
      "strata_prefix_cache_hits_tokens_total{model=\"a\",tier=\"host\"} 10\n"
      "strata_kv_transfer_bytes_total{dst=\"disk\",model=\"a\",src=\"host\"} 1000\n"
      "strata_kv_tier_errors_total{kind=\"io\",model=\"a\",tier=\"disk\"} 1\n"
      "strata_preemptions_total{model=\"a\"} 3\n"
      "strata_request_queue_time_seconds_sum{model=\"a\"} 1.5\n"
      "strata_request_queue_time_seconds_count{model=\"a\"} 3\n");
  PromSamples after = Parsed(
      "strata_prefix_cache_queries_tokens_total{model=\"a\"} 300\n"
      "strata_prefix_cache_queries_tokens_total{model=\"b\"} 100\n"
      "strata_prefix_cache_hits_tokens_total{model=\"a\",tier=\"host\"} 60\n"
      "strata_prefix_cache_hits_tokens_total{model=\"b\",tier=\"host\"} 20\n"
      "strata_prefix_cache_hits_tokens_total{model=\"b\",tier=\"disk\"} 30\n"
      "strata_kv_transfer_bytes_total{dst=\"disk\",model=\"a\",src=\"host\"} 5000\n"
      "strata_kv_transfer_bytes_total{dst=\"disk\",model=\"b\",src=\"host\"} 500\n"
      "strata_kv_transfer_bytes_total{dst=\"host\",model=\"b\",src=\"disk\"} 700\n"
      "strata_kv_tier_errors_total{kind=\"io\",model=\"a\",tier=\"disk\"} 4\n"
      "strata_kv_tier_errors_total{kind=\"checksum\",model=\"b\",tier=\"disk\"} 2\n"
      "strata_preemptions_total{model=\"a\"} 5\n"
      "strata_preemptions_total{model=\"b\"} 1\n"
      "strata_request_queue_time_seconds_sum{model=\"a\"} 2.25\n"
      "strata_request_queue_time_seconds_count{model=\"a\"} 6\n"
      "strata_slo_requests_total{class=\"chat\",model=\"a\",outcome=\"met\"} 7\n"
      "strata_slo_requests_total{class=\"chat\",model=\"b\",outcome=\"met\"} 1\n"
      "strata_slo_requests_total{class=\"chat\",model=\"b\",outcome=\"rejected\"} 2\n");
  MetricsDelta d = DiffMetrics(before, after);
  EXPECT_EQ(d.prefix_query_tokens, 300);  // (300 - 100) + 100
  EXPECT_EQ(d.prefix_hit_tokens,
            (std::map<std::string, double>{{"disk", 30}, {"host", 70}}));  // host: 50 + 20
  EXPECT_DOUBLE_EQ(d.HitRate("host"), 70.0 / 300);
  EXPECT_DOUBLE_EQ(d.HitRate("disk"), 30.0 / 300);
  EXPECT_EQ(d.HitRate("device"), 0);
  EXPECT_EQ(d.transfer_bytes,
            (std::map<std::string, double>{{"disk->host", 700}, {"host->disk", 4500}}));
  EXPECT_EQ(d.tier_errors, (std::map<std::string, double>{{"disk/checksum", 2}, {"disk/io", 3}}));
  EXPECT_EQ(d.preemptions, 3);
  EXPECT_EQ(d.queue_time_sum_s, 0.75);
  EXPECT_EQ(d.queue_time_count, 3);
  EXPECT_EQ(d.slo_requests, (std::map<std::string, double>{{"chat/met", 8}, {"chat/rejected", 2}}));
  EXPECT_EQ(d.prompt_tokens, 0);
}

TEST(PromTextTest, HitRateIsZeroWithoutQueries) {
  MetricsDelta d;
  d.prefix_hit_tokens["device"] = 5;
  EXPECT_EQ(d.HitRate("device"), 0);
}

}  // namespace
}  // namespace strata::bench
