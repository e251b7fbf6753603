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

#include <array>
#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "kvcache/block_hash.h"
#include "kvcache/block_pool.h"
#include "kvcache/kv_layout.h"
#include "kvcache/sparsity.h"
#include "kvcache/tiered_store.h"

namespace strata::kvcache {

// What a request's KV policy allows (DESIGN.md §5 `policies`).
struct KvAccess {
  bool prefix_cache = true;               // look up and publish its full blocks
  uint8_t lower_tiers = kAllLowerTiers;   // where its published blocks may be demoted / found
  kernels::KvCodec codec = kernels::KvCodec::kF32;  // the codec (pool) of its pages
  int32_t residual_tokens = 0;            // KIVI: full-precision window (a multiple of 32); else 0
  SparsitySpec sparsity{};                // which tokens it keeps (its KV is private then)
  bool may_fetch = true;                  // start disk reads for a prefix found only on disk
  // Where the request's last round of disk reads began (-1: none yet). A new round starts only
  // further into the prompt, so rounds make progress even when writes were still landing on
  // disk at the first lookup, and a host tier too small to hold the prefix cannot loop.
  int64_t fetched_from_block = -1;
};

// Where an attached prefix came from (token counts; multiples of block_size).
struct PrefixHit {
  int64_t cached_tokens = 0;  // device + host + disk
  int64_t host_tokens = 0;    // copied up from host RAM (disk_tokens included)
  int64_t disk_tokens = 0;    // ... of which had been fetched from disk
  // Blocks beyond the hit are being read from disk: the request was NOT registered; attach it
  // again once TieredStore::Poll reports progress.
  bool loading = false;
  int64_t fetch_block = -1;  // loading: the first block of the round of reads it waits for
};

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
  // The same across the tiers below the device, within what `access` allows: blocks cached in
  // host RAM are copied into fresh device pages (published again); blocks found only on disk
  // start a fetch and come back as `loading` (nothing registered).
  PrefixHit Attach(RequestId id, BlockHash seed, std::span<const int32_t> tokens,
                   const KvAccess& access);
  // Puts host RAM and disk below the device pool: device evictions demote into them (or every
  // full block at publish when write-through). `tiers` must outlive the manager; null = none.
  void AttachTiers(TieredStore* tiers);
  TieredStore* tiers() const { return tiers_; }
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

  // Preemption by swap: copies every page of `id` to pinned host slots and releases them like
  // Release; the request stays known as swapped. False (still registered, nothing changed) when
  // there is no host tier or it cannot hold them.
  bool SwapOut(RequestId id);
  // Registers a swapped request again with fresh pages holding its KV (blocks still cached on
  // the device are shared instead of copied). False and no change when the device pool lacks
  // the pages.
  bool SwapIn(RequestId id);
  // Forgets a swapped request's host copy (it was aborted).
  void DropSwapped(RequestId id);
  bool IsSwapped(RequestId id) const { return swapped_.contains(id); }
  // Bytes SwapOut would copy for `id`.
  int64_t SwapBytes(RequestId id) const;

  // LayerKV (kv_cache_layers.cc): some layers of a running request live in host RAM and are
  // streamed through two sets of device "staging" pages (even and odd layers) while it runs:
  //
  //   layer l on the device:  pages(id, l) = its own pages
  //   layer l in host RAM:    pages(id, l) = staging[l % 2]; before layer l runs its blocks are
  //                           copied in (loads), after it ran the blocks that got new tokens are
  //                           copied back (stores) -- LayerCopies()
  //
  // Moving k layers frees k x blocks device pages and costs 2 x blocks of staging once. A
  // request with layers in host RAM publishes no new blocks and is not swapped (its preemption
  // recomputes) until they are back.
  //
  // Moves up to `max_layers` of request `id`'s device layers (the highest first) to host RAM.
  // Returns how many moved: 0 when there is no host tier, it is full, or the pages freed would
  // not cover the staging pages.
  int32_t MoveLayersToHost(RequestId id, int32_t max_layers);
  // Moves up to `max_layers` host layers (the lowest first) back to fresh device pages; the
  // staging pages are freed with the last one. Returns how many moved.
  int32_t MoveLayersToDevice(RequestId id, int32_t max_layers);
  int32_t num_host_layers(RequestId id) const;
  // Device pages Reserve(id, num_tokens) would take (host layers need only staging pages).
  int64_t PagesToReserve(RequestId id, int64_t num_tokens) const;
  // Device pages MoveLayersToHost(id, k) would free, net of staging (may be <= 0).
  int64_t PagesFreedByMoving(RequestId id, int32_t k) const;
  // The copies a step computing tokens [start, end) of `id` needs for its host layers: every
  // block holding tokens before `start` is loaded, every block receiving a token is stored.
  void LayerCopies(RequestId id, int64_t start, int64_t end, std::vector<LayerPageCopy>* loads,
                   std::vector<LayerPageCopy>* stores) const;

  // Sparsity: keeps only the blocks holding tokens [0, num_tokens) and frees the rest (the
  // caller compacted the kept tokens to the front). REQUIRES: nothing published, no host layers.
  void Truncate(RequestId id, int64_t num_tokens);
  // KIVI: private pages of the request's full-precision residual (the tokens after its last
  // quantized block), `pages_per_layer` in every layer, from the same pool; never published,
  // freed with the request. False and no change when the pool lacks them.
  bool ReserveResidual(RequestId id, int32_t pages_per_layer);
  std::span<const int32_t> residual_pages(RequestId id, int32_t layer) const;

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
    KvAccess access;
    std::vector<std::vector<int32_t>> pages;  // [num_layers][num_blocks]
    std::vector<BlockHash> block_hashes;      // chained hashes of leading full blocks
    int64_t num_published_blocks = 0;         // blocks [0, n) are already in the index
    // LayerKV: host[l] holds layer l's blocks while it lives in host RAM (empty otherwise);
    // staging[p] are the device pages the host layers of parity p run in.
    std::vector<std::vector<HostPage>> host;  // [num_layers][num_blocks] or empty
    std::array<std::vector<int32_t>, 2> staging;
    std::vector<std::vector<int32_t>> residual;  // [num_layers][pages] (KIVI) or empty
    int32_t num_host_layers = 0;
    bool InHost(int32_t l) const { return !host.empty() && !host[l].empty(); }
  };

  RequestKv& Get(RequestId id);
  const RequestKv& Get(RequestId id) const;
  int64_t NumBlocks(const RequestKv& req) const { return static_cast<int64_t>(req.pages[0].size()); }
  // The cached page of block `hash` in every layer, or empty when any layer misses.
  std::vector<int32_t> LookupAllLayers(const BlockHash& hash) const;
  // Appends block `b`'s device pages to `req` (hits, or pages just filled from host).
  void AppendBlock(RequestKv& req, std::span<const int32_t> layer_pages);
  // Copies host-cached blocks hashes[from, from + n) into fresh pages; returns how many made it.
  int64_t LoadFromHost(RequestKv& req, std::span<const BlockHash> hashes, PrefixHit* hit);
  // Demotes a block whose page Allocate is about to reuse (all its layers, while still intact).
  void OnEvict(const EvictedPage& e);
  void PublishBlock(RequestKv& req, int64_t b);
  // Drops the request's page references, tail blocks first (their leaves are evicted first),
  // and its host layer pages.
  void FreePages(const RequestKv& req);
  // Reserve for a request with host layers: device pages for its device layers and staging,
  // host pages for its host layers.
  bool ReserveWithHostLayers(RequestKv& req, int64_t have, int64_t want);
  void FreeHostPages(std::vector<HostPage>& pages);

  KvLayout layout_;
  bool enable_prefix_caching_;
  BlockPool pool_;
  std::unordered_map<RequestId, RequestKv> requests_;
  std::unordered_map<RequestId, RequestKv> swapped_;  // block tables kept, pages released
  TieredStore* tiers_ = nullptr;
};

}  // namespace strata::kvcache
