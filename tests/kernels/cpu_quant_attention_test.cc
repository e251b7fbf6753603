// QuantWriteKv and QuantPagedAttention (kernels/cpu/cpu_quant_attention.cc) against the f32
// PagedAttention run on the DecodePage'd copy of the same pages: for every codec, a mixed batch
// (1-token sequence, prefill, prefill chunk, decodes, partial last pages, and for KIVI quantized
// blocks followed by f32 residual blocks). Pages are handed out in shuffled order; unused
// quantized bytes are 0xff (NaN scales / codes in every codec) and unused f32 slots are NaN, so
// a read through a wrong page or past a context shows up as NaN in the output.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/kv_codec.h"

namespace strata::kernels {
namespace {

constexpr int kThreads = 2;

std::vector<float> Random(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> out(n);
  for (auto& x : out) x = dist(rng) * ((rng() % 64 == 0) ? 8.0f : 1.0f);
  return out;
}

bool IsKivi(KvCodec codec) { return codec == KvCodec::kKivi4 || codec == KvCodec::kKivi2; }

struct SeqSpec {
  int32_t context_len;
  int32_t num_query_tokens;  // the last tokens of the context
};

struct QuantCase {
  KvCodec codec;
  int32_t block_size, num_kv_heads, head_dim, gqa_ratio;
};

// KIVI keeps whole 32-token groups in whole quantized pages; the rest is the f32 residual.
// A page of 64 may end half full only when the context ends there too.
int32_t QuantizedTokens(const QuantCase& c, int32_t context_len) {
  if (!IsKivi(c.codec)) return context_len;
  const int32_t grouped = context_len / kKiviGroupTokens * kKiviGroupTokens;
  if (grouped % c.block_size == 0 || grouped == context_len) return grouped;
  return grouped / c.block_size * c.block_size;
}

// Everything one attention call needs, built from random K/V for `seqs`.
struct Batch {
  KvPageFormat format;
  std::vector<std::byte> quant_pool;
  int32_t num_quant_pages = 0;
  std::vector<float> full_pool;  // f32 residual pages
  int32_t num_full_pages = 0;
  std::vector<float> ref_pool;   // decoded quantized pages, then the residual pages
  std::vector<int32_t> block_tables, ref_block_tables, quant_blocks, query_start, context_lens;
  int32_t max_blocks = 0;
  std::vector<float> q;
  int32_t num_q_heads = 0;

  QuantAttentionParams Params(float* out) const {
    const KvPoolView full{const_cast<float*>(full_pool.data()), num_full_pages, format.block_size,
                          format.num_kv_heads, format.head_dim};
    return {q.data(), out, format, quant_pool.data(), num_quant_pages, full,
            query_start.data(), context_lens.data(), block_tables.data(), quant_blocks.data(),
            static_cast<int32_t>(context_lens.size()), max_blocks, num_q_heads,
            1.0f / std::sqrt(static_cast<float>(format.head_dim))};
  }
  PagedAttentionParams RefParams(float* out) const {
    const int32_t num_ref_pages = num_quant_pages + num_full_pages;
    const KvPoolView kv{const_cast<float*>(ref_pool.data()), num_ref_pages, format.block_size,
                        format.num_kv_heads, format.head_dim};
    return {q.data(), out, kv, query_start.data(), context_lens.data(), ref_block_tables.data(),
            static_cast<int32_t>(context_lens.size()), max_blocks, num_q_heads,
            1.0f / std::sqrt(static_cast<float>(format.head_dim))};
  }
};

// Writes sequence s's quantized tokens [0, quant_tokens) into its quantized pages.
void WriteQuantized(Batch& b, int32_t s, int32_t quant_tokens, const std::vector<float>& k,
                    const std::vector<float>& v) {
  const KvPageFormat& f = b.format;
  const int32_t bs = f.block_size;
  const int64_t tf = static_cast<int64_t>(f.num_kv_heads) * f.head_dim;
  const int32_t* table = b.block_tables.data() + s * b.max_blocks;
  auto page = [&](int32_t block) {
    return std::span<std::byte>(b.quant_pool.data() + f.PageBytes() * table[block],
                                f.PageBytes());
  };
  if (!IsKivi(f.codec)) {
    std::vector<int64_t> slots(quant_tokens);
    for (int32_t pos = 0; pos < quant_tokens; ++pos) {
      slots[pos] = int64_t{table[pos / bs]} * bs + pos % bs;
    }
    ASSERT_TRUE(cpu::QuantWriteKv({k.data(), v.data(), slots.data(), quant_tokens, f,
                                   b.quant_pool.data(), b.num_quant_pages}, kThreads).ok());
    return;
  }
  for (int32_t start = 0; start < quant_tokens; start += kKiviGroupTokens) {
    std::vector<std::span<std::byte>> pages;
    for (int32_t i = 0; i < std::max(1, kKiviGroupTokens / bs); ++i) {
      pages.push_back(page(start / bs + i));
    }
    ASSERT_TRUE(EncodeKiviGroup(f, pages, start % bs, k.data() + start * tf,
                                v.data() + start * tf).ok());
  }
}

// Copies sequence s's pages into the reference pool: decoded quantized pages, f32 residual.
void FillReference(Batch& b, int32_t s, int32_t quant_tokens, int32_t context_len) {
  const KvPageFormat& f = b.format;
  const int32_t bs = f.block_size;
  const int64_t half_page = int64_t{bs} * f.num_kv_heads * f.head_dim;  // floats
  for (int32_t block = 0; block * bs < context_len; ++block) {
    const int32_t id = b.block_tables[s * b.max_blocks + block];
    const int32_t count = std::min(bs, context_len - block * bs);
    if (block * bs < quant_tokens) {
      float* dst = b.ref_pool.data() + 2 * half_page * id;
      const std::span<const std::byte> page(b.quant_pool.data() + f.PageBytes() * id,
                                            f.PageBytes());
      ASSERT_TRUE(DecodePage(f, page, count, dst, dst + half_page).ok());
      b.ref_block_tables[s * b.max_blocks + block] = id;
    } else {
      const int32_t ref_id = b.num_quant_pages + id;
      std::copy_n(b.full_pool.data() + 2 * half_page * id, 2 * half_page,
                  b.ref_pool.data() + 2 * half_page * ref_id);
      b.ref_block_tables[s * b.max_blocks + block] = ref_id;
    }
  }
}

Batch MakeBatch(const std::vector<SeqSpec>& seqs, const QuantCase& c, uint32_t seed) {
  Batch b;
  b.format = {c.codec, c.block_size, c.num_kv_heads, c.head_dim};
  EXPECT_TRUE(b.format.Validate().ok());
  b.num_q_heads = c.num_kv_heads * c.gqa_ratio;
  std::mt19937 rng(seed);
  const int32_t bs = c.block_size, num_seqs = static_cast<int32_t>(seqs.size());
  int32_t quant_total = 0, full_total = 0;
  for (const SeqSpec& s : seqs) {
    const int32_t blocks = (s.context_len + bs - 1) / bs;
    const int32_t quant = (QuantizedTokens(c, s.context_len) + bs - 1) / bs;
    b.max_blocks = std::max(b.max_blocks, blocks + 1);  // a spare column stays -1
    quant_total += quant;
    full_total += blocks - quant;
  }
  b.num_quant_pages = quant_total + 2;  // spare pages stay 0xff / NaN
  b.num_full_pages = full_total + 1;
  std::vector<int32_t> quant_ids(b.num_quant_pages), full_ids(b.num_full_pages);
  std::iota(quant_ids.begin(), quant_ids.end(), 0);
  std::iota(full_ids.begin(), full_ids.end(), 0);
  std::shuffle(quant_ids.begin(), quant_ids.end(), rng);
  std::shuffle(full_ids.begin(), full_ids.end(), rng);

  const int64_t tf = int64_t{c.num_kv_heads} * c.head_dim, half_page = bs * tf;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  b.quant_pool.assign(b.format.PageBytes() * b.num_quant_pages, std::byte{0xff});
  b.full_pool.assign(2 * half_page * b.num_full_pages, nan);
  b.ref_pool.assign(2 * half_page * (b.num_quant_pages + b.num_full_pages), nan);
  b.block_tables.assign(int64_t{num_seqs} * b.max_blocks, -1);
  b.ref_block_tables = b.block_tables;
  b.query_start = {0};
  int32_t next_quant = 0, next_full = 0;
  for (int32_t s = 0; s < num_seqs; ++s) {
    const int32_t ctx = seqs[s].context_len, quant_tokens = QuantizedTokens(c, ctx);
    const int32_t quant_blocks = (quant_tokens + bs - 1) / bs;
    for (int32_t block = 0; block * bs < ctx; ++block) {
      b.block_tables[s * b.max_blocks + block] =
          block < quant_blocks ? quant_ids[next_quant++] : full_ids[next_full++];
    }
    const std::vector<float> k = Random(ctx * tf, rng), v = Random(ctx * tf, rng);
    WriteQuantized(b, s, quant_tokens, k, v);
    std::vector<int64_t> slots;
    for (int32_t pos = quant_tokens; pos < ctx; ++pos) {
      slots.push_back(int64_t{b.block_tables[s * b.max_blocks + pos / bs]} * bs + pos % bs);
    }
    if (!slots.empty()) {
      const KvPoolView full{b.full_pool.data(), b.num_full_pages, bs, c.num_kv_heads, c.head_dim};
      EXPECT_TRUE(cpu::WriteKv({k.data() + quant_tokens * tf, v.data() + quant_tokens * tf,
                                slots.data(), static_cast<int64_t>(slots.size()), full},
                               kThreads).ok());
    }
    FillReference(b, s, quant_tokens, ctx);
    b.quant_blocks.push_back(quant_blocks);
    b.query_start.push_back(b.query_start.back() + seqs[s].num_query_tokens);
    b.context_lens.push_back(ctx);
  }
  b.q = Random(int64_t{b.query_start.back()} * b.num_q_heads * c.head_dim, rng);
  return b;
}

void CheckAgainstDecodedCopy(const std::vector<SeqSpec>& seqs, const QuantCase& c) {
  const Batch b = MakeBatch(seqs, c, 1000 * c.block_size + 10 * c.head_dim + seqs.size());
  std::vector<float> out(b.q.size(), -7.0f), ref(b.q.size(), -7.0f);
  ASSERT_TRUE(cpu::PagedAttention(b.RefParams(ref.data()), kThreads).ok());
  const absl::Status status = cpu::QuantPagedAttention(b.Params(out.data()), kThreads);
  ASSERT_TRUE(status.ok()) << status;
  for (size_t i = 0; i < out.size(); ++i) {
    ASSERT_FALSE(std::isnan(ref[i])) << i;
    ASSERT_NEAR(out[i], ref[i], 1e-5 * std::max(1.0f, std::abs(ref[i]))) << "element " << i;
  }
  if (c.codec == KvCodec::kF32) {  // the same pages through both kernels: bit-identical
    EXPECT_EQ(std::memcmp(out.data(), ref.data(), out.size() * sizeof(float)), 0);
  }
}

class QuantPagedAttentionTest : public testing::TestWithParam<QuantCase> {};

// 1-token sequence, full prefill, a prefill chunk, decodes with partial and exactly full last
// pages, a long decode (KIVI: several quantized groups, then the residual).
TEST_P(QuantPagedAttentionTest, MatchesF32AttentionOnTheDecodedCopy) {
  CheckAgainstDecodedCopy({{1, 1}, {37, 37}, {70, 9}, {23, 1}, {64, 1}, {96, 2}, {131, 1}},
                          GetParam());
}

// A single decode row: the kernel splits GQA groups across work items.
TEST_P(QuantPagedAttentionTest, MatchesF32AttentionOnOneDecodeRow) {
  CheckAgainstDecodedCopy({{75, 1}}, GetParam());
}

std::vector<QuantCase> AllQuantCases() {
  std::vector<QuantCase> cases;
  for (KvCodec codec : {KvCodec::kF32, KvCodec::kBf16, KvCodec::kFp16, KvCodec::kFp8,
                        KvCodec::kInt8, KvCodec::kKivi4, KvCodec::kKivi2}) {
    for (int32_t block_size : {16, 32}) {
      cases.push_back({codec, block_size, 4, 8, 2});   // stories260K: 8 q heads on 4 kv heads
      cases.push_back({codec, block_size, 2, 64, 7});  // Qwen2.5-0.5B-like: 14 on 2
    }
    cases.push_back({codec, 16, 1, 128, 4});
    if (IsKivi(codec)) cases.push_back({codec, 64, 2, 64, 2});  // two key groups per page
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(
    Codecs, QuantPagedAttentionTest, testing::ValuesIn(AllQuantCases()),
    [](const testing::TestParamInfo<QuantCase>& info) {
      const QuantCase& c = info.param;
      return StrCat(CodecName(c.codec), "_bs", c.block_size, "_h", c.num_kv_heads, "_d",
                    c.head_dim, "_gqa", c.gqa_ratio);
    });

TEST(QuantPagedAttention, RejectsBadPagesAndBlockCounts) {
  const QuantCase c{KvCodec::kKivi4, 16, 2, 64, 2};
  const Batch b = MakeBatch({{40, 1}}, c, 3);  // blocks 0, 1 quantized; block 2 residual
  ASSERT_EQ(b.quant_blocks[0], 2);
  std::vector<float> out(b.q.size());
  ASSERT_TRUE(cpu::QuantPagedAttention(b.Params(out.data()), kThreads).ok());
  auto expect_rejected = [&](auto mutate) {
    Batch bad = b;
    mutate(bad);
    EXPECT_EQ(cpu::QuantPagedAttention(bad.Params(out.data()), kThreads).code(),
              absl::StatusCode::kInvalidArgument);
  };
  expect_rejected([](Batch& x) { x.block_tables[0] = x.num_quant_pages; });
  expect_rejected([](Batch& x) { x.block_tables[1] = -1; });
  expect_rejected([](Batch& x) { x.block_tables[2] = x.num_full_pages; });
  expect_rejected([](Batch& x) { x.quant_blocks[0] = 4; });   // more than the 3 blocks
  expect_rejected([](Batch& x) { x.quant_blocks[0] = -1; });
  expect_rejected([](Batch& x) { x.num_full_pages = 0; });    // block 2 needs an f32 page
  expect_rejected([](Batch& x) { x.context_lens[0] = 16 * x.max_blocks + 1; });
  expect_rejected([](Batch& x) { x.format.block_size = 24; });  // kivi needs 32 % bs == 0
  expect_rejected([](Batch& x) { x.num_q_heads = 3; });
  // An f32 pool whose shape differs from the quantized pages.
  Batch bad = b;
  QuantAttentionParams p = bad.Params(out.data());
  p.full.head_dim = 32;
  EXPECT_EQ(cpu::QuantPagedAttention(p, kThreads).code(), absl::StatusCode::kInvalidArgument);
  p = bad.Params(out.data());
  p.quant_blocks = nullptr;
  EXPECT_EQ(cpu::QuantPagedAttention(p, kThreads).code(), absl::StatusCode::kInvalidArgument);
}

TEST(QuantWriteKv, MatchesEncodeTokensAndRejectsBadInput) {
  const KvPageFormat f{KvCodec::kFp8, 4, 2, 8};
  const int32_t num_pages = 3;
  std::mt19937 rng(5);
  const std::vector<int64_t> slots = {7, 0, 9, 4};
  const std::vector<float> k = Random(4 * 16, rng), v = Random(4 * 16, rng);
  std::vector<std::byte> pool(f.PageBytes() * num_pages, std::byte{0});
  ASSERT_TRUE(cpu::QuantWriteKv({k.data(), v.data(), slots.data(), 4, f, pool.data(), num_pages},
                                kThreads).ok());
  std::vector<std::byte> expected(pool.size(), std::byte{0});
  for (int t = 0; t < 4; ++t) {
    const std::span<std::byte> page(expected.data() + f.PageBytes() * (slots[t] / 4),
                                    f.PageBytes());
    ASSERT_TRUE(EncodeTokens(f, page, slots[t] % 4, 1, k.data() + 16 * t, v.data() + 16 * t).ok());
  }
  EXPECT_EQ(pool, expected);

  const int64_t bad_slot = num_pages * 4;
  EXPECT_EQ(cpu::QuantWriteKv({k.data(), v.data(), &bad_slot, 1, f, pool.data(), num_pages},
                              kThreads).code(),
            absl::StatusCode::kInvalidArgument);
  const KvPageFormat kivi{KvCodec::kKivi2, 16, 2, 8};
  EXPECT_EQ(cpu::QuantWriteKv({k.data(), v.data(), slots.data(), 1, kivi, pool.data(), 1},
                              kThreads).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace strata::kernels
