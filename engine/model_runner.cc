#include "engine/model_runner.h"

#include <algorithm>
#include <cmath>

#include "engine/layer_stream.h"

namespace strata::engine {

using kernels::Buffer;

absl::Status RunnerConfig::Validate() const {
  if (max_batch_tokens <= 0) return absl::InvalidArgumentError("max_batch_tokens must be > 0");
  if (max_num_seqs <= 0) return absl::InvalidArgumentError("max_num_seqs must be > 0");
  if (max_logit_rows <= 0) return absl::InvalidArgumentError("max_logit_rows must be > 0");
  if (num_kv_pages <= 0) return absl::InvalidArgumentError("num_kv_pages must be > 0");
  if (block_size <= 0) return absl::InvalidArgumentError("block_size must be > 0");
  if (max_model_len < 0) return absl::InvalidArgumentError("max_model_len must be >= 0");
  return absl::OkStatus();
}

ModelRunner::ModelRunner(kernels::Device* device, const ModelConfig& config,
                         const ModelWeights& weights, const RunnerConfig& rc)
    : device_(device), config_(config), weights_(weights), rc_(rc) {
  if (rc_.max_model_len == 0) rc_.max_model_len = config.max_position_embeddings;
  layout_ = kvcache::KvLayout{.num_layers = static_cast<int32_t>(config.num_layers),
                              .num_kv_heads = static_cast<int32_t>(config.num_kv_heads),
                              .head_dim = static_cast<int32_t>(config.head_dim),
                              .block_size = rc.block_size};
  q_dim_ = config.num_heads * config.head_dim;
  kv_dim_ = config.num_kv_heads * config.head_dim;
}

absl::StatusOr<std::unique_ptr<ModelRunner>> ModelRunner::Create(kernels::Device* device,
                                                                 const ModelConfig& config,
                                                                 const ModelWeights& weights,
                                                                 const RunnerConfig& rc) {
  RETURN_IF_ERROR(rc.Validate());
  RETURN_IF_ERROR(config.Validate());
  std::unique_ptr<ModelRunner> runner(new ModelRunner(device, config, weights, rc));
  RETURN_IF_ERROR(runner->layout_.Validate());
  RETURN_IF_ERROR(runner->Init());
  return runner;
}

absl::StatusOr<std::unique_ptr<Buffer>> ModelRunner::Upload(std::span<const float> host) {
  if (host.empty()) return std::unique_ptr<Buffer>();
  ASSIGN_OR_RETURN(auto buf, device_->Allocate(host.size_bytes()));
  RETURN_IF_ERROR(device_->CopyToDevice(buf->data(), host.data(), host.size_bytes()));
  return buf;
}

absl::StatusOr<kernels::MatrixView> ModelRunner::PlaceMatrix(const kernels::MatrixView& host) {
  if (device_->host_visible() || host.data == nullptr) return host;
  const size_t bytes = static_cast<size_t>(host.rows * host.cols) * DTypeSize(host.dtype);
  ASSIGN_OR_RETURN(auto buf, device_->Allocate(bytes));
  RETURN_IF_ERROR(device_->CopyToDevice(buf->data(), host.data, bytes));
  kernels::MatrixView placed = host;
  placed.data = buf->data();
  weight_buffers_.push_back(std::move(buf));
  return placed;
}

absl::Status ModelRunner::PlaceLayerMatrices(const LayerWeights& w, DeviceLayer* d) {
  ASSIGN_OR_RETURN(d->q_proj, PlaceMatrix(w.q_proj));
  ASSIGN_OR_RETURN(d->k_proj, PlaceMatrix(w.k_proj));
  ASSIGN_OR_RETURN(d->v_proj, PlaceMatrix(w.v_proj));
  ASSIGN_OR_RETURN(d->o_proj, PlaceMatrix(w.o_proj));
  ASSIGN_OR_RETURN(d->gate_proj, PlaceMatrix(w.gate_proj));
  ASSIGN_OR_RETURN(d->up_proj, PlaceMatrix(w.up_proj));
  ASSIGN_OR_RETURN(d->down_proj, PlaceMatrix(w.down_proj));
  return absl::OkStatus();
}

absl::Status ModelRunner::Init() {
  const int64_t t = rc_.max_batch_tokens, h = config_.hidden_size;
  const int64_t inter = config_.intermediate_size, vocab = config_.vocab_size;
  auto alloc = [&](std::unique_ptr<Buffer>* out, size_t bytes) -> absl::Status {
    ASSIGN_OR_RETURN(*out, device_->Allocate(bytes));
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(alloc(&x_, t * h * 4));
  RETURN_IF_ERROR(alloc(&xn_, t * h * 4));
  RETURN_IF_ERROR(alloc(&q_, t * q_dim_ * 4));
  RETURN_IF_ERROR(alloc(&k_, t * kv_dim_ * 4));
  RETURN_IF_ERROR(alloc(&v_, t * kv_dim_ * 4));
  RETURN_IF_ERROR(alloc(&attn_, t * q_dim_ * 4));
  RETURN_IF_ERROR(alloc(&gate_, t * inter * 4));
  RETURN_IF_ERROR(alloc(&up_, t * inter * 4));
  RETURN_IF_ERROR(alloc(&rows_, rc_.max_logit_rows * h * 4));
  RETURN_IF_ERROR(alloc(&logits_, rc_.max_logit_rows * vocab * 4));
  const int64_t layers = config_.num_layers, seqs = rc_.max_num_seqs;
  RETURN_IF_ERROR(alloc(&token_ids_, t * 4));
  RETURN_IF_ERROR(alloc(&positions_, t * 4));
  RETURN_IF_ERROR(alloc(&query_start_, (seqs + 1) * 4));
  RETURN_IF_ERROR(alloc(&context_lens_, seqs * 4));
  RETURN_IF_ERROR(alloc(&block_tables_, layers * seqs * max_blocks_per_seq() * 4));
  RETURN_IF_ERROR(alloc(&slots_, layers * t * 8));
  RETURN_IF_ERROR(alloc(&logit_rows_, rc_.max_logit_rows * 4));
  RETURN_IF_ERROR(alloc(&argmax_, rc_.max_logit_rows * 4));
  RETURN_IF_ERROR(alloc(&sampling_rows_, rc_.max_logit_rows * sizeof(kernels::SamplingRow)));
  RETURN_IF_ERROR(InitPools());
  std::vector<float> inv_freq = RopeInvFreq(config_);
  ASSIGN_OR_RETURN(inv_freq_, Upload(inv_freq));
  ASSIGN_OR_RETURN(final_norm_, Upload(weights_.final_norm));
  ASSIGN_OR_RETURN(embed_tokens_, PlaceMatrix(weights_.embed_tokens));
  lm_head_ = embed_tokens_;  // tied embeddings share one copy
  if (weights_.lm_head.data != weights_.embed_tokens.data) {
    ASSIGN_OR_RETURN(lm_head_, PlaceMatrix(weights_.lm_head));
  }
  layers_.resize(layers);
  for (int64_t l = 0; l < layers; ++l) {
    const LayerWeights& w = weights_.layers[l];
    DeviceLayer& d = layers_[l];
    ASSIGN_OR_RETURN(d.input_norm, Upload(w.input_norm));
    ASSIGN_OR_RETURN(d.post_norm, Upload(w.post_attention_norm));
    ASSIGN_OR_RETURN(d.q_bias, Upload(w.q_bias));
    ASSIGN_OR_RETURN(d.k_bias, Upload(w.k_bias));
    ASSIGN_OR_RETURN(d.v_bias, Upload(w.v_bias));
    RETURN_IF_ERROR(PlaceLayerMatrices(w, &d));
  }
  return InitKvArena();
}

absl::Status ModelRunner::InitKvArena() {
  const bool graphs = rc_.decode_graphs && device_->supports_graphs();
  const int32_t extra_pages = graphs ? 1 : 0;  // the padding page
  const std::optional<kernels::Device::MemoryInfo> memory = device_->memory_info();
  if (rc_.fit_kv_pages && memory) {
    const size_t reserve = std::max(memory->total_bytes / 20, kKvMemoryReserve);
    const size_t usable = memory->free_bytes > reserve ? memory->free_bytes - reserve : 0;
    const int64_t fit = static_cast<int64_t>(usable / layout_.PageBytes()) - extra_pages;
    if (fit < 1) {
      return absl::ResourceExhaustedError(
          StrCat(device_->name(), " has no memory left for the KV cache (", memory->free_bytes,
                 " bytes free after the weights and workspaces)"));
    }
    rc_.num_kv_pages = static_cast<int32_t>(std::min<int64_t>(rc_.num_kv_pages, fit));
  }
  if (graphs) pad_page_ = rc_.num_kv_pages;
  ASSIGN_OR_RETURN(kv_arena_,
                   device_->Allocate(static_cast<size_t>(rc_.num_kv_pages + extra_pages) *
                                     layout_.PageBytes()));
  return absl::OkStatus();
}

absl::Status ModelRunner::CheckBatch(const BatchInput& b) {
  const int64_t n = static_cast<int64_t>(b.token_ids.size());
  const int64_t seqs = static_cast<int64_t>(b.context_lens.size());
  const int64_t layers = config_.num_layers;
  auto bad = [](std::string_view what) {
    return absl::InvalidArgumentError(StrCat("forward batch: ", what));
  };
  if (n == 0 || n > rc_.max_batch_tokens) return bad("token count out of range");
  if (seqs == 0 || seqs > rc_.max_num_seqs) return bad("sequence count out of range");
  if (static_cast<int64_t>(b.positions.size()) != n) return bad("positions size");
  if (static_cast<int64_t>(b.query_start.size()) != seqs + 1) return bad("query_start size");
  if (b.query_start[0] != 0 || b.query_start[seqs] != n) return bad("query_start bounds");
  if (b.max_blocks_per_seq <= 0 || b.max_blocks_per_seq > max_blocks_per_seq()) {
    return bad("max_blocks_per_seq out of range");
  }
  if (static_cast<int64_t>(b.block_tables.size()) != layers * seqs * b.max_blocks_per_seq) {
    return bad("block_tables size");
  }
  if (static_cast<int64_t>(b.slots.size()) != layers * n) return bad("slots size");
  if (b.logit_rows.size() > static_cast<size_t>(rc_.max_logit_rows)) return bad("too many rows");
  for (int32_t id : b.token_ids) {
    if (id < 0 || id >= config_.vocab_size) {
      return absl::InvalidArgumentError(
          StrCat("token id ", id, " is outside the vocabulary [0, ", config_.vocab_size, ")"));
    }
  }
  RETURN_IF_ERROR(CheckPoolBatch(b));  // fills ranges_
  const int64_t pool0_seqs = ranges_.empty() || ranges_[0].pool != 0 ? 0 : ranges_[0].end_seq;
  const int64_t pool0_tokens = pool0_seqs == 0 ? 0 : ranges_[0].end_token;
  for (int64_t s = 0; s < seqs; ++s) {
    int32_t q = b.query_start[s + 1] - b.query_start[s];
    if (q < 0 || b.context_lens[s] < q || b.context_lens[s] > rc_.max_model_len ||
        (s < pool0_seqs && layout_.BlocksFor(b.context_lens[s]) > b.max_blocks_per_seq)) {
      return bad("sequence lengths");
    }
  }
  for (int32_t r : b.logit_rows) {
    if (r < 0 || r >= n) return bad("logit row out of range");
  }
  // Page ids come from the engine's PagePool, but a wrong one would write outside the arena.
  // (Pool 0's part here; the other pools' kernels check their own pages and slots.)
  const int64_t num_slots = static_cast<int64_t>(rc_.num_kv_pages) * layout_.block_size;
  for (int64_t l = 0; l < layers; ++l) {
    for (int64_t t = 0; t < pool0_tokens; ++t) {
      const int64_t slot = b.slots[l * n + t];
      if (slot < 0 || slot >= num_slots) return bad("KV slot outside the arena");
    }
    for (int64_t i = 0; i < pool0_seqs * b.max_blocks_per_seq; ++i) {
      const int32_t page = b.block_tables[(l * seqs) * b.max_blocks_per_seq + i];
      if (page < 0 || page >= rc_.num_kv_pages) return bad("page id outside the arena");
    }
  }
  for (auto copies : {b.layer_loads, b.layer_stores}) {
    for (const kvcache::LayerPageCopy& c : copies) {
      if (c.layer < 0 || c.layer >= layers || c.page < 0 || c.page >= rc_.num_kv_pages ||
          c.host == nullptr) {
        return bad("layer page copy out of range");
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ModelRunner::UploadBatch(const BatchInput& b) {
  auto up = [&](const std::unique_ptr<Buffer>& dst, const auto& span) {
    return device_->CopyToDevice(dst->data(), span.data(), span.size_bytes());
  };
  RETURN_IF_ERROR(up(token_ids_, b.token_ids));
  RETURN_IF_ERROR(up(positions_, b.positions));
  RETURN_IF_ERROR(up(query_start_, b.query_start));
  RETURN_IF_ERROR(up(context_lens_, b.context_lens));
  RETURN_IF_ERROR(up(block_tables_, b.block_tables));
  RETURN_IF_ERROR(up(slots_, b.slots));
  if (!b.logit_rows.empty()) RETURN_IF_ERROR(up(logit_rows_, b.logit_rows));
  return UploadPoolBatch(b);
}

absl::Status ModelRunner::Forward(const BatchInput& batch, std::span<float> logits) {
  if (logits.size() < batch.logit_rows.size() * config_.vocab_size) {
    return absl::InvalidArgumentError("forward: logits buffer too small");
  }
  RETURN_IF_ERROR(RunLayers(batch));
  const int64_t r = static_cast<int64_t>(batch.logit_rows.size());
  if (r == 0) return absl::OkStatus();
  return device_->CopyToHost(logits.data(), logits_->data(), r * config_.vocab_size * 4);
}

absl::Status ModelRunner::ForwardArgmax(const BatchInput& batch, std::span<int32_t> argmax) {
  if (argmax.size() < batch.logit_rows.size()) {
    return absl::InvalidArgumentError("forward: argmax buffer too small");
  }
  RETURN_IF_ERROR(RunLayers(batch));
  const int64_t r = static_cast<int64_t>(batch.logit_rows.size());
  if (r == 0) return absl::OkStatus();
  RETURN_IF_ERROR(device_->Argmax({.logits = F(logits_), .out = argmax_->as<int32_t>(), .rows = r,
                                   .cols = config_.vocab_size}));
  return device_->CopyToHost(argmax.data(), argmax_->data(), r * sizeof(int32_t));
}

absl::Status ModelRunner::ForwardSample(const BatchInput& batch,
                                        std::span<const kernels::SamplingRow> rows,
                                        std::span<const kernels::PenaltyEntry> penalties,
                                        std::span<int32_t> ids) {
  const int64_t r = static_cast<int64_t>(batch.logit_rows.size());
  if (static_cast<int64_t>(rows.size()) != r || static_cast<int64_t>(ids.size()) < r) {
    return absl::InvalidArgumentError("forward: one sampling row and one id per logit row");
  }
  RETURN_IF_ERROR(RunLayers(batch));
  if (r == 0) return absl::OkStatus();
  RETURN_IF_ERROR(device_->CopyToDevice(sampling_rows_->data(), rows.data(), rows.size_bytes()));
  const auto* params = sampling_rows_->as<const kernels::SamplingRow>();
  if (!penalties.empty()) {
    RETURN_IF_ERROR(UploadGrown(&penalties_, penalties));
    RETURN_IF_ERROR(device_->ApplyPenalties(
        {.logits = F(logits_), .rows_params = params,
         .entries = penalties_->as<const kernels::PenaltyEntry>(),
         .num_entries = static_cast<int64_t>(penalties.size()), .rows = r,
         .cols = config_.vocab_size}));
  }
  RETURN_IF_ERROR(device_->Sample({.logits = F(logits_), .rows_params = params,
                                   .out = argmax_->as<int32_t>(), .rows = r,
                                   .cols = config_.vocab_size}));
  return device_->CopyToHost(ids.data(), argmax_->data(), r * sizeof(int32_t));
}

absl::Status ModelRunner::RunLayers(const BatchInput& batch) {
  RETURN_IF_ERROR(CheckBatch(batch));
  const std::optional<GraphShape> shape = DecodeGraphShape(batch);
  BatchInput padded;
  if (shape) {
    padded = PadDecodeBatch(batch, *shape);
    RETURN_IF_ERROR(CheckPoolBatch(padded));  // ranges_: one pool-0 range over the padded rows
  }
  const BatchInput& in = shape ? padded : batch;
  RETURN_IF_ERROR(UploadBatch(in));
  RETURN_IF_ERROR(PrepareScores(in));
  if (!shape) {
    return RunModel(static_cast<int64_t>(in.token_ids.size()),
                    static_cast<int32_t>(in.context_lens.size()), in.max_blocks_per_seq,
                    static_cast<int64_t>(in.logit_rows.size()), in.layer_loads, in.layer_stores);
  }
  ++num_graph_steps_;
  return device_->RunGraph(shape->key(), [this, s = *shape] {
    return RunModel(s.seqs, s.seqs, s.max_blocks, s.seqs, {}, {});
  });
}

absl::Status ModelRunner::RunModel(int64_t n, int32_t seqs, int32_t max_blocks, int64_t rows,
                                   std::span<const kvcache::LayerPageCopy> loads,
                                   std::span<const kvcache::LayerPageCopy> stores) {
  RETURN_IF_ERROR(device_->Embedding({.table = embed_tokens_,
                                      .ids = token_ids_->as<int32_t>(),
                                      .out = F(x_),
                                      .num_tokens = n}));
  LayerStream stream(this, layout_.PageBytes(), config_.num_layers, loads, stores);
  for (int32_t l = 0; l < config_.num_layers; ++l) {
    RETURN_IF_ERROR(stream.BeforeLayer(l));
    RETURN_IF_ERROR(RunLayer(l, n, seqs, max_blocks));
    RETURN_IF_ERROR(stream.AfterLayer(l));
  }
  return Logits(n, rows);
}

absl::Status ModelRunner::RunLayer(int32_t l, int64_t n, int32_t seqs, int32_t max_blocks) {
  const float eps = static_cast<float>(config_.rms_norm_eps);
  const int64_t h = config_.hidden_size;
  RETURN_IF_ERROR(device_->RmsNorm({.x = F(x_), .weight = F(layers_[l].input_norm),
                                    .out = F(xn_), .num_tokens = n, .hidden = h, .eps = eps}));
  RETURN_IF_ERROR(Attention(l, n, seqs, max_blocks));
  RETURN_IF_ERROR(device_->RmsNorm({.x = F(x_), .weight = F(layers_[l].post_norm),
                                    .out = F(xn_), .num_tokens = n, .hidden = h, .eps = eps}));
  return Mlp(l, n);
}

absl::Status ModelRunner::Attention(int32_t l, int64_t n, int32_t seqs, int32_t max_blocks) {
  const DeviceLayer& d = layers_[l];
  RETURN_IF_ERROR(device_->Gemm({.a = F(xn_), .b = d.q_proj, .bias = F(d.q_bias), .c = F(q_), .m = n}));
  RETURN_IF_ERROR(device_->Gemm({.a = F(xn_), .b = d.k_proj, .bias = F(d.k_bias), .c = F(k_), .m = n}));
  RETURN_IF_ERROR(device_->Gemm({.a = F(xn_), .b = d.v_proj, .bias = F(d.v_bias), .c = F(v_), .m = n}));
  RETURN_IF_ERROR(device_->Rope({.q = F(q_), .k = F(k_), .positions = positions_->as<int32_t>(),
                                 .inv_freq = F(inv_freq_), .num_tokens = n,
                                 .num_q_heads = static_cast<int32_t>(config_.num_heads),
                                 .num_kv_heads = layout_.num_kv_heads,
                                 .head_dim = layout_.head_dim}));
  for (const PoolRange& r : ranges_) {
    if (r.pool != 0) {
      RETURN_IF_ERROR(PoolAttention(r, l, n, seqs, max_blocks));
      continue;
    }
    // Pool 0 (f32) comes first in the batch: its rows and sequences start at 0.
    const kernels::KvPoolView kv = Pool0View();
    RETURN_IF_ERROR(device_->WriteKv({.k = F(k_), .v = F(v_),
                                      .slots = slots_->as<int64_t>() + l * n,
                                      .num_tokens = r.end_token, .kv = kv}));
    const int32_t* tables =
        block_tables_->as<int32_t>() + static_cast<int64_t>(l) * seqs * max_blocks;
    RETURN_IF_ERROR(device_->PagedAttention(
        {.q = F(q_), .out = F(attn_), .kv = kv, .query_start = query_start_->as<int32_t>(),
         .context_lens = context_lens_->as<int32_t>(), .block_tables = tables,
         .num_seqs = r.end_seq, .max_blocks_per_seq = max_blocks,
         .num_q_heads = static_cast<int32_t>(config_.num_heads),
         .scale = 1.0f / std::sqrt(static_cast<float>(config_.head_dim)),
         .num_tokens = r.end_token}));
    RETURN_IF_ERROR(LayerScores(l, r.end_seq, seqs, max_blocks));
  }
  // The residual add is fused into the output projection.
  return device_->Gemm({.a = F(attn_), .b = d.o_proj, .c = F(x_), .m = n, .accumulate = true});
}

absl::Status ModelRunner::Mlp(int32_t l, int64_t n) {
  const DeviceLayer& w = layers_[l];
  RETURN_IF_ERROR(device_->Gemm({.a = F(xn_), .b = w.gate_proj, .c = F(gate_), .m = n}));
  RETURN_IF_ERROR(device_->Gemm({.a = F(xn_), .b = w.up_proj, .c = F(up_), .m = n}));
  RETURN_IF_ERROR(device_->SwiGlu({.gate = F(gate_), .up = F(up_), .out = F(gate_),
                                   .num_tokens = n, .intermediate = config_.intermediate_size}));
  return device_->Gemm({.a = F(gate_), .b = w.down_proj, .c = F(x_), .m = n, .accumulate = true});
}

absl::Status ModelRunner::Logits(int64_t n, int64_t r) {
  if (r == 0) return absl::OkStatus();
  const int64_t h = config_.hidden_size;
  // Gather the wanted rows of the residual stream (Embedding over it is a row gather), then
  // norm and project only those: the lm_head is the biggest GEMM of a decode step.
  RETURN_IF_ERROR(device_->Embedding(
      {.table = {.data = F(x_), .dtype = DType::kF32, .rows = n, .cols = h},
       .ids = logit_rows_->as<int32_t>(), .out = F(rows_), .num_tokens = r}));
  RETURN_IF_ERROR(device_->RmsNorm({.x = F(rows_), .weight = F(final_norm_), .out = F(rows_),
                                    .num_tokens = r, .hidden = h,
                                    .eps = static_cast<float>(config_.rms_norm_eps)}));
  return device_->Gemm({.a = F(rows_), .b = lm_head_, .c = F(logits_), .m = r});
}

absl::Status ModelRunner::ReadPage(int32_t page, std::span<std::byte> out) {
  if (page < 0 || page >= rc_.num_kv_pages || out.size() != layout_.PageBytes()) {
    return absl::InvalidArgumentError(StrCat("ReadPage: bad page ", page, " or size ", out.size()));
  }
  const std::byte* src = reinterpret_cast<const std::byte*>(kv_arena_->data()) +
                         static_cast<size_t>(page) * layout_.PageBytes();
  return device_->CopyToHost(out.data(), src, out.size());
}

absl::Status ModelRunner::WritePage(int32_t page, std::span<const std::byte> in) {
  if (page < 0 || page >= rc_.num_kv_pages || in.size() != layout_.PageBytes()) {
    return absl::InvalidArgumentError(StrCat("WritePage: bad page ", page, " or size ", in.size()));
  }
  std::byte* dst = reinterpret_cast<std::byte*>(kv_arena_->data()) +
                   static_cast<size_t>(page) * layout_.PageBytes();
  return device_->CopyToDevice(dst, in.data(), in.size());
}

}  // namespace strata::engine
