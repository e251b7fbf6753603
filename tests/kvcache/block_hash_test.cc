#include "kvcache/block_hash.h"

#include <gtest/gtest.h>

#include <functional>
#include <unordered_set>
#include <vector>

namespace strata::kvcache {
namespace {

PrefixSeed BaseSeed() {
  return PrefixSeed{.model_id = "stories260k",
                    .weights_fingerprint_hi = 0x0123456789abcdefULL,
                    .weights_fingerprint_lo = 0xfedcba9876543210ULL,
                    .tokenizer_fingerprint = 42,
                    .codec = "fp32",
                    .block_size = 4,
                    .layout_version = kLayoutVersion,
                    .cache_salt = std::nullopt};
}

// Pinned once from this implementation: a change to the byte encoding or to the hash function
// must fail here, because cached pages on disk (and in other processes) are keyed by these values.
TEST(BlockHashTest, GoldenValuesArePinned) {
  BlockHash seed = SeedHash(BaseSeed());
  EXPECT_EQ(seed.hi, 0x8ea33c60cc255e76ULL);
  EXPECT_EQ(seed.lo, 0xbca3dbbfb42be2e4ULL);
  const std::vector<int32_t> tokens = {1, 2, 3, 4};
  BlockHash h0 = ChainHash(seed, tokens);
  EXPECT_EQ(h0.hi, 0x8320f5e6acdee890ULL);
  EXPECT_EQ(h0.lo, 0x6f27117f52797822ULL);
}

TEST(BlockHashTest, EqualInputsGiveEqualHashes) {
  EXPECT_EQ(SeedHash(BaseSeed()), SeedHash(BaseSeed()));
  const std::vector<int32_t> tokens = {7, 8, 9, 10};
  EXPECT_EQ(ChainHash(SeedHash(BaseSeed()), tokens), ChainHash(SeedHash(BaseSeed()), tokens));
}

TEST(BlockHashTest, EverySeedFieldChangesTheSeed) {
  std::vector<std::function<void(PrefixSeed&)>> edits = {
      [](PrefixSeed& s) { s.model_id = "stories260k-v2"; },
      [](PrefixSeed& s) { s.weights_fingerprint_hi ^= 1; },
      [](PrefixSeed& s) { s.weights_fingerprint_lo ^= 1; },
      [](PrefixSeed& s) { s.tokenizer_fingerprint = 43; },
      [](PrefixSeed& s) { s.codec = "bf16"; },
      [](PrefixSeed& s) { s.block_size = 16; },
      [](PrefixSeed& s) { s.layout_version = kLayoutVersion + 1; },
      [](PrefixSeed& s) { s.cache_salt = "tenant-a"; },
  };
  std::unordered_set<BlockHash, BlockHashHasher> seen = {SeedHash(BaseSeed())};
  for (size_t i = 0; i < edits.size(); ++i) {
    PrefixSeed seed = BaseSeed();
    edits[i](seed);
    EXPECT_TRUE(seen.insert(SeedHash(seed)).second) << "edit " << i << " did not change the seed";
  }
}

// Decided: an empty salt is a salt. Absent and "" are different tenants' namespaces.
TEST(BlockHashTest, EmptySaltDiffersFromNoSalt) {
  PrefixSeed salted = BaseSeed();
  salted.cache_salt = "";
  EXPECT_NE(SeedHash(salted), SeedHash(BaseSeed()));
  PrefixSeed other = BaseSeed();
  other.cache_salt = "b";
  EXPECT_NE(SeedHash(salted), SeedHash(other));
}

// Length prefixes keep adjacent strings from running into each other.
TEST(BlockHashTest, StringFieldsDoNotRunTogether) {
  PrefixSeed a = BaseSeed();
  a.model_id = "ab";
  a.codec = "c";
  PrefixSeed b = BaseSeed();
  b.model_id = "a";
  b.codec = "bc";
  EXPECT_NE(SeedHash(a), SeedHash(b));
}

TEST(BlockHashTest, ChainDependsOnParentAndOnEveryToken) {
  BlockHash seed = SeedHash(BaseSeed());
  const std::vector<int32_t> tokens = {1, 2, 3, 4};
  BlockHash h = ChainHash(seed, tokens);
  EXPECT_NE(h, ChainHash(BlockHash{.hi = seed.hi, .lo = seed.lo ^ 1}, tokens));
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::vector<int32_t> changed = tokens;
    changed[i] += 1;
    EXPECT_NE(h, ChainHash(seed, changed)) << "token " << i;
  }
  EXPECT_NE(h, ChainHash(seed, std::vector<int32_t>{4, 3, 2, 1}));
}

TEST(BlockHashTest, HashFullBlocksChainsAndSkipsThePartialBlock) {
  BlockHash seed = SeedHash(BaseSeed());
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  std::vector<BlockHash> hashes = HashFullBlocks(seed, tokens, 4);
  ASSERT_EQ(hashes.size(), 2u);
  BlockHash h0 = ChainHash(seed, std::vector<int32_t>{1, 2, 3, 4});
  EXPECT_EQ(hashes[0], h0);
  EXPECT_EQ(hashes[1], ChainHash(h0, std::vector<int32_t>{5, 6, 7, 8}));
  EXPECT_TRUE(HashFullBlocks(seed, std::vector<int32_t>{1, 2, 3}, 4).empty());
  // The same block at a different position (different parent) is a different key.
  std::vector<BlockHash> shifted = HashFullBlocks(seed, std::vector<int32_t>{5, 6, 7, 8}, 4);
  ASSERT_EQ(shifted.size(), 1u);
  EXPECT_NE(shifted[0], hashes[1]);
}

}  // namespace
}  // namespace strata::kvcache
