// Private to disk_tier.cc / disk_tier_open.cc: the segment record and the layout plan.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvcache/disk_tier.h"
#include "kvcache/file_system.h"

namespace strata::kvcache {

// One open segment file of ours; slots [first_slot, first_slot + slot_count) of the tier.
struct DiskTier::Segment {
  std::string path;
  std::unique_ptr<RandomRWFile> file;
  uint32_t first_slot = 0;
  int64_t slot_count = 0;
};

// Slot counts of the segments that fill `capacity_bytes`: whole segments of
// `slots_per_segment`, then one shorter segment if the rest holds at least one slot.
std::vector<int64_t> PlanSegments(int64_t capacity_bytes, int64_t slot_bytes,
                                  int64_t slots_per_segment);

}  // namespace strata::kvcache
