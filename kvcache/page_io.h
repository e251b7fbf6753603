// PageIo: how the KV tiers reach the contents of device pages. The kvcache layer only knows page
// ids; the engine, which owns the KV arena, implements this over Device::CopyToHost /
// CopyToDevice (a plain memcpy on the CPU backend, a D2H/H2D copy on CUDA).
//
// Called by the engine thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "common/status.h"

namespace strata::kvcache {

class PageIo {
 public:
  virtual ~PageIo() = default;
  // Copies device page `page` (KvLayout::PageBytes() bytes) into `out`.
  virtual absl::Status ReadPage(int32_t page, std::span<std::byte> out) = 0;
  // Overwrites device page `page` with `in`.
  virtual absl::Status WritePage(int32_t page, std::span<const std::byte> in) = 0;
};

}  // namespace strata::kvcache
