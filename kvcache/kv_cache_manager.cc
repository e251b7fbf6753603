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
  auto [it, inserted] = requests_.try_emplace(id);
  CHECK(inserted);
  RequestKv& req = it->second;
  req.seed = seed;
  req.pages.resize(layout_.num_layers);
  if (!enable_prefix_caching_ || tokens.empty()) return 0;

  const int32_t bs = layout_.block_size;
  // At most (n - 1) / bs blocks: the last token must be computed to get its logits.
  const int64_t max_blocks = static_cast<int64_t>(tokens.size() - 1) / bs;
  BlockHash parent = seed;
  for (int64_t b = 0; b < max_blocks; ++b) {
    parent = ChainHash(parent, tokens.subspan(b * bs, bs));
    req.block_hashes.push_back(parent);  // kept for Commit even on a miss: hashed once
    std::vector<int32_t> hit = LookupAllLayers(parent);
    if (hit.empty()) break;
    for (int32_t l = 0; l < layout_.num_layers; ++l) {
      pool_.Touch(hit[l]);
      req.pages[l].push_back(hit[l]);
    }
  }
  req.num_published_blocks = NumBlocks(req);
  return NumBlocks(req) * bs;
}

bool KvCacheManager::Reserve(RequestId id, int64_t num_tokens) {
  RequestKv& req = Get(id);
  const int64_t have = NumBlocks(req);
  const int64_t want = layout_.BlocksFor(num_tokens);
  if (want <= have) return true;
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
  if (!enable_prefix_caching_) return;
  for (int64_t b = req.num_published_blocks; b < full; ++b) {
    if (b == static_cast<int64_t>(req.block_hashes.size())) {
      BlockHash parent = b == 0 ? req.seed : req.block_hashes[b - 1];
      req.block_hashes.push_back(ChainHash(parent, tokens.subspan(b * bs, bs)));
    }
    for (int32_t l = 0; l < layout_.num_layers; ++l) {
      pool_.Publish(req.pages[l][b], req.block_hashes[b], l);
    }
  }
  req.num_published_blocks = std::max(req.num_published_blocks, full);
}

void KvCacheManager::Release(RequestId id) {
  auto it = requests_.find(id);
  CHECK(it != requests_.end());
  const RequestKv& req = it->second;
  std::vector<int32_t> order;
  order.reserve(NumBlocks(req) * layout_.num_layers);
  for (int64_t b = NumBlocks(req) - 1; b >= 0; --b) {
    for (const auto& layer_pages : req.pages) order.push_back(layer_pages[b]);
  }
  pool_.Free(order);
  requests_.erase(it);
}

void KvCacheManager::Fork(RequestId parent, RequestId child, int64_t shared_tokens) {
  CHECK(!requests_.contains(child));
  const RequestKv& from = Get(parent);
  const int64_t shared_blocks = shared_tokens / layout_.block_size;
  CHECK(shared_tokens >= 0 && shared_blocks <= NumBlocks(from));
  RequestKv to;
  to.seed = from.seed;
  to.pages.resize(layout_.num_layers);
  for (int32_t l = 0; l < layout_.num_layers; ++l) {
    for (int64_t b = 0; b < shared_blocks; ++b) {
      pool_.Touch(from.pages[l][b]);
      to.pages[l].push_back(from.pages[l][b]);
    }
  }
  const int64_t known = std::min<int64_t>(shared_blocks, from.block_hashes.size());
  to.block_hashes.assign(from.block_hashes.begin(), from.block_hashes.begin() + known);
  to.num_published_blocks = std::min(from.num_published_blocks, shared_blocks);
  requests_.emplace(child, std::move(to));
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
    for (const auto& layer_pages : req.pages) {
      if (layer_pages.size() != req.pages[0].size()) {
        return absl::InternalError(StrCat("kv cache: request ", id, " has ragged block tables"));
      }
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
