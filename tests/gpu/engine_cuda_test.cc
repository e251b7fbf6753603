// The engine on the CUDA backend end to end with stories260K (issue 9), each check against an
// independent reference or against the CPU backend run in the same test:
//   - LocalRuntime greedy continuations and top-5 logits equal ../shared/models/stories260k's
//     reference.json, and the batched Engine gives the same continuations (golden_test.cc);
//   - batch invariance and prefix reuse (engine_test.cc's BatchInvarianceStories260k and
//     PrefixReuseReportsCachedTokensAndKeepsOutput), every output also equal to the CPU's;
//   - the KV tiers device -> host -> device: a multi-turn conversation whose history comes back
//     from host RAM gives the outputs of a tiers-off run and of the CPU backend, and
//     ModelRunner's page I/O (the tiers' PageIo) round-trips a page byte for byte;
//   - decode steps as CUDA graphs give the tokens of eager launches;
//   - every KV policy of configs/policies.yaml (codecs and sparsity) runs without error and its
//     greedy tokens agree with the CPU backend's run of the same policy.
// Every test skips with MakeCudaDevice's reason where there is no GPU or no CUDA in the build.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <optional>
#include <ostream>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "common/file.h"
#include "common/json.h"
#include "engine/engine.h"
#include "engine/local_runtime.h"
#include "engine/model_runner.h"
#include "kernels/device.h"
#include "kvcache/kv_layout.h"
#include "tests/common/tokens.h"
#include "tests/engine/engine_test_util.h"

namespace strata::engine {
namespace {

using kernels::KvCodec;
using SparsityType = kvcache::SparsitySpec::Type;

constexpr int32_t kVocab = 512;  // stories260K

// Why the CUDA backend cannot run here, or nullopt when it can.
std::optional<std::string> NoCuda() {
  auto device = kernels::MakeCudaDevice(0);
  if (device.ok()) return std::nullopt;
  return std::string(device.status().message());
}

// Skips without a GPU or without stories260K; model_ is the shared stories260K otherwise.
class EngineCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::optional<std::string> why = NoCuda()) GTEST_SKIP() << *why;
    model_ = SharedModel();
    if (model_ == nullptr) GTEST_SKIP() << kStoriesDir << " is absent";
  }
  const Model* model_ = nullptr;
};

std::unique_ptr<Engine> MakeEngine(const Model& model, const EngineConfig& config) {
  auto e = Engine::Create(model, config);
  EXPECT_TRUE(e.ok()) << config.backend << ": " << e.status();
  if (!e.ok()) return nullptr;
  if (config.backend == "cuda") {
    EXPECT_EQ((*e)->device_name(), "cuda:0");
  }
  return std::move(*e);
}

// BOS and n random tokens of stories260K's vocabulary.
std::vector<int32_t> Prompt(std::mt19937& rng, int64_t n) {
  return Concat({1}, RandomTokens(rng, n, kVocab));
}

// Tokens of each output, in order.
std::vector<std::vector<int32_t>> Tokens(const std::vector<Output>& outs) {
  std::vector<std::vector<int32_t>> t;
  for (const Output& o : outs) t.push_back(o.tokens);
  return t;
}

// ---- 1. The golden reference ------------------------------------------------------------------

Json LoadReference() {
  auto text = ReadFile(kStoriesDir + "/reference.json");
  EXPECT_TRUE(text.ok()) << text.status();
  if (!text.ok()) return Json::object();
  auto json = ParseJson(*text, "reference.json");
  EXPECT_TRUE(json.ok()) << json.status();
  return json.ok() ? *json : Json::object();
}

std::vector<int32_t> Ids(const Json& j) { return j.get<std::vector<int32_t>>(); }

// 48 greedy tokens per reference prompt, exactly, with two page sizes and prefill chunkings.
TEST_F(EngineCudaTest, GreedyContinuationsMatchTheReference) {
  const Json ref = LoadReference();
  ASSERT_TRUE(ref.contains("prompts"));
  for (auto [block_size, chunk] : {std::pair{16, 512}, std::pair{5, 3}}) {
    auto rt = LocalRuntime::Create(
        *model_, {.backend = "cuda", .block_size = block_size, .max_batch_tokens = chunk});
    ASSERT_TRUE(rt.ok()) << rt.status();
    ASSERT_EQ((*rt)->device().name(), "cuda:0");
    for (const Json& p : ref["prompts"]) {
      GenerateOptions options;
      options.max_tokens = 48;
      options.sampling.temperature = 0;
      auto result = (*rt)->generator().Generate(Ids(p["prompt_ids"]), options, nullptr);
      ASSERT_TRUE(result.ok()) << result.status();
      EXPECT_EQ(result->output_ids, Ids(p["continuation_ids"]))
          << p["prompt"] << " block_size=" << block_size << " chunk=" << chunk;
    }
  }
}

// Each recorded top-5 (ids in order, logits within the reference's own tolerance, 1e-4).
TEST_F(EngineCudaTest, Top5LogitsMatchTheReference) {
  const Json ref = LoadReference();
  ASSERT_TRUE(ref.contains("prompts"));
  const double tolerance = ref["tolerances"]["logits_abs"].get<double>();
  auto rt = LocalRuntime::Create(*model_, {.backend = "cuda"});
  ASSERT_TRUE(rt.ok()) << rt.status();
  int checked = 0;
  for (const Json& p : ref["prompts"]) {
    const std::vector<int32_t> ids = Concat(Ids(p["prompt_ids"]), Ids(p["continuation_ids"]));
    std::vector<std::vector<float>> logits(ids.size());
    ASSERT_TRUE(
        (*rt)
            ->generator()
            .Score(ids, [&](int64_t i,
                            std::span<const float> l) { logits[i].assign(l.begin(), l.end()); })
            .ok());
    for (const Json& t : p["top5"]) {
      const std::vector<float>& row = logits[t["position"].get<size_t>()];
      std::vector<int32_t> order = Range(0, static_cast<int32_t>(row.size()));
      std::partial_sort(order.begin(), order.begin() + 5, order.end(),
                        [&](int32_t a, int32_t b) { return row[a] > row[b]; });
      order.resize(5);
      EXPECT_EQ(order, Ids(t["top5_ids"])) << p["prompt"] << " position " << t["position"];
      const std::vector<double> want = t["top5_logits"].get<std::vector<double>>();
      for (int k = 0; k < 5; ++k) {
        EXPECT_NEAR(row[order[k]], want[k], tolerance) << p["prompt"] << " rank " << k;
      }
      ++checked;
    }
  }
  EXPECT_GE(checked, 8 * 4);
}

// Every reference prompt at once through the continuous-batching engine.
TEST_F(EngineCudaTest, BatchedEngineMatchesTheReference) {
  const Json ref = LoadReference();
  ASSERT_TRUE(ref.contains("prompts"));
  auto engine = MakeEngine(*model_, SmallEngineConfig("cuda"));
  ASSERT_NE(engine, nullptr);
  std::vector<Engine::Submission> subs;
  for (const Json& p : ref["prompts"]) {
    auto s = engine->Submit(Greedy(Ids(p["prompt_ids"]), 48));
    ASSERT_TRUE(s.ok()) << s.status();
    subs.push_back(*s);
  }
  size_t i = 0;
  for (const Json& p : ref["prompts"]) {
    Output o = Drain(*subs[i++].channel, 60);
    EXPECT_EQ(o.finish_reason, "length") << p["prompt"];
    EXPECT_EQ(o.tokens, Ids(p["continuation_ids"])) << p["prompt"];
  }
}

// ---- 2. Batch invariance and prefix reuse, against the CPU -------------------------------------

// 32 requests of 2..46 prompt tokens and 8..32 output tokens.
std::vector<RequestOptions> VariedRequests() {
  std::mt19937 rng(7);
  std::vector<RequestOptions> requests;
  for (int i = 0; i < 32; ++i)
    requests.push_back(Greedy(Prompt(rng, 1 + (i * 7) % 45), 8 + i % 25));
  return requests;
}

std::vector<Output> RunEach(Engine& engine, const std::vector<RequestOptions>& requests) {
  std::vector<Output> outs;
  for (const RequestOptions& r : requests) outs.push_back(RunOne(engine, r));
  return outs;
}

std::vector<Output> RunTogether(Engine& engine, const std::vector<RequestOptions>& requests) {
  std::vector<Engine::Submission> subs;
  for (const RequestOptions& r : requests) {
    auto s = engine.Submit(r);
    EXPECT_TRUE(s.ok()) << s.status();
    if (s.ok()) subs.push_back(*s);
  }
  std::vector<Output> outs;
  for (Engine::Submission& s : subs) outs.push_back(Drain(*s.channel, 60));
  return outs;
}

TEST_F(EngineCudaTest, BatchInvarianceAndEqualToTheCpu) {
  auto cuda = MakeEngine(*model_, SmallEngineConfig("cuda"));
  auto cpu = MakeEngine(*model_, SmallEngineConfig("cpu"));
  ASSERT_TRUE(cuda && cpu);
  const std::vector<RequestOptions> requests = VariedRequests();
  const std::vector<Output> solo = RunEach(*cuda, requests);
  const std::vector<Output> together = RunTogether(*cuda, requests);
  const std::vector<Output> on_cpu = RunEach(*cpu, requests);
  ASSERT_EQ(together.size(), requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(solo[i].finish_reason, "length") << "request " << i;
    EXPECT_EQ(static_cast<int64_t>(solo[i].tokens.size()), requests[i].max_tokens);
    EXPECT_EQ(together[i].tokens, solo[i].tokens) << "batched vs alone, request " << i;
    EXPECT_EQ(solo[i].tokens, on_cpu[i].tokens) << "cuda vs cpu, request " << i;
  }
  EXPECT_EQ(cuda->Stats().num_step_errors, 0);
}

// Decode steps replayed as CUDA graphs (padded to bucket shapes) give exactly the tokens of
// eager launches, for a batch whose size changes every few steps.
TEST_F(EngineCudaTest, DecodeGraphsGiveTheEagerTokens) {
  EngineConfig eager_config = SmallEngineConfig("cuda");
  eager_config.cuda_graphs = false;
  auto graphs = MakeEngine(*model_, SmallEngineConfig("cuda"));
  auto eager = MakeEngine(*model_, eager_config);
  ASSERT_TRUE(graphs && eager);
  const std::vector<RequestOptions> requests = VariedRequests();
  const std::vector<Output> with_graphs = RunTogether(*graphs, requests);
  const std::vector<Output> without = RunTogether(*eager, requests);
  ASSERT_EQ(with_graphs.size(), requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(with_graphs[i].tokens, without[i].tokens) << "request " << i;
  }
  EXPECT_GT(graphs->Stats().num_graph_steps, 0);
  EXPECT_EQ(eager->Stats().num_graph_steps, 0);
  EXPECT_EQ(graphs->Stats().num_step_errors, 0);
}

// The same sequence of requests on `backend`: a prompt, a longer one sharing its blocks, the
// first again, the first under another cache_salt, and the longer one with caching off.
std::vector<Output> PrefixReuseOutputs(const Model& model, const std::string& backend) {
  auto engine = MakeEngine(model, SmallEngineConfig(backend));
  EngineConfig off_config = SmallEngineConfig(backend);
  off_config.enable_prefix_caching = false;
  auto off = MakeEngine(model, off_config);
  if (!engine || !off) return {};
  std::mt19937 rng(3);
  const std::vector<int32_t> shared = Prompt(rng, 17);  // 4 full blocks of 4 + 2
  const std::vector<int32_t> longer = Concat(shared, {40, 41, 42});
  RequestOptions salted = Greedy(shared, 5);
  salted.cache_salt = "tenant-b";
  return {RunOne(*engine, Greedy(shared, 5)), RunOne(*engine, Greedy(longer, 5)),
          RunOne(*engine, Greedy(shared, 5)), RunOne(*engine, salted),
          RunOne(*off, Greedy(longer, 5))};
}

TEST_F(EngineCudaTest, PrefixReuseReportsCachedTokensAndEqualsTheCpu) {
  const std::vector<Output> cuda = PrefixReuseOutputs(*model_, "cuda");
  const std::vector<Output> cpu = PrefixReuseOutputs(*model_, "cpu");
  ASSERT_EQ(cuda.size(), 5u);
  ASSERT_EQ(cpu.size(), 5u);
  EXPECT_EQ(cuda[0].num_cached_tokens, 0);
  EXPECT_EQ(cuda[1].num_cached_tokens, 16);  // full blocks only
  EXPECT_EQ(cuda[2].num_cached_tokens, 16);
  EXPECT_EQ(cuda[3].num_cached_tokens, 0);  // another tenant
  EXPECT_EQ(cuda[4].num_cached_tokens, 0);  // caching off
  EXPECT_EQ(cuda[2].tokens, cuda[0].tokens) << "cached blocks changed the output";
  EXPECT_EQ(cuda[3].tokens, cuda[0].tokens);
  EXPECT_EQ(cuda[4].tokens, cuda[1].tokens) << "cached vs computed prefix";
  EXPECT_EQ(Tokens(cuda), Tokens(cpu));
}

// ---- 3. KV tiers: device -> host -> device -----------------------------------------------------

constexpr int32_t kTierBlock = 16;

// stories260K bytes of one block of all layers (a host-tier slot).
int64_t BlockBytes(const Model& model) {
  const kvcache::KvLayout layout{.num_layers = static_cast<int32_t>(model.config.num_layers),
                                 .num_kv_heads = static_cast<int32_t>(model.config.num_kv_heads),
                                 .head_dim = static_cast<int32_t>(model.config.head_dim),
                                 .block_size = kTierBlock};
  return static_cast<int64_t>(layout.PageBytes()) * layout.num_layers;
}

// A device tier of 20 blocks (100 pages) and, with `host`, a host tier of 256 blocks: the device
// cannot keep a conversation's history while other requests run, the host can. No disk.
EngineConfig TierConfig(const Model& model, const std::string& backend, bool host) {
  EngineConfig c;
  c.backend = backend;
  c.threads = 2;
  c.block_size = kTierBlock;
  c.max_model_len = 256;
  c.scheduler.max_batch_tokens = 256;
  c.scheduler.max_num_seqs = 16;
  c.num_kv_pages = 20 * static_cast<int32_t>(model.config.num_layers);
  c.enable_prefix_caching = host;
  if (host) c.tiers.host_capacity_bytes = 256 * BlockBytes(model);
  return c;
}

// Four turns of one conversation (each prompt = the previous prompt + its answer + a new user
// turn), with three unrelated 150-token requests after each turn that push the conversation's
// blocks off the device. Returns every output, the fillers' too, in order.
std::vector<Output> Conversation(Engine& engine) {
  std::mt19937 rng(31), filler_rng(32);
  std::vector<int32_t> history = Prompt(rng, 40);
  std::vector<Output> outs;
  for (int turn = 0; turn < 4; ++turn) {
    outs.push_back(RunOne(engine, Greedy(history, 16)));
    history = Concat(Concat(history, outs.back().tokens), RandomTokens(rng, 12, kVocab));
    for (int f = 0; f < 3; ++f) outs.push_back(RunOne(engine, Greedy(Prompt(filler_rng, 150), 4)));
  }
  return outs;
}

TEST_F(EngineCudaTest, ConversationHistoryComesBackFromHostWithTheSameOutputs) {
  auto tiered = MakeEngine(*model_, TierConfig(*model_, "cuda", true));
  auto plain = MakeEngine(*model_, TierConfig(*model_, "cuda", false));
  auto cpu = MakeEngine(*model_, TierConfig(*model_, "cpu", true));
  ASSERT_TRUE(tiered && plain && cpu);
  const std::vector<Output> outs = Conversation(*tiered);
  const std::vector<Output> want = Conversation(*plain);
  const std::vector<Output> on_cpu = Conversation(*cpu);
  ASSERT_EQ(outs.size(), 16u);
  EXPECT_EQ(Tokens(outs), Tokens(want)) << "tiers on vs tiers and prefix cache off";
  EXPECT_EQ(Tokens(outs), Tokens(on_cpu)) << "cuda vs cpu, tiers on";
  for (size_t i = 0; i < outs.size(); ++i) EXPECT_EQ(outs[i].finish_reason, "length") << i;
  for (size_t turn = 1; turn < 4; ++turn) {
    const Output& o = outs[4 * turn];
    EXPECT_GT(o.num_host_cached_tokens, 0) << "turn " << turn << ": history not loaded from host";
    EXPECT_EQ(o.num_host_cached_tokens % kTierBlock, 0);
    EXPECT_EQ(o.num_host_cached_tokens, on_cpu[4 * turn].num_host_cached_tokens) << turn;
  }
  const EngineStats s = tiered->Stats();
  ASSERT_TRUE(s.has_tiers);
  EXPECT_GT(s.tiers.device_to_host_bytes, 0);
  EXPECT_GT(s.tiers.host_to_device_bytes, 0);
  EXPECT_GT(s.tiers.host_hit_tokens, 0);
  EXPECT_TRUE(s.tiers.errors.empty());
  EXPECT_EQ(s.num_step_errors, 0);
}

// The tiers' PageIo on CUDA (ModelRunner::ReadPage / WritePage): a page of random bytes goes to
// the device, back to host, to another device page and back, byte for byte; its neighbours keep
// their bytes; a page outside the pool is refused.
TEST_F(EngineCudaTest, PageIoRoundTripsDeviceHostDeviceByteExact) {
  auto device = kernels::MakeCudaDevice(0);
  ASSERT_TRUE(device.ok()) << device.status();
  const RunnerConfig rc{.max_batch_tokens = 64,
                        .max_num_seqs = 2,
                        .max_logit_rows = 2,
                        .num_kv_pages = 16,
                        .block_size = kTierBlock,
                        .max_model_len = 128,
                        .extra_pools = {}};
  auto runner = ModelRunner::Create(device->get(), model_->config, model_->weights, rc);
  ASSERT_TRUE(runner.ok()) << runner.status();
  const size_t page_bytes = (*runner)->kv_layout().PageBytes();
  std::mt19937 rng(5);
  std::vector<std::byte> page(page_bytes), back(page_bytes), moved(page_bytes);
  for (std::byte& b : page) b = static_cast<std::byte>(rng());
  std::vector<std::byte> before_2(page_bytes), before_4(page_bytes), after(page_bytes);
  ASSERT_TRUE((*runner)->ReadPage(2, before_2).ok());
  ASSERT_TRUE((*runner)->ReadPage(4, before_4).ok());

  ASSERT_TRUE((*runner)->WritePage(3, page).ok());
  ASSERT_TRUE((*runner)->ReadPage(3, back).ok());
  EXPECT_EQ(back, page) << "device -> host";
  ASSERT_TRUE((*runner)->WritePage(11, back).ok());
  ASSERT_TRUE((*runner)->ReadPage(11, moved).ok());
  EXPECT_EQ(moved, page) << "host -> device -> host";
  ASSERT_TRUE((*runner)->ReadPage(2, after).ok());
  EXPECT_EQ(after, before_2) << "page 2 changed";
  ASSERT_TRUE((*runner)->ReadPage(4, after).ok());
  EXPECT_EQ(after, before_4) << "page 4 changed";
  EXPECT_EQ((*runner)->WritePage(16, page).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*runner)->ReadPage(-1, after).code(), absl::StatusCode::kInvalidArgument);
}

// ---- 4. KV policies, against the CPU -----------------------------------------------------------

struct PolicyCase {
  const char* name;
  KvCodec codec = KvCodec::kF32;
  int32_t residual_tokens = 0;  // KIVI
  kvcache::SparsitySpec sparsity{};
};

void PrintTo(const PolicyCase& p, std::ostream* os) { *os << p.name; }

// configs/policies.yaml's policies: the codecs as configured (KIVI with its 128-token residual
// window, device tier only), fp16 as well, and the three sparsity types with budgets small enough
// that a 200-token prompt loses tokens (the config's 1024-token budgets would evict nothing).
const PolicyCase kPolicies[] = {
    {.name = "bf16", .codec = KvCodec::kBf16},
    {.name = "fp16", .codec = KvCodec::kFp16},
    {.name = "fp8", .codec = KvCodec::kFp8},
    {.name = "int8", .codec = KvCodec::kInt8},
    {.name = "kivi4", .codec = KvCodec::kKivi4, .residual_tokens = 128},
    {.name = "kivi2", .codec = KvCodec::kKivi2, .residual_tokens = 128},
    {.name = "sink_window",
     .sparsity = {.type = SparsityType::kSinkWindow, .sink_tokens = 4, .window_tokens = 44}},
    {.name = "h2o",
     .sparsity = {.type = SparsityType::kH2o, .budget_tokens = 48, .recent_tokens = 16}},
    {.name = "snapkv",
     .sparsity = {.type = SparsityType::kSnapKv,
                  .budget_tokens = 48,
                  .observation_tokens = 8,
                  .pool_kernel = 5}},
};

// kv_codec_engine_test.cc's CodecConfig and sparsity_engine_test.cc's SparseConfig in one: room
// for 8 sequences of 512 tokens in the f32 pool and, for a codec, in its own pool.
EngineConfig PolicyConfig(const PolicyCase& p, const std::string& backend) {
  EngineConfig c;
  c.backend = backend;
  c.threads = 2;
  c.scheduler.max_num_seqs = 8;
  c.scheduler.max_batch_tokens = 64;  // prompts come in several chunks
  c.max_model_len = 512;
  c.num_kv_pages = 5 * 32 * 8;
  if (p.codec != KvCodec::kF32) {
    c.codec_pools.push_back({.codec = p.codec,
                             .block_size = kvcache::PoolBlockSize(p.codec, 16),
                             .num_pages = 5 * 40 * 8});
  }
  return c;
}

RequestOptions WithPolicy(RequestOptions o, const PolicyCase& p) {
  o.kv_access.codec = p.codec;
  o.kv_access.residual_tokens = p.residual_tokens;
  o.kv_access.sparsity = p.sparsity;
  if (p.codec != KvCodec::kF32) o.kv_access.lower_tiers = 0;  // tiers: [device]
  return o;
}

// A 200-token prompt (KIVI folds a 128-token window, sparsity evicts) and a 20-token one, both
// at once, 16 greedy tokens each.
std::vector<Output> PolicyOutputs(const Model& model, const PolicyCase& p,
                                  const std::string& backend) {
  auto engine = MakeEngine(model, PolicyConfig(p, backend));
  if (!engine) return {};
  std::mt19937 rng(41);
  const std::vector<RequestOptions> requests = {WithPolicy(Greedy(Prompt(rng, 199), 16), p),
                                                WithPolicy(Greedy(Prompt(rng, 19), 16), p)};
  std::vector<Output> outs = RunTogether(*engine, requests);
  const EngineStats s = engine->Stats();
  EXPECT_EQ(s.num_step_errors, 0) << backend;
  for (const EngineStats::Pool& pool : s.pools) {
    EXPECT_EQ(pool.num_free_pages, pool.num_pages) << backend << " pool " << pool.codec;
  }
  return outs;
}

class EngineCudaPolicyTest : public EngineCudaTest,
                             public ::testing::WithParamInterface<PolicyCase> {};

// Runs without error on CUDA; the first 8 greedy tokens of each prompt equal the CPU's (the
// codecs' bytes are the CPU's by construction, attention agrees within rounding, so later tokens
// may part only at a near-tie; how many agree is recorded as a test property).
TEST_P(EngineCudaPolicyTest, RunsAndAgreesWithTheCpu) {
  const PolicyCase& p = GetParam();
  const std::vector<Output> cuda = PolicyOutputs(*model_, p, "cuda");
  const std::vector<Output> cpu = PolicyOutputs(*model_, p, "cpu");
  ASSERT_EQ(cuda.size(), 2u);
  ASSERT_EQ(cpu.size(), 2u);
  for (size_t i = 0; i < cuda.size(); ++i) {
    EXPECT_EQ(cuda[i].finish_reason, "length") << p.name << " prompt " << i;
    ASSERT_EQ(cuda[i].tokens.size(), 16u) << p.name << " prompt " << i;
    ASSERT_EQ(cpu[i].tokens.size(), 16u) << p.name << " prompt " << i;
    const std::vector<int32_t> head(cuda[i].tokens.begin(), cuda[i].tokens.begin() + 8);
    const std::vector<int32_t> cpu_head(cpu[i].tokens.begin(), cpu[i].tokens.begin() + 8);
    EXPECT_EQ(head, cpu_head) << p.name << " prompt " << i;
    const auto agree =
        std::mismatch(cuda[i].tokens.begin(), cuda[i].tokens.end(), cpu[i].tokens.begin()).first -
        cuda[i].tokens.begin();
    RecordProperty(StrCat("prompt", i, "_tokens_equal_to_cpu"), static_cast<int>(agree));
  }
}

INSTANTIATE_TEST_SUITE_P(Policies, EngineCudaPolicyTest, ::testing::ValuesIn(kPolicies),
                         [](const ::testing::TestParamInfo<PolicyCase>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace strata::engine
