// KvCacheManager owns every request's device-tier block tables and the BlockPool under them, and
// implements the prefix cache on top (DESIGN.md §5; vLLM v1's KVCacheManager is the model).
//
// A request's life:    AttachCachedPrefix -> (Reserve -> compute -> Commit)* -> Release
//
//   tokens:       0 ..... 15 | 16 .... 31 | 32 .... 47 | 48 .. 53
//   blocks:       cached (hit)             | computed   | partial
//   layer l:      page 4     | page 9     | page 12    | page 2      pages(id, l) = {4, 9, 12, 2}
//
// Pages are per layer, so a block of L layers is L pages, each keyed by (block hash, layer). Only
// FULL blocks are published and shared; the partial last block is always private. A block's hash
// is computed once per request and kept for Commit.
//
// Owned and called by the engine thread only; not thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "kvcache/block_hash.h"
#include "kvcache/block_pool.h"
#include "kvcache/kv_layout.h"

namespace strata::kvcache {

using RequestId = uint64_t;

class KvCacheManager {
 public:
  // With prefix caching disabled nothing is looked up or published: pages are private.
  KvCacheManager(const KvLayout& layout, int32_t num_pages, bool enable_prefix_caching);
  KvCacheManager(const KvCacheManager&) = delete;
  KvCacheManager& operator=(const KvCacheManager&) = delete;

  // Registers request `id` (every request starts here, also with caching disabled) and gives it
  // the longest cached prefix of full blocks of `tokens` present in EVERY layer. Returns the
  // number of cached tokens: a multiple of block_size, and < tokens.size() so that at least one
  // token is left to compute (its logits are needed). `seed` is SeedHash() of the request's
  // PrefixSeed (model, codec, cache_salt, ...).
  // REQUIRES: `id` is not registered.
  int64_t AttachCachedPrefix(RequestId id, BlockHash seed, std::span<const int32_t> tokens);
  // Makes room for `num_tokens` tokens in every layer. False and no change when the pool cannot
  // supply all missing pages (the caller waits or preempts).
  bool Reserve(RequestId id, int64_t num_tokens);
  // Tokens [0, num_computed_tokens) of `tokens` now have their KV written: newly full blocks
  // become findable. REQUIRES: num_computed_tokens <= capacity and <= tokens.size(); `tokens`
  // starts with the tokens given to AttachCachedPrefix.
  void Commit(RequestId id, std::span<const int32_t> tokens, int64_t num_computed_tokens);
  // Drops the request's references, last block first so that its leaves are evicted first.
  void Release(RequestId id);
  // For n > 1 sampling: registers `child` holding references to the parent's first
  // shared_tokens / block_size full blocks. A trailing partial block is not shared: the caller
  // Reserves the child's own page and copies those slots.
  // REQUIRES: parent registered, child not; shared_tokens <= the parent's capacity.
  void Fork(RequestId parent, RequestId child, int64_t shared_tokens);

  std::span<const int32_t> pages(RequestId id, int32_t layer) const;
  int64_t num_blocks(RequestId id) const;
  // Flat slot (page * block_size + offset) of token `position` in `layer`.
  int64_t Slot(RequestId id, int32_t layer, int64_t position) const;
  bool Contains(RequestId id) const { return requests_.contains(id); }

  const BlockPool& pool() const { return pool_; }
  const KvLayout& layout() const { return layout_; }

  // The pool's invariants, plus: each page's ref_count equals the number of block-table entries
  // naming it, and every request's tables are rectangular.
  absl::Status CheckInvariants() const;

 private:
  struct RequestKv {
    BlockHash seed;
    std::vector<std::vector<int32_t>> pages;  // [num_layers][num_blocks]
    std::vector<BlockHash> block_hashes;      // chained hashes of leading full blocks
    int64_t num_published_blocks = 0;         // blocks [0, n) are already in the index
  };

  RequestKv& Get(RequestId id);
  const RequestKv& Get(RequestId id) const;
  int64_t NumBlocks(const RequestKv& req) const { return static_cast<int64_t>(req.pages[0].size()); }
  // The cached page of block `hash` in every layer, or empty when any layer misses.
  std::vector<int32_t> LookupAllLayers(const BlockHash& hash) const;

  KvLayout layout_;
  bool enable_prefix_caching_;
  BlockPool pool_;
  std::unordered_map<RequestId, RequestKv> requests_;
};

}  // namespace strata::kvcache
