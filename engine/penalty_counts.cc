#include "engine/penalty_counts.h"

#include <algorithm>
#include <utility>

namespace strata::engine {
namespace {

// More new output ids than this at once (a first call, a resumed request) are counted afresh: one
// sort beats that many sorted inserts.
constexpr size_t kMaxIncremental = 64;

}  // namespace

void PenaltyCounts::Update(std::span<const int32_t> prompt_ids,
                           std::span<const int32_t> output_ids, int64_t vocab) {
  const bool extends = vocab == vocab_ && prompt_ids.size() == num_prompt_ids_ &&
                       output_ids.size() >= num_output_ids_;
  if (!extends || output_ids.size() - num_output_ids_ > kMaxIncremental) {
    Recount(prompt_ids, output_ids, vocab);
    return;
  }
  for (int32_t id : output_ids.subspan(num_output_ids_)) {
    if (id >= 0 && id < vocab) AddOutputId(id);
  }
  num_output_ids_ = output_ids.size();
}

void PenaltyCounts::AppendTo(int32_t row, std::vector<kernels::PenaltyEntry>* out) const {
  const size_t first = out->size();
  out->insert(out->end(), entries_.begin(), entries_.end());
  for (size_t i = first; i < out->size(); ++i) (*out)[i].row = row;
}

void PenaltyCounts::Recount(std::span<const int32_t> prompt_ids,
                            std::span<const int32_t> output_ids, int64_t vocab) {
  auto in_vocab = [vocab](int32_t id) { return id >= 0 && id < vocab; };
  std::vector<std::pair<int32_t, bool>> ids;  // (id, occurs in the output)
  ids.reserve(output_ids.size() + (with_prompt_ ? prompt_ids.size() : 0));
  for (int32_t id : output_ids) {
    if (in_vocab(id)) ids.emplace_back(id, true);
  }
  if (with_prompt_) {
    for (int32_t id : prompt_ids) {
      if (in_vocab(id)) ids.emplace_back(id, false);
    }
  }
  std::sort(ids.begin(), ids.end());
  entries_.clear();
  for (size_t begin = 0; begin < ids.size();) {
    size_t end = begin;
    int32_t output_count = 0;
    for (; end < ids.size() && ids[end].first == ids[begin].first; ++end) {
      output_count += ids[end].second ? 1 : 0;
    }
    entries_.push_back({.row = 0, .token = ids[begin].first, .output_count = output_count});
    begin = end;
  }
  num_prompt_ids_ = prompt_ids.size();
  num_output_ids_ = output_ids.size();
  vocab_ = vocab;
}

void PenaltyCounts::AddOutputId(int32_t id) {
  auto it = std::lower_bound(
      entries_.begin(), entries_.end(), id,
      [](const kernels::PenaltyEntry& e, int32_t token) { return e.token < token; });
  if (it != entries_.end() && it->token == id) {
    ++it->output_count;
  } else {
    entries_.insert(it, {.row = 0, .token = id, .output_count = 1});
  }
}

}  // namespace strata::engine
