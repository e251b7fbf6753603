// CpuDevice's WriteKv and PagedAttention against a double-precision causal GQA reference over
// plain [position, kv_head, head_dim] arrays. The pool's pages are handed out in shuffled order
// and every slot the kernels must not read holds NaN, so any read past a sequence's context or
// through a wrong page shows up as NaN in the output.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/device.h"

namespace strata::kernels {
namespace {

std::vector<float> Random(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> out(n);
  for (auto& x : out) x = dist(rng);
  return out;
}

std::unique_ptr<Device> MakeDevice() {
  auto device = MakeCpuDevice({.threads = 2});
  EXPECT_TRUE(device.ok()) << device.status();
  return std::move(device).value();
}

struct SeqSpec {
  int32_t context_len;
  int32_t num_query_tokens;  // the last tokens of the context
};

struct AttentionCase {
  int32_t gqa_ratio;
  int32_t block_size;
  int32_t head_dim;
};

// Runs one PagedAttention call over `seqs` and checks every output against the reference.
void CheckAttention(const std::vector<SeqSpec>& seqs, const AttentionCase& c) {
  const auto [ratio, block_size, head_dim] = c;
  const int32_t num_kv_heads = 2, num_q_heads = num_kv_heads * ratio;
  const int32_t num_seqs = static_cast<int32_t>(seqs.size());
  std::mt19937 rng(ratio * 100 + block_size * 10 + head_dim + seqs.size());

  int32_t max_blocks = 0, total_blocks = 0;
  for (const SeqSpec& s : seqs) {
    const int32_t blocks = (s.context_len + block_size - 1) / block_size;
    max_blocks = std::max(max_blocks, blocks);
    total_blocks += blocks;
  }
  const int32_t num_pages = total_blocks + 3;  // spare pages stay NaN
  std::vector<int32_t> pages(num_pages);
  std::iota(pages.begin(), pages.end(), 0);
  std::shuffle(pages.begin(), pages.end(), rng);

  const int64_t token_floats = int64_t{num_kv_heads} * head_dim;
  std::vector<float> pool(int64_t{num_pages} * 2 * block_size * token_floats,
                          std::numeric_limits<float>::quiet_NaN());
  const KvPoolView kv{pool.data(), num_pages, block_size, num_kv_heads, head_dim};
  std::vector<int32_t> block_tables(int64_t{num_seqs} * max_blocks, -1);
  std::vector<int32_t> query_start = {0}, context_lens;
  std::vector<std::vector<float>> keys, values;  // per sequence: [context, kv_heads, head_dim]
  auto device = MakeDevice();
  int32_t next_page = 0;
  for (int32_t s = 0; s < num_seqs; ++s) {
    const SeqSpec& spec = seqs[s];
    const int32_t blocks = (spec.context_len + block_size - 1) / block_size;
    for (int32_t b = 0; b < blocks; ++b) block_tables[s * max_blocks + b] = pages[next_page++];
    keys.push_back(Random(spec.context_len * token_floats, rng));
    values.push_back(Random(spec.context_len * token_floats, rng));
    std::vector<int64_t> slots(spec.context_len);
    for (int32_t pos = 0; pos < spec.context_len; ++pos) {
      slots[pos] = int64_t{block_tables[s * max_blocks + pos / block_size]} * block_size +
                   pos % block_size;
    }
    ASSERT_TRUE(device->WriteKv({keys[s].data(), values[s].data(), slots.data(),
                                 spec.context_len, kv}).ok());
    query_start.push_back(query_start.back() + spec.num_query_tokens);
    context_lens.push_back(spec.context_len);
  }
  const int32_t num_tokens = query_start.back();
  const std::vector<float> q = Random(int64_t{num_tokens} * num_q_heads * head_dim, rng);
  std::vector<float> out(q.size(), -7.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  ASSERT_TRUE(device->PagedAttention({q.data(), out.data(), kv, query_start.data(),
                                      context_lens.data(), block_tables.data(), num_seqs,
                                      max_blocks, num_q_heads, scale}).ok());

  for (int32_t s = 0; s < num_seqs; ++s) {
    for (int32_t i = 0; i < seqs[s].num_query_tokens; ++i) {
      const int32_t t = query_start[s] + i;
      const int32_t position = seqs[s].context_len - seqs[s].num_query_tokens + i;
      for (int32_t h = 0; h < num_q_heads; ++h) {
        const float* qv = q.data() + (int64_t{t} * num_q_heads + h) * head_dim;
        const int32_t kvh = h / ratio;
        std::vector<double> scores(position + 1);
        double max_score = -1e300;
        for (int32_t j = 0; j <= position; ++j) {
          const float* kj = keys[s].data() + j * token_floats + kvh * head_dim;
          double dot = 0;
          for (int32_t d = 0; d < head_dim; ++d) dot += double(qv[d]) * kj[d];
          scores[j] = dot * scale;
          max_score = std::max(max_score, scores[j]);
        }
        double denom = 0;
        for (double& x : scores) denom += (x = std::exp(x - max_score));
        for (int32_t d = 0; d < head_dim; ++d) {
          double expected = 0, magnitude = 0;
          for (int32_t j = 0; j <= position; ++j) {
            const double v = values[s][j * token_floats + kvh * head_dim + d];
            expected += scores[j] / denom * v;
            magnitude += scores[j] / denom * std::abs(v);
          }
          const float actual = out[(int64_t{t} * num_q_heads + h) * head_dim + d];
          ASSERT_NEAR(actual, expected, 1e-5 * magnitude + 1e-7)
              << "seq " << s << " token " << i << " head " << h << " dim " << d;
        }
      }
    }
  }
}

class CpuPagedAttentionTest : public testing::TestWithParam<AttentionCase> {};

// Full prefill, mid-sequence chunks, decodes, a context ending exactly on a page boundary.
TEST_P(CpuPagedAttentionTest, MatchesCausalGqaReferenceOnMixedBatch) {
  CheckAttention({{1, 1}, {37, 37}, {50, 7}, {23, 1}, {16, 1}, {80, 3}}, GetParam());
}

// Few query tokens: the kernel splits GQA groups across work items to keep threads busy.
TEST_P(CpuPagedAttentionTest, MatchesCausalGqaReferenceOnSmallBatches) {
  CheckAttention({{50, 1}}, GetParam());
  CheckAttention({{40, 2}}, GetParam());
}

std::vector<AttentionCase> AllAttentionCases() {
  std::vector<AttentionCase> cases;
  for (int32_t ratio : {1, 2, 4}) {
    for (int32_t block_size : {16, 5}) {
      for (int32_t head_dim : {64, 20}) cases.push_back({ratio, block_size, head_dim});
    }
  }
  // Every head dim with a register-resident fast path (20 and above take the generic one).
  for (int32_t head_dim : {32, 96, 128}) cases.push_back({2, 16, head_dim});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, CpuPagedAttentionTest, testing::ValuesIn(AllAttentionCases()),
    [](const testing::TestParamInfo<AttentionCase>& info) {
      return StrCat("gqa", info.param.gqa_ratio, "_bs", info.param.block_size, "_d",
                    info.param.head_dim);
    });

TEST(CpuWriteKv, StoresKAndVAtTheirSlots) {
  const int32_t num_pages = 3, block_size = 5, kv_heads = 2, head_dim = 3;
  const int64_t token_floats = kv_heads * head_dim;
  std::vector<float> pool(num_pages * 2 * block_size * token_floats, 0.0f);
  const KvPoolView kv{pool.data(), num_pages, block_size, kv_heads, head_dim};
  const std::vector<int64_t> slots = {7, 0, 14};
  std::vector<float> k(slots.size() * token_floats), v(k.size());
  for (size_t i = 0; i < k.size(); ++i) k[i] = 1.0f + i, v[i] = -1.0f - i;
  auto device = MakeDevice();
  ASSERT_TRUE(device->WriteKv({k.data(), v.data(), slots.data(), 3, kv}).ok());
  // pool: [page, K/V, block_size, kv_heads, head_dim]; slot 7 = page 1 offset 2, 14 = page 2 / 4.
  const int64_t page_floats = 2 * block_size * token_floats;
  const int64_t bases[] = {1 * page_floats + 2 * token_floats, 0, 2 * page_floats + 4 * token_floats};
  for (int t = 0; t < 3; ++t) {
    for (int64_t i = 0; i < token_floats; ++i) {
      EXPECT_EQ(pool[bases[t] + i], k[t * token_floats + i]);
      EXPECT_EQ(pool[bases[t] + block_size * token_floats + i], v[t * token_floats + i]);
    }
  }
  size_t written = 0;
  for (float x : pool) written += x != 0.0f;
  EXPECT_EQ(written, 2 * k.size());

  const int64_t bad_slot = num_pages * block_size;
  EXPECT_EQ(device->WriteKv({k.data(), v.data(), &bad_slot, 1, kv}).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CpuPagedAttention, RejectsBadMetadata) {
  const int32_t block_size = 4, head_dim = 8;
  std::vector<float> pool(2 * 2 * block_size * head_dim), q(head_dim), out(head_dim);
  const KvPoolView kv{pool.data(), 2, block_size, 1, head_dim};
  const std::vector<int32_t> query_start = {0, 1};
  std::vector<int32_t> context_lens = {5}, block_tables = {0, 2};  // page 2 does not exist
  auto device = MakeDevice();
  PagedAttentionParams p{q.data(), out.data(), kv, query_start.data(), context_lens.data(),
                         block_tables.data(), 1, 2, 1, 1.0f};
  EXPECT_EQ(device->PagedAttention(p).code(), absl::StatusCode::kInvalidArgument);
  block_tables[1] = 1;
  EXPECT_TRUE(device->PagedAttention(p).ok());
  context_lens[0] = 9;  // needs 3 blocks, the table has room for 2
  EXPECT_EQ(device->PagedAttention(p).code(), absl::StatusCode::kInvalidArgument);
  context_lens[0] = 0;  // fewer context tokens than query tokens
  EXPECT_EQ(device->PagedAttention(p).code(), absl::StatusCode::kInvalidArgument);
  context_lens[0] = 5;
  p.num_q_heads = 3;
  p.kv.num_kv_heads = 2;  // 3 q heads cannot share 2 kv heads
  EXPECT_EQ(device->PagedAttention(p).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace strata::kernels
