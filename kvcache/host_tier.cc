#include "kvcache/host_tier.h"

#include <algorithm>

#include "common/logging.h"
#include "common/status.h"

namespace strata::kvcache {

HostTier::HostTier(int64_t capacity_bytes, size_t block_bytes, Allocator allocate)
    : block_bytes_(block_bytes),
      num_slots_(block_bytes == 0 ? 0 : static_cast<int32_t>(capacity_bytes / block_bytes)),
      slots_per_arena_(static_cast<int32_t>(
          std::max<size_t>(1, block_bytes == 0 ? 1 : kArenaBytes / block_bytes))),
      allocate_(std::move(allocate)) {
  CHECK(capacity_bytes >= 0);
  arenas_.resize((num_slots_ + slots_per_arena_ - 1) / slots_per_arena_);
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
  std::unique_ptr<kernels::Buffer>& arena = arenas_[s / slots_per_arena_];
  if (arena == nullptr) {
    const int32_t first = s / slots_per_arena_ * slots_per_arena_;
    const size_t bytes =
        static_cast<size_t>(std::min(slots_per_arena_, num_slots_ - first)) * block_bytes_;
    absl::StatusOr<std::unique_ptr<kernels::Buffer>> got =
        allocate_ ? allocate_(bytes) : kernels::AllocateHostBuffer(bytes);
    if (!got.ok() && allocate_) {
      LOG_WARN("host KV tier: {}; this arena uses plain host memory",
               std::string(got.status().message()));
      got = kernels::AllocateHostBuffer(bytes);
    }
    CHECK(got.ok());
    arena = std::move(got).value();
  }
  const size_t offset = static_cast<size_t>(s % slots_per_arena_) * block_bytes_;
  return {arena->as<std::byte>() + offset, block_bytes_};
}

int32_t HostTier::num_arenas_allocated() const {
  return static_cast<int32_t>(
      std::count_if(arenas_.begin(), arenas_.end(), [](const auto& a) { return a != nullptr; }));
}

}  // namespace strata::kvcache
