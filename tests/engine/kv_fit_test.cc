// RunnerConfig::fit_kv_pages: on a device that budgets its memory (a GPU; here a CPU device that
// reports a budget), the auto-sized KV arena shrinks to what the free memory holds after the
// weights and workspaces, less the reserve; without a budget (the CPU) the wish stands.
#include <gtest/gtest.h>

#include <memory>

#include "engine/model_runner.h"
#include "engine/synthetic.h"
#include "tests/engine/graph_replay_device.h"
#include "tests/engine/runner_stepper.h"

namespace strata::engine {
namespace {

class KvFitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = TinyRunnerModel();
    std::unique_ptr<kernels::Device> dev = TestCpuDevice();
    ASSERT_TRUE(model_ && dev);
    device_ = std::make_unique<testing::GraphReplayDevice>(std::move(dev));
    layout_ = kvcache::KvLayout{.num_layers = static_cast<int32_t>(model_->config.num_layers),
                                .num_kv_heads = static_cast<int32_t>(model_->config.num_kv_heads),
                                .head_dim = static_cast<int32_t>(model_->config.head_dim),
                                .block_size = 4};
  }

  absl::StatusOr<std::unique_ptr<ModelRunner>> Make(int32_t wish, bool fit, bool graphs = true) {
    RunnerConfig rc{.max_batch_tokens = 32, .max_num_seqs = 4, .max_logit_rows = 4,
                    .num_kv_pages = wish, .block_size = 4, .max_model_len = 32,
                    .extra_pools = {}, .decode_graphs = graphs, .fit_kv_pages = fit};
    return ModelRunner::Create(device_.get(), model_->config, model_->weights, rc);
  }

  // A budget whose free memory is the reserve plus `pages` pages (total small enough that the
  // 1 GiB floor is the reserve).
  void FreePages(int64_t pages) {
    const size_t free = ModelRunner::kKvMemoryReserve + pages * layout_.PageBytes();
    device_->SetMemoryInfo(kernels::Device::MemoryInfo{.free_bytes = free, .total_bytes = free});
  }

  std::unique_ptr<SyntheticModel> model_;
  std::unique_ptr<testing::GraphReplayDevice> device_;
  kvcache::KvLayout layout_;
};

TEST_F(KvFitTest, AnAutoArenaTakesWhatFreeMemoryHoldsLessThePaddingPage) {
  FreePages(40);
  auto r = Make(/*wish=*/1000, /*fit=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->runner_config().num_kv_pages, 39);  // one page is the graphs' padding page
  auto no_graphs = Make(1000, true, /*graphs=*/false);
  ASSERT_TRUE(no_graphs.ok());
  EXPECT_EQ((*no_graphs)->runner_config().num_kv_pages, 40);
}

TEST_F(KvFitTest, AWishThatFitsOrAnExplicitSizeIsKept) {
  FreePages(40);
  auto small = Make(16, true);
  ASSERT_TRUE(small.ok());
  EXPECT_EQ((*small)->runner_config().num_kv_pages, 16);
  auto explicit_size = Make(1000, /*fit=*/false);
  ASSERT_TRUE(explicit_size.ok());
  EXPECT_EQ((*explicit_size)->runner_config().num_kv_pages, 1000);
}

TEST_F(KvFitTest, NoBudgetKeepsTheWishAndNoRoomIsAClearError) {
  device_->SetMemoryInfo(std::nullopt);  // the CPU: no budget
  auto cpu = Make(1000, true);
  ASSERT_TRUE(cpu.ok());
  EXPECT_EQ((*cpu)->runner_config().num_kv_pages, 1000);
  device_->SetMemoryInfo(kernels::Device::MemoryInfo{.free_bytes = 1000, .total_bytes = 1000});
  auto full = Make(1000, true);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(full.status().message().find("no memory left for the KV cache"), std::string::npos)
      << full.status();
}

}  // namespace
}  // namespace strata::engine
