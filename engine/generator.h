// Generator: one sequence at a time through a ModelRunner — chunked prefill, then decode token by
// token with a Sampler. It is what `strata generate`, the golden tests and the single-stream
// benchmark use; the continuous-batching engine (a later issue) builds batches the same way.
//
// Owns nothing but borrowed pointers; one thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "common/status.h"
#include "engine/model_runner.h"
#include "engine/sampler.h"
#include "kvcache/page_pool.h"
#include "kvcache/sequence_kv.h"

namespace strata::engine {

struct GenerateOptions {
  int64_t max_tokens = 16;                // tokens to generate at most
  SamplingParams sampling;                // temperature 0 = greedy
  std::vector<int32_t> stop_token_ids;    // generation ends after emitting one of these
};

struct GenerateStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prefill_seconds = 0;  // prompt forward passes, up to the first sampled token
  double decode_seconds = 0;   // every later step
  double PrefillTokensPerSecond() const;
  double DecodeTokensPerSecond() const;  // tokens after the first / decode_seconds
};

struct GenerateResult {
  std::vector<int32_t> output_ids;
  std::string finish_reason;  // "length" or "stop"
  GenerateStats stats;
};

class Generator {
 public:
  Generator(ModelRunner* runner, kvcache::PagePool* pool);

  // on_token (may be empty) sees each new id as it is sampled; returning false stops early.
  absl::StatusOr<GenerateResult> Generate(std::span<const int32_t> prompt_ids,
                                          const GenerateOptions& options,
                                          const std::function<bool(int32_t)>& on_token);

  // Teacher forcing: runs `ids` and calls on_logits(i, logits) with the logits at every position
  // i (the prediction of ids[i + 1]). Used by the golden and perplexity tests.
  absl::Status Score(std::span<const int32_t> ids,
                     const std::function<void(int64_t, std::span<const float>)>& on_logits);

 private:
  // Runs tokens[from, to) of `ids` (KV for [0, from) already stored) and returns the logits of
  // the rows listed by `all_rows` (every row) or only the last row.
  absl::Status Step(kvcache::SequenceKv& seq, std::span<const int32_t> ids, int64_t from,
                    int64_t to, bool all_rows, std::vector<float>* logits);

  ModelRunner* runner_;
  kvcache::PagePool* pool_;
};

}  // namespace strata::engine
