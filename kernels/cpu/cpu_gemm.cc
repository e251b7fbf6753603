// oneDNN-backed GEMM for the CPU device; see cpu_gemm.h for the contract.
#include "kernels/cpu/cpu_gemm.h"

#include <omp.h>

#include <map>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "kernels/cpu/cpu_simd.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace strata::kernels::cpu {
namespace {

using dnnl::memory;

// Serving steps see many distinct m (varlen batches); each primitive holds little memory but the
// map must not grow without bound. Dropping the whole cache at the limit costs a few
// re-creations (~1 ms each) and keeps the code trivial.
constexpr size_t kMaxCachedPrimitives = 512;

// (m, n, k, weight dtype, has bias, accumulate).
using PrimitiveKey = std::tuple<int64_t, int64_t, int64_t, DType, bool, bool>;

struct CachedMatmul {
  dnnl::matmul primitive;
  memory::desc a_md, b_md, bias_md, c_md;
};

}  // namespace

struct CpuGemm::State {
  CpuGemmOptions options;
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::map<PrimitiveKey, CachedMatmul> cache;
  std::vector<uint16_t> a_bf16;  // [m, k] activations converted for BF16 weights

  absl::StatusOr<const CachedMatmul*> GetMatmul(const PrimitiveKey& key);
  absl::Status RunOneDnn(const GemmParams& p, const void* a);
};

absl::StatusOr<const CachedMatmul*> CpuGemm::State::GetMatmul(const PrimitiveKey& key) {
  auto it = cache.find(key);
  if (it != cache.end()) return &it->second;
  if (cache.size() >= kMaxCachedPrimitives) cache.clear();
  const auto [m, n, k, dtype, has_bias, accumulate] = key;
  const memory::data_type in_type =
      dtype == DType::kBF16 ? memory::data_type::bf16 : memory::data_type::f32;
  CachedMatmul entry;
  entry.a_md = memory::desc({m, k}, in_type, memory::format_tag::ab);
  entry.b_md = memory::desc({k, n}, in_type, memory::format_tag::ba);  // the [n, k] buffer as-is
  entry.c_md = memory::desc({m, n}, memory::data_type::f32, memory::format_tag::ab);
  if (has_bias) entry.bias_md = memory::desc({1, n}, memory::data_type::f32, memory::format_tag::ab);
  dnnl::primitive_attr attr;
  if (accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);  // c = 1 * c_old + a * b^T (+ bias)
    attr.set_post_ops(ops);
  }
  try {
    const dnnl::matmul::desc desc =
        has_bias ? dnnl::matmul::desc(entry.a_md, entry.b_md, entry.bias_md, entry.c_md)
                 : dnnl::matmul::desc(entry.a_md, entry.b_md, entry.c_md);
    entry.primitive = dnnl::matmul(dnnl::matmul::primitive_desc(desc, attr, engine));
  } catch (const dnnl::error& e) {
    return absl::InternalError(StrCat("oneDNN matmul creation failed for m=", m, " n=", n,
                                      " k=", k, " ", DTypeName(dtype), ": ", e.what()));
  }
  return &cache.emplace(key, std::move(entry)).first->second;
}

absl::Status CpuGemm::State::RunOneDnn(const GemmParams& p, const void* a) {
  const PrimitiveKey key{p.m, p.b.rows, p.b.cols, p.b.dtype, p.bias != nullptr, p.accumulate};
  ASSIGN_OR_RETURN(const CachedMatmul* mm, GetMatmul(key));
  try {
    // oneDNN's memory objects only wrap the caller's pointers; it never writes a, b or bias.
    memory a_mem(mm->a_md, engine, const_cast<void*>(a));
    memory b_mem(mm->b_md, engine, const_cast<void*>(p.b.data));
    memory c_mem(mm->c_md, engine, p.c);
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}};
    if (p.bias != nullptr) {
      args.emplace(DNNL_ARG_BIAS, memory(mm->bias_md, engine, const_cast<float*>(p.bias)));
    }
    mm->primitive.execute(stream, args);
    stream.wait();
  } catch (const dnnl::error& e) {
    return absl::InternalError(StrCat("oneDNN matmul failed for m=", p.m, " n=", p.b.rows,
                                      " k=", p.b.cols, ": ", e.what()));
  }
  return absl::OkStatus();
}

CpuGemm::CpuGemm(const CpuGemmOptions& options) : state_(std::make_unique<State>()) {
  state_->options = options;
}

CpuGemm::~CpuGemm() = default;

size_t CpuGemm::num_cached_primitives() const { return state_->cache.size(); }

absl::Status CpuGemm::Run(const GemmParams& p) {
  if (p.a == nullptr || p.b.data == nullptr || p.c == nullptr) {
    return absl::InvalidArgumentError("Gemm: null a, b or c");
  }
  if (p.m <= 0 || p.b.rows <= 0 || p.b.cols <= 0) {
    return absl::InvalidArgumentError(StrCat("Gemm: bad shape m=", p.m, " n=", p.b.rows,
                                             " k=", p.b.cols));
  }
  if (p.b.dtype == DType::kF16) {
    return absl::InvalidArgumentError(
        "Gemm: F16 weights are not supported on the CPU device (the loader converts them)");
  }
  // oneDNN on the OpenMP runtime sizes its parallel regions from the calling thread's ICV.
  omp_set_num_threads(state_->options.threads);
  if (p.b.dtype == DType::kF32) return state_->RunOneDnn(p, p.a);

  const int64_t k = p.b.cols;
  state_->a_bf16.resize(static_cast<size_t>(p.m * k));
  ConvertF32ToBf16(p.a, state_->a_bf16.data(), p.m * k);
  if (HaveBf16Gemv() && p.m <= state_->options.max_gemv_m && p.m <= 4) {
    GemvBf16(state_->a_bf16.data(), p.m, static_cast<const uint16_t*>(p.b.data), p.b.rows, k,
             p.bias, p.c, p.accumulate, state_->options.threads);
    return absl::OkStatus();
  }
  return state_->RunOneDnn(p, state_->a_bf16.data());
}

}  // namespace strata::kernels::cpu
