#include "kvcache/kv_cache_manager.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <numeric>
#include <vector>

#include "kvcache/disk_format.h"
#include "kvcache/fault_file_system.h"
#include "kvcache/tiered_store.h"
#include "tests/common/tokens.h"
#include "tests/kvcache/tier_test_util.h"

namespace strata::kvcache {
namespace {

BlockHash Seed() {
  PrefixSeed seed;
  seed.model_id = "tiers";
  seed.block_size = 4;
  return SeedHash(seed);
}

// The KV contents of block `b` of `tokens` depend only on its first token (tokens are distinct
// across the test's prompts) and the layer.
uint64_t Tag(const std::vector<int32_t>& tokens, int64_t b) {
  return static_cast<uint64_t>(tokens[b * 4]);
}
// Hashes of the full blocks of `tokens` (as the manager computes them).
std::vector<BlockHash> Hashes(const std::vector<int32_t>& tokens) {
  return HashFullBlocks(Seed(), tokens, 4);
}

// Prompts: A = 1..9 (2 full blocks + 1 token), C = 100..115 (4 full blocks: fills the pool),
// B = A's 8 prefix tokens + another last token.
const std::vector<int32_t> kA = Range(1, 9);
const std::vector<int32_t> kC = Range(100, 16);
const std::vector<int32_t> kB = Concat(Range(1, 8), {50});

class KvCacheTiersTest : public ::testing::Test {
 protected:
  static constexpr int32_t kPages = 8;  // 4 blocks of 2 layers

  void TearDown() override {
    if (kv_) {
      EXPECT_INVARIANTS(*kv_);
      EXPECT_EQ(kv_->pool().num_free(), kv_->pool().num_pages()) << "pages still referenced";
    }
  }

  TierOptions WithDisk(int64_t host_blocks, int64_t disk_records, FileSystem* fs = nullptr) {
    return kvcache::WithDisk(dir_.path() + "/disk", host_blocks, disk_records, fs);
  }
  void Make(const TierOptions& o, int32_t pages = kPages) {
    auto s = TieredStore::Create(Layout(), o, &dev_, [this] { wakes_.fetch_add(1); });
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
    kv_ = std::make_unique<KvCacheManager>(Layout(), pages, /*enable_prefix_caching=*/true);
    kv_->AttachTiers(store_.get());
    EXPECT_EQ(kv_->tiers(), store_.get());
  }

  // "Computes" blocks [first_block, num_blocks) of request `id`: writes their pattern.
  void Compute(RequestId id, const std::vector<int32_t>& tokens, int64_t first_block) {
    for (int64_t b = first_block; b < kv_->num_blocks(id); ++b) {
      for (int32_t l = 0; l < 2; ++l) dev_.Fill(kv_->pages(id, l)[b], Tag(tokens, b), l);
    }
  }
  // The whole prompt: attach, reserve, compute the missing blocks, commit.
  PrefixHit Prefill(RequestId id, const std::vector<int32_t>& tokens, const KvAccess& access = {}) {
    PrefixHit hit = kv_->Attach(id, Seed(), tokens, access);
    EXPECT_FALSE(hit.loading);
    EXPECT_INVARIANTS(*kv_);
    EXPECT_TRUE(kv_->Reserve(id, static_cast<int64_t>(tokens.size())));
    EXPECT_INVARIANTS(*kv_);
    Compute(id, tokens, hit.cached_tokens / 4);
    kv_->Commit(id, tokens, static_cast<int64_t>(tokens.size()));
    EXPECT_INVARIANTS(*kv_);
    return hit;
  }
  void Release(RequestId id) {
    kv_->Release(id);
    EXPECT_INVARIANTS(*kv_);
  }
  // Blocks [0, n) of `id` hold the KV of `tokens` in every layer.
  ::testing::AssertionResult HoldsKv(RequestId id, const std::vector<int32_t>& tokens, int64_t n) {
    if (kv_->num_blocks(id) < n) {
      return ::testing::AssertionFailure() << "request " << id << " has only "
                                           << kv_->num_blocks(id) << " blocks";
    }
    for (int64_t b = 0; b < n; ++b) {
      for (int32_t l = 0; l < 2; ++l) {
        ::testing::AssertionResult r = dev_.Holds(kv_->pages(id, l)[b], Tag(tokens, b), l);
        if (!r) return r << " (request " << id << ", block " << b << ")";
      }
    }
    return ::testing::AssertionSuccess();
  }
  std::vector<int32_t> PagesOf(RequestId id, int32_t layer) {
    std::span<const int32_t> p = kv_->pages(id, layer);
    return {p.begin(), p.end()};
  }
  int64_t HostRun(const std::vector<BlockHash>& hashes) { return store_->HostRun(hashes); }
  // A's blocks on disk only: prefilled under a disk-only policy, then pushed off the device by
  // C (they skip host RAM). True once their writes completed.
  bool PutAOnDiskOnly() {
    Prefill(1, kA, KvAccess{.lower_tiers = kTierDisk});
    Release(1);
    Prefill(2, kC);
    const bool on_disk = WaitOnDisk(Hashes(kA));
    Release(2);
    return on_disk;
  }
  bool WaitOnDisk(const std::vector<BlockHash>& hashes) {
    return WaitFor([&] { return store_->DiskRun(hashes) == static_cast<int64_t>(hashes.size()); });
  }
  bool PollUntilIdle() { return kvcache::PollUntilIdle(*store_); }

  TempDir dir_;
  PosixFileSystem posix_;
  FaultFileSystem fault_{&posix_};
  FakeDevice dev_{Layout(), 64};
  std::atomic<int> wakes_{0};
  std::unique_ptr<TieredStore> store_;
  std::unique_ptr<KvCacheManager> kv_;  // destroyed before the store it points to
};

TEST_F(KvCacheTiersTest, EvictedPrefixIsFoundInHostAndCopiedBackByteExact) {
  Make(HostOnly(8));
  EXPECT_EQ(Prefill(1, kA).cached_tokens, 0);
  EXPECT_TRUE(HoldsKv(1, kA, 3));
  EXPECT_EQ(store_->stats().device_to_host_bytes, 0);  // not write-through: nothing yet
  Release(1);
  EXPECT_EQ(HostRun(Hashes(kA)), 0);

  Prefill(2, kC);  // takes every page: A's cached blocks are evicted -> demoted to host
  EXPECT_EQ(kv_->pool().stats().evictions, 4);
  EXPECT_EQ(store_->stats().device_to_host_bytes, 2 * kBlockBytes);
  EXPECT_EQ(HostRun(Hashes(kA)), 2);
  Release(2);

  const PrefixHit hit = kv_->Attach(3, Seed(), kB, {});
  EXPECT_INVARIANTS(*kv_);
  EXPECT_FALSE(hit.loading);
  EXPECT_EQ(hit.cached_tokens, 8);
  EXPECT_EQ(hit.host_tokens, 8);
  EXPECT_EQ(hit.disk_tokens, 0);
  ASSERT_TRUE(kv_->Contains(3));
  ASSERT_EQ(kv_->num_blocks(3), 2);
  EXPECT_TRUE(HoldsKv(3, kA, 2));  // C had overwritten every page: these bytes came from host
  EXPECT_EQ(store_->stats().host_to_device_bytes, 2 * kBlockBytes);
  ASSERT_TRUE(kv_->Reserve(3, 9));
  Compute(3, kB, 2);
  kv_->Commit(3, kB, 9);
  EXPECT_INVARIANTS(*kv_);
  EXPECT_TRUE(HoldsKv(3, kB, 3));
  Release(3);

  // The loaded blocks were published again on the device: a device hit now, no copy.
  EXPECT_EQ(kv_->AttachCachedPrefix(4, Seed(), kA), 8);
  EXPECT_EQ(store_->stats().host_to_device_bytes, 2 * kBlockBytes);
  EXPECT_TRUE(HoldsKv(4, kA, 2));
  Release(4);
}

TEST_F(KvCacheTiersTest, WriteThroughPutsFullBlocksInHostAtCommit) {
  Make(HostOnly(8, /*write_through=*/true));
  EXPECT_TRUE(store_->write_through());
  Prefill(1, kA);
  EXPECT_EQ(HostRun(Hashes(kA)), 2);  // before any eviction
  EXPECT_EQ(store_->stats().device_to_host_bytes, 2 * kBlockBytes);
  Release(1);
  Prefill(2, kC);  // evicts A: already in host, not copied again
  EXPECT_EQ(store_->stats().device_to_host_bytes, (2 + 4) * kBlockBytes);
  Release(2);

  const PrefixHit hit = kv_->Attach(3, Seed(), kB, {});
  EXPECT_EQ(hit.host_tokens, 8);
  EXPECT_TRUE(HoldsKv(3, kA, 2));
  Release(3);
}

TEST_F(KvCacheTiersTest, PrefixCacheOffNeitherPublishesNorFinds) {
  Make(HostOnly(8, /*write_through=*/true));
  const KvAccess off{.prefix_cache = false};
  EXPECT_EQ(Prefill(1, kA, off).cached_tokens, 0);
  EXPECT_EQ(kv_->pool().num_cached(), 0);
  EXPECT_EQ(store_->stats().host_used, 0);
  EXPECT_EQ(store_->stats().device_to_host_bytes, 0);
  Release(1);

  Prefill(2, kA);  // publishes and writes through
  Release(2);
  Prefill(3, kC, off);  // evicts A from the device
  Release(3);
  ASSERT_EQ(HostRun(Hashes(kA)), 2);
  const int64_t h2d = store_->stats().host_to_device_bytes;
  const PrefixHit hit = kv_->Attach(4, Seed(), kB, off);
  EXPECT_EQ(hit.cached_tokens, 0);
  EXPECT_EQ(hit.host_tokens, 0);
  EXPECT_EQ(kv_->num_blocks(4), 0);
  EXPECT_EQ(store_->stats().host_to_device_bytes, h2d);
  Release(4);
}

TEST_F(KvCacheTiersTest, LowerTiersZeroKeepsBlocksOffTheHost) {
  Make(HostOnly(8));
  const KvAccess device_only{.lower_tiers = 0};
  Prefill(1, kA, device_only);
  Release(1);
  Prefill(2, kC, device_only);  // evicts A: not demoted
  EXPECT_EQ(kv_->pool().stats().evictions, 4);
  EXPECT_EQ(store_->stats().host_used, 0);
  EXPECT_EQ(store_->stats().device_to_host_bytes, 0);
  Release(2);
  EXPECT_EQ(kv_->Attach(3, Seed(), kB, {}).cached_tokens, 0);
  Release(3);
}

TEST_F(KvCacheTiersTest, LowerTiersZeroSkipsWriteThrough) {
  Make(HostOnly(8, /*write_through=*/true));
  Prefill(1, kA, KvAccess{.lower_tiers = 0});
  EXPECT_EQ(kv_->pool().num_cached(), 4);  // still a device prefix
  EXPECT_EQ(store_->stats().host_used, 0);
  Release(1);
}

TEST_F(KvCacheTiersTest, AccessWithoutHostDoesNotLookInHost) {
  Make(HostOnly(8, /*write_through=*/true));
  Prefill(1, kA);
  Release(1);
  Prefill(2, kC);
  Release(2);
  ASSERT_EQ(HostRun(Hashes(kA)), 2);
  const PrefixHit hit = kv_->Attach(3, Seed(), kB, KvAccess{.lower_tiers = 0});
  EXPECT_EQ(hit.cached_tokens, 0);
  EXPECT_EQ(hit.host_tokens, 0);
  Release(3);
}

TEST_F(KvCacheTiersTest, DiskOnlyPrefixLoadsAsynchronously) {
  Make(WithDisk(/*host_blocks=*/8, /*disk_records=*/16, &fault_));
  ASSERT_TRUE(store_->has_disk());
  Prefill(1, kA, KvAccess{.lower_tiers = kTierDisk});
  Release(1);
  Prefill(2, kC);  // evicts A: straight to disk (its policy excludes host RAM)
  ASSERT_TRUE(WaitOnDisk(Hashes(kA)));
  EXPECT_EQ(HostRun(Hashes(kA)), 0);
  Release(2);

  fault_.HoldReads(2);  // keep the reads in flight until we say so
  PrefixHit hit = kv_->Attach(3, Seed(), kB, {});
  EXPECT_TRUE(hit.loading);
  EXPECT_EQ(hit.cached_tokens, 0);
  EXPECT_FALSE(kv_->Contains(3));
  EXPECT_INVARIANTS(*kv_);
  EXPECT_EQ(store_->fetches_in_flight(), 2);
  EXPECT_FALSE(store_->Poll());
  // Still loading: a retry without fetching keeps waiting.
  hit = kv_->Attach(3, Seed(), kB, KvAccess{.may_fetch = false});
  EXPECT_TRUE(hit.loading);
  EXPECT_FALSE(kv_->Contains(3));

  fault_.ReleaseHeld();
  ASSERT_TRUE(PollUntilIdle());
  EXPECT_GE(wakes_.load(), 1);
  EXPECT_EQ(HostRun(Hashes(kA)), 2);
  EXPECT_EQ(store_->stats().disk_to_host_bytes, 2 * kBlockBytes);

  hit = kv_->Attach(3, Seed(), kB, KvAccess{.may_fetch = false});
  EXPECT_INVARIANTS(*kv_);
  EXPECT_FALSE(hit.loading);
  EXPECT_EQ(hit.cached_tokens, 8);
  EXPECT_EQ(hit.host_tokens, 8);
  EXPECT_EQ(hit.disk_tokens, 8);
  ASSERT_TRUE(kv_->Contains(3));
  EXPECT_TRUE(HoldsKv(3, kA, 2));
  ASSERT_TRUE(kv_->Reserve(3, 9));
  Compute(3, kB, 2);
  kv_->Commit(3, kB, 9);
  Release(3);
  EXPECT_TRUE(store_->stats().errors.empty());
}

TEST_F(KvCacheTiersTest, DiskOnlyPrefixWithoutFetchIsAMiss) {
  Make(WithDisk(8, 16));
  ASSERT_TRUE(PutAOnDiskOnly());
  const PrefixHit hit = kv_->Attach(3, Seed(), kB, KvAccess{.may_fetch = false});
  EXPECT_FALSE(hit.loading);
  EXPECT_EQ(hit.cached_tokens, 0);
  EXPECT_TRUE(kv_->Contains(3));
  EXPECT_EQ(store_->fetches_in_flight(), 0);
  Release(3);
}

// A round of disk reads starts only further into the prompt than the request's last round: the
// same disk part again (its blocks did not stay in host) is a miss, not another round.
TEST_F(KvCacheTiersTest, FetchRoundsOnlyMoveForward) {
  Make(WithDisk(8, 16));
  ASSERT_TRUE(PutAOnDiskOnly());
  PrefixHit hit = kv_->Attach(3, Seed(), kB, KvAccess{.fetched_from_block = 0});
  EXPECT_FALSE(hit.loading);
  EXPECT_EQ(hit.cached_tokens, 0);
  EXPECT_EQ(store_->fetches_in_flight(), 0);
  Release(3);
  hit = kv_->Attach(3, Seed(), kB, KvAccess{.fetched_from_block = -1});
  EXPECT_TRUE(hit.loading);
  EXPECT_EQ(hit.fetch_block, 0);
  EXPECT_FALSE(kv_->Contains(3));
  ASSERT_TRUE(PollUntilIdle());
}

TEST_F(KvCacheTiersTest, DiskFetchErrorEndsAsAMissNotWrongKv) {
  Make(WithDisk(8, 16, &fault_));
  ASSERT_TRUE(PutAOnDiskOnly());
  fault_.CorruptReads(FaultFileSystem::kAlways, kRecordHeaderBytes + 7);
  PrefixHit hit = kv_->Attach(3, Seed(), kB, {});
  ASSERT_TRUE(hit.loading);
  ASSERT_TRUE(PollUntilIdle());
  fault_.CorruptReads(0, 0);
  hit = kv_->Attach(3, Seed(), kB, KvAccess{.may_fetch = false});
  EXPECT_FALSE(hit.loading);
  EXPECT_EQ(hit.cached_tokens, 0);
  EXPECT_GE(DiskErrors(store_->stats()), 1);
  Release(3);
}

TEST_F(KvCacheTiersTest, SwapOutSwapInKeepsKvByteExactAfterEviction) {
  Make(HostOnly(8));
  Prefill(1, kA);
  EXPECT_EQ(kv_->SwapBytes(1), 3 * kBlockBytes);
  ASSERT_TRUE(kv_->SwapOut(1));
  EXPECT_INVARIANTS(*kv_);
  EXPECT_TRUE(kv_->IsSwapped(1));
  EXPECT_FALSE(kv_->Contains(1));
  EXPECT_EQ(kv_->pool().num_free(), kPages);
  EXPECT_EQ(store_->stats().swap_outs, 1);

  Prefill(2, kC);  // overwrites every page
  Release(2);
  const int64_t h2d = store_->stats().host_to_device_bytes;
  ASSERT_TRUE(kv_->SwapIn(1));
  EXPECT_INVARIANTS(*kv_);
  EXPECT_FALSE(kv_->IsSwapped(1));
  ASSERT_TRUE(kv_->Contains(1));
  EXPECT_EQ(kv_->num_blocks(1), 3);
  EXPECT_TRUE(HoldsKv(1, kA, 3));
  EXPECT_EQ(store_->stats().host_to_device_bytes - h2d, 3 * kBlockBytes);
  EXPECT_EQ(store_->stats().swap_ins, 1);

  // Its full blocks are findable on the device again.
  EXPECT_EQ(kv_->AttachCachedPrefix(3, Seed(), kB), 8);
  const std::vector<int32_t> own = PagesOf(1, 0);
  EXPECT_EQ(PagesOf(3, 0), std::vector<int32_t>(own.begin(), own.begin() + 2));
  Release(3);
  // The request goes on: decode one more token into its partial block.
  ASSERT_TRUE(kv_->Reserve(1, 10));
  kv_->Commit(1, Concat(kA, {10}), 10);
  EXPECT_INVARIANTS(*kv_);
  Release(1);
}

TEST_F(KvCacheTiersTest, SwapInSharesBlocksStillOnTheDevice) {
  Make(HostOnly(8));
  Prefill(1, kA);
  const std::vector<int32_t> other = Concat(Range(1, 8), {77});
  EXPECT_EQ(Prefill(2, other).cached_tokens, 8);  // shares A's two full blocks
  ASSERT_TRUE(kv_->SwapOut(1));
  EXPECT_INVARIANTS(*kv_);
  EXPECT_EQ(kv_->pool().num_free(), 2);  // only A's private partial block was freed
  const int64_t h2d = store_->stats().host_to_device_bytes;
  ASSERT_TRUE(kv_->SwapIn(1));
  EXPECT_INVARIANTS(*kv_);
  EXPECT_EQ(store_->stats().host_to_device_bytes - h2d, 1 * kBlockBytes);  // the partial block
  for (int32_t l = 0; l < 2; ++l) {
    EXPECT_EQ(PagesOf(1, l)[0], PagesOf(2, l)[0]);
    EXPECT_EQ(PagesOf(1, l)[1], PagesOf(2, l)[1]);
    EXPECT_NE(PagesOf(1, l)[2], PagesOf(2, l)[2]);
  }
  EXPECT_TRUE(HoldsKv(1, kA, 3));
  EXPECT_TRUE(HoldsKv(2, other, 3));
  Release(1);
  Release(2);
}

TEST_F(KvCacheTiersTest, SwapInFailsWithoutChangeWhenThePoolLacksPages) {
  Make(HostOnly(8));
  Prefill(1, kA);
  ASSERT_TRUE(kv_->SwapOut(1));
  Prefill(2, kC);  // holds every page
  ASSERT_EQ(kv_->pool().num_free(), 0);
  EXPECT_FALSE(kv_->SwapIn(1));
  EXPECT_INVARIANTS(*kv_);
  EXPECT_TRUE(kv_->IsSwapped(1));
  EXPECT_FALSE(kv_->Contains(1));
  EXPECT_EQ(kv_->pool().num_free(), 0);
  EXPECT_EQ(store_->stats().swap_ins, 0);
  EXPECT_TRUE(HoldsKv(2, kC, 4));  // untouched
  Release(2);
  ASSERT_TRUE(kv_->SwapIn(1));
  EXPECT_TRUE(HoldsKv(1, kA, 3));
  Release(1);
}

TEST_F(KvCacheTiersTest, SwapOutFailsWithoutChangeWhenHostIsTooSmall) {
  Make(HostOnly(2));
  Prefill(1, kA);  // 3 blocks
  const std::vector<int32_t> before = PagesOf(1, 0);
  EXPECT_FALSE(kv_->SwapOut(1));
  EXPECT_INVARIANTS(*kv_);
  EXPECT_TRUE(kv_->Contains(1));
  EXPECT_FALSE(kv_->IsSwapped(1));
  EXPECT_EQ(PagesOf(1, 0), before);
  EXPECT_TRUE(HoldsKv(1, kA, 3));
  EXPECT_EQ(store_->stats().host_used, 0);
  Release(1);
}

TEST_F(KvCacheTiersTest, SwapOutWithoutTiersFails) {
  kv_ = std::make_unique<KvCacheManager>(Layout(), kPages, true);
  EXPECT_EQ(kv_->tiers(), nullptr);
  kv_->AttachCachedPrefix(1, Seed(), kA);
  ASSERT_TRUE(kv_->Reserve(1, 9));
  EXPECT_FALSE(kv_->SwapOut(1));
  EXPECT_TRUE(kv_->Contains(1));
  Release(1);
}

TEST_F(KvCacheTiersTest, DropSwappedFreesTheHostCopy) {
  Make(HostOnly(8));
  Prefill(1, kA);
  ASSERT_TRUE(kv_->SwapOut(1));
  EXPECT_EQ(store_->stats().host_used, 3);
  kv_->DropSwapped(1);
  EXPECT_FALSE(kv_->IsSwapped(1));
  EXPECT_FALSE(kv_->Contains(1));
  EXPECT_EQ(store_->stats().host_used, 0);
  EXPECT_FALSE(store_->HasSwap(1));
  kv_->DropSwapped(1);  // no-op
  EXPECT_INVARIANTS(*kv_);
}

TEST_F(KvCacheTiersTest, HostLoadCopyErrorEndsThePrefixCleanly) {
  Make(HostOnly(8));
  Prefill(1, kA);
  Release(1);
  Prefill(2, kC);
  Release(2);
  ASSERT_EQ(HostRun(Hashes(kA)), 2);
  dev_.FailNextWrite();  // the first host -> device copy fails
  PrefixHit hit = kv_->Attach(3, Seed(), kB, {});
  EXPECT_INVARIANTS(*kv_);
  EXPECT_FALSE(hit.loading);
  EXPECT_EQ(hit.cached_tokens, 0);
  EXPECT_EQ(hit.host_tokens, 0);
  EXPECT_TRUE(kv_->Contains(3));
  EXPECT_EQ(kv_->num_blocks(3), 0);
  EXPECT_EQ(store_->stats().errors.at("host/io"), 1);
  Release(3);
  // The host copy is intact: the next request gets it.
  hit = kv_->Attach(4, Seed(), kB, {});
  EXPECT_EQ(hit.host_tokens, 8);
  EXPECT_TRUE(HoldsKv(4, kA, 2));
  Release(4);
}

TEST_F(KvCacheTiersTest, SwapInCopyErrorDropsTheRequest) {
  Make(HostOnly(8));
  Prefill(1, kA);
  ASSERT_TRUE(kv_->SwapOut(1));
  Prefill(2, kC);
  Release(2);
  dev_.FailNextWrite();
  EXPECT_FALSE(kv_->SwapIn(1));
  EXPECT_INVARIANTS(*kv_);
  EXPECT_FALSE(kv_->IsSwapped(1));
  EXPECT_FALSE(kv_->Contains(1));
  EXPECT_FALSE(store_->HasSwap(1));
  EXPECT_EQ(kv_->pool().num_free(), kPages);
}

TEST_F(KvCacheTiersTest, DetachingTiersStopsDemotion) {
  Make(HostOnly(8));
  kv_->AttachTiers(nullptr);
  Prefill(1, kA);
  Release(1);
  Prefill(2, kC);
  Release(2);
  EXPECT_EQ(store_->stats().host_used, 0);
}

// A host-cached prefix must survive the demotions that its own load triggers: loading it needs
// device pages, whose eviction demotes other blocks into the (full) host tier, whose LRU victim
// must not be the very block being loaded.
TEST_F(KvCacheTiersTest, HostPrefixSurvivesDemotionsCausedByItsOwnLoad) {
  Make(HostOnly(2));
  Prefill(1, kA);
  Release(1);
  Prefill(2, kC);  // A's 2 blocks -> host (now full)
  ASSERT_EQ(HostRun(Hashes(kA)), 2);
  Release(2);  // C's 4 blocks stay cached on the device
  const PrefixHit hit = kv_->Attach(3, Seed(), kB, {});
  EXPECT_EQ(hit.host_tokens, 8) << "the host had both blocks of the prefix";
  EXPECT_TRUE(HoldsKv(3, kA, hit.cached_tokens / 4));
  Release(3);
}

}  // namespace
}  // namespace strata::kvcache
