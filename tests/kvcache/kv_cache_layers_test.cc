// KvCacheManager's LayerKV half: layers of a running request moved to host RAM and back, with
// staging pages on the device, over a fake device arena (tests/kvcache/tier_test_util.h).
#include <gtest/gtest.h>

#include <memory>
#include <numeric>
#include <vector>

#include "kvcache/kv_cache_manager.h"
#include "kvcache/tiered_store.h"
#include "tests/kvcache/tier_test_util.h"

namespace strata::kvcache {
namespace {

// 6 layers, blocks of 4 tokens.
KvLayout SixLayers() {
  return KvLayout{.num_layers = 6, .num_kv_heads = 2, .head_dim = 4, .block_size = 4};
}

class KvCacheLayersTest : public ::testing::Test {
 protected:
  void Init(int32_t device_pages, int64_t host_slots, bool prefix_caching = true) {
    dev_ = std::make_unique<FakeDevice>(layout_, device_pages);
    kv_ = std::make_unique<KvCacheManager>(layout_, device_pages, prefix_caching);
    TierOptions o;
    o.host_capacity_bytes = host_slots * static_cast<int64_t>(layout_.PageBytes()) * 6;
    auto store = TieredStore::Create(layout_, o, dev_.get(), [] {});
    ASSERT_TRUE(store.ok()) << store.status();
    tiers_ = std::move(*store);
    kv_->AttachTiers(tiers_.get());
  }
  // Registers request `id` with `blocks` full blocks of distinct tokens, each page filled with a
  // pattern of (id, block, layer).
  void AddRequest(RequestId id, int64_t blocks) {
    tokens_[id].resize(blocks * 4 + 1);
    std::iota(tokens_[id].begin(), tokens_[id].end(), static_cast<int32_t>(id * 1000));
    kv_->Attach(id, BlockHash{1, 2}, tokens_[id], KvAccess{});
    ASSERT_TRUE(kv_->Reserve(id, blocks * 4));
    for (int32_t l = 0; l < 6; ++l) {
      for (int64_t b = 0; b < blocks; ++b) dev_->Fill(kv_->pages(id, l)[b], Tag(id, b), l);
    }
    kv_->Commit(id, tokens_[id], blocks * 4);
  }
  static uint64_t Tag(RequestId id, int64_t b) { return id * 100 + static_cast<uint64_t>(b); }
  // Every page of every layer of `id` holds its pattern on the device.
  ::testing::AssertionResult AllOnDevice(RequestId id, int64_t blocks) {
    for (int32_t l = 0; l < 6; ++l) {
      for (int64_t b = 0; b < blocks; ++b) {
        auto r = dev_->Holds(kv_->pages(id, l)[b], Tag(id, b), l);
        if (!r) return r << " (layer " << l << ", block " << b << ")";
      }
    }
    return ::testing::AssertionSuccess();
  }

  KvLayout layout_ = SixLayers();
  std::unique_ptr<FakeDevice> dev_;
  std::unique_ptr<KvCacheManager> kv_;
  std::unique_ptr<TieredStore> tiers_;
  std::map<RequestId, std::vector<int32_t>> tokens_;
};

TEST_F(KvCacheLayersTest, MovingLayersFreesPagesNetOfStagingAndComesBackByteExact) {
  Init(/*device_pages=*/64, /*host_slots=*/16);
  AddRequest(1, 4);  // 24 pages
  const int32_t free_before = kv_->pool().num_free();
  EXPECT_EQ(kv_->PagesFreedByMoving(1, 2), 0);       // 2 layers = the two staging sets
  EXPECT_EQ(kv_->PagesFreedByMoving(1, 5), 3 * 4);
  ASSERT_EQ(kv_->MoveLayersToHost(1, 5), 5);
  EXPECT_EQ(kv_->num_host_layers(1), 5);
  EXPECT_EQ(kv_->pool().num_free(), free_before + 12);
  EXPECT_EQ(tiers_->stats().host_layer_pages, 5 * 4);
  // Host layers name the staging pages of their parity; layer 0 keeps its own pages.
  auto table = [&](int32_t l) {
    return std::vector<int32_t>(kv_->pages(1, l).begin(), kv_->pages(1, l).end());
  };
  for (int32_t l = 1; l < 6; ++l) EXPECT_EQ(table(l), table(l % 2 == 1 ? 1 : 2)) << l;
  EXPECT_NE(table(1), table(2));
  EXPECT_INVARIANTS(*kv_);
  // Growing by a block takes device pages for layer 0 and both staging sets only (3), and a
  // host page per host layer.
  ASSERT_TRUE(kv_->Reserve(1, 17));
  EXPECT_EQ(kv_->pool().num_free(), free_before + 12 - 3);
  EXPECT_EQ(tiers_->stats().host_layer_pages, 5 * 5);
  EXPECT_INVARIANTS(*kv_);
  // A step computing token 16 loads the 4 blocks before it and stores block 4, per host layer;
  // the loads bring back exactly the bytes that left.
  std::vector<LayerPageCopy> loads, stores;
  kv_->LayerCopies(1, 16, 17, &loads, &stores);
  ASSERT_EQ(loads.size(), 5u * 4);
  ASSERT_EQ(stores.size(), 5u);
  for (size_t i = 0; i < loads.size(); ++i) {
    const LayerPageCopy& c = loads[i];
    const int64_t b = static_cast<int64_t>(i) - (c.layer - 1) * 4;
    EXPECT_EQ(c.page, kv_->pages(1, c.layer)[b]);
    ASSERT_TRUE(dev_->WritePage(c.page, {c.host, layout_.PageBytes()}).ok());
    EXPECT_TRUE(dev_->Holds(c.page, Tag(1, b), c.layer)) << i;
  }
  // The step writes block 4 of each layer in staging; the stores take it to host RAM.
  for (const LayerPageCopy& c : stores) {
    dev_->Fill(c.page, Tag(1, 4), c.layer);
    ASSERT_TRUE(dev_->ReadPage(c.page, {c.host, layout_.PageBytes()}).ok());
  }
  dev_->Fill(kv_->pages(1, 0)[4], Tag(1, 4), 0);
  // Back: every layer on the device again, the staging pages freed.
  ASSERT_EQ(kv_->MoveLayersToDevice(1, 6), 5);
  EXPECT_EQ(kv_->num_host_layers(1), 0);
  EXPECT_EQ(kv_->pool().num_free(), free_before - 6);
  EXPECT_EQ(tiers_->stats().host_layer_pages, 0);
  EXPECT_EQ(tiers_->stats().host_pinned, 0);
  EXPECT_TRUE(AllOnDevice(1, 5));
  EXPECT_INVARIANTS(*kv_);
  const TierStats s = tiers_->stats();
  EXPECT_EQ(s.layer_offloads, 5);
  EXPECT_EQ(s.layer_restores, 5);
}

TEST_F(KvCacheLayersTest, ReleaseFreesDevicePagesStagingAndHostSlots) {
  Init(64, 16);
  AddRequest(1, 3);
  const int32_t free_before = kv_->pool().num_free();
  ASSERT_EQ(kv_->MoveLayersToHost(1, 4), 4);
  EXPECT_FALSE(kv_->SwapOut(1));  // a request with host layers is not swapped: it recomputes
  EXPECT_GT(tiers_->stats().host_pinned, 0);
  kv_->Release(1);
  EXPECT_EQ(kv_->pool().num_free(), 64);
  EXPECT_EQ(tiers_->stats().host_layer_pages, 0);
  EXPECT_EQ(tiers_->stats().host_pinned, 0);
  EXPECT_INVARIANTS(*kv_);
  (void)free_before;
}

TEST_F(KvCacheLayersTest, AFullHostTierMovesNothingAndChangesNothing) {
  Init(64, /*host_slots=*/1);  // 6 single-layer pages: not one layer of 8 blocks
  AddRequest(1, 8);
  const int32_t free_before = kv_->pool().num_free();
  EXPECT_EQ(kv_->MoveLayersToHost(1, 3), 0);
  EXPECT_EQ(kv_->num_host_layers(1), 0);
  EXPECT_EQ(kv_->pool().num_free(), free_before);
  EXPECT_EQ(tiers_->stats().host_layer_pages, 0);
  EXPECT_EQ(tiers_->stats().host_pinned, 0);
  EXPECT_TRUE(AllOnDevice(1, 8));
  EXPECT_INVARIANTS(*kv_);
}

TEST_F(KvCacheLayersTest, SharedPrefixPagesStayWithTheOtherRequestAndCountForNothing) {
  Init(/*device_pages=*/18, 16);  // request 1 fills the pool
  AddRequest(1, 3);  // published: request 2 shares its 3 blocks
  std::vector<int32_t> tokens2 = tokens_[1];
  tokens2.push_back(7);
  const PrefixHit hit = kv_->Attach(2, BlockHash{1, 2}, tokens2, KvAccess{});
  ASSERT_EQ(hit.cached_tokens, 12);
  // Every page of request 1 is shared and none is free: moving its layers frees nothing, so
  // the first move cannot pay for its staging and is refused.
  EXPECT_LT(kv_->PagesFreedByMoving(1, 6), 0);
  EXPECT_EQ(kv_->MoveLayersToHost(1, 6), 0);
  kv_->Release(2);
  // Alone again, it can move (its pages pay for the staging), and a new request still finds
  // the blocks it published (on the device, or demoted to host by the staging allocation).
  ASSERT_EQ(kv_->MoveLayersToHost(1, 6), 6);
  EXPECT_INVARIANTS(*kv_);
  kv_->Release(1);
  ASSERT_EQ(kv_->Attach(3, BlockHash{1, 2}, tokens2, KvAccess{}).cached_tokens, 12);
  for (int32_t l = 0; l < 6; ++l) {
    for (int64_t b = 0; b < 3; ++b) EXPECT_TRUE(dev_->Holds(kv_->pages(3, l)[b], Tag(1, b), l));
  }
  kv_->Release(3);
  EXPECT_EQ(kv_->pool().num_free(), 18);
  EXPECT_EQ(tiers_->stats().host_pinned, 0);
  EXPECT_INVARIANTS(*kv_);
}

TEST_F(KvCacheLayersTest, NoBlockIsPublishedWhileLayersAreInHostRam) {
  Init(64, 16);
  AddRequest(1, 2);
  ASSERT_GT(kv_->MoveLayersToHost(1, 3), 0);
  std::vector<int32_t> longer = tokens_[1];
  longer.resize(17, 5);
  ASSERT_TRUE(kv_->Reserve(1, 16));
  kv_->Commit(1, longer, 16);
  EXPECT_EQ(kv_->Attach(2, BlockHash{1, 2}, longer, KvAccess{}).cached_tokens, 8);
  kv_->Release(2);
  // Back on the device, the next commit publishes the blocks computed meanwhile.
  ASSERT_EQ(kv_->MoveLayersToDevice(1, 6), 3);
  kv_->Commit(1, longer, 16);
  EXPECT_EQ(kv_->Attach(3, BlockHash{1, 2}, longer, KvAccess{}).cached_tokens, 16);
  kv_->Release(3);
  kv_->Release(1);
  EXPECT_INVARIANTS(*kv_);
}

}  // namespace
}  // namespace strata::kvcache
