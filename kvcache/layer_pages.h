// LayerPages: host RAM for the layers of running requests that live in host memory (LayerKV,
// DESIGN.md §6 "memory pressure"). It cuts pinned host-tier slots (one block of every layer
// each) into single-layer pages of KvLayout::PageBytes(), so layer residency and the host tier
// share one budget:
//
//   host slot s (pinned):  [page (s,0)][page (s,1)] ... [page (s,L-1)]   each one layer's block
//
// A slot goes back to the host tier when none of its pages is in use. It does no copying: the
// TieredStore moves bytes through data().
//
// Owned and called by the engine thread only; not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace strata::kvcache {

// One single-layer page inside a pinned host slot.
struct HostPage {
  int32_t slot = -1;
  int32_t index = 0;  // [0, pages per slot)
  bool operator==(const HostPage&) const = default;
};

class LayerPages {
 public:
  // `acquire` pins a host slot (nullopt when none can be had), `release` unpins it, `data` is a
  // slot's bytes. pages_per_slot x page_bytes == the slot's size.
  LayerPages(int32_t pages_per_slot, size_t page_bytes,
             std::function<std::optional<int32_t>()> acquire, std::function<void(int32_t)> release,
             std::function<std::span<std::byte>(int32_t)> data);
  ~LayerPages();  // unpins every slot it holds
  LayerPages(const LayerPages&) = delete;
  LayerPages& operator=(const LayerPages&) = delete;

  // A page, or nullopt when no free page is left and no host slot can be pinned.
  std::optional<HostPage> Allocate();
  void Free(HostPage page);
  std::span<std::byte> data(HostPage page) const;

  int64_t num_used() const { return num_used_; }
  int32_t num_slots() const { return static_cast<int32_t>(used_in_slot_.size()); }

 private:
  int32_t pages_per_slot_;
  size_t page_bytes_;
  std::function<std::optional<int32_t>()> acquire_;
  std::function<void(int32_t)> release_;
  std::function<std::span<std::byte>(int32_t)> data_;
  std::vector<HostPage> free_;                      // free pages of the pinned slots
  std::unordered_map<int32_t, int32_t> used_in_slot_;  // pinned slot -> pages in use
  int64_t num_used_ = 0;
};

}  // namespace strata::kvcache
