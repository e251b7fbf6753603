// BlockPool owns the device tier's page ids, their reference counts and the prefix-cache index
// (key = (BlockHash, layer) -> page). It never touches page contents: the engine maps a page id to
// a byte offset in the KV arena. Running out of pages is a normal outcome (std::nullopt).
//
// Page states:
//   ref_count > 0            in use by >= 1 request (maybe also cached: shared prefix)
//   ref_count == 0, cached   in the free list AND findable by Lookup until Allocate reuses it
//   ref_count == 0, plain    in the free list
//
// Free list order is the eviction order: Allocate pops the front (least recently freed), Free
// appends to the back. Modelled on vLLM v1's BlockPool / FreeKVCacheBlockQueue.
//
// Owned and called by the engine thread only; not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "kvcache/block_hash.h"

namespace strata::kvcache {

// A cached page is one layer's KV of one block, so the layer is part of its key.
struct BlockKey {
  BlockHash hash;
  int32_t layer = 0;

  friend bool operator==(const BlockKey&, const BlockKey&) = default;
};

struct BlockKeyHasher {
  size_t operator()(const BlockKey& k) const {
    return BlockHashHasher()(k.hash) ^ (static_cast<size_t>(k.layer) * 0x9e3779b97f4a7c15ULL);
  }
};

// Which tiers below the device a cached page may be demoted to (a request's KV policy decides).
enum LowerTier : uint8_t { kTierHost = 1, kTierDisk = 2 };
inline constexpr uint8_t kAllLowerTiers = kTierHost | kTierDisk;

// Called by Allocate for a cached page just before its key is dropped, while its contents are
// still intact: the tiered store copies it down (DESIGN.md §5, demote on eviction).
struct EvictedPage {
  BlockKey key;
  int32_t page = 0;
  int32_t hits = 0;           // cache hits while it was on the device
  uint8_t lower_tiers = 0;    // LowerTier bits it may be demoted to
};
using EvictionHook = std::function<void(const EvictedPage&)>;

struct BlockPoolStats {
  int64_t evictions = 0;         // cached pages whose key was dropped because Allocate reused them
  int64_t publish_dedupes = 0;   // Publish calls that kept an existing page for the same key
};

class BlockPool {
 public:
  // Pages 0 .. num_pages-1, all free, handed out in increasing id order at first.
  explicit BlockPool(int32_t num_pages);
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  // `n` pages with ref_count 1, popped from the front of the free list (evicting their cache keys),
  // or nullopt and no change when fewer than `n` pages are free.
  std::optional<std::vector<int32_t>> Allocate(int32_t n);
  // Drops one reference from each page; a page reaching 0 is appended to the free list in the
  // order given, so callers pass the pages to evict first (the tail blocks of a request) first.
  // REQUIRES: ref_count(page) > 0 for each page.
  void Free(std::span<const int32_t> pages);
  // The page cached under (hash, layer), if any. Does not change its reference count.
  std::optional<int32_t> Lookup(const BlockHash& hash, int32_t layer) const;
  // Adds a reference, taking the page out of the free list when it was free. `hit`: a prefix
  // cache hit (counted for the host tier's demote-to-disk rule), not a fork sharing it.
  void Touch(int32_t page, bool hit = true);
  // Makes the full page findable under (hash, layer). When the key already names another page,
  // that mapping stays and this page stays uncached (two requests computed the same block).
  // REQUIRES: ref_count(page) > 0 and the page is not cached under another key.
  void Publish(int32_t page, const BlockHash& hash, int32_t layer,
               uint8_t lower_tiers = kAllLowerTiers);
  // Runs for every cached page Allocate evicts (before reuse); empty = none.
  void SetEvictionHook(EvictionHook hook) { on_evict_ = std::move(hook); }

  int32_t num_pages() const { return num_pages_; }
  int32_t num_free() const { return num_free_; }
  int32_t ref_count(int32_t page) const { return pages_[page].ref_count; }
  int64_t num_cached() const { return static_cast<int64_t>(index_.size()); }
  const BlockPoolStats& stats() const { return stats_; }

  // Every page is in the free list xor has ref_count > 0; the list is well linked and as long as
  // num_free(); the index and the per-page keys agree both ways.
  absl::Status CheckInvariants() const;

 private:
  // Why intrusive: a cache hit must take a free page out of the MIDDLE of the LRU list. With the
  // links stored in the per-page array that is O(1) and allocation-free (vLLM's
  // FreeKVCacheBlockQueue); a std::list would need an iterator per page and a heap node per free,
  // a deque could not remove from the middle. Index num_pages_ is the sentinel: an empty list
  // points at itself, so push/remove need no special cases.
  struct PageMeta {
    int32_t ref_count = 0;
    int32_t prev = -1;  // free-list links; -1 while the page is in use
    int32_t next = -1;
    std::optional<BlockKey> key;  // set iff index_[*key] == this page
    int32_t hits = 0;             // prefix-cache hits since it was published
    uint8_t lower_tiers = 0;      // where it may be demoted (set by Publish)
  };

  bool InFreeList(int32_t page) const { return pages_[page].next != -1; }
  void PushBack(int32_t page);
  void Remove(int32_t page);
  void DropKey(int32_t page);
  absl::Status CheckFreeList() const;
  absl::Status CheckIndex() const;

  int32_t num_pages_;
  int32_t num_free_ = 0;
  std::vector<PageMeta> pages_;  // [num_pages + 1]; the last entry is the list sentinel
  std::unordered_map<BlockKey, int32_t, BlockKeyHasher> index_;
  BlockPoolStats stats_;
  EvictionHook on_evict_;
};

}  // namespace strata::kvcache
