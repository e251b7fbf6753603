// The SLO-aware scheduler (policy slo) with a fake clock and an executor that takes exactly the
// cost model's predicted step time, so every case is deterministic: deadline order within a
// priority, priority before deadline, a higher priority preempting at max_num_seqs, early
// rejection of an unreachable TTFT (class `reject`) while best effort is served last, prompt
// chunks shrunk to keep running sequences' TPOT slack, and a randomized run in which every
// accepted request finishes with its full output and nothing is left behind.
#include <gtest/gtest.h>

#include <random>

#include "engine/scheduler.h"

namespace strata::engine {
namespace {

using kvcache::KvCacheManager;
using kvcache::KvLayout;

// 1 ms per step, 1 ms per prompt token, 0.5 ms per decode: easy to predict by hand.
CostModel::Coefficients Costs() {
  CostModel::Coefficients c;
  c.base_s = 1e-3;
  c.per_prefill_token_s = 1e-3;
  c.per_decode_seq_s = 0.5e-3;
  return c;
}

SloSpec Class(const std::string& name, double ttft_ms, double tpot_ms, int priority = 0,
              bool reject = false) {
  return {.name = name, .ttft_s = ttft_ms / 1e3, .tpot_s = tpot_ms / 1e3, .priority = priority,
          .reject_on_overload = reject};
}

// A scheduler under test plus its world: KV pages, a clock, an executor.
class SloHarness {
 public:
  explicit SloHarness(int32_t max_num_seqs = 8, int64_t max_batch_tokens = 256,
                      int32_t pages = 512)
      : kv_(KvLayout{.num_layers = 1, .num_kv_heads = 1, .head_dim = 4, .block_size = 4}, pages,
            /*enable_prefix_caching=*/false),
        cost_(Costs()),
        sched_({.max_batch_tokens = max_batch_tokens, .max_num_seqs = max_num_seqs,
                .policy = "slo"},
               &kv_, &cost_, [this] { return now_; }) {}

  void Add(RequestId id, int32_t prompt, int64_t max_tokens, const SloSpec& slo) {
    auto seq = std::make_unique<Sequence>();
    seq->id = id;
    for (int32_t i = 0; i < prompt; ++i) seq->tokens.push_back(i % 50);
    seq->num_prompt_tokens = prompt;
    seq->max_tokens = max_tokens;
    seq->slo = slo;
    seq->sampler = std::make_unique<Sampler>(SamplingParams{});
    seq->prefix_seed = kvcache::SeedHash({.model_id = "slo", .block_size = 4, .cache_salt = {}});
    sched_.Add(std::move(seq));
  }

  // Plans a step, "runs" it for its predicted time, samples 1000 + output index.
  StepPlan Step() {
    StepPlan plan = sched_.Schedule();
    for (const Rejection& r : plan.rejected) rejected_.push_back(r);
    if (plan.empty()) {
      now_ += 1e-3;
      return plan;
    }
    now_ += cost_.Predict(plan.features);
    std::vector<int32_t> sampled;
    for (const ScheduledSeq& s : plan.seqs) {
      if (s.sample) sampled.push_back(1000 + static_cast<int32_t>(sched_.Find(s.id)->num_output_tokens()));
    }
    for (const SeqEvent& e : sched_.Update(plan, sampled)) {
      if (!e.finish_reason.empty()) finished_.push_back(e.id);
    }
    return plan;
  }

  // The new-token count of `id` in `plan` (0 when absent).
  static int64_t Tokens(const StepPlan& plan, RequestId id) {
    for (const ScheduledSeq& s : plan.seqs) {
      if (s.id == id) return s.num_new_tokens;
    }
    return 0;
  }

  Scheduler& sched() { return sched_; }
  KvCacheManager& kv() { return kv_; }
  double& now() { return now_; }
  std::vector<Rejection> rejected_;
  std::vector<RequestId> finished_;

 private:
  KvCacheManager kv_;
  CostModel cost_;
  double now_ = 100.0;
  Scheduler sched_;
};

TEST(SchedulerSloTest, DeadlineOrderWithinAPriority) {
  SloHarness h(/*max_num_seqs=*/1);
  h.Add(1, 8, 2, Class("loose", 5000, 0));
  h.Add(2, 8, 2, Class("tight", 500, 0));
  h.Add(3, 8, 2, Class("none", 0, 0));  // no target: deadline infinity
  StepPlan p = h.Step();
  EXPECT_EQ(SloHarness::Tokens(p, 2), 8);  // the earliest deadline goes first
  EXPECT_EQ(SloHarness::Tokens(p, 1), 0);
  while (h.finished_.size() < 3) h.Step();
  EXPECT_EQ(h.finished_, (std::vector<RequestId>{2, 1, 3}));
}

TEST(SchedulerSloTest, PriorityComesBeforeDeadline) {
  SloHarness h(/*max_num_seqs=*/1);
  h.Add(1, 8, 2, Class("urgent-low", 100, 0, /*priority=*/0));
  h.Add(2, 8, 2, Class("loose-high", 9000, 0, /*priority=*/5));
  StepPlan p = h.Step();
  EXPECT_EQ(SloHarness::Tokens(p, 2), 8);
  EXPECT_EQ(SloHarness::Tokens(p, 1), 0);
}

TEST(SchedulerSloTest, HigherPriorityPreemptsAtMaxNumSeqs) {
  SloHarness h(/*max_num_seqs=*/1);
  h.Add(1, 8, 50, Class("batch", 0, 0, /*priority=*/0));
  h.Step();  // 1 runs its prompt
  h.Step();  // and decodes
  ASSERT_EQ(h.sched().num_running(), 1);
  h.Add(2, 8, 2, Class("interactive", 1000, 0, /*priority=*/10));
  h.Add(3, 8, 2, Class("batch", 0, 0, /*priority=*/0));  // same priority: waits its turn
  StepPlan p = h.Step();
  EXPECT_EQ(p.preempted, (std::vector<RequestId>{1}));
  EXPECT_EQ(SloHarness::Tokens(p, 1), 0);
  EXPECT_EQ(SloHarness::Tokens(p, 2), 8);
  EXPECT_EQ(h.sched().num_preemptions(), 1);
  while (h.finished_.empty()) h.Step();
  EXPECT_EQ(h.finished_.front(), 2);
  while (h.finished_.size() < 3) h.Step();
  EXPECT_EQ(h.sched().num_preemptions(), 1);  // equal priorities never preempt each other
  EXPECT_EQ(h.sched().Find(1), nullptr);      // 1 resumed (recomputed) and finished
}

TEST(SchedulerSloTest, UnreachableTtftIsRejectedOrServedLast) {
  SloHarness h;
  // 100 prompt tokens cost >= 101 ms; a 50 ms target cannot be met.
  h.Add(1, 100, 2, Class("interactive", 50, 0, 0, /*reject=*/true));
  h.Add(2, 100, 2, Class("patient", 50, 0, 0, /*reject=*/false));
  h.Add(3, 16, 2, Class("ok", 5000, 0));
  StepPlan p = h.Step();
  ASSERT_EQ(h.rejected_.size(), 1u);
  EXPECT_EQ(h.rejected_[0].id, 1);
  EXPECT_NE(h.rejected_[0].reason.find("interactive"), std::string::npos);
  EXPECT_NE(h.rejected_[0].reason.find("50 ms"), std::string::npos);
  EXPECT_EQ(h.sched().Find(1), nullptr);
  EXPECT_FALSE(h.kv().Contains(1));
  // Best effort keeps its place behind the reachable request, in the same step if it fits.
  EXPECT_EQ(p.seqs.front().id, 3);
  EXPECT_EQ(SloHarness::Tokens(p, 2), 100);
  while (h.finished_.size() < 2) h.Step();
  EXPECT_EQ(h.sched().num_running() + h.sched().num_waiting(), 0);
}

TEST(SchedulerSloTest, PromptChunksShrinkToKeepTpotSlack) {
  SloHarness h(/*max_num_seqs=*/8, /*max_batch_tokens=*/512);
  h.Add(1, 4, 100, Class("chat", 1000, /*tpot_ms=*/40));
  h.Step();  // prompt + first token at t
  h.Step();  // one decode: 1.5 ms, well inside 40 ms per token
  h.Add(2, 400, 2, Class("doc", 0, 0));
  StepPlan p = h.Step();
  // 1 has generated 2 tokens over 1.5 ms of decode: slack = 2 x 40 - 1.5 = 78.5 ms. The step may
  // spend half of it plus 90% of the target: 39.25 + 36 = 75.25 ms = 1 ms + 0.5 ms (decode) +
  // chunk x 1 ms -> chunk <= 73.
  EXPECT_EQ(SloHarness::Tokens(p, 1), 1);
  EXPECT_EQ(SloHarness::Tokens(p, 2), 73);
  // Without a TPOT target nothing limits the chunk but the token budget.
  SloHarness free(/*max_num_seqs=*/8, /*max_batch_tokens=*/512);
  free.Add(1, 4, 100, Class("chat", 1000, 0));
  free.Step();
  free.Step();
  free.Add(2, 400, 2, Class("doc", 0, 0));
  EXPECT_EQ(SloHarness::Tokens(free.Step(), 2), 400);
}

TEST(SchedulerSloTest, RandomLoadFinishesEveryAcceptedRequestAndLeavesNothing) {
  SloHarness h(/*max_num_seqs=*/4, /*max_batch_tokens=*/64, /*pages=*/40);
  std::mt19937 rng(7);
  const SloSpec classes[] = {Class("interactive", 200, 30, 10, true), Class("batch", 0, 0, 0),
                             Class("mid", 2000, 100, 5, false)};
  std::map<RequestId, int64_t> wanted;
  for (RequestId id = 1; id <= 40; ++id) {
    const int64_t max_tokens = 1 + rng() % 12;
    h.Add(id, 1 + static_cast<int32_t>(rng() % 60), max_tokens, classes[rng() % 3]);
    wanted[id] = max_tokens;
    for (int s = 0; s < 3; ++s) h.Step();
  }
  for (int s = 0; s < 5000 && h.sched().num_running() + h.sched().num_waiting() > 0; ++s) {
    h.Step();
  }
  EXPECT_EQ(h.sched().num_running() + h.sched().num_waiting(), 0);
  EXPECT_EQ(h.finished_.size() + h.rejected_.size(), 40u);
  EXPECT_EQ(h.kv().pool().num_free(), h.kv().pool().num_pages());
  for (const Rejection& r : h.rejected_) EXPECT_NE(r.reason.find("interactive"), std::string::npos);
}

}  // namespace
}  // namespace strata::engine
