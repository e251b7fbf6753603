// The shape of a model's paged KV cache. A page holds `block_size` tokens of ONE layer's K and V
// (DESIGN.md §5), so a request's layers can live in different pages (and later, tiers):
//   page: [2 (K, V), block_size, num_kv_heads, head_dim] f32 elements, or, for another codec,
//         the bytes of kernels/kv_codec.h's page layout.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/status.h"
#include "kernels/kv_codec.h"

namespace strata::kvcache {

// KIVI's residual window is at most this many tokens (policies' residual_tokens).
inline constexpr int32_t kMaxKiviResidualTokens = 512;

struct KvLayout {
  int32_t num_layers = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 16;  // tokens per page
  kernels::KvCodec codec = kernels::KvCodec::kF32;

  kernels::KvPageFormat Format() const {
    return {.codec = codec, .block_size = block_size, .num_kv_heads = num_kv_heads,
            .head_dim = head_dim};
  }
  size_t PageBytes() const { return Format().PageBytes(); }
  bool kivi() const { return kernels::IsKivi(codec); }
  // KIVI: the format of a request's residual pages, carved from the same pool (one page's bytes
  // hold as many bf16 tokens as fit).
  kernels::KvPageFormat ResidualFormat() const {
    kernels::KvPageFormat f{.codec = kernels::KvCodec::kBf16, .block_size = 1,
                            .num_kv_heads = num_kv_heads, .head_dim = head_dim};
    f.block_size = static_cast<int32_t>(PageBytes() / f.PageBytes());
    return f;
  }
  // KIVI: residual pages per layer for a window of `residual_tokens` (it holds at most
  // residual_tokens - 1 tokens between steps: a full window is folded at once).
  int32_t ResidualPages(int32_t residual_tokens) const {
    const int32_t per_page = ResidualFormat().block_size;
    return (residual_tokens - 1 + per_page - 1) / per_page;
  }
  // Blocks needed to hold `num_tokens` tokens of one layer.
  int64_t BlocksFor(int64_t num_tokens) const { return (num_tokens + block_size - 1) / block_size; }

  absl::Status Validate() const {
    if (num_layers <= 0 || num_kv_heads <= 0 || head_dim <= 0) {
      return absl::InvalidArgumentError("kv layout: layers, kv heads and head_dim must be > 0");
    }
    if (block_size <= 0 || block_size > 1024) {
      return absl::InvalidArgumentError(
          StrCat("kvcache.block_size must be in [1, 1024], got ", block_size));
    }
    return Format().Validate();
  }
};

// Tokens per page of `codec`'s pool when the config asks for `block_size`: KIVI pages hold whole
// 32-token groups, so they round up to a multiple of 32.
inline int32_t PoolBlockSize(kernels::KvCodec codec, int32_t block_size) {
  if (!kernels::IsKivi(codec)) return block_size;
  return (block_size + kernels::kKiviGroupTokens - 1) / kernels::kKiviGroupTokens *
         kernels::kKiviGroupTokens;
}

// KIVI: the quantized tokens after a step that leaves `num_tokens` tokens, `quant_tokens` of
// them quantized before: every full window of `residual_tokens` past them is folded.
inline int64_t KiviQuantAfter(int64_t quant_tokens, int64_t num_tokens, int32_t residual_tokens) {
  if (num_tokens <= quant_tokens) return quant_tokens;
  return quant_tokens + (num_tokens - quant_tokens) / residual_tokens * residual_tokens;
}

}  // namespace strata::kvcache
