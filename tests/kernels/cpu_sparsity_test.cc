// The CPU sparsity kernels (kernels/cpu/cpu_sparsity.cc). AttentionScores is checked against a
// double-precision causal GQA softmax over plain [position, kv_head, head_dim] arrays; KvCompact
// against the gathered originals and, through PagedAttention, against a pool built from the kept
// tokens alone. Pools hand out pages in shuffled order and every slot no sequence owns holds NaN,
// so a read past a context or through a wrong page shows up as NaN; "nothing written" is checked
// on raw bytes (NaN != NaN).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/device.h"
#include "tests/kernels/random_tensors.h"

namespace strata::kernels {
namespace {

constexpr int kThreads = 2;

template <typename T>
bool SameBytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Sequences' K and V in a paged f32 pool, plus the plain copies the checks read.
struct PagedBatch {
  int32_t block_size = 0, num_kv_heads = 0, head_dim = 0, max_blocks = 0, num_pages = 0;
  std::vector<float> pool;                       // NaN wherever no sequence wrote
  std::vector<int32_t> block_tables;             // [num_seqs, max_blocks], -1 past the end
  std::vector<int32_t> context_lens;             // [num_seqs]
  std::vector<std::vector<float>> keys, values;  // per sequence: [context, kv_heads, head_dim]

  KvPoolView view() { return {pool.data(), num_pages, block_size, num_kv_heads, head_dim}; }
  int64_t token_floats() const { return int64_t{num_kv_heads} * head_dim; }
  int64_t half_page() const { return block_size * token_floats(); }
  // Offset in `pool` of the K row of token `token` of sequence s for kv head h.
  int64_t KOffset(int32_t s, int64_t token, int32_t h) const {
    const int32_t page = block_tables[s * max_blocks + token / block_size];
    return 2 * half_page() * page + (token % block_size) * token_floats() + int64_t{h} * head_dim;
  }
  std::set<int32_t> PagesOf(int32_t s) const {
    std::set<int32_t> pages;
    for (int32_t b = 0; b < max_blocks; ++b) {
      if (block_tables[s * max_blocks + b] >= 0) pages.insert(block_tables[s * max_blocks + b]);
    }
    return pages;
  }
};

// Writes sequences of the given contexts (with keys / values from `rng`, or the given ones)
// into shuffled pages of a fresh pool with `spare_pages` pages nobody owns.
PagedBatch MakeBatch(const std::vector<int32_t>& contexts, int32_t block_size, int32_t kv_heads,
                     int32_t head_dim, int32_t spare_pages, std::mt19937& rng,
                     std::vector<std::vector<float>> keys = {},
                     std::vector<std::vector<float>> values = {}) {
  PagedBatch b;
  b.block_size = block_size, b.num_kv_heads = kv_heads, b.head_dim = head_dim;
  int32_t total_blocks = 0;
  for (int32_t ctx : contexts) {
    b.max_blocks = std::max(b.max_blocks, (ctx + block_size - 1) / block_size);
    total_blocks += (ctx + block_size - 1) / block_size;
  }
  b.num_pages = total_blocks + spare_pages;
  std::vector<int32_t> pages(b.num_pages);
  std::iota(pages.begin(), pages.end(), 0);
  std::shuffle(pages.begin(), pages.end(), rng);
  b.pool.assign(int64_t{b.num_pages} * 2 * b.half_page(), std::numeric_limits<float>::quiet_NaN());
  b.block_tables.assign(contexts.size() * b.max_blocks, -1);
  b.context_lens = contexts;
  b.keys = std::move(keys), b.values = std::move(values);
  int32_t next_page = 0;
  for (size_t s = 0; s < contexts.size(); ++s) {
    const int32_t ctx = contexts[s];
    if (b.keys.size() <= s) b.keys.push_back(Random(ctx * b.token_floats(), rng));
    if (b.values.size() <= s) b.values.push_back(Random(ctx * b.token_floats(), rng));
    std::vector<int64_t> slots(ctx);
    for (int32_t pos = 0; pos < ctx; ++pos) {
      int32_t& page = b.block_tables[s * b.max_blocks + pos / block_size];
      if (pos % block_size == 0) page = pages[next_page++];
      slots[pos] = int64_t{page} * block_size + pos % block_size;
    }
    EXPECT_TRUE(
        cpu::WriteKv({b.keys[s].data(), b.values[s].data(), slots.data(), ctx, b.view()}, kThreads)
            .ok());
  }
  return b;
}

// ---- AttentionScores --------------------------------------------------------------------------

struct ScoredSeq {
  int32_t context;
  int32_t q_len;    // its last tokens are query rows
  int32_t skipped;  // rows before score_from
};

struct ScoresCase {
  int32_t gqa_ratio;
  int32_t block_size;
  int32_t head_dim;
};

// An AttentionScores call over a PagedBatch; owns every array the params point to.
struct ScoresCall {
  ScoresCall(PagedBatch& batch, const std::vector<ScoredSeq>& seqs, int32_t num_q_heads,
             std::mt19937& rng)
      : num_q_heads(num_q_heads) {
    query_start = {0};
    for (const ScoredSeq& s : seqs) {
      score_from.push_back(query_start.back() + s.skipped);
      query_start.push_back(query_start.back() + s.q_len);
      max_context = std::max(max_context, s.context + 3);  // padding must come back 0
    }
    q = Random(int64_t{query_start.back()} * num_q_heads * batch.head_dim, rng);
    scores.assign(seqs.size() * batch.num_kv_heads * max_context, 7.0f);
    p = {q.data(),
         batch.view(),
         query_start.data(),
         batch.context_lens.data(),
         batch.block_tables.data(),
         score_from.data(),
         static_cast<int32_t>(seqs.size()),
         batch.max_blocks,
         num_q_heads,
         1.0f / std::sqrt(float(batch.head_dim)),
         scores.data(),
         max_context};
  }
  int32_t num_q_heads;
  int32_t max_context = 0;
  std::vector<int32_t> query_start, score_from;
  std::vector<float> q, scores;
  AttentionScoresParams p;
};

// The double-precision scores: sum over scored rows and q heads of each kv head of the causal
// softmax, [num_seqs, kv_heads, max_context].
std::vector<double> ReferenceScores(const PagedBatch& b, const ScoresCall& c) {
  const int32_t group = c.num_q_heads / b.num_kv_heads, d = b.head_dim;
  const int32_t num_seqs = static_cast<int32_t>(b.context_lens.size());
  std::vector<double> ref(c.scores.size(), 0.0);
  for (int32_t s = 0; s < num_seqs; ++s) {
    const int32_t q_len = c.query_start[s + 1] - c.query_start[s];
    for (int32_t r = c.score_from[s]; r < c.query_start[s + 1]; ++r) {
      const int32_t position = b.context_lens[s] - q_len + (r - c.query_start[s]);
      for (int32_t qh = 0; qh < c.num_q_heads; ++qh) {
        const int32_t kvh = qh / group;
        const float* qv = c.q.data() + (int64_t{r} * c.num_q_heads + qh) * d;
        std::vector<double> w(position + 1);
        double max_logit = -1e300, denom = 0;
        for (int32_t j = 0; j <= position; ++j) {
          const float* kj = b.keys[s].data() + j * b.token_floats() + kvh * d;
          double dot = 0;
          for (int32_t i = 0; i < d; ++i) dot += double(qv[i]) * kj[i];
          w[j] = dot * c.p.scale;
          max_logit = std::max(max_logit, w[j]);
        }
        for (double& x : w) denom += (x = std::exp(x - max_logit));
        double* out = ref.data() + (int64_t{s} * b.num_kv_heads + kvh) * c.max_context;
        for (int32_t j = 0; j <= position; ++j) out[j] += w[j] / denom;
      }
    }
  }
  return ref;
}

// Runs AttentionScores over `seqs` and checks it against the reference, each (s, kv head)'s
// total mass against group * scored rows, and one thread against kThreads bit for bit.
void CheckScores(const std::vector<ScoredSeq>& seqs, const ScoresCase& sc) {
  const int32_t kv_heads = 2, num_q_heads = kv_heads * sc.gqa_ratio;
  std::mt19937 rng(sc.gqa_ratio * 1000 + sc.block_size * 10 + sc.head_dim + seqs.size());
  std::vector<int32_t> contexts;
  for (const ScoredSeq& s : seqs) contexts.push_back(s.context);
  PagedBatch batch = MakeBatch(contexts, sc.block_size, kv_heads, sc.head_dim, 3, rng);
  ScoresCall call(batch, seqs, num_q_heads, rng);
  ASSERT_TRUE(cpu::AttentionScores(call.p, kThreads).ok());
  const std::vector<double> ref = ReferenceScores(batch, call);
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int32_t h = 0; h < kv_heads; ++h) {
      const int64_t base = (int64_t(s) * kv_heads + h) * call.max_context;
      double mass = 0;
      for (int32_t j = 0; j < call.max_context; ++j) {
        const double expected = ref[base + j];
        mass += call.scores[base + j];
        ASSERT_NEAR(call.scores[base + j], expected, 1e-5 + 2e-5 * expected)
            << "seq " << s << " kv head " << h << " position " << j;
        if (j >= seqs[s].context) {
          ASSERT_EQ(call.scores[base + j], 0.0f);
        }
      }
      const double rows = seqs[s].q_len - seqs[s].skipped;
      EXPECT_NEAR(mass, sc.gqa_ratio * rows, 1e-4 * (1 + rows)) << "seq " << s << " head " << h;
    }
  }
  std::vector<float> parallel = call.scores;
  std::fill(call.scores.begin(), call.scores.end(), -1.0f);
  ASSERT_TRUE(cpu::AttentionScores(call.p, 1).ok());
  EXPECT_TRUE(SameBytes(parallel, call.scores));
}

class CpuAttentionScoresTest : public testing::TestWithParam<ScoresCase> {};

// A prefill scoring its last rows (SnapKV's observation window), a chunk scored from the middle,
// decodes (one on a page boundary), a chunk with no scored rows, a fully scored chunk, one token.
TEST_P(CpuAttentionScoresTest, MatchesSoftmaxReferenceOnMixedBatch) {
  CheckScores({{37, 37, 30}, {50, 7, 3}, {23, 1, 0}, {16, 1, 0}, {80, 5, 5}, {9, 4, 0}, {1, 1, 0}},
              GetParam());
}

// One decode row (H2O's per-step accumulation).
TEST_P(CpuAttentionScoresTest, MatchesSoftmaxReferenceOnSingleDecode) {
  CheckScores({{61, 1, 0}}, GetParam());
}

// Moving score_from down a chunk one row at a time adds exactly one group's mass per row to
// each kv head, and nothing to the other sequence, whose rows are never scored.
TEST_P(CpuAttentionScoresTest, EachScoredRowAddsOneGroupOfMassPerKvHead) {
  const ScoresCase sc = GetParam();
  const int32_t kv_heads = 2, num_q_heads = kv_heads * sc.gqa_ratio;
  std::mt19937 rng(7 + sc.block_size);
  PagedBatch batch = MakeBatch({45, 20}, sc.block_size, kv_heads, sc.head_dim, 1, rng);
  ScoresCall call(batch, {{45, 9, 9}, {20, 1, 1}}, num_q_heads, rng);
  auto mass = [&](int32_t s, int32_t h) {
    double sum = 0;
    for (int32_t j = 0; j < call.max_context; ++j) {
      sum += call.scores[(int64_t{s} * kv_heads + h) * call.max_context + j];
    }
    return sum;
  };
  std::vector<double> previous(kv_heads, 0.0);
  for (int32_t from = call.query_start[1]; from >= call.query_start[0]; --from) {
    call.score_from[0] = from;
    ASSERT_TRUE(cpu::AttentionScores(call.p, kThreads).ok());
    for (int32_t h = 0; h < kv_heads; ++h) {
      const double m = mass(0, h);
      if (from < call.query_start[1]) {
        EXPECT_NEAR(m - previous[h], sc.gqa_ratio, 1e-4) << "row " << from << " kv head " << h;
      } else {
        EXPECT_EQ(m, 0.0);
      }
      previous[h] = m;
      EXPECT_EQ(mass(1, h), 0.0);
    }
  }
}

std::vector<ScoresCase> AllScoresCases() {
  std::vector<ScoresCase> cases;
  for (int32_t ratio : {1, 2, 4}) {
    for (int32_t block_size : {4, 16}) {
      for (int32_t head_dim : {64, 20}) cases.push_back({ratio, block_size, head_dim});
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Layouts, CpuAttentionScoresTest, testing::ValuesIn(AllScoresCases()),
                         [](const testing::TestParamInfo<ScoresCase>& info) {
                           return StrCat("gqa", info.param.gqa_ratio, "_bs", info.param.block_size,
                                         "_d", info.param.head_dim);
                         });

TEST(CpuAttentionScores, RejectsBadParamsWithoutWriting) {
  std::mt19937 rng(11);
  PagedBatch batch = MakeBatch({10, 7}, 4, 2, 8, 1, rng);
  ScoresCall call(batch, {{10, 3, 1}, {7, 1, 0}}, 4, rng);
  const std::vector<float> pool_before = batch.pool, scores_before = call.scores;
  const AttentionScoresParams good = call.p;
  auto expect_rejected = [&](const char* what, auto mutate) {
    AttentionScoresParams p = good;
    std::vector<int32_t> query_start = call.query_start, score_from = call.score_from;
    std::vector<int32_t> context_lens = batch.context_lens, tables = batch.block_tables;
    p.query_start = query_start.data(), p.score_from = score_from.data();
    p.context_lens = context_lens.data(), p.block_tables = tables.data();
    mutate(p, query_start, score_from, context_lens, tables);
    EXPECT_EQ(cpu::AttentionScores(p, kThreads).code(), absl::StatusCode::kInvalidArgument) << what;
    EXPECT_TRUE(SameBytes(scores_before, call.scores)) << what << ": scores written";
    EXPECT_TRUE(SameBytes(pool_before, batch.pool)) << what << ": pool written";
  };
  using V = std::vector<int32_t>;
  expect_rejected("null q", [](auto& p, V&, V&, V&, V&) { p.q = nullptr; });
  expect_rejected("null scores", [](auto& p, V&, V&, V&, V&) { p.scores = nullptr; });
  expect_rejected("null score_from", [](auto& p, V&, V&, V&, V&) { p.score_from = nullptr; });
  expect_rejected("null pool", [](auto& p, V&, V&, V&, V&) { p.kv.pool = nullptr; });
  expect_rejected("page out of range",
                  [&](auto&, V&, V&, V&, V& t) { t[1 * batch.max_blocks + 1] = batch.num_pages; });
  expect_rejected("negative page", [&](auto&, V&, V&, V&, V& t) { t[1 * batch.max_blocks] = -1; });
  expect_rejected("context > max_context", [](auto& p, V&, V&, V&, V&) { p.max_context = 9; });
  expect_rejected("score_from before the rows", [](auto&, V&, V& f, V&, V&) { f[1] = 2; });
  expect_rejected("score_from past the rows", [](auto&, V&, V& f, V&, V&) { f[1] = 5; });
  expect_rejected("q heads not a multiple", [](auto& p, V&, V&, V&, V&) { p.num_q_heads = 3; });
  expect_rejected("query_start[0] != 0", [](auto&, V& qs, V&, V&, V&) { qs[0] = 1; });
  expect_rejected("context < query rows", [](auto&, V&, V&, V& c, V&) { c[0] = 2; });
  expect_rejected("too few blocks", [](auto& p, V&, V&, V&, V&) { p.max_blocks_per_seq = 2; });
  expect_rejected("negative num_seqs", [](auto& p, V&, V&, V&, V&) { p.num_seqs = -1; });

  ASSERT_TRUE(cpu::AttentionScores(good, kThreads).ok());
  EXPECT_FALSE(SameBytes(scores_before, call.scores));  // the check above can see a write
}

// ---- KvCompact --------------------------------------------------------------------------------

struct CompactCase {
  int32_t block_size;
  int32_t num_kv_heads;
};

// Strictly ascending random keep sets, different per kv head: [num_seqs, kv_heads, max_keep],
// -1 past num_keep (never read).
std::vector<int32_t> RandomKeep(const std::vector<int32_t>& contexts,
                                const std::vector<int32_t>& num_keep, int32_t kv_heads,
                                int32_t max_keep, std::mt19937& rng) {
  std::vector<int32_t> keep(contexts.size() * kv_heads * max_keep, -1);
  for (size_t s = 0; s < contexts.size(); ++s) {
    std::vector<int32_t> previous;
    for (int32_t h = 0; h < kv_heads; ++h) {
      std::vector<int32_t> set;
      do {
        std::vector<int32_t> tokens(contexts[s]);
        std::iota(tokens.begin(), tokens.end(), 0);
        std::shuffle(tokens.begin(), tokens.end(), rng);
        set.assign(tokens.begin(), tokens.begin() + num_keep[s]);
        std::sort(set.begin(), set.end());
      } while (set == previous && num_keep[s] > 0 && num_keep[s] < contexts[s]);
      std::copy(set.begin(), set.end(), keep.begin() + (s * kv_heads + h) * max_keep);
      previous = set;
    }
  }
  return keep;
}

class CpuKvCompactTest : public testing::TestWithParam<CompactCase> {};

// Sequences 0..3 are compacted (3 keeps nothing, 2 keeps everything); sequence 4 is not in the
// call. Afterwards: kept tokens are at the front bit for bit, the rest of each compacted sequence
// and every page outside the call is untouched, and decode attention over the compacted pages
// equals attention over a pool built from the kept tokens alone.
TEST_P(CpuKvCompactTest, MovesKeptTokensToTheFront) {
  const auto [block_size, kv_heads] = GetParam();
  const int32_t head_dim = 20, max_keep = 24, num_compacted = 4;
  std::mt19937 rng(block_size * 10 + kv_heads);
  const std::vector<int32_t> contexts = {37, 50, 16, 9, 23};
  const std::vector<int32_t> num_keep = {20, 13, 16, 0};
  PagedBatch batch = MakeBatch(contexts, block_size, kv_heads, head_dim, 2, rng);
  const std::vector<int32_t> keep = RandomKeep({contexts.begin(), contexts.begin() + num_compacted},
                                               num_keep, kv_heads, max_keep, rng);
  const std::vector<float> before = batch.pool;
  const KvCompactParams p{batch.view(),  batch.block_tables.data(), keep.data(), num_keep.data(),
                          num_compacted, batch.max_blocks,          max_keep};
  ASSERT_TRUE(cpu::KvCompact(p, kThreads).ok());

  const int64_t row_bytes = head_dim * sizeof(float);
  for (int32_t s = 0; s < num_compacted; ++s) {
    for (int32_t h = 0; h < kv_heads; ++h) {
      const int32_t* kept = keep.data() + (s * kv_heads + h) * max_keep;
      for (int32_t i = 0; i < contexts[s]; ++i) {
        const int64_t src = i < num_keep[s] ? kept[i] : i;  // the rest stays where it was
        const int64_t at = batch.KOffset(s, i, h);
        const int64_t orig = src * batch.token_floats() + h * head_dim;
        ASSERT_EQ(std::memcmp(&batch.pool[at], &batch.keys[s][orig], row_bytes), 0)
            << "K seq " << s << " head " << h << " token " << i;
        ASSERT_EQ(
            std::memcmp(&batch.pool[at + batch.half_page()], &batch.values[s][orig], row_bytes), 0)
            << "V seq " << s << " head " << h << " token " << i;
      }
    }
  }
  // Sequence 2 kept everything, 3 nothing: their pages are as they were, and so are the pages of
  // sequence 4 and the spare pages.
  std::set<int32_t> moved = batch.PagesOf(0);
  for (int32_t page : batch.PagesOf(1)) moved.insert(page);
  const int64_t page_floats = 2 * batch.half_page();
  for (int32_t page = 0; page < batch.num_pages; ++page) {
    if (moved.count(page)) continue;
    EXPECT_EQ(std::memcmp(&batch.pool[page * page_floats], &before[page * page_floats],
                          page_floats * sizeof(float)),
              0)
        << "page " << page;
  }

  // Decode attention over the compacted sequences (0..2) with context num_keep ...
  const int32_t num_q_heads = 2 * kv_heads, attended = 3;
  const std::vector<float> q = Random(attended * num_q_heads * head_dim, rng);
  const std::vector<int32_t> query_start = {0, 1, 2, 3};
  const std::vector<int32_t> kept_lens(num_keep.begin(), num_keep.begin() + attended);
  const float scale = 1.0f / std::sqrt(float(head_dim));
  std::vector<float> out(q.size()), expected(q.size());
  ASSERT_TRUE(cpu::PagedAttention(
                  {q.data(), out.data(), batch.view(), query_start.data(), kept_lens.data(),
                   batch.block_tables.data(), attended, batch.max_blocks, num_q_heads, scale},
                  kThreads)
                  .ok());
  // ... equals attention over a fresh pool holding only the kept tokens.
  std::vector<std::vector<float>> kept_k(attended), kept_v(attended);
  for (int32_t s = 0; s < attended; ++s) {
    kept_k[s].resize(num_keep[s] * batch.token_floats());
    kept_v[s].resize(kept_k[s].size());
    for (int32_t h = 0; h < kv_heads; ++h) {
      for (int32_t i = 0; i < num_keep[s]; ++i) {
        const int64_t src = keep[(s * kv_heads + h) * max_keep + i] * batch.token_floats();
        const int64_t dst = i * batch.token_floats();
        std::copy_n(&batch.keys[s][src + h * head_dim], head_dim, &kept_k[s][dst + h * head_dim]);
        std::copy_n(&batch.values[s][src + h * head_dim], head_dim, &kept_v[s][dst + h * head_dim]);
      }
    }
  }
  PagedBatch fresh = MakeBatch(kept_lens, block_size, kv_heads, head_dim, 0, rng, kept_k, kept_v);
  ASSERT_TRUE(cpu::PagedAttention(
                  {q.data(), expected.data(), fresh.view(), query_start.data(), kept_lens.data(),
                   fresh.block_tables.data(), attended, fresh.max_blocks, num_q_heads, scale},
                  kThreads)
                  .ok());
  for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], expected[i]) << "output " << i;
}

INSTANTIATE_TEST_SUITE_P(Layouts, CpuKvCompactTest,
                         testing::Values(CompactCase{4, 2}, CompactCase{16, 2}, CompactCase{4, 3},
                                         CompactCase{16, 3}),
                         [](const testing::TestParamInfo<CompactCase>& info) {
                           return StrCat("bs", info.param.block_size, "_kv",
                                         info.param.num_kv_heads);
                         });

TEST(CpuKvCompact, KeepingEveryTokenChangesNothing) {
  std::mt19937 rng(5);
  const std::vector<int32_t> contexts = {13, 8, 30};
  PagedBatch batch = MakeBatch(contexts, 4, 2, 16, 1, rng);
  const int32_t max_keep = 30;
  std::vector<int32_t> keep(contexts.size() * 2 * max_keep, -1);
  for (size_t s = 0; s < contexts.size(); ++s) {
    for (int32_t h = 0; h < 2; ++h) {
      std::iota(keep.begin() + (s * 2 + h) * max_keep,
                keep.begin() + (s * 2 + h) * max_keep + contexts[s], 0);
    }
  }
  const std::vector<float> before = batch.pool;
  ASSERT_TRUE(cpu::KvCompact({batch.view(), batch.block_tables.data(), keep.data(), contexts.data(),
                              3, batch.max_blocks, max_keep},
                             kThreads)
                  .ok());
  EXPECT_TRUE(SameBytes(before, batch.pool));
}

TEST(CpuKvCompact, RejectsBadParamsBeforeMovingAnything) {
  // Sequence 0's keep sets move tokens; every bad case sits in sequence 1, so a kernel that
  // moved sequence 0 before validating sequence 1 would change the pool.
  std::mt19937 rng(3);
  const int32_t block_size = 4, kv_heads = 2, max_keep = 16;
  PagedBatch batch = MakeBatch({12, 12}, block_size, kv_heads, 8, 1, rng);
  ASSERT_EQ(batch.max_blocks, 3);  // room for 12 tokens per sequence
  const std::vector<int32_t> good_num_keep = {5, 4};
  std::vector<int32_t> good_keep(2 * kv_heads * max_keep, -1);
  const std::vector<std::vector<int32_t>> sets = {
      {1, 3, 4, 8, 11}, {0, 2, 6, 7, 9}, {2, 5, 6, 10}, {0, 1, 2, 11}};
  for (size_t i = 0; i < sets.size(); ++i) {
    std::copy(sets[i].begin(), sets[i].end(), good_keep.begin() + i * max_keep);
  }
  const std::vector<float> before = batch.pool;
  auto expect_rejected = [&](const char* what, auto mutate) {
    std::vector<int32_t> keep = good_keep, num_keep = good_num_keep, tables = batch.block_tables;
    KvCompactParams p{batch.view(),     tables.data(), keep.data(), num_keep.data(), 2,
                      batch.max_blocks, max_keep};
    mutate(p, keep, num_keep, tables);
    EXPECT_EQ(cpu::KvCompact(p, kThreads).code(), absl::StatusCode::kInvalidArgument) << what;
    EXPECT_TRUE(SameBytes(before, batch.pool)) << what << ": pool written";
  };
  using V = std::vector<int32_t>;
  const int32_t seq1_head1 = (1 * kv_heads + 1) * max_keep;
  expect_rejected("null keep", [](auto& p, V&, V&, V&) { p.keep = nullptr; });
  expect_rejected("null num_keep", [](auto& p, V&, V&, V&) { p.num_keep = nullptr; });
  expect_rejected("null block tables", [](auto& p, V&, V&, V&) { p.block_tables = nullptr; });
  expect_rejected("null pool", [](auto& p, V&, V&, V&) { p.kv.pool = nullptr; });
  expect_rejected("page out of range",
                  [&](auto&, V&, V&, V& t) { t[1 * batch.max_blocks + 2] = batch.num_pages; });
  expect_rejected("not ascending",
                  [&](auto&, V& k, V&, V&) { std::swap(k[seq1_head1 + 1], k[seq1_head1 + 2]); });
  expect_rejected("repeated index", [&](auto&, V& k, V&, V&) { k[seq1_head1 + 1] = 0; });
  expect_rejected("negative index", [&](auto&, V& k, V&, V&) { k[seq1_head1] = -1; });
  expect_rejected("index past the blocks", [&](auto&, V& k, V&, V&) { k[seq1_head1 + 3] = 12; });
  expect_rejected("num_keep > max_keep", [&](auto& p, V& k, V& n, V&) {
    // Rows of 5: sequence 0 keeps 5, sequence 1 asks for 6. Read past their rows, sequence 1's
    // sets would still look valid ({0..5} and {5..9, 10}), so only the max_keep check stops it.
    p.max_keep = 5;
    k = {1, 3, 4, 8, 11, 0, 2, 6, 7, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    p.keep = k.data();
    n[1] = 6;
  });
  // 13 <= max_keep, but the 3-block table has room for 12 tokens.
  expect_rejected("num_keep > blocks * block_size", [](auto&, V&, V& n, V&) { n[1] = 13; });
  expect_rejected("negative num_keep", [](auto&, V&, V& n, V&) { n[1] = -1; });
  expect_rejected("written page shared", [&](auto&, V&, V&, V& t) {
    t[1 * batch.max_blocks + 2] = t[0];  // sequence 1 reads the page sequence 0 compacts into
  });
  expect_rejected("negative max_keep", [](auto& p, V&, V&, V&) { p.max_keep = -1; });

  ASSERT_TRUE(cpu::KvCompact({batch.view(), batch.block_tables.data(), good_keep.data(),
                              good_num_keep.data(), 2, batch.max_blocks, max_keep},
                             kThreads)
                  .ok());
  EXPECT_FALSE(SameBytes(before, batch.pool));  // the check above can see a move
}

}  // namespace
}  // namespace strata::kernels
