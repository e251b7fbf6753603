#include "kvcache/block_hash.h"

#include <bit>

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack: no allocation per block.
#include <xxhash.h>

#include "common/status.h"

namespace strata::kvcache {
namespace {

// The key format is defined as little-endian; token arrays are hashed as raw bytes, which is
// only that format on little-endian hosts (x86-64, AArch64: every target Strata builds for).
static_assert(std::endian::native == std::endian::little, "block hash format is little-endian");

// Domain tag: a seed can never collide with a chain step even for adversarial token input.
constexpr char kSeedTag[] = "strata.prefix-seed";

class Hasher {
 public:
  Hasher() { XXH3_128bits_reset(&state_); }
  void Bytes(const void* data, size_t n) { XXH3_128bits_update(&state_, data, n); }
  void U64(uint64_t v) { Bytes(&v, sizeof(v)); }
  void I32(int32_t v) { Bytes(&v, sizeof(v)); }
  void String(const std::string& s) {
    U64(s.size());
    Bytes(s.data(), s.size());
  }
  BlockHash Digest() {
    XXH128_hash_t h = XXH3_128bits_digest(&state_);
    return BlockHash{.hi = h.high64, .lo = h.low64};
  }

 private:
  XXH3_state_t state_;
};

}  // namespace

BlockHash SeedHash(const PrefixSeed& seed) {
  Hasher h;
  h.Bytes(kSeedTag, sizeof(kSeedTag) - 1);
  h.String(seed.model_id);
  h.U64(seed.weights_fingerprint_hi);
  h.U64(seed.weights_fingerprint_lo);
  h.U64(seed.tokenizer_fingerprint);
  h.String(seed.codec);
  h.I32(seed.block_size);
  h.I32(seed.layout_version);
  h.I32(seed.cache_salt.has_value() ? 1 : 0);
  if (seed.cache_salt.has_value()) h.String(*seed.cache_salt);
  return h.Digest();
}

BlockHash ChainHash(BlockHash parent, std::span<const int32_t> block_tokens) {
  Hasher h;
  h.U64(parent.hi);
  h.U64(parent.lo);
  h.Bytes(block_tokens.data(), block_tokens.size_bytes());
  return h.Digest();
}

std::vector<BlockHash> HashFullBlocks(BlockHash seed_hash, std::span<const int32_t> tokens,
                                      int32_t block_size) {
  CHECK(block_size > 0);
  size_t num_full = tokens.size() / static_cast<size_t>(block_size);
  std::vector<BlockHash> hashes;
  hashes.reserve(num_full);
  BlockHash parent = seed_hash;
  for (size_t b = 0; b < num_full; ++b) {
    parent = ChainHash(parent, tokens.subspan(b * block_size, block_size));
    hashes.push_back(parent);
  }
  return hashes;
}

}  // namespace strata::kvcache
