// The scheduler's LayerKV planning (scheduler_layers.cc) with a fake clock and a fake device
// arena: when pages keep a request out, the lowest-priority running sequence gives up layers
// (the higher-priority one keeps all of its own) instead of anyone being preempted; layers come
// back once nothing waits; without layer_offload the same load preempts.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "engine/scheduler.h"
#include "kvcache/tiered_store.h"

namespace strata::engine {
namespace {

using kvcache::KvLayout;

constexpr KvLayout kLayout{.num_layers = 4, .num_kv_heads = 1, .head_dim = 4, .block_size = 4};

// Device pages as plain memory.
class Arena : public kvcache::PageIo {
 public:
  explicit Arena(int32_t pages) : bytes_(pages * kLayout.PageBytes()) {}
  absl::Status ReadPage(int32_t page, std::span<std::byte> out) override {
    std::memcpy(out.data(), bytes_.data() + page * kLayout.PageBytes(), out.size());
    return absl::OkStatus();
  }
  absl::Status WritePage(int32_t page, std::span<const std::byte> in) override {
    std::memcpy(bytes_.data() + page * kLayout.PageBytes(), in.data(), in.size());
    return absl::OkStatus();
  }

 private:
  std::vector<std::byte> bytes_;
};

class LayerHarness {
 public:
  LayerHarness(int32_t pages, bool layer_offload)
      : arena_(pages), kv_(kLayout, pages, /*enable_prefix_caching=*/false) {
    kvcache::TierOptions o;
    o.host_capacity_bytes = 1024 * static_cast<int64_t>(kLayout.PageBytes()) * 4;
    tiers_ = std::move(*kvcache::TieredStore::Create(kLayout, o, &arena_, [] {}));
    kv_.AttachTiers(tiers_.get());
    sched_ = std::make_unique<Scheduler>(
        SchedulerConfig{.max_batch_tokens = 256, .max_num_seqs = 8, .policy = "fcfs",
                        .layer_offload = layer_offload},
        &kv_, nullptr, [this] { return now_; });
  }

  void Add(RequestId id, int32_t prompt, int64_t max_tokens, int32_t priority) {
    auto seq = std::make_unique<Sequence>();
    seq->id = id;
    for (int32_t i = 0; i < prompt; ++i) seq->tokens.push_back(static_cast<int32_t>(id * 100 + i));
    seq->num_prompt_tokens = prompt;
    seq->max_tokens = max_tokens;
    seq->slo.priority = priority;
    seq->sampler = std::make_unique<Sampler>(SamplingParams{});
    sched_->Add(std::move(seq));
  }
  void Step() {
    const StepPlan plan = sched_->Schedule();
    now_ += 0.01;
    std::vector<int32_t> sampled;
    for (const ScheduledSeq& s : plan.seqs) {
      if (s.sample) sampled.push_back(7);
    }
    for (const SeqEvent& e : sched_->Update(plan, sampled)) {
      if (!e.finish_reason.empty()) ++finished_;
    }
    EXPECT_TRUE(kv_.CheckInvariants().ok()) << kv_.CheckInvariants();
  }
  int32_t HostLayers(RequestId id) const {
    return kv_.Contains(id) ? kv_.num_host_layers(id) : -1;
  }

  Arena arena_;
  kvcache::KvCacheManager kv_;
  std::unique_ptr<kvcache::TieredStore> tiers_;
  std::unique_ptr<Scheduler> sched_;
  double now_ = 0;
  int finished_ = 0;
};

TEST(SchedulerLayersTest, TheLowerPriorityGivesUpLayersAndGetsThemBackWhenNothingWaits) {
  // 100 pages: A and B (32-token prompts, 8-9 blocks of 4 layers each) fit, C does not.
  LayerHarness h(100, /*layer_offload=*/true);
  h.Add(1, 32, 40, /*priority=*/0);
  h.Add(2, 32, 40, /*priority=*/10);
  h.Step();  // both prompts
  h.Step();  // both decode: 9 blocks each, 28 pages free
  h.Add(3, 32, 3, /*priority=*/10);
  h.Step();  // C needs 32 pages
  EXPECT_GT(h.HostLayers(1), 0) << "A should have given up layers for C";
  EXPECT_EQ(h.HostLayers(2), 0) << "B has the higher priority";
  EXPECT_EQ(h.HostLayers(3), 0);
  EXPECT_EQ(h.sched_->num_preemptions(), 0);
  const int32_t peak = h.HostLayers(1);
  while (h.finished_ < 1) h.Step();  // C is done: nothing waits
  h.Step();
  EXPECT_LT(h.HostLayers(1), peak) << "layers should come back once nothing waits";
  while (h.finished_ < 3) h.Step();
  EXPECT_EQ(h.kv_.pool().num_free(), 100);
  EXPECT_EQ(h.tiers_->stats().host_layer_pages, 0);
  EXPECT_EQ(h.tiers_->stats().host_pinned, 0);
  EXPECT_GT(h.tiers_->stats().layer_restores, 0);
}

TEST(SchedulerLayersTest, WithoutLayerOffloadTheSameLoadWaitsOrPreempts) {
  LayerHarness h(100, /*layer_offload=*/false);
  h.Add(1, 32, 40, 0);
  h.Add(2, 32, 40, 10);
  h.Step();
  h.Step();
  h.Add(3, 32, 3, 10);
  h.Step();
  EXPECT_EQ(h.sched_->num_running(), 2) << "C cannot be admitted without layer offload";
  EXPECT_EQ(h.HostLayers(1), 0);
  while (h.finished_ < 3) h.Step();
  EXPECT_EQ(h.tiers_->stats().layer_offloads, 0);
  EXPECT_EQ(h.kv_.pool().num_free(), 100);
}

}  // namespace
}  // namespace strata::engine
