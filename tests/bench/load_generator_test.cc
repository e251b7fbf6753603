// The load generator without a daemon: a port nobody listens on gives every request a transport
// error record (never a hang, never a crash), and the requests it would send are the documented
// OpenAI completions bodies. The daemon-driven behaviour is in tests/integration/bench_cli_test.
#include "bench/harness/load_generator.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/json.h"
#include "tests/integration/daemon.h"

namespace strata::bench {
namespace {

// A loopback port that is bound but not listening: connections to it are refused.
class RefusingPort {
 public:
  RefusingPort() : fd_(testing::BindLoopback(&port_)) {}
  ~RefusingPort() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int port_ = 0;
  int fd_ = -1;
};

TEST(LoadGeneratorTest, RefusedConnectionsAreRecordedNotHung) {
  RefusingPort refused;
  std::vector<BenchRequest> requests(3);
  for (int i = 0; i < 3; ++i) {
    requests[i].id = i;
    requests[i].prompt = {5, 6, 7};
    requests[i].arrival_s = 0.05 * i;
  }
  requests[2].after = 1;
  LoadOptions o;
  o.port = refused.port();
  const double t0 = NowSeconds();
  auto records = RunLoad(o, requests);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_LT(NowSeconds() - t0, 5.0);
  ASSERT_EQ(records->size(), 3u);
  for (const RequestRecord& r : *records) {
    EXPECT_EQ(r.http_status, 0);
    EXPECT_EQ(r.error, "connection closed before a response");
    EXPECT_GE(r.end_s, r.sent_s);
  }
  // Open loop: sent at the arrival times, and request 2 only after request 1 ended.
  EXPECT_GE((*records)[1].sent_s, 0.05);
  EXPECT_GE((*records)[2].sent_s, (*records)[1].end_s);
  EXPECT_FALSE(HttpGet(refused.port(), "/metrics", "", 2).ok());
}

TEST(LoadGeneratorTest, BodiesAreGreedyStreamingTokenPromptsWithUsage) {
  BenchRequest r;
  r.prompt = {1, 2, 3};
  r.max_tokens = 9;
  r.slo_class = "interactive";
  auto j = ParseJson(CompletionBody(r, "m"), "body");
  ASSERT_TRUE(j.ok());
  EXPECT_EQ((*j)["prompt"], Json({1, 2, 3}));
  EXPECT_EQ((*j)["max_tokens"], 9);
  EXPECT_EQ((*j)["temperature"], 0);
  EXPECT_EQ((*j)["ignore_eos"], true);
  EXPECT_EQ((*j)["stream"], true);
  EXPECT_EQ((*j)["stream_options"]["include_usage"], true);
  EXPECT_EQ((*j)["return_token_ids"], true);
  EXPECT_EQ((*j)["slo_class"], "interactive");
  EXPECT_EQ((*j)["model"], "m");
  r.slo_class = "";
  EXPECT_FALSE(ParseJson(CompletionBody(r, ""), "b")->contains("slo_class"));
}

TEST(LoadGeneratorTest, BadOptionsAreRejected) {
  LoadOptions o;
  o.concurrency = -1;
  EXPECT_FALSE(RunLoad(o, {}).ok());
  o.concurrency = 0;
  o.port = 0;
  EXPECT_FALSE(RunLoad(o, {}).ok());
  std::vector<BenchRequest> dangling(1);
  dangling[0].after = 5;
  o.port = 9;
  EXPECT_FALSE(RunLoad(o, dangling).ok());
}

}  // namespace
}  // namespace strata::bench
