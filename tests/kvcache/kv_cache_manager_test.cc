#include "kvcache/kv_cache_manager.h"
#include "tests/common/tokens.h"

#include <gtest/gtest.h>

#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <vector>

namespace strata::kvcache {
namespace {

using Pages = std::vector<int32_t>;

// 2 layers, 4 tokens per block: a block is 2 pages.
KvLayout Layout() {
  return KvLayout{.num_layers = 2, .num_kv_heads = 1, .head_dim = 4, .block_size = 4};
}

BlockHash Seed(std::optional<std::string> salt = std::nullopt) {
  return SeedHash(PrefixSeed{.model_id = "test", .block_size = 4, .cache_salt = std::move(salt)});
}

Pages PagesOf(const KvCacheManager& kv, RequestId id, int32_t layer) {
  std::span<const int32_t> p = kv.pages(id, layer);
  return Pages(p.begin(), p.end());
}

// Runs a request's whole prompt: attach, reserve, compute, commit. Returns the cached tokens.
int64_t Prefill(KvCacheManager& kv, RequestId id, BlockHash seed,
                const std::vector<int32_t>& tokens) {
  int64_t cached = kv.AttachCachedPrefix(id, seed, tokens);
  EXPECT_TRUE(kv.Reserve(id, static_cast<int64_t>(tokens.size())));
  kv.Commit(id, tokens, static_cast<int64_t>(tokens.size()));
  EXPECT_TRUE(kv.CheckInvariants().ok()) << kv.CheckInvariants();
  return cached;
}

TEST(KvCacheManagerTest, TwoRequestsShareExactlyTheThreeBlockPrefix) {
  KvCacheManager kv(Layout(), 20, /*enable_prefix_caching=*/true);
  const std::vector<int32_t> prefix = Range(1, 12);
  EXPECT_EQ(Prefill(kv, 1, Seed(), Concat(prefix, {100})), 0);
  EXPECT_EQ(PagesOf(kv, 1, 0), (Pages{0, 1, 2, 3}));
  EXPECT_EQ(PagesOf(kv, 1, 1), (Pages{4, 5, 6, 7}));
  EXPECT_EQ(kv.pool().num_cached(), 6);  // 3 full blocks x 2 layers; the partial one is private

  const std::vector<int32_t> second = Concat(prefix, {200, 201});
  EXPECT_EQ(kv.AttachCachedPrefix(2, Seed(), second), 12);
  EXPECT_EQ(PagesOf(kv, 2, 0), (Pages{0, 1, 2}));
  EXPECT_EQ(PagesOf(kv, 2, 1), (Pages{4, 5, 6}));
  for (int32_t p : {0, 1, 2, 4, 5, 6}) EXPECT_EQ(kv.pool().ref_count(p), 2) << "page " << p;
  for (int32_t p : {3, 7}) EXPECT_EQ(kv.pool().ref_count(p), 1) << "page " << p;
  ASSERT_TRUE(kv.Reserve(2, 14));
  EXPECT_EQ(PagesOf(kv, 2, 0), (Pages{0, 1, 2, 8}));
  EXPECT_EQ(PagesOf(kv, 2, 1), (Pages{4, 5, 6, 9}));
  EXPECT_EQ(kv.Slot(2, 0, 13), 8 * 4 + 1);
  EXPECT_EQ(kv.Slot(2, 1, 5), 5 * 4 + 1);
  EXPECT_TRUE(kv.CheckInvariants().ok());
}

TEST(KvCacheManagerTest, AtLeastOneTokenIsLeftToCompute) {
  KvCacheManager kv(Layout(), 20, true);
  const std::vector<int32_t> prompt = Range(1, 12);
  Prefill(kv, 1, Seed(), prompt);
  // All 3 blocks are cached, but the last token's logits are needed: only 2 blocks attach.
  EXPECT_EQ(kv.AttachCachedPrefix(2, Seed(), prompt), 8);
  EXPECT_EQ(kv.num_blocks(2), 2);
  EXPECT_EQ(kv.AttachCachedPrefix(3, Seed(), std::vector<int32_t>{}), 0);
}

TEST(KvCacheManagerTest, DifferentSaltNeverShares) {
  KvCacheManager kv(Layout(), 20, true);
  const std::vector<int32_t> prompt = Range(1, 9);
  Prefill(kv, 1, Seed("tenant-a"), prompt);
  EXPECT_EQ(kv.AttachCachedPrefix(2, Seed("tenant-b"), prompt), 0);
  EXPECT_EQ(kv.AttachCachedPrefix(3, Seed(), prompt), 0);
  EXPECT_EQ(kv.AttachCachedPrefix(4, Seed("tenant-a"), prompt), 8);
}

TEST(KvCacheManagerTest, PartialBlocksAreNeverShared) {
  KvCacheManager kv(Layout(), 20, true);
  const std::vector<int32_t> first = Range(1, 7);  // 1 full block + 3 tokens
  Prefill(kv, 1, Seed(), first);
  EXPECT_EQ(kv.pool().num_cached(), 2);
  // Same 7 tokens then more: the second block was partial in request 1, so only block 0 hits.
  EXPECT_EQ(kv.AttachCachedPrefix(2, Seed(), Concat(first, {8, 9})), 4);
}

TEST(KvCacheManagerTest, ReleaseThenReattachFindsTheBlocks) {
  KvCacheManager kv(Layout(), 20, true);
  const std::vector<int32_t> prompt = Concat(Range(1, 12), {100});
  Prefill(kv, 1, Seed(), prompt);
  kv.Release(1);
  EXPECT_FALSE(kv.Contains(1));
  EXPECT_EQ(kv.pool().num_free(), 20);
  EXPECT_EQ(kv.pool().num_cached(), 6);
  EXPECT_EQ(kv.AttachCachedPrefix(2, Seed(), prompt), 12);
  EXPECT_EQ(PagesOf(kv, 2, 0), (Pages{0, 1, 2}));
  EXPECT_EQ(PagesOf(kv, 2, 1), (Pages{4, 5, 6}));
  EXPECT_EQ(kv.pool().ref_count(0), 1);
  EXPECT_EQ(kv.pool().num_free(), 14);
  EXPECT_TRUE(kv.CheckInvariants().ok());
}

TEST(KvCacheManagerTest, PressureEvictsLeafBlocksFirst) {
  KvCacheManager kv(Layout(), 8, true);
  const std::vector<int32_t> prompt = Range(1, 9);  // blocks 0, 1 full; block 2 partial
  Prefill(kv, 1, Seed(), prompt);
  EXPECT_EQ(PagesOf(kv, 1, 0), (Pages{0, 1, 2}));
  EXPECT_EQ(PagesOf(kv, 1, 1), (Pages{3, 4, 5}));
  kv.Release(1);  // free list: 6 7 | 2 5 | 1 4 | 0 3   (never used, then blocks 2, 1, 0)

  const std::vector<int32_t> other = Range(50, 9);
  EXPECT_EQ(kv.AttachCachedPrefix(2, Seed(), other), 0);
  ASSERT_TRUE(kv.Reserve(2, 12));
  EXPECT_EQ(PagesOf(kv, 2, 0), (Pages{6, 7, 2}));
  EXPECT_EQ(PagesOf(kv, 2, 1), (Pages{5, 1, 4}));
  EXPECT_EQ(kv.pool().stats().evictions, 2);  // block 1's pages; block 0 (0, 3) survives
  kv.Release(2);

  EXPECT_EQ(kv.AttachCachedPrefix(3, Seed(), prompt), 4);
  EXPECT_EQ(PagesOf(kv, 3, 0), (Pages{0}));
  EXPECT_EQ(PagesOf(kv, 3, 1), (Pages{3}));
  EXPECT_TRUE(kv.CheckInvariants().ok());
}

TEST(KvCacheManagerTest, ForkSharesFullBlocksOnly) {
  KvCacheManager kv(Layout(), 12, true);
  const std::vector<int32_t> prompt = Range(1, 10);
  Prefill(kv, 1, Seed(), prompt);
  kv.Fork(1, 2, 10);
  EXPECT_EQ(PagesOf(kv, 2, 0), (Pages{0, 1}));
  EXPECT_EQ(PagesOf(kv, 2, 1), (Pages{3, 4}));
  for (int32_t p : {0, 1, 3, 4}) EXPECT_EQ(kv.pool().ref_count(p), 2) << "page " << p;
  for (int32_t p : {2, 5}) EXPECT_EQ(kv.pool().ref_count(p), 1) << "page " << p;
  ASSERT_TRUE(kv.Reserve(2, 11));
  EXPECT_EQ(PagesOf(kv, 2, 0), (Pages{0, 1, 6}));
  EXPECT_EQ(PagesOf(kv, 2, 1), (Pages{3, 4, 7}));
  EXPECT_TRUE(kv.CheckInvariants().ok());
  kv.Release(1);
  for (int32_t p : {0, 1, 3, 4}) EXPECT_EQ(kv.pool().ref_count(p), 1) << "page " << p;
  EXPECT_EQ(kv.pool().num_free(), 6);
  kv.Release(2);
  EXPECT_EQ(kv.pool().num_free(), 12);
  EXPECT_TRUE(kv.CheckInvariants().ok());
}

TEST(KvCacheManagerTest, ReserveFailureChangesNothing) {
  KvCacheManager kv(Layout(), 6, true);
  EXPECT_EQ(kv.AttachCachedPrefix(1, Seed(), Range(1, 8)), 0);
  ASSERT_TRUE(kv.Reserve(1, 8));  // 2 blocks x 2 layers
  EXPECT_FALSE(kv.Reserve(1, 13));  // needs 4 more pages, 2 free
  EXPECT_EQ(kv.num_blocks(1), 2);
  EXPECT_EQ(PagesOf(kv, 1, 0), (Pages{0, 1}));
  EXPECT_EQ(PagesOf(kv, 1, 1), (Pages{2, 3}));
  EXPECT_EQ(kv.pool().num_free(), 2);
  EXPECT_TRUE(kv.CheckInvariants().ok());
  EXPECT_TRUE(kv.Reserve(1, 12));
  EXPECT_EQ(kv.pool().num_free(), 0);
}

TEST(KvCacheManagerTest, DisabledCachingNeverLooksUpOrPublishes) {
  KvCacheManager kv(Layout(), 20, /*enable_prefix_caching=*/false);
  const std::vector<int32_t> prompt = Range(1, 13);
  EXPECT_EQ(Prefill(kv, 1, Seed(), prompt), 0);
  EXPECT_EQ(kv.pool().num_cached(), 0);
  EXPECT_EQ(Prefill(kv, 2, Seed(), prompt), 0);
  EXPECT_EQ(PagesOf(kv, 2, 0), (Pages{8, 9, 10, 11}));
}

// A model of the engine on top of the manager: each page records which (block hash, layer) KV it
// holds when a request "writes" it. A cache hit must hand out a page whose recorded contents are
// exactly the block asked for, and a request may only write pages nobody else references.
class RandomizedHarness {
 public:
  explicit RandomizedHarness(uint32_t seed)
      : rng_(seed), kv_(Layout(), kNumPages, true), content_(kNumPages) {
    for (auto& base : bases_) {
      for (int i = 0; i < 12; ++i) base.push_back(Pick(1, 3));
    }
  }

  void Step() {
    int action = Pick(0, 9);
    if (live_.empty() || (action < 3 && live_.size() < 6)) {
      Submit();
    } else if (action < 8) {
      Advance(RandomLive());
    } else if (action == 8) {
      Fork(RandomLive());
    } else {
      RequestId id = RandomLive();
      kv_.Release(id);
      live_.erase(id);
    }
  }

  void ReleaseAll() {
    for (const auto& [id, r] : live_) kv_.Release(id);
    live_.clear();
  }

  const KvCacheManager& kv() const { return kv_; }
  int64_t hit_tokens() const { return hit_tokens_; }

 private:
  static constexpr int32_t kNumPages = 40;
  struct Live {
    BlockHash seed;
    std::vector<int32_t> tokens;
    int64_t num_computed = 0;
  };

  int Pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  RequestId RandomLive() {
    auto it = live_.begin();
    std::advance(it, Pick(0, static_cast<int>(live_.size()) - 1));
    return it->first;
  }

  void Submit() {
    Live r{.seed = Pick(0, 3) == 0 ? Seed("x") : Seed(), .tokens = {}};
    const auto& base = bases_[Pick(0, 2)];
    r.tokens.assign(base.begin(), base.begin() + Pick(0, 12));
    for (int n = Pick(1, 8); n > 0; --n) r.tokens.push_back(Pick(1, 2));
    RequestId id = next_id_++;
    r.num_computed = kv_.AttachCachedPrefix(id, r.seed, r.tokens);
    ASSERT_EQ(r.num_computed % 4, 0);
    ASSERT_LT(r.num_computed, static_cast<int64_t>(r.tokens.size()));
    hit_tokens_ += r.num_computed;
    std::vector<BlockHash> expect = HashFullBlocks(r.seed, r.tokens, 4);
    for (int64_t b = 0; b < r.num_computed / 4; ++b) {
      for (int32_t l = 0; l < 2; ++l) {
        ASSERT_EQ(content_[kv_.pages(id, l)[b]], std::make_pair(expect[b], l));
      }
    }
    live_.emplace(id, std::move(r));
  }

  void Advance(RequestId id) {
    Live& r = live_.at(id);
    const int64_t target = r.num_computed + Pick(1, 6);
    while (static_cast<int64_t>(r.tokens.size()) < target) r.tokens.push_back(Pick(1, 2));
    const int64_t blocks_before = kv_.num_blocks(id);
    if (!kv_.Reserve(id, target)) {
      ASSERT_EQ(kv_.num_blocks(id), blocks_before);
      return;
    }
    std::vector<BlockHash> expect = HashFullBlocks(r.seed, r.tokens, 4);
    for (int64_t b = r.num_computed / 4; b <= (target - 1) / 4; ++b) {
      for (int32_t l = 0; l < 2; ++l) {
        int32_t page = kv_.pages(id, l)[b];
        ASSERT_EQ(kv_.pool().ref_count(page), 1) << "writing a shared page " << page;
        content_[page] = (b + 1) * 4 <= target ? std::make_optional(std::make_pair(expect[b], l))
                                               : std::nullopt;
      }
    }
    kv_.Commit(id, r.tokens, target);
    r.num_computed = target;
  }

  void Fork(RequestId parent) {
    if (live_.size() >= 6) return;
    const Live& from = live_.at(parent);
    const int64_t shared = from.num_computed / 4 * 4;
    Live child{.seed = from.seed,
               .tokens = std::vector<int32_t>(from.tokens.begin(), from.tokens.begin() + shared),
               .num_computed = shared};
    RequestId id = next_id_++;
    kv_.Fork(parent, id, shared);
    live_.emplace(id, std::move(child));
  }

  std::mt19937 rng_;
  KvCacheManager kv_;
  std::vector<std::optional<std::pair<BlockHash, int32_t>>> content_;  // [kNumPages]
  std::vector<int32_t> bases_[3];
  std::map<RequestId, Live> live_;
  RequestId next_id_ = 1;
  int64_t hit_tokens_ = 0;
};

TEST(KvCacheManagerRandomizedTest, InvariantsHoldAndCacheHitsAreCorrect) {
  RandomizedHarness h(/*seed=*/20261123);
  for (int step = 0; step < 20000; ++step) {
    ASSERT_NO_FATAL_FAILURE(h.Step()) << "step " << step;
    absl::Status s = h.kv().CheckInvariants();
    ASSERT_TRUE(s.ok()) << "step " << step << ": " << s;
  }
  h.ReleaseAll();
  ASSERT_TRUE(h.kv().CheckInvariants().ok());
  EXPECT_EQ(h.kv().pool().num_free(), h.kv().pool().num_pages());
  for (int32_t p = 0; p < h.kv().pool().num_pages(); ++p) EXPECT_EQ(h.kv().pool().ref_count(p), 0);
  // The run must have exercised both sharing and eviction to mean anything.
  EXPECT_GT(h.hit_tokens(), 1000);
  EXPECT_GT(h.kv().pool().stats().evictions, 100);
  std::printf("hit tokens %lld, evictions %lld, dedupes %lld\n",
              static_cast<long long>(h.hit_tokens()),
              static_cast<long long>(h.kv().pool().stats().evictions),
              static_cast<long long>(h.kv().pool().stats().publish_dedupes));
}

}  // namespace
}  // namespace strata::kvcache
