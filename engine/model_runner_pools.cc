// ModelRunner's KV pools besides pool 0 (DESIGN.md §5): pages of other codecs, each pool its own
// arena carved from the KV budget. A batch lists its sequences grouped by pool (pool 0 first);
// each pool's rows get their K/V written in the pool's codec and their attention computed by the
// codec kernels, which dequantize page by page.
#include <cmath>

#include "engine/model_runner.h"

namespace strata::engine {

absl::Status ModelRunner::InitPools() {
  for (const KvPoolSpec& spec : rc_.extra_pools) {
    ExtraPool pool;
    pool.layout = layout_;
    pool.layout.codec = spec.codec;
    pool.layout.block_size = spec.block_size;
    pool.num_pages = spec.num_pages;
    if (spec.num_pages <= 0 || spec.codec == kernels::KvCodec::kF32) {
      return absl::InvalidArgumentError("extra KV pools need pages and a codec other than fp32");
    }
    RETURN_IF_ERROR(pool.layout.Validate());
    ASSIGN_OR_RETURN(pool.arena, device_->Allocate(static_cast<size_t>(spec.num_pages) *
                                                   pool.layout.PageBytes()));
    extra_.push_back(std::move(pool));
  }
  const int64_t seqs = rc_.max_num_seqs;
  for (auto* b : {&quant_blocks_, &quant_before_, &quant_after_}) {
    ASSIGN_OR_RETURN(*b, device_->Allocate(seqs * 4));
  }
  ASSIGN_OR_RETURN(pool_query_start_, device_->Allocate((seqs + num_pools()) * 4));
  return absl::OkStatus();
}

absl::Status ModelRunner::CheckPoolBatch(const BatchInput& b) {
  auto bad = [](std::string_view what) {
    return absl::InvalidArgumentError(StrCat("forward batch: ", what));
  };
  std::vector<PoolRange>& ranges = ranges_;
  ranges.clear();
  const int32_t seqs = static_cast<int32_t>(b.context_lens.size());
  if (b.seq_pools.empty()) {
    ranges.push_back({.pool = 0, .first_seq = 0, .end_seq = seqs, .first_token = 0,
                      .end_token = b.query_start[seqs]});
    return absl::OkStatus();
  }
  if (static_cast<int32_t>(b.seq_pools.size()) != seqs) return bad("seq_pools size");
  const bool quant = !b.quant_before.empty() || !b.quant_after.empty();
  if (quant && (static_cast<int32_t>(b.quant_before.size()) != seqs ||
                static_cast<int32_t>(b.quant_after.size()) != seqs)) {
    return bad("quant_before / quant_after size");
  }
  for (int32_t s = 0; s < seqs; ++s) {
    const int32_t pool = b.seq_pools[s];
    if (pool < 0 || pool >= num_pools()) return bad("pool out of range");
    if (!ranges.empty() && pool < ranges.back().pool) return bad("seq_pools not ascending");
    if (pool_layout(pool).kivi() && !quant) return bad("KIVI sequences need quant counts");
    if (ranges.empty() || ranges.back().pool != pool) {
      ranges.push_back({.pool = pool, .first_seq = s, .end_seq = s,
                        .first_token = b.query_start[s], .end_token = b.query_start[s]});
    }
    ranges.back().end_seq = s + 1;
    ranges.back().end_token = b.query_start[s + 1];
  }
  return absl::OkStatus();
}

absl::Status ModelRunner::UploadPoolBatch(const BatchInput& b) {
  if (ranges_.size() == 1 && ranges_[0].pool == 0) return absl::OkStatus();
  std::vector<int32_t> rebased, quant_blocks(b.context_lens.size(), 0);
  for (PoolRange& r : ranges_) {
    r.query_start_at = static_cast<int32_t>(rebased.size());
    for (int32_t s = r.first_seq; s <= r.end_seq; ++s) {
      rebased.push_back(b.query_start[s] - r.first_token);
    }
    const kvcache::KvLayout& layout = pool_layout(r.pool);
    for (int32_t s = r.first_seq; s < r.end_seq; ++s) {
      quant_blocks[s] = static_cast<int32_t>(layout.kivi() ? b.quant_after[s] / layout.block_size
                                                           : layout.BlocksFor(b.context_lens[s]));
    }
  }
  auto up = [&](const std::unique_ptr<kernels::Buffer>& dst, std::span<const int32_t> v) {
    return device_->CopyToDevice(dst->data(), v.data(), v.size_bytes());
  };
  RETURN_IF_ERROR(up(pool_query_start_, rebased));
  RETURN_IF_ERROR(up(quant_blocks_, quant_blocks));
  if (!b.quant_before.empty()) {
    RETURN_IF_ERROR(up(quant_before_, b.quant_before));
    RETURN_IF_ERROR(up(quant_after_, b.quant_after));
  }
  return absl::OkStatus();
}

absl::Status ModelRunner::PoolAttention(const PoolRange& r, int32_t l, int64_t n, int32_t seqs,
                                        int32_t max_blocks) {
  const ExtraPool& pool = extra_[r.pool - 1];
  const kernels::KvPageFormat format = pool.layout.Format();
  const kernels::KvPageFormat residual = pool.layout.ResidualFormat();
  std::byte* arena = pool.arena->as<std::byte>();
  const size_t stride = pool.layout.PageBytes();
  const int64_t t0 = r.first_token;
  const int32_t m = r.end_seq - r.first_seq;
  const int32_t* query_start = pool_query_start_->as<int32_t>() + r.query_start_at;
  const int32_t* tables = block_tables_->as<int32_t>() +
                          (static_cast<int64_t>(l) * seqs + r.first_seq) * max_blocks;
  const int32_t* context_lens = context_lens_->as<int32_t>() + r.first_seq;
  if (pool.layout.kivi()) {
    RETURN_IF_ERROR(device_->KiviWriteKv(
        {.k = F(k_) + t0 * kv_dim_, .v = F(v_) + t0 * kv_dim_, .query_start = query_start,
         .context_lens = context_lens, .quant_before = quant_before_->as<int32_t>() + r.first_seq,
         .quant_after = quant_after_->as<int32_t>() + r.first_seq, .block_tables = tables,
         .num_seqs = m, .max_blocks_per_seq = max_blocks, .format = format,
         .residual_format = residual, .pool = arena, .page_stride = stride,
         .num_pages = pool.num_pages}));
  } else {
    RETURN_IF_ERROR(device_->QuantWriteKv(
        {.k = F(k_) + t0 * kv_dim_, .v = F(v_) + t0 * kv_dim_,
         .slots = slots_->as<int64_t>() + l * n + t0, .num_tokens = r.end_token - t0,
         .format = format, .pool = arena, .page_stride = stride, .num_pages = pool.num_pages}));
  }
  return device_->QuantPagedAttention(
      {.q = F(q_) + t0 * q_dim_, .out = F(attn_) + t0 * q_dim_, .format = format,
       .residual_format = residual, .pool = arena, .page_stride = stride,
       .num_pages = pool.num_pages, .query_start = query_start, .context_lens = context_lens,
       .block_tables = tables, .quant_blocks = quant_blocks_->as<int32_t>() + r.first_seq,
       .num_seqs = m, .max_blocks_per_seq = max_blocks,
       .num_q_heads = static_cast<int32_t>(config_.num_heads),
       .scale = 1.0f / std::sqrt(static_cast<float>(config_.head_dim)),
       .num_tokens = r.end_token - t0});
}

}  // namespace strata::engine
