// bench_kernels: CPU kernel throughput next to what the machine can do. Prints tables; not a test.
//
//   bench_kernels [--threads N]
//
// 1. memcpy bandwidth, 256 MiB buffers, best of 5, on 1 thread and on N threads. memcpy moves
//    every byte twice, so its bandwidth is reported as (bytes read + bytes written) / s.
// 2. BF16 GEMV (m = 1) for 4096x4096 and 896x4864 weights, hand-written kernel vs oneDNN 2.6.
//    Enough copies of the matrix are cycled to exceed 256 MiB, so weights stream from DRAM as in
//    a real decode step rather than from L3. Bandwidth = weight bytes read / s, and its fraction
//    of the best memcpy bandwidth.
// 3. Paged attention decode (8 sequences x context, 14 q heads, 2 kv heads, head_dim 64, pages
//    in shuffled order): time and KV bytes read / s.
// 4. GEMM at m=n=k=1024 and 2048 in GFLOP/s: CpuGemm for BF16 and F32 weights, OpenBLAS sgemm,
//    and oneDNN's own peak (bf16 activations given, weights in oneDNN's packed layout).
// 5. The host's share of a penalised row's step: its penalty entries (strata::engine::PenaltyCounts),
//    counted afresh each step (a sort over prompt + output) vs kept up to date, over 512 decode
//    steps after prompts of 512, 2048 and 8192 random ids (vocab 32000).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "engine/penalty_counts.h"
#include "kernels/cpu/cpu_gemm.h"
#include "kernels/device.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace strata::kernels {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

// Best wall time in seconds of `reps` calls after one warm-up call.
double BestSeconds(int reps, const std::function<void()>& fn) {
  fn();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    best = std::min(best, took.count());
  }
  return best;
}

std::vector<uint16_t> RandomBf16(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<uint16_t> out(n);
  for (auto& x : out) x = F32ToBf16(dist(rng));
  return out;
}

std::vector<float> RandomF32(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> out(n);
  for (auto& x : out) x = dist(rng);
  return out;
}

// Returns the best memcpy bandwidth (read + write bytes / s) over 1 and `threads` threads.
double BenchMemcpy(int threads) {
  const size_t bytes = 256 * kMiB;
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  std::printf("%-34s %10s %10s\n", "memcpy 256 MiB (read+write)", "threads", "GB/s");
  double best_gbs = 0;
  for (int t : {1, threads}) {
    const double s = BestSeconds(5, [&] {
#pragma omp parallel for num_threads(t) schedule(static)
      for (int part = 0; part < t; ++part) {
        const size_t begin = bytes / t * part;
        const size_t end = part == t - 1 ? bytes : bytes / t * (part + 1);
        std::memcpy(dst.data() + begin, src.data() + begin, end - begin);
      }
    });
    const double gbs = 2.0 * bytes / s / 1e9;
    best_gbs = std::max(best_gbs, gbs);
    std::printf("%-34s %10d %10.1f\n", "", t, gbs);
    if (threads == 1) break;
  }
  return best_gbs;
}

void BenchGemv(int threads, double memcpy_gbs) {
  std::printf("\n%-34s %10s %10s %10s %10s\n", "bf16 GEMV m=1 (weights from DRAM)", "n x k",
              "us/call", "GB/s read", "of memcpy");
  struct Shape { int64_t n, k; };
  for (const Shape shape : {Shape{4096, 4096}, Shape{896, 4864}}) {
    const size_t matrix_elems = static_cast<size_t>(shape.n * shape.k);
    const size_t copies = std::max<size_t>(2, 256 * kMiB / (matrix_elems * 2) + 1);
    const std::vector<uint16_t> w = RandomBf16(matrix_elems * copies, 7);
    const std::vector<float> a = RandomF32(static_cast<size_t>(shape.k), 8);
    std::vector<float> c(static_cast<size_t>(shape.n));
    for (const auto& [label, max_gemv_m] :
         {std::pair<const char*, int64_t>{"  AVX-512 BF16 GEMV", 4}, {"  oneDNN matmul", 0}}) {
      cpu::CpuGemm gemm({.threads = threads, .max_gemv_m = max_gemv_m});
      const double s = BestSeconds(3, [&] {
        for (size_t i = 0; i < copies; ++i) {
          GemmParams p{.a = a.data(),
                       .b = {w.data() + i * matrix_elems, DType::kBF16, shape.n, shape.k},
                       .c = c.data(),
                       .m = 1};
          CHECK_OK(gemm.Run(p));
        }
      });
      const double per_call = s / copies;
      const double gbs = matrix_elems * 2.0 / per_call / 1e9;
      const std::string dims = std::to_string(shape.n) + "x" + std::to_string(shape.k);
      std::printf("%-34s %10s %10.1f %10.1f %9.0f%%\n", label, dims.c_str(), per_call * 1e6, gbs,
                  100.0 * gbs / memcpy_gbs);
    }
  }
}

// oneDNN's best case: bf16 activations, weights reordered into the layout the primitive wants.
double OneDnnPeakBf16Seconds(int64_t m, int64_t n, int64_t k) {
  using dnnl::memory;
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const memory::desc a_md({m, k}, memory::data_type::bf16, memory::format_tag::ab);
  const memory::desc b_any({k, n}, memory::data_type::bf16, memory::format_tag::any);
  const memory::desc c_md({m, n}, memory::data_type::f32, memory::format_tag::ab);
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_any, c_md), engine);
  const dnnl::matmul matmul(pd);
  std::vector<uint16_t> a = RandomBf16(static_cast<size_t>(m * k), 1);
  memory a_mem(a_md, engine, a.data());
  memory b_mem(pd.weights_desc(), engine);
  std::memset(b_mem.get_data_handle(), 0, pd.weights_desc().get_size());
  memory c_mem(c_md, engine);
  return BestSeconds(3, [&] {
    matmul.execute(stream, {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}});
    stream.wait();
  });
}

void BenchGemm(int threads) {
  std::printf("\n%-34s %10s %10s\n", "GEMM m=n=k", "size", "GFLOP/s");
  for (const int64_t size : {int64_t{1024}, int64_t{2048}}) {
    const size_t elems = static_cast<size_t>(size * size);
    const std::vector<float> a = RandomF32(elems, 1);
    const std::vector<float> w32 = RandomF32(elems, 2);
    const std::vector<uint16_t> w16 = RandomBf16(elems, 3);
    std::vector<float> c(elems);
    const double flops = 2.0 * size * size * size;
    cpu::CpuGemm gemm({.threads = threads});
    auto report = [&](const char* label, double s) {
      std::printf("%-34s %10lld %10.1f\n", label, static_cast<long long>(size), flops / s / 1e9);
    };
    report("  CpuGemm bf16 (f32 act, ba)", BestSeconds(3, [&] {
      CHECK_OK(gemm.Run({.a = a.data(), .b = {w16.data(), DType::kBF16, size, size},
                         .c = c.data(), .m = size}));
    }));
    report("  oneDNN peak bf16 (packed)", OneDnnPeakBf16Seconds(size, size, size));
    report("  CpuGemm f32 (oneDNN)", BestSeconds(3, [&] {
      CHECK_OK(gemm.Run({.a = a.data(), .b = {w32.data(), DType::kF32, size, size},
                         .c = c.data(), .m = size}));
    }));
    openblas_set_num_threads(threads);
    report("  OpenBLAS sgemm", BestSeconds(3, [&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, size, size, size, 1.0f, a.data(),
                  size, w32.data(), size, 0.0f, c.data(), size);
    }));
  }
}

// Decode attention: num_seqs sequences, one query token each, over `context` cached tokens.
void BenchAttention(int threads) {
  std::printf("\n%-34s %10s %10s %10s\n", "paged attention decode (f32 KV)", "seqs x ctx",
              "us/call", "GB/s KV");
  const int32_t q_heads = 14, kv_heads = 2, head_dim = 64, block_size = 16;
  auto device = MakeCpuDevice({.threads = threads});
  CHECK_OK(device.status());
  for (const int32_t context : {512, 4096}) {
    const int32_t num_seqs = 8;
    const int32_t blocks_per_seq = context / block_size;
    const int32_t num_pages = num_seqs * blocks_per_seq;
    const std::vector<float> pool =
        RandomF32(static_cast<size_t>(num_pages) * 2 * block_size * kv_heads * head_dim, 4);
    std::vector<int32_t> block_tables(num_pages), query_start(num_seqs + 1),
        context_lens(num_seqs, context);
    for (int32_t i = 0; i < num_pages; ++i) block_tables[i] = (i * 7919) % num_pages;
    for (int32_t s = 0; s <= num_seqs; ++s) query_start[s] = s;
    const std::vector<float> q = RandomF32(static_cast<size_t>(num_seqs) * q_heads * head_dim, 5);
    std::vector<float> out(q.size());
    const PagedAttentionParams p{
        q.data(), out.data(),
        {const_cast<float*>(pool.data()), num_pages, block_size, kv_heads, head_dim},
        query_start.data(), context_lens.data(), block_tables.data(), num_seqs, blocks_per_seq,
        q_heads, 0.125f};
    const double s = BestSeconds(5, [&] { CHECK_OK((*device)->PagedAttention(p)); });
    const std::string dims = std::to_string(num_seqs) + "x" + std::to_string(context);
    std::printf("%-34s %10s %10.1f %10.1f\n", "", dims.c_str(), s * 1e6,
                pool.size() * sizeof(float) / s / 1e9);
  }
}

}  // namespace
}  // namespace strata::kernels

namespace {

// Microseconds per step of one row's penalty entries, recounted or incremental.
void BenchPenaltyEntries() {
  std::printf("\n%-34s %10s %10s %10s %10s\n", "penalty entries per row per step", "prompt",
              "recount us", "kept us", "ratio");
  constexpr int kSteps = 512;
  constexpr int64_t kVocab = 32000;
  for (const int prompt_len : {512, 2048, 8192}) {
    std::mt19937 rng(1);
    std::uniform_int_distribution<int32_t> id(0, kVocab - 1);
    std::vector<int32_t> prompt(prompt_len), output;
    for (int32_t& t : prompt) t = id(rng);
    strata::engine::PenaltyCounts kept(/*with_prompt=*/true);
    std::vector<strata::kernels::PenaltyEntry> entries;
    std::chrono::duration<double, std::micro> recount_us{0}, kept_us{0};
    for (int step = 0; step < kSteps; ++step) {
      output.push_back(id(rng));
      const auto start = std::chrono::steady_clock::now();
      strata::engine::PenaltyCounts fresh(/*with_prompt=*/true);
      fresh.Update(prompt, output, kVocab);
      fresh.AppendTo(0, &entries);
      const auto middle = std::chrono::steady_clock::now();
      entries.clear();
      kept.Update(prompt, output, kVocab);
      kept.AppendTo(0, &entries);
      kept_us += std::chrono::steady_clock::now() - middle;
      recount_us += middle - start;
      entries.clear();
    }
    std::printf("%-34s %10d %10.1f %10.2f %9.1fx\n", "", prompt_len, recount_us.count() / kSteps,
                kept_us.count() / kSteps, recount_us / kept_us);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int threads = omp_get_num_procs();
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--threads") threads = std::max(1, std::atoi(argv[i + 1]));
  }
  std::printf("bench_kernels: %d threads\n\n", threads);
  const double memcpy_gbs = strata::kernels::BenchMemcpy(threads);
  strata::kernels::BenchGemv(threads, memcpy_gbs);
  strata::kernels::BenchAttention(threads);
  BenchPenaltyEntries();
  // Last: OpenBLAS's own pthreads keep spinning after sgemm and would slow what runs after it.
  strata::kernels::BenchGemm(threads);
  return 0;
}
