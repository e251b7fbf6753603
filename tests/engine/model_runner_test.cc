// ModelRunner on the CPU device with synthetic:tiny: the varlen paged batch gives each sequence
// exactly what it gets alone, and malformed batches are rejected without side effects.
#include "engine/model_runner.h"

#include <gtest/gtest.h>

#include <numeric>

#include "engine/synthetic.h"
#include "kvcache/page_pool.h"
#include "kvcache/sequence_kv.h"

namespace strata::engine {
namespace {

class ModelRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = MakeSyntheticModel("tiny", 3);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::make_unique<SyntheticModel>(std::move(*m));
    auto dev = kernels::MakeCpuDevice({});
    ASSERT_TRUE(dev.ok());
    device_ = std::move(*dev);
    RunnerConfig rc{.max_batch_tokens = 64, .max_num_seqs = 4, .max_logit_rows = 8,
                    .num_kv_pages = 64, .block_size = 4, .max_model_len = 64, .extra_pools = {}};
    auto r = ModelRunner::Create(device_.get(), model_->config, model_->weights, rc);
    ASSERT_TRUE(r.ok()) << r.status();
    runner_ = std::move(*r);
    pool_ = std::make_unique<kvcache::PagePool>(rc.num_kv_pages);
  }

  // Runs `seqs` (token lists) as one batch from position 0; returns each one's last logits.
  std::vector<std::vector<float>> RunBatch(const std::vector<std::vector<int32_t>>& seqs) {
    const auto& layout = runner_->kv_layout();
    std::vector<std::unique_ptr<kvcache::SequenceKv>> kv;
    std::vector<int32_t> ids, positions, query_start{0}, context_lens, rows, tables;
    std::vector<int64_t> slots;
    int32_t max_blocks = 0;
    for (const auto& s : seqs) {
      kv.push_back(std::make_unique<kvcache::SequenceKv>(layout, pool_.get()));
      EXPECT_TRUE(kv.back()->Reserve(s.size()));
      max_blocks = std::max<int32_t>(max_blocks, kv.back()->num_blocks());
      for (size_t i = 0; i < s.size(); ++i) {
        ids.push_back(s[i]);
        positions.push_back(static_cast<int32_t>(i));
      }
      query_start.push_back(static_cast<int32_t>(ids.size()));
      context_lens.push_back(static_cast<int32_t>(s.size()));
      rows.push_back(query_start.back() - 1);
    }
    for (int32_t l = 0; l < layout.num_layers; ++l) {
      for (size_t s = 0; s < seqs.size(); ++s) {
        auto pages = kv[s]->pages(l);
        for (int32_t b = 0; b < max_blocks; ++b) {
          tables.push_back(b < static_cast<int32_t>(pages.size()) ? pages[b] : 0);
        }
      }
      for (size_t s = 0; s < seqs.size(); ++s) {
        for (size_t i = 0; i < seqs[s].size(); ++i) slots.push_back(kv[s]->Slot(l, i));
      }
    }
    std::vector<float> logits(rows.size() * runner_->vocab_size());
    BatchInput b{.token_ids = ids, .positions = positions, .query_start = query_start,
                 .context_lens = context_lens, .max_blocks_per_seq = max_blocks,
                 .block_tables = tables, .slots = slots, .logit_rows = rows,
                 .layer_loads = {}, .layer_stores = {}, .seq_pools = {},
                 .quant_before = {}, .quant_after = {}, .score_from = {}};
    EXPECT_TRUE(runner_->Forward(b, logits).ok());
    std::vector<std::vector<float>> out;
    for (size_t s = 0; s < rows.size(); ++s) {
      out.emplace_back(logits.begin() + s * runner_->vocab_size(),
                       logits.begin() + (s + 1) * runner_->vocab_size());
    }
    return out;
  }

  std::unique_ptr<SyntheticModel> model_;
  std::unique_ptr<kernels::Device> device_;
  std::unique_ptr<ModelRunner> runner_;
  std::unique_ptr<kvcache::PagePool> pool_;
};

TEST_F(ModelRunnerTest, VarlenBatchMatchesEachSequenceAlone) {
  std::vector<std::vector<int32_t>> seqs = {{1, 2, 3, 4, 5, 6, 7}, {9, 8}, {100, 200, 300, 400, 500, 7, 7, 7, 7, 7, 7}};
  auto together = RunBatch(seqs);
  for (size_t s = 0; s < seqs.size(); ++s) {
    auto alone = RunBatch({seqs[s]});
    ASSERT_EQ(alone[0].size(), together[s].size());
    for (size_t i = 0; i < alone[0].size(); ++i) {
      ASSERT_NEAR(alone[0][i], together[s][i], 1e-4f) << "seq " << s << " logit " << i;
    }
  }
  // Different prompts give different logits (the comparison above is not vacuous).
  EXPECT_NE(together[0], together[1]);
}

TEST_F(ModelRunnerTest, RejectsBadBatchesWithoutWritingKv) {
  std::vector<int32_t> ids = {1, 600}, positions = {0, 1}, qs = {0, 2}, ctx = {2}, rows = {1};
  const int32_t layers = runner_->kv_layout().num_layers;
  std::vector<int32_t> tables(layers, 0);
  std::vector<int64_t> slots(layers * 2, 0);
  std::vector<float> logits(runner_->vocab_size());
  BatchInput b{.token_ids = ids, .positions = positions, .query_start = qs, .context_lens = ctx,
               .max_blocks_per_seq = 1, .block_tables = tables, .slots = slots,
               .logit_rows = rows, .layer_loads = {}, .layer_stores = {}, .seq_pools = {},
                 .quant_before = {}, .quant_after = {}, .score_from = {}};
  absl::Status s = runner_->Forward(b, logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("600"), std::string::npos) << s;
  ids[1] = 5;
  ctx[0] = 1;  // fewer context tokens than query tokens
  EXPECT_EQ(runner_->Forward(b, logits).code(), absl::StatusCode::kInvalidArgument);
  ctx[0] = 2;
  rows[0] = 2;  // past the batch
  EXPECT_EQ(runner_->Forward(b, logits).code(), absl::StatusCode::kInvalidArgument);
  rows[0] = 1;
  EXPECT_TRUE(runner_->Forward(b, logits).ok());
}

}  // namespace
}  // namespace strata::engine
