// KV codecs in the engine (issue "KV policies"): each codec's pages live in their own pool, a
// request's policy picks the pool, the prefix cache never mixes codecs, KIVI folds its residual
// window into quantized blocks, and every pool is whole again when the requests are gone.
// stories260K, greedy. The quality of each codec is measured by bench_quality, not asserted here.
#include <gtest/gtest.h>

#include <random>

#include "tests/common/tokens.h"
#include "tests/engine/engine_test_util.h"
#include "engine/scheduler.h"
#include "engine/step_batch.h"
#include "kvcache/kv_layout.h"

namespace strata::engine {
namespace {

using kernels::KvCodec;

struct CodecCase {
  KvCodec codec;
  int32_t residual = 0;  // KIVI window
};

std::string CaseName(const ::testing::TestParamInfo<CodecCase>& info) {
  return StrCat(kernels::CodecName(info.param.codec), "_r", info.param.residual);
}

int32_t BlockSize(KvCodec codec) {
  return kvcache::PoolBlockSize(codec, 16);
}

EngineConfig CodecConfig(KvCodec codec, int32_t pages = 0) {
  EngineConfig c;
  c.backend = "cpu";
  c.threads = 2;
  c.scheduler.max_num_seqs = 8;
  c.scheduler.max_batch_tokens = 256;
  c.max_model_len = 512;
  c.num_kv_pages = 5 * 32 * 8;  // 8 sequences of 512 tokens (stories260K has 5 layers)
  c.codec_pools.push_back({.codec = codec, .block_size = BlockSize(codec),
                           .num_pages = pages > 0 ? pages : 5 * 40 * 8});
  return c;
}

RequestOptions Policy(RequestOptions o, const CodecCase& p) {
  o.kv_access.codec = p.codec;
  o.kv_access.residual_tokens = p.residual;
  o.kv_access.lower_tiers = 0;
  return o;
}

// BOS and n random tokens of stories260K's vocabulary.
std::vector<int32_t> Prompt(std::mt19937& rng, int64_t n) {
  return Concat({1}, RandomTokens(rng, n, 512));
}

class KvCodecEngineTest : public ::testing::TestWithParam<CodecCase> {
 protected:
  void SetUp() override {
    model_ = SharedModel();
    if (model_ == nullptr) GTEST_SKIP() << kStoriesDir << " is absent";
    auto e = Engine::Create(*model_, CodecConfig(GetParam().codec));
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
  }
  const Model* model_ = nullptr;
  std::unique_ptr<Engine> engine_;
};

// Alone or batched with others of the same codec and with fp32 requests, every request gets the
// same tokens: the pools are independent and each codec's kernels are batch invariant.
TEST_P(KvCodecEngineTest, OutputsDoNotDependOnTheBatchAndPoolsEmptyAfterwards) {
  std::mt19937 rng(11);
  const std::vector<std::vector<int32_t>> prompts = {Prompt(rng, 4), Prompt(rng, 45),
                                                     Prompt(rng, 130), Prompt(rng, 70)};
  std::vector<Output> alone;
  for (size_t i = 0; i < prompts.size(); ++i) {
    RequestOptions o = Greedy(prompts[i], 40);
    if (i < 3) o = Policy(o, GetParam());  // the last one stays fp32
    o.kv_access.prefix_cache = false;
    alone.push_back(RunOne(*engine_, o));
    EXPECT_EQ(alone.back().finish_reason, "length");
    EXPECT_EQ(alone.back().tokens.size(), 40u);
  }
  std::vector<std::shared_ptr<OutputChannel>> channels;
  for (size_t i = 0; i < prompts.size(); ++i) {
    RequestOptions o = Greedy(prompts[i], 40);
    if (i < 3) o = Policy(o, GetParam());
    o.kv_access.prefix_cache = false;
    auto s = engine_->Submit(o);
    ASSERT_TRUE(s.ok()) << s.status();
    channels.push_back(s->channel);
  }
  for (size_t i = 0; i < channels.size(); ++i) {
    Output together = Drain(*channels[i]);
    EXPECT_EQ(together.tokens, alone[i].tokens) << "prompt " << i;
  }
  EngineStats s = engine_->Stats();
  ASSERT_EQ(s.pools.size(), 2u);
  EXPECT_EQ(s.pools[1].codec, kernels::CodecName(GetParam().codec));
  EXPECT_EQ(s.pools[1].num_free_pages, s.pools[1].num_pages);
  EXPECT_EQ(s.pools[0].num_free_pages, s.pools[0].num_pages);
}

// A prompt cached under one codec is not found under another; under its own codec it is, and the
// cached blocks give the same tokens as computing them.
TEST_P(KvCodecEngineTest, PrefixCacheNeverMixesCodecs) {
  std::mt19937 rng(12);
  const std::vector<int32_t> prompt = Prompt(rng, 100);
  Output fp32 = RunOne(*engine_, Greedy(prompt, 20));
  Output first = RunOne(*engine_, Policy(Greedy(prompt, 20), GetParam()));
  EXPECT_EQ(first.num_cached_tokens, 0) << "the codec request hit fp32 blocks";
  Output again = RunOne(*engine_, Policy(Greedy(prompt, 20), GetParam()));
  EXPECT_GT(again.num_cached_tokens, 0) << "the codec's own blocks were not reused";
  EXPECT_EQ(again.num_cached_tokens % BlockSize(GetParam().codec), 0);
  EXPECT_EQ(again.tokens, first.tokens);
  Output fp32_again = RunOne(*engine_, Greedy(prompt, 20));
  EXPECT_GT(fp32_again.num_cached_tokens, 0);
  EXPECT_EQ(fp32_again.tokens, fp32.tokens);
}

INSTANTIATE_TEST_SUITE_P(Codecs, KvCodecEngineTest,
                         ::testing::Values(CodecCase{KvCodec::kBf16}, CodecCase{KvCodec::kFp16},
                                           CodecCase{KvCodec::kFp8}, CodecCase{KvCodec::kInt8},
                                           CodecCase{KvCodec::kKivi4, 32},
                                           CodecCase{KvCodec::kKivi2, 64}),
                         CaseName);

TEST(KvCodecEngineErrors, RequestsNameACodecWithAPoolAndAFittingWindow) {
  const Model* model = SharedModel();
  if (model == nullptr) GTEST_SKIP() << kStoriesDir << " is absent";
  auto e = Engine::Create(*model, CodecConfig(KvCodec::kKivi4));
  ASSERT_TRUE(e.ok()) << e.status();
  RequestOptions no_pool = Policy(Greedy({1, 5, 9}, 4), {KvCodec::kInt8});
  absl::Status s = (*e)->Submit(no_pool).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("no KV pool holds codec int8"), std::string::npos) << s;
  for (int32_t bad : {0, 48, 1024}) {
    s = (*e)->Submit(Policy(Greedy({1, 5, 9}, 4), {KvCodec::kKivi4, bad})).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("residual_tokens"), std::string::npos) << s;
  }
  // Nothing was admitted; a good request still runs.
  Output ok = RunOne(**e, Policy(Greedy({1, 5, 9}, 4), {KvCodec::kKivi4, 32}));
  EXPECT_EQ(ok.finish_reason, "length");
}

// Pool too small for one sequence of max_model_len: a clear error at start-up.
TEST(KvCodecEngineErrors, APoolThatCannotHoldOneSequenceIsRefused) {
  const Model* model = SharedModel();
  if (model == nullptr) GTEST_SKIP() << kStoriesDir << " is absent";
  auto e = Engine::Create(*model, CodecConfig(KvCodec::kBf16, /*pages=*/10));
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("the bf16 KV pool (10 pages) cannot hold one sequence"),
            std::string::npos)
      << e.status();
}

// A KIVI pool needs room for its policies' largest window only: sized for one max_model_len
// sequence with a 64-token window (too small for the 512-token limit), it starts, serves that
// window, and refuses a request asking for more, naming the pool's limit.
TEST(KvCodecEngineErrors, AKiviPoolIsSizedForItsPoliciesWindowAndRefusesLargerOnes) {
  const Model* model = SharedModel();
  if (model == nullptr) GTEST_SKIP() << kStoriesDir << " is absent";
  kvcache::KvLayout l{.num_layers = static_cast<int32_t>(model->config.num_layers),
                      .num_kv_heads = static_cast<int32_t>(model->config.num_kv_heads),
                      .head_dim = static_cast<int32_t>(model->config.head_dim),
                      .block_size = BlockSize(KvCodec::kKivi4)};
  l.codec = KvCodec::kKivi4;
  const auto pages_for = [&](int32_t window) {
    return static_cast<int32_t>((l.BlocksFor(512) + l.ResidualPages(window)) * l.num_layers);
  };
  ASSERT_LT(pages_for(64), pages_for(kvcache::kMaxKiviResidualTokens));
  EngineConfig c = CodecConfig(KvCodec::kKivi4, pages_for(64));
  c.codec_pools[0].max_residual_tokens = 64;
  auto e = Engine::Create(*model, c);
  ASSERT_TRUE(e.ok()) << e.status();
  const absl::Status s =
      (*e)->Submit(Policy(Greedy({1, 5, 9}, 4), {KvCodec::kKivi4, 128})).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("in [32, 64]"), std::string::npos) << s;
  Output ok = RunOne(**e, Policy(Greedy({1, 5, 9}, 4), {KvCodec::kKivi4, 64}));
  EXPECT_EQ(ok.finish_reason, "length");
  c.codec_pools[0].max_residual_tokens = kvcache::kMaxKiviResidualTokens;  // the old rule
  EXPECT_FALSE(Engine::Create(*model, c).ok());
}

// Through the scheduler and StepBatch, step by step: a KIVI sequence holds exactly its
// quantized blocks (folded a whole window at a time) plus its residual pages, and a per-token
// codec exactly the blocks of its tokens; pages x page bytes is the layout's bytes per token.
TEST(KvCodecPages, PagesHeldFollowTheLayoutArithmetic) {
  const Model* model = SharedModel();
  if (model == nullptr) GTEST_SKIP() << kStoriesDir << " is absent";
  auto device = kernels::MakeCpuDevice({.threads = 2});
  ASSERT_TRUE(device.ok());
  for (const CodecCase& p : {CodecCase{KvCodec::kKivi2, 64}, CodecCase{KvCodec::kKivi4, 32},
                             CodecCase{KvCodec::kFp8}}) {
    SCOPED_TRACE(kernels::CodecName(p.codec));
    RunnerConfig rc{.max_batch_tokens = 64, .max_num_seqs = 1, .max_logit_rows = 1,
                    .num_kv_pages = 5 * 16, .block_size = 16, .max_model_len = 256,
                    .extra_pools = {{.codec = p.codec, .block_size = BlockSize(p.codec),
                                     .num_pages = 5 * 24}}};
    auto runner = ModelRunner::Create(device->get(), model->config, model->weights, rc);
    ASSERT_TRUE(runner.ok()) << runner.status();
    const kvcache::KvLayout& layout = (*runner)->pool_layout(1);
    kvcache::KvCacheManager pool0((*runner)->pool_layout(0), rc.num_kv_pages, false);
    kvcache::KvCacheManager pool1(layout, rc.extra_pools[0].num_pages, false);
    Scheduler sched({.max_batch_tokens = 37, .max_num_seqs = 1}, &pool0);  // odd chunks
    sched.AddKvPool(&pool1);
    auto seq = std::make_unique<Sequence>();
    seq->id = 7;
    std::mt19937 rng(13);
    seq->tokens = Prompt(rng, 120);
    seq->num_prompt_tokens = static_cast<int64_t>(seq->tokens.size());
    seq->max_tokens = 60;
    SamplingParams greedy;
    greedy.temperature = 0;
    seq->sampler = std::make_unique<Sampler>(greedy);
    seq->kv_access = Policy(RequestOptions{}, p).kv_access;
    seq->kv_access.prefix_cache = false;
    seq->kv_pool = 1;
    sched.Add(std::move(seq));
    StepBatch batch;
    std::vector<float> logits((*runner)->vocab_size());
    int64_t quant = 0, steps = 0;
    while (sched.num_running() + sched.num_waiting() > 0) {
      StepPlan plan = sched.Schedule();
      ASSERT_FALSE(plan.empty());
      batch.Build(plan, sched);
      ASSERT_TRUE((*runner)->Forward(batch.input(), logits).ok());
      const int64_t n = plan.seqs[0].start + plan.seqs[0].num_new_tokens;
      const int64_t held = pool1.pool().num_pages() - pool1.pool().num_free();
      if (layout.kivi()) {
        quant = kvcache::KiviQuantAfter(quant, n, p.residual);
        ASSERT_EQ(quant % p.residual, 0);
        ASSERT_LT(n - quant, p.residual);
        EXPECT_EQ(held, (quant / 32 + layout.ResidualPages(p.residual)) * layout.num_layers)
            << "at " << n << " tokens";
      } else {
        EXPECT_EQ(held, layout.BlocksFor(n) * layout.num_layers) << "at " << n << " tokens";
        EXPECT_DOUBLE_EQ(static_cast<double>(held) * static_cast<double>(layout.PageBytes()),
                         static_cast<double>(layout.BlocksFor(n) * layout.block_size *
                                             layout.num_layers) *
                             kernels::BytesPerToken(layout.Format()));
      }
      sched.Update(plan, std::vector<int32_t>(batch.input().logit_rows.size(), 5));
      ++steps;
    }
    EXPECT_GT(steps, 60);
    EXPECT_EQ(pool1.pool().num_free(), pool1.pool().num_pages());
    EXPECT_TRUE(pool1.CheckInvariants().ok());
  }
}

}  // namespace
}  // namespace strata::engine
