// KiviWriteKv (kernels/cpu/cpu_quant_attention.cc) driven like the engine drives it: a batch of
// sequences grows step by step (random step sizes, idle steps, a long prefill chunk, a sequence
// starting at a prefix-cache hit), with quant_after = R * floor(context / R). A simulated
// allocator hands out shuffled page ids from one pool, moves the residual pages behind new KIVI
// pages in the block table and frees emptied ones for reuse. After every step each sequence's
// KIVI pages decode bit for bit to what encoding its rows group by group gives (rows that sat in
// a bf16 residual are folded as their bf16 rounding), its residual pages decode to the residual
// rounding of its rows, and the bytes no page owns (stride padding, never-used pages) stay 0xff.
#include <algorithm>
#include <bit>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/kv_codec.h"

namespace strata::kernels {
namespace {

constexpr int kThreads = 2;
constexpr int32_t kGroup = kKiviGroupTokens;

int32_t CeilDiv(int32_t a, int32_t b) { return (a + b - 1) / b; }

struct WriteCase {
  KvCodec codec;
  int32_t block_size;
  KvCodec residual_codec;
  int32_t residual_block_size;
  int32_t fold_every;  // R: quant_after = R * floor(context / R)
  int32_t num_kv_heads = 2, head_dim = 64;
};

// What the residual format stores for x.
float ResidualRounding(KvCodec codec, float x) {
  return codec == KvCodec::kBf16 ? DecodeBf16(EncodeBf16(x)) : x;
}

// One sequence as the engine sees it.
struct Sequence {
  std::vector<float> k, v;          // [n][heads][head_dim], every row so far
  std::vector<float> fold_k, fold_v;  // rows [0, quant) as KIVI must have encoded them
  int32_t n = 0, quant = 0;
  std::vector<int32_t> kivi_pages, residual_pages;
};

class KiviWriteSim {
 public:
  KiviWriteSim(const WriteCase& c, int32_t num_seqs, uint32_t seed)
      : c_(c),
        format_{c.codec, c.block_size, c.num_kv_heads, c.head_dim},
        residual_{c.residual_codec, c.residual_block_size, c.num_kv_heads, c.head_dim},
        tf_(int64_t{c.num_kv_heads} * c.head_dim),
        rng_(seed),
        seqs_(num_seqs) {
    max_page_bytes_ = std::max(format_.PageBytes(), residual_.PageBytes());
    stride_ = max_page_bytes_ + 12;
    pool_.assign(stride_ * kNumPages, std::byte{0xff});
    free_.resize(kNumPages - kGuardPages);  // the last kGuardPages are never handed out
    std::iota(free_.begin(), free_.end(), 0);
  }

  // Seeds sequence s with a prefix-cache hit: `tokens` rows already in KIVI pages, no residual.
  void CacheHit(int32_t s, int32_t tokens) {
    Sequence& q = seqs_[s];
    ASSERT_EQ(q.n, 0);
    AppendRows(q, tokens);
    q.fold_k = q.k;
    q.fold_v = q.v;
    for (int32_t p = 0; p < CeilDiv(tokens, c_.block_size); ++p) q.kivi_pages.push_back(Alloc());
    for (int32_t g = 0; g < tokens; g += kGroup) {
      ASSERT_TRUE(EncodeKiviGroup(format_, Page(format_, q.kivi_pages[g / c_.block_size]),
                                  g % c_.block_size, q.k.data() + g * tf_, q.v.data() + g * tf_)
                      .ok());
    }
    q.n = q.quant = tokens;
  }

  // One KiviWriteKv call appending new_rows[s] random rows to every sequence s.
  void Step(const std::vector<int32_t>& new_rows) {
    const int32_t num_seqs = static_cast<int32_t>(seqs_.size());
    std::vector<int32_t> query_start = {0}, context_lens, before, after;
    std::vector<float> k, v;
    std::vector<std::vector<int32_t>> tables;
    for (int32_t s = 0; s < num_seqs; ++s) {
      Sequence& q = seqs_[s];
      const int32_t n_old = q.n;
      AppendRows(q, new_rows[s]);
      k.insert(k.end(), q.k.begin() + n_old * tf_, q.k.end());
      v.insert(v.end(), q.v.begin() + n_old * tf_, q.v.end());
      const int32_t ctx = n_old + new_rows[s];
      const int32_t quant_after = std::max(q.quant, ctx / c_.fold_every * c_.fold_every);
      query_start.push_back(query_start.back() + new_rows[s]);
      context_lens.push_back(ctx);
      before.push_back(q.quant);
      after.push_back(quant_after);
      tables.push_back(TableAfter(q, ctx, quant_after));
    }
    const int32_t max_blocks = MaxBlocks(tables);
    std::vector<int32_t> block_tables(int64_t{num_seqs} * max_blocks, -1);
    for (int32_t s = 0; s < num_seqs; ++s) {
      std::copy(tables[s].begin(), tables[s].end(), block_tables.begin() + s * max_blocks);
    }
    const KiviWriteKvParams p{.k = k.data(),
                              .v = v.data(),
                              .query_start = query_start.data(),
                              .context_lens = context_lens.data(),
                              .quant_before = before.data(),
                              .quant_after = after.data(),
                              .block_tables = block_tables.data(),
                              .num_seqs = num_seqs,
                              .max_blocks_per_seq = max_blocks,
                              .format = format_,
                              .residual_format = residual_,
                              .pool = pool_.data(),
                              .page_stride = stride_,
                              .num_pages = kNumPages};
    const absl::Status status = cpu::KiviWriteKv(p, kThreads);
    ASSERT_TRUE(status.ok()) << status;
    for (int32_t s = 0; s < num_seqs; ++s) Advance(seqs_[s], context_lens[s], after[s]);
  }

  // Every sequence's pages against the reference encoding, and the unowned bytes.
  void Check() {
    for (size_t s = 0; s < seqs_.size(); ++s) {
      SCOPED_TRACE(testing::Message() << "sequence " << s << " n=" << seqs_[s].n
                                      << " quant=" << seqs_[s].quant);
      CheckKivi(seqs_[s]);
      CheckResidual(seqs_[s]);
    }
    for (int32_t page = 0; page < kNumPages; ++page) {
      const bool guard = page >= kNumPages - kGuardPages;
      const size_t begin = page * stride_ + (guard ? 0 : max_page_bytes_);
      for (size_t i = begin; i < (page + 1) * stride_; ++i) {
        ASSERT_EQ(pool_[i], std::byte{0xff}) << "page " << page << " byte " << i - page * stride_;
      }
    }
  }

  std::mt19937& rng() { return rng_; }
  const Sequence& seq(int32_t s) const { return seqs_[s]; }

 private:
  static constexpr int32_t kNumPages = 200, kGuardPages = 3;

  std::span<std::byte> Page(const KvPageFormat& f, int32_t id) {
    return {pool_.data() + stride_ * id, f.PageBytes()};
  }

  int32_t Alloc() {
    EXPECT_FALSE(free_.empty());
    const size_t i = rng_() % free_.size();
    const int32_t id = free_[i];
    free_.erase(free_.begin() + i);
    return id;
  }

  void AppendRows(Sequence& q, int32_t count) {
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (int64_t i = 0; i < count * tf_; ++i) {
      q.k.push_back(dist(rng_) * (rng_() % 50 == 0 ? 30.0f : 1.0f));
      q.v.push_back(dist(rng_));
    }
  }

  // The block table after the step: KIVI pages for [0, quant_after), then residual pages for the
  // old residual rows (still there on entry) and the new residual rows.
  std::vector<int32_t> TableAfter(Sequence& q, int32_t ctx, int32_t quant_after) {
    while (static_cast<int32_t>(q.kivi_pages.size()) < CeilDiv(quant_after, c_.block_size)) {
      q.kivi_pages.push_back(Alloc());
    }
    const int32_t rbs = c_.residual_block_size;
    const int32_t num_residual =
        std::max(CeilDiv(q.n - q.quant, rbs), CeilDiv(ctx - quant_after, rbs));
    while (static_cast<int32_t>(q.residual_pages.size()) < num_residual) {
      q.residual_pages.push_back(Alloc());
    }
    std::vector<int32_t> table = q.kivi_pages;
    table.insert(table.end(), q.residual_pages.begin(), q.residual_pages.end());
    return table;
  }

  static int32_t MaxBlocks(const std::vector<std::vector<int32_t>>& tables) {
    size_t most = 0;
    for (const auto& t : tables) most = std::max(most, t.size());
    return static_cast<int32_t>(most) + 1;  // a spare column of -1
  }

  // Bookkeeping after a step: rows folded from the residual are folded as their residual
  // rounding, the step's own rows exactly; emptied residual pages go back to the free list.
  void Advance(Sequence& q, int32_t ctx, int32_t quant_after) {
    const int32_t n_old = q.n;
    for (int32_t t = q.quant; t < quant_after; ++t) {
      for (int64_t i = t * tf_; i < (t + 1) * tf_; ++i) {
        q.fold_k.push_back(t < n_old ? ResidualRounding(c_.residual_codec, q.k[i]) : q.k[i]);
        q.fold_v.push_back(t < n_old ? ResidualRounding(c_.residual_codec, q.v[i]) : q.v[i]);
      }
    }
    const size_t keep = CeilDiv(ctx - quant_after, c_.residual_block_size);
    free_.insert(free_.end(), q.residual_pages.begin() + keep, q.residual_pages.end());
    q.residual_pages.resize(keep);
    q.n = ctx;
    q.quant = quant_after;
  }

  void CheckKivi(const Sequence& q) {
    const int32_t bs = c_.block_size;
    for (int32_t p = 0; p * bs < q.quant; ++p) {
      const int32_t count = std::min(bs, q.quant - p * bs);
      std::vector<std::byte> expected(format_.PageBytes());
      for (int32_t g = 0; g < count; g += kGroup) {
        const int64_t row = (p * bs + g) * tf_;
        ASSERT_TRUE(EncodeKiviGroup(format_, expected, g, q.fold_k.data() + row,
                                    q.fold_v.data() + row).ok());
      }
      std::vector<float> ek(count * tf_), ev(count * tf_), k(count * tf_), v(count * tf_);
      ASSERT_TRUE(DecodePage(format_, expected, count, ek.data(), ev.data()).ok());
      ASSERT_TRUE(DecodePage(format_, Page(format_, q.kivi_pages[p]), count, k.data(), v.data())
                      .ok());
      for (int64_t i = 0; i < count * tf_; ++i) {
        ASSERT_EQ(std::bit_cast<uint32_t>(k[i]), std::bit_cast<uint32_t>(ek[i])) << "page " << p;
        ASSERT_EQ(std::bit_cast<uint32_t>(v[i]), std::bit_cast<uint32_t>(ev[i])) << "page " << p;
      }
    }
  }

  void CheckResidual(const Sequence& q) {
    const int32_t rbs = c_.residual_block_size;
    ASSERT_EQ(q.residual_pages.size(), static_cast<size_t>(CeilDiv(q.n - q.quant, rbs)));
    for (int32_t t = q.quant; t < q.n; t += rbs) {
      const int32_t count = std::min(rbs, q.n - t);
      std::vector<float> k(count * tf_), v(count * tf_);
      ASSERT_TRUE(DecodePage(residual_, Page(residual_, q.residual_pages[(t - q.quant) / rbs]),
                             count, k.data(), v.data()).ok());
      for (int64_t i = 0; i < count * tf_; ++i) {
        const float want_k = ResidualRounding(c_.residual_codec, q.k[t * tf_ + i]);
        const float want_v = ResidualRounding(c_.residual_codec, q.v[t * tf_ + i]);
        ASSERT_EQ(std::bit_cast<uint32_t>(k[i]), std::bit_cast<uint32_t>(want_k)) << t;
        ASSERT_EQ(std::bit_cast<uint32_t>(v[i]), std::bit_cast<uint32_t>(want_v)) << t;
      }
    }
  }

  WriteCase c_;
  KvPageFormat format_, residual_;
  int64_t tf_;
  std::mt19937 rng_;
  std::vector<Sequence> seqs_;
  size_t max_page_bytes_ = 0, stride_ = 0;
  std::vector<std::byte> pool_;
  std::vector<int32_t> free_;
};

class KiviWriteKvTest : public testing::TestWithParam<WriteCase> {};

// Three sequences: two fresh ones and one starting at a prefix-cache hit of 3 groups (with
// block 64, the next group fills the second half of a page), 30 steps of 1..70 new rows, some
// sequences idle (0 rows) in some steps.
TEST_P(KiviWriteKvTest, RandomStepsMatchGroupByGroupEncoding) {
  const WriteCase& c = GetParam();
  KiviWriteSim sim(c, 3, 100 * c.block_size + c.fold_every + c.residual_block_size);
  sim.CacheHit(2, 3 * kGroup);
  sim.Check();
  int32_t folds = 0, appends = 0;
  for (int step = 0; step < 30; ++step) {
    std::vector<int32_t> rows(3);
    for (int32_t& r : rows) r = sim.rng()() % 10 == 0 ? 0 : 1 + sim.rng()() % 70;
    std::vector<int32_t> quant_before(3);
    for (int32_t s = 0; s < 3; ++s) quant_before[s] = sim.seq(s).quant;
    sim.Step(rows);
    if (HasFatalFailure()) return;
    sim.Check();
    if (HasFatalFailure()) return;
    for (int32_t s = 0; s < 3; ++s) {
      (sim.seq(s).quant > quant_before[s] ? folds : appends) += rows[s] > 0;
    }
  }
  EXPECT_GT(folds, 5);  // both paths ran
  EXPECT_GT(appends, 5);
}

// A prefill chunk of several groups at once from an empty sequence, then decodes.
TEST_P(KiviWriteKvTest, LongPrefillThenDecodes) {
  const WriteCase& c = GetParam();
  KiviWriteSim sim(c, 1, 7);
  for (int32_t rows : {150, 1, 1, 30, 70, 1, 64}) {
    sim.Step({rows});
    if (HasFatalFailure()) return;
    sim.Check();
    if (HasFatalFailure()) return;
  }
  EXPECT_EQ(sim.seq(0).n, 317);
  EXPECT_EQ(sim.seq(0).quant, 317 / c.fold_every * c.fold_every);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, KiviWriteKvTest,
    testing::Values(WriteCase{KvCodec::kKivi4, 32, KvCodec::kBf16, 10, 32},
                    WriteCase{KvCodec::kKivi4, 32, KvCodec::kBf16, 10, 64},
                    WriteCase{KvCodec::kKivi2, 64, KvCodec::kBf16, 10, 32},
                    WriteCase{KvCodec::kKivi4, 64, KvCodec::kBf16, 10, 64},
                    WriteCase{KvCodec::kKivi4, 64, KvCodec::kF32, 16, 32},
                    WriteCase{KvCodec::kKivi2, 32, KvCodec::kF32, 7, 64, 1, 128},
                    WriteCase{KvCodec::kKivi4, 32, KvCodec::kBf16, 48, 32, 4, 8}),
    [](const testing::TestParamInfo<WriteCase>& info) {
      const WriteCase& c = info.param;
      return StrCat(CodecName(c.codec), "_bs", c.block_size, "_res_",
                    CodecName(c.residual_codec), "_bs", c.residual_block_size, "_R",
                    c.fold_every, "_h", c.num_kv_heads, "_d", c.head_dim);
    });

// One valid step (40 old tokens, 32 of them quantized, 30 new: fold to 64), then broken copies
// of it: each is InvalidArgument and leaves the pool untouched.
TEST(KiviWriteKv, RejectsBadParams) {
  const KvPageFormat f{KvCodec::kKivi4, 32, 2, 64}, r{KvCodec::kBf16, 10, 2, 64};
  const size_t stride = std::max(f.PageBytes(), r.PageBytes());
  const int32_t num_pages = 8;
  std::vector<std::byte> pool(stride * num_pages, std::byte{0});
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> k(30 * 128), v(30 * 128);
  for (size_t i = 0; i < k.size(); ++i) k[i] = dist(rng), v[i] = dist(rng);
  const int32_t query_start[] = {0, 30}, context_lens[] = {70}, before[] = {32}, after[] = {64};
  // KIVI pages at entries 0, 1; residual pages from entry 2 (old 8 rows, new 6 rows). The spare
  // valid entries make sure the broken copies fail their own check, not a page-id check.
  const int32_t table[] = {0, 1, 2, 3, 4, 5, -1};
  const KiviWriteKvParams good{k.data(), v.data(), query_start, context_lens, before, after, table,
                               1, 7, f, r, pool.data(), stride, num_pages};
  {
    std::vector<std::byte> copy = pool;
    KiviWriteKvParams p = good;
    p.pool = copy.data();
    ASSERT_TRUE(cpu::KiviWriteKv(p, kThreads).ok());
  }
  const std::vector<std::byte> untouched = pool;
  auto expect_rejected = [&](auto mutate) {
    KiviWriteKvParams p = good;
    int32_t qs[] = {0, 30}, ctx[] = {70}, qb[] = {32}, qa[] = {64}, t[] = {0, 1, 2, 3, 4, 5, -1};
    p.query_start = qs, p.context_lens = ctx, p.quant_before = qb, p.quant_after = qa;
    p.block_tables = t;
    mutate(p, qs, ctx, qb, qa, t);
    EXPECT_EQ(cpu::KiviWriteKv(p, kThreads).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(pool, untouched);
  };
  using P = KiviWriteKvParams;
  using A = int32_t*;
  expect_rejected([](P&, A, A, A, A, A t) { t[1] = num_pages; });  // the KIVI page written
  expect_rejected([](P&, A, A, A, A, A t) { t[1] = -1; });
  expect_rejected([](P&, A, A, A, A, A t) { t[2] = num_pages; });  // the residual page
  expect_rejected([](P&, A, A, A, A, A t) { t[2] = -1; });
  expect_rejected([](P& p, A, A, A, A, A) { p.max_blocks_per_seq = 2; });
  expect_rejected([](P&, A, A, A, A qa, A) { qa[0] = 48; });  // not a multiple of 32
  expect_rejected([](P&, A, A, A, A qa, A) { qa[0] = 96; });  // past the context
  expect_rejected([](P&, A, A, A qb, A, A) { qb[0] = 16; });
  expect_rejected([](P&, A, A, A qb, A, A) { qb[0] = 64; });  // past the 40 old tokens
  expect_rejected([](P&, A, A, A qb, A qa, A) { qb[0] = 32, qa[0] = 0; });  // after < before
  expect_rejected([](P&, A qs, A, A, A, A) { qs[0] = 1; });
  expect_rejected([](P&, A, A ctx, A, A, A) { ctx[0] = 20; });  // fewer than the 30 new rows
  expect_rejected([](P& p, A, A, A, A, A) { p.k = nullptr; });
  expect_rejected([](P& p, A, A, A, A, A) { p.pool = nullptr; });
  expect_rejected([](P& p, A, A, A, A, A) { p.num_pages = -1; });
  expect_rejected([](P& p, A, A, A, A, A) { p.page_stride = p.format.PageBytes() - 1; });
  expect_rejected([](P& p, A, A, A, A, A) { p.format.codec = KvCodec::kInt8; });
  expect_rejected([](P& p, A, A, A, A, A) { p.format.block_size = 16; });
  expect_rejected([](P& p, A, A, A, A, A) { p.residual_format.codec = KvCodec::kFp8; });
  expect_rejected([](P& p, A, A, A, A, A) { p.residual_format.head_dim = 32; });
  expect_rejected([](P& p, A, A, A, A, A) { p.residual_format.block_size = 0; });
  expect_rejected([](P& p, A, A, A, A, A) { p.block_tables = nullptr; });
}

}  // namespace
}  // namespace strata::kernels
