// ModelRunner's decode graphs (Device::RunGraph; CUDA graphs on the GPU). A decode step launches
// ~12 kernels per layer whose work is tiny at small batches, so launch overhead dominates; as one
// captured graph it is one launch. A graph replays fixed arguments, so a step is padded to a
// bucket shape: the sequence count rounded up to 1, 2, 4, 8 or a multiple of 8, and the block
// table width to a power of two (at least 8). Padding sequences hold one token at position 0
// whose K/V goes to the padding page (one page past the arena's last), which is all their
// attention reads; their logits are computed and ignored. Everything a replay reads changes only
// through the persistent device buffers UploadBatch fills before the graph runs.
#include <algorithm>
#include <bit>

#include "engine/model_runner.h"

namespace strata::engine {
namespace {

int32_t SeqBucket(int32_t seqs) {
  if (seqs <= 8) return static_cast<int32_t>(std::bit_ceil(static_cast<uint32_t>(seqs)));
  return (seqs + 7) / 8 * 8;
}

}  // namespace

std::optional<ModelRunner::GraphShape> ModelRunner::DecodeGraphShape(const BatchInput& b) const {
  if (pad_page_ < 0) return std::nullopt;
  const int32_t seqs = static_cast<int32_t>(b.context_lens.size());
  if (static_cast<int64_t>(b.token_ids.size()) != seqs || !b.layer_loads.empty() ||
      !b.layer_stores.empty() || !b.score_from.empty() ||
      b.logit_rows.size() != static_cast<size_t>(seqs)) {
    return std::nullopt;
  }
  for (int32_t pool : b.seq_pools) {
    if (pool != 0) return std::nullopt;
  }
  for (int32_t s = 0; s < seqs; ++s) {  // one token per sequence, every row's logits in order
    if (b.query_start[s + 1] != s + 1 || b.logit_rows[s] != s) return std::nullopt;
  }
  // CheckBatch held the batch within these caps, so the clamped bucket still holds it.
  const int64_t cap = std::min<int64_t>({rc_.max_num_seqs, rc_.max_logit_rows, rc_.max_batch_tokens});
  const uint32_t width = std::bit_ceil(static_cast<uint32_t>(std::max(b.max_blocks_per_seq, 8)));
  return GraphShape{.seqs = static_cast<int32_t>(std::min<int64_t>(SeqBucket(seqs), cap)),
                    .max_blocks = static_cast<int32_t>(std::min<int64_t>(width, max_blocks_per_seq()))};
}

BatchInput ModelRunner::PadDecodeBatch(const BatchInput& b, const GraphShape& shape) {
  const int32_t seqs = static_cast<int32_t>(b.context_lens.size());
  const int32_t padded = shape.seqs, width = shape.max_blocks;
  const int32_t layers = static_cast<int32_t>(config_.num_layers);
  padded_ids_.assign(b.token_ids.begin(), b.token_ids.end());
  padded_ids_.resize(padded, 0);
  padded_positions_.assign(b.positions.begin(), b.positions.end());
  padded_positions_.resize(padded, 0);
  padded_context_lens_.assign(b.context_lens.begin(), b.context_lens.end());
  padded_context_lens_.resize(padded, 1);
  padded_query_start_.resize(padded + 1);
  padded_rows_.resize(padded);
  for (int32_t s = 0; s <= padded; ++s) padded_query_start_[s] = s;
  for (int32_t s = 0; s < padded; ++s) padded_rows_[s] = s;
  padded_tables_.assign(static_cast<size_t>(layers) * padded * width, pad_page_);
  padded_slots_.assign(static_cast<size_t>(layers) * padded,
                       static_cast<int64_t>(pad_page_) * layout_.block_size);
  for (int32_t l = 0; l < layers; ++l) {
    for (int32_t s = 0; s < seqs; ++s) {
      const int32_t* from = b.block_tables.data() +
                            (static_cast<size_t>(l) * seqs + s) * b.max_blocks_per_seq;
      std::copy(from, from + b.max_blocks_per_seq,
                padded_tables_.begin() + (static_cast<size_t>(l) * padded + s) * width);
      padded_slots_[static_cast<size_t>(l) * padded + s] = b.slots[static_cast<size_t>(l) * seqs + s];
    }
  }
  BatchInput out;
  out.token_ids = padded_ids_;
  out.positions = padded_positions_;
  out.query_start = padded_query_start_;
  out.context_lens = padded_context_lens_;
  out.max_blocks_per_seq = width;
  out.block_tables = padded_tables_;
  out.slots = padded_slots_;
  out.logit_rows = padded_rows_;
  return out;
}

}  // namespace strata::engine
