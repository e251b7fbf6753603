// HostTier: the host-RAM tier of the KV cache (DESIGN.md §5). It owns an arena of fixed-size
// slots; a slot holds ONE BLOCK for every layer, exactly as the device pages hold it:
//
//   slot s:  [layer 0 page][layer 1 page] ... [layer L-1 page]     (L x KvLayout::PageBytes())
//
// A slot is free, cached (findable by its BlockHash, on an LRU list, evictable), or pinned (a
// preempted request's swapped KV: not in the index, never evicted until released). It does no
// copying of its own: the TieredStore moves bytes in and out through data(slot).
//
// Owned and called by the engine thread only; not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "kernels/device.h"
#include "kvcache/block_hash.h"

namespace strata::kvcache {

// A cached block that Acquire pushed out. Its bytes are still in data(slot) until the caller
// writes the slot: the TieredStore demotes it to disk from there.
struct HostVictim {
  BlockHash hash;
  int32_t hits = 0;
  uint8_t lower_tiers = 0;
};

class HostTier {
 public:
  // Host memory for one arena (PageIo::AllocateHost); null: plain host memory.
  using Allocator = std::function<absl::StatusOr<std::unique_ptr<kernels::Buffer>>(size_t)>;
  // Each arena holds this many bytes' worth of whole slots (at least one slot).
  static constexpr size_t kArenaBytes = size_t{64} << 20;

  // Room for capacity_bytes / block_bytes slots, in fixed-size arenas allocated from
  // `allocate` when a slot in them is first used: a tier that is never filled costs nothing,
  // and on CUDA only what is used is page-locked.
  HostTier(int64_t capacity_bytes, size_t block_bytes, Allocator allocate = nullptr);
  HostTier(const HostTier&) = delete;
  HostTier& operator=(const HostTier&) = delete;

  // The cached slot of `hash`, refreshed in the LRU order when `touch`.
  std::optional<int32_t> Find(const BlockHash& hash, bool touch);
  bool Contains(const BlockHash& hash) const { return index_.contains(hash); }
  // A slot for new contents: a free one, else the least recently used cached one (its key is
  // dropped and reported in `victim`). nullopt when every slot is pinned. The slot is returned
  // pinned; Publish or Unpin it.
  std::optional<int32_t> Acquire(std::optional<HostVictim>* victim);
  // Makes pinned `slot` findable as `hash` (most recently used). When `hash` is already cached
  // the slot is freed instead (the copy already there wins).
  void Publish(int32_t slot, const BlockHash& hash, int32_t hits, uint8_t lower_tiers,
               bool from_disk);
  void Unpin(int32_t slot);  // back to the free list
  // A protected cached slot is skipped by Acquire's eviction (a prefix being loaded must not be
  // pushed out by the demotions its own load causes). Protect nests; no-op for unknown hashes.
  void Protect(const BlockHash& hash, bool on);
  // Hit bookkeeping of a cached slot: counted on every load to the device. Returns whether this
  // is the first load since the block came up from disk (a disk hit), and clears that flag.
  bool RecordHit(int32_t slot);

  // The slot's bytes; allocates its arena on first use (CHECK-fails only when neither the
  // allocator nor plain host memory can provide it).
  std::span<std::byte> data(int32_t slot);
  size_t block_bytes() const { return block_bytes_; }
  int32_t slots_per_arena() const { return slots_per_arena_; }
  int32_t num_arenas_allocated() const;
  int32_t num_slots() const { return num_slots_; }
  int32_t num_used() const { return num_slots_ - static_cast<int32_t>(free_.size()); }
  int32_t num_pinned() const { return num_pinned_; }

 private:
  enum class State : uint8_t { kFree, kPinned, kCached };
  struct Slot {
    State state = State::kFree;
    BlockHash hash;
    int32_t hits = 0;
    uint8_t lower_tiers = 0;
    bool from_disk = false;
    int32_t protect = 0;               // > 0: not evictable (being loaded)
    std::list<int32_t>::iterator lru;  // valid while cached
  };

  size_t block_bytes_;
  int32_t num_slots_;
  int32_t slots_per_arena_;
  Allocator allocate_;
  std::vector<std::unique_ptr<kernels::Buffer>> arenas_;  // null until first used
  std::vector<Slot> slots_;
  std::vector<int32_t> free_;
  std::list<int32_t> lru_;  // cached slots, least recently used first
  std::unordered_map<BlockHash, int32_t, BlockHashHasher> index_;
  int32_t num_pinned_ = 0;
};

}  // namespace strata::kvcache
