#include "kvcache/sequence_kv.h"

#include <gtest/gtest.h>

namespace strata::kvcache {
namespace {

KvLayout Layout() { return KvLayout{.num_layers = 2, .num_kv_heads = 1, .head_dim = 4, .block_size = 4}; }

TEST(PagePoolTest, HandsOutLowIdsFirstAndReusesMostRecentlyFreed) {
  PagePool pool(3);
  EXPECT_EQ(*pool.Allocate(), 0);
  EXPECT_EQ(*pool.Allocate(), 1);
  EXPECT_EQ(*pool.Allocate(), 2);
  EXPECT_FALSE(pool.Allocate().has_value());
  pool.Free(1);
  EXPECT_EQ(pool.num_free(), 1);
  EXPECT_EQ(*pool.Allocate(), 1);
}

TEST(SequenceKvTest, ReservesPagesPerLayerAndMapsSlots) {
  PagePool pool(8);
  SequenceKv seq(Layout(), &pool);
  ASSERT_TRUE(seq.Reserve(5));  // 2 blocks x 2 layers
  EXPECT_EQ(seq.num_blocks(), 2);
  EXPECT_EQ(pool.num_free(), 4);
  // Layer 0 took pages 0,1; layer 1 took 2,3.
  EXPECT_EQ(std::vector<int32_t>(seq.pages(0).begin(), seq.pages(0).end()),
            (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(std::vector<int32_t>(seq.pages(1).begin(), seq.pages(1).end()),
            (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(seq.Slot(0, 5), 1 * 4 + 1);
  EXPECT_EQ(seq.Slot(1, 3), 2 * 4 + 3);
}

TEST(SequenceKvTest, ReserveFailsWithoutPartialAllocation) {
  PagePool pool(5);
  SequenceKv seq(Layout(), &pool);
  ASSERT_TRUE(seq.Reserve(8));  // 4 pages
  EXPECT_FALSE(seq.Reserve(9));  // needs 2 more, 1 free
  EXPECT_EQ(seq.num_blocks(), 2);
  EXPECT_EQ(pool.num_free(), 1);
}

TEST(SequenceKvTest, ReleaseReturnsEveryPage) {
  PagePool pool(6);
  {
    SequenceKv seq(Layout(), &pool);
    ASSERT_TRUE(seq.Reserve(12));
    EXPECT_EQ(pool.num_free(), 0);
  }
  EXPECT_EQ(pool.num_free(), 6);
}

}  // namespace
}  // namespace strata::kvcache
