#include "kvcache/sequence_kv.h"

namespace strata::kvcache {

SequenceKv::SequenceKv(const KvLayout& layout, PagePool* pool)
    : layout_(layout), pool_(pool), pages_(layout.num_layers) {}

SequenceKv::~SequenceKv() { Release(); }

bool SequenceKv::Reserve(int64_t num_tokens) {
  int64_t want = layout_.BlocksFor(num_tokens);
  if (want <= num_blocks_) return true;
  int64_t missing = (want - num_blocks_) * layout_.num_layers;
  if (missing > pool_->num_free()) return false;
  for (auto& layer_pages : pages_) {
    for (int64_t b = num_blocks_; b < want; ++b) layer_pages.push_back(*pool_->Allocate());
  }
  num_blocks_ = want;
  return true;
}

void SequenceKv::Release() {
  for (auto& layer_pages : pages_) {
    for (int32_t page : layer_pages) pool_->Free(page);
    layer_pages.clear();
  }
  num_blocks_ = 0;
}

}  // namespace strata::kvcache
