#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "kernels/cpu/cpu_sampling.h"
#include "kernels/row_argmax.h"

namespace strata::engine {
namespace {

absl::Status OutOfRange(std::string_view field, std::string_view range, float value) {
  return absl::InvalidArgumentError(StrCat(field, " must be ", range, ", got ", value));
}

// The row's parameters without a uniform.
kernels::SamplingRow RowOf(const SamplingParams& p) {
  kernels::SamplingRow row;
  row.temperature = p.temperature;
  row.top_k = p.top_k;
  row.top_p = p.top_p;
  row.min_p = p.min_p;
  row.repetition_penalty = p.repetition_penalty;
  row.presence_penalty = p.presence_penalty;
  row.frequency_penalty = p.frequency_penalty;
  return row;
}

bool HasPenalty(const SamplingParams& p) {
  return p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f ||
         p.frequency_penalty != 0.0f;
}

// The counts `p`'s penalties read (prompt ids only for a repetition penalty); none without one.
std::optional<PenaltyCounts> CountsFor(const SamplingParams& p) {
  if (!HasPenalty(p)) return std::nullopt;
  return PenaltyCounts(/*with_prompt=*/p.repetition_penalty != 1.0f);
}

// The host's penalty stage: brings `counts` to the request's ids, then applies its entries with
// the CPU twin of Device::ApplyPenalties on this one row, so both paths touch the same logits
// the same way.
void ApplyCounted(const SamplingParams& params, PenaltyCounts& counts, std::span<float> logits,
                  std::span<const int32_t> prompt_ids, std::span<const int32_t> generated_ids) {
  counts.Update(prompt_ids, generated_ids, static_cast<int64_t>(logits.size()));
  const std::span<const kernels::PenaltyEntry> entries = counts.entries();
  if (entries.empty()) return;  // also the only case for an empty logits row (no id in range)
  const kernels::SamplingRow row = RowOf(params);
  CHECK_OK(kernels::cpu::ApplyPenalties({.logits = logits.data(),
                                         .rows_params = &row,
                                         .entries = entries.data(),
                                         .num_entries = static_cast<int64_t>(entries.size()),
                                         .rows = 1,
                                         .cols = static_cast<int64_t>(logits.size())},
                                        /*threads=*/1));
}

}  // namespace

absl::Status SamplingParams::Validate() const {
  // Written as !(in range) so that NaN fails every check.
  if (!(std::isfinite(temperature) && temperature >= 0.0f)) {
    return OutOfRange("temperature", "a finite number >= 0", temperature);
  }
  if (top_k < -1) {
    return absl::InvalidArgumentError(StrCat("top_k must be -1 or 0 (off) or >= 1, got ", top_k));
  }
  if (!(top_p > 0.0f && top_p <= 1.0f)) return OutOfRange("top_p", "in (0, 1]", top_p);
  if (!(min_p >= 0.0f && min_p <= 1.0f)) return OutOfRange("min_p", "in [0, 1]", min_p);
  if (!(std::isfinite(repetition_penalty) && repetition_penalty > 0.0f)) {
    return OutOfRange("repetition_penalty", "a finite number > 0", repetition_penalty);
  }
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) {
    return OutOfRange("presence_penalty", "in [-2, 2]", presence_penalty);
  }
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) {
    return OutOfRange("frequency_penalty", "in [-2, 2]", frequency_penalty);
  }
  return absl::OkStatus();
}

bool SamplingParams::IsGreedy() const {
  return temperature < Sampler::kGreedyTemperature || top_k == 1;
}

bool SamplingParams::IsPlainArgmax() const {
  return IsGreedy() && !HasPenalty(*this);
}

Sampler::Sampler(const SamplingParams& params)
    : params_(params), penalty_counts_(CountsFor(params)) {
  uint64_t seed = 0;
  if (params.seed.has_value()) {
    seed = *params.seed;
  } else {
    std::random_device device;
    seed = (static_cast<uint64_t>(device()) << 32) ^ device();
  }
  rng_.seed(seed);
}

double Sampler::NextUniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

int32_t Sampler::Argmax(std::span<const float> logits) {
  CHECK(!logits.empty());
  return kernels::RowArgmax(logits.data(), logits.size());
}

void Sampler::ApplyPenalties(const SamplingParams& params, std::span<float> logits,
                             std::span<const int32_t> prompt_ids,
                             std::span<const int32_t> generated_ids) {
  std::optional<PenaltyCounts> counts = CountsFor(params);
  if (counts) ApplyCounted(params, *counts, logits, prompt_ids, generated_ids);
}

int32_t Sampler::Sample(std::span<float> logits, std::span<const int32_t> prompt_ids,
                        std::span<const int32_t> generated_ids) {
  CHECK(!logits.empty());
  if (penalty_counts_) ApplyCounted(params_, *penalty_counts_, logits, prompt_ids, generated_ids);
  return kernels::cpu::SampleRow(logits, NextRow());
}

kernels::SamplingRow Sampler::NextRow() {
  kernels::SamplingRow row = RowOf(params_);
  if (!params_.IsGreedy()) row.uniform = NextUniform();
  return row;
}

void Sampler::AppendPenaltyEntries(int32_t row, std::span<const int32_t> prompt_ids,
                                   std::span<const int32_t> generated_ids, int64_t vocab,
                                   std::vector<kernels::PenaltyEntry>* out) {
  if (!penalty_counts_) return;
  penalty_counts_->Update(prompt_ids, generated_ids, vocab);
  penalty_counts_->AppendTo(row, out);
}

}  // namespace strata::engine
