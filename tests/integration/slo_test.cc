// SLO-aware scheduling in a live daemon (scheduler.policy slo): greedy outputs are the reference
// outputs; a class whose TTFT target cannot be met is rejected early with HTTP 429 (streaming or
// not) and gRPC RESOURCE_EXHAUSTED, named in the message, counted as `rejected`, leaving nothing
// behind; the same target under best_effort is served and counted as missed_ttft; the cost
// model's profile is logged and its predictions are exported next to the measured step times.
#include <gtest/gtest.h>

#include "common/json.h"
#include "tests/integration/daemon.h"

namespace strata::testing {
namespace {

Json Reference() {
  return *ParseJson(*ReadFile(StoriesDir() + "/reference.json"), "reference.json");
}

class SloTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!HaveStories()) return;
    const std::string yaml = "model:\n  path: " + StoriesDir() +
                             "\n  served_name: stories\n"
                             "engine:\n  threads: 1\n"
                             "slo_classes:\n"
                             "  interactive: {ttft_ms: 500, tpot_ms: 200, priority: 10,"
                             " on_overload: reject}\n"
                             "  impossible: {ttft_ms: 0.001, on_overload: reject}\n"
                             "  hopeful: {ttft_ms: 0.001, on_overload: best_effort}\n"
                             "  batch: {}\n"
                             "scheduler:\n  policy: slo\n  default_slo_class: batch\n";
    std::string error;
    daemon_ = DaemonProcess::Start(yaml, &error).release();
    ASSERT_NE(daemon_, nullptr) << error;
  }
  static void TearDownTestSuite() {
    std::string log;
    EXPECT_EQ(StopAndDelete(daemon_, &log), 0) << log;
  }
  void SetUp() override {
    if (!HaveStories()) GTEST_SKIP() << "no " << StoriesDir();
    ASSERT_NE(daemon_, nullptr);
  }
  static CurlResult Complete(const Json& body) {
    return Curl("POST", daemon_->url("/v1/completions"), body.dump(), "-N");
  }
  static double Metric(const std::string& name, const std::string& labels = "") {
    return MetricSample(Curl("GET", daemon_->url("/metrics")).body, name, labels);
  }
  static DaemonProcess* daemon_;
};
DaemonProcess* SloTest::daemon_ = nullptr;

TEST_F(SloTest, GreedyOutputsAreTheReferenceInEveryClass) {
  const Json ref = Reference();  // the loop below must not iterate a temporary
  ASSERT_GE(ref["prompts"].size(), 2u);
  for (const char* cls : {"interactive", "batch", ""}) {
    for (const Json& p : ref["prompts"]) {
      Json body = {{"prompt", p["prompt"]}, {"max_tokens", 48}, {"temperature", 0}};
      if (*cls != '\0') {
        body["slo_class"] = cls;
      }
      auto r = Complete(body);
      ASSERT_EQ(r.http_code, 200) << r.body;
      EXPECT_EQ(ParseJson(r.body, "r")->at("choices")[0]["text"], p["continuation_text"]) << cls;
    }
  }
}

TEST_F(SloTest, UnreachableTargetIsA429ThatLeavesNothingBehind) {
  const double before = Metric("strata_slo_requests_total", "class=\"impossible\",model=\"stories\",outcome=\"rejected\"");
  for (bool stream : {false, true}) {
    auto r = Complete({{"prompt", "Once upon a time"}, {"max_tokens", 8},
                       {"slo_class", "impossible"}, {"stream", stream}});
    ASSERT_EQ(r.http_code, 429) << r.body;
    auto j = ParseJson(r.body, "error");
    ASSERT_TRUE(j.ok()) << r.body;
    const std::string message = (*j)["error"]["message"];
    EXPECT_NE(message.find("SLO class 'impossible'"), std::string::npos) << message;
    EXPECT_NE(message.find("time to first token"), std::string::npos) << message;
  }
  EXPECT_EQ(Metric("strata_slo_requests_total", "class=\"impossible\",model=\"stories\",outcome=\"rejected\""),
            before + 2);
  EXPECT_GE(Metric("strata_requests_total", "status=\"rejected\""), 2);
  EXPECT_EQ(Metric("strata_num_requests_running"), 0);
  EXPECT_EQ(Metric("strata_num_requests_waiting"), 0);
  EXPECT_EQ(Metric("strata_kv_cache_usage_ratio", "tier=\"device\""), 0);
  // The daemon goes on serving.
  EXPECT_EQ(Complete({{"prompt", "Once"}, {"max_tokens", 4}}).http_code, 200);
}

TEST_F(SloTest, GrpcRejectionIsResourceExhausted) {
  const std::string out = Shell("/usr/bin/python3 " STRATA_SOURCE_DIR
                                "/tests/integration/grpc_client.py --port " +
                                std::to_string(daemon_->grpc_port()) +
                                " generate --prompt Once --max-tokens 4 --slo-class impossible"
                                " 2>/dev/null");
  auto j = ParseJson(out, "grpc");
  ASSERT_TRUE(j.ok()) << out;
  EXPECT_EQ((*j)["error"]["code"], "RESOURCE_EXHAUSTED") << out;
  EXPECT_NE((*j)["error"]["message"].get<std::string>().find("impossible"), std::string::npos);
}

TEST_F(SloTest, BestEffortIsServedAndCountedAsMissed) {
  const double missed =
      Metric("strata_slo_requests_total", "class=\"hopeful\",model=\"stories\",outcome=\"missed_ttft\"");
  auto r = Complete({{"prompt", "Once upon a time"}, {"max_tokens", 4}, {"slo_class", "hopeful"}});
  ASSERT_EQ(r.http_code, 200) << r.body;
  EXPECT_EQ(Metric("strata_slo_requests_total", "class=\"hopeful\",model=\"stories\",outcome=\"missed_ttft\""),
            missed + 1);
}

TEST_F(SloTest, CostModelIsProfiledAndItsPredictionsExported) {
  EXPECT_NE(daemon_->Log().find("step cost profile"), std::string::npos) << daemon_->Log();
  Complete({{"prompt", "Once upon a time"}, {"max_tokens", 8}});
  EXPECT_GT(Metric("strata_step_time_seconds"), 0);
  EXPECT_GT(Metric("strata_step_time_predicted_seconds"), 0);
  EXPECT_GT(Metric("strata_step_duration_seconds_total"), 0);
  EXPECT_GT(Metric("strata_step_predicted_duration_seconds_total"), 0);
  EXPECT_GE(Metric("strata_step_time_prediction_error_ratio"), 0);
}

}  // namespace
}  // namespace strata::testing
