// DiskTier::Open: finds, classifies, creates and indexes the segment files (FORMAT.md).
#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <utility>

#include "common/logging.h"
#include "kvcache/disk_format.h"
#include "kvcache/disk_tier.h"
#include "kvcache/disk_tier_internal.h"

namespace strata::kvcache {
namespace {

// Record headers read per batch while indexing a segment.
constexpr int64_t kScanBatchSlots = 256;

std::string SegmentName(int number) {
  char name[32];
  std::snprintf(name, sizeof(name), "seg-%06d.kv", number);
  return name;
}

// The number of a `seg-NNNNNN.kv` name, or -1.
int ParseSegmentName(const std::string& name) {
  int number = -1;
  int consumed = 0;
  if (name.size() != 13 || std::sscanf(name.c_str(), "seg-%6d.kv%n", &number, &consumed) != 1 ||
      consumed != 13) {
    return -1;
  }
  return SegmentName(number) == name ? number : -1;
}

// Submits `batch` and waits for all of it.
std::vector<absl::StatusOr<size_t>> SyncBatch(FileSystem* fs, std::vector<IoRequest> batch) {
  std::vector<absl::StatusOr<size_t>> results(batch.size(), absl::UnknownError("pending"));
  std::mutex mu;
  std::condition_variable cv;
  size_t remaining = batch.size();
  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i].done = [&, i](absl::StatusOr<size_t> n) {
      std::lock_guard lock(mu);
      results[i] = std::move(n);
      if (--remaining == 0) cv.notify_all();
    };
  }
  fs->Submit(std::move(batch));
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return remaining == 0; });
  return results;
}

// The segment header of `path`, or nullopt when the file is short or the header invalid.
std::optional<SegmentHeader> ReadSegmentHeader(FileSystem* fs, const std::string& path) {
  absl::StatusOr<int64_t> size = fs->FileSize(path);
  if (!size.ok() || *size < kSegmentHeaderBytes) return std::nullopt;
  absl::StatusOr<std::unique_ptr<RandomRWFile>> file = fs->OpenForDirectIo(path, false);
  if (!file.ok()) return std::nullopt;
  AlignedBuffer buffer(kSegmentHeaderBytes);
  absl::StatusOr<size_t> n = SyncIo(
      fs, {IoRequest::Kind::kRead, file->get(), 0, buffer.data(), buffer.size(), nullptr});
  if (!n.ok() || static_cast<int64_t>(*n) != kSegmentHeaderBytes) return std::nullopt;
  return DecodeSegmentHeader(buffer.span());
}

}  // namespace

absl::Status DiskTierOptions::Validate() const {
  if (dir.empty()) return absl::InvalidArgumentError("disk tier: dir is empty");
  if (capacity_bytes < 0) return absl::InvalidArgumentError("disk tier: capacity_bytes < 0");
  if (record_payload_bytes == 0) {
    return absl::InvalidArgumentError("disk tier: record_payload_bytes must be > 0");
  }
  if (segment_bytes <= 0) return absl::InvalidArgumentError("disk tier: segment_bytes <= 0");
  if (namespace_text.size() > kMaxNamespaceTextBytes) {
    return absl::InvalidArgumentError("disk tier: namespace_text longer than 4032 bytes");
  }
  return absl::OkStatus();
}

std::vector<int64_t> PlanSegments(int64_t capacity_bytes, int64_t slot_bytes,
                                  int64_t slots_per_segment) {
  const int64_t full_segment_bytes = kSegmentHeaderBytes + slots_per_segment * slot_bytes;
  std::vector<int64_t> plan(capacity_bytes / full_segment_bytes, slots_per_segment);
  const int64_t rest = capacity_bytes % full_segment_bytes;
  if (rest >= kSegmentHeaderBytes + slot_bytes) {
    plan.push_back((rest - kSegmentHeaderBytes) / slot_bytes);
  }
  return plan;
}

absl::StatusOr<std::unique_ptr<DiskTier>> DiskTier::Open(FileSystem* fs, DiskTierOptions o) {
  RETURN_IF_ERROR(o.Validate());
  std::unique_ptr<DiskTier> tier(new DiskTier(fs, std::move(o)));
  RETURN_IF_ERROR(tier->OpenSegments());
  tier->BuildLruFromSequences();
  return tier;
}

absl::Status DiskTier::OpenSegments() {
  RETURN_IF_ERROR(fs_->CreateDir(options_.dir));
  ASSIGN_OR_RETURN(std::vector<std::string> names, fs_->ListDir(options_.dir));
  slots_per_segment_ =
      std::max<int64_t>(1, (options_.segment_bytes - kSegmentHeaderBytes) / slot_bytes_);
  std::set<int> foreign;
  std::map<int, int64_t> ours;  // number -> slot count in its header
  for (const std::string& name : names) {
    const int number = ParseSegmentName(name);
    if (number < 0) continue;
    const std::string path = StrCat(options_.dir, "/", name);
    std::optional<SegmentHeader> h = ReadSegmentHeader(fs_, path);
    if (h.has_value() &&
        (h->version != kDiskFormatVersion || !(h->namespace_hash == options_.namespace_hash) ||
         h->record_payload_bytes != options_.record_payload_bytes ||
         static_cast<int64_t>(h->slot_bytes) != slot_bytes_)) {
      std::lock_guard lock(mu_);
      CountErrorLocked(DiskErrorKind::kForeign,
                       absl::FailedPreconditionError(StrCat(
                           path, " belongs to namespace '", h->namespace_text, "' (version ",
                           h->version, ", record ", h->record_payload_bytes,
                           " bytes): left alone")));
      foreign.insert(number);
    } else if (h.has_value() && options_.persist) {
      ours[number] = static_cast<int64_t>(h->slot_count);
    } else {  // ours without persist, or an unreadable/truncated segment: recreated below
      RETURN_IF_ERROR(fs_->DeleteFile(path));
    }
  }
  const int64_t segment_file_bytes = kSegmentHeaderBytes + slots_per_segment_ * slot_bytes_;
  const std::vector<int64_t> plan =
      PlanSegments(options_.capacity_bytes, slot_bytes_, slots_per_segment_);
  bool full = false;
  int number = 0;
  for (int64_t slot_count : plan) {
    while (foreign.contains(number)) ++number;  // never overwrite another namespace's file
    const std::string path = StrCat(options_.dir, "/", SegmentName(number));
    auto it = ours.find(number);
    const int64_t want_bytes = kSegmentHeaderBytes + slot_count * slot_bytes_;
    absl::StatusOr<int64_t> size = fs_->FileSize(path);
    if (it != ours.end() && it->second == slot_count && size.ok() && *size >= want_bytes) {
      ASSIGN_OR_RETURN(std::unique_ptr<RandomRWFile> file, fs_->OpenForDirectIo(path, false));
      segments_.push_back(std::make_unique<Segment>(
          Segment{path, std::move(file), static_cast<uint32_t>(slots_.size()), slot_count}));
      slots_.resize(slots_.size() + slot_count);
      RETURN_IF_ERROR(ScanSegment(segments_.size() - 1));
    } else {
      if (it != ours.end()) RETURN_IF_ERROR(fs_->DeleteFile(path));
      if (!full) RETURN_IF_ERROR(CreateSegment(path, slot_count, &full));
    }
    if (it != ours.end()) ours.erase(it);
    ++number;
  }
  for (const auto& [stale, unused] : ours) {  // ours, beyond the configured capacity
    RETURN_IF_ERROR(fs_->DeleteFile(StrCat(options_.dir, "/", SegmentName(stale))));
  }
  LOG_INFO("disk tier {}: {} segments, {} slots of {} bytes ({} per full segment of {} bytes)",
           options_.dir, segments_.size(), slots_.size(), slot_bytes_, slots_per_segment_,
           segment_file_bytes);
  return absl::OkStatus();
}

absl::Status DiskTier::CreateSegment(const std::string& path, int64_t slot_count, bool* full) {
  ASSIGN_OR_RETURN(std::unique_ptr<RandomRWFile> file, fs_->OpenForDirectIo(path, true));
  absl::Status status = fs_->Preallocate(file.get(), kSegmentHeaderBytes + slot_count * slot_bytes_);
  if (absl::IsResourceExhausted(status)) {
    *full = true;
    {
      std::lock_guard lock(mu_);
      CountErrorLocked(DiskErrorKind::kFull, status);
    }
    file.reset();
    return fs_->DeleteFile(path);
  }
  RETURN_IF_ERROR(status);
  SegmentHeader h;
  h.namespace_hash = options_.namespace_hash;
  h.namespace_text = options_.namespace_text;
  h.record_payload_bytes = options_.record_payload_bytes;
  h.slot_bytes = static_cast<uint64_t>(slot_bytes_);
  h.slot_count = static_cast<uint64_t>(slot_count);
  AlignedBuffer buffer(kSegmentHeaderBytes);
  EncodeSegmentHeader(h, buffer.span());
  ASSIGN_OR_RETURN(size_t n, SyncIo(fs_, {IoRequest::Kind::kWrite, file.get(), 0, buffer.data(),
                                          buffer.size(), nullptr}));
  if (static_cast<int64_t>(n) != kSegmentHeaderBytes) {
    return absl::DataLossError(StrCat("short write of the segment header of ", path));
  }
  const uint32_t first_slot = static_cast<uint32_t>(slots_.size());
  segments_.push_back(
      std::make_unique<Segment>(Segment{path, std::move(file), first_slot, slot_count}));
  slots_.resize(slots_.size() + slot_count);
  return absl::OkStatus();
}

absl::Status DiskTier::ScanSegment(size_t segment_index) {
  const Segment& seg = *segments_[segment_index];
  for (int64_t start = 0; start < seg.slot_count; start += kScanBatchSlots) {
    const int64_t count = std::min(kScanBatchSlots, seg.slot_count - start);
    AlignedBuffer buffer(count * kDirectIoAlignment);
    std::vector<IoRequest> batch;
    for (int64_t j = 0; j < count; ++j) {
      batch.push_back({IoRequest::Kind::kRead, seg.file.get(),
                       kSegmentHeaderBytes + (start + j) * slot_bytes_,
                       buffer.data() + j * kDirectIoAlignment, kDirectIoAlignment, nullptr});
    }
    std::vector<absl::StatusOr<size_t>> results = SyncBatch(fs_, std::move(batch));
    std::lock_guard lock(mu_);
    for (int64_t j = 0; j < count; ++j) {
      if (!results[j].ok()) {  // an unreadable slot is an empty one
        CountErrorLocked(DiskErrorKind::kIo, results[j].status());
        continue;
      }
      if (*results[j] != kDirectIoAlignment) continue;
      std::optional<RecordHeader> h =
          DecodeRecordHeader({buffer.data() + j * kDirectIoAlignment, kDirectIoAlignment});
      if (!h.has_value() || h->version != kDiskFormatVersion ||
          !(h->namespace_hash == options_.namespace_hash) ||
          h->payload_bytes != options_.record_payload_bytes) {
        continue;
      }
      auto it = index_.find(h->key);
      if (it != index_.end()) {  // the same key twice (an interrupted rewrite): newest wins
        Slot& other = slots_[it->second];
        if (other.sequence >= h->sequence) continue;
        other.state = Slot::State::kFree;
      }
      const uint32_t slot = seg.first_slot + static_cast<uint32_t>(start + j);
      slots_[slot] = Slot{Slot::State::kCommitted, h->key, h->sequence, 0, {}};
      index_[h->key] = slot;
      next_sequence_ = std::max(next_sequence_, h->sequence + 1);
    }
  }
  return absl::OkStatus();
}

// Rebuilds the in-memory order after Open: LRU by write sequence (a read's refresh is not
// persisted), free slots handed out lowest first.
void DiskTier::BuildLruFromSequences() {
  std::lock_guard lock(mu_);
  std::vector<uint32_t> committed;
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].state == Slot::State::kCommitted) committed.push_back(i);
  }
  std::sort(committed.begin(), committed.end(),
            [this](uint32_t a, uint32_t b) { return slots_[a].sequence < slots_[b].sequence; });
  for (uint32_t slot : committed) {
    lru_.push_front(slot);
    slots_[slot].lru_position = lru_.begin();
  }
  for (size_t i = slots_.size(); i-- > 0;) {
    if (slots_[i].state == Slot::State::kFree) free_.push_back(static_cast<uint32_t>(i));
  }
}

}  // namespace strata::kvcache
