#include "kvcache/tiered_store.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>

#include "common/logging.h"

namespace strata::kvcache {
namespace {

// Host copy bandwidth, measured once: what a swap out + in costs (the scheduler weighs it
// against recomputing).
double MeasureCopyBandwidth() {
  constexpr size_t kBytes = 16 << 20;
  std::vector<std::byte> a(kBytes, std::byte{1}), b(kBytes);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 2; ++i) std::memcpy(b.data(), a.data(), kBytes);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s > 0 ? 2.0 * kBytes / s : 1e10;
}

}  // namespace

TieredStore::TieredStore(const KvLayout& layout, const TierOptions& options, PageIo* io,
                         std::function<void()> wake)
    : layout_(layout),
      options_(options),
      io_(io),
      wake_(std::move(wake)),
      host_(options.host_capacity_bytes, layout.PageBytes() * layout.num_layers,
            [io](size_t bytes) { return io->AllocateHost(bytes); }),
      layer_pages_(
          layout.num_layers, layout.PageBytes(), [this] { return AcquireHostSlot(); },
          [this](int32_t slot) { host_.Unpin(slot); },
          [this](int32_t slot) { return host_.data(slot); }) {}

absl::StatusOr<std::unique_ptr<TieredStore>> TieredStore::Create(const KvLayout& layout,
                                                                 const TierOptions& options,
                                                                 PageIo* io,
                                                                 std::function<void()> wake) {
  RETURN_IF_ERROR(layout.Validate());
  CHECK(io != nullptr);
  std::unique_ptr<TieredStore> store(new TieredStore(layout, options, io, std::move(wake)));
  RETURN_IF_ERROR(store->Init());
  return store;
}

absl::Status TieredStore::Init() {
  copy_bytes_per_s_ = MeasureCopyBandwidth();
  if (options_.disk.capacity_bytes <= 0) return absl::OkStatus();
  FileSystem* fs = options_.fs;
  if (fs == nullptr) {
    own_fs_ = std::make_unique<PosixFileSystem>();
    fs = own_fs_.get();
  }
  DiskTierOptions disk = options_.disk;
  disk.record_payload_bytes = host_.block_bytes();
  ASSIGN_OR_RETURN(disk_, DiskTier::Open(fs, disk));
  return absl::OkStatus();
}

TieredStore::~TieredStore() {
  if (disk_) disk_->Drain();  // read callbacks write into host slots
}

int64_t TieredStore::HostRun(std::span<const BlockHash> hashes) {
  int64_t n = 0;
  while (n < static_cast<int64_t>(hashes.size()) && host_.Find(hashes[n], /*touch=*/true)) ++n;
  return n;
}

int64_t TieredStore::DiskRun(std::span<const BlockHash> hashes) const {
  if (!disk_) return 0;
  int64_t n = 0;
  while (n < static_cast<int64_t>(hashes.size()) &&
         (fetching_.contains(hashes[n]) || disk_->Contains(hashes[n]))) {
    ++n;
  }
  return n;
}

bool TieredStore::Fetching(std::span<const BlockHash> hashes) const {
  return std::any_of(hashes.begin(), hashes.end(),
                     [&](const BlockHash& h) { return fetching_.contains(h); });
}

bool TieredStore::Fetch(std::span<const BlockHash> hashes) {
  for (const BlockHash& hash : hashes) {
    if (fetching_.contains(hash) || host_.Contains(hash)) continue;
    std::optional<int32_t> slot = AcquireHostSlot();
    if (!slot) break;
    fetching_.emplace(hash, *slot);
    std::span<std::byte> dst = host_.data(*slot);
    const int32_t s = *slot;
    const bool queued = disk_->Read(hash, [this, hash, s, dst](absl::Status status,
                                                               std::span<const std::byte> bytes) {
      // The disk tier verified the record: its payload is record_payload_bytes == a slot.
      if (status.ok()) std::memcpy(dst.data(), bytes.data(), dst.size());
      {
        std::lock_guard<std::mutex> lock(mu_);
        done_.push_back({hash, s, std::move(status)});
      }
      if (wake_) wake_();
    });
    if (!queued) {  // gone from the disk index since DiskRun
      fetching_.erase(hash);
      host_.Unpin(s);
      break;
    }
  }
  return Fetching(hashes);
}

bool TieredStore::Poll() {
  std::vector<Fetched> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done.swap(done_);
  }
  for (Fetched& f : done) {
    fetching_.erase(f.hash);
    if (!f.status.ok()) {  // the disk tier counted and logged it: a miss
      host_.Unpin(f.slot);
      continue;
    }
    stats_.disk_to_host_bytes += static_cast<int64_t>(host_.block_bytes());
    // Fetched blocks were hit on disk: they keep their place there, so count them as re-used.
    host_.Publish(f.slot, f.hash, options_.disk_min_hits, kAllLowerTiers, /*from_disk=*/true);
  }
  return !done.empty();
}

bool TieredStore::LoadToDevice(const BlockHash& hash, std::span<const int32_t> pages,
                               bool* from_disk) {
  // HostRun already refreshed the run in LRU order, and ProtectRun keeps it in place while the
  // load's own device allocations demote other blocks into the host tier.
  std::optional<int32_t> slot = host_.Find(hash, /*touch=*/false);
  if (!slot) return false;
  absl::Status s = CopyToDevice(host_.data(*slot), pages);
  if (!s.ok()) {
    CountError("host/io", s);
    return false;
  }
  *from_disk = host_.RecordHit(*slot);
  stats_.host_to_device_bytes += static_cast<int64_t>(host_.block_bytes());
  stats_.host_hit_tokens += layout_.block_size;
  stats_.disk_hit_tokens += *from_disk ? layout_.block_size : 0;
  return true;
}

void TieredStore::ProtectRun(std::span<const BlockHash> hashes, bool on) {
  for (const BlockHash& h : hashes) host_.Protect(h, on);
}

void TieredStore::Demote(const BlockHash& hash, std::span<const int32_t> pages, int32_t hits,
                         uint8_t lower_tiers) {
  if ((lower_tiers & kTierHost) == 0 || host_.num_slots() == 0) {
    if ((lower_tiers & kTierDisk) == 0 || !disk_ || disk_->Contains(hash)) return;
    scratch_.resize(host_.block_bytes());
    if (absl::Status s = CopyFromDevice(pages, scratch_); !s.ok()) {
      CountError("host/io", s);
      return;
    }
    stats_.device_to_host_bytes += static_cast<int64_t>(scratch_.size());
    DemoteToDisk(hash, scratch_);
    return;
  }
  // Already below: in host, on its way up, or on disk (a cold block is not copied up again).
  if (host_.Contains(hash) || fetching_.contains(hash) || (disk_ && disk_->Contains(hash))) return;
  std::optional<int32_t> slot = AcquireHostSlot();
  if (!slot) return;
  absl::Status s = CopyFromDevice(pages, host_.data(*slot));
  if (!s.ok()) {
    CountError("host/io", s);
    host_.Unpin(*slot);
    return;
  }
  stats_.device_to_host_bytes += static_cast<int64_t>(host_.block_bytes());
  host_.Publish(*slot, hash, hits, lower_tiers, /*from_disk=*/false);
}

std::optional<int32_t> TieredStore::AcquireHostSlot() {
  std::optional<HostVictim> victim;
  std::optional<int32_t> slot = host_.Acquire(&victim);
  if (slot && victim && (victim->lower_tiers & kTierDisk) != 0 &&
      victim->hits >= options_.disk_min_hits) {
    DemoteToDisk(victim->hash, host_.data(*slot));  // its bytes are still in the slot
  }
  return slot;
}

void TieredStore::DemoteToDisk(const BlockHash& hash, std::span<const std::byte> block) {
  if (!disk_ || disk_->Contains(hash)) return;
  if (disk_->Write(hash, block)) stats_.host_to_disk_bytes += static_cast<int64_t>(block.size());
}

bool TieredStore::SwapOut(RequestId id, const std::vector<std::vector<int32_t>>& pages) {
  CHECK(!swaps_.contains(id) && static_cast<int32_t>(pages.size()) == layout_.num_layers);
  std::vector<int32_t> slots;
  auto abandon = [&] {
    for (int32_t s : slots) host_.Unpin(s);
    return false;
  };
  for (size_t b = 0; b < pages[0].size(); ++b) {
    std::optional<int32_t> slot = AcquireHostSlot();
    if (!slot) return abandon();
    slots.push_back(*slot);
    if (absl::Status s = CopyFromDevice(BlockPages(pages, b), host_.data(*slot)); !s.ok()) {
      CountError("host/io", s);
      return abandon();
    }
  }
  stats_.device_to_host_bytes += static_cast<int64_t>(slots.size() * host_.block_bytes());
  ++stats_.swap_outs;
  swaps_.emplace(id, std::move(slots));
  return true;
}

bool TieredStore::SwapIn(RequestId id, const std::vector<std::vector<int32_t>>& pages,
                         const std::vector<bool>& skip) {
  auto it = swaps_.find(id);
  CHECK(it != swaps_.end() && static_cast<int32_t>(pages.size()) == layout_.num_layers);
  const std::vector<int32_t>& slots = it->second;
  CHECK(pages[0].size() == slots.size() && skip.size() == slots.size());
  for (size_t b = 0; b < slots.size(); ++b) {
    if (skip[b]) continue;
    if (absl::Status s = CopyToDevice(host_.data(slots[b]), BlockPages(pages, b)); !s.ok()) {
      CountError("host/io", s);
      DropSwap(id);
      return false;
    }
    stats_.host_to_device_bytes += static_cast<int64_t>(host_.block_bytes());
  }
  DropSwap(id);
  ++stats_.swap_ins;
  return true;
}

void TieredStore::DropSwap(RequestId id) {
  auto it = swaps_.find(id);
  if (it == swaps_.end()) return;
  for (int32_t s : it->second) host_.Unpin(s);
  swaps_.erase(it);
}

bool TieredStore::PageToHost(int32_t device_page, HostPage page) {
  if (absl::Status s = io_->ReadPage(device_page, layer_pages_.data(page)); !s.ok()) {
    CountError("host/io", s);
    return false;
  }
  stats_.device_to_host_bytes += static_cast<int64_t>(layout_.PageBytes());
  return true;
}

bool TieredStore::PageToDevice(HostPage page, int32_t device_page) {
  if (absl::Status s = io_->WritePage(device_page, layer_pages_.data(page)); !s.ok()) {
    CountError("host/io", s);
    return false;
  }
  stats_.host_to_device_bytes += static_cast<int64_t>(layout_.PageBytes());
  return true;
}

void TieredStore::CountLayerMoves(int64_t offloads, int64_t restores, int64_t stream_bytes) {
  stats_.layer_offloads += offloads;
  stats_.layer_restores += restores;
  stats_.layer_stream_bytes += stream_bytes;
}

double TieredStore::SwapSeconds(int64_t bytes) const {
  return 2.0 * static_cast<double>(bytes) / copy_bytes_per_s_;
}

std::vector<int32_t> TieredStore::BlockPages(const std::vector<std::vector<int32_t>>& pages,
                                            size_t block) {
  std::vector<int32_t> column(pages.size());
  for (size_t l = 0; l < pages.size(); ++l) column[l] = pages[l][block];
  return column;
}

absl::Status TieredStore::CopyFromDevice(std::span<const int32_t> pages,
                                         std::span<std::byte> out) {
  const size_t page_bytes = layout_.PageBytes();
  CHECK(out.size() == pages.size() * page_bytes);
  for (size_t l = 0; l < pages.size(); ++l) {
    RETURN_IF_ERROR(io_->ReadPage(pages[l], out.subspan(l * page_bytes, page_bytes)));
  }
  return absl::OkStatus();
}

absl::Status TieredStore::CopyToDevice(std::span<const std::byte> in,
                                       std::span<const int32_t> pages) {
  const size_t page_bytes = layout_.PageBytes();
  CHECK(in.size() == pages.size() * page_bytes);
  for (size_t l = 0; l < pages.size(); ++l) {
    RETURN_IF_ERROR(io_->WritePage(pages[l], in.subspan(l * page_bytes, page_bytes)));
  }
  return absl::OkStatus();
}

void TieredStore::CountError(const std::string& tier_kind, const absl::Status& status) {
  if (stats_.errors[tier_kind]++ == 0) {
    LOG_WARN("kv tier error ({}), served as a miss: {}", tier_kind,
             std::string(status.message()));
  }
}

TierStats TieredStore::stats() const {
  TierStats s = stats_;
  s.host_slots = host_.num_slots();
  s.host_used = host_.num_used();
  s.host_pinned = host_.num_pinned();
  s.host_layer_pages = layer_pages_.num_used();
  s.fetches_in_flight = fetches_in_flight();
  if (disk_) {
    const DiskTierStats d = disk_->stats();
    s.disk_records = d.records;
    s.disk_writes_in_flight = d.writes_in_flight;
    s.disk_capacity_records = disk_->capacity_records();
    for (int k = 0; k < kNumDiskErrorKinds; ++k) {
      if (d.errors[k] > 0) {
        s.errors["disk/" + std::string(DiskErrorKindName(static_cast<DiskErrorKind>(k)))] +=
            d.errors[k];
      }
    }
  }
  return s;
}

}  // namespace strata::kvcache
