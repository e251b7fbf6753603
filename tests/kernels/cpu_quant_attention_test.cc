// QuantWriteKv and QuantPagedAttention (kernels/cpu/cpu_quant_attention.cc) against the f32
// PagedAttention run on the decoded copy of the same pages: for every codec, a mixed batch
// (1-token sequence, prefill, prefill chunk, decodes, partial last pages, and for KIVI quantized
// pages followed by residual pages of another block size, in bf16 or fp32). All pages share one
// pool of fixed-stride pages, handed out in shuffled order; unused bytes are 0xff (NaN in every
// codec's stats or elements), so a read through a wrong page or past a context shows up as NaN.
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

int32_t CeilDiv(int32_t a, int32_t b) { return (a + b - 1) / b; }

struct SeqSpec {
  int32_t context_len;
  int32_t num_query_tokens;  // the last tokens of the context
};

struct QuantCase {
  KvCodec codec;
  int32_t block_size, num_kv_heads, head_dim, gqa_ratio;
  KvCodec residual_codec = KvCodec::kBf16;
  int32_t residual_block_size = 0;  // 0: a per-token codec keeps its whole context quantized
};

// Quantized blocks of a context. KIVI: whole 32-token groups in whole pages, except that a page
// of 64 may end half full when the context ends there too. Per-token codecs: every block, or only
// the full ones when the case has residual pages.
int32_t QuantBlocks(const QuantCase& c, int32_t context_len) {
  const int32_t bs = c.block_size;
  if (IsKivi(c.codec)) {
    const int32_t grouped = context_len / kKiviGroupTokens * kKiviGroupTokens;
    return grouped == context_len ? CeilDiv(grouped, bs) : grouped / bs;
  }
  return c.residual_block_size == 0 ? CeilDiv(context_len, bs) : context_len / bs;
}

// Everything one attention call needs, built from random K/V for `seqs`.
struct Batch {
  KvPageFormat format, residual;
  size_t page_stride = 0;
  int32_t num_pages = 0;
  std::vector<std::byte> pool;
  std::vector<int32_t> block_tables, quant_blocks, query_start, context_lens;
  int32_t max_blocks = 0;
  std::vector<float> ref_pool;  // f32 pages of block_size tokens: every context, decoded
  std::vector<int32_t> ref_block_tables;
  int32_t num_ref_pages = 0, max_ref_blocks = 0;
  std::vector<float> q;
  int32_t num_q_heads = 0;

  float Scale() const { return 1.0f / std::sqrt(static_cast<float>(format.head_dim)); }
  QuantAttentionParams Params(float* out) const {
    return {.q = q.data(),
            .out = out,
            .format = format,
            .residual_format = residual,
            .pool = pool.data(),
            .page_stride = page_stride,
            .num_pages = num_pages,
            .query_start = query_start.data(),
            .context_lens = context_lens.data(),
            .block_tables = block_tables.data(),
            .quant_blocks = quant_blocks.data(),
            .num_seqs = static_cast<int32_t>(context_lens.size()),
            .max_blocks_per_seq = max_blocks,
            .num_q_heads = num_q_heads,
            .scale = Scale()};
  }
  PagedAttentionParams RefParams(float* out) const {
    const KvPoolView kv{const_cast<float*>(ref_pool.data()), num_ref_pages, format.block_size,
                        format.num_kv_heads, format.head_dim};
    return {q.data(), out, kv, query_start.data(), context_lens.data(), ref_block_tables.data(),
            static_cast<int32_t>(context_lens.size()), max_ref_blocks, num_q_heads, Scale()};
  }
  std::span<std::byte> Page(const KvPageFormat& f, int32_t id) {
    return {pool.data() + page_stride * id, f.PageBytes()};
  }
};

// Writes tokens [first, first + count) of k, v through QuantWriteKv into the pages of `table`
// (block_size f.block_size), token `first` at offset 0 of table[0].
void WritePerToken(Batch& b, const KvPageFormat& f, const int32_t* table, int32_t count,
                   const float* k, const float* v) {
  std::vector<int64_t> slots(count);
  for (int32_t i = 0; i < count; ++i) {
    slots[i] = int64_t{table[i / f.block_size]} * f.block_size + i % f.block_size;
  }
  const absl::Status status = cpu::QuantWriteKv(
      {k, v, slots.data(), count, f, b.pool.data(), b.page_stride, b.num_pages}, kThreads);
  ASSERT_TRUE(status.ok()) << status;
}

// Sequence s's context: quantized tokens [0, quant_tokens), then the residual pages.
void WriteSequence(Batch& b, int32_t s, int32_t quant_tokens, int32_t ctx,
                   const std::vector<float>& k, const std::vector<float>& v) {
  const KvPageFormat& f = b.format;
  const int64_t tf = int64_t{f.num_kv_heads} * f.head_dim;
  const int32_t* table = b.block_tables.data() + s * b.max_blocks;
  if (IsKivi(f.codec)) {
    for (int32_t g = 0; g < quant_tokens; g += kKiviGroupTokens) {
      ASSERT_TRUE(EncodeKiviGroup(f, b.Page(f, table[g / f.block_size]), g % f.block_size,
                                  k.data() + g * tf, v.data() + g * tf).ok());
    }
  } else {
    WritePerToken(b, f, table, quant_tokens, k.data(), v.data());
  }
  WritePerToken(b, b.residual, table + b.quant_blocks[s], ctx - quant_tokens,
                k.data() + quant_tokens * tf, v.data() + quant_tokens * tf);
}

// Decodes sequence s's pages into K, V [ctx][heads][head_dim].
void DecodeSequence(Batch& b, int32_t s, int32_t quant_tokens, int32_t ctx,
                    std::vector<float>& k, std::vector<float>& v) {
  const int64_t tf = int64_t{b.format.num_kv_heads} * b.format.head_dim;
  k.assign(ctx * tf, 0.0f);
  v.assign(ctx * tf, 0.0f);
  const int32_t* table = b.block_tables.data() + s * b.max_blocks;
  int32_t entry = 0;
  for (int32_t t = 0; t < ctx; ++entry) {
    const KvPageFormat& f = t < quant_tokens ? b.format : b.residual;
    const int32_t count = std::min(f.block_size, (t < quant_tokens ? quant_tokens : ctx) - t);
    ASSERT_TRUE(DecodePage(f, b.Page(f, table[entry]), count, k.data() + t * tf,
                           v.data() + t * tf).ok());
    t += count;
  }
}

// Copies a decoded context into the reference pool's pages, in order.
void FillReference(Batch& b, int32_t s, int32_t ctx, const std::vector<float>& k,
                   const std::vector<float>& v, int32_t& next_ref_page) {
  const int32_t bs = b.format.block_size;
  const int64_t tf = int64_t{b.format.num_kv_heads} * b.format.head_dim, half_page = bs * tf;
  for (int32_t block = 0; block * bs < ctx; ++block) {
    const int32_t id = next_ref_page++;
    const int32_t count = std::min(bs, ctx - block * bs);
    std::copy_n(k.data() + block * half_page, count * tf, b.ref_pool.data() + 2 * half_page * id);
    std::copy_n(v.data() + block * half_page, count * tf,
                b.ref_pool.data() + 2 * half_page * id + half_page);
    b.ref_block_tables[s * b.max_ref_blocks + block] = id;
  }
}

Batch MakeBatch(const std::vector<SeqSpec>& seqs, const QuantCase& c, uint32_t seed) {
  Batch b;
  b.format = {c.codec, c.block_size, c.num_kv_heads, c.head_dim};
  b.residual = {c.residual_codec, c.residual_block_size > 0 ? c.residual_block_size : 16,
                c.num_kv_heads, c.head_dim};
  EXPECT_TRUE(b.format.Validate().ok());
  b.num_q_heads = c.num_kv_heads * c.gqa_ratio;
  std::mt19937 rng(seed);
  const int32_t bs = c.block_size, rbs = b.residual.block_size;
  const int32_t num_seqs = static_cast<int32_t>(seqs.size());
  std::vector<int32_t> quant_tokens(num_seqs);
  int32_t total_pages = 0;
  for (int32_t s = 0; s < num_seqs; ++s) {
    const int32_t ctx = seqs[s].context_len, quant = QuantBlocks(c, ctx);
    quant_tokens[s] = std::min(quant * bs, ctx);
    const int32_t blocks = quant + CeilDiv(ctx - quant_tokens[s], rbs);
    b.quant_blocks.push_back(quant);
    b.max_blocks = std::max(b.max_blocks, blocks + 1);  // a spare column stays -1
    b.max_ref_blocks = std::max(b.max_ref_blocks, CeilDiv(ctx, bs));
    b.num_ref_pages += CeilDiv(ctx, bs);
    total_pages += blocks;
  }
  // A stride that fits both formats, a multiple of 4 but not of 64, with padding after the page.
  b.page_stride = (std::max(b.format.PageBytes(), b.residual.PageBytes()) + 3) / 4 * 4 + 20;
  b.num_pages = total_pages + 3;  // spare pages stay 0xff
  std::vector<int32_t> ids(b.num_pages);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  b.pool.assign(b.page_stride * b.num_pages, std::byte{0xff});
  b.block_tables.assign(int64_t{num_seqs} * b.max_blocks, -1);
  const int64_t tf = int64_t{c.num_kv_heads} * c.head_dim;
  b.ref_pool.assign(2 * bs * tf * b.num_ref_pages, std::numeric_limits<float>::quiet_NaN());
  b.ref_block_tables.assign(int64_t{num_seqs} * b.max_ref_blocks, -1);
  b.query_start = {0};
  int32_t next_page = 0, next_ref_page = 0;
  for (int32_t s = 0; s < num_seqs; ++s) {
    const int32_t ctx = seqs[s].context_len;
    const int32_t blocks = b.quant_blocks[s] + CeilDiv(ctx - quant_tokens[s], rbs);
    for (int32_t e = 0; e < blocks; ++e) b.block_tables[s * b.max_blocks + e] = ids[next_page++];
    const std::vector<float> k = Random(ctx * tf, rng), v = Random(ctx * tf, rng);
    WriteSequence(b, s, quant_tokens[s], ctx, k, v);
    std::vector<float> dk, dv;
    DecodeSequence(b, s, quant_tokens[s], ctx, dk, dv);
    FillReference(b, s, ctx, dk, dv, next_ref_page);
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
  if (c.codec == KvCodec::kF32 && c.residual_block_size == 0) {
    // The same pages and page boundaries through both kernels: bit-identical.
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
                        KvCodec::kInt8}) {
    for (int32_t block_size : {16, 32}) {
      cases.push_back({codec, block_size, 4, 8, 2});   // stories260K: 8 q heads on 4 kv heads
      cases.push_back({codec, block_size, 2, 64, 7});  // Qwen2.5-0.5B-like: 14 on 2
    }
    cases.push_back({codec, 16, 1, 128, 4});
  }
  // Per-token pages followed by residual pages.
  cases.push_back({KvCodec::kInt8, 16, 2, 64, 7, KvCodec::kBf16, 10});
  cases.push_back({KvCodec::kF32, 16, 2, 64, 7, KvCodec::kF32, 5});
  for (KvCodec codec : {KvCodec::kKivi4, KvCodec::kKivi2}) {
    cases.push_back({codec, 32, 4, 8, 2, KvCodec::kBf16, 10});
    cases.push_back({codec, 32, 2, 64, 7, KvCodec::kBf16, 10});
    cases.push_back({codec, 32, 2, 64, 7, KvCodec::kF32, 16});
    cases.push_back({codec, 32, 1, 128, 4, KvCodec::kF32, 7});
    cases.push_back({codec, 64, 2, 64, 2, KvCodec::kBf16, 10});  // two key groups per page
    cases.push_back({codec, 64, 2, 64, 2, KvCodec::kF32, 48});   // residual pages > 32 tokens
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(
    Codecs, QuantPagedAttentionTest, testing::ValuesIn(AllQuantCases()),
    [](const testing::TestParamInfo<QuantCase>& info) {
      const QuantCase& c = info.param;
      std::string name = StrCat(CodecName(c.codec), "_bs", c.block_size, "_h", c.num_kv_heads,
                                "_d", c.head_dim, "_gqa", c.gqa_ratio);
      if (c.residual_block_size > 0) {
        name += StrCat("_res_", CodecName(c.residual_codec), "_bs", c.residual_block_size);
      }
      return name;
    });

TEST(QuantPagedAttention, RejectsBadPagesAndBlockCounts) {
  const QuantCase c{KvCodec::kKivi4, 32, 2, 64, 2, KvCodec::kBf16, 10};
  const Batch b = MakeBatch({{75, 1}}, c, 3);  // blocks 0, 1 kivi; residual entries 2 and 3
  ASSERT_EQ(b.quant_blocks[0], 2);
  ASSERT_EQ(b.max_blocks, 5);
  std::vector<float> out(b.q.size());
  ASSERT_TRUE(cpu::QuantPagedAttention(b.Params(out.data()), kThreads).ok());
  auto expect_rejected = [&](auto mutate) {
    QuantAttentionParams p = b.Params(out.data());
    Batch bad = b;
    mutate(bad, p);
    p.block_tables = bad.block_tables.data();
    p.quant_blocks = bad.quant_blocks.data();
    p.context_lens = bad.context_lens.data();
    EXPECT_EQ(cpu::QuantPagedAttention(p, kThreads).code(), absl::StatusCode::kInvalidArgument);
  };
  using P = QuantAttentionParams;
  expect_rejected([](Batch& x, P&) { x.block_tables[0] = x.num_pages; });
  expect_rejected([](Batch& x, P&) { x.block_tables[1] = -1; });
  expect_rejected([](Batch& x, P&) { x.block_tables[3] = x.num_pages; });  // last residual page
  expect_rejected([](Batch& x, P&) { x.quant_blocks[0] = 4; });  // more than the 3 blocks
  expect_rejected([](Batch& x, P&) { x.quant_blocks[0] = -1; });
  expect_rejected([](Batch& x, P&) { x.quant_blocks[0] = 3; });  // 75 tokens: not whole groups
  expect_rejected([](Batch& x, P&) { x.context_lens[0] = 115; });  // 6 residual pages: no room
  expect_rejected([](Batch&, P& p) { p.max_blocks_per_seq = 3; });
  expect_rejected([](Batch&, P& p) { p.num_pages = 0; });
  expect_rejected([](Batch&, P& p) { p.page_stride = p.format.PageBytes() - 1; });
  expect_rejected([](Batch&, P& p) { p.residual_format.block_size = 1000; });  // > stride
  expect_rejected([](Batch&, P& p) { p.residual_format.codec = KvCodec::kInt8; });
  expect_rejected([](Batch&, P& p) { p.residual_format.codec = KvCodec::kFp16; });
  expect_rejected([](Batch&, P& p) { p.residual_format.head_dim = 32; });
  expect_rejected([](Batch&, P& p) { p.residual_format.num_kv_heads = 1; });
  expect_rejected([](Batch&, P& p) { p.format.block_size = 16; });  // kivi needs 32 | bs
  expect_rejected([](Batch&, P& p) { p.num_q_heads = 3; });
  expect_rejected([](Batch&, P& p) { p.pool = nullptr; });
  QuantAttentionParams p = b.Params(out.data());
  p.quant_blocks = nullptr;
  EXPECT_EQ(cpu::QuantPagedAttention(p, kThreads).code(), absl::StatusCode::kInvalidArgument);

  // fp32 pages are read in place as floats: the stride must keep them 4-byte aligned.
  const Batch f32 = MakeBatch({{20, 3}}, {KvCodec::kF32, 16, 2, 64, 7}, 4);
  std::vector<float> f32_out(f32.q.size());
  p = f32.Params(f32_out.data());
  ASSERT_TRUE(cpu::QuantPagedAttention(p, kThreads).ok());
  p.page_stride -= 2;
  ASSERT_GE(p.page_stride, p.format.PageBytes());
  EXPECT_EQ(cpu::QuantPagedAttention(p, kThreads).code(), absl::StatusCode::kInvalidArgument);
}

TEST(QuantWriteKv, MatchesEncodeTokensAndRejectsBadInput) {
  const KvPageFormat f{KvCodec::kFp8, 4, 2, 8};
  const int32_t num_pages = 3;
  const size_t stride = f.PageBytes() + 6;  // padding after every page stays untouched
  std::mt19937 rng(5);
  const std::vector<int64_t> slots = {7, 0, 9, 4};
  const std::vector<float> k = Random(4 * 16, rng), v = Random(4 * 16, rng);
  std::vector<std::byte> pool(stride * num_pages, std::byte{0x5a});
  ASSERT_TRUE(cpu::QuantWriteKv({k.data(), v.data(), slots.data(), 4, f, pool.data(), stride,
                                 num_pages}, kThreads).ok());
  std::vector<std::byte> expected(pool.size(), std::byte{0x5a});
  for (int t = 0; t < 4; ++t) {
    const std::span<std::byte> page(expected.data() + stride * (slots[t] / 4), f.PageBytes());
    ASSERT_TRUE(EncodeTokens(f, page, slots[t] % 4, 1, k.data() + 16 * t, v.data() + 16 * t).ok());
  }
  EXPECT_EQ(pool, expected);

  const int64_t bad_slot = num_pages * 4;
  const auto bad = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(cpu::QuantWriteKv({k.data(), v.data(), &bad_slot, 1, f, pool.data(), stride,
                               num_pages}, kThreads).code(), bad);
  EXPECT_EQ(cpu::QuantWriteKv({k.data(), v.data(), slots.data(), 1, f, pool.data(),
                               f.PageBytes() - 1, num_pages}, kThreads).code(), bad);
  const KvPageFormat kivi{KvCodec::kKivi2, 32, 2, 8};
  EXPECT_EQ(cpu::QuantWriteKv({k.data(), v.data(), slots.data(), 1, kivi, pool.data(),
                               kivi.PageBytes(), 1}, kThreads).code(), bad);
  EXPECT_EQ(pool, expected);
}

}  // namespace
}  // namespace strata::kernels
