// Prefix-cache keys (DESIGN.md §5): a full block of `block_size` tokens is named by a 128-bit
// chained hash, so a block's key also pins every token before it:
//
//   seed  = H(canonical encoding of PrefixSeed)            model, weights, tokenizer, codec, ...
//   h_0   = H(seed, tokens[0 .. bs))
//   h_i   = H(h_{i-1}, tokens[i*bs .. (i+1)*bs))
//
// H is XXH3-128 over a fixed little-endian byte encoding: never a process-seeded hash, so keys
// are equal across runs and processes (the disk tier and a restart rely on that). Free functions
// and value types only; callable from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace strata::kvcache {

// Bump when the byte layout of a page (or of these hashes) changes, so old cached pages miss.
inline constexpr int32_t kLayoutVersion = 1;

struct BlockHash {
  uint64_t hi = 0;
  uint64_t lo = 0;

  friend bool operator==(const BlockHash&, const BlockHash&) = default;
};

// For std::unordered_map<BlockHash, ...>: the value is already uniformly distributed.
struct BlockHashHasher {
  size_t operator()(const BlockHash& h) const { return static_cast<size_t>(h.lo ^ (h.hi >> 1)); }
};

// Everything that makes the KV of the same tokens different. `cache_salt` isolates tenants: an
// absent salt and an empty salt ("") are DIFFERENT seeds (the presence is encoded), so a client
// that sends cache_salt: "" never shares with unsalted traffic by accident.
struct PrefixSeed {
  std::string model_id;
  uint64_t weights_fingerprint_hi = 0;
  uint64_t weights_fingerprint_lo = 0;
  uint64_t tokenizer_fingerprint = 0;
  std::string codec = "fp32";
  int32_t block_size = 16;
  int32_t layout_version = kLayoutVersion;
  std::optional<std::string> cache_salt;
};

// Hash of the canonical encoding of `seed`: strings are length-prefixed so that fields cannot
// run into each other ("ab"+"c" != "a"+"bc").
BlockHash SeedHash(const PrefixSeed& seed);

// H(parent, block_tokens). Any number of tokens is accepted; callers pass exactly one block.
BlockHash ChainHash(BlockHash parent, std::span<const int32_t> block_tokens);

// One chained hash per FULL block of `tokens` (a trailing partial block gets none).
// REQUIRES: block_size > 0.
std::vector<BlockHash> HashFullBlocks(BlockHash seed_hash, std::span<const int32_t> tokens,
                                      int32_t block_size);

}  // namespace strata::kvcache
