// Scheduler's LayerKV planning (DESIGN.md §6 "memory pressure"; LayerKV, OrbitFlow): when device
// pages are what keeps a sequence from its step, layers of other running sequences move to host
// RAM and are streamed through staging pages while they run; when nothing waits and the pool has
// room, they come back. Which sequences give up layers is re-decided at every shortage: the
// lowest priority first, then the one with the most TPOT slack (it can best afford the slower
// steps), then the one holding the most KV (the most pages per layer moved).
#include <algorithm>

#include "common/logging.h"
#include "engine/scheduler.h"

namespace strata::engine {

bool Scheduler::ReserveKv(Sequence& seq, int64_t num_tokens) {
  if (seq.kv_access.residual_tokens > 0) return ReserveKivi(seq, num_tokens);
  num_tokens -= seq.evicted_tokens;  // KV entries, not positions
  if (seq.kv_pool != 0) return Kv(seq).Reserve(seq.id, num_tokens);  // no LayerKV there
  if (kv_->Reserve(seq.id, num_tokens)) return true;
  return MoveLayersForRoom(kv_->PagesToReserve(seq.id, num_tokens), seq.id) &&
         kv_->Reserve(seq.id, num_tokens);
}

bool Scheduler::ReserveKivi(Sequence& seq, int64_t num_tokens) {
  kvcache::KvCacheManager& kv = Kv(seq);
  const int32_t r = seq.kv_access.residual_tokens;
  return kv.Reserve(seq.id, kvcache::KiviQuantAfter(seq.quant_tokens, num_tokens, r)) &&
         kv.ReserveResidual(seq.id, kv.layout().ResidualPages(r));
}

double Scheduler::LayerLoadBytes(const ScheduledSeq& q) const {
  const kvcache::KvLayout& layout = kv_->layout();
  if (!kv_->Contains(q.id)) return 0;  // another pool: no host layers
  return static_cast<double>(kv_->num_host_layers(q.id)) *
         static_cast<double>(layout.BlocksFor(q.start)) * static_cast<double>(layout.PageBytes());
}

bool Scheduler::IsForkParent(RequestId id) const {
  return std::any_of(waiting_.begin(), waiting_.end(),
                     [&](RequestId w) { return seqs_.at(w)->fork_parent == id; });
}

bool Scheduler::MoveLayersForRoom(int64_t pages, RequestId except) {
  if (!config_.layer_offload || kv_->tiers() == nullptr) return false;
  std::vector<RequestId> donors;
  for (RequestId id : running_) {
    // A sparse sequence's KV moves under compaction: its layers stay on the device.
    if (id != except && kv_->Contains(id) && !IsForkParent(id) && !seqs_.at(id)->sparsity) {
      donors.push_back(id);
    }
  }
  const double now = Now();
  std::stable_sort(donors.begin(), donors.end(), [&](RequestId a, RequestId b) {
    const Sequence& x = *seqs_.at(a);
    const Sequence& y = *seqs_.at(b);
    if (x.slo.priority != y.slo.priority) return x.slo.priority < y.slo.priority;
    const double sx = TpotSlack(x, now), sy = TpotSlack(y, now);
    if (sx != sy) return sx > sy;
    return kv_->num_blocks(a) > kv_->num_blocks(b);
  });
  const int32_t layers = kv_->layout().num_layers;
  for (RequestId id : donors) {
    const int64_t deficit = pages - kv_->pool().num_free();
    if (deficit <= 0) break;
    // The fewest of its device layers that cover the deficit (all of them if none do).
    const int32_t device_layers = layers - kv_->num_host_layers(id);
    int32_t k = 1;
    while (k < device_layers && kv_->PagesFreedByMoving(id, k) < deficit) ++k;
    if (kv_->PagesFreedByMoving(id, k) <= 0) continue;
    const int32_t moved = kv_->MoveLayersToHost(id, k);
    if (moved > 0) {
      LOG_DEBUG("request {}: {} layers to host RAM ({} now), for {} pages", id, moved,
                kv_->num_host_layers(id), deficit);
    }
  }
  return kv_->pool().num_free() >= pages;
}

void Scheduler::ReplanLayers() {
  if (!config_.layer_offload || kv_->tiers() == nullptr || !waiting_.empty()) return;
  const bool any_in_host = std::any_of(running_.begin(), running_.end(), [&](RequestId id) {
    return kv_->Contains(id) && kv_->num_host_layers(id) > 0;
  });
  if (!any_in_host) return;
  // Room for every running sequence to grow by a block before anything comes back.
  const int64_t headroom = static_cast<int64_t>(running_.size()) * (kv_->layout().num_layers + 2);
  std::vector<RequestId> order(running_.begin(), running_.end());
  std::stable_sort(order.begin(), order.end(), [&](RequestId a, RequestId b) {
    return seqs_.at(a)->slo.priority > seqs_.at(b)->slo.priority;
  });
  for (RequestId id : order) {
    while (kv_->Contains(id) && kv_->num_host_layers(id) > 0 &&
           kv_->pool().num_free() - kv_->num_blocks(id) >= headroom) {
      if (kv_->MoveLayersToDevice(id, 1) == 0) return;
    }
  }
}

}  // namespace strata::engine
