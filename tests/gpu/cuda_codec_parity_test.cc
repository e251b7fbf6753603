// CudaDevice's KV-codec and sparsity ops (QuantWriteKv, KiviWriteKv, QuantPagedAttention,
// AttentionScores, KvCompact) against their CPU twins on the same random inputs: every codec,
// GQA 4:2 with head_dim 64 and 6:3 with head_dim 36 (a short last KIVI value group), shuffled
// page ids in one pool of odd-stride pages (unaligned multi-byte fields), prefill chunks and
// decode rows, KIVI steps with and without a fold. Written pool bytes must equal the CPU's byte
// for byte (the element math is shared, kernels/kv_codec_math.h); attention outputs and scores,
// written into buffers poisoned with NaN, must be NaN-free and agree within 1e-4 relative.
// Skips (with the reason) where MakeCudaDevice fails: builds without CUDA, machines without a GPU.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <span>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/device.h"
#include "tests/gpu/cuda_fixture.h"
#include "kernels/kv_codec.h"
#include "tests/kernels/random_tensors.h"

namespace strata::kernels {
namespace {

int32_t CeilDiv(int32_t a, int32_t b) { return (a + b - 1) / b; }

struct Shape {
  int32_t num_kv_heads, num_q_heads, head_dim;
};
constexpr Shape kShapes[] = {{2, 4, 64}, {3, 6, 36}};

// K/V-like values: uniform in [-1, 1) with an occasional outlier (x8), like the CPU tests.
std::vector<float> KvValues(size_t n, std::mt19937& rng) {
  std::vector<float> x = Random(n, rng);
  for (float& v : x) v *= rng() % 64 == 0 ? 8.0f : 1.0f;
  return x;
}

// Host bytes of a pool of fixed-stride pages, random to start with (bytes nobody writes must
// stay equal on both devices too), handing out page ids in shuffled order.
struct HostPool {
  HostPool(size_t page_stride, int32_t num_pages, std::mt19937& rng)
      : stride(page_stride), pages(num_pages), bytes(page_stride * num_pages), free(num_pages) {
    for (std::byte& b : bytes) b = static_cast<std::byte>(rng());
    std::iota(free.begin(), free.end(), 0);
    std::shuffle(free.begin(), free.end(), rng);
  }
  int32_t Alloc() {
    EXPECT_FALSE(free.empty());
    const int32_t id = free.back();
    free.pop_back();
    return id;
  }
  std::span<std::byte> Page(const KvPageFormat& f, int32_t id) {
    return {bytes.data() + stride * id, f.PageBytes()};
  }
  size_t stride;
  int32_t pages;
  std::vector<std::byte> bytes;
  std::vector<int32_t> free;
};

// A page stride of at least both formats' pages: odd (so u16 / f32 fields sit unaligned) unless
// an fp32 page is read in place by attention, which needs 4-byte alignment.
size_t StrideFor(const KvPageFormat& a, const KvPageFormat& b, bool aligned) {
  const size_t bytes = std::max(a.PageBytes(), b.PageBytes());
  return aligned ? bytes + 4 : bytes + 3;
}

using CudaCodecParityTest = CudaFixture;

void ExpectBytesEqual(const std::vector<std::byte>& cpu, const std::vector<std::byte>& gpu,
                      size_t stride) {
  ASSERT_EQ(cpu.size(), gpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    ASSERT_EQ(cpu[i], gpu[i]) << "page " << i / stride << " byte " << i % stride;
  }
}

// ---- QuantWriteKv -----------------------------------------------------------------------------

// A prefill chunk (tokens [16, 37) of a sequence on 3 shuffled pages) and a decode row (token 50
// of another), K rows of one token all zero (the scale-1 path); page bytes must match exactly.
TEST_F(CudaCodecParityTest, QuantWriteKvBytesMatchCpu) {
  for (const Shape& shape : kShapes) {
    for (KvCodec codec : {KvCodec::kF32, KvCodec::kBf16, KvCodec::kFp16, KvCodec::kFp8,
                          KvCodec::kInt8}) {
      SCOPED_TRACE(StrCat(CodecName(codec), " heads=", shape.num_kv_heads, " d=", shape.head_dim));
      std::mt19937 rng(1);
      const KvPageFormat f{codec, 16, shape.num_kv_heads, shape.head_dim};
      HostPool pool(StrideFor(f, f, false), 10, rng);
      const std::vector<int32_t> prefill = {pool.Alloc(), pool.Alloc(), pool.Alloc()};
      const std::vector<int32_t> decode = {pool.Alloc(), pool.Alloc(), pool.Alloc(), pool.Alloc()};
      std::vector<int64_t> slots;
      for (int32_t t = 16; t < 37; ++t) slots.push_back(int64_t{prefill[t / 16]} * 16 + t % 16);
      slots.push_back(int64_t{decode[50 / 16]} * 16 + 50 % 16);
      const int64_t n = static_cast<int64_t>(slots.size());
      const int64_t tf = int64_t{shape.num_kv_heads} * shape.head_dim;
      std::vector<float> k = KvValues(n * tf, rng), v = KvValues(n * tf, rng);
      std::fill(k.begin() + 3 * tf, k.begin() + 4 * tf, 0.0f);

      std::vector<std::byte> cpu_pool = pool.bytes;
      ASSERT_TRUE(cpu_->QuantWriteKv({k.data(), v.data(), slots.data(), n, f, cpu_pool.data(),
                                      pool.stride, pool.pages}).ok());
      std::byte* gpu_pool = Upload(pool.bytes);
      const absl::Status status = cuda_->QuantWriteKv(
          {Upload(k), Upload(v), Upload(slots), n, f, gpu_pool, pool.stride, pool.pages});
      ASSERT_TRUE(status.ok()) << status;
      ExpectBytesEqual(cpu_pool, Download(gpu_pool, pool.bytes.size()), pool.stride);
    }
  }
}

// ---- KiviWriteKv ------------------------------------------------------------------------------

// One sequence's step: n_old tokens before it ([0, quant_before) in KIVI pages, the rest in
// residual pages), new_rows appended, [0, quant_after) quantized after it.
struct KiviStepSpec {
  int32_t n_old, quant_before, new_rows, quant_after;
};

constexpr KiviStepSpec kKiviSteps[] = {
    {40, 32, 30, 64},   // folds old residual rows and new rows inside one step
    {10, 0, 5, 0},      // no fold: the old residual stays, new rows are appended
    {0, 0, 100, 96},    // a prefill folding three groups
    {63, 32, 1, 64},    // a decode row completing a group: the residual becomes empty
    {150, 0, 3, 128},   // a long residual window folding four old groups, shifting the rest
    {70, 64, 0, 64},    // an idle sequence (no new rows)
};

struct KiviCase {
  KvCodec codec;
  int32_t block_size;
  KvCodec residual_codec;
  int32_t residual_block_size;
};

// Everything one KiviWriteKv call needs, built on the host: the pool holds every sequence's
// state before the step (written through the CPU), the block tables are the ones after it.
struct KiviBatch {
  KvPageFormat format, residual;
  std::unique_ptr<HostPool> pool;
  std::vector<int32_t> query_start = {0}, context_lens, before, after, tables;
  int32_t max_blocks = 0;
  std::vector<float> k, v;  // the step's new rows
};

KiviBatch MakeKiviBatch(Device& cpu, const KiviCase& c, const Shape& shape, std::mt19937& rng) {
  KiviBatch b;
  b.format = {c.codec, c.block_size, shape.num_kv_heads, shape.head_dim};
  b.residual = {c.residual_codec, c.residual_block_size, shape.num_kv_heads, shape.head_dim};
  b.pool = std::make_unique<HostPool>(StrideFor(b.format, b.residual, false), 64, rng);
  const int64_t tf = int64_t{shape.num_kv_heads} * shape.head_dim;
  const int32_t bs = c.block_size, rbs = c.residual_block_size;
  std::vector<std::vector<int32_t>> tables;
  for (const KiviStepSpec& st : kKiviSteps) {
    const int32_t ctx = st.n_old + st.new_rows;
    const std::vector<float> k = KvValues(ctx * tf, rng), v = KvValues(ctx * tf, rng);
    std::vector<int32_t> table(CeilDiv(st.quant_after, bs));
    for (int32_t& page : table) page = b.pool->Alloc();
    for (int32_t g = 0; g < st.quant_before; g += kKiviGroupTokens) {
      EXPECT_TRUE(EncodeKiviGroup(b.format, b.pool->Page(b.format, table[g / bs]), g % bs,
                                  k.data() + g * tf, v.data() + g * tf).ok());
    }
    const int32_t num_residual =
        std::max(CeilDiv(st.n_old - st.quant_before, rbs), CeilDiv(ctx - st.quant_after, rbs));
    std::vector<int64_t> slots;
    for (int32_t i = 0; i < num_residual; ++i) table.push_back(b.pool->Alloc());
    for (int32_t i = 0; i < st.n_old - st.quant_before; ++i) {
      slots.push_back(int64_t{table[CeilDiv(st.quant_after, bs) + i / rbs]} * rbs + i % rbs);
    }
    const int64_t num_old = static_cast<int64_t>(slots.size());
    EXPECT_TRUE(cpu.QuantWriteKv({k.data() + st.quant_before * tf, v.data() + st.quant_before * tf,
                                  slots.data(), num_old, b.residual, b.pool->bytes.data(),
                                  b.pool->stride, b.pool->pages}).ok());
    b.k.insert(b.k.end(), k.begin() + st.n_old * tf, k.end());
    b.v.insert(b.v.end(), v.begin() + st.n_old * tf, v.end());
    b.query_start.push_back(b.query_start.back() + st.new_rows);
    b.context_lens.push_back(ctx);
    b.before.push_back(st.quant_before);
    b.after.push_back(st.quant_after);
    b.max_blocks = std::max(b.max_blocks, static_cast<int32_t>(table.size()) + 1);
    tables.push_back(table);
  }
  b.tables.assign(tables.size() * b.max_blocks, -1);
  for (size_t s = 0; s < tables.size(); ++s) {
    std::copy(tables[s].begin(), tables[s].end(), b.tables.begin() + s * b.max_blocks);
  }
  return b;
}

TEST_F(CudaCodecParityTest, KiviWriteKvBytesMatchCpu) {
  const KiviCase cases[] = {{KvCodec::kKivi4, 64, KvCodec::kBf16, 16},
                            {KvCodec::kKivi2, 64, KvCodec::kF32, 32},
                            {KvCodec::kKivi4, 32, KvCodec::kF32, 16},
                            {KvCodec::kKivi2, 32, KvCodec::kBf16, 64}};
  for (const Shape& shape : kShapes) {
    for (const KiviCase& c : cases) {
      SCOPED_TRACE(StrCat(CodecName(c.codec), "/", c.block_size, " residual ",
                          CodecName(c.residual_codec), "/", c.residual_block_size,
                          " heads=", shape.num_kv_heads, " d=", shape.head_dim));
      std::mt19937 rng(2);
      const KiviBatch b = MakeKiviBatch(*cpu_, c, shape, rng);
      KiviWriteKvParams p{.k = b.k.data(),
                          .v = b.v.data(),
                          .query_start = b.query_start.data(),
                          .context_lens = b.context_lens.data(),
                          .quant_before = b.before.data(),
                          .quant_after = b.after.data(),
                          .block_tables = b.tables.data(),
                          .num_seqs = static_cast<int32_t>(b.context_lens.size()),
                          .max_blocks_per_seq = b.max_blocks,
                          .format = b.format,
                          .residual_format = b.residual,
                          .pool = nullptr,
                          .page_stride = b.pool->stride,
                          .num_pages = b.pool->pages};
      std::vector<std::byte> cpu_pool = b.pool->bytes;
      p.pool = cpu_pool.data();
      ASSERT_TRUE(cpu_->KiviWriteKv(p).ok());

      std::byte* gpu_pool = Upload(b.pool->bytes);
      p.k = Upload(b.k);
      p.v = Upload(b.v);
      p.query_start = Upload(b.query_start);
      p.context_lens = Upload(b.context_lens);
      p.quant_before = Upload(b.before);
      p.quant_after = Upload(b.after);
      p.block_tables = Upload(b.tables);
      p.pool = gpu_pool;
      const absl::Status status = cuda_->KiviWriteKv(p);
      ASSERT_TRUE(status.ok()) << status;
      ExpectBytesEqual(cpu_pool, Download(gpu_pool, cpu_pool.size()), b.pool->stride);
    }
  }
}

// ---- QuantPagedAttention ----------------------------------------------------------------------

struct AttentionCase {
  KvCodec codec;
  int32_t block_size;
  KvCodec residual_codec;
  int32_t residual_block_size;
  bool residual_pages;  // per-token codecs: only full blocks quantized, the rest residual
};

// (context, query rows): a decode, a prefill chunk, a whole prefill, a 1-token sequence, a
// decode on whole KIVI groups, a 2-row chunk.
constexpr int32_t kAttentionSeqs[][2] = {{77, 1}, {40, 5}, {33, 33}, {1, 1}, {96, 1}, {64, 2}};

// Quantized blocks of a context (as in the CPU test): KIVI keeps whole 32-token groups in whole
// pages, except that the last page may end with the context; per-token codecs quantize every
// block, or only the full ones when the case has residual pages.
int32_t QuantBlocks(const AttentionCase& c, int32_t ctx) {
  const int32_t bs = c.block_size;
  if (IsKivi(c.codec)) {
    const int32_t grouped = ctx / kKiviGroupTokens * kKiviGroupTokens;
    return grouped == ctx ? CeilDiv(grouped, bs) : grouped / bs;
  }
  return c.residual_pages ? ctx / bs : CeilDiv(ctx, bs);
}

struct AttentionBatch {
  KvPageFormat format, residual;
  std::unique_ptr<HostPool> pool;
  std::vector<int32_t> query_start = {0}, context_lens, quant_blocks, tables;
  int32_t max_blocks = 0;
  std::vector<float> q;
};

// Writes tokens [first, first + count) of k, v (token `first` at offset 0 of table[0]) through
// the CPU's QuantWriteKv in format f.
void WriteTokens(Device& cpu, HostPool& pool, const KvPageFormat& f, const int32_t* table,
                 int32_t count, const float* k, const float* v) {
  std::vector<int64_t> slots(count);
  for (int32_t i = 0; i < count; ++i) {
    slots[i] = int64_t{table[i / f.block_size]} * f.block_size + i % f.block_size;
  }
  EXPECT_TRUE(cpu.QuantWriteKv({k, v, slots.data(), count, f, pool.bytes.data(), pool.stride,
                                pool.pages}).ok());
}

AttentionBatch MakeAttentionBatch(Device& cpu, const AttentionCase& c, const Shape& shape,
                                  std::mt19937& rng) {
  AttentionBatch b;
  b.format = {c.codec, c.block_size, shape.num_kv_heads, shape.head_dim};
  b.residual = {c.residual_codec, c.residual_block_size, shape.num_kv_heads, shape.head_dim};
  const bool aligned = c.codec == KvCodec::kF32 || c.residual_codec == KvCodec::kF32;
  b.pool = std::make_unique<HostPool>(StrideFor(b.format, b.residual, aligned), 64, rng);
  const int64_t tf = int64_t{shape.num_kv_heads} * shape.head_dim;
  std::vector<std::vector<int32_t>> tables;
  for (const auto& [ctx, q_len] : kAttentionSeqs) {
    const int32_t qb = QuantBlocks(c, ctx);
    const int32_t quant_tokens = std::min(qb * c.block_size, ctx);
    std::vector<int32_t> table(qb + CeilDiv(ctx - quant_tokens, c.residual_block_size));
    for (int32_t& page : table) page = b.pool->Alloc();
    const std::vector<float> k = KvValues(ctx * tf, rng), v = KvValues(ctx * tf, rng);
    if (IsKivi(c.codec)) {
      for (int32_t g = 0; g < quant_tokens; g += kKiviGroupTokens) {
        EXPECT_TRUE(EncodeKiviGroup(b.format, b.pool->Page(b.format, table[g / c.block_size]),
                                    g % c.block_size, k.data() + g * tf, v.data() + g * tf)
                        .ok());
      }
    } else {
      WriteTokens(cpu, *b.pool, b.format, table.data(), quant_tokens, k.data(), v.data());
    }
    WriteTokens(cpu, *b.pool, b.residual, table.data() + qb, ctx - quant_tokens,
                k.data() + quant_tokens * tf, v.data() + quant_tokens * tf);
    b.query_start.push_back(b.query_start.back() + q_len);
    b.context_lens.push_back(ctx);
    b.quant_blocks.push_back(qb);
    b.max_blocks = std::max(b.max_blocks, static_cast<int32_t>(table.size()) + 1);
    tables.push_back(table);
  }
  b.tables.assign(tables.size() * b.max_blocks, -1);
  for (size_t s = 0; s < tables.size(); ++s) {
    std::copy(tables[s].begin(), tables[s].end(), b.tables.begin() + s * b.max_blocks);
  }
  b.q = Random(int64_t{b.query_start.back()} * shape.num_q_heads * shape.head_dim, rng);
  return b;
}

TEST_F(CudaCodecParityTest, QuantPagedAttentionMatchesCpu) {
  const AttentionCase cases[] = {
      {KvCodec::kF32, 16, KvCodec::kBf16, 16, false},
      {KvCodec::kBf16, 16, KvCodec::kBf16, 16, false},
      {KvCodec::kFp16, 16, KvCodec::kBf16, 16, false},
      {KvCodec::kFp8, 16, KvCodec::kBf16, 16, false},
      {KvCodec::kInt8, 16, KvCodec::kBf16, 16, false},
      {KvCodec::kFp8, 16, KvCodec::kF32, 8, true},
      {KvCodec::kInt8, 32, KvCodec::kBf16, 16, true},
      {KvCodec::kKivi4, 64, KvCodec::kBf16, 16, false},
      {KvCodec::kKivi4, 32, KvCodec::kF32, 32, false},
      {KvCodec::kKivi2, 64, KvCodec::kF32, 16, false},
      {KvCodec::kKivi2, 32, KvCodec::kBf16, 32, false},
  };
  for (const Shape& shape : kShapes) {
    for (const AttentionCase& c : cases) {
      SCOPED_TRACE(StrCat(CodecName(c.codec), "/", c.block_size, " residual ",
                          CodecName(c.residual_codec), "/", c.residual_block_size,
                          " heads=", shape.num_q_heads, ":", shape.num_kv_heads,
                          " d=", shape.head_dim));
      std::mt19937 rng(3);
      const AttentionBatch b = MakeAttentionBatch(*cpu_, c, shape, rng);
      QuantAttentionParams p{.q = b.q.data(),
                             .out = nullptr,
                             .format = b.format,
                             .residual_format = b.residual,
                             .pool = b.pool->bytes.data(),
                             .page_stride = b.pool->stride,
                             .num_pages = b.pool->pages,
                             .query_start = b.query_start.data(),
                             .context_lens = b.context_lens.data(),
                             .block_tables = b.tables.data(),
                             .quant_blocks = b.quant_blocks.data(),
                             .num_seqs = static_cast<int32_t>(b.context_lens.size()),
                             .max_blocks_per_seq = b.max_blocks,
                             .num_q_heads = shape.num_q_heads,
                             .scale = 1.0f / std::sqrt(static_cast<float>(shape.head_dim))};
      std::vector<float> cpu_out(b.q.size(), NAN);
      p.out = cpu_out.data();
      ASSERT_TRUE(cpu_->QuantPagedAttention(p).ok());

      p.q = Upload(b.q);
      p.out = Upload(std::vector<float>(b.q.size(), NAN));
      p.pool = Upload(b.pool->bytes);
      p.query_start = Upload(b.query_start);
      p.context_lens = Upload(b.context_lens);
      p.block_tables = Upload(b.tables);
      p.quant_blocks = Upload(b.quant_blocks);
      const absl::Status status = cuda_->QuantPagedAttention(p);
      ASSERT_TRUE(status.ok()) << status;
      ExpectClose(cpu_out, Download(p.out, cpu_out.size()), 1e-4, 1e-5);
    }
  }
}

// ---- AttentionScores and KvCompact (f32 pool) -------------------------------------------------

// An f32 KvPoolView pool of random K/V with one shuffled block table per context.
struct F32Batch {
  std::vector<float> pool;
  std::vector<int32_t> tables;
  int32_t num_pages = 0, max_blocks = 0;
};

F32Batch MakeF32Batch(const std::vector<int32_t>& contexts, int32_t block_size, const Shape& shape,
                      std::mt19937& rng) {
  F32Batch b;
  for (int32_t ctx : contexts) b.max_blocks = std::max(b.max_blocks, CeilDiv(ctx, block_size) + 1);
  b.num_pages = static_cast<int32_t>(contexts.size()) * b.max_blocks + 2;
  std::vector<int32_t> ids(b.num_pages);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  b.tables.assign(contexts.size() * b.max_blocks, -1);
  for (size_t s = 0; s < contexts.size(); ++s) {
    for (int32_t i = 0; i < CeilDiv(contexts[s], block_size); ++i) {
      b.tables[s * b.max_blocks + i] = ids.back();
      ids.pop_back();
    }
  }
  const int64_t page_floats = 2 * int64_t{block_size} * shape.num_kv_heads * shape.head_dim;
  b.pool = KvValues(b.num_pages * page_floats, rng);
  return b;
}

// Rows scored: all of a prefill chunk, a decode row, the last 8 rows of a prefill (a SnapKV
// window), and none of a chunk (score_from = its end).
TEST_F(CudaCodecParityTest, AttentionScoresMatchCpu) {
  const int32_t bs = 16, max_context = 80;
  const std::vector<int32_t> contexts = {40, 77, 33, 20};
  const std::vector<int32_t> query_start = {0, 5, 6, 39, 42};  // 5, 1, 33 and 3 rows
  const std::vector<int32_t> score_from = {0, 5, 31, 42};
  for (const Shape& shape : kShapes) {
    SCOPED_TRACE(StrCat("heads=", shape.num_q_heads, ":", shape.num_kv_heads, " d=",
                        shape.head_dim));
    std::mt19937 rng(4);
    F32Batch b = MakeF32Batch(contexts, bs, shape, rng);
    const std::vector<float> q = Random(42 * shape.num_q_heads * shape.head_dim, rng);
    const int32_t num_seqs = static_cast<int32_t>(contexts.size());
    const size_t num_scores = size_t{4} * shape.num_kv_heads * max_context;
    AttentionScoresParams p{.q = q.data(),
                            .kv = {b.pool.data(), b.num_pages, bs, shape.num_kv_heads,
                                   shape.head_dim},
                            .query_start = query_start.data(),
                            .context_lens = contexts.data(),
                            .block_tables = b.tables.data(),
                            .score_from = score_from.data(),
                            .num_seqs = num_seqs,
                            .max_blocks_per_seq = b.max_blocks,
                            .num_q_heads = shape.num_q_heads,
                            .scale = 1.0f / std::sqrt(static_cast<float>(shape.head_dim)),
                            .scores = nullptr,
                            .max_context = max_context};
    std::vector<float> cpu_scores(num_scores, NAN);
    p.scores = cpu_scores.data();
    ASSERT_TRUE(cpu_->AttentionScores(p).ok());

    p.q = Upload(q);
    p.kv.pool = Upload(b.pool);
    p.query_start = Upload(query_start);
    p.context_lens = Upload(contexts);
    p.block_tables = Upload(b.tables);
    p.score_from = Upload(score_from);
    p.scores = Upload(std::vector<float>(num_scores, NAN));
    const absl::Status status = cuda_->AttentionScores(p);
    ASSERT_TRUE(status.ok()) << status;
    ExpectClose(cpu_scores, Download(p.scores, num_scores), 1e-4, 1e-6);
  }
}

// Per (sequence, kv head) a different random ascending keep set (one with an unmoved prefix),
// a sequence keeping nothing; the whole pool must match exactly.
TEST_F(CudaCodecParityTest, KvCompactMatchesCpu) {
  const int32_t bs = 16, max_keep = 24;
  const std::vector<int32_t> contexts = {50, 33, 16}, num_keep = {20, 10, 0};
  for (const Shape& shape : kShapes) {
    SCOPED_TRACE(StrCat("heads=", shape.num_kv_heads, " d=", shape.head_dim));
    std::mt19937 rng(5);
    F32Batch b = MakeF32Batch(contexts, bs, shape, rng);
    std::vector<int32_t> keep(contexts.size() * shape.num_kv_heads * max_keep, -1);
    for (size_t s = 0; s < contexts.size(); ++s) {
      for (int32_t h = 0; h < shape.num_kv_heads; ++h) {
        std::vector<int32_t> tokens(contexts[s]);
        std::iota(tokens.begin(), tokens.end(), 0);
        std::shuffle(tokens.begin() + (h == 0 ? 4 : 0), tokens.end(), rng);  // h 0 keeps 0..3
        tokens.resize(num_keep[s]);
        std::sort(tokens.begin(), tokens.end());
        std::copy(tokens.begin(), tokens.end(),
                  keep.begin() + (s * shape.num_kv_heads + h) * max_keep);
      }
    }
    KvCompactParams p{.kv = {nullptr, b.num_pages, bs, shape.num_kv_heads, shape.head_dim},
                      .block_tables = b.tables.data(),
                      .keep = keep.data(),
                      .num_keep = num_keep.data(),
                      .num_seqs = static_cast<int32_t>(contexts.size()),
                      .max_blocks_per_seq = b.max_blocks,
                      .max_keep = max_keep};
    std::vector<float> cpu_pool = b.pool;
    p.kv.pool = cpu_pool.data();
    ASSERT_TRUE(cpu_->KvCompact(p).ok());

    p.kv.pool = Upload(b.pool);
    p.block_tables = Upload(b.tables);
    p.keep = Upload(keep);
    p.num_keep = Upload(num_keep);
    const absl::Status status = cuda_->KvCompact(p);
    ASSERT_TRUE(status.ok()) << status;
    const std::vector<float> gpu_pool = Download(p.kv.pool, cpu_pool.size());
    ASSERT_EQ(std::memcmp(gpu_pool.data(), cpu_pool.data(), cpu_pool.size() * sizeof(float)), 0);
  }
}

// What the host can see is rejected with InvalidArgument on both devices alike.
TEST_F(CudaCodecParityTest, RejectsWhatTheCpuRejects) {
  for (Device* device : {cpu_.get(), cuda_.get()}) {
    SCOPED_TRACE(device->name());
    QuantWriteKvParams write;
    write.format.codec = KvCodec::kKivi4;
    write.format.block_size = 32;
    EXPECT_EQ(device->QuantWriteKv(write).code(), absl::StatusCode::kInvalidArgument);
    KiviWriteKvParams kivi;
    kivi.format.codec = KvCodec::kFp8;
    EXPECT_EQ(device->KiviWriteKv(kivi).code(), absl::StatusCode::kInvalidArgument);
    QuantAttentionParams attention;
    attention.format.num_kv_heads = 2;
    attention.residual_format.num_kv_heads = 2;
    attention.num_q_heads = 3;
    EXPECT_EQ(device->QuantPagedAttention(attention).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(device->AttentionScores({}).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(device->KvCompact({}).code(), absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace strata::kernels
