// The Device interface: memory, copies and the kernel table that the forward pass is written
// against once (DESIGN.md §3). Implementations: CpuDevice (kernels/cpu) and CudaDevice
// (kernels/cuda). Kernel parameters are plain structs with the tensor layout documented at each
// field (FlashInfer style); every pointer lives in this device's memory.
//
// Threading: a Device is driven by one thread at a time (the engine thread); kernels may use
// internal worker threads (OpenMP on the CPU). Allocate/Free are thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/dtype.h"
#include "common/status.h"
#include "kernels/kv_codec.h"

namespace strata::kernels {

// A block of device memory. Freed when destroyed.
class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual void* data() = 0;
  virtual size_t size_bytes() const = 0;
  template <typename T>
  T* as() { return static_cast<T*>(data()); }
};

// A row-major matrix [rows, cols] of `dtype`, e.g. an nn.Linear weight [out_features, in].
struct MatrixView {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
};

// c[m, n] (+)= a[m, k] * b[n, k]^T (+ bias[n]).  This is nn.Linear: b is the weight.
struct GemmParams {
  const float* a = nullptr;     // [m, k] activations, row-major, f32
  MatrixView b;                 // [n, k] weight (rows = n, cols = k), F32/F16/BF16
  const float* bias = nullptr;  // [n] or null
  float* c = nullptr;           // [m, n] row-major, f32
  int64_t m = 0;
  bool accumulate = false;      // c += result instead of c = result (fuses residual adds)
};

// out[t, :] = x[t, :] / rms(x[t, :]) * weight  (LlamaRMSNorm, computed in f32).
struct RmsNormParams {
  const float* x = nullptr;       // [num_tokens, hidden]
  const float* weight = nullptr;  // [hidden]
  float* out = nullptr;           // [num_tokens, hidden]; may alias x
  int64_t num_tokens = 0;
  int64_t hidden = 0;
  float eps = 1e-5f;
};

// Rotary embedding in the Hugging Face rotate_half convention: dims (j, j + head_dim/2) pair up,
// angle = position * inv_freq[j]. In place on q and k.
struct RopeParams {
  float* q = nullptr;                // [num_tokens, num_q_heads, head_dim]
  float* k = nullptr;                // [num_tokens, num_kv_heads, head_dim]
  const int32_t* positions = nullptr;  // [num_tokens] host-visible on CPU, device memory on CUDA
  const float* inv_freq = nullptr;   // [head_dim / 2], scaling (e.g. llama3) already applied
  int64_t num_tokens = 0;
  int32_t num_q_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
};

// Paged KV pool layout shared by WriteKv and PagedAttention. A page holds block_size tokens of
// one layer's K and V (DESIGN.md §5):
//   pool: [num_pages, 2 (K then V), block_size, num_kv_heads, head_dim], f32.
struct KvPoolView {
  float* pool = nullptr;
  int32_t num_pages = 0;
  int32_t block_size = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
};

// Stores new tokens' K and V into their slots: slot = page * block_size + offset_in_page.
struct WriteKvParams {
  const float* k = nullptr;           // [num_tokens, num_kv_heads, head_dim]
  const float* v = nullptr;           // [num_tokens, num_kv_heads, head_dim]
  const int64_t* slots = nullptr;     // [num_tokens]
  int64_t num_tokens = 0;
  KvPoolView kv;
};

// Causal grouped-query attention over paged KV for a variable-length batch of sequences. Sequence
// s owns query rows [query_start[s], query_start[s+1]); those are its last tokens, so query row
// i of s sits at position context_lens[s] - (query_start[s+1] - query_start[s]) + i and attends
// to KV positions [0, that position]. Its KV (already written, new tokens included) is found
// through block_tables[s * max_blocks_per_seq + logical_block].
struct PagedAttentionParams {
  const float* q = nullptr;              // [num_tokens, num_q_heads, head_dim], RoPE applied
  float* out = nullptr;                  // [num_tokens, num_q_heads, head_dim]
  KvPoolView kv;
  const int32_t* query_start = nullptr;  // [num_seqs + 1]
  const int32_t* context_lens = nullptr; // [num_seqs]
  const int32_t* block_tables = nullptr; // [num_seqs, max_blocks_per_seq] page ids
  int32_t num_seqs = 0;
  int32_t max_blocks_per_seq = 0;
  int32_t num_q_heads = 0;
  float scale = 1.0f;                    // usually 1/sqrt(head_dim)
  // query_start[num_seqs] when the caller knows it (the engine does), else 0: CUDA then reads
  // it back from the device (one 4-byte copy and a stream sync). The CPU ignores it.
  int64_t num_tokens = 0;
};

// Sparsity (DESIGN.md §5, H2O / SnapKV): the attention probabilities of chosen query rows, over
// an f32 paged KV (PagedAttentionParams semantics: causal, GQA). For sequence s, every row r in
// [score_from[s], query_start[s+1]) and every query head of KV head h adds its softmax weight of
// KV position j to scores[(s * num_kv_heads + h) * max_context + j]. Rows before score_from[s]
// add nothing (score_from[s] = query_start[s+1]: none). The kernel zeroes `scores` first, then
// accumulates; positions j >= context_lens[s] stay 0.
struct AttentionScoresParams {
  const float* q = nullptr;               // [num_tokens, num_q_heads, head_dim], RoPE applied
  KvPoolView kv;
  const int32_t* query_start = nullptr;   // [num_seqs + 1]
  const int32_t* context_lens = nullptr;  // [num_seqs]
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  const int32_t* score_from = nullptr;    // [num_seqs], in [query_start[s], query_start[s+1]]
  int32_t num_seqs = 0;
  int32_t max_blocks_per_seq = 0;
  int32_t num_q_heads = 0;
  float scale = 1.0f;
  float* scores = nullptr;                // [num_seqs, num_kv_heads, max_context]
  int32_t max_context = 0;                // >= every context_lens[s]
};

// Sparsity: keeps some tokens of each (sequence, KV head) and moves them to the front of the
// sequence's pages, in place: for KV head h of sequence s, the K and V of token
// keep[(s * num_kv_heads + h) * max_keep + i] move to token index i, for i < num_keep[s]. The
// kept indices of one (s, h) are strictly ascending and < the sequence's tokens, so every move
// goes to an index <= its source. Tokens from num_keep[s] on are left as they are.
struct KvCompactParams {
  KvPoolView kv;
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  const int32_t* keep = nullptr;          // [num_seqs, num_kv_heads, max_keep]
  const int32_t* num_keep = nullptr;      // [num_seqs]
  int32_t num_seqs = 0;
  int32_t max_blocks_per_seq = 0;
  int32_t max_keep = 0;
};

// out[t, i] = silu(gate[t, i]) * up[t, i].
struct SwiGluParams {
  const float* gate = nullptr;  // [num_tokens, intermediate]
  const float* up = nullptr;    // [num_tokens, intermediate]
  float* out = nullptr;         // [num_tokens, intermediate]; may alias gate
  int64_t num_tokens = 0;
  int64_t intermediate = 0;
};

// out[t, :] = table[ids[t], :] converted to f32.
struct EmbeddingParams {
  MatrixView table;              // [vocab, hidden]
  const int32_t* ids = nullptr;  // [num_tokens]; every id < table.rows (checked by the caller)
  float* out = nullptr;          // [num_tokens, hidden]
  int64_t num_tokens = 0;
};

// out[r] = the index of the largest of logits[r, :], the lowest index on ties; NaN never wins
// (a row without any value above -inf gives 0). Greedy sampling without penalties: the engine
// reads back one id per row instead of the row's logits.
struct ArgmaxParams {
  const float* logits = nullptr;  // [rows, cols]
  int32_t* out = nullptr;         // [rows]
  int64_t rows = 0;
  int64_t cols = 0;
};

// Sampling on the device (engine::Sampler's semantics), one row of logits per sampled sequence.
// Per-row parameters, shared by ApplyPenalties and Sample.
struct SamplingRow {
  double uniform = 0.0;           // u in [0, 1) from the request's own stream; unused when greedy
  float temperature = 0.0f;       // below kSampleGreedyTemperature: greedy (argmax)
  int32_t top_k = 0;              // 0 or -1 or >= cols: off; 1: greedy
  float top_p = 1.0f;             // in (0, 1]; 1: off
  float min_p = 0.0f;             // in [0, 1]; 0: off
  float repetition_penalty = 1.0f;  // > 0; 1: off
  float presence_penalty = 0.0f;    // 0: off
  float frequency_penalty = 0.0f;   // 0: off
  int32_t reserved = 0;
};
inline constexpr float kSampleGreedyTemperature = 1e-5f;

// One (row, token) a penalty applies to: the token occurs in the row's prompt or output.
struct PenaltyEntry {
  int32_t row = 0;
  int32_t token = 0;         // in [0, cols)
  int32_t output_count = 0;  // occurrences among the generated tokens (0: prompt only)
  int32_t reserved = 0;
};

// In place, for each entry (each (row, token) at most once), in this order (HF / OpenAI, as
// engine::Sampler::ApplyPenalties): logit = logit > 0 ? logit / repetition : logit * repetition
// (when repetition != 1); then, when output_count > 0, logit -= frequency * output_count (one
// rounding: a fused multiply-add) and logit -= presence.
struct ApplyPenaltiesParams {
  float* logits = nullptr;               // [rows, cols]
  const SamplingRow* rows_params = nullptr;  // [rows]
  const PenaltyEntry* entries = nullptr;     // [num_entries]
  int64_t num_entries = 0;
  int64_t rows = 0;
  int64_t cols = 0;
};

// out[r] = a token drawn from row r (after penalties), the same way on every backend:
//  1. best = the argmax (ArgmaxParams' rules). Greedy (temperature < kSampleGreedyTemperature or
//     top_k == 1), or logits[best] not finite: out = best.
//  2. w[i] = exp((logits[i] - logits[best]) / temperature); NaN and w < FLT_MIN become 0.
//  3. Kept: every w > 0. top_k in (1, cols): only the top_k first in the order (w desc, id asc).
//     top_p < 1: of those kept, the shortest prefix (at least one) in that order whose mass
//     reaches (top_p - 1e-6) * (the kept mass). min_p > 0: drop w < min_p.
//  4. target = uniform * (the kept mass), uniform clamped into [0, 1); out = the first kept id,
//     walking ids upwards, where the running mass exceeds target (the last kept id if rounding
//     leaves none; best if nothing is kept, which only out-of-range parameters cause).
// The logits are scratch: overwritten.
struct SampleParams {
  float* logits = nullptr;                   // [rows, cols]
  const SamplingRow* rows_params = nullptr;  // [rows]
  int32_t* out = nullptr;                    // [rows]
  int64_t rows = 0;
  int64_t cols = 0;
};

// y += x, elementwise.
struct AddParams {
  const float* x = nullptr;
  float* y = nullptr;
  int64_t n = 0;
};

class Device {
 public:
  virtual ~Device() = default;

  virtual std::string name() const = 0;  // "cpu", "cuda:0"
  // True when kernels may read host memory directly (the CPU): mapped weights are used in place.
  // False (CUDA): everything a kernel reads must first be copied into Allocate'd memory.
  virtual bool host_visible() const = 0;
  // Memory on this device (CPU: 64-byte aligned host memory), zero-initialised.
  virtual absl::StatusOr<std::unique_ptr<Buffer>> Allocate(size_t bytes) = 0;
  // Host memory this device copies to and from fastest, for the host KV tier's arenas: CUDA
  // page-locks it (all of it, at once: allocate in moderate pieces); the CPU returns plain
  // lazily committed memory (AllocateHostBuffer). Zero-initialised; page-aligned from 2 MiB.
  virtual absl::StatusOr<std::unique_ptr<Buffer>> AllocateHost(size_t bytes) = 0;
  // Synchronous for the caller (host memory may be reused on return) and ordered after the
  // kernels queued so far, so a copy sees their results and never overwrites what they read.
  // Thread-safe with respect to the driving thread's kernels (a copy thread may call them; CUDA
  // runs them on a copy stream per direction).
  virtual absl::Status CopyToDevice(void* dst, const void* host_src, size_t bytes) = 0;
  virtual absl::Status CopyToHost(void* host_dst, const void* src, size_t bytes) = 0;
  // Waits until all work queued on this device finished.
  virtual absl::Status Synchronize() = 0;
  // Free and total bytes of device memory (cudaMemGetInfo), or nullopt where memory is the host's
  // and not worth budgeting (the CPU).
  struct MemoryInfo {
    size_t free_bytes = 0;
    size_t total_bytes = 0;
  };
  virtual std::optional<MemoryInfo> memory_info() const { return std::nullopt; }

  // Graphs (CUDA graphs): whether RunGraph replays captured work, so that callers can give a
  // repeated step fixed shapes worth capturing. False on the CPU.
  virtual bool supports_graphs() const { return false; }
  // Runs the kernels `record` launches as one replayable unit named `key`. The first call with
  // a key runs `record` under capture and launches what it captured; later calls replay that
  // capture, with the arguments the kernels had then, without calling `record`. So `record` may
  // only launch kernels (no copies, no reads of device data on the host, no allocation) and must
  // launch the same kernels with the same arguments for a given key: inputs change only through
  // the memory they read. A capture that fails (e.g. a scratch buffer had to grow) runs `record`
  // uncaptured; the key is captured on a later call. Devices without graphs run `record` itself.
  virtual absl::Status RunGraph(uint64_t key, const std::function<absl::Status()>& record) {
    (void)key;
    return record();
  }

  virtual absl::Status Gemm(const GemmParams& p) = 0;
  virtual absl::Status RmsNorm(const RmsNormParams& p) = 0;
  virtual absl::Status Rope(const RopeParams& p) = 0;
  virtual absl::Status WriteKv(const WriteKvParams& p) = 0;
  virtual absl::Status PagedAttention(const PagedAttentionParams& p) = 0;
  // KV in a codec (kernels/kv_codec.h): per-token codecs, KIVI appends, attention over both.
  virtual absl::Status QuantWriteKv(const QuantWriteKvParams& p) = 0;
  virtual absl::Status KiviWriteKv(const KiviWriteKvParams& p) = 0;
  virtual absl::Status QuantPagedAttention(const QuantAttentionParams& p) = 0;
  virtual absl::Status AttentionScores(const AttentionScoresParams& p) = 0;
  virtual absl::Status KvCompact(const KvCompactParams& p) = 0;
  virtual absl::Status SwiGlu(const SwiGluParams& p) = 0;
  virtual absl::Status Embedding(const EmbeddingParams& p) = 0;
  virtual absl::Status Add(const AddParams& p) = 0;
  virtual absl::Status Argmax(const ArgmaxParams& p) = 0;
  virtual absl::Status ApplyPenalties(const ApplyPenaltiesParams& p) = 0;
  virtual absl::Status Sample(const SampleParams& p) = 0;
};

struct CpuDeviceConfig {
  int threads = 0;  // worker threads for kernels and GEMM; 0 = all cores
};

// Factories. MakeCudaDevice returns Unavailable when Strata was built without CUDA or no GPU is
// present, with the reason in the message.
absl::StatusOr<std::unique_ptr<Device>> MakeCpuDevice(const CpuDeviceConfig& config);
absl::StatusOr<std::unique_ptr<Device>> MakeCudaDevice(int ordinal);
// Plain host memory, 64-byte aligned (page-aligned and committed lazily by the kernel, mmap,
// from 2 MiB), zero-initialised: the CPU device's Allocate, for callers without a Device.
absl::StatusOr<std::unique_ptr<Buffer>> AllocateHostBuffer(size_t bytes);

}  // namespace strata::kernels
