#include "kvcache/host_tier.h"

#include "common/status.h"

namespace strata::kvcache {

HostTier::HostTier(int64_t capacity_bytes, size_t block_bytes)
    : block_bytes_(block_bytes),
      num_slots_(block_bytes == 0 ? 0 : static_cast<int32_t>(capacity_bytes / block_bytes)) {
  CHECK(capacity_bytes >= 0);
  // new[] without value-initialisation: the kernel maps the pages on first touch.
  arena_.reset(new std::byte[static_cast<size_t>(num_slots_) * block_bytes_]);
  slots_.resize(num_slots_);
  free_.reserve(num_slots_);
  for (int32_t s = num_slots_ - 1; s >= 0; --s) free_.push_back(s);
}

std::optional<int32_t> HostTier::Find(const BlockHash& hash, bool touch) {
  auto it = index_.find(hash);
  if (it == index_.end()) return std::nullopt;
  Slot& slot = slots_[it->second];
  if (touch) lru_.splice(lru_.end(), lru_, slot.lru);
  return it->second;
}

std::optional<int32_t> HostTier::Acquire(std::optional<HostVictim>* victim) {
  victim->reset();
  int32_t s;
  if (!free_.empty()) {
    s = free_.back();
    free_.pop_back();
  } else {
    auto it = lru_.begin();
    while (it != lru_.end() && slots_[*it].protect > 0) ++it;
    if (it == lru_.end()) return std::nullopt;
    s = *it;
    lru_.erase(it);
    Slot& old = slots_[s];
    *victim = HostVictim{.hash = old.hash, .hits = old.hits, .lower_tiers = old.lower_tiers};
    index_.erase(old.hash);
  }
  slots_[s] = Slot();
  slots_[s].state = State::kPinned;
  ++num_pinned_;
  return s;
}

void HostTier::Publish(int32_t s, const BlockHash& hash, int32_t hits, uint8_t lower_tiers,
                       bool from_disk) {
  Slot& slot = slots_[s];
  CHECK(slot.state == State::kPinned);
  if (index_.contains(hash)) {
    Unpin(s);
    return;
  }
  --num_pinned_;
  slot.state = State::kCached;
  slot.hash = hash;
  slot.hits = hits;
  slot.lower_tiers = lower_tiers;
  slot.from_disk = from_disk;
  slot.lru = lru_.insert(lru_.end(), s);
  index_.emplace(hash, s);
}

void HostTier::Unpin(int32_t s) {
  Slot& slot = slots_[s];
  CHECK(slot.state == State::kPinned);
  --num_pinned_;
  slot = Slot{};
  free_.push_back(s);
}

void HostTier::Protect(const BlockHash& hash, bool on) {
  auto it = index_.find(hash);
  if (it == index_.end()) return;
  Slot& slot = slots_[it->second];
  slot.protect += on ? 1 : (slot.protect > 0 ? -1 : 0);
}

bool HostTier::RecordHit(int32_t s) {
  Slot& slot = slots_[s];
  CHECK(slot.state == State::kCached);
  ++slot.hits;
  const bool first_from_disk = slot.from_disk;
  slot.from_disk = false;
  return first_from_disk;
}

std::span<std::byte> HostTier::data(int32_t s) {
  CHECK(s >= 0 && s < num_slots_);
  return {arena_.get() + static_cast<size_t>(s) * block_bytes_, block_bytes_};
}

}  // namespace strata::kvcache
