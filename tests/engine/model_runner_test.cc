// ModelRunner on the CPU device with synthetic:tiny: the varlen paged batch gives each sequence
// exactly what it gets alone, and malformed batches are rejected without side effects.
#include "engine/model_runner.h"

#include <gtest/gtest.h>

#include <numeric>

#include "engine/synthetic.h"
#include "tests/engine/runner_stepper.h"

namespace strata::engine {
namespace {

class ModelRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = TinyRunnerModel();
    std::unique_ptr<kernels::Device> dev = TestCpuDevice();
    ASSERT_TRUE(model_ && dev);
    RunnerConfig rc{.max_batch_tokens = 64, .max_num_seqs = 4, .max_logit_rows = 8,
                    .num_kv_pages = 64, .block_size = 4, .max_model_len = 64, .extra_pools = {}};
    stepper_ = std::make_unique<Stepper>(*model_, std::move(dev), rc);
    runner_ = &stepper_->runner();
  }

  // Runs `seqs` (token lists) as one batch of new sequences from position 0; returns each one's
  // last logits.
  std::vector<std::vector<float>> RunBatch(const std::vector<std::vector<int32_t>>& seqs) {
    std::vector<int> ids;
    for (size_t s = 0; s < seqs.size(); ++s) ids.push_back(next_seq_++);
    const std::vector<float> logits = stepper_->Step(ids, seqs);
    std::vector<std::vector<float>> out;
    for (size_t s = 0; s < seqs.size(); ++s) {
      out.emplace_back(logits.begin() + s * runner_->vocab_size(),
                       logits.begin() + (s + 1) * runner_->vocab_size());
    }
    return out;
  }

  std::unique_ptr<SyntheticModel> model_;
  std::unique_ptr<Stepper> stepper_;
  ModelRunner* runner_ = nullptr;
  int next_seq_ = 0;
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
