// KvCacheManager's LayerKV half: layers of running requests kept in host RAM and streamed
// through staging pages (see "LayerKV" in kv_cache_manager.h).
#include <algorithm>

#include "kvcache/kv_cache_manager.h"

namespace strata::kvcache {

int32_t KvCacheManager::num_host_layers(RequestId id) const { return Get(id).num_host_layers; }

int64_t KvCacheManager::PagesToReserve(RequestId id, int64_t num_tokens) const {
  const RequestKv& req = Get(id);
  const int64_t add = std::max<int64_t>(0, layout_.BlocksFor(num_tokens) - NumBlocks(req));
  const int32_t staging = req.num_host_layers > 0 ? 2 : 0;
  return add * (layout_.num_layers - req.num_host_layers + staging);
}

int64_t KvCacheManager::PagesFreedByMoving(RequestId id, int32_t k) const {
  const RequestKv& req = Get(id);
  int64_t freed = req.num_host_layers == 0 ? -2 * NumBlocks(req) : 0;
  for (int32_t l = layout_.num_layers - 1; l >= 0 && k > 0; --l) {
    if (req.InHost(l)) continue;
    --k;
    for (int32_t page : req.pages[l]) freed += pool_.ref_count(page) == 1 ? 1 : 0;
  }
  return freed;
}

void KvCacheManager::FreeHostPages(std::vector<HostPage>& pages) {
  for (const HostPage& p : pages) tiers_->FreeLayerPage(p);
  pages.clear();
}

int32_t KvCacheManager::MoveLayersToHost(RequestId id, int32_t max_layers) {
  RequestKv& req = Get(id);
  const int64_t blocks = NumBlocks(req);
  if (tiers_ == nullptr || blocks == 0 || max_layers <= 0) return 0;
  // The first move must free (or find free) enough pages for the two staging sets: known before
  // anything is copied.
  max_layers = std::min(max_layers, layout_.num_layers - req.num_host_layers);
  if (pool_.num_free() + PagesFreedByMoving(id, max_layers) < 0) return 0;
  // Copy the highest device layers out first; nothing on the device changes yet.
  std::vector<int32_t> moved;
  std::vector<std::vector<HostPage>> copies;
  for (int32_t l = layout_.num_layers - 1;
       l >= 0 && static_cast<int32_t>(moved.size()) < max_layers; --l) {
    if (req.InHost(l)) continue;
    std::vector<HostPage> host;
    bool ok = true;
    for (int64_t b = 0; b < blocks && ok; ++b) {
      std::optional<HostPage> p = tiers_->AllocateLayerPage();
      if (p) host.push_back(*p);
      ok = p && tiers_->PageToHost(req.pages[l][b], *p);
    }
    if (!ok) {
      FreeHostPages(host);
      break;
    }
    moved.push_back(l);
    copies.push_back(std::move(host));
  }
  // Fewer layers than asked (the host tier filled up) may no longer pay for the staging.
  if (moved.empty() ||
      pool_.num_free() + PagesFreedByMoving(id, static_cast<int32_t>(moved.size())) < 0) {
    for (auto& host : copies) FreeHostPages(host);
    return 0;
  }
  std::vector<int32_t> order;  // tail blocks first, as Release does
  for (int64_t b = blocks - 1; b >= 0; --b) {
    for (int32_t l : moved) order.push_back(req.pages[l][b]);
  }
  pool_.Free(order);
  if (req.num_host_layers == 0) {
    std::optional<std::vector<int32_t>> staging = pool_.Allocate(static_cast<int32_t>(2 * blocks));
    CHECK(staging.has_value());  // the pages just freed cover it (checked above)
    req.staging[0].assign(staging->begin(), staging->begin() + blocks);
    req.staging[1].assign(staging->begin() + blocks, staging->end());
    req.host.resize(layout_.num_layers);
  }
  for (size_t i = 0; i < moved.size(); ++i) {
    const int32_t l = moved[i];
    req.host[l] = std::move(copies[i]);
    req.pages[l] = req.staging[l % 2];
  }
  req.num_host_layers += static_cast<int32_t>(moved.size());
  tiers_->CountLayerMoves(static_cast<int64_t>(moved.size()), 0, 0);
  return static_cast<int32_t>(moved.size());
}

int32_t KvCacheManager::MoveLayersToDevice(RequestId id, int32_t max_layers) {
  RequestKv& req = Get(id);
  const int64_t blocks = NumBlocks(req);
  int32_t moved = 0;
  for (int32_t l = 0; l < layout_.num_layers && moved < max_layers; ++l) {
    if (!req.InHost(l)) continue;
    if (pool_.num_free() < blocks) break;
    std::vector<int32_t> fresh = *pool_.Allocate(static_cast<int32_t>(blocks));
    bool ok = true;
    for (int64_t b = 0; b < blocks && ok; ++b) ok = tiers_->PageToDevice(req.host[l][b], fresh[b]);
    if (!ok) {
      pool_.Free(fresh);
      break;
    }
    FreeHostPages(req.host[l]);
    req.pages[l] = std::move(fresh);
    --req.num_host_layers;
    ++moved;
  }
  if (moved > 0 && req.num_host_layers == 0) {
    std::vector<int32_t> staging = req.staging[0];
    staging.insert(staging.end(), req.staging[1].begin(), req.staging[1].end());
    pool_.Free(staging);
    req.staging = {};
    req.host.clear();
  }
  if (moved > 0) tiers_->CountLayerMoves(0, moved, 0);
  return moved;
}

bool KvCacheManager::ReserveWithHostLayers(RequestKv& req, int64_t have, int64_t want) {
  const int64_t add = want - have;
  const int32_t device_layers = layout_.num_layers - req.num_host_layers;
  const int64_t device_pages = add * (device_layers + 2);
  if (device_pages > pool_.num_free()) return false;
  std::vector<std::vector<HostPage>> grown(layout_.num_layers);
  for (int32_t l = 0; l < layout_.num_layers; ++l) {
    if (!req.InHost(l)) continue;
    for (int64_t i = 0; i < add; ++i) {
      std::optional<HostPage> p = tiers_->AllocateLayerPage();
      if (!p) {
        for (auto& pages : grown) FreeHostPages(pages);
        return false;
      }
      grown[l].push_back(*p);
    }
  }
  std::vector<int32_t> fresh = *pool_.Allocate(static_cast<int32_t>(device_pages));
  auto next = fresh.begin();
  for (auto& staging : req.staging) {
    staging.insert(staging.end(), next, next + add);
    next += add;
  }
  for (int32_t l = 0; l < layout_.num_layers; ++l) {
    if (req.InHost(l)) {
      req.host[l].insert(req.host[l].end(), grown[l].begin(), grown[l].end());
      req.pages[l] = req.staging[l % 2];
    } else {
      req.pages[l].insert(req.pages[l].end(), next, next + add);
      next += add;
    }
  }
  return true;
}

void KvCacheManager::LayerCopies(RequestId id, int64_t start, int64_t end,
                                 std::vector<LayerPageCopy>* loads,
                                 std::vector<LayerPageCopy>* stores) const {
  const RequestKv& req = Get(id);
  if (req.num_host_layers == 0) return;
  const int64_t bs = layout_.block_size;
  const int64_t loaded = (start + bs - 1) / bs;  // blocks holding tokens before `start`
  const int64_t stored_end = (end + bs - 1) / bs;
  for (int32_t l = 0; l < layout_.num_layers; ++l) {
    if (!req.InHost(l)) continue;
    auto copy = [&](int64_t b) {
      return LayerPageCopy{.layer = l,
                           .page = req.pages[l][b],
                           .host = tiers_->LayerPageData(req.host[l][b]).data()};
    };
    for (int64_t b = 0; b < loaded; ++b) loads->push_back(copy(b));
    for (int64_t b = start / bs; b < stored_end; ++b) stores->push_back(copy(b));
  }
}

}  // namespace strata::kvcache
