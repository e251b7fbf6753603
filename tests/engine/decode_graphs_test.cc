// ModelRunner's decode graphs (model_runner_graphs.cc) on a device that replays recorded kernels
// the way a CUDA graph does (GraphReplayDevice): decode steps padded to bucket shapes and
// replayed give what eager launches give, step after step, as sequences join and leave and their
// block tables grow; prefill and mixed steps stay eager; a capture that fails runs uncaptured;
// the padding rows never touch a real KV page.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "engine/model_runner.h"
#include "engine/synthetic.h"
#include "kvcache/page_pool.h"
#include "kvcache/sequence_kv.h"
#include "tests/engine/graph_replay_device.h"

namespace strata::engine {
namespace {

constexpr int32_t kPages = 512;

RunnerConfig TestRunnerConfig() {
  return RunnerConfig{.max_batch_tokens = 64, .max_num_seqs = 12, .max_logit_rows = 12,
                      .num_kv_pages = kPages, .block_size = 4, .max_model_len = 64,
                      .extra_pools = {}};
}

// One runner and the KV of its sequences; steps are described by which sequences take part and
// which tokens they add.
class Stepper {
 public:
  Stepper(const SyntheticModel& model, std::unique_ptr<kernels::Device> device)
      : device_(std::move(device)), pool_(kPages) {
    auto r = ModelRunner::Create(device_.get(), model.config, model.weights, TestRunnerConfig());
    EXPECT_TRUE(r.ok()) << r.status();
    runner_ = std::move(*r);
  }

  // Appends new_tokens[i] to sequence seqs[i] (creating it on first use) and returns the
  // logits of each one's last token, [seqs.size() * vocab].
  std::vector<float> Step(const std::vector<int>& seqs,
                          const std::vector<std::vector<int32_t>>& new_tokens) {
    const auto& layout = runner_->kv_layout();
    std::vector<int32_t> ids, positions, query_start{0}, context_lens, rows, tables;
    std::vector<int64_t> slots;
    int32_t max_blocks = 1;
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int s = seqs[i];
      if (kv_.size() <= static_cast<size_t>(s)) kv_.resize(s + 1);
      if (!kv_[s]) kv_[s] = std::make_unique<kvcache::SequenceKv>(layout, &pool_);
      if (lens_.size() <= static_cast<size_t>(s)) lens_.resize(s + 1, 0);
      const int32_t before = lens_[s];
      lens_[s] += static_cast<int32_t>(new_tokens[i].size());
      EXPECT_TRUE(kv_[s]->Reserve(lens_[s]));
      max_blocks = std::max<int32_t>(max_blocks, kv_[s]->num_blocks());
      for (size_t t = 0; t < new_tokens[i].size(); ++t) {
        ids.push_back(new_tokens[i][t]);
        positions.push_back(before + static_cast<int32_t>(t));
      }
      query_start.push_back(static_cast<int32_t>(ids.size()));
      context_lens.push_back(lens_[s]);
      rows.push_back(query_start.back() - 1);
    }
    for (int32_t l = 0; l < layout.num_layers; ++l) {
      for (int s : seqs) {
        auto pages = kv_[s]->pages(l);
        for (int32_t b = 0; b < max_blocks; ++b) {
          tables.push_back(b < static_cast<int32_t>(pages.size()) ? pages[b] : 0);
        }
      }
      for (size_t i = 0; i < seqs.size(); ++i) {
        for (int32_t p = lens_[seqs[i]] - static_cast<int32_t>(new_tokens[i].size());
             p < lens_[seqs[i]]; ++p) {
          slots.push_back(kv_[seqs[i]]->Slot(l, p));
        }
      }
    }
    std::vector<float> logits(rows.size() * runner_->vocab_size());
    BatchInput b;
    b.token_ids = ids;
    b.positions = positions;
    b.query_start = query_start;
    b.context_lens = context_lens;
    b.max_blocks_per_seq = max_blocks;
    b.block_tables = tables;
    b.slots = slots;
    b.logit_rows = rows;
    const absl::Status status = runner_->Forward(b, logits);
    EXPECT_TRUE(status.ok()) << status;
    return logits;
  }

  // Every page of the arena, as bytes.
  std::vector<std::byte> Pages() {
    const size_t page_bytes = runner_->kv_layout().PageBytes();
    std::vector<std::byte> all(page_bytes * kPages);
    for (int32_t p = 0; p < kPages; ++p) {
      EXPECT_TRUE(runner_->ReadPage(p, {all.data() + p * page_bytes, page_bytes}).ok());
    }
    return all;
  }

  ModelRunner& runner() { return *runner_; }
  kernels::Device* device() { return device_.get(); }

 private:
  std::unique_ptr<kernels::Device> device_;
  kvcache::PagePool pool_;
  std::unique_ptr<ModelRunner> runner_;
  std::vector<std::unique_ptr<kvcache::SequenceKv>> kv_;
  std::vector<int32_t> lens_;
};

class DecodeGraphsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = MakeSyntheticModel("tiny", 3);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::make_unique<SyntheticModel>(std::move(*m));
    auto eager_dev = kernels::MakeCpuDevice({});
    auto graph_dev = kernels::MakeCpuDevice({});
    ASSERT_TRUE(eager_dev.ok() && graph_dev.ok());
    eager_ = std::make_unique<Stepper>(*model_, std::move(*eager_dev));
    auto replay = std::make_unique<testing::GraphReplayDevice>(std::move(*graph_dev));
    replay_ = replay.get();
    graphs_ = std::make_unique<Stepper>(*model_, std::move(replay));
  }

  // Runs the same step on both runners; the graph runner's logits must match the eager ones.
  // Returns each sequence's greedy next token (from the eager logits).
  std::vector<int32_t> StepBoth(const std::vector<int>& seqs,
                                const std::vector<std::vector<int32_t>>& tokens) {
    const std::vector<float> want = eager_->Step(seqs, tokens);
    const std::vector<float> got = graphs_->Step(seqs, tokens);
    EXPECT_EQ(want.size(), got.size());
    const int64_t vocab = eager_->runner().vocab_size();
    std::vector<int32_t> next;
    for (size_t i = 0; i < seqs.size(); ++i) {
      const float* w = want.data() + i * vocab;
      const float* g = got.data() + i * vocab;
      for (int64_t v = 0; v < vocab; ++v) {
        EXPECT_NEAR(w[v], g[v], 1e-4f) << "step " << step_ << " seq " << seqs[i] << " logit " << v;
        if (std::abs(w[v] - g[v]) > 1e-4f) return next;  // one report per step is enough
      }
      next.push_back(static_cast<int32_t>(std::max_element(w, w + vocab) - w));
    }
    ++step_;
    return next;
  }

  // Decodes `seqs` one token each, `steps` times, feeding back each one's greedy token.
  void Decode(const std::vector<int>& seqs, int steps) {
    for (int i = 0; i < steps; ++i) {
      std::vector<std::vector<int32_t>> tokens;
      for (int s : seqs) tokens.push_back({last_[s]});
      const std::vector<int32_t> next = StepBoth(seqs, tokens);
      ASSERT_EQ(next.size(), seqs.size());
      for (size_t j = 0; j < seqs.size(); ++j) last_[seqs[j]] = next[j];
    }
  }

  void Prefill(const std::vector<int>& seqs, const std::vector<std::vector<int32_t>>& prompts) {
    const std::vector<int32_t> next = StepBoth(seqs, prompts);
    ASSERT_EQ(next.size(), seqs.size());
    for (size_t j = 0; j < seqs.size(); ++j) last_[seqs[j]] = next[j];
  }

  std::unique_ptr<SyntheticModel> model_;
  std::unique_ptr<Stepper> eager_, graphs_;
  testing::GraphReplayDevice* replay_ = nullptr;
  std::map<int, int32_t> last_;
  int step_ = 0;
};

TEST_F(DecodeGraphsTest, ReplayedDecodeStepsMatchEagerAsTheBatchChanges) {
  Prefill({0, 1, 2}, {{5, 6, 7, 8, 9}, {11, 12}, {40, 41, 42, 43, 44, 45, 46, 47, 48}});
  EXPECT_EQ(replay_->captures(), 0) << "a prefill step is not a decode step";
  Decode({0, 1, 2}, 6);  // 3 sequences -> bucket 4, replayed after the first capture
  Prefill({3, 4, 5, 6, 7}, {{1}, {2, 3}, {4, 5, 6}, {7}, {8, 9, 10, 11}});
  Decode({0, 1, 2, 3, 4, 5, 6, 7}, 5);  // bucket 8
  Decode({1, 3, 5}, 4);                 // back to bucket 4, with other sequences
  Decode({6}, 3);                       // bucket 1
  Decode({0, 1, 2, 3, 4, 5, 6, 7}, 16);  // contexts cross 32 tokens: block tables 8 -> 16 wide
  EXPECT_GT(replay_->captures(), 3);
  EXPECT_GT(replay_->replays(), 2 * replay_->captures());
  EXPECT_EQ(replay_->failed_captures(), 0);
  // Every decode step above ran as a graph; the eager runner ran none.
  EXPECT_EQ(graphs_->runner().num_graph_steps(), 6 + 5 + 4 + 3 + 16);
  EXPECT_EQ(eager_->runner().num_graph_steps(), 0);
}

TEST_F(DecodeGraphsTest, AMixedStepStaysEagerAndAFailedCaptureRunsUncaptured) {
  Prefill({0, 1}, {{3, 4, 5}, {6, 7}});
  Decode({0, 1}, 1);  // captures bucket (2 seqs, 8 blocks)
  const int captures = replay_->captures();
  // A step where one sequence decodes and another prefills is not a graph step.
  const int64_t graph_steps = graphs_->runner().num_graph_steps();
  StepBoth({0, 2}, {{last_[0]}, {9, 10, 11}});
  EXPECT_EQ(graphs_->runner().num_graph_steps(), graph_steps);
  // The next new shape fails to capture once: that step runs uncaptured, the one after captures.
  const uint64_t key_4x8 = (uint64_t{4} << 32) | 8;
  replay_->FailNextCapture(key_4x8);
  last_[2] = 12;
  Decode({0, 1, 2}, 3);
  EXPECT_EQ(replay_->failed_captures(), 1);
  EXPECT_EQ(replay_->captures(), captures + 1);
}

TEST_F(DecodeGraphsTest, PaddingRowsWriteOnlyThePaddingPage) {
  Prefill({0, 1, 2}, {{5, 6, 7}, {8}, {9, 10, 11, 12, 13}});
  Decode({0, 1, 2}, 9);  // 3 -> bucket 4: one padding row per step
  ASSERT_GT(replay_->replays(), 0);
  const std::vector<std::byte> want = eager_->Pages();
  const std::vector<std::byte> got = graphs_->Pages();
  ASSERT_EQ(want.size(), got.size());
  // Pages no sequence owns stay all zero on both; owned pages agree to rounding.
  const size_t floats = want.size() / sizeof(float);
  const float* w = reinterpret_cast<const float*>(want.data());
  const float* g = reinterpret_cast<const float*>(got.data());
  int differing = 0;
  for (size_t i = 0; i < floats; ++i) {
    if ((w[i] == 0.0f) != (g[i] == 0.0f) || std::abs(w[i] - g[i]) > 1e-4f) ++differing;
  }
  EXPECT_EQ(differing, 0);
}

TEST(DecodeGraphsConfigTest, GraphsOffOrUnsupportedMeansNoPaddingPageAndNoGraphSteps) {
  auto m = MakeSyntheticModel("tiny", 3);
  ASSERT_TRUE(m.ok());
  auto dev = kernels::MakeCpuDevice({});
  ASSERT_TRUE(dev.ok());
  testing::GraphReplayDevice replay(std::move(*dev));
  RunnerConfig rc = TestRunnerConfig();
  rc.decode_graphs = false;
  auto r = ModelRunner::Create(&replay, m->config, m->weights, rc);
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<int32_t> ids = {3}, pos = {0}, qs = {0, 1}, ctx = {1}, rows = {0};
  std::vector<int32_t> tables(m->config.num_layers, 0);
  std::vector<int64_t> slots(m->config.num_layers, 0);
  std::vector<float> logits(m->config.vocab_size);
  BatchInput b;
  b.token_ids = ids;
  b.positions = pos;
  b.query_start = qs;
  b.context_lens = ctx;
  b.max_blocks_per_seq = 1;
  b.block_tables = tables;
  b.slots = slots;
  b.logit_rows = rows;
  ASSERT_TRUE((*r)->Forward(b, logits).ok());
  EXPECT_EQ((*r)->num_graph_steps(), 0);
  EXPECT_EQ(replay.captures() + replay.replays(), 0);
}

}  // namespace
}  // namespace strata::engine
