// ModelRunner's part of the sparsity policies (DESIGN.md §5, kvcache/sparsity.h): attention
// probabilities of chosen rows for H2O and SnapKV, computed per layer right after the layer's
// attention and copied to host memory, and the in-place compaction of kept KV tokens between
// steps. Pool 0 (f32) only: sparse policies use the fp32 codec.
#include <algorithm>
#include <cmath>

#include "engine/model_runner.h"

namespace strata::engine {

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
  if (scores_ == nullptr || scores_->size_bytes() < per_layer * sizeof(float)) {
    ASSIGN_OR_RETURN(scores_, device_->Allocate(per_layer * sizeof(float)));
  }
  if (score_from_ == nullptr) {
    ASSIGN_OR_RETURN(score_from_, device_->Allocate(rc_.max_num_seqs * sizeof(int32_t)));
  }
  RETURN_IF_ERROR(device_->CopyToDevice(score_from_->data(), b.score_from.data(),
                                        pool0 * sizeof(int32_t)));
  scores_host_.assign(per_layer * config_.num_layers, 0.0f);
  score_seqs_ = pool0;
  return absl::OkStatus();
}

absl::Status ModelRunner::LayerScores(int32_t l, int32_t pool0_seqs, int32_t seqs,
                                      int32_t max_blocks) {
  if (score_seqs_ == 0) return absl::OkStatus();
  const kernels::KvPoolView kv{.pool = F(kv_arena_), .num_pages = rc_.num_kv_pages,
                               .block_size = layout_.block_size,
                               .num_kv_heads = layout_.num_kv_heads,
                               .head_dim = layout_.head_dim};
  const size_t per_layer = static_cast<size_t>(pool0_seqs) * layout_.num_kv_heads * score_stride_;
  RETURN_IF_ERROR(device_->AttentionScores(
      {.q = F(q_), .kv = kv, .query_start = query_start_->as<int32_t>(),
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
  auto upload = [&](std::span<const int32_t> v) -> absl::StatusOr<std::unique_ptr<kernels::Buffer>> {
    ASSIGN_OR_RETURN(auto buf, device_->Allocate(v.size_bytes()));
    RETURN_IF_ERROR(device_->CopyToDevice(buf->data(), v.data(), v.size_bytes()));
    return buf;
  };
  ASSIGN_OR_RETURN(auto tables, upload(c.block_tables));
  ASSIGN_OR_RETURN(auto keep, upload(c.keep));
  ASSIGN_OR_RETURN(auto num_keep, upload(c.num_keep));
  const kernels::KvPoolView kv{.pool = F(kv_arena_), .num_pages = rc_.num_kv_pages,
                               .block_size = layout_.block_size,
                               .num_kv_heads = layout_.num_kv_heads,
                               .head_dim = layout_.head_dim};
  for (int64_t l = 0; l < layers; ++l) {
    RETURN_IF_ERROR(device_->KvCompact(
        {.kv = kv,
         .block_tables = tables->as<int32_t>() + l * c.num_seqs * c.max_blocks_per_seq,
         .keep = keep->as<int32_t>() + l * c.num_seqs * heads * c.max_keep,
         .num_keep = num_keep->as<int32_t>(), .num_seqs = c.num_seqs,
         .max_blocks_per_seq = c.max_blocks_per_seq, .max_keep = c.max_keep}));
  }
  return absl::OkStatus();
}

}  // namespace strata::engine
