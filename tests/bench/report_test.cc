#include "bench/harness/report.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/status.h"

namespace strata::bench {
namespace {

// A request the server answered with `http_status`, ending at `end`.
RequestRecord Answered(int64_t id, const std::string& slo_class, double sent, double end,
                       int http_status) {
  RequestRecord r;
  r.id = id;
  r.slo_class = slo_class;
  r.scheduled_s = sent;
  r.sent_s = sent;
  r.end_s = end;
  r.http_status = http_status;
  return r;
}

RequestRecord Completion(int64_t id, const std::string& slo_class, double sent, double first,
                         double end, std::vector<double> chunks, int64_t output_tokens) {
  RequestRecord r = Answered(id, slo_class, sent, end, 200);
  r.first_token_s = first;
  r.chunk_times_s = std::move(chunks);
  r.output_tokens = output_tokens;
  r.finish_reason = "length";
  return r;
}

RequestRecord WithTokens(RequestRecord r, int64_t prompt, int64_t cached, double queue_s) {
  r.prompt_tokens = prompt;
  r.cached_tokens = cached;
  r.server_queue_s = queue_s;
  return r;
}

// An error status and no tokens.
RequestRecord Failed(int64_t id, const std::string& slo_class, double sent, double end,
                     int http_status) {
  RequestRecord r = Answered(id, slo_class, sent, end, http_status);
  r.error = StrCat("HTTP ", http_status);
  return r;
}

// A recorded trace with times in multiples of 1/16 s (exact in binary, so <= at a target is
// exact). Classes: chat (own target) and batch (falls back to targets[""]).
//
// id class  sent  first  end    chunks                  out  TTFT  TPOT          queue  compute e2e
// 1  chat   0     0.25   2      .25 .5 .75 1 1.75       5    .25   1.5/4=.375 X  .125   .125   2
// 2  chat   0.5   0.75   1.5    .75 1 1.25              3    .25   .5/2=.25 ok   .0625  .1875  1
// 3  chat   1     2      2.5    2 2.25                  2    1 X   .25           .75    .25    1.5
// 4  chat   1.5   -      1.5625 rejected (429)
// 5  chat   2     2.25   2.5    cancelled by the workload
// 6  batch  0.25  1.25   4      1.25 2 2.75 3.5         4    1     2.25/3=.75    -      -      3.75
// 7  batch  3     4.5    4.5    4.5                     1    1.5   -             1      .5     1.5
// 8  batch  3.5   -      3.625  error (500)
// 9  batch  4     5      6      5 5.5 6                 3    1     1/2=.5        .25    .75    2
// 10 chat   5     5.25   5.5    5.25 5.5                2    .25   .25 ok        .125   .125   .5
//
// chat target: TTFT .5, TPOT .25 -> met: 2, 10 (1 misses TPOT, 3 misses TTFT).
// batch target (""): TTFT 2, no TPOT target -> met: 6, 7, 9.
// duration = last end (6) - first sent (0) = 6 s.
std::vector<RequestRecord> Trace() {
  std::vector<RequestRecord> t;
  t.push_back(
      WithTokens(Completion(1, "chat", 0, 0.25, 2, {0.25, 0.5, 0.75, 1, 1.75}, 5), 64, 32, 0.125));
  t.push_back(WithTokens(Completion(2, "chat", 0.5, 0.75, 1.5, {0.75, 1, 1.25}, 3), 32, 0, 0.0625));
  t.push_back(WithTokens(Completion(3, "chat", 1, 2, 2.5, {2, 2.25}, 2), 128, 64, 0.75));
  t.push_back(Failed(4, "chat", 1.5, 1.5625, 429));
  RequestRecord cancelled = Completion(5, "chat", 2, 2.25, 2.5, {2.25}, 1);
  cancelled.finish_reason = "";
  cancelled.cancelled = true;
  t.push_back(cancelled);
  t.push_back(
      WithTokens(Completion(6, "batch", 0.25, 1.25, 4, {1.25, 2, 2.75, 3.5}, 4), 256, 128, -1));
  t.push_back(WithTokens(Completion(7, "batch", 3, 4.5, 4.5, {4.5}, 1), 16, 0, 1));
  t.push_back(Failed(8, "batch", 3.5, 3.625, 500));
  t.push_back(WithTokens(Completion(9, "batch", 4, 5, 6, {5, 5.5, 6}, 3), 64, 64, 0.25));
  t.push_back(WithTokens(Completion(10, "chat", 5, 5.25, 5.5, {5.25, 5.5}, 2), 32, 16, 0.125));
  return t;
}

const SloTargets kTargets{{"chat", {.ttft_s = 0.5, .tpot_s = 0.25}},
                          {"", {.ttft_s = 2, .tpot_s = 0}}};

TEST(PercentileTest, MatchesNumpyLinear) {
  // np.percentile(v, p) with the default method="linear": rank = p/100 * (n-1), interpolated.
  EXPECT_DOUBLE_EQ(Percentile({1, 2, 3, 4}, 50), 2.5);   // rank 1.5
  EXPECT_DOUBLE_EQ(Percentile({1, 2, 3, 4}, 25), 1.75);  // rank 0.75
  EXPECT_DOUBLE_EQ(Percentile({4, 3, 2, 1}, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile({4, 3, 2, 1}, 100), 4);
  EXPECT_DOUBLE_EQ(Percentile({3, 1, 2}, 50), 2);                // rank 1
  EXPECT_NEAR(Percentile({3, 1, 2}, 90), 2.8, 1e-9);             // rank 1.8: 2 + 0.8 * 1
  EXPECT_NEAR(Percentile({40, 0, 30, 10, 20}, 99), 39.6, 1e-9);  // rank 3.96: 30 + 0.96 * 10
  EXPECT_NEAR(Percentile({40, 0, 30, 10, 20}, 33), 13.2, 1e-9);  // rank 1.32: 10 + 0.32 * 10
  EXPECT_DOUBLE_EQ(Percentile({7}, 99), 7);
  EXPECT_EQ(Percentile({}, 50), 0);
}

TEST(PercentileTest, StatsOfNothingIsZeros) {
  LatencyStats s = Stats({});
  EXPECT_EQ(s.n, 0);
  EXPECT_EQ(s.mean, 0);
  EXPECT_EQ(s.p99, 0);
  EXPECT_EQ(s.max, 0);
}

TEST(ReportTest, LatenciesOfOneRequest) {
  RequestLatencies lat = Latencies(Trace()[0]);
  EXPECT_EQ(lat.ttft_s, 0.25);
  EXPECT_EQ(lat.queue_s, 0.125);
  EXPECT_EQ(lat.compute_s, 0.125);
  EXPECT_EQ(lat.tpot_s, 0.375);
  EXPECT_EQ(lat.e2e_s, 2);
  RequestLatencies one_token = Latencies(Trace()[6]);
  EXPECT_EQ(one_token.tpot_s, -1);
  RequestLatencies no_queue = Latencies(Trace()[5]);
  EXPECT_EQ(no_queue.queue_s, -1);
  EXPECT_EQ(no_queue.compute_s, -1);
  EXPECT_EQ(Latencies(Trace()[3]).ttft_s, -1);  // rejected: no token
}

TEST(ReportTest, RunTotalsOfTheTrace) {
  RunSummary s = Summarize(Trace(), kTargets);
  EXPECT_EQ(s.duration_s, 6);
  // Completed: 1 2 3 6 7 9 10.
  EXPECT_EQ(s.input_tokens, 64 + 32 + 128 + 256 + 16 + 64 + 32);  // 592
  EXPECT_EQ(s.output_tokens, 5 + 3 + 2 + 4 + 1 + 3 + 2);          // 20
  EXPECT_EQ(s.cached_tokens, 32 + 0 + 64 + 128 + 0 + 64 + 16);    // 304
  EXPECT_DOUBLE_EQ(s.request_rps, 7.0 / 6);
  EXPECT_DOUBLE_EQ(s.input_tps, 592.0 / 6);
  EXPECT_DOUBLE_EQ(s.output_tps, 20.0 / 6);
}

TEST(ReportTest, AllClassesRowOfTheTrace) {
  const ClassSummary a = Summarize(Trace(), kTargets).all;
  EXPECT_EQ(a.slo_class, "");
  EXPECT_EQ(a.target.ttft_s, 0);
  EXPECT_EQ(a.requests, 10);
  EXPECT_EQ(a.completed, 7);
  EXPECT_EQ(a.met, 5);  // 2 10 (chat), 6 7 9 (batch)
  EXPECT_EQ(a.rejected, 1);
  EXPECT_EQ(a.errors, 1);
  EXPECT_EQ(a.cancelled, 1);
  EXPECT_DOUBLE_EQ(a.goodput_rps, 5.0 / 6);
  EXPECT_DOUBLE_EQ(a.attainment, 5.0 / 9);  // met / (requests - cancelled)

  // TTFT sorted: .25 .25 .25 1 1 1 1.5 (n 7; p50 rank 3; p90 rank 5.4; p99 rank 5.94).
  EXPECT_EQ(a.ttft.n, 7);
  EXPECT_DOUBLE_EQ(a.ttft.mean, 5.25 / 7);
  EXPECT_DOUBLE_EQ(a.ttft.p50, 1);
  EXPECT_NEAR(a.ttft.p90, 1 + 0.4 * 0.5, 1e-9);
  EXPECT_NEAR(a.ttft.p99, 1 + 0.94 * 0.5, 1e-9);
  EXPECT_EQ(a.ttft.max, 1.5);

  // Queue sorted: .0625 .125 .125 .25 .75 1 (request 6 reported none; p50 rank 2.5).
  EXPECT_EQ(a.queue.n, 6);
  EXPECT_DOUBLE_EQ(a.queue.mean, 2.3125 / 6);
  EXPECT_DOUBLE_EQ(a.queue.p50, 0.1875);
  EXPECT_NEAR(a.queue.p90, 0.75 + 0.5 * 0.25, 1e-9);   // rank 4.5
  EXPECT_NEAR(a.queue.p99, 0.75 + 0.95 * 0.25, 1e-9);  // rank 4.95
  EXPECT_EQ(a.queue.max, 1);

  // Compute sorted: .125 .125 .1875 .25 .5 .75.
  EXPECT_EQ(a.compute.n, 6);
  EXPECT_DOUBLE_EQ(a.compute.mean, 1.9375 / 6);
  EXPECT_DOUBLE_EQ(a.compute.p50, 0.21875);
  EXPECT_EQ(a.compute.max, 0.75);

  // TPOT (>= 2 tokens) sorted: .25 .25 .25 .375 .5 .75.
  EXPECT_EQ(a.tpot.n, 6);
  EXPECT_DOUBLE_EQ(a.tpot.mean, 2.375 / 6);
  EXPECT_DOUBLE_EQ(a.tpot.p50, 0.3125);
  EXPECT_NEAR(a.tpot.p99, 0.5 + 0.95 * 0.25, 1e-9);
  EXPECT_EQ(a.tpot.max, 0.75);

  // e2e sorted: .5 1 1.5 1.5 2 2 3.75.
  EXPECT_EQ(a.e2e.n, 7);
  EXPECT_DOUBLE_EQ(a.e2e.mean, 12.25 / 7);
  EXPECT_DOUBLE_EQ(a.e2e.p50, 1.5);
  EXPECT_NEAR(a.e2e.p90, 2 + 0.4 * 1.75, 1e-9);
  EXPECT_EQ(a.e2e.max, 3.75);
}

TEST(ReportTest, PerClassRowsOfTheTrace) {
  const RunSummary s = Summarize(Trace(), kTargets);
  ASSERT_EQ(s.classes.size(), 2u);
  const ClassSummary& batch = s.classes[0];
  const ClassSummary& chat = s.classes[1];
  EXPECT_EQ(batch.slo_class, "batch");
  EXPECT_EQ(batch.target.ttft_s, 2);  // from targets[""]
  EXPECT_EQ(batch.requests, 4);
  EXPECT_EQ(batch.completed, 3);
  EXPECT_EQ(batch.met, 3);
  EXPECT_EQ(batch.errors, 1);
  EXPECT_EQ(batch.rejected, 0);
  EXPECT_DOUBLE_EQ(batch.goodput_rps, 0.5);
  EXPECT_DOUBLE_EQ(batch.attainment, 0.75);
  EXPECT_EQ(batch.ttft.p50, 1);      // 1 1 1.5
  EXPECT_EQ(batch.tpot.p50, 0.625);  // .5 .75

  EXPECT_EQ(chat.slo_class, "chat");
  EXPECT_EQ(chat.target.tpot_s, 0.25);
  EXPECT_EQ(chat.requests, 6);
  EXPECT_EQ(chat.completed, 4);
  EXPECT_EQ(chat.met, 2);
  EXPECT_EQ(chat.rejected, 1);
  EXPECT_EQ(chat.cancelled, 1);
  EXPECT_DOUBLE_EQ(chat.goodput_rps, 2.0 / 6);
  EXPECT_DOUBLE_EQ(chat.attainment, 0.4);  // 2 / (6 - 1)
  // TTFT sorted: .25 .25 .25 1 (p50 rank 1.5; p90 rank 2.7).
  EXPECT_DOUBLE_EQ(chat.ttft.mean, 0.4375);
  EXPECT_DOUBLE_EQ(chat.ttft.p50, 0.25);
  EXPECT_NEAR(chat.ttft.p90, 0.25 + 0.7 * 0.75, 1e-9);
}

TEST(ReportTest, TargetFallsBackToDefaultEntryThenToCompletionAlone) {
  // targets[""] with a 0.5 s TTFT: batch's TTFTs (1, 1.5, 1) all miss.
  SloTargets strict{{"chat", {.ttft_s = 0.5, .tpot_s = 0.25}}, {"", {.ttft_s = 0.5, .tpot_s = 0}}};
  RunSummary s = Summarize(Trace(), strict);
  EXPECT_EQ(s.classes[0].met, 0);
  EXPECT_EQ(s.all.met, 2);
  // No entry for batch and no "": completion alone judges it.
  s = Summarize(Trace(), {{"chat", {.ttft_s = 0.5, .tpot_s = 0.25}}});
  EXPECT_EQ(s.classes[0].met, 3);
  EXPECT_EQ(s.classes[0].target.ttft_s, 0);
  // No targets at all: met == completed.
  s = Summarize(Trace(), {});
  EXPECT_EQ(s.all.met, 7);
  EXPECT_DOUBLE_EQ(s.all.attainment, 7.0 / 9);
}

// A completion without a single token has no TTFT sample; its e2e is judged as its TTFT.
TEST(ReportTest, CompletionWithoutTokensIsJudgedOnItsEndToEnd) {
  std::vector<RequestRecord> records{Completion(1, "", 0, -1, 0.75, {}, 0)};
  RunSummary s = Summarize(records, {{"", {.ttft_s = 0.5, .tpot_s = 0}}});
  EXPECT_EQ(s.all.completed, 1);
  EXPECT_EQ(s.all.ttft.n, 0);
  EXPECT_EQ(s.all.e2e.n, 1);
  EXPECT_EQ(s.all.met, 0);
  s = Summarize(records, {{"", {.ttft_s = 1, .tpot_s = 0}}});
  EXPECT_EQ(s.all.met, 1);
  EXPECT_EQ(s.classes.size(), 1u);
  EXPECT_EQ(s.classes[0].slo_class, "");
}

TEST(ReportTest, NothingSentGivesZeroRates) {
  RequestRecord unsent;  // connect failed: no times at all
  unsent.error = "connection refused";
  RunSummary s = Summarize({unsent}, kTargets);
  EXPECT_EQ(s.duration_s, 0);
  EXPECT_EQ(s.all.errors, 1);
  EXPECT_EQ(s.all.goodput_rps, 0);
  EXPECT_EQ(s.request_rps, 0);
  EXPECT_EQ(s.all.attainment, 0);
  s = Summarize({}, kTargets);
  EXPECT_EQ(s.all.requests, 0);
  EXPECT_TRUE(s.classes.empty());
}

TEST(FractionsTest, OnMadeUpLimits) {
  std::vector<RequestRecord> trace = Trace();
  RunSummary s = Summarize(trace, kTargets);
  MetricsDelta m;
  m.transfer_bytes = {{"host->disk", 600e6}, {"disk->host", 1200e6}, {"host->device", 5e9}};
  MachineLimits limits;
  limits.mem_read_bytes_per_s = 10e9;
  limits.gemm_flops = 1e9;
  limits.disk_write_bytes_per_s = 400e6;
  limits.disk_read_bytes_per_s = 1e9;
  ModelCosts costs;
  costs.matmul_params = 1'000'000;
  costs.weight_bytes = 1'000'000'000;
  LimitFractions f = Fractions(s, trace, m, limits, costs);
  // Mean TPOT 2.375/6 s: 1e9 B / (2.375/6 s) over 10e9 B/s.
  EXPECT_NEAR(f.decode_bandwidth, 1e9 / (2.375 / 6) / 10e9, 1e-12);
  // Per request 2 x 1e6 x computed tokens / compute s (request 6 reports no queue: its TTFT;
  // request 9 computed nothing and is left out):
  // 1: 2e6*32/.125 = 512e6   2: 2e6*32/.1875 = 1024e6/3   3: 2e6*64/.25 = 512e6
  // 6: 2e6*128/1 = 256e6     7: 2e6*16/.5 = 64e6          10: 2e6*16/.125 = 256e6
  EXPECT_NEAR(f.prefill_gemm, (512 + 1024.0 / 3 + 512 + 256 + 64 + 256) / 6 * 1e6 / 1e9, 1e-12);
  EXPECT_NEAR(f.disk_write, 600e6 / 6 / 400e6, 1e-12);  // 0.25
  EXPECT_NEAR(f.disk_read, 1200e6 / 6 / 1e9, 1e-12);    // 0.2
}

TEST(FractionsTest, UnknownLimitsOrCostsGiveZero) {
  std::vector<RequestRecord> trace = Trace();
  RunSummary s = Summarize(trace, kTargets);
  MetricsDelta m;
  m.transfer_bytes = {{"host->disk", 600e6}};
  ModelCosts weights_only;
  weights_only.weight_bytes = 1;
  LimitFractions f = Fractions(s, trace, m, MachineLimits{}, weights_only);
  EXPECT_EQ(f.decode_bandwidth, 0);
  EXPECT_EQ(f.prefill_gemm, 0);
  EXPECT_EQ(f.disk_write, 0);
  EXPECT_EQ(f.disk_read, 0);
  MachineLimits gemm_only;
  gemm_only.gemm_flops = 1e9;
  f = Fractions(s, trace, MetricsDelta{}, gemm_only, ModelCosts{});
  EXPECT_EQ(f.prefill_gemm, 0);
}

}  // namespace
}  // namespace strata::bench
