// CUDA kernels of the KV codecs (kernels/kv_codec.h layouts, kernels/device.h semantics; CPU
// twins in kernels/cpu/cpu_quant_attention.cc), over one pool of fixed-stride pages:
//   - QuantWriteKv: one warp per (token, kv head, K or V) row of a per-token codec;
//   - KiviWriteKv: two launches. A fold kernel encodes every completed 32-token group (thread per
//     key code byte of a kv head, thread per (token, value channel group)), then a residual
//     kernel (one block per (sequence, kv head)) rewrites the residual rows from offset 0;
//   - QuantPagedAttention: one warp per (query row, q head), walking its sequence page by page
//     with an online softmax; each lane decodes its channels of one K / V row at a time into
//     registers (the context is never expanded into a full-precision copy).
// Every element conversion and byte offset is kv_codec_math.h's, the functions the CPU runs, so
// the pages written here equal the CPU's byte for byte.
//
// Page ids, slots and the varlen metadata live in device memory and cannot be checked on the
// host: the kernels skip a token, row or sequence that the CPU twin would reject with
// InvalidArgument (a slot or page id outside the pool, inconsistent counts) instead of touching
// memory out of bounds. The host-side checks (CheckQuantWriteKv, ...) mirror the CPU twins' checks
// of everything the host can see.
#include <cmath>
#include <initializer_list>

#include "kernels/cuda/cuda_kernels.cuh"
#include "kernels/cuda/cuda_warp.cuh"
#include "kernels/kernel_args.h"
#include "kernels/kv_codec_math.h"

namespace strata::kernels::cuda {
namespace {

using codec::KvSide;

constexpr int kThreads = 256;
constexpr int kMaxPerLane = 8;  // attention: lane l holds channels l, l + 32, ...; head_dim <= 256
constexpr unsigned kFoldSplit = 8;  // fold blocks per (sequence, kv head), striding over groups

// ---- Host-side checks ---------------------------------------------------------------------

int64_t CeilDivHost(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---- Device helpers -----------------------------------------------------------------------

// The max of the lanes' partial max-abs values (never NaN), on every lane.
__device__ float WarpAbsMax(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, v, offset);
    v = v < other ? other : v;
  }
  return v;
}

// Entries [begin, end) of a block-table row name pages [0, num_pages); the calling threads
// split the entries (thread `index` of `count`). Each caller ORs its `bad` into a block or warp
// vote.
__device__ bool AnyBadEntry(const int32_t* row, int64_t begin, int64_t end, int32_t num_pages,
                            int index, int count) {
  bool bad = false;
  for (int64_t b = begin + index; b < end; b += count) bad |= row[b] < 0 || row[b] >= num_pages;
  return bad;
}

// Sequence s of a varlen batch: its number of new rows, or -1 where the CPU's QueryRows fails.
__device__ int32_t QueryRows(const int32_t* query_start, const int32_t* context_lens,
                             int32_t s) {
  if (query_start[0] != 0) return -1;  // the CPU rejects the whole batch
  const int32_t q_len = query_start[s + 1] - query_start[s];
  return (q_len < 0 || context_lens[s] < q_len) ? -1 : q_len;
}

__device__ std::byte* PoolPage(std::byte* pool, size_t page_stride, int32_t page) {
  return pool + page_stride * static_cast<size_t>(page);
}

// ---- QuantWriteKv -------------------------------------------------------------------------

// One warp per (token, kv head, side): warp w is token w / (2 H), head (w / 2) % H, side w % 2.
// fp8 / int8 rows reduce their max-abs over the warp first; lane 0 stores the row's scale.
__global__ void QuantWriteKvKernel(QuantWriteKvParams p) {
  const KvPageFormat& f = p.format;
  const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (warp >= p.num_tokens * f.num_kv_heads * 2) return;
  const KvSide side = warp % 2 == 0 ? KvSide::kKey : KvSide::kValue;
  const int32_t head = static_cast<int32_t>((warp / 2) % f.num_kv_heads);
  const int64_t t = warp / (2 * f.num_kv_heads);
  const int64_t slot = p.slots[t];
  if (slot < 0 || slot >= static_cast<int64_t>(p.num_pages) * f.block_size) return;
  std::byte* page = PoolPage(p.pool, p.page_stride, static_cast<int32_t>(slot / f.block_size));
  const int32_t offset = static_cast<int32_t>(slot % f.block_size);
  const int32_t d = f.head_dim;
  const float* src = (side == KvSide::kKey ? p.k : p.v) + (t * f.num_kv_heads + head) * d;
  std::byte* row = page + codec::CodeRowOffset(f, side, offset, head);
  if (!codec::HasTokenScales(f.codec)) {  // fp32, bf16, fp16
    for (int32_t c = lane; c < d; c += kWarp) codec::EncodeHalfOrF32(f.codec, row, c, src[c]);
    return;
  }
  const bool fp8 = f.codec == KvCodec::kFp8;
  float amax = 0.0f;
  for (int32_t c = lane; c < d; c += kWarp) amax = codec::AbsMaxStep(amax, src[c]);
  const float scale =
      codec::TokenScale(WarpAbsMax(amax), fp8 ? codec::kFp8Max : codec::kInt8Max);
  if (lane == 0) codec::StoreF32(page + codec::TokenScaleOffset(f, side, offset, head), scale);
  for (int32_t c = lane; c < d; c += kWarp) {
    row[c] = static_cast<std::byte>(codec::EncodeScaledByte(src[c] / scale, fp8));
  }
}

// ---- KiviWriteKv --------------------------------------------------------------------------

using codec::KiviStep;

// Sequence s's step, or false where the CPU's KiviStepOf (or its null k / v check) fails. Every
// calling thread gets the same answer; the `index` of `count` threads split the page-id checks,
// so the caller combines `bad_entry` with a block vote.
__device__ bool KiviStepOf(const KiviWriteKvParams& p, int32_t s, KiviStep& st, bool& bad_entry,
                           int index, int count) {
  bad_entry = false;
  const int32_t q_len = QueryRows(p.query_start, p.context_lens, s);
  if (q_len < 0 || (q_len > 0 && (p.k == nullptr || p.v == nullptr))) return false;
  if (!codec::MakeKiviStep(p, s, q_len, st)) return false;
  const int32_t bs = p.format.block_size;
  const int64_t end = static_cast<int64_t>(st.residual_entry) + st.num_residual;
  if (end > p.max_blocks_per_seq) return false;
  bad_entry = AnyBadEntry(st.table, st.quant_before / bs, end, p.num_pages, index, count);
  return true;
}

// Block-uniform: sequence s's step is valid, all its page ids included.
__device__ bool BlockKiviStep(const KiviWriteKvParams& p, int32_t s, KiviStep& st) {
  bool bad_entry = false;
  const bool ok = KiviStepOf(p, s, st, bad_entry, threadIdx.x, blockDim.x);
  return ok && !__syncthreads_or(bad_entry);  // `ok` is the same on every thread
}

// Channel c of token t's (side, head) row of the step, as f32: an old residual row
// (quant_before <= t < n_old) decoded from its residual page, or a new row read from k / v.
__device__ float StepElement(const KiviWriteKvParams& p, const KiviStep& st, KvSide side,
                             int32_t t, int32_t head, int32_t c) {
  const KvPageFormat& r = p.residual_format;
  if (t < st.n_old) {
    const int32_t i = t - st.quant_before;
    const std::byte* page =
        PoolPage(p.pool, p.page_stride, st.table[st.residual_entry + i / r.block_size]);
    return codec::DecodeElement(r, page, side, i % r.block_size, head, c);
  }
  const float* rows = side == KvSide::kKey ? p.k : p.v;
  const int64_t row = st.first_row + (t - st.n_old);
  return rows[(row * r.num_kv_heads + head) * r.head_dim + c];
}

// Key code byte `b` of every token of the group at sequence token g (page `page`, page token
// `first`): the per-channel stats of the byte's channels over the group's 32 tokens, then the 32
// code bytes. The thread owns those channels' stats and that byte of the group's 32 code rows.
__device__ void FoldKeyByte(const KiviWriteKvParams& p, const KiviStep& st, int32_t head,
                            int32_t g, std::byte* page, int32_t first, int32_t b) {
  const KvPageFormat& f = p.format;
  const int32_t bits = codec::CodeBits(f.codec), per_byte = 8 / bits;
  const uint32_t max_code = (1u << bits) - 1u;
  const int32_t slot = first / kKiviGroupTokens;
  codec::KiviStats stats[4];  // per_byte <= 4 (kivi2)
  for (int32_t j = 0; j < per_byte; ++j) {
    const int32_t c = b * per_byte + j;
    stats[j] = codec::GroupStats(kKiviGroupTokens, max_code, [&](int32_t t) {
      return StepElement(p, st, KvSide::kKey, g + t, head, c);
    });
    codec::StoreU16(page + codec::KeyMinOffset(f, slot, head) + 2 * c, stats[j].min_code);
    codec::StoreU16(page + codec::KeyScaleOffset(f, slot, head) + 2 * c, stats[j].scale_code);
  }
  for (int32_t t = 0; t < kKiviGroupTokens; ++t) {
    uint32_t byte = 0;
    for (int32_t j = 0; j < per_byte; ++j) {
      const int32_t c = b * per_byte + j;
      const float x = StepElement(p, st, KvSide::kKey, g + t, head, c);
      byte |= codec::KiviCode(x, stats[j].min, stats[j].scale, max_code)
              << codec::CodeShift(c, bits);
    }
    page[codec::CodeRowOffset(f, KvSide::kKey, first + t, head) + b] = static_cast<std::byte>(byte);
  }
}

// Value channel group `vg` of sequence token t (page token `token`): its stats, then its code
// bytes. Groups start at multiples of 32 channels, so each owns whole bytes of the code row.
__device__ void FoldValueGroup(const KiviWriteKvParams& p, const KiviStep& st, int32_t head,
                               int32_t t, std::byte* page, int32_t token, int32_t vg) {
  const KvPageFormat& f = p.format;
  const int32_t bits = codec::CodeBits(f.codec);
  const uint32_t max_code = (1u << bits) - 1u;
  const int32_t begin = vg * kKiviChannelGroup, end = min(f.head_dim, begin + kKiviChannelGroup);
  const codec::KiviStats st_g = codec::GroupStats(end - begin, max_code, [&](int32_t i) {
    return StepElement(p, st, KvSide::kValue, t, head, begin + i);
  });
  codec::StoreU16(page + codec::ValueMinOffset(f, token, head) + 2 * vg, st_g.min_code);
  codec::StoreU16(page + codec::ValueScaleOffset(f, token, head) + 2 * vg, st_g.scale_code);
  std::byte* row = page + codec::CodeRowOffset(f, KvSide::kValue, token, head);
  uint32_t byte = 0;
  for (int32_t c = begin; c < end; ++c) {
    const float x = StepElement(p, st, KvSide::kValue, t, head, c);
    byte |= codec::KiviCode(x, st_g.min, st_g.scale, max_code) << codec::CodeShift(c, bits);
    if (codec::CodeShift(c + 1, bits) == 0) {  // c was the last channel of its byte
      row[codec::CodeByte(c, bits)] = static_cast<std::byte>(byte);
      byte = 0;
    }
  }
}

// Block (blockIdx.x = s * H + head, blockIdx.y): the groups [quant_before, quant_after) of
// sequence s with index blockIdx.y, blockIdx.y + gridDim.y, ...; group g goes to table entry
// g / B at page token g % B. Threads take the group's tasks: RowBytes key bytes, then 32 * Gv
// (token, value group) pairs; tasks write disjoint bytes, so no barrier is needed.
__global__ void KiviFoldKernel(KiviWriteKvParams p) {
  const KvPageFormat& f = p.format;
  const int32_t s = blockIdx.x / f.num_kv_heads, head = blockIdx.x % f.num_kv_heads;
  KiviStep st;
  if (!BlockKiviStep(p, s, st)) return;
  const int32_t row_bytes = static_cast<int32_t>(codec::RowBytes(f));
  const int32_t gv = codec::ValueStatGroups(f);
  const int32_t num_groups = (st.quant_after - st.quant_before) / kKiviGroupTokens;
  for (int32_t gi = blockIdx.y; gi < num_groups; gi += gridDim.y) {
    const int32_t g = st.quant_before + gi * kKiviGroupTokens;
    std::byte* page = PoolPage(p.pool, p.page_stride, st.table[g / f.block_size]);
    const int32_t first = g % f.block_size;
    for (int32_t task = threadIdx.x; task < row_bytes + kKiviGroupTokens * gv;
         task += blockDim.x) {
      if (task < row_bytes) {
        FoldKeyByte(p, st, head, g, page, first, task);
      } else {
        const int32_t i = task - row_bytes, t = i / gv;
        FoldValueGroup(p, st, head, g + t, page, first + t, i % gv);
      }
    }
  }
}

// Block (s * H + head): writes tokens [first, context_len) of sequence s, head `head`, into the
// residual pages, token quant_after at offset 0 (first = n_old when nothing folds: the old
// residual stays in place). A folding step shifts old residual rows toward offset 0 in place,
// so elements go in ascending (token, channel) chunks of blockDim: every thread reads its
// element's K and V, a barrier, then every thread writes. A chunk's sources sit >= 32 tokens
// after its destinations, so no chunk overwrites a row a later chunk still reads.
__global__ void KiviResidualKernel(KiviWriteKvParams p) {
  const KvPageFormat& r = p.residual_format;
  const int32_t s = blockIdx.x / r.num_kv_heads, head = blockIdx.x % r.num_kv_heads;
  KiviStep st;
  if (!BlockKiviStep(p, s, st)) return;
  const int32_t first = st.quant_after == st.quant_before ? st.n_old : st.quant_after;
  const int64_t n = static_cast<int64_t>(st.context_len - first) * r.head_dim;
  for (int64_t base = 0; base < n; base += blockDim.x) {
    const int64_t e = base + threadIdx.x;
    const bool active = e < n;
    const int32_t t = first + static_cast<int32_t>(e / r.head_dim);
    const int32_t c = static_cast<int32_t>(e % r.head_dim);
    float k = 0.0f, v = 0.0f;
    if (active) {
      k = StepElement(p, st, KvSide::kKey, t, head, c);
      v = StepElement(p, st, KvSide::kValue, t, head, c);
    }
    __syncthreads();
    if (active) {
      const int32_t i = t - st.quant_after;
      std::byte* page =
          PoolPage(p.pool, p.page_stride, st.table[st.residual_entry + i / r.block_size]);
      const int32_t offset = i % r.block_size;
      codec::EncodeHalfOrF32(r.codec, page + codec::CodeRowOffset(r, KvSide::kKey, offset, head),
                             c, k);
      codec::EncodeHalfOrF32(r.codec,
                             page + codec::CodeRowOffset(r, KvSide::kValue, offset, head), c, v);
    }
    __syncthreads();
  }
}

// ---- QuantPagedAttention ------------------------------------------------------------------

// Sequence s's quantized pages: quant_blocks[s], or -1 where the CPU's ValidateSequenceBlocks
// fails (page ids aside). `num_entries` = the block-table entries the sequence reads.
__device__ int32_t QuantBlocksOf(const QuantAttentionParams& p, int32_t s, int64_t& num_entries) {
  const int64_t ctx = p.context_lens[s], bs = p.format.block_size;
  const int64_t num_quant = p.quant_blocks[s];
  const int64_t quant_tokens = min(num_quant * bs, ctx);
  if (num_quant < 0 || num_quant > (ctx + bs - 1) / bs ||
      (codec::IsKiviCodec(p.format.codec) && quant_tokens % kKiviGroupTokens != 0)) {
    return -1;
  }
  const int64_t rbs = p.residual_format.block_size;
  num_entries = num_quant + (ctx - quant_tokens + rbs - 1) / rbs;
  return num_entries > p.max_blocks_per_seq ? -1 : static_cast<int32_t>(num_quant);
}

// One warp per (query row, q head): warp w is row w / Hq, q head w % Hq. The row attends to KV
// positions [0, its position]; logical page b of its sequence is in `format` (block_size
// tokens) for b < quant_blocks[s], else a residual page (residual block_size tokens). Per key,
// every lane decodes its channels of the K row, the warp sums q.k, the online softmax rescales,
// and every lane adds its channels of the decoded V row.
__global__ void QuantAttentionKernel(QuantAttentionParams p, int64_t num_rows) {
  const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (warp >= num_rows * p.num_q_heads) return;
  const int64_t row = warp / p.num_q_heads;
  const int32_t qh = static_cast<int32_t>(warp % p.num_q_heads);
  const int32_t s = SequenceOf(p.query_start, p.num_seqs, row);
  const int32_t q_len = QueryRows(p.query_start, p.context_lens, s);
  int64_t num_entries = 0;
  const int32_t num_quant = q_len < 0 ? -1 : QuantBlocksOf(p, s, num_entries);
  if (num_quant < 0 || row >= p.query_start[s + 1]) return;  // warp-uniform
  const int32_t* table = p.block_tables + s * static_cast<int64_t>(p.max_blocks_per_seq);
  if (__any_sync(0xffffffffu, AnyBadEntry(table, 0, num_entries, p.num_pages, lane, kWarp))) {
    return;
  }
  const int32_t d = p.format.head_dim;
  const int32_t kv_head = qh / (p.num_q_heads / p.format.num_kv_heads);
  const int32_t num_kv =
      p.context_lens[s] - q_len + static_cast<int32_t>(row - p.query_start[s]) + 1;
  const float* q = p.q + (row * p.num_q_heads + qh) * d;
  float q_reg[kMaxPerLane], acc[kMaxPerLane];
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int32_t c = lane + i * kWarp;
    q_reg[i] = c < d ? q[c] : 0.0f;
    acc[i] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int32_t start = 0, b = 0; start < num_kv; ++b) {
    const KvPageFormat f = b < num_quant ? p.format : p.residual_format;  // a copy: registers
    const int32_t count = min(f.block_size, num_kv - start);
    const std::byte* page = p.pool + p.page_stride * static_cast<size_t>(table[b]);
    for (int32_t j = 0; j < count; ++j) {
      float dot = 0.0f;
      for (int i = 0; i < kMaxPerLane; ++i) {
        const int32_t c = lane + i * kWarp;
        if (c < d) dot += q_reg[i] * codec::DecodeElement(f, page, KvSide::kKey, j, kv_head, c);
      }
      const float score = WarpSum(dot) * p.scale;
      float w;
      const float correction = OnlineSoftmaxStep(score, m, l, w);
      for (int i = 0; i < kMaxPerLane; ++i) {
        const int32_t c = lane + i * kWarp;
        if (c < d) {
          acc[i] = acc[i] * correction +
                   w * codec::DecodeElement(f, page, KvSide::kValue, j, kv_head, c);
        }
      }
    }
    start += count;
  }
  float* out = p.out + (row * p.num_q_heads + qh) * d;
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int32_t c = lane + i * kWarp;
    if (c < d) out[c] = acc[i] / l;
  }
}

unsigned BlocksFor(int64_t threads) {
  return static_cast<unsigned>((threads + kThreads - 1) / kThreads);
}

}  // namespace

absl::Status CheckQuantPagedAttention(const QuantAttentionParams& p) {
  const char* op = "QuantPagedAttention";
  RETURN_IF_ERROR(ValidateQuantAttentionArgs(p));
  if (p.format.head_dim > kMaxPerLane * kWarp) {
    return absl::InvalidArgumentError(StrCat(op, ": CUDA supports head_dim <= ",
                                             kMaxPerLane * kWarp, ", got ", p.format.head_dim));
  }
  return absl::OkStatus();
}

cudaError_t LaunchQuantWriteKv(const QuantWriteKvParams& p, cudaStream_t stream) {
  const int64_t threads = p.num_tokens * p.format.num_kv_heads * 2 * kWarp;
  if (threads == 0) return cudaSuccess;
  if (CeilDivHost(threads, kThreads) > 2147483647) return cudaErrorInvalidConfiguration;
  QuantWriteKvKernel<<<BlocksFor(threads), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchKiviWriteKv(const KiviWriteKvParams& p, cudaStream_t stream) {
  const int64_t items = static_cast<int64_t>(p.num_seqs) * p.format.num_kv_heads;
  if (items == 0) return cudaSuccess;
  if (items > 2147483647) return cudaErrorInvalidConfiguration;
  // The fold reads the old residual rows that the residual kernel then overwrites: stream order
  // runs it to completion first.
  KiviFoldKernel<<<dim3(static_cast<unsigned>(items), kFoldSplit), 128, 0, stream>>>(p);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  KiviResidualKernel<<<static_cast<unsigned>(items), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchQuantPagedAttention(const QuantAttentionParams& p, int64_t num_rows,
                                      cudaStream_t stream) {
  const int64_t threads = num_rows * p.num_q_heads * kWarp;
  if (threads == 0) return cudaSuccess;
  if (CeilDivHost(threads, kThreads) > 2147483647) return cudaErrorInvalidConfiguration;
  QuantAttentionKernel<<<BlocksFor(threads), kThreads, 0, stream>>>(p, num_rows);
  return cudaGetLastError();
}

}  // namespace strata::kernels::cuda
