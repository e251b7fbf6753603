// The disk tier's on-disk format (kvcache/FORMAT.md has the byte tables and a worked example):
// segment files `seg-NNNNNN.kv` = a 4 KiB segment header + `slot_count` fixed-size slots; a slot
// = record header + payload + zero padding to a multiple of 4 KiB. All integers little-endian.
// Value types and pure functions; callable from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "kvcache/block_hash.h"

namespace strata::kvcache {

inline constexpr uint32_t kDiskFormatVersion = 1;
inline constexpr uint32_t kSegmentMagic = 0x53564B53;  // bytes "SKVS"
inline constexpr uint32_t kRecordMagic = 0x52564B53;   // bytes "SKVR"
inline constexpr int64_t kSegmentHeaderBytes = 4096;
inline constexpr size_t kRecordHeaderBytes = 80;
// The namespace text must fit the segment header between its fixed fields and its checksum.
inline constexpr size_t kMaxNamespaceTextBytes = 4032;

struct SegmentHeader {
  uint32_t version = kDiskFormatVersion;
  BlockHash namespace_hash;
  std::string namespace_text;
  uint64_t record_payload_bytes = 0;
  uint64_t slot_bytes = 0;
  uint64_t slot_count = 0;
};

struct RecordHeader {
  uint32_t version = kDiskFormatVersion;
  BlockHash key;
  BlockHash namespace_hash;
  uint64_t sequence = 0;
  uint64_t payload_bytes = 0;
  uint32_t layers = 0;
  uint64_t payload_checksum = 0;  // XXH3-64 of the payload
};

// Bytes of one slot holding a payload of `payload_bytes`.
int64_t SlotBytes(size_t payload_bytes);

// Writes the segment header into `out` (kSegmentHeaderBytes). REQUIRES: text fits.
void EncodeSegmentHeader(const SegmentHeader& h, std::span<std::byte> out);
// Decodes and verifies magic and checksum; nullopt when `in` is not a valid segment header (any
// version: the caller compares versions).
std::optional<SegmentHeader> DecodeSegmentHeader(std::span<const std::byte> in);

// Writes the record header into the first kRecordHeaderBytes of `out`.
void EncodeRecordHeader(const RecordHeader& h, std::span<std::byte> out);
// Decodes and verifies magic and header checksum; nullopt when invalid.
std::optional<RecordHeader> DecodeRecordHeader(std::span<const std::byte> in);

uint64_t PayloadChecksum(std::span<const std::byte> payload);

}  // namespace strata::kvcache
