// DiskTier: the last tier of the KV cache (DESIGN.md §5), a small storage engine. One record =
// one block (the KV of block_size tokens for all layers, `record_payload_bytes`), keyed by its
// BlockHash, stored in a fixed-size slot of a preallocated segment file (FORMAT.md). Slots are
// recycled LRU within the configured capacity. Every read verifies the header (key, namespace,
// length) and the payload checksum: a bad record is a counted miss, never wrong bytes.
//
// Record lifecycle:  free --Write--> writing --write ok--> committed --evict/bad read--> free
//                                       \--write failed--> free
// Only committed records are visible (Contains/Read). A slot with a read in flight is pinned:
// never evicted, never rewritten.
//
// Threading: every public method may be called from any thread (the engine thread in practice);
// the `done` callbacks run on the FileSystem's completion thread and must not call Drain().
// One mutex guards all state; it is never held across FileSystem calls or callbacks.
// Owns its segment files; does not own the FileSystem, which must outlive it.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "kvcache/block_hash.h"
#include "kvcache/file_system.h"

namespace strata::kvcache {

struct DiskTierOptions {
  std::string dir;                    // segment directory; created if missing
  int64_t capacity_bytes = 0;         // total size of the segment files (headers included)
  bool persist = true;                // false: delete our old segments at Open instead of indexing
  size_t record_payload_bytes = 0;    // bytes of one block (all layers)
  BlockHash namespace_hash;           // model + weights fingerprint + codec + layout version
  std::string namespace_text;         // the same, human-readable, stored in segment headers
  int64_t segment_bytes = 64 << 20;   // segment file size (rounded down to whole slots, >= 1)
  uint32_t layers = 0;                // stored in each record header (informational; 0 = unset)

  absl::Status Validate() const;
};

// Why a read or write failed (or a segment was refused). Each kind is logged once.
enum class DiskErrorKind { kChecksum, kShortRead, kIo, kFull, kForeign };
inline constexpr int kNumDiskErrorKinds = 5;
// "checksum", "short_read", "io", "full", "foreign".
std::string_view DiskErrorKindName(DiskErrorKind kind);

struct DiskTierStats {
  int64_t bytes_written = 0;
  int64_t records_written = 0;
  int64_t bytes_read = 0;  // payload bytes of successful reads
  int64_t records_read = 0;
  int64_t records = 0;  // committed records now
  int64_t capacity_records = 0;
  int64_t writes_in_flight = 0;  // submitted, not completed yet
  std::array<int64_t, kNumDiskErrorKinds> errors{};  // indexed by DiskErrorKind

  int64_t error_count(DiskErrorKind kind) const { return errors[static_cast<int>(kind)]; }
};

class DiskTier {
 public:
  using WriteDone = std::function<void(absl::Status)>;
  // `payload` is valid only during the call.
  using ReadDone = std::function<void(absl::Status, std::span<const std::byte> payload)>;

  // Creates/indexes the segments under o.dir (blocking I/O: call at start-up).
  static absl::StatusOr<std::unique_ptr<DiskTier>> Open(FileSystem* fs, DiskTierOptions o);
  ~DiskTier();  // Drain()
  DiskTier(const DiskTier&) = delete;
  DiskTier& operator=(const DiskTier&) = delete;

  // Committed records only.
  bool Contains(const BlockHash& key) const;
  // Copies `payload` (record_payload_bytes) into a staging buffer and writes it asynchronously.
  // false = nothing queued: already present or in flight, wrong payload size, no slot (all
  // pinned), or writes stopped because the disk is full. The key becomes visible only after the
  // write completed successfully. `done` (optional) runs on the completion thread.
  bool Write(const BlockHash& key, std::span<const std::byte> payload, WriteDone done = {});
  // Reads the record; done(status, payload) on the completion thread. Checksum mismatch, short
  // read, I/O error, wrong key/namespace/length in the header -> non-OK status (a miss); the
  // record is dropped and the error counted. A hit refreshes the LRU position.
  // false = not present (nothing queued).
  bool Read(const BlockHash& key, ReadDone done);
  // Waits until no operation (callbacks included) is in flight.
  void Drain();

  DiskTierStats stats() const;
  int64_t capacity_records() const { return static_cast<int64_t>(slots_.size()); }
  double usage_ratio() const;
  // False once a write hit "disk full" (sticky, like LevelDB's bg_error_) or without any slot.
  bool writes_enabled() const;

 private:
  struct Segment;
  struct Slot {
    enum class State { kFree, kWriting, kCommitted, kDropped };
    State state = State::kFree;
    BlockHash key;
    uint64_t sequence = 0;
    int pins = 0;                                  // reads in flight
    std::list<uint32_t>::iterator lru_position;  // valid while kCommitted
  };
  struct Location {
    RandomRWFile* file;
    int64_t offset;
  };

  DiskTier(FileSystem* fs, DiskTierOptions options);

  // Open helpers (disk_tier_open.cc).
  absl::Status OpenSegments();
  absl::Status ScanSegment(size_t segment_index);
  absl::Status CreateSegment(const std::string& path, int64_t slot_count, bool* full);
  void BuildLruFromSequences();

  Location SlotLocation(uint32_t slot) const;
  // A free slot, or the least recently used unpinned committed one (evicted). REQUIRES: mu_.
  bool TakeSlotLocked(uint32_t* slot);
  void ReleaseSlotLocked(uint32_t slot);
  void DropLocked(uint32_t slot);
  void CountErrorLocked(DiskErrorKind kind, const absl::Status& status);
  void OnWriteDone(uint32_t slot, const BlockHash& key, absl::StatusOr<size_t> n,
                   const WriteDone& done);
  void OnReadDone(uint32_t slot, const BlockHash& key, absl::StatusOr<size_t> n,
                  std::span<const std::byte> slot_bytes, const ReadDone& done);
  // Verifies a slot image against `key`; the payload on success.
  absl::StatusOr<std::span<const std::byte>> VerifyRecord(const BlockHash& key,
                                                          std::span<const std::byte> slot) const;
  void FinishOp();

  FileSystem* const fs_;
  const DiskTierOptions options_;
  const int64_t slot_bytes_;
  std::shared_ptr<AlignedBufferPool> buffers_;  // one slot image per read or write in flight
  int64_t slots_per_segment_ = 0;
  std::vector<std::unique_ptr<Segment>> segments_;  // fixed after Open

  mutable std::mutex mu_;  // guards everything below (and slots_ contents)
  std::condition_variable idle_;
  std::vector<Slot> slots_;  // size fixed after Open
  std::unordered_map<BlockHash, uint32_t, BlockHashHasher> index_;    // committed
  std::unordered_map<BlockHash, uint32_t, BlockHashHasher> writing_;  // in flight
  std::list<uint32_t> lru_;  // committed slots, most recently used first
  std::vector<uint32_t> free_;
  uint64_t next_sequence_ = 1;
  int64_t in_flight_ = 0;
  bool writes_stopped_ = false;
  std::array<bool, kNumDiskErrorKinds> logged_{};
  DiskTierStats stats_;
};

}  // namespace strata::kvcache
