// PenaltyCounts: one request's distinct token ids, ascending, each with how often it occurs in the
// request's output -- the entries (kernels::PenaltyEntry) the repetition, presence and frequency
// penalties apply to. Kept up to date as the request grows: a step adds its new output ids
// (a binary search each) instead of sorting the whole prompt and output again, which for long
// contexts cost more than the rest of the host's step. Owned by the request's Sampler; engine
// thread only.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/device.h"

namespace strata::engine {

class PenaltyCounts {
 public:
  // with_prompt: prompt ids are entries too (a repetition penalty reads them); otherwise only
  // output ids are (the presence and frequency penalties read only the output).
  explicit PenaltyCounts(bool with_prompt) : with_prompt_(with_prompt) {}

  // Brings the entries to prompt_ids + output_ids, ids outside [0, vocab) left out. Adds only the
  // output ids past those the last call saw when the call extends it (the same prompt and vocab,
  // at least as many output ids, the earlier ones unchanged -- a request's tokens only grow);
  // anything else is counted afresh.
  void Update(std::span<const int32_t> prompt_ids, std::span<const int32_t> output_ids,
              int64_t vocab);

  // One entry per distinct id, ascending token; row is 0.
  std::span<const kernels::PenaltyEntry> entries() const { return entries_; }
  // Appends entries() with row = `row`.
  void AppendTo(int32_t row, std::vector<kernels::PenaltyEntry>* out) const;

 private:
  void Recount(std::span<const int32_t> prompt_ids, std::span<const int32_t> output_ids,
               int64_t vocab);
  void AddOutputId(int32_t id);

  const bool with_prompt_;
  std::vector<kernels::PenaltyEntry> entries_;
  size_t num_prompt_ids_ = 0;  // what the entries were counted from
  size_t num_output_ids_ = 0;
  int64_t vocab_ = -1;         // -1: nothing counted yet
};

}  // namespace strata::engine
