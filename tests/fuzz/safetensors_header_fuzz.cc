// Fuzz target: the input is a whole safetensors file image held in memory. Whatever the bytes,
// ParseHeader must return an error or a header whose every tensor lies inside the image; the
// target then reads each tensor's bytes so a bounds bug shows up under ASan as a crash.
#include <cstddef>
#include <cstdint>
#include <span>

#include "engine/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> image(data, size);
  absl::StatusOr<strata::engine::SafetensorsHeader> header =
      strata::engine::SafetensorsFile::ParseHeader(image, "fuzz-input");
  if (!header.ok()) return 0;
  volatile uint8_t sink = 0;
  for (const strata::engine::SafetensorsTensor& t : header->tensors) {
    std::span<const uint8_t> bytes = strata::engine::TensorBytesIn(image, *header, t);
    if (bytes.size() != t.NumBytes()) __builtin_trap();
    uint8_t acc = 0;
    for (uint8_t b : bytes) acc ^= b;
    sink = sink ^ acc;
    if (header->Find(t.name) != &t) __builtin_trap();
  }
  return 0;
}
