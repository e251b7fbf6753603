#include "kvcache/host_tier.h"

#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <set>
#include <vector>

#include "kvcache/block_pool.h"

namespace strata::kvcache {
namespace {

constexpr size_t kBlockBytes = 64;

BlockHash H(uint64_t i) { return {i * 0x9E3779B97F4A7C15ull + 1, i}; }

// Acquires a slot and expects no victim.
int32_t AcquireFree(HostTier& host) {
  std::optional<HostVictim> victim;
  std::optional<int32_t> slot = host.Acquire(&victim);
  EXPECT_TRUE(slot.has_value());
  EXPECT_FALSE(victim.has_value());
  return slot.value_or(-1);
}

// Acquires + publishes `hash`; returns the slot.
int32_t Put(HostTier& host, const BlockHash& hash, int32_t hits = 0,
            uint8_t lower_tiers = kAllLowerTiers, bool from_disk = false) {
  std::optional<HostVictim> victim;
  std::optional<int32_t> slot = host.Acquire(&victim);
  EXPECT_TRUE(slot.has_value());
  if (!slot) return -1;
  host.Publish(*slot, hash, hits, lower_tiers, from_disk);
  return *slot;
}

TEST(HostTierTest, AcquireHandsOutDistinctFreeSlotsThenPublishMakesThemFindable) {
  HostTier host(3 * kBlockBytes, kBlockBytes);
  EXPECT_EQ(host.num_slots(), 3);
  EXPECT_EQ(host.block_bytes(), kBlockBytes);
  EXPECT_EQ(host.num_used(), 0);

  std::set<int32_t> slots;
  for (int i = 0; i < 3; ++i) slots.insert(AcquireFree(host));
  EXPECT_EQ(slots.size(), 3u);
  for (int32_t s : slots) EXPECT_TRUE(s >= 0 && s < 3) << s;
  EXPECT_EQ(host.num_used(), 3);
  EXPECT_EQ(host.num_pinned(), 3);
  // Pinned slots are not findable yet.
  EXPECT_FALSE(host.Contains(H(1)));

  int32_t s1 = *slots.begin();
  host.Publish(s1, H(1), 0, kAllLowerTiers, false);
  EXPECT_EQ(host.num_pinned(), 2);
  EXPECT_EQ(host.num_used(), 3);
  EXPECT_TRUE(host.Contains(H(1)));
  EXPECT_FALSE(host.Contains(H(2)));
  EXPECT_EQ(host.Find(H(1), /*touch=*/false), s1);
  EXPECT_EQ(host.Find(H(1), /*touch=*/true), s1);
  EXPECT_EQ(host.Find(H(2), /*touch=*/true), std::nullopt);
}

TEST(HostTierTest, DataSpansAreDisjointAndKeepTheirBytes) {
  HostTier host(4 * kBlockBytes, kBlockBytes);
  for (int32_t s = 0; s < 4; ++s) {
    std::span<std::byte> d = host.data(s);
    ASSERT_EQ(d.size(), kBlockBytes);
    std::memset(d.data(), 0x10 + s, d.size());
  }
  for (int32_t s = 0; s < 4; ++s) {
    for (std::byte b : host.data(s)) ASSERT_EQ(b, std::byte(0x10 + s)) << "slot " << s;
  }
  EXPECT_EQ(host.data(1).data(), host.data(0).data() + kBlockBytes);
}

TEST(HostTierTest, EvictsLeastRecentlyUsedAndFindTouchRefreshes) {
  HostTier host(3 * kBlockBytes, kBlockBytes);
  const int32_t a = Put(host, H(1));
  const int32_t b = Put(host, H(2));
  const int32_t c = Put(host, H(3));
  ASSERT_EQ(host.num_pinned(), 0);

  // A becomes the most recently used: B is the LRU one now.
  EXPECT_EQ(host.Find(H(1), /*touch=*/true), a);
  std::optional<HostVictim> victim;
  std::optional<int32_t> slot = host.Acquire(&victim);
  ASSERT_TRUE(slot.has_value());
  EXPECT_EQ(*slot, b);
  ASSERT_TRUE(victim.has_value());
  EXPECT_EQ(victim->hash, H(2));
  EXPECT_FALSE(host.Contains(H(2)));
  EXPECT_TRUE(host.Contains(H(1)));
  EXPECT_TRUE(host.Contains(H(3)));
  host.Publish(*slot, H(4), 0, kAllLowerTiers, false);

  // Order now: C, A, D. Find without touch must not refresh C.
  EXPECT_EQ(host.Find(H(3), /*touch=*/false), c);
  slot = host.Acquire(&victim);
  ASSERT_TRUE(slot.has_value());
  EXPECT_EQ(*slot, c);
  ASSERT_TRUE(victim.has_value());
  EXPECT_EQ(victim->hash, H(3));
  host.Unpin(*slot);

  // Free slots are used before any cached one is evicted.
  slot = host.Acquire(&victim);
  ASSERT_TRUE(slot.has_value());
  EXPECT_EQ(*slot, c);
  EXPECT_FALSE(victim.has_value());
  host.Publish(*slot, H(5), 0, kAllLowerTiers, false);

  // Then A (older than D and E).
  slot = host.Acquire(&victim);
  ASSERT_TRUE(slot.has_value());
  ASSERT_TRUE(victim.has_value());
  EXPECT_EQ(victim->hash, H(1));
  EXPECT_EQ(*slot, a);
}

TEST(HostTierTest, VictimReportsHashHitsAndLowerTiers) {
  HostTier host(1 * kBlockBytes, kBlockBytes);
  const int32_t s = Put(host, H(7), /*hits=*/3, /*lower_tiers=*/kTierHost);
  EXPECT_FALSE(host.RecordHit(s));
  EXPECT_FALSE(host.RecordHit(s));
  std::optional<HostVictim> victim;
  std::optional<int32_t> slot = host.Acquire(&victim);
  ASSERT_TRUE(slot.has_value());
  EXPECT_EQ(*slot, s);
  ASSERT_TRUE(victim.has_value());
  EXPECT_EQ(victim->hash, H(7));
  EXPECT_EQ(victim->hits, 5);
  EXPECT_EQ(victim->lower_tiers, kTierHost);

  // The reused slot starts clean: its old hits are not inherited.
  host.Publish(*slot, H(8), 0, kAllLowerTiers, false);
  slot = host.Acquire(&victim);
  ASSERT_TRUE(victim.has_value());
  EXPECT_EQ(victim->hash, H(8));
  EXPECT_EQ(victim->hits, 0);
  EXPECT_EQ(victim->lower_tiers, kAllLowerTiers);
}

TEST(HostTierTest, PinnedSlotsAreNeverEvictedAndAllPinnedGivesNullopt) {
  HostTier host(2 * kBlockBytes, kBlockBytes);
  const int32_t pinned = AcquireFree(host);  // kept pinned (a swapped request)
  const int32_t cached = Put(host, H(1));
  ASSERT_NE(pinned, cached);

  std::optional<HostVictim> victim;
  std::optional<int32_t> slot = host.Acquire(&victim);
  ASSERT_TRUE(slot.has_value());
  EXPECT_EQ(*slot, cached);  // the cached one goes, never the pinned one
  ASSERT_TRUE(victim.has_value());
  EXPECT_EQ(victim->hash, H(1));
  EXPECT_EQ(host.num_pinned(), 2);

  // Everything pinned: nothing to hand out, and the victim is cleared.
  victim = HostVictim{.hash = H(99)};
  EXPECT_EQ(host.Acquire(&victim), std::nullopt);
  EXPECT_FALSE(victim.has_value());
  EXPECT_EQ(host.num_used(), 2);

  host.Unpin(pinned);
  EXPECT_EQ(host.num_pinned(), 1);
  EXPECT_EQ(host.num_used(), 1);
  slot = host.Acquire(&victim);
  ASSERT_TRUE(slot.has_value());
  EXPECT_EQ(*slot, pinned);
  EXPECT_FALSE(victim.has_value());
}

TEST(HostTierTest, PublishingADuplicateHashFreesTheSlotAndKeepsTheFirstCopy) {
  HostTier host(3 * kBlockBytes, kBlockBytes);
  const int32_t first = Put(host, H(1), /*hits=*/4);
  const int32_t second = AcquireFree(host);
  ASSERT_EQ(host.num_used(), 2);
  host.Publish(second, H(1), 0, kAllLowerTiers, false);
  EXPECT_EQ(host.num_used(), 1);
  EXPECT_EQ(host.num_pinned(), 0);
  EXPECT_EQ(host.Find(H(1), false), first);

  // The freed slot is reusable without evicting anything, and the original keeps its hits.
  std::optional<HostVictim> victim;
  std::optional<int32_t> a = host.Acquire(&victim);
  std::optional<int32_t> b = host.Acquire(&victim);
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(victim.has_value());
  std::optional<int32_t> c = host.Acquire(&victim);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(*c, first);
  ASSERT_TRUE(victim.has_value());
  EXPECT_EQ(victim->hits, 4);
}

TEST(HostTierTest, RecordHitCountsHitsAndReportsFromDiskOnlyOnce) {
  HostTier host(2 * kBlockBytes, kBlockBytes);
  const int32_t disk = Put(host, H(1), /*hits=*/2, kAllLowerTiers, /*from_disk=*/true);
  const int32_t ram = Put(host, H(2), /*hits=*/0, kAllLowerTiers, /*from_disk=*/false);
  EXPECT_TRUE(host.RecordHit(disk));
  EXPECT_FALSE(host.RecordHit(disk));
  EXPECT_FALSE(host.RecordHit(disk));
  EXPECT_FALSE(host.RecordHit(ram));

  // H(1) is LRU (RecordHit does not touch the LRU order); its hits went 2 -> 5.
  std::optional<HostVictim> victim;
  ASSERT_TRUE(host.Acquire(&victim).has_value());
  ASSERT_TRUE(victim.has_value());
  EXPECT_EQ(victim->hash, H(1));
  EXPECT_EQ(victim->hits, 5);
  ASSERT_TRUE(host.Acquire(&victim).has_value());
  ASSERT_TRUE(victim.has_value());
  EXPECT_EQ(victim->hash, H(2));
  EXPECT_EQ(victim->hits, 1);
}

TEST(HostTierTest, ZeroCapacityHasNoSlots) {
  for (auto [capacity, block] : {std::pair<int64_t, size_t>{0, kBlockBytes},
                                 {kBlockBytes - 1, kBlockBytes},
                                 {1024, 0}}) {
    HostTier host(capacity, block);
    EXPECT_EQ(host.num_slots(), 0) << capacity << "/" << block;
    EXPECT_EQ(host.num_used(), 0);
    std::optional<HostVictim> victim;
    EXPECT_EQ(host.Acquire(&victim), std::nullopt);
    EXPECT_FALSE(victim.has_value());
    EXPECT_FALSE(host.Contains(H(1)));
    EXPECT_EQ(host.Find(H(1), true), std::nullopt);
  }
}

TEST(HostTierTest, CapacityRoundsDownToWholeSlots) {
  HostTier host(5 * kBlockBytes + kBlockBytes / 2, kBlockBytes);
  EXPECT_EQ(host.num_slots(), 5);
}

// The memory comes in fixed-size arenas from the allocator (the device's page-locked memory on
// CUDA), each allocated when one of its slots is first used; the last one only as large as its
// slots. Slots never overlap, and a failing allocator falls back to plain host memory.
TEST(HostTierTest, ArenasAreAllocatedOnFirstUseInFixedSizes) {
  constexpr size_t kBig = HostTier::kArenaBytes / 4;  // four slots per arena
  std::vector<size_t> sizes;
  HostTier host(10 * kBig, kBig, [&](size_t bytes) {
    sizes.push_back(bytes);
    return kernels::AllocateHostBuffer(bytes);
  });
  EXPECT_EQ(host.slots_per_arena(), 4);
  EXPECT_EQ(host.num_arenas_allocated(), 0);
  std::set<std::byte*> starts;
  for (int32_t s : {0, 9, 3, 8, 5}) {
    std::span<std::byte> d = host.data(s);
    ASSERT_EQ(d.size(), kBig);
    d[0] = static_cast<std::byte>(s);
    d[kBig - 1] = static_cast<std::byte>(s);
    starts.insert(d.data());
  }
  EXPECT_EQ(starts.size(), 5u);
  EXPECT_EQ(host.num_arenas_allocated(), 3);
  EXPECT_EQ(sizes, (std::vector<size_t>{4 * kBig, 2 * kBig, 4 * kBig}));
  for (int32_t s : {0, 9, 3, 8, 5}) {
    EXPECT_EQ(host.data(s)[0], static_cast<std::byte>(s));
    EXPECT_EQ(host.data(s)[kBig - 1], static_cast<std::byte>(s));
  }
  HostTier failing(2 * kBlockBytes, kBlockBytes, [](size_t) {
    return absl::StatusOr<std::unique_ptr<kernels::Buffer>>(
        absl::ResourceExhaustedError("no page-locked memory"));
  });
  std::span<std::byte> d = failing.data(1);
  ASSERT_EQ(d.size(), kBlockBytes);
  d[0] = std::byte{7};
  EXPECT_EQ(failing.data(1)[0], std::byte{7});
}

}  // namespace
}  // namespace strata::kvcache
