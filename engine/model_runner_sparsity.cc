// ModelRunner's part of the sparsity policies (DESIGN.md §5, kvcache/sparsity.h): attention
// probabilities of chosen rows for H2O and SnapKV, computed per layer right after the layer's
// attention and copied to host memory, and the in-place compaction of kept KV tokens between
// steps. Pool 0 (f32) only: sparse policies use the fp32 codec.
#include <algorithm>
#include <cmath>

#include "engine/model_runner.h"

namespace strata::engine {

absl::Status ModelRunner::Grow(std::unique_ptr<kernels::Buffer>* buffer, size_t bytes) {
  if (*buffer == nullptr || (*buffer)->size_bytes() < bytes) {
    ASSIGN_OR_RETURN(*buffer, device_->Allocate(bytes));
  }
  return absl::OkStatus();
}

absl::Status ModelRunner::UploadGrown(std::unique_ptr<kernels::Buffer>* buffer,
                                      std::span<const std::byte> host) {
  RETURN_IF_ERROR(Grow(buffer, host.size_bytes()));
  return device_->CopyToDevice((*buffer)->data(), host.data(), host.size_bytes());
}

absl::Status ModelRunner::PrepareScores(const BatchInput& b) {
  score_seqs_ = 0;
  if (b.score_from.empty()) return absl::OkStatus();
  const int32_t seqs = static_cast<int32_t>(b.context_lens.size());
  if (static_cast<int32_t>(b.score_from.size()) != seqs) {
    return absl::InvalidArgumentError("forward batch: score_from size");
  }
  const int32_t pool0 = ranges_.empty() || ranges_[0].pool != 0 ? 0 : ranges_[0].end_seq;
  for (int32_t s = pool0; s < seqs; ++s) {
    if (b.score_from[s] != b.query_start[s + 1]) {
      return absl::InvalidArgumentError("forward batch: scores only for pool 0 sequences");
    }
  }
  if (pool0 == 0) return absl::OkStatus();
  score_stride_ = *std::max_element(b.context_lens.begin(), b.context_lens.begin() + pool0);
  const size_t per_layer = static_cast<size_t>(pool0) * layout_.num_kv_heads * score_stride_;
  RETURN_IF_ERROR(Grow(&scores_, per_layer * sizeof(float)));
  RETURN_IF_ERROR(UploadGrown(&score_from_, b.score_from.first(pool0)));
  scores_host_.resize(per_layer * config_.num_layers);  // every layer's copy overwrites its part
  score_seqs_ = pool0;
  return absl::OkStatus();
}

absl::Status ModelRunner::LayerScores(int32_t l, int32_t pool0_seqs, int32_t seqs,
                                      int32_t max_blocks) {
  if (score_seqs_ == 0) return absl::OkStatus();
  const size_t per_layer = static_cast<size_t>(pool0_seqs) * layout_.num_kv_heads * score_stride_;
  RETURN_IF_ERROR(device_->AttentionScores(
      {.q = F(q_), .kv = Pool0View(), .query_start = query_start_->as<int32_t>(),
       .context_lens = context_lens_->as<int32_t>(),
       .block_tables = block_tables_->as<int32_t>() + static_cast<int64_t>(l) * seqs * max_blocks,
       .score_from = score_from_->as<int32_t>(), .num_seqs = pool0_seqs,
       .max_blocks_per_seq = max_blocks, .num_q_heads = static_cast<int32_t>(config_.num_heads),
       .scale = 1.0f / std::sqrt(static_cast<float>(config_.head_dim)),
       .scores = F(scores_), .max_context = static_cast<int32_t>(score_stride_)}));
  return device_->CopyToHost(scores_host_.data() + l * per_layer, scores_->data(),
                             per_layer * sizeof(float));
}

absl::Status ModelRunner::CompactKv(const CompactionInput& c) {
  const int64_t layers = config_.num_layers, heads = layout_.num_kv_heads;
  if (c.num_seqs <= 0 || c.max_blocks_per_seq <= 0 || c.max_keep <= 0 ||
      static_cast<int64_t>(c.block_tables.size()) != layers * c.num_seqs * c.max_blocks_per_seq ||
      static_cast<int64_t>(c.keep.size()) != layers * c.num_seqs * heads * c.max_keep ||
      static_cast<int64_t>(c.num_keep.size()) != c.num_seqs) {
    return absl::InvalidArgumentError("compaction: shapes");
  }
  RETURN_IF_ERROR(UploadGrown(&compact_tables_, c.block_tables));
  RETURN_IF_ERROR(UploadGrown(&compact_keep_, c.keep));
  RETURN_IF_ERROR(UploadGrown(&compact_num_keep_, c.num_keep));
  for (int64_t l = 0; l < layers; ++l) {
    RETURN_IF_ERROR(device_->KvCompact(
        {.kv = Pool0View(),
         .block_tables = compact_tables_->as<int32_t>() + l * c.num_seqs * c.max_blocks_per_seq,
         .keep = compact_keep_->as<int32_t>() + l * c.num_seqs * heads * c.max_keep,
         .num_keep = compact_num_keep_->as<int32_t>(), .num_seqs = c.num_seqs,
         .max_blocks_per_seq = c.max_blocks_per_seq, .max_keep = c.max_keep}));
  }
  return absl::OkStatus();
}

}  // namespace strata::engine
