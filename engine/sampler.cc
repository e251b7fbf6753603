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
  const int64_t vocab = static_cast<int64_t>(logits.size());
  auto in_vocab = [vocab](int32_t id) { return id >= 0 && id < vocab; };
  if (params.repetition_penalty != 1.0f) {
    // A bitmap of penalised ids: each token is penalised once however often it occurs.
    std::vector<uint64_t> seen(static_cast<size_t>(vocab + 63) / 64, 0);
    auto penalise = [&](int32_t id) {
      if (!in_vocab(id)) return;
      const uint64_t bit = uint64_t{1} << (id & 63);
      uint64_t& word = seen[static_cast<size_t>(id) >> 6];
      if (word & bit) return;
      word |= bit;
      logits[id] = kernels::cpu::RepetitionPenalized(logits[id], params.repetition_penalty);
    };
    for (int32_t id : prompt_ids) penalise(id);
    for (int32_t id : generated_ids) penalise(id);
  }
  if (params.presence_penalty == 0.0f && params.frequency_penalty == 0.0f) return;
  std::vector<int32_t> sorted(generated_ids.begin(), generated_ids.end());
  std::sort(sorted.begin(), sorted.end());
  for (size_t begin = 0; begin < sorted.size();) {
    size_t end = begin;
    while (end < sorted.size() && sorted[end] == sorted[begin]) ++end;
    if (in_vocab(sorted[begin])) {
      float& logit = logits[sorted[begin]];
      logit = kernels::cpu::OutputPenalized(logit, params.frequency_penalty,
                                            params.presence_penalty,
                                            static_cast<int32_t>(end - begin));
    }
    begin = end;
  }
}

int32_t Sampler::Sample(std::span<float> logits, std::span<const int32_t> prompt_ids,
                        std::span<const int32_t> generated_ids) {
  CHECK(!logits.empty());
  ApplyPenalties(params_, logits, prompt_ids, generated_ids);
  return kernels::cpu::SampleRow(logits, NextRow());
}

kernels::SamplingRow Sampler::NextRow() {
  kernels::SamplingRow row;
  row.temperature = params_.temperature;
  row.top_k = params_.top_k;
  row.top_p = params_.top_p;
  row.min_p = params_.min_p;
  row.repetition_penalty = params_.repetition_penalty;
  row.presence_penalty = params_.presence_penalty;
  row.frequency_penalty = params_.frequency_penalty;
  if (!params_.IsGreedy()) row.uniform = NextUniform();
  return row;
}

void Sampler::AppendPenaltyEntries(int32_t row, std::span<const int32_t> prompt_ids,
                                   std::span<const int32_t> generated_ids, int64_t vocab,
                                   std::vector<kernels::PenaltyEntry>* out) const {
  const bool repetition = params_.repetition_penalty != 1.0f;
  if (!repetition && params_.presence_penalty == 0.0f && params_.frequency_penalty == 0.0f) {
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

}  // namespace strata::engine
