#include "kvcache/disk_tier.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/logging.h"
#include "kvcache/disk_format.h"
#include "kvcache/disk_tier_internal.h"

namespace strata::kvcache {

std::string_view DiskErrorKindName(DiskErrorKind kind) {
  switch (kind) {
    case DiskErrorKind::kChecksum:
      return "checksum";
    case DiskErrorKind::kShortRead:
      return "short_read";
    case DiskErrorKind::kIo:
      return "io";
    case DiskErrorKind::kFull:
      return "full";
    case DiskErrorKind::kForeign:
      return "foreign";
  }
  return "unknown";
}

DiskTier::DiskTier(FileSystem* fs, DiskTierOptions options)
    : fs_(fs),
      options_(std::move(options)),
      slot_bytes_(SlotBytes(options_.record_payload_bytes)),
      // Spare slot images up to 64 MiB (at least 4): enough for a full queue of small records.
      buffers_(AlignedBufferPool::Create(
          static_cast<size_t>(slot_bytes_),
          std::max<size_t>(4, (size_t{64} << 20) / static_cast<size_t>(slot_bytes_)))) {}

DiskTier::~DiskTier() { Drain(); }

bool DiskTier::Contains(const BlockHash& key) const {
  std::lock_guard lock(mu_);
  return index_.contains(key);
}

bool DiskTier::Write(const BlockHash& key, std::span<const std::byte> payload, WriteDone done) {
  if (payload.size() != options_.record_payload_bytes) return false;
  uint32_t slot = 0;
  RecordHeader header;
  {
    std::lock_guard lock(mu_);
    if (writes_stopped_ || index_.contains(key) || writing_.contains(key)) return false;
    if (!TakeSlotLocked(&slot)) return false;
    Slot& s = slots_[slot];
    s.state = Slot::State::kWriting;
    s.key = key;
    s.sequence = next_sequence_++;
    header.sequence = s.sequence;
    writing_[key] = slot;
    ++in_flight_;
  }
  header.key = key;
  header.namespace_hash = options_.namespace_hash;
  header.payload_bytes = payload.size();
  header.layers = options_.layers;
  header.payload_checksum = PayloadChecksum(payload);
  // A reused image: header and payload overwrite it, the padding is zeroed (FORMAT.md).
  std::shared_ptr<AlignedBuffer> buffer = buffers_->Get();
  EncodeRecordHeader(header, buffer->span());
  std::memcpy(buffer->data() + kRecordHeaderBytes, payload.data(), payload.size());
  const size_t used = kRecordHeaderBytes + payload.size();
  std::memset(buffer->data() + used, 0, buffer->size() - used);

  const Location at = SlotLocation(slot);
  std::vector<IoRequest> batch(1);
  batch[0] = {IoRequest::Kind::kWrite, at.file, at.offset, buffer->data(), buffer->size(),
              [this, slot, key, buffer, done = std::move(done)](absl::StatusOr<size_t> n) {
                OnWriteDone(slot, key, std::move(n), done);
              }};
  fs_->Submit(std::move(batch));
  return true;
}

void DiskTier::OnWriteDone(uint32_t slot, const BlockHash& key, absl::StatusOr<size_t> n,
                           const WriteDone& done) {
  absl::Status status = n.status();
  if (status.ok() && static_cast<int64_t>(*n) != slot_bytes_) {
    status = absl::DataLossError(StrCat("short write: ", *n, " of ", slot_bytes_, " bytes"));
  }
  {
    std::lock_guard lock(mu_);
    writing_.erase(key);
    Slot& s = slots_[slot];
    if (status.ok()) {
      s.state = Slot::State::kCommitted;
      lru_.push_front(slot);
      s.lru_position = lru_.begin();
      index_[key] = slot;
      stats_.bytes_written += static_cast<int64_t>(options_.record_payload_bytes);
      ++stats_.records_written;
    } else {
      const bool full = absl::IsResourceExhausted(status);
      if (full) writes_stopped_ = true;
      CountErrorLocked(full ? DiskErrorKind::kFull : DiskErrorKind::kIo, status);
      ReleaseSlotLocked(slot);
    }
  }
  if (done) done(status);
  FinishOp();
}

bool DiskTier::Read(const BlockHash& key, ReadDone done) {
  uint32_t slot = 0;
  {
    std::lock_guard lock(mu_);
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    slot = it->second;
    Slot& s = slots_[slot];
    ++s.pins;
    lru_.splice(lru_.begin(), lru_, s.lru_position);
    ++in_flight_;
  }
  std::shared_ptr<AlignedBuffer> buffer = buffers_->Get();  // the read overwrites all of it
  const Location at = SlotLocation(slot);
  std::vector<IoRequest> batch(1);
  batch[0] = {IoRequest::Kind::kRead, at.file, at.offset, buffer->data(), buffer->size(),
              [this, slot, key, buffer, done = std::move(done)](absl::StatusOr<size_t> n) {
                const size_t got = n.ok() ? *n : 0;
                OnReadDone(slot, key, std::move(n), {buffer->data(), got}, done);
              }};
  fs_->Submit(std::move(batch));
  return true;
}

void DiskTier::OnReadDone(uint32_t slot, const BlockHash& key, absl::StatusOr<size_t> n,
                          std::span<const std::byte> slot_image, const ReadDone& done) {
  absl::StatusOr<std::span<const std::byte>> payload;
  DiskErrorKind kind = DiskErrorKind::kIo;
  if (!n.ok()) {
    payload = n.status();
  } else if (static_cast<int64_t>(*n) < slot_bytes_) {
    payload = absl::DataLossError(StrCat("short read: ", *n, " of ", slot_bytes_, " bytes"));
    kind = DiskErrorKind::kShortRead;
  } else {
    payload = VerifyRecord(key, slot_image);
    kind = DiskErrorKind::kChecksum;
  }
  {
    std::lock_guard lock(mu_);
    Slot& s = slots_[slot];
    --s.pins;
    if (payload.ok()) {
      stats_.bytes_read += static_cast<int64_t>(payload->size());
      ++stats_.records_read;
    } else {
      CountErrorLocked(kind, payload.status());
      if (s.state == Slot::State::kCommitted && s.key == key) DropLocked(slot);
    }
    if (s.state == Slot::State::kDropped && s.pins == 0) ReleaseSlotLocked(slot);
  }
  if (payload.ok()) {
    done(absl::OkStatus(), *payload);
  } else {
    done(payload.status(), {});
  }
  FinishOp();
}

absl::StatusOr<std::span<const std::byte>> DiskTier::VerifyRecord(
    const BlockHash& key, std::span<const std::byte> slot_image) const {
  std::optional<RecordHeader> h = DecodeRecordHeader(slot_image);
  if (!h.has_value()) return absl::DataLossError("invalid record header");
  if (h->version != kDiskFormatVersion || !(h->key == key) ||
      !(h->namespace_hash == options_.namespace_hash) ||
      h->payload_bytes != options_.record_payload_bytes) {
    return absl::DataLossError("record header does not match the key or namespace");
  }
  std::span<const std::byte> payload = slot_image.subspan(kRecordHeaderBytes, h->payload_bytes);
  if (PayloadChecksum(payload) != h->payload_checksum) {
    return absl::DataLossError("payload checksum mismatch");
  }
  return payload;
}

bool DiskTier::TakeSlotLocked(uint32_t* slot) {
  if (!free_.empty()) {
    *slot = free_.back();
    free_.pop_back();
    return true;
  }
  // Oldest first; a pinned slot (read in flight) is skipped, never rewritten under the reader.
  for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) {
    Slot& s = slots_[*it];
    if (s.pins > 0) continue;
    *slot = *it;
    index_.erase(s.key);
    lru_.erase(std::next(it).base());
    s.state = Slot::State::kFree;
    return true;
  }
  return false;
}

void DiskTier::ReleaseSlotLocked(uint32_t slot) {
  slots_[slot].state = Slot::State::kFree;
  free_.push_back(slot);
}

void DiskTier::DropLocked(uint32_t slot) {
  Slot& s = slots_[slot];
  index_.erase(s.key);
  lru_.erase(s.lru_position);
  if (s.pins > 0) {
    s.state = Slot::State::kDropped;
  } else {
    ReleaseSlotLocked(slot);
  }
}

void DiskTier::CountErrorLocked(DiskErrorKind kind, const absl::Status& status) {
  const int i = static_cast<int>(kind);
  ++stats_.errors[i];
  if (logged_[i]) return;
  logged_[i] = true;
  LOG_WARN("disk tier {}: {} error: {} (logged once per kind)", options_.dir,
           DiskErrorKindName(kind), status.ToString());
}

DiskTier::Location DiskTier::SlotLocation(uint32_t slot) const {
  auto it = std::upper_bound(segments_.begin(), segments_.end(), slot,
                             [](uint32_t s, const std::unique_ptr<Segment>& seg) {
                               return s < seg->first_slot;
                             });
  CHECK(it != segments_.begin());
  const Segment& seg = **std::prev(it);
  return {seg.file.get(), kSegmentHeaderBytes + (slot - seg.first_slot) * slot_bytes_};
}

void DiskTier::FinishOp() {
  std::lock_guard lock(mu_);
  if (--in_flight_ == 0) idle_.notify_all();
}

void DiskTier::Drain() {
  std::unique_lock lock(mu_);
  idle_.wait(lock, [this] { return in_flight_ == 0; });
}

DiskTierStats DiskTier::stats() const {
  std::lock_guard lock(mu_);
  DiskTierStats s = stats_;
  s.records = static_cast<int64_t>(index_.size());
  s.capacity_records = static_cast<int64_t>(slots_.size());
  s.writes_in_flight = static_cast<int64_t>(writing_.size());
  return s;
}

double DiskTier::usage_ratio() const {
  std::lock_guard lock(mu_);
  if (slots_.empty()) return 0.0;
  return static_cast<double>(index_.size()) / static_cast<double>(slots_.size());
}

bool DiskTier::writes_enabled() const {
  std::lock_guard lock(mu_);
  return !writes_stopped_ && !slots_.empty();
}

}  // namespace strata::kvcache
