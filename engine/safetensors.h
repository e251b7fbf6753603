// Reading safetensors files: an 8-byte little-endian header length N, N bytes of JSON header
// ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, ..., "__metadata__": {...}}), then
// the data section that the offsets index (relative to its start).
//
// The header is validated completely before anything in it is trusted: every tensor's dtype is
// known, its shape's element count does not overflow, its byte range lies inside the data
// section and matches shape x dtype size, and the ranges tile the data section exactly (no
// overlap, no hole, nothing trailing), as the reference implementation requires.
//
// SafetensorsFile owns the read-only memory map of one file; it is immutable after Open and any
// thread may read it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "common/file.h"
#include "common/status.h"

namespace strata::engine {

struct SafetensorsTensor {
  std::string name;
  std::string dtype;           // as written in the header: "F32", "BF16", "I64", ...
  std::vector<int64_t> shape;  // row-major; empty for a scalar
  uint64_t data_begin = 0;     // byte range inside the data section
  uint64_t data_end = 0;

  int64_t NumElements() const;
  uint64_t NumBytes() const { return data_end - data_begin; }
  // The dtype as a loadable strata::DType (F32/F16/BF16), or nullopt for the others.
  std::optional<DType> Loadable() const;
};

struct SafetensorsHeader {
  uint64_t data_start = 0;                       // file offset of the data section (8 + N)
  std::vector<SafetensorsTensor> tensors;        // sorted by name
  std::map<std::string, std::string> metadata;   // "__metadata__" (string values only)

  // Binary search by name; nullptr when absent.
  const SafetensorsTensor* Find(std::string_view name) const;
};

// Bytes per element of a header dtype name, or 0 when the name is not a safetensors dtype.
size_t SafetensorsDTypeSize(std::string_view dtype);

class SafetensorsFile {
 public:
  // Maps `path` and validates its header. Errors name the path and, where one is at fault,
  // the tensor.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  // Validates a whole file image held in memory (the fuzz target and Open share this).
  // `what` (usually the path) prefixes every error.
  static absl::StatusOr<SafetensorsHeader> ParseHeader(std::span<const uint8_t> file_bytes,
                                                       std::string_view what);

  const std::string& path() const { return mapping_->path(); }
  const SafetensorsHeader& header() const { return header_; }
  const SafetensorsTensor* Find(std::string_view name) const { return header_.Find(name); }
  // The tensor's bytes inside the mapping. REQUIRES: `t` comes from this file's header.
  std::span<const uint8_t> TensorBytes(const SafetensorsTensor& t) const;

  // Hands the mapping to a longer-lived owner (ModelWeights); this object must not be used
  // afterwards except to be destroyed.
  std::unique_ptr<MappedFile> ReleaseMapping() { return std::move(mapping_); }

 private:
  SafetensorsFile(std::unique_ptr<MappedFile> mapping, SafetensorsHeader header)
      : mapping_(std::move(mapping)), header_(std::move(header)) {}

  std::unique_ptr<MappedFile> mapping_;
  SafetensorsHeader header_;
};

// The bytes of tensor `t` in a validated file image. REQUIRES: ParseHeader accepted `file_bytes`
// and `t` is from the header it returned.
std::span<const uint8_t> TensorBytesIn(std::span<const uint8_t> file_bytes,
                                       const SafetensorsHeader& header,
                                       const SafetensorsTensor& t);

}  // namespace strata::engine
