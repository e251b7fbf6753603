// LayerStream: the LayerKV copies of one forward pass (DESIGN.md §6 "memory pressure"). Layers
// that a request keeps in host RAM run in device staging pages: before layer l runs, its blocks
// are copied in (loads), after it ran, the blocks that received new tokens are copied back
// (stores). Layer l + 1's loads start on a copy thread while layer l computes (its staging pages
// are the other parity, free since layer l - 1's stores finished), so the copies overlap the
// compute; on CUDA the same schedule maps to a copy stream and events.
//
// Created and driven by ModelRunner::Forward on the engine thread; the copy thread only runs
// loads into staging pages no kernel touches meanwhile.
#pragma once

#include <cstdint>
#include <future>
#include <span>
#include <vector>

#include "common/status.h"
#include "kvcache/page_io.h"

namespace strata::engine {

class LayerStream {
 public:
  // `io` copies pages; each copy names its layer (< num_layers) and moves page_bytes bytes.
  LayerStream(kvcache::PageIo* io, size_t page_bytes, int32_t num_layers,
              std::span<const kvcache::LayerPageCopy> loads,
              std::span<const kvcache::LayerPageCopy> stores);
  ~LayerStream();  // waits for a load still in flight

  bool empty() const { return empty_; }
  // Layer l's pages are in place when this returns OK; starts layer l + 1's loads.
  absl::Status BeforeLayer(int32_t l);
  // Copies the blocks layer l wrote back to host memory.
  absl::Status AfterLayer(int32_t l);

 private:
  absl::Status Load(int32_t l);

  kvcache::PageIo* io_;
  size_t page_bytes_;
  bool empty_ = true;
  std::vector<std::vector<kvcache::LayerPageCopy>> loads_, stores_;  // [layer]
  std::future<absl::Status> next_;  // layer (next_layer_)'s loads, in flight
  int32_t next_layer_ = -1;
};

}  // namespace strata::engine
