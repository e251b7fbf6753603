// Scheduler: the vLLM-v1-style step planner (DESIGN.md §2). There are no prefill or decode
// phases: each sequence has num_computed_tokens and tokens(); a step gives every scheduled
// sequence some new tokens under a token budget, so decode tokens and prefill chunks share one
// variable-length batch.
//
//   Schedule():  running sequences first, in admission order (a decode is 1 token, an unfinished
//                prefill continues with the next chunk), then waiting ones in arrival order,
//                while the token budget and max_num_seqs allow. Out of KV pages is a normal
//                outcome: the newest running sequence is preempted (its KV swapped to host
//                when that is cheaper than recomputing it, else released and recomputed when it
//                is admitted again), or the waiting queue waits. A waiting sequence whose prefix
//                is coming up from disk is skipped until its blocks land; the others go on.
//   policy slo:  (scheduler_slo.cc) decodes first; then prompt chunks of running and waiting
//                sequences by priority, then deadline (arrival + TTFT target). A waiting request
//                whose TTFT target the cost model says is unreachable is rejected (class
//                `reject`) or served after the others (best effort); a prompt chunk shrinks so
//                that the predicted step time keeps every running sequence's TPOT slack
//                (tpot x tokens generated - decode time so far) positive; a higher-priority
//                request preempts a lower one when max_num_seqs is reached.
//   layers:      (scheduler_layers.cc, with layer_offload) before anyone is preempted for pages,
//                layers of other running sequences move to host RAM and are streamed in while
//                they run (LayerKV); they come back when nothing waits and there is room.
//   Update():    advances num_computed_tokens, publishes newly full blocks, appends the sampled
//                token of every sequence whose prompt (plus any earlier output) is now fully
//                computed, and finishes sequences on max_tokens or a stop token.
//
// Owned and called by the engine thread only; not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "engine/cost_model.h"
#include "engine/sampler.h"
#include "engine/slo.h"
#include "kvcache/kv_cache_manager.h"

namespace strata::engine {

using RequestId = kvcache::RequestId;

struct SchedulerConfig {
  int64_t max_batch_tokens = 2048;  // tokens one step may carry (decode + prefill chunks)
  int32_t max_num_seqs = 64;        // sequences one step may carry
  std::string policy = "fcfs";      // fcfs | slo
  // LayerKV: when device pages block a step, move layers of other running sequences to the
  // host tier (streamed in while they run) before preempting anyone. Needs a host tier.
  bool layer_offload = false;

  absl::Status Validate() const;
};

// One request's generation state. The scheduler owns it from Add until it finishes.
struct Sequence {
  RequestId id = 0;
  std::vector<int32_t> tokens;        // prompt, then generated tokens
  int64_t num_prompt_tokens = 0;
  int64_t num_computed_tokens = 0;    // tokens whose KV is in the cache
  int64_t num_cached_tokens = 0;      // prompt tokens served by the prefix cache at admission
  int64_t max_tokens = 16;
  std::vector<int32_t> stop_token_ids;
  kvcache::BlockHash prefix_seed;     // SeedHash of model, codec and cache_salt
  kvcache::KvAccess kv_access;        // what its KV policy allows (prefix cache, lower tiers)
  int32_t kv_pool = 0;                // the Scheduler's KV pool (codec) it lives in
  int64_t quant_tokens = 0;           // KIVI: leading tokens in quantized blocks (rest: residual)
  // Sparsity: tokens dropped from its KV so far (KV index = position - evicted_tokens), and
  // the policy's running state.
  int64_t evicted_tokens = 0;
  std::unique_ptr<kvcache::SparsityState> sparsity;
  int64_t num_host_cached_tokens = 0; // of num_cached_tokens: loaded from host RAM ...
  int64_t num_disk_cached_tokens = 0; // ... of which had come up from disk
  bool loading = false;               // waits for its prefix blocks to come up from disk
  int64_t fetched_from_block = -1;    // where its last round of disk reads began
  std::unique_ptr<Sampler> sampler;
  int64_t num_preemptions = 0;
  // n > 1: a sibling admitted once this parent's prompt is computed, sharing its full prompt
  // blocks (KvCacheManager::Fork) and computing only the last partial block itself.
  std::optional<RequestId> fork_parent;
  std::string finish_reason;          // "length" | "stop" | "abort"; empty while running
  int32_t num_logprobs = -1;          // -1: none; else top-k logprobs per sampled token
  double first_scheduled_at = 0;      // NowSeconds() of the first step that carried it
  SloSpec slo;                        // targets and priority (policy slo)
  double arrival_s = 0;               // the scheduler's clock when it was added
  double first_token_s = 0;           // ... when its first output token was sampled; 0 = not yet

  int64_t num_output_tokens() const {
    return static_cast<int64_t>(tokens.size()) - num_prompt_tokens;
  }
};

struct ScheduledSeq {
  RequestId id = 0;
  int64_t start = 0;           // first new token's position (== num_computed_tokens)
  int64_t num_new_tokens = 0;
  bool sample = false;         // the chunk reaches the end of tokens(): sample the next one
};

struct Rejection {
  RequestId id = 0;
  std::string reason;
};

struct StepPlan {
  std::vector<ScheduledSeq> seqs;
  int64_t num_tokens = 0;
  std::vector<RequestId> preempted;  // released this step; back in the waiting queue
  std::vector<Rejection> rejected;   // removed this step: their TTFT target was unreachable
  StepFeatures features;             // what the cost model prices (filled by Schedule)
  bool empty() const { return seqs.empty(); }
};

// What Update reports per sequence that got a token or finished.
struct SeqEvent {
  RequestId id = 0;
  int32_t token = -1;          // -1: none (finished without a new token, e.g. abort)
  std::string finish_reason;   // empty while the sequence goes on
  int64_t num_cached_tokens = 0;
  int64_t num_host_cached_tokens = 0;
  int64_t num_disk_cached_tokens = 0;
};

class Scheduler {
 public:
  // `cost` (policy slo: required) predicts step times; `clock` gives seconds (a fake in tests).
  Scheduler(const SchedulerConfig& config, kvcache::KvCacheManager* kv,
            const CostModel* cost = nullptr, std::function<double()> clock = {});

  // Another KV pool (a codec's pages, DESIGN.md §5); returns its index for Sequence::kv_pool.
  // Pool 0 is the one given to the constructor; only it has tiers and LayerKV.
  int32_t AddKvPool(kvcache::KvCacheManager* kv);
  // REQUIRES: seq->id is new, the prompt is non-empty and fits the KV cache on its own, and
  // seq->kv_pool names a pool.
  void Add(std::unique_ptr<Sequence> seq);
  // Frees the sequence's KV and slot now; false when the id is unknown (already finished).
  bool Abort(RequestId id);

  StepPlan Schedule();
  // `sampled[i]` is the token for the i-th entry of plan.seqs with sample == true.
  std::vector<SeqEvent> Update(const StepPlan& plan, std::span<const int32_t> sampled);

  const Sequence* Find(RequestId id) const;

  // Sparsity (scheduler_sparsity.cc). After a step's forward pass (before Update): the attention
  // mass its rows gave the first `kv_tokens` KV tokens of `id` in `layer`
  // (scores[head * stride + j]).
  void AddScores(RequestId id, int32_t layer, std::span<const float> scores, int64_t stride,
                 int64_t kv_tokens);
  struct Compaction {
    RequestId id = 0;
    int64_t keep_tokens = 0;      // KV entries left
    kvcache::KeepSets keep;       // [layer][head] kept indices
  };
  // After Update: the running sparse sequences of `plan` whose KV should shrink now.
  std::vector<Compaction> PlanCompactions(const StepPlan& plan);
  // Once the device moved the kept tokens: frees the pages behind them.
  void Compacted(const Compaction& c);
  // The KV pool `seq` lives in.
  kvcache::KvCacheManager& Kv(const Sequence& seq) const { return *pools_[seq.kv_pool]; }
  int32_t num_kv_pools() const { return static_cast<int32_t>(pools_.size()); }
  int32_t num_running() const { return static_cast<int32_t>(running_.size()); }
  int32_t num_waiting() const { return static_cast<int32_t>(waiting_.size()); }
  int64_t num_preemptions() const { return num_preemptions_; }
  int64_t num_swap_preemptions() const { return num_swap_preemptions_; }

 private:
  bool ScheduleRunning(StepPlan* plan, int64_t* budget);
  void ScheduleWaiting(StepPlan* plan, int64_t* budget);
  // Frees the newest running sequence's KV in pool `pool` and puts it at the front of the
  // waiting queue.
  RequestId PreemptNewest(int32_t pool);
  // Frees running sequence `id`'s KV and puts it back in the waiting queue: swapped to host when
  // that is cheaper than recomputing it on resume (and the host tier has room), else dropped.
  void Preempt(RequestId id);
  bool SwapCheaper(const Sequence& seq) const;
  void ScheduleFcfs(StepPlan* plan);
  // Policy slo (scheduler_slo.cc).
  void ScheduleSlo(StepPlan* plan);
  bool ScheduleDecodes(StepPlan* plan, int64_t* budget);
  void PreemptForPriority(StepPlan* plan);
  double StepTimeLimit(double now) const;
  // tpot x tokens generated - decode time so far; infinite without a TPOT target or before the
  // first token.
  static double TpotSlack(const Sequence& seq, double now);
  struct PrefillCandidate {
    Sequence* seq = nullptr;  // null once rejected
    bool waiting = false;     // in the waiting queue (else running, still in its prompt)
    bool reachable = true;    // its TTFT target can still be met (or it has none)
  };
  std::vector<PrefillCandidate> PrefillOrder(bool with_waiting) const;
  void Classify(std::vector<PrefillCandidate>& candidates, const StepPlan& plan, double now,
                std::vector<Rejection>* rejected);
  // Adds up to the largest chunk of `seq`'s prompt that fits the budget and the step-time limit
  // (plan->features stays current).
  bool SchedulePrefill(Sequence& seq, double limit, double now, StepPlan* plan,
                       int64_t* budget);
  bool Admit(Sequence& seq, int64_t chunk, double now, StepPlan* plan);
  // Seconds from arrival to `seq`'s first token if its prompt is computed from now on in the
  // largest chunks a step can take next to the plan's decodes (the best case).
  double PredictedTtft(const Sequence& seq, const StepPlan& plan, double now) const;
  bool MakeRoomByPriority(const Sequence& seq, StepPlan* plan);
  static StepFeatures Features(const StepPlan& plan, const Scheduler& s);
  double Now() const { return clock_ ? clock_() : 0; }
  bool Finished(Sequence& seq, int32_t token) const;
  // Registers `seq` in the KV cache (swap-in, fork, or prefix-cache lookup across the tiers) and
  // returns its computed tokens; nullopt when it must wait: its fork parent is still computing
  // the prompt, its swapped KV has no device room yet, or (seq.loading) its prefix is coming up
  // from disk.
  std::optional<int64_t> AttachKv(Sequence& seq);
  // After AttachKv: pages for `num_tokens`; on failure the sequence is unregistered again (a
  // swapped-in one then recomputes). Marks it admitted on success.
  bool ReserveAdmitted(Sequence& seq, int64_t attached, int64_t num_tokens, double now);
  // LayerKV (scheduler_layers.cc). Pages for `num_tokens` of `seq`, moving layers of other
  // running sequences to host RAM when the pool is short (and layer_offload is on).
  bool ReserveKv(Sequence& seq, int64_t num_tokens);
  // KIVI: quantized blocks up to the fold after `num_tokens` plus the residual pages.
  bool ReserveKivi(Sequence& seq, int64_t num_tokens);
  // Moves layers of running sequences other than `except` (lowest priority, then most TPOT
  // slack, then most KV, first) to host RAM until `pages` pages are free. True when they are.
  bool MoveLayersForRoom(int64_t pages, RequestId except);
  // Brings host layers back (highest priority first) while nothing waits and every running
  // sequence keeps room to grow by a block.
  void ReplanLayers();
  bool IsForkParent(RequestId id) const;
  // Bytes of host-RAM layers a scheduled chunk loads before its layers run.
  double LayerLoadBytes(const ScheduledSeq& q) const;
  void Remove(RequestId id);
  // Its KV is gone (released, or a swap-in failed): it recomputes from the start.
  void ForgetKv(Sequence& seq);

  SchedulerConfig config_;
  kvcache::KvCacheManager* kv_;  // pool 0
  std::vector<kvcache::KvCacheManager*> pools_;
  const CostModel* cost_;
  std::function<double()> clock_;
  std::unordered_map<RequestId, std::unique_ptr<Sequence>> seqs_;
  std::vector<RequestId> running_;  // admission order
  std::deque<RequestId> waiting_;   // arrival order; preempted ones go to the front
  int64_t num_preemptions_ = 0;
  int64_t num_swap_preemptions_ = 0;
};

}  // namespace strata::engine
