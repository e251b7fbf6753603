// PagePool hands out page ids of the device tier's KV arena; it never touches page contents
// (the engine maps ids to byte offsets). Running out of pages is a normal outcome: Allocate
// returns std::nullopt and the caller waits or preempts (DESIGN.md §2).
//
// Owned and called by the engine thread only; not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace strata::kvcache {

class PagePool {
 public:
  explicit PagePool(int32_t num_pages);

  // A free page id, or nullopt when every page is in use. Pages are reused most-recently-freed
  // first, which keeps the hot part of the arena in cache.
  std::optional<int32_t> Allocate();
  // REQUIRES: `page` was returned by Allocate and not freed since.
  void Free(int32_t page);

  int32_t num_pages() const { return num_pages_; }
  int32_t num_free() const { return static_cast<int32_t>(free_.size()); }

 private:
  int32_t num_pages_;
  std::vector<int32_t> free_;
  std::vector<bool> in_use_;
};

}  // namespace strata::kvcache
