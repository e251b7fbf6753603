// CudaDevice: the Device on one NVIDIA GPU. Owns one compute stream, a cuBLAS handle bound to
// it, scratch memory (bf16/f16 copies of GEMM activations, split-K attention partials, cuBLAS's
// workspace), one copy stream per direction and the captured graphs (RunGraph). Copies wait on
// an event recorded on the compute stream (ordered after the queued kernels) and are waited
// for, so host memory may be reused on return. Kernels only enqueue; Synchronize waits. Every
// CUDA and cuBLAS call is checked; a failure is a Status naming file and line.
// Threading: one driving thread (the engine thread) for kernels; copies, Allocate and buffer
// frees are thread-safe (LayerKV's copy thread copies while the engine thread launches).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include "kernels/cuda/cuda_kernels.cuh"
#include "kernels/device.h"
#include "kernels/kernel_args.h"

namespace strata::kernels {
namespace cuda {
namespace {

class CudaBuffer final : public Buffer {
 public:
  CudaBuffer(int ordinal, void* data, size_t size_bytes)
      : ordinal_(ordinal), data_(data), size_bytes_(size_bytes) {}
  ~CudaBuffer() override {
    // A failure here (e.g. a sticky error from an earlier fault) has nowhere to go; the memory
    // is gone with the context anyway.
    if (cudaSetDevice(ordinal_) == cudaSuccess) cudaFree(data_);
  }
  CudaBuffer(const CudaBuffer&) = delete;
  CudaBuffer& operator=(const CudaBuffer&) = delete;

  void* data() override { return data_; }
  size_t size_bytes() const override { return size_bytes_; }

 private:
  int ordinal_;
  void* data_;
  size_t size_bytes_;
};

bool ValidPool(const KvPoolView& kv) {
  return kv.pool != nullptr && kv.num_pages > 0 && kv.block_size > 0 && kv.num_kv_heads > 0 &&
         kv.head_dim > 0;
}

// Set while this thread captures a graph (RunGraph): what cannot be captured fails instead.
thread_local bool t_capturing = false;

absl::Status NotCapturable(std::string_view what) {
  return absl::FailedPreconditionError(StrCat(what, " inside a captured graph"));
}

// Device memory that grows on demand and is kept: a larger request waits for queued work on
// `stream`, calls `on_move` (graphs that captured the old address must go), frees the old
// block and allocates the new one. Growing cannot be captured.
struct Scratch {
  void* data = nullptr;
  size_t bytes = 0;
  std::function<void()> on_move;

  ~Scratch() {
    if (data != nullptr) cudaFree(data);
  }
  absl::Status Reserve(size_t want, cudaStream_t stream) {
    if (want <= bytes) return absl::OkStatus();
    if (t_capturing) return NotCapturable("growing scratch memory");
    if (on_move) on_move();
    STRATA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    if (data != nullptr) STRATA_CUDA_RETURN_IF_ERROR(cudaFree(data));
    data = nullptr;
    bytes = 0;
    STRATA_CUDA_RETURN_IF_ERROR(cudaMalloc(&data, want));
    bytes = want;
    return absl::OkStatus();
  }
};

class PinnedBuffer final : public Buffer {
 public:
  PinnedBuffer(void* data, size_t size_bytes) : data_(data), size_bytes_(size_bytes) {}
  ~PinnedBuffer() override { cudaFreeHost(data_); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void* data() override { return data_; }
  size_t size_bytes() const override { return size_bytes_; }

 private:
  void* data_;
  size_t size_bytes_;
};

// One captured graph, ready to launch.
class GraphExec {
 public:
  explicit GraphExec(cudaGraphExec_t exec) : exec_(exec) {}
  // An executable graph still running is freed when it completes.
  ~GraphExec() { cudaGraphExecDestroy(exec_); }
  GraphExec(const GraphExec&) = delete;
  GraphExec& operator=(const GraphExec&) = delete;
  cudaGraphExec_t get() const { return exec_; }

 private:
  cudaGraphExec_t exec_;
};

// A copy direction: its stream, the event that orders it after the compute stream, and the
// mutex that lets the engine thread and a copy thread share it.
struct CopyLane {
  std::mutex mu;
  cudaStream_t stream = nullptr;
  cudaEvent_t after_compute = nullptr;

  ~CopyLane() {
    if (after_compute != nullptr) cudaEventDestroy(after_compute);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};

class CudaDevice final : public Device {
 public:
  ~CudaDevice() override {
    cudaSetDevice(ordinal_);
    graphs_.clear();
    if (cublas_ != nullptr) cublasDestroy(cublas_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  // Creates the stream and the cuBLAS handle on `ordinal`.
  static absl::StatusOr<std::unique_ptr<Device>> Create(int ordinal) {
    auto device = std::unique_ptr<CudaDevice>(new CudaDevice(ordinal));
    STRATA_CUDA_RETURN_IF_ERROR(cudaSetDevice(ordinal));
    STRATA_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&device->stream_, cudaStreamNonBlocking));
    STRATA_CUBLAS_RETURN_IF_ERROR(cublasCreate(&device->cublas_));
    STRATA_CUBLAS_RETURN_IF_ERROR(cublasSetStream(device->cublas_, device->stream_));
    // A workspace of our own (after SetStream, which resets it): captured GEMMs then never make
    // cuBLAS allocate, and every graph shares it.
    RETURN_IF_ERROR(device->cublas_workspace_.Reserve(kCublasWorkspaceBytes, device->stream_));
    STRATA_CUBLAS_RETURN_IF_ERROR(cublasSetWorkspace(
        device->cublas_, device->cublas_workspace_.data, kCublasWorkspaceBytes));
    for (Scratch* s : {&device->attention_scratch_, &device->gemm_scratch_}) {
      s->on_move = [d = device.get()] { d->ClearGraphs(); };
    }
    STRATA_CUDA_RETURN_IF_ERROR(
        cudaDeviceGetAttribute(&device->num_sms_, cudaDevAttrMultiProcessorCount, ordinal));
    for (CopyLane* lane : {&device->h2d_, &device->d2h_}) {
      STRATA_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&lane->stream, cudaStreamNonBlocking));
      STRATA_CUDA_RETURN_IF_ERROR(
          cudaEventCreateWithFlags(&lane->after_compute, cudaEventDisableTiming));
    }
    return std::unique_ptr<Device>(std::move(device));
  }

  std::string name() const override { return StrCat("cuda:", ordinal_); }
  bool host_visible() const override { return false; }

  absl::StatusOr<std::unique_ptr<Buffer>> Allocate(size_t bytes) override {
    STRATA_CUDA_RETURN_IF_ERROR(cudaSetDevice(ordinal_));
    void* data = nullptr;
    const cudaError_t err = cudaMalloc(&data, std::max<size_t>(bytes, 1));
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear the (non-sticky) error so later calls do not see it
      return absl::ResourceExhaustedError(StrCat(name(), ": cannot allocate ", bytes, " bytes"));
    }
    STRATA_CUDA_RETURN_IF_ERROR(err);
    auto buffer = std::make_unique<CudaBuffer>(ordinal_, data, bytes);
    // Zeroed on the legacy default stream and waited for: Allocate may run on any thread, and
    // the non-blocking compute stream does not order itself after the default stream.
    STRATA_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(data, 0, std::max<size_t>(bytes, 1), nullptr));
    STRATA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(nullptr));
    return std::unique_ptr<Buffer>(std::move(buffer));
  }

  // Page-locked (cudaHostAllocPortable), so copies from it are DMA at full bandwidth.
  absl::StatusOr<std::unique_ptr<Buffer>> AllocateHost(size_t bytes) override {
    STRATA_CUDA_RETURN_IF_ERROR(cudaSetDevice(ordinal_));
    void* data = nullptr;
    const cudaError_t err = cudaHostAlloc(&data, std::max<size_t>(bytes, 1), cudaHostAllocPortable);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      return absl::ResourceExhaustedError(
          StrCat(name(), ": cannot allocate ", bytes, " bytes of page-locked host memory"));
    }
    STRATA_CUDA_RETURN_IF_ERROR(err);
    std::memset(data, 0, std::max<size_t>(bytes, 1));
    return std::unique_ptr<Buffer>(std::make_unique<PinnedBuffer>(data, bytes));
  }

  absl::Status CopyToDevice(void* dst, const void* host_src, size_t bytes) override {
    return Copy(dst, host_src, bytes, cudaMemcpyHostToDevice);
  }
  absl::Status CopyToHost(void* host_dst, const void* src, size_t bytes) override {
    return Copy(host_dst, src, bytes, cudaMemcpyDeviceToHost);
  }
  absl::Status Synchronize() override {
    if (t_capturing) return NotCapturable("Synchronize");
    STRATA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }

  std::optional<MemoryInfo> memory_info() const override {
    MemoryInfo info;
    if (cudaSetDevice(ordinal_) != cudaSuccess ||
        cudaMemGetInfo(&info.free_bytes, &info.total_bytes) != cudaSuccess) {
      cudaGetLastError();
      return std::nullopt;
    }
    return info;
  }
  bool supports_graphs() const override { return true; }
  absl::Status RunGraph(uint64_t key, const std::function<absl::Status()>& record) override;

  absl::Status Gemm(const GemmParams& p) override;
  absl::Status RmsNorm(const RmsNormParams& p) override {
    if (p.num_tokens < 0 || p.hidden <= 0) {
      return absl::InvalidArgumentError(StrCat("RmsNorm: bad hidden ", p.hidden));
    }
    STRATA_CUDA_RETURN_IF_ERROR(LaunchRmsNorm(p, stream_));
    return absl::OkStatus();
  }
  absl::Status Rope(const RopeParams& p) override {
    if (p.num_tokens < 0 || p.head_dim <= 0 || p.head_dim % 2 != 0 || p.num_q_heads < 0 ||
        p.num_kv_heads < 0 || p.positions == nullptr || p.inv_freq == nullptr ||
        (p.num_q_heads > 0 && p.q == nullptr) || (p.num_kv_heads > 0 && p.k == nullptr)) {
      return absl::InvalidArgumentError("Rope: bad arguments");
    }
    STRATA_CUDA_RETURN_IF_ERROR(LaunchRope(p, stream_));
    return absl::OkStatus();
  }
  absl::Status WriteKv(const WriteKvParams& p) override {
    if (p.num_tokens < 0 || (p.num_tokens > 0 && (p.k == nullptr || p.v == nullptr ||
                                                  p.slots == nullptr)) ||
        !ValidPool(p.kv)) {
      return absl::InvalidArgumentError("WriteKv: bad arguments");
    }
    STRATA_CUDA_RETURN_IF_ERROR(LaunchWriteKv(p, stream_));
    return absl::OkStatus();
  }
  absl::Status QuantWriteKv(const QuantWriteKvParams& p) override {
    RETURN_IF_ERROR(ValidateQuantWriteArgs(p));
    STRATA_CUDA_RETURN_IF_ERROR(LaunchQuantWriteKv(p, stream_));
    return absl::OkStatus();
  }
  absl::Status KiviWriteKv(const KiviWriteKvParams& p) override {
    RETURN_IF_ERROR(ValidateKiviWriteArgs(p));
    STRATA_CUDA_RETURN_IF_ERROR(LaunchKiviWriteKv(p, stream_));
    return absl::OkStatus();
  }
  absl::Status QuantPagedAttention(const QuantAttentionParams& p) override {
    RETURN_IF_ERROR(CheckQuantPagedAttention(p));
    if (p.num_seqs == 0) return absl::OkStatus();
    ASSIGN_OR_RETURN(const int64_t num_rows, NumRows(p.num_tokens, p.query_start, p.num_seqs));
    STRATA_CUDA_RETURN_IF_ERROR(LaunchQuantPagedAttention(p, num_rows, stream_));
    return absl::OkStatus();
  }
  absl::Status AttentionScores(const AttentionScoresParams& p) override {
    RETURN_IF_ERROR(ValidateScoresArgs(p));
    STRATA_CUDA_RETURN_IF_ERROR(LaunchAttentionScores(p, stream_));
    return absl::OkStatus();
  }
  absl::Status KvCompact(const KvCompactParams& p) override {
    RETURN_IF_ERROR(ValidateCompactArgs(p));
    STRATA_CUDA_RETURN_IF_ERROR(LaunchKvCompact(p, stream_));
    return absl::OkStatus();
  }
  absl::Status PagedAttention(const PagedAttentionParams& p) override {
    if (p.num_seqs < 0 || p.num_q_heads <= 0 || !ValidPool(p.kv) ||
        p.num_q_heads % p.kv.num_kv_heads != 0 || p.kv.head_dim > 256 ||
        (p.num_seqs > 0 && (p.q == nullptr || p.out == nullptr || p.query_start == nullptr ||
                            p.context_lens == nullptr || p.block_tables == nullptr))) {
      return absl::InvalidArgumentError("PagedAttention: bad arguments (head_dim <= 256)");
    }
    if (p.num_seqs == 0) return absl::OkStatus();
    ASSIGN_OR_RETURN(const int64_t num_rows, NumRows(p.num_tokens, p.query_start, p.num_seqs));
    const AttentionSplit split = ChooseAttentionSplit(
        num_rows, p.num_q_heads,
        static_cast<int64_t>(p.max_blocks_per_seq) * p.kv.block_size, num_sms_);
    const int64_t floats = AttentionPartialFloats(num_rows, p.num_q_heads, p.kv.head_dim, split);
    RETURN_IF_ERROR(attention_scratch_.Reserve(static_cast<size_t>(floats) * 4, stream_));
    STRATA_CUDA_RETURN_IF_ERROR(LaunchPagedAttention(
        p, num_rows, split, static_cast<float*>(attention_scratch_.data), stream_));
    return absl::OkStatus();
  }
  absl::Status SwiGlu(const SwiGluParams& p) override {
    if (p.num_tokens < 0 || p.intermediate < 0) {
      return absl::InvalidArgumentError("SwiGlu: negative size");
    }
    STRATA_CUDA_RETURN_IF_ERROR(LaunchSwiGlu(p, stream_));
    return absl::OkStatus();
  }
  absl::Status Embedding(const EmbeddingParams& p) override {
    if (p.num_tokens < 0 || p.table.cols <= 0 || p.table.data == nullptr) {
      return absl::InvalidArgumentError("Embedding: bad table");
    }
    STRATA_CUDA_RETURN_IF_ERROR(LaunchEmbedding(p, stream_));
    return absl::OkStatus();
  }
  absl::Status Add(const AddParams& p) override {
    if (p.n < 0) return absl::InvalidArgumentError("Add: negative size");
    STRATA_CUDA_RETURN_IF_ERROR(LaunchAdd(p, stream_));
    return absl::OkStatus();
  }
  absl::Status Argmax(const ArgmaxParams& p) override {
    if (p.rows < 0 || p.cols <= 0 || (p.rows > 0 && (p.logits == nullptr || p.out == nullptr))) {
      return absl::InvalidArgumentError(StrCat("Argmax: bad arguments (rows=", p.rows, ")"));
    }
    STRATA_CUDA_RETURN_IF_ERROR(LaunchArgmax(p, stream_));
    return absl::OkStatus();
  }
  absl::Status ApplyPenalties(const ApplyPenaltiesParams& p) override {
    RETURN_IF_ERROR(ValidatePenaltiesArgs(p));
    STRATA_CUDA_RETURN_IF_ERROR(LaunchApplyPenalties(p, stream_));
    return absl::OkStatus();
  }
  absl::Status Sample(const SampleParams& p) override {
    RETURN_IF_ERROR(ValidateSampleArgs(p));
    STRATA_CUDA_RETURN_IF_ERROR(LaunchSample(p, stream_));
    return absl::OkStatus();
  }

 private:
  explicit CudaDevice(int ordinal) : ordinal_(ordinal) {}

  // A batch's query rows: `hint` when the caller gave it, else query_start[num_seqs] read back
  // from the device (a 4-byte copy and a stream sync).
  absl::StatusOr<int64_t> NumRows(int64_t hint, const int32_t* query_start, int32_t num_seqs) {
    if (hint > 0) return hint;
    if (t_capturing) return NotCapturable("reading a row count back");
    int32_t rows = 0;
    STRATA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(&rows, query_start + num_seqs, sizeof(rows),
                                                cudaMemcpyDeviceToHost, stream_));
    STRATA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return rows;
  }

  // On the direction's copy stream, after the compute work queued so far (an event recorded
  // on the compute stream), and waited for: the caller may reuse host memory on return, and
  // kernels it queues next see the data. Loads and stores (two streams) overlap each other and
  // the compute queued after them.
  absl::Status Copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
    if (bytes == 0) return absl::OkStatus();
    if (t_capturing) return NotCapturable("a copy");
    // Not while another thread captures: the event recorded on the compute stream would pull
    // this copy into the capture.
    std::shared_lock<std::shared_mutex> no_capture(capture_mu_);
    CopyLane& lane = kind == cudaMemcpyHostToDevice ? h2d_ : d2h_;
    std::lock_guard<std::mutex> lock(lane.mu);
    STRATA_CUDA_RETURN_IF_ERROR(cudaSetDevice(ordinal_));
    STRATA_CUDA_RETURN_IF_ERROR(cudaEventRecord(lane.after_compute, stream_));
    STRATA_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(lane.stream, lane.after_compute, 0));
    STRATA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, kind, lane.stream));
    STRATA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(lane.stream));
    return absl::OkStatus();
  }

  // Drops every captured graph (a scratch buffer they captured the address of moved).
  void ClearGraphs() { graphs_.clear(); }
  // Captures `record` on the compute stream into a new executable graph.
  absl::StatusOr<std::unique_ptr<GraphExec>> Capture(const std::function<absl::Status()>& record);

  static constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;
  // Keys whose capture failed this often run uncaptured from then on.
  static constexpr int kMaxCaptureFailures = 2;
  // More distinct keys than this are not captured (a bound on graph memory).
  static constexpr size_t kMaxGraphs = 512;

  const int ordinal_;
  int num_sms_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<GraphExec>> graphs_;
  std::unordered_map<uint64_t, int> capture_failures_;
  std::shared_mutex capture_mu_;  // held exclusively while capturing, shared by copies
  Scratch cublas_workspace_;
  Scratch attention_scratch_;  // split-K partial softmaxes of PagedAttention
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  Scratch gemm_scratch_;  // [m, k] activations as bf16/f16 for the current GEMM
  CopyLane h2d_, d2h_;    // host -> device loads, device -> host stores
};

absl::StatusOr<std::unique_ptr<GraphExec>> CudaDevice::Capture(
    const std::function<absl::Status()>& record) {
  std::unique_lock<std::shared_mutex> lock(capture_mu_);
  STRATA_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  t_capturing = true;
  const absl::Status recorded = record();
  t_capturing = false;
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
  if (!recorded.ok() || ended != cudaSuccess || graph == nullptr) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();  // an invalidated capture leaves a (non-sticky) error behind
    if (!recorded.ok()) return recorded;
    return absl::InternalError(StrCat("graph capture failed: ", cudaGetErrorName(ended)));
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  STRATA_CUDA_RETURN_IF_ERROR(made);
  return std::make_unique<GraphExec>(exec);
}

absl::Status CudaDevice::RunGraph(uint64_t key, const std::function<absl::Status()>& record) {
  if (t_capturing) return NotCapturable("RunGraph");
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    if (graphs_.size() >= kMaxGraphs || capture_failures_[key] >= kMaxCaptureFailures) {
      return record();
    }
    absl::StatusOr<std::unique_ptr<GraphExec>> exec = Capture(record);
    if (!exec.ok()) {
      // Nothing ran: run it uncaptured (which also grows what had to grow); capture next time.
      ++capture_failures_[key];
      return record();
    }
    it = graphs_.emplace(key, *std::move(exec)).first;
  }
  STRATA_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(it->second->get(), stream_));
  return absl::OkStatus();
}

// cuBLAS is column-major: the row-major c [m, n] is column-major c^T [n, m] = b a^T, where b's
// row-major [n, k] buffer reads as column-major [k, n] (hence op T) and a's as [k, m] (op N).
absl::Status CudaDevice::Gemm(const GemmParams& p) {
  if (p.a == nullptr || p.b.data == nullptr || p.c == nullptr || p.m <= 0 || p.b.rows <= 0 ||
      p.b.cols <= 0) {
    return absl::InvalidArgumentError(StrCat("Gemm: bad arguments m=", p.m, " n=", p.b.rows,
                                             " k=", p.b.cols));
  }
  const int64_t m = p.m, n = p.b.rows, k = p.b.cols;
  const void* a = p.a;
  cudaDataType_t in_type = CUDA_R_32F;
  if (p.b.dtype != DType::kF32) {
    in_type = p.b.dtype == DType::kBF16 ? CUDA_R_16BF : CUDA_R_16F;
    RETURN_IF_ERROR(gemm_scratch_.Reserve(static_cast<size_t>(m * k) * 2, stream_));
    STRATA_CUDA_RETURN_IF_ERROR(
        LaunchConvertActivations(p.a, gemm_scratch_.data, p.b.dtype, m * k, stream_));
    a = gemm_scratch_.data;
  }
  const float alpha = 1.0f;
  const float beta = p.accumulate ? 1.0f : 0.0f;
  STRATA_CUBLAS_RETURN_IF_ERROR(cublasGemmEx(
      cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
      static_cast<int>(k), &alpha, p.b.data, in_type, static_cast<int>(k), a, in_type,
      static_cast<int>(k), &beta, p.c, CUDA_R_32F, static_cast<int>(n), CUBLAS_COMPUTE_32F,
      CUBLAS_GEMM_DEFAULT));
  if (p.bias != nullptr) STRATA_CUDA_RETURN_IF_ERROR(LaunchAddBias(p.bias, p.c, m, n, stream_));
  return absl::OkStatus();
}

}  // namespace
}  // namespace cuda

absl::StatusOr<std::unique_ptr<Device>> MakeCudaDevice(int ordinal) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    return absl::UnavailableError(StrCat("cuda:", ordinal, " unavailable: cudaGetDeviceCount: ",
                                         cudaGetErrorName(err), " (", cudaGetErrorString(err),
                                         ")"));
  }
  if (count == 0) return absl::UnavailableError(StrCat("cuda:", ordinal, " unavailable: no GPU"));
  if (ordinal < 0 || ordinal >= count) {
    return absl::UnavailableError(
        StrCat("cuda:", ordinal, " unavailable: this machine has ", count, " GPU(s)"));
  }
  return cuda::CudaDevice::Create(ordinal);
}

}  // namespace strata::kernels
