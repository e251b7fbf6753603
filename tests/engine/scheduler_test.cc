// Scheduler tests without a model: a real KvCacheManager (2 layers, 4 tokens per block, so a
// block costs 2 pages) and a fake executor that plays the model. The executor keeps a fake KV
// arena of (token, position) per slot, checks that every scheduled chunk's context [0, start) is
// really in the pages the KV manager names, writes the new tokens, and samples
// TokenFor(id, output index): tokens depend only on (id, output index), so any scheduling
// (chunking, preemption, prefix hits) must give every request the same output.
#include "engine/scheduler.h"
#include "tests/common/tokens.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <numeric>
#include <optional>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace strata::engine {
namespace {

using kvcache::BlockHash;
using kvcache::KvCacheManager;
using kvcache::KvLayout;

// (id, start, num_new_tokens, sample): one plan entry, comparable and printable by gtest.
using Entry = std::tuple<RequestId, int64_t, int64_t, bool>;
using Finished = std::pair<RequestId, std::string>;  // (id, finish_reason)

KvLayout Layout() {
  return KvLayout{.num_layers = 2, .num_kv_heads = 1, .head_dim = 4, .block_size = 4};
}

BlockHash Seed(std::optional<std::string> salt = std::nullopt) {
  return kvcache::SeedHash(
      kvcache::PrefixSeed{.model_id = "test", .block_size = 4, .cache_salt = std::move(salt)});
}

// Prompt tokens stay below 100; generated ones are >= 100000, unique per (id, index < 100).
int32_t TokenFor(RequestId id, int64_t output_index) {
  return static_cast<int32_t>(100000 + id * 100 + output_index);
}

std::unique_ptr<Sequence> MakeSeq(RequestId id, std::vector<int32_t> prompt, int64_t max_tokens,
                                  std::vector<int32_t> stops = {}, BlockHash seed = Seed()) {
  auto seq = std::make_unique<Sequence>();
  seq->id = id;
  seq->num_prompt_tokens = static_cast<int64_t>(prompt.size());
  seq->tokens = std::move(prompt);
  seq->max_tokens = max_tokens;
  seq->stop_token_ids = std::move(stops);
  seq->prefix_seed = seed;
  return seq;
}

std::vector<Entry> Entries(const StepPlan& plan) {
  std::vector<Entry> out;
  for (const ScheduledSeq& s : plan.seqs) {
    out.emplace_back(s.id, s.start, s.num_new_tokens, s.sample);
  }
  return out;
}

// The model stand-in. Checks each entry against the scheduler's view of the sequence and the
// KV pages, then returns one sampled token per entry with sample == true.
class FakeExecutor {
 public:
  explicit FakeExecutor(const KvCacheManager* kv)
      : kv_(kv), arena_(static_cast<size_t>(kv->pool().num_pages()) * kv->layout().block_size) {}

  std::vector<int32_t> Run(const Scheduler& sched, const StepPlan& plan) {
    std::vector<int32_t> sampled;
    for (const ScheduledSeq& s : plan.seqs) {
      const Sequence* seq = sched.Find(s.id);
      if (seq == nullptr) {
        ADD_FAILURE() << "scheduled id " << s.id << " is unknown";
        continue;
      }
      const int64_t end = s.start + s.num_new_tokens;
      EXPECT_GT(s.num_new_tokens, 0) << "id " << s.id;
      EXPECT_EQ(s.start, seq->num_computed_tokens) << "id " << s.id;
      EXPECT_EQ(s.sample, end == static_cast<int64_t>(seq->tokens.size())) << "id " << s.id;
      EXPECT_LE(end, kv_->num_blocks(s.id) * kv_->layout().block_size) << "id " << s.id;
      for (int64_t p = 0; p < s.start; ++p) ExpectCell(*seq, p);
      for (int64_t p = s.start; p < end; ++p) WriteCell(*seq, p);
      if (s.sample) sampled.push_back(TokenFor(s.id, end - seq->num_prompt_tokens));
    }
    return sampled;
  }

 private:
  struct Cell {
    int32_t token = -1;
    int64_t position = -1;
    friend bool operator==(const Cell&, const Cell&) = default;
  };

  void ExpectCell(const Sequence& seq, int64_t p) {
    const Cell want{seq.tokens[p], p};
    for (int32_t l = 0; l < kv_->layout().num_layers; ++l) {
      const Cell& got = arena_[kv_->Slot(seq.id, l, p)];
      EXPECT_TRUE(got == want) << "id " << seq.id << " layer " << l << " position " << p
                               << ": KV holds token " << got.token << " at " << got.position
                               << ", expected " << want.token;
    }
  }

  void WriteCell(const Sequence& seq, int64_t p) {
    for (int32_t l = 0; l < kv_->layout().num_layers; ++l) {
      arena_[kv_->Slot(seq.id, l, p)] = Cell{seq.tokens[p], p};
    }
  }

  const KvCacheManager* kv_;
  std::vector<Cell> arena_;  // [num_pages * block_size]: slot -> what was written there
};

// A scheduler, its KV cache and the fake executor; records every request's output.
class Harness {
 public:
  Harness(const SchedulerConfig& config, int32_t num_pages, bool enable_prefix_caching)
      : kv_(Layout(), num_pages, enable_prefix_caching), sched_(config, &kv_), exec_(&kv_) {}

  struct StepResult {
    StepPlan plan;
    std::vector<SeqEvent> events;
  };

  // `check` sees the plan before the executor runs it.
  StepResult Step(const std::function<void(const StepPlan&)>& check = nullptr) {
    StepResult r;
    r.plan = sched_.Schedule();
    if (check) check(r.plan);
    const std::vector<int32_t> sampled = exec_.Run(sched_, r.plan);
    r.events = sched_.Update(r.plan, sampled);
    for (const SeqEvent& e : r.events) {
      if (e.token >= 0) outputs_[e.id].push_back(e.token);
      if (!e.finish_reason.empty()) finish_reasons_[e.id] = e.finish_reason;
    }
    return r;
  }

  bool Idle() const { return sched_.num_running() == 0 && sched_.num_waiting() == 0; }

  // With nothing running, every page must be free and unreferenced.
  void ExpectAllPagesFree() const {
    EXPECT_EQ(kv_.pool().num_free(), kv_.pool().num_pages());
    for (int32_t p = 0; p < kv_.pool().num_pages(); ++p) {
      EXPECT_EQ(kv_.pool().ref_count(p), 0) << "page " << p;
    }
    EXPECT_TRUE(kv_.CheckInvariants().ok()) << kv_.CheckInvariants();
  }

  std::vector<int32_t> Output(RequestId id) const {
    auto it = outputs_.find(id);
    return it == outputs_.end() ? std::vector<int32_t>{} : it->second;
  }
  std::string FinishReason(RequestId id) const {
    auto it = finish_reasons_.find(id);
    return it == finish_reasons_.end() ? "" : it->second;
  }

  KvCacheManager& kv() { return kv_; }
  Scheduler& sched() { return sched_; }

 private:
  KvCacheManager kv_;
  Scheduler sched_;
  FakeExecutor exec_;
  std::map<RequestId, std::vector<int32_t>> outputs_;
  std::map<RequestId, std::string> finish_reasons_;
};

std::vector<int32_t> ExpectedOutput(RequestId id, int64_t n) {
  std::vector<int32_t> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(TokenFor(id, i));
  return out;
}

std::vector<Finished> FinishedIn(const std::vector<SeqEvent>& events) {
  std::vector<Finished> out;
  for (const SeqEvent& e : events) {
    if (!e.finish_reason.empty()) out.emplace_back(e.id, e.finish_reason);
  }
  return out;
}

TEST(SchedulerConfigTest, ValidateRejectsNonPositiveLimits) {
  EXPECT_TRUE(SchedulerConfig{}.Validate().ok());
  EXPECT_FALSE(SchedulerConfig{.max_batch_tokens = 0}.Validate().ok());
  EXPECT_FALSE(SchedulerConfig{.max_num_seqs = 0}.Validate().ok());
}

// The iteration table (TensorRT-LLM capacitySchedulerTest style), budget 8 tokens, 2 sequences:
//   1: prompt 6,  max_tokens 3, arrives at step 0
//   2: prompt 10, max_tokens 2, arrives at step 0   (prefilled in chunks of 2, then 7, then 1)
//   3: prompt 3,  max_tokens 5, stop on its 2nd token, arrives at step 1
//   4: prompt 2,  max_tokens 2, arrives at step 1   (waits for a slot: max_num_seqs, FCFS)
TEST(SchedulerTest, IterationTable) {
  Harness h({.max_batch_tokens = 8, .max_num_seqs = 2}, 64, /*enable_prefix_caching=*/false);
  struct Row {
    std::vector<Entry> seqs;
    std::vector<Finished> finished;
  };
  const std::vector<Row> table = {
      // A prefill of 6 fills the budget up to 2: request 2 starts with a chunk.
      {{{1, 0, 6, true}, {2, 0, 2, false}}, {}},
      // Running first: 1's decode, then 2's chunk takes the other 7; 3 and 4 get nothing.
      {{{1, 6, 1, true}, {2, 2, 7, false}}, {}},
      // 2's last prompt token is sampled right next to 1's final decode.
      {{{1, 7, 1, true}, {2, 9, 1, true}}, {{1, "length"}}},
      // One slot free: 3 is admitted (FCFS); 4 waits although 4 tokens of budget are left.
      {{{2, 10, 1, true}, {3, 0, 3, true}}, {{2, "length"}}},
      {{{3, 3, 1, true}, {4, 0, 2, true}}, {{3, "stop"}}},
      {{{4, 2, 1, true}}, {{4, "length"}}},
      {{}, {}},
  };
  h.sched().Add(MakeSeq(1, Range(1, 6), 3));
  h.sched().Add(MakeSeq(2, Range(11, 10), 2));
  for (size_t step = 0; step < table.size(); ++step) {
    if (step == 1) {
      h.sched().Add(MakeSeq(3, Range(31, 3), 5, {TokenFor(3, 1)}));
      h.sched().Add(MakeSeq(4, Range(41, 2), 2));
    }
    const Harness::StepResult r = h.Step();
    EXPECT_EQ(Entries(r.plan), table[step].seqs) << "step " << step;
    EXPECT_EQ(FinishedIn(r.events), table[step].finished) << "step " << step;
    EXPECT_TRUE(r.plan.preempted.empty()) << "step " << step;
    EXPECT_LE(r.plan.num_tokens, 8) << "step " << step;
  }
  EXPECT_EQ(h.Output(1), ExpectedOutput(1, 3));
  EXPECT_EQ(h.Output(2), ExpectedOutput(2, 2));
  EXPECT_EQ(h.Output(3), ExpectedOutput(3, 2));  // stopped on TokenFor(3, 1), which is emitted
  EXPECT_EQ(h.Output(4), ExpectedOutput(4, 2));
  EXPECT_TRUE(h.Idle());
  h.ExpectAllPagesFree();
}

TEST(SchedulerTest, NumTokensIsTheSumOfTheChunks) {
  Harness h({.max_batch_tokens = 8, .max_num_seqs = 4}, 64, false);
  h.sched().Add(MakeSeq(1, Range(1, 3), 4));
  h.sched().Add(MakeSeq(2, Range(11, 9), 4));
  const StepPlan plan = h.Step().plan;
  EXPECT_EQ(Entries(plan), (std::vector<Entry>{{1, 0, 3, true}, {2, 0, 5, false}}));
  EXPECT_EQ(plan.num_tokens, 8);
}

// 8 pages = 4 blocks for two sequences that each grow to 3 blocks. At step 5 sequence 1 needs its
// third block: the newest running one (2) is preempted, goes to the front of the waiting queue
// (ahead of 3, which arrived at step 2 and has been waiting for pages), and is recomputed at step
// 6: prompt and its 5 generated tokens are prefilled again. With prefix caching its first block
// is still cached (its second was evicted to give 1 its third block), so only 5 tokens are
// recomputed.
class SchedulerPreemptionTest : public ::testing::TestWithParam<bool> {};

TEST_P(SchedulerPreemptionTest, NewestIsPreemptedRecomputedAndFinishesWithTheSameTokens) {
  const bool caching = GetParam();
  Harness h({.max_batch_tokens = 16, .max_num_seqs = 4}, 8, caching);
  h.sched().Add(MakeSeq(1, Range(1, 4), 6));
  h.sched().Add(MakeSeq(2, Range(11, 4), 6));
  const int64_t recached = caching ? 4 : 0;
  struct Row {
    std::vector<Entry> seqs;
    std::vector<RequestId> preempted;
  };
  const std::vector<Row> table = {
      {{{1, 0, 4, true}, {2, 0, 4, true}}, {}},
      {{{1, 4, 1, true}, {2, 4, 1, true}}, {}},  // the pool is now full
      {{{1, 5, 1, true}, {2, 5, 1, true}}, {}},  // 3 arrives and waits for pages
      {{{1, 6, 1, true}, {2, 6, 1, true}}, {}},
      {{{1, 7, 1, true}, {2, 7, 1, true}}, {}},
      {{{1, 8, 1, true}}, {2}},  // no admissions in a preempting step
      {{{2, recached, 9 - recached, true}, {3, 0, 4, true}}, {}},
      {{}, {}},
  };
  for (size_t step = 0; step < table.size(); ++step) {
    if (step == 2) h.sched().Add(MakeSeq(3, Range(21, 4), 1));
    const Harness::StepResult r = h.Step();
    EXPECT_EQ(Entries(r.plan), table[step].seqs) << "step " << step;
    EXPECT_EQ(r.plan.preempted, table[step].preempted) << "step " << step;
    ASSERT_TRUE(h.kv().CheckInvariants().ok()) << h.kv().CheckInvariants();
    if (step == 5) {
      const Sequence* victim = h.sched().Find(2);
      ASSERT_NE(victim, nullptr);
      EXPECT_EQ(victim->num_computed_tokens, 0);
      EXPECT_EQ(victim->num_preemptions, 1);
      EXPECT_EQ(victim->num_output_tokens(), 5);
      EXPECT_FALSE(h.kv().Contains(2));
      EXPECT_EQ(h.sched().num_waiting(), 2);
      EXPECT_EQ(h.sched().num_running(), 0);  // 1 finished in this step
      EXPECT_EQ(h.FinishReason(1), "length");
    }
  }
  EXPECT_EQ(h.sched().num_preemptions(), 1);
  EXPECT_EQ(h.Output(1), ExpectedOutput(1, 6));
  EXPECT_EQ(h.Output(2), ExpectedOutput(2, 6));
  EXPECT_EQ(h.Output(3), ExpectedOutput(3, 1));
  EXPECT_EQ(h.FinishReason(2), "length");
  h.ExpectAllPagesFree();
}

INSTANTIATE_TEST_SUITE_P(Caching, SchedulerPreemptionTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "On" : "Off"; });

// A prompt seen before (same seed hash) is admitted with its full cached blocks computed, always
// leaving at least one token to compute; another seed shares nothing.
TEST(SchedulerTest, PrefixCacheHitsAreAdmittedAsComputed) {
  Harness h({.max_batch_tokens = 64, .max_num_seqs = 4}, 64, /*enable_prefix_caching=*/true);
  const std::vector<int32_t> prompt = Range(1, 10);
  h.sched().Add(MakeSeq(1, prompt, 1));
  EXPECT_EQ(Entries(h.Step().plan), (std::vector<Entry>{{1, 0, 10, true}}));
  ASSERT_TRUE(h.Idle());

  struct Case {
    RequestId id;
    BlockHash seed;
    std::vector<int32_t> prompt;
    int64_t cached;
  };
  std::vector<int32_t> diverging = Range(1, 5);
  diverging.push_back(99);
  const std::vector<Case> cases = {
      {2, Seed(), prompt, 8},          // 2 full blocks of 10
      {3, Seed("tenant"), prompt, 0},  // other seed: a miss
      {4, Seed(), Range(1, 8), 4},     // 8 tokens: the last is computed
      {5, Seed(), diverging, 4},       // block 1 differs
      {6, Seed("tenant"), prompt, 8},  // 3 published it for "tenant"
  };
  for (const Case& c : cases) {
    h.sched().Add(MakeSeq(c.id, c.prompt, 1, {}, c.seed));
    const Harness::StepResult r = h.Step();
    const int64_t n = static_cast<int64_t>(c.prompt.size());
    EXPECT_EQ(Entries(r.plan), (std::vector<Entry>{{c.id, c.cached, n - c.cached, true}}))
        << "id " << c.id;
    ASSERT_EQ(r.events.size(), 1u) << "id " << c.id;
    EXPECT_EQ(r.events[0].num_cached_tokens, c.cached) << "id " << c.id;
    EXPECT_EQ(r.events[0].token, TokenFor(c.id, 0)) << "id " << c.id;
    EXPECT_TRUE(h.Idle()) << "id " << c.id;
  }
  for (int32_t p = 0; p < h.kv().pool().num_pages(); ++p) EXPECT_EQ(h.kv().pool().ref_count(p), 0);
}

// Aborting a waiting and a running (mid-prefill) request frees everything; a later request with
// the same prompt hits the aborted request's published block only when caching is on.
class SchedulerAbortTest : public ::testing::TestWithParam<bool> {};

TEST_P(SchedulerAbortTest, AbortOfRunningAndWaitingFreesEverything) {
  const bool caching = GetParam();
  Harness h({.max_batch_tokens = 4, .max_num_seqs = 1}, 16, caching);
  h.sched().Add(MakeSeq(1, Range(1, 10), 4));
  h.sched().Add(MakeSeq(2, Range(21, 3), 4));
  EXPECT_EQ(Entries(h.Step().plan), (std::vector<Entry>{{1, 0, 4, false}}));
  EXPECT_EQ(h.sched().num_running(), 1);
  EXPECT_EQ(h.sched().num_waiting(), 1);

  EXPECT_TRUE(h.sched().Abort(2));  // waiting
  EXPECT_EQ(h.sched().num_waiting(), 0);
  EXPECT_EQ(h.sched().Find(2), nullptr);
  EXPECT_TRUE(h.sched().Abort(1));  // running, in the middle of its prefill
  EXPECT_EQ(h.sched().num_running(), 0);
  EXPECT_FALSE(h.kv().Contains(1));
  EXPECT_FALSE(h.sched().Abort(1));
  EXPECT_FALSE(h.sched().Abort(42));
  h.ExpectAllPagesFree();
  EXPECT_EQ(h.kv().pool().num_cached(), caching ? 2 : 0);  // block 0, in 2 layers
  EXPECT_TRUE(h.Step().plan.empty());

  h.sched().Add(MakeSeq(3, Range(1, 10), 1));
  const int64_t cached = caching ? 4 : 0;
  EXPECT_EQ(Entries(h.Step().plan), (std::vector<Entry>{{3, cached, 4, false}}));
  EXPECT_TRUE(h.sched().Abort(3));
  h.ExpectAllPagesFree();
}

INSTANTIATE_TEST_SUITE_P(Caching, SchedulerAbortTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "On" : "Off"; });

// n > 1: siblings wait behind their parent until its prompt is computed, then fork its full
// prompt blocks (8 of 10 tokens) and compute only the rest; the executor's KV check proves they
// read the parent's pages. Sharing does not depend on prefix caching.
class SchedulerForkTest : public ::testing::TestWithParam<bool> {};

TEST_P(SchedulerForkTest, SiblingsShareTheParentsFullPromptBlocks) {
  Harness h({.max_batch_tokens = 8, .max_num_seqs = 4}, 32, GetParam());
  for (RequestId id : {1, 2, 3}) {
    auto seq = MakeSeq(id, Range(1, 10), 2);
    if (id > 1) seq->fork_parent = 1;
    h.sched().Add(std::move(seq));
  }
  const std::vector<std::vector<Entry>> table = {
      {{1, 0, 8, false}},
      {{1, 8, 2, true}},  // 2 waits: its parent's prompt is not computed yet
      {{1, 10, 1, true}, {2, 8, 2, true}, {3, 8, 2, true}},
      {{2, 10, 1, true}, {3, 10, 1, true}},
      {},
  };
  for (size_t step = 0; step < table.size(); ++step) {
    const Harness::StepResult r = h.Step();
    EXPECT_EQ(Entries(r.plan), table[step]) << "step " << step;
    ASSERT_TRUE(h.kv().CheckInvariants().ok()) << h.kv().CheckInvariants();
    if (step != 2) continue;
    for (const SeqEvent& e : r.events) {
      EXPECT_EQ(e.num_cached_tokens, e.id == 1 ? 0 : 8) << "id " << e.id;
    }
    for (int32_t l = 0; l < 2; ++l) {
      const std::span<const int32_t> a = h.kv().pages(2, l);
      const std::span<const int32_t> b = h.kv().pages(3, l);
      ASSERT_EQ(a.size(), 3u);
      ASSERT_EQ(b.size(), 3u);
      for (int b_index = 0; b_index < 2; ++b_index) {
        EXPECT_EQ(a[b_index], b[b_index]) << "layer " << l << " block " << b_index;
        EXPECT_EQ(h.kv().pool().ref_count(a[b_index]), 2);  // 1 finished and let go
      }
      EXPECT_NE(a[2], b[2]) << "the partial block is private";
    }
  }
  for (RequestId id : {1, 2, 3}) EXPECT_EQ(h.Output(id), ExpectedOutput(id, 2)) << "id " << id;
  h.ExpectAllPagesFree();
}

INSTANTIATE_TEST_SUITE_P(Caching, SchedulerForkTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "On" : "Off"; });

// What the randomized test expects of a request it added.
struct Expectation {
  int64_t max_tokens = 0;
  std::optional<int64_t> stop_index;  // output index whose token is a stop id
};

struct RandomParams {
  bool caching = false;
  int64_t max_batch_tokens = 0;
  int32_t max_num_seqs = 0;
  int32_t num_pages = 0;
};

void PrintTo(const RandomParams& p, std::ostream* os) {
  *os << "caching=" << p.caching << " max_batch_tokens=" << p.max_batch_tokens
      << " max_num_seqs=" << p.max_num_seqs << " num_pages=" << p.num_pages;
}

class SchedulerRandomTest : public ::testing::TestWithParam<RandomParams> {};

// Checks one plan against the limits and the scheduler's state right after Schedule().
void ExpectPlanValid(const StepPlan& plan, const SchedulerConfig& config, const Scheduler& sched,
                     const KvCacheManager& kv, int step) {
  int64_t sum = 0;
  std::set<RequestId> ids;
  for (const ScheduledSeq& s : plan.seqs) {
    sum += s.num_new_tokens;
    EXPECT_TRUE(ids.insert(s.id).second) << "step " << step << ": id " << s.id << " twice";
    EXPECT_TRUE(kv.Contains(s.id)) << "step " << step << ": id " << s.id;
  }
  for (RequestId id : plan.preempted) {
    EXPECT_FALSE(ids.contains(id)) << "step " << step << ": preempted " << id << " scheduled";
    EXPECT_FALSE(kv.Contains(id)) << "step " << step << ": preempted " << id << " holds KV";
  }
  EXPECT_EQ(plan.num_tokens, sum) << "step " << step;
  EXPECT_LE(plan.num_tokens, config.max_batch_tokens) << "step " << step;
  EXPECT_LE(static_cast<int32_t>(plan.seqs.size()), config.max_num_seqs) << "step " << step;
  EXPECT_LE(sched.num_running(), config.max_num_seqs) << "step " << step;
}

TEST_P(SchedulerRandomTest, InvariantsHoldAndOutputsMatchTheUnpressuredRun) {
  const RandomParams params = GetParam();
  const SchedulerConfig config{.max_batch_tokens = params.max_batch_tokens,
                               .max_num_seqs = params.max_num_seqs};
  Harness h(config, params.num_pages, params.caching);
  std::mt19937_64 rng(20261123);
  auto uniform = [&rng](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  // Few distinct prompt bases so that prefixes repeat and the cache gets hits and evictions.
  const std::vector<std::vector<int32_t>> bases = {Range(1, 16), Range(20, 16), Range(40, 16)};
  std::map<RequestId, Expectation> expected;
  std::set<RequestId> live, aborted;
  RequestId next_id = 1;
  int64_t num_cache_hits = 0;  // requests admitted with a cached prefix
  constexpr int kSteps = 4000;
  constexpr int kArrivalSteps = 3000;
  for (int step = 0; step < kSteps && (step < kArrivalSteps || !h.Idle()); ++step) {
    if (step < kArrivalSteps && uniform(0, 99) < 35) {
      // Prompt <= 16 and max_tokens <= 12: at most 7 blocks = 14 pages, under the pool.
      std::vector<int32_t> prompt = bases[uniform(0, 2)];
      prompt.resize(uniform(1, 16));
      if (uniform(0, 3) == 0) prompt.back() = static_cast<int32_t>(uniform(60, 99));
      Expectation e{.max_tokens = uniform(1, 12), .stop_index = std::nullopt};
      std::vector<int32_t> stops = {static_cast<int32_t>(uniform(60, 99))};  // never generated
      if (uniform(0, 2) == 0) {
        e.stop_index = uniform(0, 11);
        stops.push_back(TokenFor(next_id, *e.stop_index));
      }
      h.sched().Add(
          MakeSeq(next_id, std::move(prompt), e.max_tokens, std::move(stops),
                  Seed(uniform(0, 1) == 0 ? std::nullopt : std::optional<std::string>("b"))));
      expected[next_id] = e;
      live.insert(next_id++);
    }
    if (step < kArrivalSteps && !live.empty() && uniform(0, 99) < 4) {
      auto it = std::next(live.begin(), uniform(0, static_cast<int64_t>(live.size()) - 1));
      EXPECT_TRUE(h.sched().Abort(*it));
      aborted.insert(*it);
      live.erase(it);
    }
    const Harness::StepResult r = h.Step(
        [&](const StepPlan& plan) { ExpectPlanValid(plan, config, h.sched(), h.kv(), step); });
    for (const SeqEvent& e : r.events) {
      if (!e.finish_reason.empty()) {
        live.erase(e.id);
        EXPECT_FALSE(h.sched().Abort(e.id)) << "id " << e.id << " finished but is abortable";
      }
      if (e.num_cached_tokens > 0 && e.token == TokenFor(e.id, 0)) ++num_cache_hits;
    }
    ASSERT_TRUE(h.kv().CheckInvariants().ok())
        << "step " << step << ": " << h.kv().CheckInvariants();
    int32_t num_holding_kv = 0;
    for (RequestId id : live) num_holding_kv += h.kv().Contains(id) ? 1 : 0;
    ASSERT_EQ(num_holding_kv, h.sched().num_running()) << "step " << step;
  }
  ASSERT_TRUE(h.Idle()) << "not drained after " << kSteps << " steps";
  EXPECT_TRUE(live.empty());
  h.ExpectAllPagesFree();
  EXPECT_GT(h.sched().num_preemptions(), 0) << "the pool is too large to test preemption";
  EXPECT_GT(aborted.size(), 0u);
  int64_t num_stopped = 0;
  for (const auto& [id, e] : expected) {
    if (aborted.contains(id)) continue;
    const bool stops = e.stop_index.has_value() && *e.stop_index < e.max_tokens;
    num_stopped += stops ? 1 : 0;
    EXPECT_EQ(h.Output(id), ExpectedOutput(id, stops ? *e.stop_index + 1 : e.max_tokens))
        << "id " << id;
    EXPECT_EQ(h.FinishReason(id), stops ? "stop" : "length") << "id " << id;
  }
  EXPECT_GT(num_stopped, 0);
  EXPECT_EQ(num_cache_hits > 0, params.caching);
  RecordProperty("requests", static_cast<int>(expected.size()));
  RecordProperty("preemptions", static_cast<int>(h.sched().num_preemptions()));
  RecordProperty("cache_hits", static_cast<int>(num_cache_hits));
}

INSTANTIATE_TEST_SUITE_P(
    Configs, SchedulerRandomTest,
    ::testing::Values(
        RandomParams{.caching = false, .max_batch_tokens = 16, .max_num_seqs = 4, .num_pages = 24},
        RandomParams{.caching = true, .max_batch_tokens = 16, .max_num_seqs = 4, .num_pages = 24},
        RandomParams{.caching = true, .max_batch_tokens = 7, .max_num_seqs = 8, .num_pages = 16}),
    [](const auto& info) {
      const RandomParams& p = info.param;
      return StrCat(p.caching ? "Caching" : "NoCaching", "Budget", p.max_batch_tokens, "Seqs",
                    p.max_num_seqs, "Pages", p.num_pages);
    });

}  // namespace
}  // namespace strata::engine
