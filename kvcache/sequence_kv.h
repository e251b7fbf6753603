// SequenceKv is one sequence's block tables: for each layer, the page holding each logical block
// of `block_size` tokens. It grows as tokens are computed and returns its pages on Release.
//
//   tokens:   0 ........ 15 | 16 ....... 31 | 32 .. 37
//   layer l:  page 7        | page 2        | page 9     (pages[l] = {7, 2, 9})
//
// Owned by the engine thread; not thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kvcache/kv_layout.h"
#include "kvcache/page_pool.h"

namespace strata::kvcache {

class SequenceKv {
 public:
  SequenceKv(const KvLayout& layout, PagePool* pool);
  ~SequenceKv();  // Releases every page.
  SequenceKv(const SequenceKv&) = delete;
  SequenceKv& operator=(const SequenceKv&) = delete;

  // Makes room for `num_tokens` tokens in every layer. False (and no change) when the pool cannot
  // supply the missing pages.
  bool Reserve(int64_t num_tokens);
  void Release();

  int64_t capacity_tokens() const { return num_blocks_ * layout_.block_size; }
  int64_t num_blocks() const { return num_blocks_; }
  std::span<const int32_t> pages(int32_t layer) const { return pages_[layer]; }
  // Flat slot (page * block_size + offset) of token `position` in `layer`.
  int64_t Slot(int32_t layer, int64_t position) const {
    return static_cast<int64_t>(pages_[layer][position / layout_.block_size]) *
               layout_.block_size +
           position % layout_.block_size;
  }

 private:
  KvLayout layout_;
  PagePool* pool_;
  int64_t num_blocks_ = 0;
  std::vector<std::vector<int32_t>> pages_;  // [num_layers][num_blocks]
};

}  // namespace strata::kvcache
