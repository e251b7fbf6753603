// TieredStore: the KV tiers below the device (DESIGN.md §5): host RAM (HostTier) and local disk
// (DiskTier), and the transfers between them and the device pool.
//
//   device --evict (or write-through at publish)--> host --evict, hit >= disk_min_hits--> disk
//   device <--load (copy into fresh pages)-------- host <--fetch (async read, I/O thread)--- disk
//   device --swap out (preempted request)--------> host (pinned slots) --swap in--> device
//
// Device<->host copies are synchronous memory copies on the engine thread (on CUDA they are
// stream-ordered copies). Disk I/O never blocks the engine thread: Fetch queues reads whose
// completion callbacks (on the disk tier's I/O thread) fill pinned host slots, record the result
// and call `wake`; the engine thread's Poll() then publishes the blocks in the host tier.
// Disk writes are fire-and-forget: a block becomes visible on disk once its write completed.
//
// Owned and called by the engine thread (Poll included); the completion callbacks are the only
// other thread, and they touch only done_ (under mu_) and the pinned slots they own.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "kvcache/block_hash.h"
#include "kvcache/block_pool.h"
#include "kvcache/disk_tier.h"
#include "kvcache/file_system.h"
#include "kvcache/host_tier.h"
#include "kvcache/kv_layout.h"
#include "kvcache/layer_pages.h"
#include "kvcache/page_io.h"

namespace strata::kvcache {

using RequestId = uint64_t;

struct TierOptions {
  int64_t host_capacity_bytes = 0;  // 0 = no host tier (the config requires one for a disk tier:
                                    // fetches land in host slots)
  bool write_through = false;       // demote full blocks at publish, not at device eviction
  int32_t disk_min_hits = 2;        // host evictions reach the disk only after this many hits
  DiskTierOptions disk;             // disk.capacity_bytes 0 = no disk tier
  FileSystem* fs = nullptr;         // null: the default POSIX file system
};

// Cumulative counters, for the engine's stats and the metrics.
struct TierStats {
  int64_t host_hit_tokens = 0;  // prefix tokens loaded from host (including those from disk)
  int64_t disk_hit_tokens = 0;  // ... of which had been fetched from disk for this lookup
  int64_t device_to_host_bytes = 0;
  int64_t host_to_device_bytes = 0;
  int64_t host_to_disk_bytes = 0;
  int64_t disk_to_host_bytes = 0;
  int64_t swap_outs = 0;
  int64_t swap_ins = 0;
  int64_t layer_offloads = 0;   // request layers moved to host RAM while running (LayerKV)
  int64_t layer_restores = 0;   // ... and moved back to the device
  int64_t layer_stream_bytes = 0;  // bytes streamed host<->device for them during steps
  int64_t host_slots = 0;
  int64_t host_used = 0;
  int64_t host_pinned = 0;      // slots held by swapped requests, in-flight fetches, layers
  int64_t host_layer_pages = 0; // single-layer pages held by running requests' host layers
  int64_t disk_records = 0;
  int64_t disk_capacity_records = 0;
  int64_t fetches_in_flight = 0;
  int64_t disk_writes_in_flight = 0;
  std::map<std::string, int64_t> errors;  // "tier/kind" -> count
};

class TieredStore {
 public:
  // `io` must outlive the store. `wake` runs on an I/O thread after each disk read completed.
  static absl::StatusOr<std::unique_ptr<TieredStore>> Create(const KvLayout& layout,
                                                             const TierOptions& options,
                                                             PageIo* io,
                                                             std::function<void()> wake);
  ~TieredStore();  // waits for in-flight disk I/O

  bool has_disk() const { return disk_ != nullptr; }
  bool write_through() const { return options_.write_through; }
  size_t block_bytes() const { return host_.block_bytes(); }

  // Leading blocks of `hashes` cached in host RAM (refreshed in its LRU order).
  int64_t HostRun(std::span<const BlockHash> hashes);
  // Leading blocks of `hashes` on disk or already being fetched.
  int64_t DiskRun(std::span<const BlockHash> hashes) const;
  // Starts reading `hashes` from disk into host slots (those not already fetching or cached).
  // Returns whether any of them is in flight afterwards.
  bool Fetch(std::span<const BlockHash> hashes);
  bool Fetching(std::span<const BlockHash> hashes) const;
  // Engine thread: publishes finished fetches in the host tier. True when any finished.
  bool Poll();
  int64_t fetches_in_flight() const { return static_cast<int64_t>(fetching_.size()); }

  // Keeps the host blocks of `hashes` from being evicted (on) until released (off): call around
  // a prefix load, whose own device allocations demote blocks into the host tier.
  void ProtectRun(std::span<const BlockHash> hashes, bool on);
  // Copies host block `hash` into device pages `pages[layer]`. False when it is not (or no
  // longer) cached in host RAM or the copy failed. `from_disk` tells whether it had come up from
  // the disk for this lookup.
  bool LoadToDevice(const BlockHash& hash, std::span<const int32_t> pages, bool* from_disk);
  // Copies the block held by device pages `pages[layer]` down to host (or straight to disk when
  // `lower_tiers` excludes host), unless already there.
  void Demote(const BlockHash& hash, std::span<const int32_t> pages, int32_t hits,
              uint8_t lower_tiers);

  // Preemption by swap: copies a request's blocks (pages[layer][block]) to pinned host slots.
  // False (nothing kept) when the host tier cannot pin that many slots.
  bool SwapOut(RequestId id, const std::vector<std::vector<int32_t>>& pages);
  // Copies the swapped blocks back into `pages[layer][block]` and frees the slots. Blocks marked
  // in `skip` (already present on the device) are not copied.
  bool SwapIn(RequestId id, const std::vector<std::vector<int32_t>>& pages,
              const std::vector<bool>& skip);
  void DropSwap(RequestId id);
  bool HasSwap(RequestId id) const { return swaps_.contains(id); }
  // Seconds a swap out + in of `bytes` costs at the measured host copy bandwidth.
  double SwapSeconds(int64_t bytes) const;

  // LayerKV: single-layer host pages (cut from pinned host slots) for the layers of running
  // requests kept in host RAM. nullopt when the host tier cannot pin another slot.
  std::optional<HostPage> AllocateLayerPage() { return layer_pages_.Allocate(); }
  void FreeLayerPage(HostPage page) { layer_pages_.Free(page); }
  std::span<std::byte> LayerPageData(HostPage page) const { return layer_pages_.data(page); }
  // Copies one device page into / out of a layer page (counted as device<->host bytes).
  bool PageToHost(int32_t device_page, HostPage page);
  bool PageToDevice(HostPage page, int32_t device_page);
  void CountLayerMoves(int64_t offloads, int64_t restores, int64_t stream_bytes);

  TierStats stats() const;

 private:
  struct Fetched {
    BlockHash hash;
    int32_t slot = 0;
    absl::Status status;
  };
  TieredStore(const KvLayout& layout, const TierOptions& options, PageIo* io,
              std::function<void()> wake);
  absl::Status Init();
  // A host slot for new contents; a cached block it pushes out goes to disk when it qualifies.
  std::optional<int32_t> AcquireHostSlot();
  void DemoteToDisk(const BlockHash& hash, std::span<const std::byte> block);
  // Block `block`'s page in every layer of block tables pages[layer][block].
  static std::vector<int32_t> BlockPages(const std::vector<std::vector<int32_t>>& pages,
                                         size_t block);
  absl::Status CopyFromDevice(std::span<const int32_t> pages, std::span<std::byte> out);
  absl::Status CopyToDevice(std::span<const std::byte> in, std::span<const int32_t> pages);
  void CountError(const std::string& tier_kind, const absl::Status& status);

  KvLayout layout_;
  TierOptions options_;
  PageIo* io_;
  std::function<void()> wake_;
  HostTier host_;
  LayerPages layer_pages_;  // after host_: gives its slots back before host_ goes
  std::unique_ptr<FileSystem> own_fs_;
  std::unique_ptr<DiskTier> disk_;
  double copy_bytes_per_s_ = 0;
  TierStats stats_;
  std::unordered_map<BlockHash, int32_t, BlockHashHasher> fetching_;  // hash -> pinned slot
  std::unordered_map<RequestId, std::vector<int32_t>> swaps_;       // id -> pinned slots
  std::vector<std::byte> scratch_;  // a block, for device -> disk without the host tier

  std::mutex mu_;
  std::vector<Fetched> done_;  // guarded by mu_
};

}  // namespace strata::kvcache
