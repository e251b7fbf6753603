// The daemon's life as an operator meets it: SIGTERM drains (readiness off, new work refused with
// 503, streams in flight finish) and exits 0; a grace period that runs out still exits 0 promptly;
// a client that hangs up mid-stream frees its request. A synthetic Qwen2.5-0.5B on one thread
// makes each token take long enough to act mid-stream.
#include <gtest/gtest.h>

#include <sstream>

#include "common/json.h"
#include "tests/integration/daemon.h"
#include "tests/integration/sse_reader.h"

namespace strata::testing {
namespace {

constexpr char kSlowModel[] =
    "model:\n  path: synthetic:qwen2.5-0.5b\n  max_model_len: 1024\n"
    "engine:\n  threads: 1\n";

std::string StreamBody(int max_tokens) {
  return Json{{"prompt", "hello world"}, {"max_tokens", max_tokens}, {"ignore_eos", true},
              {"temperature", 0}, {"stream", true}}
      .dump();
}

std::unique_ptr<DaemonProcess> StartSlow(const std::string& more_yaml = "") {
  std::string error;
  auto d = DaemonProcess::Start(std::string(kSlowModel) + more_yaml, &error);
  EXPECT_NE(d, nullptr) << error;
  return d;
}

TEST(LifecycleTest, SigtermDrainsInFlightStreamsRefusesNewWorkAndExitsZero) {
  auto d = StartSlow();
  ASSERT_NE(d, nullptr);
  SseReader stream(d->url("/v1/completions"), StreamBody(24));
  ASSERT_TRUE(stream.WaitForEvents(1, 60)) << d->Log();
  d->Signal(SIGTERM);
  // Draining: not ready, and new generations are refused while the stream goes on.
  int ready = 0;
  for (int i = 0; i < 100 && ready != 503; ++i) {
    ready = Curl("GET", d->url("/ready")).http_code;
    if (ready != 503) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(ready, 503);
  EXPECT_EQ(Curl("GET", d->url("/health")).http_code, 200);  // alive, just not ready
  auto refused = Curl("POST", d->url("/v1/completions"), R"({"prompt":"x","max_tokens":1})");
  EXPECT_EQ(refused.http_code, 503) << refused.body;
  EXPECT_NE(refused.body.find("\"error\""), std::string::npos);

  const std::string body = stream.WaitForEnd(120);
  EXPECT_NE(body.find("\"finish_reason\":\"length\""), std::string::npos) << body;
  EXPECT_NE(body.find("data: [DONE]"), std::string::npos) << body;
  EXPECT_EQ(d->Wait(60), 0) << d->Log();
  EXPECT_NE(d->Log().find("draining"), std::string::npos);
}

TEST(LifecycleTest, ExpiredGraceCancelsWhatIsLeftAndStillExitsZeroPromptly) {
  auto d = StartSlow("server:\n  shutdown_grace_seconds: 0.5\n");
  ASSERT_NE(d, nullptr);
  SseReader stream(d->url("/v1/completions"), StreamBody(1000));
  ASSERT_TRUE(stream.WaitForEvents(1, 60)) << d->Log();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(d->Stop(SIGTERM, 30), 0) << d->Log();
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(took, 10.0);
  EXPECT_NE(d->Log().find("grace period over"), std::string::npos) << d->Log();
  const std::string body = stream.WaitForEnd(30);
  EXPECT_EQ(body.find("\"finish_reason\":\"length\""), std::string::npos) << body;
}

TEST(LifecycleTest, ClientThatHangsUpMidStreamIsCancelledAndFreed) {
  auto d = StartSlow();
  ASSERT_NE(d, nullptr);
  {
    SseReader stream(d->url("/v1/completions"), StreamBody(1000));
    ASSERT_TRUE(stream.WaitForEvents(2, 60)) << d->Log();
    EXPECT_EQ(MetricSample(Curl("GET", d->url("/metrics")).body, "strata_num_requests_running"), 1);
    stream.Kill();
  }
  const std::string m = WaitForMetric(*d, "strata_num_requests_running", 0);
  EXPECT_EQ(MetricSample(m, "strata_num_requests_running"), 0) << m;
  EXPECT_EQ(MetricSample(m, "strata_requests_total", "status=\"cancelled\""), 1) << m;
  EXPECT_EQ(MetricSample(m, "strata_kv_cache_usage_ratio"), 0) << m;
  // The engine is free for the next request at once.
  auto next = Curl("POST", d->url("/v1/completions"), R"({"prompt":"x","max_tokens":2})");
  EXPECT_EQ(next.http_code, 200) << next.body;
  EXPECT_EQ(d->Stop(), 0) << d->Log();
}

TEST(LifecycleTest, RequestsBeyondTheConcurrencyLimitGet429AndOthersCarryOn) {
  auto d = StartSlow("server:\n  limits:\n    max_concurrent_streams: 2\n");
  ASSERT_NE(d, nullptr);
  SseReader first(d->url("/v1/completions"), StreamBody(12));
  SseReader second(d->url("/v1/completions"), StreamBody(12));
  ASSERT_TRUE(first.WaitForEvents(1, 60)) << d->Log();
  ASSERT_TRUE(second.WaitForEvents(1, 60)) << d->Log();
  auto third = Curl("POST", d->url("/v1/completions"), R"({"prompt":"x","max_tokens":1})");
  EXPECT_EQ(third.http_code, 429) << third.body;
  auto error = ParseJson(third.body, "429 body");
  ASSERT_TRUE(error.ok()) << third.body;
  EXPECT_EQ((*error)["error"]["type"], "rate_limit_error");
  EXPECT_NE(first.WaitForEnd(120).find("data: [DONE]"), std::string::npos);
  EXPECT_NE(second.WaitForEnd(120).find("data: [DONE]"), std::string::npos);
  auto after = Curl("POST", d->url("/v1/completions"), R"({"prompt":"x","max_tokens":1})");
  EXPECT_EQ(after.http_code, 200) << after.body;
  const std::string m = Curl("GET", d->url("/metrics")).body;
  EXPECT_EQ(MetricSample(m, "strata_requests_total", "status=\"rejected\""), 1) << m;
  EXPECT_EQ(d->Stop(), 0) << d->Log();
}

TEST(LifecycleTest, PortInUseFailsStartUpNamingTheAddress) {
  std::string error;
  auto first = DaemonProcess::Start("model:\n  path: synthetic:tiny\n", &error);
  ASSERT_NE(first, nullptr) << error;
  auto second = DaemonProcess::Start(
      "model:\n  path: synthetic:tiny\n", &error,
      {"--http-port", std::to_string(first->http_port())}, 60);
  EXPECT_EQ(second, nullptr);
  EXPECT_NE(error.find(std::to_string(first->http_port())), std::string::npos) << error;
  EXPECT_EQ(first->Stop(), 0);
}

}  // namespace
}  // namespace strata::testing
