#include "kvcache/block_pool.h"

#include <gtest/gtest.h>

#include <vector>

namespace strata::kvcache {
namespace {

using Pages = std::vector<int32_t>;

BlockHash Key(uint64_t n) { return BlockHash{.hi = n, .lo = ~n}; }

// The order in which the free pages are handed out. Reallocating evicts their cache keys; the
// list order is restored.
Pages FreeOrder(BlockPool& pool) {
  std::optional<Pages> all = pool.Allocate(pool.num_free());
  Pages order = *all;
  pool.Free(order);
  return order;
}

TEST(BlockPoolTest, AllocatesInIdOrderAndFailsAllOrNothing) {
  BlockPool pool(5);
  EXPECT_EQ(*pool.Allocate(2), (Pages{0, 1}));
  EXPECT_EQ(*pool.Allocate(1), (Pages{2}));
  EXPECT_EQ(pool.num_free(), 2);
  EXPECT_FALSE(pool.Allocate(3).has_value());
  EXPECT_EQ(pool.num_free(), 2);  // nothing taken by the failed call
  EXPECT_EQ(pool.ref_count(3), 0);
  EXPECT_EQ(*pool.Allocate(2), (Pages{3, 4}));
  EXPECT_EQ(pool.ref_count(4), 1);
  EXPECT_TRUE(pool.Allocate(0)->empty());
  EXPECT_TRUE(pool.CheckInvariants().ok());
}

TEST(BlockPoolTest, FreeOrderIsEvictionOrder) {
  BlockPool pool(4);
  Pages pages = *pool.Allocate(4);
  pool.Free(Pages{2, 0});
  pool.Free(Pages{3, 1});
  EXPECT_EQ(pool.num_free(), 4);
  EXPECT_EQ(*pool.Allocate(4), (Pages{2, 0, 3, 1}));
}

TEST(BlockPoolTest, SharedPageIsFreedOnlyAtRefZero) {
  BlockPool pool(2);
  Pages pages = *pool.Allocate(1);
  pool.Touch(0);
  EXPECT_EQ(pool.ref_count(0), 2);
  pool.Free(Pages{0});
  EXPECT_EQ(pool.ref_count(0), 1);
  EXPECT_EQ(pool.num_free(), 1);
  pool.Free(Pages{0});
  EXPECT_EQ(pool.num_free(), 2);
  EXPECT_EQ(FreeOrder(pool), (Pages{1, 0}));
  EXPECT_TRUE(pool.CheckInvariants().ok());
}

TEST(BlockPoolTest, FreedCachedPageStaysFindableUntilReused) {
  BlockPool pool(3);
  Pages pages = *pool.Allocate(3);
  pool.Publish(1, Key(7), /*layer=*/0);
  EXPECT_EQ(pool.num_cached(), 1);
  pool.Free(Pages{1, 0, 2});
  EXPECT_EQ(pool.Lookup(Key(7), 0), 1);
  EXPECT_FALSE(pool.Lookup(Key(7), 1).has_value());  // the layer is part of the key
  EXPECT_EQ(*pool.Allocate(1), (Pages{1}));          // LRU front: evicts the key
  EXPECT_FALSE(pool.Lookup(Key(7), 0).has_value());
  EXPECT_EQ(pool.num_cached(), 0);
  EXPECT_EQ(pool.stats().evictions, 1);
  EXPECT_TRUE(pool.CheckInvariants().ok());
}

TEST(BlockPoolTest, HitOnFreeCachedPageRemovesItFromTheMiddle) {
  BlockPool pool(5);
  Pages pages = *pool.Allocate(5);
  pool.Publish(2, Key(1), 0);
  pool.Free(Pages{4, 3, 2, 1, 0});
  ASSERT_EQ(pool.Lookup(Key(1), 0), 2);
  pool.Touch(2);
  EXPECT_EQ(pool.ref_count(2), 1);
  EXPECT_EQ(pool.num_free(), 4);
  EXPECT_TRUE(pool.CheckInvariants().ok());
  EXPECT_EQ(FreeOrder(pool), (Pages{4, 3, 1, 0}));
  // Freed again, the page goes to the tail (most recently used) and is still cached.
  pool.Free(Pages{2});
  EXPECT_EQ(pool.Lookup(Key(1), 0), 2);
  EXPECT_EQ(pool.stats().evictions, 0);
  EXPECT_EQ(FreeOrder(pool), (Pages{4, 3, 1, 0, 2}));
  EXPECT_EQ(pool.stats().evictions, 1);
  EXPECT_FALSE(pool.Lookup(Key(1), 0).has_value());
}

TEST(BlockPoolTest, PublishKeepsTheExistingPageForADuplicateKey) {
  BlockPool pool(3);
  Pages pages = *pool.Allocate(3);
  pool.Publish(0, Key(5), 1);
  pool.Publish(2, Key(5), 1);  // computed twice by two requests
  EXPECT_EQ(pool.Lookup(Key(5), 1), 0);
  EXPECT_EQ(pool.num_cached(), 1);
  EXPECT_EQ(pool.stats().publish_dedupes, 1);
  pool.Publish(0, Key(5), 1);  // re-publishing the same page is a no-op
  EXPECT_EQ(pool.stats().publish_dedupes, 1);
  EXPECT_TRUE(pool.CheckInvariants().ok());
  // The duplicate page is plain: reusing it evicts nothing.
  pool.Free(Pages{2, 1, 0});
  EXPECT_EQ(*pool.Allocate(2), (Pages{2, 1}));
  EXPECT_EQ(pool.stats().evictions, 0);
  EXPECT_EQ(pool.Lookup(Key(5), 1), 0);
}

TEST(BlockPoolTest, EmptyPoolIsConsistent) {
  BlockPool pool(0);
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_FALSE(pool.Allocate(1).has_value());
  EXPECT_TRUE(pool.CheckInvariants().ok());
}

TEST(BlockPoolDeathTest, FreeingAFreePageIsABug) {
  BlockPool pool(2);
  EXPECT_DEATH(pool.Free(Pages{0}), "CHECK failed");
}

}  // namespace
}  // namespace strata::kvcache
