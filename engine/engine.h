// Engine: the continuous-batching loop of DESIGN.md §2. One engine thread owns the Scheduler, the
// KvCacheManager and the request table; front-end threads talk to it only through the inbox
// (Submit, Cancel) and each request's OutputChannel.
//
//   front ends --Submit/Cancel--> inbox --> engine thread: drain inbox, Schedule, build batch,
//                                            Forward, sample, Update --> OutputChannel per request
//
// Submit, Cancel and Stats are thread-safe. The destructor stops the thread; requests still in
// flight get a final event with finish_reason "abort".
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "engine/model.h"
#include "engine/model_runner.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "engine/slo.h"
#include "kernels/device.h"

namespace strata::engine {

struct EngineConfig {
  std::string backend = "auto";         // auto | cpu | cuda
  int threads = 0;                      // CPU kernel threads; 0 = all cores
  bool cuda_graphs = true;              // decode steps as CUDA graphs (RunnerConfig::decode_graphs)
  SchedulerConfig scheduler;
  int32_t block_size = 16;              // tokens per KV page
  int32_t num_kv_pages = 0;             // device-tier pages; 0 = room for max_num_seqs full
                                        // sequences of max_model_len tokens
  int64_t max_model_len = 0;            // 0 = min(model maximum, 4096)
  bool enable_prefix_caching = true;
  // Host RAM and disk below the device pool (DESIGN.md §5); host capacity 0 = none. The disk
  // tier's namespace is filled in from the model by the engine.
  kvcache::TierOptions tiers;
  // Device pools of other KV codecs than the f32 pool above (DESIGN.md §5), each with its own
  // pages (KIVI pools: block_size a multiple of 32). A request's kv_access.codec picks its pool.
  std::vector<KvPoolSpec> codec_pools;

  absl::Status Validate() const;
};

struct RequestOptions {
  std::vector<int32_t> prompt_ids;
  int64_t max_tokens = 16;
  SamplingParams sampling;
  std::vector<int32_t> stop_token_ids;
  std::optional<std::string> cache_salt;  // isolates prefix-cache entries (tenants)
  kvcache::KvAccess kv_access;            // from its KV policy: prefix cache, lower tiers
  int32_t n = 1;  // completions of the prompt; siblings share its KV blocks. With a seed,
                  // sibling i samples with seed + i.
  // -1: no logprobs. k >= 0: each event carries the sampled token's logprob and the k most
  // likely tokens' (log-softmax of the raw model logits, before penalties and temperature).
  int32_t logprobs = -1;
  SloSpec slo;  // latency class (scheduler.policy slo); default: no targets, priority 0
  // Called on the engine thread after events were pushed to any of this request's channels, so a
  // front end can drain them on its own executor instead of blocking a thread on Pop(). Must be
  // cheap and must not block or call back into the engine.
  std::function<void()> notify;
};

struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
};

// One event per generated token; the last one carries the finish reason.
struct TokenEvent {
  int32_t token = -1;            // -1 when the request ended without a new token (abort, rejected)
  std::string finish_reason;     // "" | "length" | "stop" | "abort" | "rejected"
  std::string reason;            // "rejected": why (the SLO class and its unreachable target)
  int64_t num_cached_tokens = 0; // prompt tokens served from the prefix cache (every tier) ...
  int64_t num_host_cached_tokens = 0;  // ... of them loaded from host RAM ...
  int64_t num_disk_cached_tokens = 0;  // ... of which had come up from disk
  double first_scheduled_at = 0; // NowSeconds() when the request first joined a step
  std::optional<TokenLogprob> logprob;  // the sampled token's, when requested
  std::vector<TokenLogprob> top_logprobs;  // the k most likely, descending
};

// Single-producer (engine thread) / single-consumer (front end) queue of a request's events.
class OutputChannel {
 public:
  void Push(TokenEvent event);
  TokenEvent Pop();  // blocks until an event is there
  std::optional<TokenEvent> TryPop();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<TokenEvent> events_;
};

struct EngineStats {
  int32_t num_running = 0;
  int32_t num_waiting = 0;
  int32_t num_free_pages = 0;
  int32_t num_pages = 0;
  int64_t num_steps = 0;
  int64_t num_graph_steps = 0;  // of them run as a captured graph (CUDA decode steps)
  int64_t num_preemptions = 0;
  int64_t num_swap_preemptions = 0;  // of them swapped to host (the rest recompute)
  int64_t num_generated_tokens = 0;
  int64_t num_step_errors = 0;  // forward passes that failed (their requests were aborted)
  int64_t num_rejected = 0;     // requests rejected by SLO admission
  double last_step_s = 0;       // measured duration of the last step
  double last_predicted_step_s = 0;  // the cost model's prediction for it
  double step_error_ratio = 0;  // mean |predicted - measured| / measured, recent steps
  double sum_step_s = 0;        // all steps' measured time, and predicted time
  double sum_predicted_step_s = 0;
  struct Pool {                  // one device KV pool per codec; [0] is the f32 pool
    std::string codec;
    int32_t block_size = 0;
    int64_t page_bytes = 0;
    int32_t num_pages = 0;
    int32_t num_free_pages = 0;  // free or cached-but-unreferenced
  };
  std::vector<Pool> pools;
  bool has_tiers = false;        // a host (and maybe disk) tier is configured
  kvcache::TierStats tiers;      // their counters
};

class Engine {
 public:
  // `model` must outlive the engine.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const Model& model,
                                                        const EngineConfig& config);
  ~Engine();

  struct Submission {
    RequestId id;                            // the first completion
    std::shared_ptr<OutputChannel> channel;  // the first completion's events
    std::vector<RequestId> ids;              // all n completions, in order
    std::vector<std::shared_ptr<OutputChannel>> channels;
  };
  // Validates (empty prompt, ids outside the vocabulary, length over max_model_len, bad
  // sampling) and queues the request; nothing is queued on error.
  absl::StatusOr<Submission> Submit(RequestOptions options);
  // Frees the request's KV and batch slot within one step; unknown ids are ignored.
  void Cancel(RequestId id);
  EngineStats Stats() const;
  int64_t max_model_len() const { return runner_->runner_config().max_model_len; }
  std::string device_name() const { return device_->name(); }  // "cpu", "cuda:0"

 private:
  struct Pending {
    std::vector<RequestId> ids;  // n of them
    RequestOptions options;
    std::vector<std::shared_ptr<OutputChannel>> channels;
  };
  Engine(const Model& model, const EngineConfig& config);
  absl::Status Init();
  absl::Status InitTiers();
  kvcache::PrefixSeed PrefixSeed(const std::optional<std::string>& cache_salt,
                                 int32_t pool = 0) const;
  // The pool holding `codec`'s pages, or nullopt.
  std::optional<int32_t> PoolOf(kernels::KvCodec codec) const;
  absl::Status InitPools(int64_t max_len);
  absl::Status CheckKvAccess(const kvcache::KvAccess& access) const;
  void Loop();
  bool DrainInbox(bool block);
  void Admit(Pending pending);
  std::unique_ptr<Sequence> MakeSequence(RequestId id, const RequestOptions& options,
                                         int32_t sibling) const;
  // Runs one step; false when there was nothing to run (and nothing was rejected).
  absl::StatusOr<bool> Step();
  void WakeFromTiers();
  // Where a step's tokens are chosen. kArgmax: every sampled row is a plain argmax, reduced on
  // the device (ModelRunner::ForwardArgmax). kDevice: no row wants logprobs, so penalties and
  // sampling run on the device (ModelRunner::ForwardSample). kHost: the logits come back and
  // each row's Sampler runs here (logprobs need the raw rows). Only ids come back but for kHost.
  enum class Sampling { kArgmax, kDevice, kHost };
  Sampling StepSampling(const StepPlan& plan) const;
  // Runs the step's forward pass and leaves the sampled ids in device_ids_ (kArgmax, kDevice)
  // or the logit rows in logits_ (kHost).
  absl::Status ForwardStep(const StepPlan& plan, const BatchInput& input, Sampling sampling);
  // The sampled rows' parameters (each drawing its uniform from its request's stream) and
  // penalty entries, for ForwardSample.
  void BuildSamplingRows(const StepPlan& plan);
  // Samples every row of the step (or takes the device's ids when `device_ids` is not empty);
  // `events` gets each sampled sequence's timing and, when it asked, its logprobs.
  std::vector<int32_t> SampleRows(const StepPlan& plan, std::span<const int32_t> device_ids,
                                  std::unordered_map<RequestId, TokenEvent>* events);
  void Deliver(RequestId id, TokenEvent event);
  void FailAll(const absl::Status& status);
  void PublishStats(int64_t num_steps, int64_t num_generated_tokens);
  void Reject(const std::vector<Rejection>& rejected);
  void ObserveStep(const StepFeatures& features, double seconds);

  const Model& model_;
  EngineConfig config_;
  std::unique_ptr<kernels::Device> device_;
  std::unique_ptr<ModelRunner> runner_;
  std::unique_ptr<kvcache::TieredStore> tiers_;   // engine thread only (I/O threads: wake)
  std::unique_ptr<kvcache::KvCacheManager> kv_;   // engine thread only; pool 0 (f32)
  std::vector<std::unique_ptr<kvcache::KvCacheManager>> codec_kv_;  // pools 1, 2, ...
  CostModel cost_;                                // engine thread only
  std::unique_ptr<Scheduler> scheduler_;          // engine thread only
  struct Route {
    std::shared_ptr<OutputChannel> channel;
    std::function<void()> notify;
  };
  std::unordered_map<RequestId, Route> routes_;   // engine thread only
  std::vector<float> logits_;                     // engine thread only
  std::vector<int32_t> device_ids_;               // engine thread only
  std::vector<kernels::SamplingRow> sampling_rows_;  // engine thread only
  std::vector<kernels::PenaltyEntry> penalties_;     // engine thread only

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> inbox_;         // guarded by mu_
  std::vector<RequestId> cancels_;    // guarded by mu_
  EngineStats stats_;                 // guarded by mu_
  bool stopping_ = false;             // guarded by mu_
  bool tier_event_ = false;           // guarded by mu_: a disk read finished
  std::atomic<RequestId> next_id_{1};
  std::thread thread_;
};

}  // namespace strata::engine
