// PageIo: how the KV tiers reach the contents of device pages. The kvcache layer only knows page
// ids; the engine, which owns the KV arena, implements this over Device::CopyToHost /
// CopyToDevice (a plain memcpy on the CPU backend, a D2H/H2D copy on CUDA), and hands out the
// host tier's memory (Device::AllocateHost).
//
// Called by the engine thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "common/status.h"
#include "kernels/device.h"

namespace strata::kvcache {

// LayerKV: one device page to fill from host memory before layer `layer` runs (a load), or to
// copy back to host memory after it wrote new tokens there (a store).
struct LayerPageCopy {
  int32_t layer = 0;
  int32_t page = 0;           // device page (a staging page of the request)
  std::byte* host = nullptr;  // KvLayout::PageBytes() bytes of host memory
};

class PageIo {
 public:
  virtual ~PageIo() = default;
  // Copies device page `page` (KvLayout::PageBytes() bytes) into `out`.
  virtual absl::Status ReadPage(int32_t page, std::span<std::byte> out) = 0;
  // Overwrites device page `page` with `in`.
  virtual absl::Status WritePage(int32_t page, std::span<const std::byte> in) = 0;
  // Host memory for one of the host tier's arenas, the kind the device copies fastest
  // (Device::AllocateHost: page-locked on CUDA). Default: plain host memory.
  virtual absl::StatusOr<std::unique_ptr<kernels::Buffer>> AllocateHost(size_t bytes) {
    return kernels::AllocateHostBuffer(bytes);
  }
};

}  // namespace strata::kvcache
