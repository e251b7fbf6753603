// Sparsity policies in the engine (kvcache/sparsity.h): sink_window, h2o and snapkv evict
// through real attention scores and in-place compaction, stay batch invariant, keep their KV
// private and leave the pool whole. A sink_window wider than any sequence equals full attention.
#include <gtest/gtest.h>

#include <random>

#include "tests/common/tokens.h"
#include "tests/engine/engine_test_util.h"

namespace strata::engine {
namespace {

using Type = kvcache::SparsitySpec::Type;

struct SparseCase {
  const char* name;
  kvcache::SparsitySpec spec;
};

// BOS and n random tokens of stories260K's vocabulary.
std::vector<int32_t> Prompt(std::mt19937& rng, int64_t n) {
  return Concat({1}, RandomTokens(rng, n, 512));
}

EngineConfig SparseConfig() {
  EngineConfig c;
  c.backend = "cpu";
  c.threads = 2;
  c.scheduler.max_num_seqs = 8;
  c.scheduler.max_batch_tokens = 64;  // prompts come in several chunks
  c.max_model_len = 512;
  c.num_kv_pages = 5 * 32 * 8;
  return c;
}

RequestOptions Sparse(std::vector<int32_t> prompt, int64_t max_tokens,
                      const kvcache::SparsitySpec& spec) {
  RequestOptions o = Greedy(std::move(prompt), max_tokens);
  o.kv_access.sparsity = spec;
  return o;
}

class SparsityEngineTest : public ::testing::TestWithParam<SparseCase> {
 protected:
  void SetUp() override {
    model_ = SharedModel();
    if (model_ == nullptr) GTEST_SKIP() << kStoriesDir << " is absent";
    auto e = Engine::Create(*model_, SparseConfig());
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
  }
  const Model* model_ = nullptr;
  std::unique_ptr<Engine> engine_;
};

TEST_P(SparsityEngineTest, EvictsBatchInvariantlyAndLeavesThePoolWhole) {
  const kvcache::SparsitySpec& spec = GetParam().spec;
  std::mt19937 rng(21);
  const std::vector<std::vector<int32_t>> prompts = {Prompt(rng, 150), Prompt(rng, 20),
                                                     Prompt(rng, 90)};
  std::vector<Output> alone;
  for (const auto& p : prompts) {
    alone.push_back(RunOne(*engine_, Sparse(p, 80, spec)));
    EXPECT_EQ(alone.back().finish_reason, "length");
    EXPECT_EQ(alone.back().tokens.size(), 80u);
    EXPECT_EQ(alone.back().num_cached_tokens, 0);
  }
  // The long prompt did lose tokens: full attention differs somewhere in 80 tokens.
  Output full = RunOne(*engine_, Greedy(prompts[0], 80));
  EXPECT_NE(full.tokens, alone[0].tokens) << "nothing was evicted";
  std::vector<std::shared_ptr<OutputChannel>> channels;
  for (const auto& p : prompts) {
    auto s = engine_->Submit(Sparse(p, 80, spec));
    ASSERT_TRUE(s.ok()) << s.status();
    channels.push_back(s->channel);
  }
  auto dense = engine_->Submit(Greedy(prompts[0], 80));  // a dense neighbour in the batch
  ASSERT_TRUE(dense.ok());
  for (size_t i = 0; i < channels.size(); ++i) {
    EXPECT_EQ(Drain(*channels[i]).tokens, alone[i].tokens) << "prompt " << i;
  }
  EXPECT_EQ(Drain(*dense->channel).tokens, full.tokens);
  // Private KV: the same prompt again is not served from the cache.
  EXPECT_EQ(RunOne(*engine_, Sparse(prompts[0], 4, spec)).num_cached_tokens, 0);
  const EngineStats s = engine_->Stats();
  EXPECT_EQ(s.num_free_pages, s.num_pages);
}

INSTANTIATE_TEST_SUITE_P(
    Policies, SparsityEngineTest,
    ::testing::Values(
        SparseCase{"sink_window", {.type = Type::kSinkWindow, .sink_tokens = 4,
                                   .window_tokens = 44}},
        SparseCase{"h2o", {.type = Type::kH2o, .budget_tokens = 48, .recent_tokens = 16}},
        SparseCase{"snapkv", {.type = Type::kSnapKv, .budget_tokens = 48,
                              .observation_tokens = 8, .pool_kernel = 5}}),
    [](const ::testing::TestParamInfo<SparseCase>& info) { return std::string(info.param.name); });

TEST(SparsityEngine, AWindowWiderThanTheSequenceEqualsFullAttention) {
  const Model* model = SharedModel();
  if (model == nullptr) GTEST_SKIP() << kStoriesDir << " is absent";
  auto e = Engine::Create(*model, SparseConfig());
  ASSERT_TRUE(e.ok()) << e.status();
  std::mt19937 rng(22);
  const kvcache::SparsitySpec wide{.type = Type::kSinkWindow, .sink_tokens = 4,
                                   .window_tokens = 1024};
  for (int64_t n : {5, 70, 200}) {
    const std::vector<int32_t> p = Prompt(rng, n);
    EXPECT_EQ(RunOne(**e, Sparse(p, 60, wide)).tokens, RunOne(**e, Greedy(p, 60)).tokens) << n;
  }
}

TEST(SparsityEngine, SparsityNeedsTheFp32CodecAndAFittingBudget) {
  const Model* model = SharedModel();
  if (model == nullptr) GTEST_SKIP() << kStoriesDir << " is absent";
  auto e = Engine::Create(*model, SparseConfig());
  ASSERT_TRUE(e.ok()) << e.status();
  RequestOptions bad = Sparse({1, 4, 5}, 4, {.type = Type::kH2o, .budget_tokens = 8,
                                            .recent_tokens = 16});
  EXPECT_EQ((*e)->Submit(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = Sparse({1, 4, 5}, 4, {.type = Type::kSinkWindow, .sink_tokens = 4, .window_tokens = 8});
  bad.kv_access.codec = kernels::KvCodec::kBf16;
  EXPECT_EQ((*e)->Submit(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace strata::engine
