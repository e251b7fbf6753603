// LayerStream: the LayerKV copies of one forward pass (DESIGN.md §6 "memory pressure"). Layers
// that a request keeps in host RAM run in device staging pages: before layer l runs, its blocks
// are copied in (loads), after it ran, the blocks that received new tokens are copied back
// (stores). One copy thread per forward pass runs the loads in layer order, ahead of the
// compute: layer l's loads may start once layer l - 2 (the last user of the same staging
// parity) has been stored, so they overlap layer l - 1's compute. On CUDA the same schedule maps
// to a copy stream and events.
//
// Created and driven by ModelRunner::Forward on the engine thread; the copy thread only writes
// staging pages no kernel touches meanwhile. No thread is started when there are no copies.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <thread>
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
  ~LayerStream();  // stops and joins the copy thread

  // Returns once layer l's pages are in place (or their load failed).
  absl::Status BeforeLayer(int32_t l);
  // Copies the blocks layer l wrote back to host memory; frees its staging parity for l + 2.
  absl::Status AfterLayer(int32_t l);

 private:
  void LoadAll();  // the copy thread

  kvcache::PageIo* io_;
  size_t page_bytes_;
  std::vector<std::vector<kvcache::LayerPageCopy>> loads_, stores_;  // [layer]
  std::thread copier_;

  std::mutex mu_;
  std::condition_variable cv_;
  int32_t loaded_ = -1;       // guarded by mu_: layers [0, loaded_] have their loads done
  int32_t stored_ = -1;       // guarded by mu_: layers [0, stored_] have run and been stored
  bool stop_ = false;         // guarded by mu_
  absl::Status load_status_;  // guarded by mu_
};

}  // namespace strata::engine
