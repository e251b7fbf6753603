// ModelRunner: the transformer forward pass, written once against the Device kernel table
// (DESIGN.md §3), over a variable-length batch whose KV lives in a paged arena.
//
// It owns the device-side workspaces (activations sized for max_batch_tokens), the KV arena
// (num_kv_pages pages of KvLayout), and device copies of the small weight vectors. Page ids are
// handed out elsewhere (kvcache::PagePool); the runner only turns them into offsets. Big weight
// matrices are used in place (memory-mapped) on the CPU device.
//
// Called by one thread (the engine thread, or the CLI generator); not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "common/status.h"
#include "engine/model_config.h"
#include "engine/weights.h"
#include "kernels/device.h"
#include "kvcache/kv_layout.h"
#include "kvcache/page_io.h"

namespace strata::engine {

// A device KV pool of another codec than pool 0's f32 (DESIGN.md §5: separate pools carved from
// one budget). Pool i + 1 is RunnerConfig::extra_pools[i].
struct KvPoolSpec {
  kernels::KvCodec codec = kernels::KvCodec::kBf16;
  int32_t block_size = 16;  // a multiple of 32 for KIVI
  int32_t num_pages = 0;
  // KIVI: the largest residual window a request in this pool may ask for (the pool must hold
  // one max_model_len sequence with it; requests asking for more are refused).
  int32_t max_residual_tokens = kvcache::kMaxKiviResidualTokens;
};

struct RunnerConfig {
  int64_t max_batch_tokens = 2048;  // most tokens one Forward may carry
  int32_t max_num_seqs = 64;        // most sequences one Forward may carry
  int32_t max_logit_rows = 64;      // most rows whose logits one Forward may return
  int32_t num_kv_pages = 0;         // pages in the device KV arena
  int32_t block_size = 16;          // tokens per page
  int64_t max_model_len = 0;        // longest sequence (positions); 0 = the model's maximum
  std::vector<KvPoolSpec> extra_pools;  // pools 1, 2, ...
  // Decode steps run as captured graphs where the device has them (Device::RunGraph): shapes
  // padded to a few buckets of sequences and block-table widths (model_runner_graphs.cc).
  bool decode_graphs = true;
  // num_kv_pages is a wish (the engine's auto size): where the device budgets its memory
  // (Device::memory_info), the arena gets at most what its free memory holds after everything
  // else, less a reserve (kKvMemoryReserve); runner_config().num_kv_pages then says how many.
  bool fit_kv_pages = false;

  absl::Status Validate() const;
};

// One step's batch, in host memory. Sequence s owns token rows [query_start[s], query_start[s+1]),
// which are its newest tokens; after the step its KV holds context_lens[s] tokens.
struct BatchInput {
  std::span<const int32_t> token_ids;     // [num_tokens]
  std::span<const int32_t> positions;     // [num_tokens]
  std::span<const int32_t> query_start;   // [num_seqs + 1]
  std::span<const int32_t> context_lens;  // [num_seqs]
  int32_t max_blocks_per_seq = 0;
  std::span<const int32_t> block_tables;  // [num_layers, num_seqs, max_blocks_per_seq] page ids
  std::span<const int64_t> slots;         // [num_layers, num_tokens] where each new K/V goes
  std::span<const int32_t> logit_rows;    // token rows whose next-token logits are wanted
  // LayerKV: pages of layers kept in host RAM, copied in before their layer runs and back after
  // (kvcache::KvCacheManager::LayerCopies); the block tables name the staging pages.
  std::span<const kvcache::LayerPageCopy> layer_loads;
  std::span<const kvcache::LayerPageCopy> layer_stores;
  // The pool of each sequence, ascending (empty = all in pool 0): block tables name that pool's
  // pages, slots its slots (-1 for KIVI sequences, which KiviWriteKv places).
  std::span<const int32_t> seq_pools;      // [num_seqs]
  // KIVI sequences: tokens in quantized blocks before and after the step (kernels/kv_codec.h
  // KiviWriteKvParams); their table lists quant_after / block_size blocks, then residual pages.
  std::span<const int32_t> quant_before;   // [num_seqs] or empty
  std::span<const int32_t> quant_after;    // [num_seqs] or empty
  // Sparsity: the first row of each sequence whose attention probabilities are wanted
  // (query_start[s + 1] = none; pool 0 sequences only), or empty for none at all. Forward
  // leaves them in scores().
  std::span<const int32_t> score_from;     // [num_seqs] or empty
};

// Sparsity: KV tokens to keep per (sequence, layer, KV head), moved to the front in place
// (KvCompactParams). Host memory.
struct CompactionInput {
  int32_t num_seqs = 0;
  int32_t max_blocks_per_seq = 0;
  int32_t max_keep = 0;
  std::span<const int32_t> block_tables;  // [num_layers, num_seqs, max_blocks_per_seq] (pool 0)
  std::span<const int32_t> keep;          // [num_layers, num_seqs, num_kv_heads, max_keep]
  std::span<const int32_t> num_keep;      // [num_seqs]
};

class ModelRunner : public kvcache::PageIo {
 public:
  // Device memory left free when the KV arena is fitted (fit_kv_pages): at least this, or 5% of
  // the total.
  static constexpr size_t kKvMemoryReserve = size_t{1} << 30;

  // `device`, `config` and `weights` must outlive the runner.
  static absl::StatusOr<std::unique_ptr<ModelRunner>> Create(kernels::Device* device,
                                                             const ModelConfig& config,
                                                             const ModelWeights& weights,
                                                             const RunnerConfig& runner_config);

  // Runs the batch and writes logits [logit_rows.size(), vocab] into `logits` (host memory).
  // Input shapes and token ids are checked; a bad batch is InvalidArgument and changes nothing.
  absl::Status Forward(const BatchInput& batch, std::span<float> logits);
  // The same, but each logit row is reduced to its argmax on the device (Device::Argmax) and
  // only those ids come back: argmax[logit_rows.size()] (greedy rows without penalties).
  absl::Status ForwardArgmax(const BatchInput& batch, std::span<int32_t> argmax);
  // The same, but each logit row r gets its penalties (entries naming row r) and a token drawn
  // on the device by rows[r]'s parameters (Device::ApplyPenalties, Device::Sample); only the
  // ids come back: ids[logit_rows.size()].
  absl::Status ForwardSample(const BatchInput& batch, std::span<const kernels::SamplingRow> rows,
                             std::span<const kernels::PenaltyEntry> penalties,
                             std::span<int32_t> ids);

  // After a Forward with score_from: scores()[((layer * num_seqs + s) * num_kv_heads + h) *
  // score_stride() + j] is the attention mass KV token j of sequence s got (AttentionScores).
  std::span<const float> scores() const { return scores_host_; }
  int64_t score_stride() const { return score_stride_; }
  // Sparsity (model_runner_sparsity.cc): compacts pool 0 pages in place.
  absl::Status CompactKv(const CompactionInput& c);

  // One KV page's bytes to and from host memory (the tiers below the device).
  absl::Status ReadPage(int32_t page, std::span<std::byte> out) override;
  absl::Status WritePage(int32_t page, std::span<const std::byte> in) override;
  absl::StatusOr<std::unique_ptr<kernels::Buffer>> AllocateHost(size_t bytes) override {
    return device_->AllocateHost(bytes);
  }

  const kvcache::KvLayout& kv_layout() const { return layout_; }
  // Pool `pool`'s layout (0: kv_layout()).
  const kvcache::KvLayout& pool_layout(int32_t pool) const {
    return pool == 0 ? layout_ : extra_[pool - 1].layout;
  }
  int32_t num_pools() const { return 1 + static_cast<int32_t>(extra_.size()); }
  const RunnerConfig& runner_config() const { return rc_; }
  int64_t max_blocks_per_seq() const { return layout_.BlocksFor(rc_.max_model_len); }
  int64_t vocab_size() const { return config_.vocab_size; }
  // Forwards that ran as a graph (captured or replayed) so far.
  int64_t num_graph_steps() const { return num_graph_steps_; }

 private:
  struct DeviceLayer {  // device copies of one layer's small vectors; may be empty
    std::unique_ptr<kernels::Buffer> input_norm, post_norm, q_bias, k_bias, v_bias;
    // The layer's matrices where the kernels read them: the mapped weights themselves on a
    // host-visible device, copies in weight_buffers_ otherwise.
    kernels::MatrixView q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj;
  };
  ModelRunner(kernels::Device* device, const ModelConfig& config, const ModelWeights& weights,
              const RunnerConfig& rc);
  absl::Status Init();
  absl::Status InitKvArena();  // last: it may take what memory the rest left
  absl::StatusOr<std::unique_ptr<kernels::Buffer>> Upload(std::span<const float> host);
  // `host` itself on a host-visible device, else a device copy kept in weight_buffers_.
  absl::StatusOr<kernels::MatrixView> PlaceMatrix(const kernels::MatrixView& host);
  absl::Status PlaceLayerMatrices(const LayerWeights& w, DeviceLayer* d);
  absl::Status CheckBatch(const BatchInput& batch);  // also fills ranges_
  absl::Status UploadBatch(const BatchInput& batch);
  absl::Status RunLayer(int32_t layer, int64_t num_tokens, int32_t num_seqs,
                        int32_t max_blocks_per_seq);
  absl::Status Attention(int32_t layer, int64_t num_tokens, int32_t num_seqs,
                         int32_t max_blocks_per_seq);
  absl::Status Mlp(int32_t layer, int64_t num_tokens);
  // model_runner_pools.cc: the pools besides pool 0.
  struct ExtraPool {
    kvcache::KvLayout layout;
    std::unique_ptr<kernels::Buffer> arena;  // [num_pages][layout.PageBytes()] bytes
    int32_t num_pages = 0;
  };
  struct PoolRange {  // one pool's sequences [first_seq, end_seq) and rows of a batch
    int32_t pool = 0, first_seq = 0, end_seq = 0, first_token = 0, end_token = 0;
    int32_t query_start_at = 0;  // where its rebased query_start sits in pool_query_start_
  };
  absl::Status InitPools();
  absl::Status CheckPoolBatch(const BatchInput& b);
  absl::Status UploadPoolBatch(const BatchInput& b);
  // K/V of the step into pool r.pool, then attention of its rows (q_ -> attn_).
  absl::Status PoolAttention(const PoolRange& r, int32_t layer, int64_t n, int32_t seqs,
                             int32_t max_blocks);
  // Sparsity: prepares the scores buffers for a batch (none when score_from is empty), and
  // computes layer `l`'s scores of pool 0's `seqs` sequences into scores_host_.
  absl::Status PrepareScores(const BatchInput& b);
  absl::Status LayerScores(int32_t l, int32_t pool0_seqs, int32_t seqs, int32_t max_blocks);
  // Device buffers that grow on demand and are reused (scores, compaction inputs).
  absl::Status Grow(std::unique_ptr<kernels::Buffer>* buffer, size_t bytes);
  absl::Status UploadGrown(std::unique_ptr<kernels::Buffer>* buffer,
                           std::span<const std::byte> host);
  template <typename T>
  absl::Status UploadGrown(std::unique_ptr<kernels::Buffer>* buffer, std::span<const T> host) {
    return UploadGrown(buffer, std::as_bytes(host));
  }
  // Pool 0's f32 arena as the kernels see it.
  kernels::KvPoolView Pool0View() {
    return {.pool = F(kv_arena_), .num_pages = rc_.num_kv_pages + (pad_page_ >= 0 ? 1 : 0),
            .block_size = layout_.block_size, .num_kv_heads = layout_.num_kv_heads,
            .head_dim = layout_.head_dim};
  }
  // Checks and uploads the batch, runs every layer and leaves the wanted rows' logits in logits_.
  absl::Status RunLayers(const BatchInput& batch);
  // The kernels of a forward over the uploaded batch: embedding, layers, the `rows` logit rows.
  absl::Status RunModel(int64_t n, int32_t seqs, int32_t max_blocks, int64_t rows,
                        std::span<const kvcache::LayerPageCopy> loads,
                        std::span<const kvcache::LayerPageCopy> stores);
  absl::Status Logits(int64_t num_tokens, int64_t rows);
  // model_runner_graphs.cc: a decode step (one new token per sequence, all of pool 0, every
  // row's logits, no LayerKV, no scores) is padded to a bucket shape and RunLayers runs it as a
  // graph (Device::RunGraph).
  struct GraphShape {
    int32_t seqs = 0;        // the bucket's sequences (>= the batch's), one token each
    int32_t max_blocks = 0;  // the bucket's block-table width (>= the batch's)
    uint64_t key() const { return (static_cast<uint64_t>(seqs) << 32) | max_blocks; }
  };
  std::optional<GraphShape> DecodeGraphShape(const BatchInput& b) const;
  // The batch padded to `shape` in padded_*: extra sequences of one token at position 0 whose
  // K/V goes to, and whose attention reads, the padding page only.
  BatchInput PadDecodeBatch(const BatchInput& b, const GraphShape& shape);
  float* F(const std::unique_ptr<kernels::Buffer>& b) { return b ? b->as<float>() : nullptr; }

  kernels::Device* device_;
  const ModelConfig& config_;
  const ModelWeights& weights_;
  RunnerConfig rc_;
  kvcache::KvLayout layout_;
  int64_t q_dim_ = 0, kv_dim_ = 0;  // heads * head_dim

  // Device workspaces; shapes for T = max_batch_tokens.
  std::unique_ptr<kernels::Buffer> x_;        // [T, hidden] residual stream
  std::unique_ptr<kernels::Buffer> xn_;       // [T, hidden] normed
  std::unique_ptr<kernels::Buffer> q_, k_, v_;  // [T, q_dim], [T, kv_dim], [T, kv_dim]
  std::unique_ptr<kernels::Buffer> attn_;     // [T, q_dim]
  std::unique_ptr<kernels::Buffer> gate_, up_;  // [T, intermediate]
  std::unique_ptr<kernels::Buffer> rows_;     // [max_logit_rows, hidden] gathered final states
  std::vector<std::unique_ptr<kernels::Buffer>> weight_buffers_;  // device copies of matrices
  kernels::MatrixView embed_tokens_, lm_head_;  // as PlaceMatrix placed them
  std::unique_ptr<kernels::Buffer> logits_;   // [max_logit_rows, vocab]
  std::unique_ptr<kernels::Buffer> argmax_;   // [max_logit_rows] int32 (argmax or sampled ids)
  // ForwardSample's inputs: [max_logit_rows] SamplingRow, and penalty entries (grown on demand).
  std::unique_ptr<kernels::Buffer> sampling_rows_, penalties_;
  std::unique_ptr<kernels::Buffer> kv_arena_;  // [num_kv_pages, page elements]
  // Device copies of the batch description.
  std::unique_ptr<kernels::Buffer> token_ids_, positions_, query_start_, context_lens_;
  std::unique_ptr<kernels::Buffer> block_tables_, slots_, logit_rows_;
  std::unique_ptr<kernels::Buffer> inv_freq_, final_norm_;
  std::vector<DeviceLayer> layers_;
  std::vector<ExtraPool> extra_;
  std::vector<PoolRange> ranges_;  // this Forward's pools, pool 0 first
  // Per pool range, device copies: query_start rebased to its first row, quant blocks per seq.
  std::unique_ptr<kernels::Buffer> pool_query_start_, quant_blocks_, quant_before_, quant_after_;
  std::unique_ptr<kernels::Buffer> score_from_, scores_;  // grown on demand
  std::unique_ptr<kernels::Buffer> compact_tables_, compact_keep_, compact_num_keep_;
  std::vector<float> scores_host_;
  // Graphs: a page past num_kv_pages that only padding rows use (-1: graphs off), the padded
  // batch's host arrays, and how many forwards ran as graphs.
  int32_t pad_page_ = -1;
  std::vector<int32_t> padded_ids_, padded_positions_, padded_query_start_, padded_context_lens_,
      padded_tables_, padded_rows_;
  std::vector<int64_t> padded_slots_;
  int64_t num_graph_steps_ = 0;
  int64_t score_stride_ = 0;
  int32_t score_seqs_ = 0;  // sequences in scores_host_ per layer (0: no scores this batch)
};

}  // namespace strata::engine
