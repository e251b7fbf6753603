#include "kvcache/page_pool.h"

#include "common/status.h"

namespace strata::kvcache {

PagePool::PagePool(int32_t num_pages) : num_pages_(num_pages), in_use_(num_pages, false) {
  free_.reserve(num_pages);
  // Reverse order so that the first allocations get pages 0, 1, 2, ...
  for (int32_t p = num_pages - 1; p >= 0; --p) free_.push_back(p);
}

std::optional<int32_t> PagePool::Allocate() {
  if (free_.empty()) return std::nullopt;
  int32_t page = free_.back();
  free_.pop_back();
  in_use_[page] = true;
  return page;
}

void PagePool::Free(int32_t page) {
  CHECK(page >= 0 && page < num_pages_ && in_use_[page]);
  in_use_[page] = false;
  free_.push_back(page);
}

}  // namespace strata::kvcache
