#include "kvcache/disk_format.h"

#include <bit>
#include <cstring>

#include "common/status.h"
#include "kvcache/file_system.h"
#include "xxhash.h"

namespace strata::kvcache {
namespace {

static_assert(std::endian::native == std::endian::little, "the format is little-endian");

// Segment header field offsets (FORMAT.md).
constexpr size_t kSegTextLenOffset = 48;
constexpr size_t kSegTextOffset = 56;
constexpr size_t kSegChecksumOffset = kSegmentHeaderBytes - 8;
// Record header field offsets (FORMAT.md).
constexpr size_t kRecChecksumOffset = 72;

template <typename T>
void Put(std::span<std::byte> out, size_t offset, T v) {
  std::memcpy(out.data() + offset, &v, sizeof(T));
}

template <typename T>
T Get(std::span<const std::byte> in, size_t offset) {
  T v;
  std::memcpy(&v, in.data() + offset, sizeof(T));
  return v;
}

uint64_t Checksum(std::span<const std::byte> bytes, size_t length) {
  return XXH3_64bits(bytes.data(), length);
}

}  // namespace

int64_t SlotBytes(size_t payload_bytes) {
  return RoundUp(static_cast<int64_t>(kRecordHeaderBytes + payload_bytes), kDirectIoAlignment);
}

uint64_t PayloadChecksum(std::span<const std::byte> payload) {
  return XXH3_64bits(payload.data(), payload.size());
}

void EncodeSegmentHeader(const SegmentHeader& h, std::span<std::byte> out) {
  CHECK(out.size() >= static_cast<size_t>(kSegmentHeaderBytes));
  CHECK(h.namespace_text.size() <= kMaxNamespaceTextBytes);
  std::memset(out.data(), 0, kSegmentHeaderBytes);
  Put<uint32_t>(out, 0, kSegmentMagic);
  Put<uint32_t>(out, 4, h.version);
  Put<uint64_t>(out, 8, h.namespace_hash.hi);
  Put<uint64_t>(out, 16, h.namespace_hash.lo);
  Put<uint64_t>(out, 24, h.record_payload_bytes);
  Put<uint64_t>(out, 32, h.slot_bytes);
  Put<uint64_t>(out, 40, h.slot_count);
  Put<uint32_t>(out, kSegTextLenOffset, static_cast<uint32_t>(h.namespace_text.size()));
  std::memcpy(out.data() + kSegTextOffset, h.namespace_text.data(), h.namespace_text.size());
  Put<uint64_t>(out, kSegChecksumOffset, Checksum(out, kSegChecksumOffset));
}

std::optional<SegmentHeader> DecodeSegmentHeader(std::span<const std::byte> in) {
  if (in.size() < static_cast<size_t>(kSegmentHeaderBytes)) return std::nullopt;
  if (Get<uint32_t>(in, 0) != kSegmentMagic) return std::nullopt;
  if (Get<uint64_t>(in, kSegChecksumOffset) != Checksum(in, kSegChecksumOffset)) {
    return std::nullopt;
  }
  const uint32_t text_len = Get<uint32_t>(in, kSegTextLenOffset);
  if (text_len > kMaxNamespaceTextBytes) return std::nullopt;
  SegmentHeader h;
  h.version = Get<uint32_t>(in, 4);
  h.namespace_hash = {Get<uint64_t>(in, 8), Get<uint64_t>(in, 16)};
  h.record_payload_bytes = Get<uint64_t>(in, 24);
  h.slot_bytes = Get<uint64_t>(in, 32);
  h.slot_count = Get<uint64_t>(in, 40);
  h.namespace_text.assign(reinterpret_cast<const char*>(in.data() + kSegTextOffset), text_len);
  return h;
}

void EncodeRecordHeader(const RecordHeader& h, std::span<std::byte> out) {
  CHECK(out.size() >= kRecordHeaderBytes);
  Put<uint32_t>(out, 0, kRecordMagic);
  Put<uint32_t>(out, 4, h.version);
  Put<uint64_t>(out, 8, h.key.hi);
  Put<uint64_t>(out, 16, h.key.lo);
  Put<uint64_t>(out, 24, h.namespace_hash.hi);
  Put<uint64_t>(out, 32, h.namespace_hash.lo);
  Put<uint64_t>(out, 40, h.sequence);
  Put<uint64_t>(out, 48, h.payload_bytes);
  Put<uint32_t>(out, 56, h.layers);
  Put<uint32_t>(out, 60, 0);
  Put<uint64_t>(out, 64, h.payload_checksum);
  Put<uint64_t>(out, kRecChecksumOffset, Checksum(out, kRecChecksumOffset));
}

std::optional<RecordHeader> DecodeRecordHeader(std::span<const std::byte> in) {
  if (in.size() < kRecordHeaderBytes) return std::nullopt;
  if (Get<uint32_t>(in, 0) != kRecordMagic) return std::nullopt;
  if (Get<uint64_t>(in, kRecChecksumOffset) != Checksum(in, kRecChecksumOffset)) {
    return std::nullopt;
  }
  RecordHeader h;
  h.version = Get<uint32_t>(in, 4);
  h.key = {Get<uint64_t>(in, 8), Get<uint64_t>(in, 16)};
  h.namespace_hash = {Get<uint64_t>(in, 24), Get<uint64_t>(in, 32)};
  h.sequence = Get<uint64_t>(in, 40);
  h.payload_bytes = Get<uint64_t>(in, 48);
  h.layers = Get<uint32_t>(in, 56);
  h.payload_checksum = Get<uint64_t>(in, 64);
  return h;
}

}  // namespace strata::kvcache
