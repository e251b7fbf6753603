#include "kvcache/tiered_store.h"
#include "tests/kvcache/tier_test_util.h"

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
#include <vector>

#include "kvcache/disk_format.h"
#include "kvcache/fault_file_system.h"

namespace strata::kvcache {
namespace {


BlockHash H(uint64_t i) { return {i * 0x9E3779B97F4A7C15ull + 1, i}; }


int64_t ErrorCount(const TierStats& s, const std::string& key) {
  auto it = s.errors.find(key);
  return it == s.errors.end() ? 0 : it->second;
}

class TieredStoreTest : public ::testing::Test {
 protected:
  static constexpr int32_t kPages = 32;

  TierOptions WithDisk(int64_t host_blocks, int64_t disk_records, FileSystem* fs = nullptr) {
    return kvcache::WithDisk(dir_.path() + "/disk", host_blocks, disk_records, fs);
  }
  void Make(const TierOptions& o) {
    auto s = TieredStore::Create(Layout(), o, &dev_, [this] { wakes_.fetch_add(1); });
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  // Device pages of block `b`: {2b, 2b + 1}.
  static std::vector<int32_t> PagesOf(int32_t b) { return {2 * b, 2 * b + 1}; }
  // Fills device block `b` with tag `tag` and demotes it as H(tag).
  void DemoteTag(uint64_t tag, int32_t b, int32_t hits = 0, uint8_t lower = kAllLowerTiers) {
    FillBlock(dev_, PagesOf(b), tag);
    store_->Demote(H(tag), PagesOf(b), hits, lower);
  }
  bool WaitOnDisk(uint64_t tag) {
    const BlockHash h = H(tag);
    return WaitFor([&] { return store_->DiskRun(std::span(&h, 1)) == 1; });
  }
  int64_t HostRun(std::vector<BlockHash> hashes) { return store_->HostRun(hashes); }
  int64_t DiskRun(std::vector<BlockHash> hashes) { return store_->DiskRun(hashes); }
  bool PollUntilIdle() { return kvcache::PollUntilIdle(*store_); }

  TempDir dir_;
  PosixFileSystem posix_;
  FaultFileSystem fault_{&posix_};
  FakeDevice dev_{Layout(), kPages};
  std::atomic<int> wakes_{0};
  std::unique_ptr<TieredStore> store_;  // destroyed first
};

TEST_F(TieredStoreTest, DemoteThenLoadToDeviceIsByteExactIntoOtherPages) {
  Make(HostOnly(4));
  EXPECT_FALSE(store_->has_disk());
  EXPECT_EQ(store_->block_bytes(), static_cast<size_t>(kBlockBytes));
  DemoteTag(1, /*b=*/0);
  EXPECT_EQ(HostRun({H(1)}), 1);
  // Scribble over the source pages: the host copy must not alias them.
  dev_.Clear(0, 0xAA);
  dev_.Clear(1, 0xAA);
  bool from_disk = true;
  const std::vector<int32_t> dst = {9, 4};  // different pages, even out of order
  ASSERT_TRUE(store_->LoadToDevice(H(1), dst, &from_disk));
  EXPECT_FALSE(from_disk);
  EXPECT_TRUE(dev_.Holds(9, 1, 0));
  EXPECT_TRUE(dev_.Holds(4, 1, 1));
  // A second load is served again (the block stays cached in host RAM).
  ASSERT_TRUE(store_->LoadToDevice(H(1), PagesOf(7), &from_disk));
  EXPECT_TRUE(BlockHolds(dev_, PagesOf(7), 1));

  bool unused = false;
  EXPECT_FALSE(store_->LoadToDevice(H(2), PagesOf(8), &unused));

  const TierStats s = store_->stats();
  EXPECT_EQ(s.device_to_host_bytes, kBlockBytes);
  EXPECT_EQ(s.host_to_device_bytes, 2 * kBlockBytes);
  // The host tier's memory came from the PageIo (the device's page-locked memory on CUDA), in
  // one arena for these four small slots, allocated when the first block was demoted.
  EXPECT_EQ(dev_.host_bytes_allocated(), 4 * kBlockBytes);
  EXPECT_EQ(s.host_slots, 4);
  EXPECT_EQ(s.host_used, 1);
  EXPECT_EQ(s.disk_records, 0);
  EXPECT_TRUE(s.errors.empty());
}

TEST_F(TieredStoreTest, DemoteOfACachedBlockDoesNotCopyAgain) {
  Make(HostOnly(4));
  DemoteTag(1, 0);
  const int reads = dev_.reads();
  DemoteTag(1, 1);  // same hash, other pages (another copy of the same block)
  EXPECT_EQ(dev_.reads(), reads);
  EXPECT_EQ(store_->stats().device_to_host_bytes, kBlockBytes);
  EXPECT_EQ(store_->stats().host_used, 1);
}

TEST_F(TieredStoreTest, HostRunCountsOnlyLeadingCachedBlocks) {
  Make(HostOnly(4));
  DemoteTag(1, 0);
  DemoteTag(3, 1);
  EXPECT_EQ(HostRun({}), 0);
  EXPECT_EQ(HostRun({H(1), H(2), H(3)}), 1);
  EXPECT_EQ(HostRun({H(2), H(1)}), 0);
  EXPECT_EQ(HostRun({H(1), H(3)}), 2);
  EXPECT_EQ(HostRun({H(3), H(1), H(2)}), 2);
  EXPECT_EQ(DiskRun({H(1)}), 0);  // no disk tier
}

TEST_F(TieredStoreTest, HostLruEvictsTheLeastRecentlyUsedBlock) {
  Make(HostOnly(2));
  DemoteTag(1, 0);
  DemoteTag(2, 1);
  EXPECT_EQ(HostRun({H(1)}), 1);  // refreshes 1: 2 is the LRU block
  DemoteTag(3, 2);
  EXPECT_EQ(HostRun({H(1)}), 1);
  EXPECT_EQ(HostRun({H(2)}), 0);
  EXPECT_EQ(HostRun({H(3)}), 1);
  EXPECT_EQ(store_->stats().host_used, 2);
}

TEST_F(TieredStoreTest, HostEvictionReachesDiskOnlyWithEnoughHits) {
  Make(WithDisk(/*host_blocks=*/1, /*disk_records=*/8));
  ASSERT_TRUE(store_->has_disk());
  DemoteTag(1, 0, /*hits=*/1);  // below disk_min_hits (2)
  DemoteTag(2, 1, /*hits=*/2);  // evicts 1: not written to disk
  EXPECT_EQ(store_->stats().host_to_disk_bytes, 0);
  DemoteTag(3, 2, /*hits=*/0);  // evicts 2: written
  EXPECT_EQ(store_->stats().host_to_disk_bytes, kBlockBytes);
  ASSERT_TRUE(WaitOnDisk(2));
  EXPECT_EQ(DiskRun({H(1)}), 0);
  EXPECT_EQ(DiskRun({H(2), H(1)}), 1);
  EXPECT_EQ(HostRun({H(2)}), 0);
  EXPECT_EQ(HostRun({H(3)}), 1);
  const TierStats s = store_->stats();
  EXPECT_EQ(s.disk_records, 1);
  EXPECT_EQ(s.disk_capacity_records, 8);
  EXPECT_EQ(s.device_to_host_bytes, 3 * kBlockBytes);
  EXPECT_TRUE(s.errors.empty());
}

TEST_F(TieredStoreTest, HitsRecordedByLoadsCountTowardsTheDiskRule) {
  Make(WithDisk(1, 8));
  DemoteTag(1, 0, /*hits=*/0);
  bool from_disk = false;
  ASSERT_TRUE(store_->LoadToDevice(H(1), PagesOf(5), &from_disk));
  ASSERT_TRUE(store_->LoadToDevice(H(1), PagesOf(5), &from_disk));
  DemoteTag(2, 1);  // evicts 1, which now has 2 hits
  EXPECT_EQ(store_->stats().host_to_disk_bytes, kBlockBytes);
  EXPECT_TRUE(WaitOnDisk(1));
}

TEST_F(TieredStoreTest, DiskMinHitsZeroSendsEveryEvictionToDisk) {
  TierOptions o = WithDisk(1, 8);
  o.disk_min_hits = 0;
  Make(o);
  DemoteTag(1, 0);
  DemoteTag(2, 1);
  EXPECT_TRUE(WaitOnDisk(1));
}

TEST_F(TieredStoreTest, FetchBringsADiskBlockBackAndLoadReportsFromDiskOnce) {
  Make(WithDisk(1, 8));
  DemoteTag(1, 0, /*hits=*/5);
  DemoteTag(2, 1);  // pushes 1 to disk
  ASSERT_TRUE(WaitOnDisk(1));
  ASSERT_EQ(HostRun({H(1)}), 0);
  dev_.Clear(0);
  dev_.Clear(1);

  const std::vector<BlockHash> want = {H(1)};
  EXPECT_TRUE(store_->Fetch(want));
  EXPECT_TRUE(store_->Fetching(want));
  EXPECT_EQ(store_->fetches_in_flight(), 1);
  EXPECT_EQ(DiskRun({H(1)}), 1);  // on disk or fetching
  // A second Fetch of the same block starts nothing new.
  EXPECT_TRUE(store_->Fetch(want));
  EXPECT_EQ(store_->fetches_in_flight(), 1);

  ASSERT_TRUE(PollUntilIdle());
  EXPECT_GE(wakes_.load(), 1);
  EXPECT_FALSE(store_->Fetching(want));
  EXPECT_EQ(store_->stats().fetches_in_flight, 0);
  EXPECT_EQ(HostRun(want), 1);
  EXPECT_EQ(HostRun({H(2)}), 0);  // the single host slot went to the fetched block
  EXPECT_EQ(store_->stats().disk_to_host_bytes, kBlockBytes);

  bool from_disk = false;
  ASSERT_TRUE(store_->LoadToDevice(H(1), PagesOf(6), &from_disk));
  EXPECT_TRUE(from_disk);
  EXPECT_TRUE(BlockHolds(dev_, PagesOf(6), 1));
  ASSERT_TRUE(store_->LoadToDevice(H(1), PagesOf(7), &from_disk));
  EXPECT_FALSE(from_disk);
  EXPECT_TRUE(BlockHolds(dev_, PagesOf(7), 1));
  EXPECT_TRUE(store_->stats().errors.empty());
}

// TierStats documents host_hit_tokens ("prefix tokens loaded from host, including those from
// disk") and disk_hit_tokens as cumulative counters: each successful load of a block is
// block_size tokens.
TEST_F(TieredStoreTest, HitTokenCountersFollowLoads) {
  Make(WithDisk(1, 8));
  DemoteTag(1, 0, /*hits=*/5);
  DemoteTag(2, 1);  // pushes 1 to disk; 2 stays in host
  ASSERT_TRUE(WaitOnDisk(1));
  bool from_disk = false;
  ASSERT_TRUE(store_->LoadToDevice(H(2), PagesOf(5), &from_disk));
  EXPECT_EQ(store_->stats().host_hit_tokens, 4);
  EXPECT_EQ(store_->stats().disk_hit_tokens, 0);
  const std::vector<BlockHash> want = {H(1)};
  ASSERT_TRUE(store_->Fetch(want));
  ASSERT_TRUE(PollUntilIdle());
  ASSERT_TRUE(store_->LoadToDevice(H(1), PagesOf(6), &from_disk));
  ASSERT_TRUE(from_disk);
  EXPECT_EQ(store_->stats().host_hit_tokens, 8);
  EXPECT_EQ(store_->stats().disk_hit_tokens, 4);
}

TEST_F(TieredStoreTest, FetchOfABlockNotOnDiskStartsNothing) {
  Make(WithDisk(2, 8));
  DemoteTag(1, 0);
  const std::vector<BlockHash> want = {H(9)};
  EXPECT_FALSE(store_->Fetch(want));
  EXPECT_EQ(store_->fetches_in_flight(), 0);
  EXPECT_EQ(store_->stats().host_used, 1);
  EXPECT_FALSE(store_->Poll());
}

TEST_F(TieredStoreTest, FetchSkipsBlocksAlreadyInHost) {
  Make(WithDisk(2, 8));
  DemoteTag(1, 0);
  const std::vector<BlockHash> want = {H(1)};
  EXPECT_FALSE(store_->Fetch(want));
  EXPECT_EQ(store_->fetches_in_flight(), 0);
}

TEST_F(TieredStoreTest, SwapOutSwapInRoundTripIsByteExactAndHonoursSkip) {
  Make(HostOnly(4));
  // 3 blocks: layer 0 on pages 0..2, layer 1 on pages 3..5.
  const std::vector<std::vector<int32_t>> pages = {{0, 1, 2}, {3, 4, 5}};
  for (int32_t b = 0; b < 3; ++b) FillBlock(dev_, {pages[0][b], pages[1][b]}, 100 + b);
  ASSERT_TRUE(store_->SwapOut(7, pages));
  EXPECT_TRUE(store_->HasSwap(7));
  EXPECT_EQ(store_->stats().host_used, 3);
  EXPECT_EQ(store_->stats().swap_outs, 1);
  EXPECT_EQ(store_->stats().device_to_host_bytes, 3 * kBlockBytes);
  // Swapped blocks are not findable as cached blocks and are never evicted by demotions.
  for (int32_t p = 0; p < 6; ++p) dev_.Clear(p, 0xEE);
  DemoteTag(50, 10);
  DemoteTag(51, 11);  // evicts 50 (the only evictable one), not a swap slot
  EXPECT_EQ(store_->stats().host_used, 4);

  const std::vector<std::vector<int32_t>> back = {{20, 22, 24}, {21, 23, 25}};
  for (int32_t p = 20; p < 26; ++p) dev_.Clear(p, 0x5A);
  ASSERT_TRUE(store_->SwapIn(7, back, {false, true, false}));
  EXPECT_FALSE(store_->HasSwap(7));
  EXPECT_TRUE(BlockHolds(dev_, {20, 21}, 100));
  EXPECT_TRUE(dev_.IsFilledWith(22, 0x5A));  // skipped: not written
  EXPECT_TRUE(dev_.IsFilledWith(23, 0x5A));
  EXPECT_TRUE(BlockHolds(dev_, {24, 25}, 102));
  const TierStats s = store_->stats();
  EXPECT_EQ(s.swap_ins, 1);
  EXPECT_EQ(s.host_used, 1);  // only block 51 left
  EXPECT_EQ(s.device_to_host_bytes, 5 * kBlockBytes);
  EXPECT_EQ(s.host_to_device_bytes, 2 * kBlockBytes);
  EXPECT_TRUE(s.errors.empty());
}

TEST_F(TieredStoreTest, SwapOutFailsCleanlyWhenHostIsTooSmall) {
  Make(HostOnly(2));
  const std::vector<std::vector<int32_t>> pages = {{0, 1, 2}, {3, 4, 5}};
  EXPECT_FALSE(store_->SwapOut(7, pages));
  EXPECT_FALSE(store_->HasSwap(7));
  TierStats s = store_->stats();
  EXPECT_EQ(s.host_used, 0);
  EXPECT_EQ(s.swap_outs, 0);
  EXPECT_EQ(s.device_to_host_bytes, 0);
  // Nothing stayed pinned: two blocks fit now.
  const std::vector<std::vector<int32_t>> two = {{0, 1}, {3, 4}};
  EXPECT_TRUE(store_->SwapOut(8, two));
  EXPECT_EQ(store_->stats().host_used, 2);
  store_->DropSwap(8);
}

TEST_F(TieredStoreTest, SwapOutWithACopyErrorKeepsNothing) {
  Make(HostOnly(4));
  const std::vector<std::vector<int32_t>> pages = {{0, 1, 2}, {3, 4, 5}};
  dev_.FailNext();
  EXPECT_FALSE(store_->SwapOut(7, pages));
  EXPECT_FALSE(store_->HasSwap(7));
  EXPECT_EQ(store_->stats().host_used, 0);
  EXPECT_EQ(store_->stats().swap_outs, 0);
}

TEST_F(TieredStoreTest, SwapOutWithNoHostTierFails) {
  Make(HostOnly(0));
  const std::vector<std::vector<int32_t>> pages = {{0}, {3}};
  EXPECT_FALSE(store_->SwapOut(7, pages));
  EXPECT_FALSE(store_->HasSwap(7));
}

TEST_F(TieredStoreTest, DropSwapUnpinsTheSlots) {
  Make(HostOnly(2));
  const std::vector<std::vector<int32_t>> pages = {{0, 1}, {3, 4}};
  ASSERT_TRUE(store_->SwapOut(7, pages));
  EXPECT_EQ(store_->stats().host_used, 2);
  DemoteTag(1, 10);  // no room: every slot pinned
  EXPECT_EQ(HostRun({H(1)}), 0);
  store_->DropSwap(7);
  EXPECT_FALSE(store_->HasSwap(7));
  EXPECT_EQ(store_->stats().host_used, 0);
  store_->DropSwap(7);  // unknown id: no-op
  DemoteTag(1, 10);
  EXPECT_EQ(HostRun({H(1)}), 1);
}

TEST_F(TieredStoreTest, SwapSecondsGrowsWithBytes) {
  Make(HostOnly(1));
  EXPECT_EQ(store_->SwapSeconds(0), 0.0);
  EXPECT_GT(store_->SwapSeconds(1 << 20), 0.0);
  EXPECT_GT(store_->SwapSeconds(2 << 20), store_->SwapSeconds(1 << 20));
}

TEST_F(TieredStoreTest, LowerTiersWithoutHostKeepsTheBlockOutOfHostRam) {
  Make(WithDisk(4, 8));
  DemoteTag(1, 0, 0, /*lower=*/kTierDisk);
  EXPECT_EQ(HostRun({H(1)}), 0);
  EXPECT_EQ(store_->stats().host_used, 0);
  EXPECT_TRUE(WaitOnDisk(1));  // straight to disk
  EXPECT_EQ(store_->stats().host_to_disk_bytes, kBlockBytes);
  EXPECT_EQ(store_->stats().device_to_host_bytes, kBlockBytes);

  DemoteTag(2, 1, 0, /*lower=*/0);  // nowhere
  DemoteTag(3, 2, 0, /*lower=*/kTierHost);  // host only: never written to disk
  EXPECT_EQ(HostRun({H(2)}), 0);
  EXPECT_EQ(HostRun({H(3)}), 1);
  EXPECT_EQ(store_->stats().host_to_disk_bytes, kBlockBytes);
  EXPECT_EQ(store_->stats().device_to_host_bytes, 2 * kBlockBytes);
}

TEST_F(TieredStoreTest, HostOnlyBlockIsNotWrittenToDiskOnEviction) {
  Make(WithDisk(1, 8));
  DemoteTag(1, 0, /*hits=*/9, /*lower=*/kTierHost);
  DemoteTag(2, 1);  // evicts 1: its policy forbids the disk
  EXPECT_EQ(store_->stats().host_to_disk_bytes, 0);
  EXPECT_EQ(DiskRun({H(1)}), 0);
}

TEST_F(TieredStoreTest, HostOnlyStoreIgnoresDiskOnlyDemotes) {
  Make(HostOnly(4));
  DemoteTag(1, 0, 0, kTierDisk);
  EXPECT_EQ(HostRun({H(1)}), 0);
  EXPECT_EQ(store_->stats().device_to_host_bytes, 0);
  EXPECT_EQ(dev_.reads(), 0);
}

TEST_F(TieredStoreTest, StatsBytesFollowTheArithmetic) {
  Make(HostOnly(8));
  for (uint64_t t = 1; t <= 5; ++t) DemoteTag(t, static_cast<int32_t>(t));
  bool from_disk = false;
  for (uint64_t t = 1; t <= 3; ++t) {
    ASSERT_TRUE(store_->LoadToDevice(H(t), PagesOf(12), &from_disk));
  }
  const TierStats s = store_->stats();
  EXPECT_EQ(s.device_to_host_bytes, 5 * kBlockBytes);
  EXPECT_EQ(s.host_to_device_bytes, 3 * kBlockBytes);
  EXPECT_EQ(s.host_to_disk_bytes, 0);
  EXPECT_EQ(s.disk_to_host_bytes, 0);
  EXPECT_EQ(s.host_slots, 8);
  EXPECT_EQ(s.host_used, 5);
  EXPECT_EQ(dev_.reads(), 5 * 2);   // one ReadPage per layer
  EXPECT_EQ(dev_.writes(), 3 * 2);
}

TEST_F(TieredStoreTest, CopyErrorIsCountedAndIsAMiss) {
  Make(HostOnly(4));
  dev_.FailNext();
  DemoteTag(1, 0);
  EXPECT_EQ(HostRun({H(1)}), 0);
  TierStats s = store_->stats();
  EXPECT_EQ(ErrorCount(s, "host/io"), 1);
  EXPECT_EQ(s.host_used, 0);
  EXPECT_EQ(s.device_to_host_bytes, 0);

  DemoteTag(2, 1);
  ASSERT_EQ(HostRun({H(2)}), 1);
  dev_.FailNext();
  bool from_disk = false;
  EXPECT_FALSE(store_->LoadToDevice(H(2), PagesOf(5), &from_disk));
  s = store_->stats();
  EXPECT_EQ(ErrorCount(s, "host/io"), 2);
  EXPECT_EQ(s.host_to_device_bytes, 0);
  // The host copy itself is intact: the next load works.
  ASSERT_TRUE(store_->LoadToDevice(H(2), PagesOf(5), &from_disk));
  EXPECT_TRUE(BlockHolds(dev_, PagesOf(5), 2));
}

TEST_F(TieredStoreTest, SwapInCopyErrorFailsCountsAndFreesTheSlots) {
  Make(HostOnly(4));
  const std::vector<std::vector<int32_t>> pages = {{0, 1}, {2, 3}};
  ASSERT_TRUE(store_->SwapOut(7, pages));
  dev_.FailNext();
  EXPECT_FALSE(store_->SwapIn(7, pages, {false, false}));
  EXPECT_FALSE(store_->HasSwap(7));
  const TierStats s = store_->stats();
  EXPECT_EQ(s.host_used, 0);
  EXPECT_EQ(s.swap_ins, 0);
  EXPECT_EQ(ErrorCount(s, "host/io"), 1);
}

// Every device copy that fails is counted under "host/io" (DESIGN.md §5: an I/O error is a
// counted miss) — also on the paths that do not go through the host tier's slots.
TEST_F(TieredStoreTest, CopyErrorOnDiskOnlyDemoteIsCounted) {
  Make(WithDisk(4, 8));
  dev_.FailNext();
  DemoteTag(1, 0, 0, kTierDisk);
  EXPECT_EQ(store_->stats().device_to_host_bytes, 0);
  EXPECT_EQ(store_->stats().host_to_disk_bytes, 0);
  EXPECT_EQ(ErrorCount(store_->stats(), "host/io"), 1);
}

TEST_F(TieredStoreTest, CopyErrorOnSwapOutIsCounted) {
  Make(HostOnly(4));
  dev_.FailNext();
  EXPECT_FALSE(store_->SwapOut(7, {{0}, {1}}));
  EXPECT_EQ(store_->stats().host_used, 0);
  EXPECT_EQ(ErrorCount(store_->stats(), "host/io"), 1);
}

// host_to_device_bytes counts bytes copied: a failed SwapIn copy copied nothing.
TEST_F(TieredStoreTest, FailedSwapInCopyIsNotCountedAsBytesMoved) {
  Make(HostOnly(4));
  ASSERT_TRUE(store_->SwapOut(7, {{0}, {1}}));
  dev_.FailNext();
  EXPECT_FALSE(store_->SwapIn(7, {{0}, {1}}, {false}));
  EXPECT_EQ(store_->stats().host_to_device_bytes, 0);
}

TEST_F(TieredStoreTest, DiskReadErrorMakesTheFetchAMiss) {
  Make(WithDisk(1, 8, &fault_));
  DemoteTag(1, 0, /*hits=*/5);
  DemoteTag(2, 1);
  ASSERT_TRUE(WaitOnDisk(1));
  const int64_t used = store_->stats().host_used;

  fault_.FailReads(1);
  const std::vector<BlockHash> want = {H(1)};
  store_->Fetch(want);
  ASSERT_TRUE(PollUntilIdle());
  EXPECT_GE(wakes_.load(), 1);
  EXPECT_EQ(HostRun(want), 0);
  const TierStats s = store_->stats();
  EXPECT_EQ(s.host_used, used - 1) << "the fetch slot must be freed (the block it evicted is gone)";
  EXPECT_EQ(s.disk_to_host_bytes, 0);
  EXPECT_EQ(ErrorCount(s, "disk/io"), 1);
  EXPECT_EQ(fault_.counts().failed_reads, 1);
  EXPECT_EQ(DiskRun(want), 0);  // a bad record is dropped
  bool from_disk = false;
  EXPECT_FALSE(store_->LoadToDevice(H(1), PagesOf(5), &from_disk));
}

TEST_F(TieredStoreTest, DiskCorruptionMakesTheFetchAMiss) {
  Make(WithDisk(1, 8, &fault_));
  DemoteTag(1, 0, /*hits=*/5);
  DemoteTag(2, 1);
  ASSERT_TRUE(WaitOnDisk(1));

  // A byte inside the payload (after the 80-byte record header).
  fault_.CorruptReads(1, kRecordHeaderBytes + 100);
  const std::vector<BlockHash> want = {H(1)};
  store_->Fetch(want);
  ASSERT_TRUE(PollUntilIdle());
  EXPECT_EQ(HostRun(want), 0);
  const TierStats s = store_->stats();
  EXPECT_EQ(s.host_used, 0);
  EXPECT_EQ(s.disk_to_host_bytes, 0);
  EXPECT_EQ(ErrorCount(s, "disk/checksum"), 1);
  EXPECT_EQ(DiskErrors(s), 1);
  EXPECT_EQ(fault_.counts().corrupted_reads, 1);
}

TEST_F(TieredStoreTest, DiskHeaderCorruptionMakesTheFetchAMiss) {
  Make(WithDisk(1, 8, &fault_));
  DemoteTag(1, 0, /*hits=*/5);
  DemoteTag(2, 1);
  ASSERT_TRUE(WaitOnDisk(1));
  fault_.CorruptReads(1, 20);  // inside the record header
  const std::vector<BlockHash> want = {H(1)};
  store_->Fetch(want);
  ASSERT_TRUE(PollUntilIdle());
  EXPECT_EQ(HostRun(want), 0);
  EXPECT_EQ(store_->stats().host_used, 0);
  EXPECT_GE(DiskErrors(store_->stats()), 1);
}

TEST_F(TieredStoreTest, DestroyingTheStoreWithAFetchInFlightIsSafe) {
  Make(WithDisk(1, 8, &fault_));
  DemoteTag(1, 0, /*hits=*/5);
  DemoteTag(2, 1);
  ASSERT_TRUE(WaitOnDisk(1));
  const std::vector<BlockHash> want = {H(1)};
  EXPECT_TRUE(store_->Fetch(want));
  store_.reset();  // waits for the read; its callback writes into a live slot
  SUCCEED();
}

}  // namespace
}  // namespace strata::kvcache
