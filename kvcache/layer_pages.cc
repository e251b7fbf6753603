#include "kvcache/layer_pages.h"

#include <algorithm>

#include "common/status.h"

namespace strata::kvcache {

LayerPages::LayerPages(int32_t pages_per_slot, size_t page_bytes,
                       std::function<std::optional<int32_t>()> acquire,
                       std::function<void(int32_t)> release,
                       std::function<std::span<std::byte>(int32_t)> data)
    : pages_per_slot_(pages_per_slot),
      page_bytes_(page_bytes),
      acquire_(std::move(acquire)),
      release_(std::move(release)),
      data_(std::move(data)) {
  CHECK(pages_per_slot_ > 0 && page_bytes_ > 0);
}

LayerPages::~LayerPages() {
  for (const auto& [slot, used] : used_in_slot_) release_(slot);
}

std::optional<HostPage> LayerPages::Allocate() {
  if (free_.empty()) {
    std::optional<int32_t> slot = acquire_();
    if (!slot) return std::nullopt;
    used_in_slot_[*slot] = 0;
    // Highest index first, so that pop_back hands out the slot's pages in order.
    for (int32_t i = pages_per_slot_ - 1; i >= 0; --i) free_.push_back({*slot, i});
  }
  const HostPage page = free_.back();
  free_.pop_back();
  ++used_in_slot_.at(page.slot);
  ++num_used_;
  return page;
}

void LayerPages::Free(HostPage page) {
  auto it = used_in_slot_.find(page.slot);
  CHECK(it != used_in_slot_.end() && it->second > 0);
  --num_used_;
  free_.push_back(page);
  if (--it->second > 0) return;
  // The slot's last page: give the whole slot back to the host tier.
  std::erase_if(free_, [&](const HostPage& p) { return p.slot == page.slot; });
  used_in_slot_.erase(it);
  release_(page.slot);
}

std::span<std::byte> LayerPages::data(HostPage page) const {
  return data_(page.slot).subspan(static_cast<size_t>(page.index) * page_bytes_, page_bytes_);
}

}  // namespace strata::kvcache
