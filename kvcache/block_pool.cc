#include "kvcache/block_pool.h"

namespace strata::kvcache {

BlockPool::BlockPool(int32_t num_pages) : num_pages_(num_pages), pages_(num_pages + 1) {
  CHECK(num_pages >= 0);
  pages_[num_pages_].prev = num_pages_;
  pages_[num_pages_].next = num_pages_;
  for (int32_t p = 0; p < num_pages_; ++p) PushBack(p);
}

void BlockPool::PushBack(int32_t page) {
  int32_t tail = pages_[num_pages_].prev;
  pages_[page].prev = tail;
  pages_[page].next = num_pages_;
  pages_[tail].next = page;
  pages_[num_pages_].prev = page;
  ++num_free_;
}

void BlockPool::Remove(int32_t page) {
  PageMeta& meta = pages_[page];
  pages_[meta.prev].next = meta.next;
  pages_[meta.next].prev = meta.prev;
  meta.prev = -1;
  meta.next = -1;
  --num_free_;
}

void BlockPool::DropKey(int32_t page) {
  std::optional<BlockKey>& key = pages_[page].key;
  if (!key.has_value()) return;
  index_.erase(*key);
  key.reset();
  ++stats_.evictions;
}

std::optional<std::vector<int32_t>> BlockPool::Allocate(int32_t n) {
  CHECK(n >= 0);
  if (n > num_free_) return std::nullopt;
  std::vector<int32_t> out;
  out.reserve(n);
  for (int32_t i = 0; i < n; ++i) {
    int32_t page = pages_[num_pages_].next;
    Remove(page);
    const PageMeta& meta = pages_[page];
    if (on_evict_ && meta.key.has_value()) {
      on_evict_({.key = *meta.key, .page = page, .hits = meta.hits,
                 .lower_tiers = meta.lower_tiers});
    }
    DropKey(page);
    pages_[page].ref_count = 1;
    out.push_back(page);
  }
  return out;
}

void BlockPool::Free(std::span<const int32_t> pages) {
  for (int32_t page : pages) {
    CHECK(page >= 0 && page < num_pages_ && pages_[page].ref_count > 0);
    if (--pages_[page].ref_count == 0) PushBack(page);
  }
}

std::optional<int32_t> BlockPool::Lookup(const BlockHash& hash, int32_t layer) const {
  auto it = index_.find(BlockKey{hash, layer});
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

void BlockPool::Touch(int32_t page, bool hit) {
  CHECK(page >= 0 && page < num_pages_);
  if (hit && pages_[page].key.has_value()) ++pages_[page].hits;
  if (pages_[page].ref_count++ == 0) Remove(page);
}

void BlockPool::Publish(int32_t page, const BlockHash& hash, int32_t layer,
                        uint8_t lower_tiers) {
  CHECK(page >= 0 && page < num_pages_ && pages_[page].ref_count > 0);
  BlockKey key{hash, layer};
  auto [it, inserted] = index_.try_emplace(key, page);
  if (inserted) {
    CHECK(!pages_[page].key.has_value());
    pages_[page].key = key;
    pages_[page].hits = 0;
    pages_[page].lower_tiers = lower_tiers;
  } else if (it->second != page) {
    ++stats_.publish_dedupes;
  }
}

absl::Status BlockPool::CheckFreeList() const {
  int32_t count = 0;
  int32_t prev = num_pages_;
  for (int32_t p = pages_[num_pages_].next; p != num_pages_; p = pages_[p].next) {
    if (p < 0 || p >= num_pages_ || ++count > num_pages_) {
      return absl::InternalError(StrCat("block pool: free list broken at page ", p));
    }
    if (pages_[p].prev != prev) {
      return absl::InternalError(StrCat("block pool: page ", p, " has prev ", pages_[p].prev,
                                        ", expected ", prev));
    }
    if (pages_[p].ref_count != 0) {
      return absl::InternalError(StrCat("block pool: page ", p, " is in the free list with ref ",
                                        pages_[p].ref_count));
    }
    prev = p;
  }
  if (pages_[num_pages_].prev != prev) {
    return absl::InternalError("block pool: free list tail link is stale");
  }
  if (count != num_free_) {
    return absl::InternalError(
        StrCat("block pool: free list holds ", count, " pages, num_free is ", num_free_));
  }
  for (int32_t p = 0; p < num_pages_; ++p) {
    if (pages_[p].ref_count < 0 || InFreeList(p) == (pages_[p].ref_count > 0)) {
      return absl::InternalError(StrCat("block pool: page ", p, " has ref ", pages_[p].ref_count,
                                        " and in_free_list=", InFreeList(p)));
    }
  }
  return absl::OkStatus();
}

absl::Status BlockPool::CheckIndex() const {
  int64_t keyed = 0;
  for (int32_t p = 0; p < num_pages_; ++p) {
    if (!pages_[p].key.has_value()) continue;
    ++keyed;
    auto it = index_.find(*pages_[p].key);
    if (it == index_.end() || it->second != p) {
      return absl::InternalError(StrCat("block pool: page ", p, "'s key is not indexed to it"));
    }
  }
  if (keyed != num_cached()) {
    return absl::InternalError(StrCat("block pool: index has ", num_cached(), " keys but ", keyed,
                                      " pages carry one"));
  }
  return absl::OkStatus();
}

absl::Status BlockPool::CheckInvariants() const {
  RETURN_IF_ERROR(CheckFreeList());
  return CheckIndex();
}

}  // namespace strata::kvcache
