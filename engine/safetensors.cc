#include "engine/safetensors.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "common/json.h"

namespace strata::engine {
namespace {

// The reference implementation refuses headers above 100 MB; so do we, before parsing JSON.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

absl::Status HeaderError(std::string_view what, std::string_view message) {
  return absl::InvalidArgumentError(StrCat(what, ": invalid safetensors file: ", message));
}

absl::Status TensorError(std::string_view what, std::string_view name,
                         std::string_view message) {
  return absl::InvalidArgumentError(
      StrCat(what, ": invalid safetensors file: tensor '", name, "': ", message));
}

// Reads a non-negative JSON integer that fits in int64.
std::optional<uint64_t> NonNegativeInt(const Json& v) {
  if (!v.is_number_unsigned()) return std::nullopt;
  uint64_t x = v.get<uint64_t>();
  if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  return x;
}

absl::StatusOr<SafetensorsTensor> ParseTensorEntry(const std::string& name, const Json& entry,
                                                   uint64_t data_bytes, std::string_view what) {
  SafetensorsTensor t;
  t.name = name;
  if (!entry.is_object()) return TensorError(what, name, "entry is not a JSON object");
  auto dtype = entry.find("dtype");
  if (dtype == entry.end() || !dtype->is_string()) {
    return TensorError(what, name, "missing string 'dtype'");
  }
  t.dtype = dtype->get<std::string>();
  const size_t elem_bytes = SafetensorsDTypeSize(t.dtype);
  if (elem_bytes == 0) return TensorError(what, name, StrCat("unknown dtype \"", t.dtype, "\""));
  auto shape = entry.find("shape");
  if (shape == entry.end() || !shape->is_array()) {
    return TensorError(what, name, "missing array 'shape'");
  }
  int64_t num_elements = 1;
  for (const Json& d : *shape) {
    std::optional<uint64_t> dim = NonNegativeInt(d);
    if (!dim) return TensorError(what, name, "shape entries must be non-negative integers");
    t.shape.push_back(static_cast<int64_t>(*dim));
    if (__builtin_mul_overflow(num_elements, t.shape.back(), &num_elements)) {
      return TensorError(what, name, "shape element count overflows int64");
    }
  }
  int64_t expected_bytes = 0;
  if (__builtin_mul_overflow(num_elements, static_cast<int64_t>(elem_bytes), &expected_bytes)) {
    return TensorError(what, name, "shape byte size overflows int64");
  }
  auto offsets = entry.find("data_offsets");
  if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2) {
    return TensorError(what, name, "'data_offsets' must be [begin, end]");
  }
  std::optional<uint64_t> begin = NonNegativeInt((*offsets)[0]);
  std::optional<uint64_t> end = NonNegativeInt((*offsets)[1]);
  if (!begin || !end) return TensorError(what, name, "data_offsets must be non-negative integers");
  if (*begin > *end) {
    return TensorError(what, name, StrCat("data_offsets begin ", *begin, " > end ", *end));
  }
  if (*end > data_bytes) {
    return TensorError(what, name, StrCat("data_offsets end ", *end, " runs past the data (",
                                          data_bytes, " bytes)"));
  }
  if (*end - *begin != static_cast<uint64_t>(expected_bytes)) {
    return TensorError(what, name,
                       StrCat("data_offsets span ", *end - *begin, " bytes but shape x ", t.dtype,
                              " needs ", expected_bytes));
  }
  t.data_begin = *begin;
  t.data_end = *end;
  return t;
}

absl::Status ParseMetadata(const Json& m, std::string_view what,
                           std::map<std::string, std::string>& out) {
  if (!m.is_object()) return HeaderError(what, "__metadata__ is not a JSON object");
  for (auto it = m.begin(); it != m.end(); ++it) {
    if (!it->is_string()) {
      return HeaderError(what, StrCat("__metadata__ value '", it.key(), "' is not a string"));
    }
    out[it.key()] = it->get<std::string>();
  }
  return absl::OkStatus();
}

// The byte ranges must tile [0, data_bytes) exactly: overlap would alias two tensors, a hole or
// trailing bytes mean the header does not describe the file.
absl::Status CheckTiling(const std::vector<SafetensorsTensor>& tensors, uint64_t data_bytes,
                         std::string_view what) {
  std::vector<const SafetensorsTensor*> by_offset;
  for (const auto& t : tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* b) {
    return a->data_begin != b->data_begin ? a->data_begin < b->data_begin
                                          : a->data_end < b->data_end;
  });
  uint64_t pos = 0;
  const SafetensorsTensor* prev = nullptr;
  for (const SafetensorsTensor* t : by_offset) {
    if (t->data_begin < pos) {
      return TensorError(what, t->name, StrCat("data_offsets [", t->data_begin, ", ", t->data_end,
                                               ") overlap tensor '", prev->name, "'"));
    }
    if (t->data_begin > pos) {
      return TensorError(what, t->name, StrCat("gap of ", t->data_begin - pos,
                                               " unindexed bytes before data_offsets begin ",
                                               t->data_begin));
    }
    pos = t->data_end;
    prev = t;
  }
  if (pos != data_bytes) {
    return HeaderError(what, StrCat("tensors cover ", pos, " of the ", data_bytes,
                                    " data bytes"));
  }
  return absl::OkStatus();
}

}  // namespace

size_t SafetensorsDTypeSize(std::string_view dtype) {
  static constexpr std::pair<std::string_view, size_t> kSizes[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};
  for (const auto& [name, size] : kSizes) {
    if (name == dtype) return size;
  }
  return 0;
}

int64_t SafetensorsTensor::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // Cannot overflow: ParseHeader checked it.
  return n;
}

std::optional<DType> SafetensorsTensor::Loadable() const {
  if (dtype == "F32") return DType::kF32;
  if (dtype == "F16") return DType::kF16;
  if (dtype == "BF16") return DType::kBF16;
  return std::nullopt;
}

const SafetensorsTensor* SafetensorsHeader::Find(std::string_view name) const {
  auto it = std::lower_bound(tensors.begin(), tensors.end(), name,
                             [](const SafetensorsTensor& t, std::string_view n) {
                               return std::string_view(t.name) < n;
                             });
  return it != tensors.end() && it->name == name ? &*it : nullptr;
}

absl::StatusOr<SafetensorsHeader> SafetensorsFile::ParseHeader(
    std::span<const uint8_t> file_bytes, std::string_view what) {
  if (file_bytes.size() < 8) {
    return HeaderError(what, StrCat("file has ", file_bytes.size(),
                                    " bytes, fewer than the 8-byte header length"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file_bytes[i];
  if (header_len > file_bytes.size() - 8) {
    return HeaderError(what, StrCat("header length ", header_len, " exceeds the file size (",
                                    file_bytes.size(), " bytes)"));
  }
  if (header_len > kMaxHeaderBytes) {
    return HeaderError(what, StrCat("header length ", header_len, " exceeds the 100 MB limit"));
  }
  std::string_view text(reinterpret_cast<const char*>(file_bytes.data()) + 8, header_len);
  ASSIGN_OR_RETURN(Json j, ParseJson(text, StrCat(what, ": safetensors header")));
  if (!j.is_object()) return HeaderError(what, "header is not a JSON object");
  SafetensorsHeader header;
  header.data_start = 8 + header_len;
  const uint64_t data_bytes = file_bytes.size() - header.data_start;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") {
      RETURN_IF_ERROR(ParseMetadata(*it, what, header.metadata));
      continue;
    }
    ASSIGN_OR_RETURN(SafetensorsTensor t, ParseTensorEntry(it.key(), *it, data_bytes, what));
    header.tensors.push_back(std::move(t));
  }
  RETURN_IF_ERROR(CheckTiling(header.tensors, data_bytes, what));
  // The JSON facade's object happens to iterate in key order; sort anyway so Find never relies
  // on how common/json.h stores objects.
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return header;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapping, MappedFile::Open(path));
  ASSIGN_OR_RETURN(SafetensorsHeader header,
                   ParseHeader(std::span(mapping->data(), mapping->size()), path));
  return std::unique_ptr<SafetensorsFile>(new SafetensorsFile(std::move(mapping),
                                                              std::move(header)));
}

std::span<const uint8_t> SafetensorsFile::TensorBytes(const SafetensorsTensor& t) const {
  return TensorBytesIn(std::span(mapping_->data(), mapping_->size()), header_, t);
}

std::span<const uint8_t> TensorBytesIn(std::span<const uint8_t> file_bytes,
                                       const SafetensorsHeader& header,
                                       const SafetensorsTensor& t) {
  CHECK(header.data_start + t.data_end <= file_bytes.size());
  return file_bytes.subspan(header.data_start + t.data_begin, t.NumBytes());
}

}  // namespace strata::engine
