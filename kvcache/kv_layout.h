// The shape of a model's paged KV cache. A page holds `block_size` tokens of ONE layer's K and V
// (DESIGN.md §5), so a request's layers can live in different pages (and later, tiers):
//   page: [2 (K, V), block_size, num_kv_heads, head_dim] elements of the codec (f32 for now).
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/status.h"

namespace strata::kvcache {

struct KvLayout {
  int32_t num_layers = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 16;  // tokens per page

  size_t PageElements() const {
    return 2 * static_cast<size_t>(block_size) * num_kv_heads * head_dim;
  }
  size_t PageBytes() const { return PageElements() * sizeof(float); }
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
    return absl::OkStatus();
  }
};

}  // namespace strata::kvcache
