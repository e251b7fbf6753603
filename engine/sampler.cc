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

// Sampler::AppendPenaltyEntries for `params`: the one place that decides which logits a penalty
// touches, for the host Sampler and the device alike.
void AppendEntries(const SamplingParams& params, int32_t row, std::span<const int32_t> prompt_ids,
                   std::span<const int32_t> generated_ids, int64_t vocab,
                   std::vector<kernels::PenaltyEntry>* out) {
  const bool repetition = params.repetition_penalty != 1.0f;
  if (!repetition && params.presence_penalty == 0.0f && params.frequency_penalty == 0.0f) {
    return;
  }
  auto in_vocab = [vocab](int32_t id) { return id >= 0 && id < vocab; };
  std::vector<std::pair<int32_t, bool>> ids;  // (id, occurs in the output)
  ids.reserve(generated_ids.size() + (repetition ? prompt_ids.size() : 0));
  for (int32_t id : generated_ids) {
    if (in_vocab(id)) ids.emplace_back(id, true);
  }
  if (repetition) {
    for (int32_t id : prompt_ids) {
      if (in_vocab(id)) ids.emplace_back(id, false);
    }
  }
  std::sort(ids.begin(), ids.end());
  for (size_t begin = 0; begin < ids.size();) {
    size_t end = begin;
    int32_t output_count = 0;
    for (; end < ids.size() && ids[end].first == ids[begin].first; ++end) {
      output_count += ids[end].second ? 1 : 0;
    }
    out->push_back({.row = row, .token = ids[begin].first, .output_count = output_count});
    begin = end;
  }
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
  return IsGreedy() && repetition_penalty == 1.0f && presence_penalty == 0.0f &&
         frequency_penalty == 0.0f;
}

Sampler::Sampler(const SamplingParams& params) : params_(params) {
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
  std::vector<kernels::PenaltyEntry> entries;
  AppendEntries(params, 0, prompt_ids, generated_ids, static_cast<int64_t>(logits.size()),
                &entries);
  const kernels::SamplingRow row = RowOf(params);
  for (const kernels::PenaltyEntry& e : entries) {
    logits[e.token] = kernels::cpu::PenalizedLogit(logits[e.token], row, e.output_count);
  }
}

int32_t Sampler::Sample(std::span<float> logits, std::span<const int32_t> prompt_ids,
                        std::span<const int32_t> generated_ids) {
  CHECK(!logits.empty());
  ApplyPenalties(params_, logits, prompt_ids, generated_ids);
  return kernels::cpu::SampleRow(logits, NextRow());
}

kernels::SamplingRow Sampler::NextRow() {
  kernels::SamplingRow row = RowOf(params_);
  if (!params_.IsGreedy()) row.uniform = NextUniform();
  return row;
}

void Sampler::AppendPenaltyEntries(int32_t row, std::span<const int32_t> prompt_ids,
                                   std::span<const int32_t> generated_ids, int64_t vocab,
                                   std::vector<kernels::PenaltyEntry>* out) const {
  AppendEntries(params_, row, prompt_ids, generated_ids, vocab, out);
}

}  // namespace strata::engine
