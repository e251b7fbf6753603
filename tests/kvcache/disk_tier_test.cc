#include "kvcache/disk_tier.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kvcache/disk_format.h"
#include "kvcache/fault_file_system.h"
#include "tests/common/temp_dir.h"

namespace strata::kvcache {
namespace {

// 5000 payload bytes + the 80-byte header -> 8 KiB slots.
constexpr size_t kPayloadBytes = 5000;
constexpr int64_t kSlotBytes = 8192;

BlockHash Key(uint64_t i) { return {i * 0x9E3779B97F4A7C15ull + 1, i}; }

std::vector<std::byte> Payload(uint64_t i) {
  std::vector<std::byte> p(kPayloadBytes);
  for (size_t j = 0; j < p.size(); ++j) p[j] = std::byte(uint8_t(i * 131 + j * 7 + (j >> 8)));
  return p;
}

// `num_slots` slots in segments of `slots_per_segment` (the capacity holds exactly that).
DiskTierOptions Options(const std::string& dir, int64_t num_slots, int64_t slots_per_segment) {
  DiskTierOptions o;
  o.dir = dir;
  o.record_payload_bytes = kPayloadBytes;
  o.segment_bytes = kSegmentHeaderBytes + slots_per_segment * kSlotBytes;
  const int64_t full = num_slots / slots_per_segment;
  const int64_t rest = num_slots % slots_per_segment;
  o.capacity_bytes = full * o.segment_bytes + (rest ? kSegmentHeaderBytes + rest * kSlotBytes : 0);
  o.namespace_hash = {0xAAAA, 0x5555};
  o.namespace_text = "model=test weights=0xAAAA codec=fp16 layout=1";
  o.layers = 2;
  return o;
}

std::unique_ptr<DiskTier> MustOpen(FileSystem* fs, DiskTierOptions o) {
  auto tier = DiskTier::Open(fs, std::move(o));
  CHECK_OK(tier.status());
  return std::move(*tier);
}

// Writes and waits; the status of the write, or nullopt when nothing was queued.
std::optional<absl::Status> WriteSync(DiskTier& tier, uint64_t i) {
  std::promise<absl::Status> done;
  std::vector<std::byte> payload = Payload(i);
  if (!tier.Write(Key(i), payload, [&done](absl::Status s) { done.set_value(s); })) {
    return std::nullopt;
  }
  return done.get_future().get();
}

struct ReadResult {
  absl::Status status;
  std::vector<std::byte> payload;
};

// Starts a read; the future is ready when its callback ran. nullopt when nothing was queued.
std::optional<std::future<ReadResult>> StartRead(DiskTier& tier, uint64_t i) {
  auto promise = std::make_shared<std::promise<ReadResult>>();
  std::future<ReadResult> future = promise->get_future();
  bool queued = tier.Read(Key(i), [promise](absl::Status s, std::span<const std::byte> p) {
    promise->set_value({s, {p.begin(), p.end()}});
  });
  if (!queued) return std::nullopt;
  return future;
}

std::optional<ReadResult> ReadSync(DiskTier& tier, uint64_t i) {
  auto future = StartRead(tier, i);
  if (!future.has_value()) return std::nullopt;
  return future->get();
}

// The read succeeded with exactly the bytes written for `i`.
void ExpectRecord(DiskTier& tier, uint64_t i) {
  std::optional<ReadResult> r = ReadSync(tier, i);
  ASSERT_TRUE(r.has_value()) << "record " << i << " not present";
  ASSERT_TRUE(r->status.ok()) << r->status;
  EXPECT_EQ(r->payload, Payload(i)) << "record " << i;
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

class DiskTierTest : public ::testing::Test {
 protected:
  TempDir dir_;
  PosixFileSystem fs_;
  FaultFileSystem fault_{&fs_};
};

class DiskTierIoPathTest : public ::testing::TestWithParam<bool> {
 protected:
  TempDir dir_;
  PosixFileSystem fs_{PosixFileSystemOptions{.queue_depth = 8, .force_thread_pool = GetParam()}};
};

TEST_P(DiskTierIoPathTest, WriteThenReadBackByteExact) {
  auto tier = MustOpen(&fs_, Options(dir_.path(), 4, 2));
  EXPECT_EQ(tier->capacity_records(), 4);
  for (uint64_t i = 0; i < 3; ++i) EXPECT_EQ(WriteSync(*tier, i), absl::OkStatus());
  for (uint64_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(tier->Contains(Key(i)));
    ExpectRecord(*tier, i);
  }
  EXPECT_FALSE(tier->Contains(Key(7)));
  EXPECT_FALSE(StartRead(*tier, 7).has_value());
  EXPECT_FALSE(WriteSync(*tier, 1).has_value()) << "already present";
  EXPECT_FALSE(tier->Write(Key(9), std::vector<std::byte>(10))) << "wrong payload size";
  DiskTierStats s = tier->stats();
  EXPECT_EQ(s.records_written, 3);
  EXPECT_EQ(s.bytes_written, 3 * int64_t{kPayloadBytes});
  EXPECT_EQ(s.records_read, 3);
  EXPECT_EQ(s.bytes_read, 3 * int64_t{kPayloadBytes});
  EXPECT_EQ(s.records, 3);
  EXPECT_EQ(s.capacity_records, 4);
  EXPECT_DOUBLE_EQ(tier->usage_ratio(), 0.75);
  EXPECT_EQ(s.errors, (std::array<int64_t, kNumDiskErrorKinds>{}));
}

// Two threads hammer one tier (more keys than slots, so writes evict under the readers): every
// read that succeeds returns exactly the bytes of its key. Run under ASan (STRATA_SANITIZE).
TEST_P(DiskTierIoPathTest, ConcurrentWritesAndReadsNeverReturnWrongBytes) {
  auto tier = MustOpen(&fs_, Options(dir_.path(), 16, 4));
  constexpr uint64_t kKeys = 64;
  std::atomic<int64_t> good_reads{0};
  std::atomic<int64_t> bad_reads{0};
  std::thread writer([&] {
    for (int round = 0; round < 3; ++round) {
      for (uint64_t i = 0; i < kKeys; ++i) tier->Write(Key(i), Payload(i));
    }
  });
  std::thread reader([&] {
    std::mt19937 rng(7);
    for (int n = 0; n < 2000; ++n) {
      const uint64_t i = rng() % kKeys;
      tier->Read(Key(i), [&, i](absl::Status s, std::span<const std::byte> p) {
        if (!s.ok()) return;
        const std::vector<std::byte> want = Payload(i);
        (std::equal(p.begin(), p.end(), want.begin(), want.end()) ? good_reads : bad_reads)++;
      });
    }
  });
  writer.join();
  reader.join();
  tier->Drain();
  EXPECT_EQ(bad_reads.load(), 0);
  DiskTierStats s = tier->stats();
  EXPECT_EQ(s.records_read, good_reads.load());
  EXPECT_EQ(s.records, 16);
  EXPECT_EQ(s.errors, (std::array<int64_t, kNumDiskErrorKinds>{}));
}

INSTANTIATE_TEST_SUITE_P(IoPaths, DiskTierIoPathTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "ThreadPool" : "IoUring"; });

TEST_F(DiskTierTest, RecordIsInvisibleUntilItsWriteCompletes) {
  auto tier = MustOpen(&fault_, Options(dir_.path(), 4, 4));
  fault_.HoldWrites(1);
  std::promise<absl::Status> done;
  ASSERT_TRUE(tier->Write(Key(1), Payload(1), [&done](absl::Status s) { done.set_value(s); }));
  while (fault_.counts().held_writes == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_FALSE(tier->Contains(Key(1)));
  EXPECT_FALSE(StartRead(*tier, 1).has_value());
  EXPECT_FALSE(tier->Write(Key(1), Payload(1))) << "already in flight";
  fault_.ReleaseHeld();
  EXPECT_TRUE(done.get_future().get().ok());
  EXPECT_TRUE(tier->Contains(Key(1)));
  ExpectRecord(*tier, 1);
}

// Sequence order differs from slot order here (D reuses A's slot 0), so the LRU after reopen
// must come from the sequence numbers: B is the oldest, not D.
TEST_F(DiskTierTest, ReopenFindsEveryRecordAndKeepsLruOrder) {
  const DiskTierOptions o = Options(dir_.path(), 3, 2);
  {
    auto tier = MustOpen(&fs_, o);
    for (uint64_t i : {0, 1, 2, 3}) ASSERT_EQ(WriteSync(*tier, i), absl::OkStatus());
    EXPECT_FALSE(tier->Contains(Key(0))) << "evicted by 3";
  }
  auto tier = MustOpen(&fs_, o);
  EXPECT_EQ(tier->stats().records, 3);
  for (uint64_t i : {1, 2, 3}) EXPECT_TRUE(tier->Contains(Key(i)));
  ASSERT_EQ(WriteSync(*tier, 4), absl::OkStatus());
  EXPECT_FALSE(tier->Contains(Key(1)));
  for (uint64_t i : {2, 3, 4}) ExpectRecord(*tier, i);
}

TEST_F(DiskTierTest, PersistFalseStartsEmpty) {
  DiskTierOptions o = Options(dir_.path(), 4, 2);
  {
    auto tier = MustOpen(&fs_, o);
    ASSERT_EQ(WriteSync(*tier, 1), absl::OkStatus());
  }
  o.persist = false;
  auto tier = MustOpen(&fs_, o);
  EXPECT_FALSE(tier->Contains(Key(1)));
  EXPECT_EQ(tier->stats().records, 0);
  EXPECT_EQ(tier->capacity_records(), 4);
  {
    auto again = std::move(tier);  // close before reopening with persist
  }
  o.persist = true;
  EXPECT_FALSE(MustOpen(&fs_, o)->Contains(Key(1))) << "the old segment was deleted";
}

TEST_F(DiskTierTest, LruEvictsTheOldestAndKeepsAReReadOne) {
  auto tier = MustOpen(&fs_, Options(dir_.path(), 3, 4));
  for (uint64_t i : {0, 1, 2}) ASSERT_EQ(WriteSync(*tier, i), absl::OkStatus());
  ExpectRecord(*tier, 0);  // 0 becomes the most recently used
  ASSERT_EQ(WriteSync(*tier, 3), absl::OkStatus());
  EXPECT_FALSE(tier->Contains(Key(1)));
  for (uint64_t i : {0, 2, 3}) EXPECT_TRUE(tier->Contains(Key(i)));
  ASSERT_EQ(WriteSync(*tier, 4), absl::OkStatus());
  EXPECT_FALSE(tier->Contains(Key(2)));
  for (uint64_t i : {0, 3, 4}) ExpectRecord(*tier, i);
}

// A slot with a read in flight is never evicted, even when it is the least recently used.
TEST_F(DiskTierTest, ReadInFlightPinsItsSlot) {
  auto tier = MustOpen(&fault_, Options(dir_.path(), 3, 4));
  for (uint64_t i : {0, 1, 2}) ASSERT_EQ(WriteSync(*tier, i), absl::OkStatus());
  fault_.HoldReads(1);
  std::optional<std::future<ReadResult>> pinned = StartRead(*tier, 0);
  ASSERT_TRUE(pinned.has_value());
  ExpectRecord(*tier, 1);
  ExpectRecord(*tier, 2);  // LRU now 2, 1, 0: the oldest (0) is pinned
  ASSERT_EQ(WriteSync(*tier, 3), absl::OkStatus());
  EXPECT_TRUE(tier->Contains(Key(0)));
  EXPECT_FALSE(tier->Contains(Key(1)));
  ASSERT_EQ(WriteSync(*tier, 4), absl::OkStatus());  // evicts 2; 0 still pinned
  EXPECT_FALSE(tier->Contains(Key(2)));
  fault_.ReleaseHeld();
  ReadResult r = pinned->get();
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.payload, Payload(0));
}

TEST_F(DiskTierTest, WriteRefusedWhenEverySlotIsPinned) {
  auto tier = MustOpen(&fault_, Options(dir_.path(), 1, 1));
  ASSERT_EQ(WriteSync(*tier, 0), absl::OkStatus());
  fault_.HoldReads(1);
  auto pinned = StartRead(*tier, 0);
  ASSERT_TRUE(pinned.has_value());
  EXPECT_FALSE(WriteSync(*tier, 1).has_value());
  fault_.ReleaseHeld();
  EXPECT_TRUE(pinned->get().status.ok());
  EXPECT_EQ(WriteSync(*tier, 1), absl::OkStatus());
}

TEST_F(DiskTierTest, IoErrorOnReadIsACountedMiss) {
  auto tier = MustOpen(&fault_, Options(dir_.path(), 4, 4));
  for (uint64_t i : {0, 1}) ASSERT_EQ(WriteSync(*tier, i), absl::OkStatus());
  fault_.FailReads(1);
  std::optional<ReadResult> r = ReadSync(*tier, 0);
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->status.ok());
  EXPECT_TRUE(r->payload.empty());
  EXPECT_EQ(tier->stats().error_count(DiskErrorKind::kIo), 1);
  EXPECT_FALSE(tier->Contains(Key(0))) << "dropped from the index";
  ExpectRecord(*tier, 1);
  EXPECT_EQ(WriteSync(*tier, 0), absl::OkStatus()) << "can be written again";
}

TEST_F(DiskTierTest, ShortReadIsACountedMiss) {
  auto tier = MustOpen(&fault_, Options(dir_.path(), 4, 4));
  ASSERT_EQ(WriteSync(*tier, 0), absl::OkStatus());
  fault_.ShortReads(1, 4096);
  std::optional<ReadResult> r = ReadSync(*tier, 0);
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->status.ok());
  EXPECT_EQ(tier->stats().error_count(DiskErrorKind::kShortRead), 1);
  EXPECT_FALSE(tier->Contains(Key(0)));
}

TEST_F(DiskTierTest, CorruptedReadDataIsACountedMiss) {
  auto tier = MustOpen(&fault_, Options(dir_.path(), 4, 4));
  ASSERT_EQ(WriteSync(*tier, 0), absl::OkStatus());
  fault_.CorruptReads(1, kRecordHeaderBytes + 1234);
  std::optional<ReadResult> r = ReadSync(*tier, 0);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(absl::IsDataLoss(r->status)) << r->status;
  EXPECT_EQ(tier->stats().error_count(DiskErrorKind::kChecksum), 1);
}

// A byte flipped in the real segment file between runs: the header still indexes the record,
// the payload checksum catches it on read.
TEST_F(DiskTierTest, FlippedByteOnDiskIsAChecksumMiss) {
  const DiskTierOptions o = Options(dir_.path(), 4, 4);
  {
    auto tier = MustOpen(&fs_, o);
    for (uint64_t i : {0, 1}) ASSERT_EQ(WriteSync(*tier, i), absl::OkStatus());
  }
  const std::string path = dir_.path() + "/seg-000000.kv";
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    const int64_t offset = kSegmentHeaderBytes + 0 * kSlotBytes + kRecordHeaderBytes + 100;
    f.seekg(offset);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x01);
    f.seekp(offset);
    f.write(&c, 1);
  }
  auto tier = MustOpen(&fs_, o);
  EXPECT_TRUE(tier->Contains(Key(0)));
  std::optional<ReadResult> r = ReadSync(*tier, 0);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(absl::IsDataLoss(r->status)) << r->status;
  EXPECT_EQ(tier->stats().error_count(DiskErrorKind::kChecksum), 1);
  EXPECT_FALSE(tier->Contains(Key(0)));
  ExpectRecord(*tier, 1);
}

TEST_F(DiskTierTest, DiskFullStopsWritesButReadsGoOn) {
  auto tier = MustOpen(&fault_, Options(dir_.path(), 4, 4));
  ASSERT_EQ(WriteSync(*tier, 0), absl::OkStatus());
  fault_.FailWrites(1, ENOSPC);
  std::optional<absl::Status> failed = WriteSync(*tier, 1);
  ASSERT_TRUE(failed.has_value());
  EXPECT_TRUE(absl::IsResourceExhausted(*failed)) << *failed;
  EXPECT_EQ(tier->stats().error_count(DiskErrorKind::kFull), 1);
  EXPECT_FALSE(tier->writes_enabled());
  EXPECT_FALSE(tier->Contains(Key(1)));
  EXPECT_FALSE(WriteSync(*tier, 2).has_value()) << "writes are refused once the disk is full";
  ExpectRecord(*tier, 0);
}

TEST_F(DiskTierTest, NoSpaceForAnySegmentRefusesWrites) {
  fault_.FailPreallocate(FaultFileSystem::kAlways);
  auto tier = MustOpen(&fault_, Options(dir_.path(), 4, 2));
  EXPECT_EQ(tier->capacity_records(), 0);
  EXPECT_EQ(tier->stats().error_count(DiskErrorKind::kFull), 1);
  EXPECT_FALSE(tier->writes_enabled());
  EXPECT_FALSE(WriteSync(*tier, 0).has_value());
  EXPECT_TRUE(std::filesystem::is_empty(dir_.path())) << "no half-made segment left";
}

// Growing the capacity on a full disk keeps the segments that exist and their records.
TEST_F(DiskTierTest, PreallocationFailureKeepsWhatExists) {
  {
    auto tier = MustOpen(&fault_, Options(dir_.path(), 2, 2));
    ASSERT_EQ(WriteSync(*tier, 0), absl::OkStatus());
  }
  fault_.FailPreallocate(FaultFileSystem::kAlways);
  auto tier = MustOpen(&fault_, Options(dir_.path(), 6, 2));
  EXPECT_EQ(tier->capacity_records(), 2);
  EXPECT_EQ(tier->stats().error_count(DiskErrorKind::kFull), 1);
  ExpectRecord(*tier, 0);
  EXPECT_EQ(WriteSync(*tier, 1), absl::OkStatus());
}

TEST_F(DiskTierTest, DeletedSegmentLosesOnlyItsRecords) {
  const DiskTierOptions o = Options(dir_.path(), 4, 2);
  {
    auto tier = MustOpen(&fs_, o);
    for (uint64_t i : {0, 1, 2, 3}) ASSERT_EQ(WriteSync(*tier, i), absl::OkStatus());
  }
  // Slots are handed out lowest first: 0 and 1 live in segment 0, 2 and 3 in segment 1.
  std::filesystem::remove(dir_.path() + "/seg-000001.kv");
  auto tier = MustOpen(&fs_, o);
  EXPECT_EQ(tier->capacity_records(), 4) << "the missing segment is recreated";
  EXPECT_FALSE(tier->Contains(Key(2)));
  EXPECT_FALSE(tier->Contains(Key(3)));
  for (uint64_t i : {0, 1}) ExpectRecord(*tier, i);
  EXPECT_TRUE(std::filesystem::exists(dir_.path() + "/seg-000001.kv"));
}

TEST_F(DiskTierTest, TruncatedSegmentIsRecreated) {
  const DiskTierOptions o = Options(dir_.path(), 2, 2);
  {
    auto tier = MustOpen(&fs_, o);
    ASSERT_EQ(WriteSync(*tier, 0), absl::OkStatus());
  }
  std::filesystem::resize_file(dir_.path() + "/seg-000000.kv", 100);
  auto tier = MustOpen(&fs_, o);
  EXPECT_EQ(tier->capacity_records(), 2);
  EXPECT_FALSE(tier->Contains(Key(0)));
  EXPECT_EQ(WriteSync(*tier, 1), absl::OkStatus());
  ExpectRecord(*tier, 1);
}

TEST_F(DiskTierTest, ForeignNamespaceSegmentIsNeverServedNorOverwritten) {
  DiskTierOptions mine = Options(dir_.path(), 2, 2);
  DiskTierOptions theirs = mine;
  theirs.namespace_hash = {0xBBBB, 0x1};
  theirs.namespace_text = "model=other";
  {
    auto tier = MustOpen(&fs_, theirs);
    ASSERT_EQ(WriteSync(*tier, 0), absl::OkStatus());
  }
  const std::string foreign_path = dir_.path() + "/seg-000000.kv";
  const std::string before = ReadWholeFile(foreign_path);
  {
    auto tier = MustOpen(&fs_, mine);
    EXPECT_EQ(tier->stats().error_count(DiskErrorKind::kForeign), 1);
    EXPECT_FALSE(tier->Contains(Key(0)));
    EXPECT_FALSE(StartRead(*tier, 0).has_value());
    EXPECT_EQ(tier->capacity_records(), 2) << "ours goes to the next free segment number";
    for (uint64_t i : {0, 1}) ASSERT_EQ(WriteSync(*tier, i), absl::OkStatus());
    ExpectRecord(*tier, 0);  // our own record 0, not theirs
    ASSERT_EQ(WriteSync(*tier, 2), absl::OkStatus());  // evicts within our segment only
  }
  EXPECT_EQ(ReadWholeFile(foreign_path), before);
  EXPECT_TRUE(std::filesystem::exists(dir_.path() + "/seg-000001.kv"));
  auto tier = MustOpen(&fs_, theirs);
  EXPECT_EQ(tier->stats().error_count(DiskErrorKind::kForeign), 1);
  ExpectRecord(*tier, 0);
}

TEST_F(DiskTierTest, OtherRecordSizeIsForeignToo) {
  DiskTierOptions o = Options(dir_.path(), 2, 2);
  { MustOpen(&fs_, o); }
  o.record_payload_bytes = 20000;
  auto tier = MustOpen(&fs_, o);
  EXPECT_EQ(tier->stats().error_count(DiskErrorKind::kForeign), 1);
}

TEST(DiskTierOptions, ValidateRejectsBadValues) {
  DiskTierOptions o = Options("/tmp/x", 2, 2);
  EXPECT_TRUE(o.Validate().ok());
  o.record_payload_bytes = 0;
  EXPECT_FALSE(o.Validate().ok());
  o = Options("", 2, 2);
  EXPECT_FALSE(o.Validate().ok());
  o = Options("/tmp/x", 2, 2);
  o.namespace_text.assign(kMaxNamespaceTextBytes + 1, 'x');
  EXPECT_FALSE(o.Validate().ok());
}

TEST(DiskFormat, HeadersRoundTripAndRejectCorruption) {
  AlignedBuffer buf(kSegmentHeaderBytes);
  SegmentHeader sh{kDiskFormatVersion, {1, 2}, "ns", 5000, 8192, 7};
  EncodeSegmentHeader(sh, buf.span());
  std::optional<SegmentHeader> got = DecodeSegmentHeader(buf.span());
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->namespace_text, "ns");
  EXPECT_EQ(got->slot_count, 7u);
  buf.data()[60] ^= std::byte{1};
  EXPECT_FALSE(DecodeSegmentHeader(buf.span()).has_value());

  RecordHeader rh{kDiskFormatVersion, {3, 4}, {1, 2}, 9, 5000, 2, 0x1234};
  EncodeRecordHeader(rh, buf.span());
  std::optional<RecordHeader> r = DecodeRecordHeader(buf.span());
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->key, (BlockHash{3, 4}));
  EXPECT_EQ(r->sequence, 9u);
  EXPECT_EQ(r->layers, 2u);
  buf.data()[10] ^= std::byte{1};
  EXPECT_FALSE(DecodeRecordHeader(buf.span()).has_value());
  EXPECT_EQ(SlotBytes(5000), 8192);
  EXPECT_EQ(SlotBytes(4096 - 80), 4096);
}

}  // namespace
}  // namespace strata::kvcache
