#include "engine/generator.h"

#include <algorithm>
#include <numeric>

#include "common/clock.h"

namespace strata::engine {

double GenerateStats::PrefillTokensPerSecond() const {
  return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0;
}

double GenerateStats::DecodeTokensPerSecond() const {
  return decode_seconds > 0 ? (generated_tokens - 1) / decode_seconds : 0;
}

Generator::Generator(ModelRunner* runner, kvcache::PagePool* pool)
    : runner_(runner), pool_(pool) {}

absl::Status Generator::Step(kvcache::SequenceKv& seq, std::span<const int32_t> ids,
                             int64_t from, int64_t to, bool all_rows,
                             std::vector<float>* logits) {
  if (!seq.Reserve(to)) {
    return absl::ResourceExhaustedError(
        StrCat("KV cache full: ", to, " tokens need more than the ", pool_->num_pages(),
               " pages configured"));
  }
  const kvcache::KvLayout& layout = runner_->kv_layout();
  const int64_t n = to - from;
  const int32_t max_blocks = static_cast<int32_t>(seq.num_blocks());
  std::vector<int32_t> positions(n), rows;
  std::iota(positions.begin(), positions.end(), static_cast<int32_t>(from));
  std::vector<int32_t> tables, query_start{0, static_cast<int32_t>(n)};
  std::vector<int32_t> context_lens{static_cast<int32_t>(to)};
  std::vector<int64_t> slots;
  for (int32_t l = 0; l < layout.num_layers; ++l) {
    auto pages = seq.pages(l);
    tables.insert(tables.end(), pages.begin(), pages.end());
    for (int64_t p = from; p < to; ++p) slots.push_back(seq.Slot(l, p));
  }
  if (all_rows) {
    rows.resize(n);
    std::iota(rows.begin(), rows.end(), 0);
  } else {
    rows.push_back(static_cast<int32_t>(n - 1));
  }
  const int64_t vocab = runner_->vocab_size();
  logits->resize(rows.size() * vocab);
  BatchInput batch{.token_ids = ids.subspan(from, n), .positions = positions,
                   .query_start = query_start, .context_lens = context_lens,
                   .max_blocks_per_seq = max_blocks, .block_tables = tables, .slots = slots,
                   .logit_rows = rows, .layer_loads = {}, .layer_stores = {},
                   .seq_pools = {}, .quant_before = {}, .quant_after = {},
                   .score_from = {}};
  return runner_->Forward(batch, *logits);
}

absl::StatusOr<GenerateResult> Generator::Generate(std::span<const int32_t> prompt_ids,
                                                   const GenerateOptions& options,
                                                   const std::function<bool(int32_t)>& on_token) {
  if (prompt_ids.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  RETURN_IF_ERROR(options.sampling.Validate());
  const int64_t max_len = runner_->runner_config().max_model_len;
  if (static_cast<int64_t>(prompt_ids.size()) + options.max_tokens > max_len) {
    return absl::InvalidArgumentError(
        StrCat("prompt (", prompt_ids.size(), " tokens) + max_tokens (", options.max_tokens,
               ") exceeds the maximum model length ", max_len));
  }
  kvcache::SequenceKv seq(runner_->kv_layout(), pool_);
  Sampler sampler(options.sampling);
  std::vector<int32_t> ids(prompt_ids.begin(), prompt_ids.end());
  std::vector<float> logits;
  GenerateResult result;
  result.finish_reason = "length";
  result.stats.prompt_tokens = static_cast<int64_t>(prompt_ids.size());
  const int64_t chunk = runner_->runner_config().max_batch_tokens;
  double start = NowSeconds();
  int64_t computed = 0;
  while (result.stats.generated_tokens < options.max_tokens) {
    const int64_t target = static_cast<int64_t>(ids.size());
    while (computed < target) {  // chunked prefill, or one decode token
      int64_t to = std::min(target, computed + chunk);
      RETURN_IF_ERROR(Step(seq, ids, computed, to, /*all_rows=*/false, &logits));
      computed = to;
    }
    int32_t next = sampler.Sample(logits, prompt_ids, result.output_ids);
    double now = NowSeconds();
    (result.stats.generated_tokens == 0 ? result.stats.prefill_seconds
                                        : result.stats.decode_seconds) += now - start;
    start = now;
    ids.push_back(next);
    result.output_ids.push_back(next);
    ++result.stats.generated_tokens;
    bool keep_going = !on_token || on_token(next);
    const auto& stops = options.stop_token_ids;
    if (std::find(stops.begin(), stops.end(), next) != stops.end()) {
      result.finish_reason = "stop";
      break;
    }
    if (!keep_going) break;
  }
  return result;
}

absl::Status Generator::Score(
    std::span<const int32_t> ids,
    const std::function<void(int64_t, std::span<const float>)>& on_logits) {
  kvcache::SequenceKv seq(runner_->kv_layout(), pool_);
  const int64_t chunk = std::min<int64_t>(runner_->runner_config().max_batch_tokens,
                                          runner_->runner_config().max_logit_rows);
  const int64_t vocab = runner_->vocab_size();
  std::vector<float> logits;
  for (int64_t from = 0; from < static_cast<int64_t>(ids.size()); from += chunk) {
    int64_t to = std::min<int64_t>(ids.size(), from + chunk);
    RETURN_IF_ERROR(Step(seq, ids, from, to, /*all_rows=*/true, &logits));
    for (int64_t i = from; i < to; ++i) {
      on_logits(i, std::span<const float>(logits).subspan((i - from) * vocab, vocab));
    }
  }
  return absl::OkStatus();
}

}  // namespace strata::engine
