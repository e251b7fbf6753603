#include "kvcache/kv_cache_manager.h"

#include <algorithm>

namespace strata::kvcache {

KvCacheManager::KvCacheManager(const KvLayout& layout, int32_t num_pages,
                               bool enable_prefix_caching)
    : layout_(layout), enable_prefix_caching_(enable_prefix_caching), pool_(num_pages) {
  CHECK_OK(layout_.Validate());
}

KvCacheManager::RequestKv& KvCacheManager::Get(RequestId id) {
  auto it = requests_.find(id);
  CHECK(it != requests_.end());
  return it->second;
}

const KvCacheManager::RequestKv& KvCacheManager::Get(RequestId id) const {
  auto it = requests_.find(id);
  CHECK(it != requests_.end());
  return it->second;
}

std::vector<int32_t> KvCacheManager::LookupAllLayers(const BlockHash& hash) const {
  std::vector<int32_t> found;
  found.reserve(layout_.num_layers);
  for (int32_t l = 0; l < layout_.num_layers; ++l) {
    std::optional<int32_t> page = pool_.Lookup(hash, l);
    if (!page.has_value()) return {};
    found.push_back(*page);
  }
  return found;
}

int64_t KvCacheManager::AttachCachedPrefix(RequestId id, BlockHash seed,
                                           std::span<const int32_t> tokens) {
  KvAccess access;
  access.may_fetch = false;
  return Attach(id, seed, tokens, access).cached_tokens;
}

void KvCacheManager::AppendBlock(RequestKv& req, std::span<const int32_t> layer_pages) {
  for (int32_t l = 0; l < layout_.num_layers; ++l) req.pages[l].push_back(layer_pages[l]);
}

PrefixHit KvCacheManager::Attach(RequestId id, BlockHash seed, std::span<const int32_t> tokens,
                                 const KvAccess& access) {
  CHECK(!requests_.contains(id) && !swapped_.contains(id));
  RequestKv& req = requests_[id];
  req.seed = seed;
  req.access = access;
  req.pages.resize(layout_.num_layers);
  PrefixHit hit;
  if (!enable_prefix_caching_ || !access.prefix_cache || tokens.empty()) return hit;

  // At most (n - 1) / bs blocks: the last token must be computed to get its logits. Every
  // block is hashed once here and kept for Commit, hit or miss.
  const int32_t bs = layout_.block_size;
  req.block_hashes = HashFullBlocks(seed, tokens.first(tokens.size() - 1), bs);
  const std::span<const BlockHash> hashes(req.block_hashes);
  int64_t b = 0;
  for (; b < static_cast<int64_t>(hashes.size()); ++b) {
    std::vector<int32_t> found = LookupAllLayers(hashes[b]);
    if (found.empty()) break;
    for (int32_t page : found) pool_.Touch(page);
    AppendBlock(req, found);
  }
  if (tiers_ != nullptr && b < static_cast<int64_t>(hashes.size())) {
    const std::span<const BlockHash> rest = hashes.subspan(b);
    const int64_t in_host = (access.lower_tiers & kTierHost) ? tiers_->HostRun(rest) : 0;
    const int64_t on_disk =
        (access.lower_tiers & kTierDisk) ? tiers_->DiskRun(rest.subspan(in_host)) : 0;
    const std::span<const BlockHash> disk_part = rest.subspan(in_host, on_disk);
    const int64_t disk_start = b + in_host;
    // Wait for the disk part: the request waits for its own blocks only (others go on). Its
    // host run is kept while the reads take host slots.
    if (on_disk > 0) {
      const bool new_round = access.may_fetch && disk_start > access.fetched_from_block;
      tiers_->ProtectRun(rest.first(in_host), true);
      const bool waiting = new_round ? tiers_->Fetch(disk_part) : tiers_->Fetching(disk_part);
      tiers_->ProtectRun(rest.first(in_host), false);
      if (waiting) {
        Release(id);
        return PrefixHit{.loading = true,
                         .fetch_block = new_round ? disk_start : access.fetched_from_block};
      }
    }
    tiers_->ProtectRun(rest.first(in_host), true);
    b += LoadFromHost(req, rest.first(in_host), &hit);
    tiers_->ProtectRun(rest.first(in_host), false);
  }
  req.num_published_blocks = NumBlocks(req);
  hit.cached_tokens = NumBlocks(req) * bs;
  return hit;
}

int64_t KvCacheManager::LoadFromHost(RequestKv& req, std::span<const BlockHash> hashes,
                                     PrefixHit* hit) {
  const int32_t bs = layout_.block_size;
  int64_t loaded = 0;
  for (const BlockHash& hash : hashes) {
    if (pool_.num_free() < layout_.num_layers) break;
    std::vector<int32_t> fresh = *pool_.Allocate(layout_.num_layers);
    bool from_disk = false;
    if (!tiers_->LoadToDevice(hash, fresh, &from_disk)) {  // evicted meanwhile, or a copy error
      pool_.Free(fresh);
      break;
    }
    for (int32_t l = 0; l < layout_.num_layers; ++l) {
      pool_.Publish(fresh[l], hash, l, req.access.lower_tiers);
    }
    AppendBlock(req, fresh);
    hit->host_tokens += bs;
    hit->disk_tokens += from_disk ? bs : 0;
    ++loaded;
  }
  return loaded;
}

void KvCacheManager::AttachTiers(TieredStore* tiers) {
  tiers_ = tiers;
  if (tiers_ == nullptr) {
    pool_.SetEvictionHook({});
    return;
  }
  pool_.SetEvictionHook([this](const EvictedPage& e) { OnEvict(e); });
}

void KvCacheManager::OnEvict(const EvictedPage& e) {
  if (e.lower_tiers == 0) return;
  std::vector<int32_t> layer_pages(layout_.num_layers);
  for (int32_t l = 0; l < layout_.num_layers; ++l) {
    std::optional<int32_t> page = l == e.key.layer ? e.page : pool_.Lookup(e.key.hash, l);
    if (!page) return;  // another layer already went without demotion: the block is incomplete
    layer_pages[l] = *page;
  }
  tiers_->Demote(e.key.hash, layer_pages, e.hits, e.lower_tiers);
}

bool KvCacheManager::Reserve(RequestId id, int64_t num_tokens) {
  RequestKv& req = Get(id);
  const int64_t have = NumBlocks(req);
  const int64_t want = layout_.BlocksFor(num_tokens);
  if (want <= have) return true;
  if (req.num_host_layers > 0) return ReserveWithHostLayers(req, have, want);
  const int64_t missing = (want - have) * layout_.num_layers;
  if (missing > pool_.num_free()) return false;
  std::optional<std::vector<int32_t>> fresh = pool_.Allocate(static_cast<int32_t>(missing));
  CHECK(fresh.has_value());
  // Layer-major, like SequenceKv: layer 0 takes the first (want - have) pages.
  auto next = fresh->begin();
  for (auto& layer_pages : req.pages) {
    layer_pages.insert(layer_pages.end(), next, next + (want - have));
    next += want - have;
  }
  return true;
}

void KvCacheManager::Commit(RequestId id, std::span<const int32_t> tokens,
                            int64_t num_computed_tokens) {
  RequestKv& req = Get(id);
  CHECK(num_computed_tokens >= 0 && num_computed_tokens <= static_cast<int64_t>(tokens.size()));
  const int32_t bs = layout_.block_size;
  const int64_t full = num_computed_tokens / bs;
  CHECK(full <= NumBlocks(req));
  // Blocks of a request with layers in host RAM are published once they are all back.
  if (!enable_prefix_caching_ || !req.access.prefix_cache || req.num_host_layers > 0) return;
  for (int64_t b = req.num_published_blocks; b < full; ++b) {
    if (b == static_cast<int64_t>(req.block_hashes.size())) {
      BlockHash parent = b == 0 ? req.seed : req.block_hashes[b - 1];
      req.block_hashes.push_back(ChainHash(parent, tokens.subspan(b * bs, bs)));
    }
    PublishBlock(req, b);
  }
  req.num_published_blocks = std::max(req.num_published_blocks, full);
}

void KvCacheManager::PublishBlock(RequestKv& req, int64_t b) {
  const BlockHash& hash = req.block_hashes[b];
  std::vector<int32_t> layer_pages(layout_.num_layers);
  for (int32_t l = 0; l < layout_.num_layers; ++l) {
    layer_pages[l] = req.pages[l][b];
    pool_.Publish(layer_pages[l], hash, l, req.access.lower_tiers);
  }
  if (tiers_ != nullptr && tiers_->write_through() && req.access.lower_tiers != 0) {
    tiers_->Demote(hash, layer_pages, /*hits=*/0, req.access.lower_tiers);
  }
}

void KvCacheManager::FreePages(const RequestKv& req) {
  std::vector<int32_t> order;
  order.reserve(NumBlocks(req) * layout_.num_layers);
  for (int64_t b = NumBlocks(req) - 1; b >= 0; --b) {
    for (int32_t l = 0; l < layout_.num_layers; ++l) {
      if (!req.InHost(l)) order.push_back(req.pages[l][b]);
    }
    for (const auto& staging : req.staging) {
      if (!staging.empty()) order.push_back(staging[b]);
    }
  }
  for (const auto& layer_pages : req.residual) {
    order.insert(order.end(), layer_pages.begin(), layer_pages.end());
  }
  pool_.Free(order);
  for (const auto& host : req.host) {
    for (const HostPage& p : host) tiers_->FreeLayerPage(p);
  }
}

void KvCacheManager::Release(RequestId id) {
  auto it = requests_.find(id);
  CHECK(it != requests_.end());
  FreePages(it->second);
  requests_.erase(it);
}

int64_t KvCacheManager::SwapBytes(RequestId id) const {
  return NumBlocks(Get(id)) * layout_.num_layers * static_cast<int64_t>(layout_.PageBytes());
}

bool KvCacheManager::SwapOut(RequestId id) {
  auto it = requests_.find(id);
  CHECK(it != requests_.end());
  if (tiers_ == nullptr || it->second.num_host_layers > 0 || !it->second.residual.empty() ||
      !tiers_->SwapOut(id, it->second.pages)) {
    return false;
  }
  FreePages(it->second);
  RequestKv& kept = swapped_[id];
  kept = std::move(it->second);
  requests_.erase(it);
  return true;
}

bool KvCacheManager::SwapIn(RequestId id) {
  auto it = swapped_.find(id);
  CHECK(it != swapped_.end() && !requests_.contains(id));
  RequestKv& req = it->second;
  const int64_t blocks = NumBlocks(req);
  // Published blocks still cached on the device are shared, not copied.
  std::vector<bool> skip(blocks, false);
  std::vector<std::vector<int32_t>> shared(blocks);
  int64_t missing = 0;
  for (int64_t b = 0; b < blocks; ++b) {
    if (b < req.num_published_blocks) shared[b] = LookupAllLayers(req.block_hashes[b]);
    skip[b] = !shared[b].empty();
    missing += skip[b] ? 0 : 1;
  }
  // Take the shared pages first: those that were free no longer count as free afterwards.
  std::vector<int32_t> touched;
  for (int64_t b = 0; b < blocks; ++b) {
    for (int32_t page : shared[b]) {
      pool_.Touch(page, /*hit=*/false);
      touched.push_back(page);
    }
  }
  std::optional<std::vector<int32_t>> allocated =
      pool_.Allocate(static_cast<int32_t>(missing * layout_.num_layers));
  if (!allocated) {
    pool_.Free(touched);
    return false;
  }
  std::vector<int32_t> fresh = std::move(*allocated);
  auto next = fresh.begin();
  for (int64_t b = 0; b < blocks; ++b) {
    for (int32_t l = 0; l < layout_.num_layers; ++l) {
      req.pages[l][b] = skip[b] ? shared[b][l] : *next++;
    }
  }
  RequestKv& live = requests_[id];
  live = std::move(req);
  swapped_.erase(it);
  if (!tiers_->SwapIn(id, live.pages, skip)) {
    // A copy failed: the KV is not trustworthy. Drop it; the caller recomputes.
    Release(id);
    return false;
  }
  // Re-publish the blocks copied back whose keys were evicted meanwhile.
  for (int64_t b = 0; b < live.num_published_blocks; ++b) {
    if (!skip[b]) PublishBlock(live, b);
  }
  return true;
}

void KvCacheManager::DropSwapped(RequestId id) {
  if (swapped_.erase(id) > 0 && tiers_ != nullptr) tiers_->DropSwap(id);
}

void KvCacheManager::Fork(RequestId parent, RequestId child, int64_t shared_tokens) {
  CHECK(!requests_.contains(child));
  const RequestKv& from = Get(parent);
  CHECK(from.num_host_layers == 0 && from.residual.empty());
  const int64_t shared_blocks = shared_tokens / layout_.block_size;
  CHECK(shared_tokens >= 0 && shared_blocks <= NumBlocks(from));
  RequestKv to;
  to.seed = from.seed;
  to.access = from.access;
  to.pages.resize(layout_.num_layers);
  for (int32_t l = 0; l < layout_.num_layers; ++l) {
    for (int64_t b = 0; b < shared_blocks; ++b) {
      pool_.Touch(from.pages[l][b], /*hit=*/false);
      to.pages[l].push_back(from.pages[l][b]);
    }
  }
  const int64_t known = std::min<int64_t>(shared_blocks, from.block_hashes.size());
  to.block_hashes.assign(from.block_hashes.begin(), from.block_hashes.begin() + known);
  to.num_published_blocks = std::min(from.num_published_blocks, shared_blocks);
  requests_.emplace(child, std::move(to));
}

void KvCacheManager::Truncate(RequestId id, int64_t num_tokens) {
  RequestKv& req = Get(id);
  CHECK(req.num_published_blocks == 0 && req.num_host_layers == 0);
  const int64_t keep = layout_.BlocksFor(num_tokens);
  if (keep >= NumBlocks(req)) return;
  std::vector<int32_t> order;
  for (int64_t b = NumBlocks(req) - 1; b >= keep; --b) {
    for (const auto& layer_pages : req.pages) order.push_back(layer_pages[b]);
  }
  pool_.Free(order);
  for (auto& layer_pages : req.pages) layer_pages.resize(keep);
}

bool KvCacheManager::ReserveResidual(RequestId id, int32_t pages_per_layer) {
  RequestKv& req = Get(id);
  const int32_t have = req.residual.empty() ? 0 : static_cast<int32_t>(req.residual[0].size());
  if (pages_per_layer <= have) return true;
  const int32_t missing = (pages_per_layer - have) * layout_.num_layers;
  if (missing > pool_.num_free()) return false;
  std::vector<int32_t> fresh = *pool_.Allocate(missing);
  req.residual.resize(layout_.num_layers);
  auto next = fresh.begin();
  for (auto& layer_pages : req.residual) {
    layer_pages.insert(layer_pages.end(), next, next + (pages_per_layer - have));
    next += pages_per_layer - have;
  }
  return true;
}

std::span<const int32_t> KvCacheManager::residual_pages(RequestId id, int32_t layer) const {
  const RequestKv& req = Get(id);
  if (req.residual.empty()) return {};
  return req.residual[layer];
}

std::span<const int32_t> KvCacheManager::pages(RequestId id, int32_t layer) const {
  return Get(id).pages[layer];
}

int64_t KvCacheManager::num_blocks(RequestId id) const { return NumBlocks(Get(id)); }

int64_t KvCacheManager::Slot(RequestId id, int32_t layer, int64_t position) const {
  const int32_t bs = layout_.block_size;
  return static_cast<int64_t>(Get(id).pages[layer][position / bs]) * bs + position % bs;
}

absl::Status KvCacheManager::CheckInvariants() const {
  RETURN_IF_ERROR(pool_.CheckInvariants());
  std::vector<int32_t> refs(pool_.num_pages(), 0);
  for (const auto& [id, req] : requests_) {
    for (int32_t l = 0; l < layout_.num_layers; ++l) {
      const auto& layer_pages = req.pages[l];
      if (layer_pages.size() != req.pages[0].size()) {
        return absl::InternalError(StrCat("kv cache: request ", id, " has ragged block tables"));
      }
      if (req.InHost(l)) {  // names the staging pages, counted once below
        if (layer_pages != req.staging[l % 2] || req.host[l].size() != layer_pages.size()) {
          return absl::InternalError(StrCat("kv cache: request ", id, " layer ", l,
                                            " is in host RAM but its tables disagree"));
        }
        continue;
      }
      for (int32_t page : layer_pages) ++refs[page];
    }
    for (const auto& staging : req.staging) {
      for (int32_t page : staging) ++refs[page];
    }
    for (const auto& layer_pages : req.residual) {
      for (int32_t page : layer_pages) ++refs[page];
    }
    if (req.num_published_blocks > NumBlocks(req) ||
        req.num_published_blocks > static_cast<int64_t>(req.block_hashes.size())) {
      return absl::InternalError(StrCat("kv cache: request ", id, " published ",
                                        req.num_published_blocks, " blocks beyond its tables"));
    }
  }
  for (int32_t p = 0; p < pool_.num_pages(); ++p) {
    if (refs[p] != pool_.ref_count(p)) {
      return absl::InternalError(StrCat("kv cache: page ", p, " has ref_count ",
                                        pool_.ref_count(p), " but ", refs[p], " table entries"));
    }
  }
  return absl::OkStatus();
}

}  // namespace strata::kvcache
