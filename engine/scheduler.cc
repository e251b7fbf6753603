#include "engine/scheduler.h"

#include <algorithm>

#include "common/clock.h"
#include "common/logging.h"

namespace strata::engine {

absl::Status SchedulerConfig::Validate() const {
  if (max_batch_tokens <= 0) {
    return absl::InvalidArgumentError("engine.max_batch_tokens must be > 0");
  }
  if (max_num_seqs <= 0) return absl::InvalidArgumentError("engine.max_num_seqs must be > 0");
  if (policy != "fcfs" && policy != "slo") {
    return absl::InvalidArgumentError("scheduler.policy must be fcfs or slo, got '" + policy + "'");
  }
  return absl::OkStatus();
}

Scheduler::Scheduler(const SchedulerConfig& config, kvcache::KvCacheManager* kv,
                     const CostModel* cost, std::function<double()> clock)
    : config_(config), kv_(kv), pools_{kv}, cost_(cost),
      clock_(clock ? std::move(clock) : NowSeconds) {
  CHECK(config_.policy != "slo" || cost_ != nullptr);
}

int32_t Scheduler::AddKvPool(kvcache::KvCacheManager* kv) {
  pools_.push_back(kv);
  return static_cast<int32_t>(pools_.size()) - 1;
}

void Scheduler::Add(std::unique_ptr<Sequence> seq) {
  CHECK(seq != nullptr && !seq->tokens.empty() && !seqs_.contains(seq->id));
  CHECK(seq->kv_pool >= 0 && seq->kv_pool < static_cast<int32_t>(pools_.size()));
  if (seq->arrival_s == 0) seq->arrival_s = Now();
  waiting_.push_back(seq->id);
  seqs_.emplace(seq->id, std::move(seq));
}

const Sequence* Scheduler::Find(RequestId id) const {
  auto it = seqs_.find(id);
  return it == seqs_.end() ? nullptr : it->second.get();
}

void Scheduler::Remove(RequestId id) {
  kvcache::KvCacheManager& kv = Kv(*seqs_.at(id));
  if (kv.Contains(id)) kv.Release(id);
  if (kv.IsSwapped(id)) kv.DropSwapped(id);
  running_.erase(std::remove(running_.begin(), running_.end(), id), running_.end());
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), id), waiting_.end());
  seqs_.erase(id);
}

void Scheduler::ForgetKv(Sequence& seq) {
  seq.num_computed_tokens = 0;
  seq.quant_tokens = 0;
  seq.evicted_tokens = 0;
  if (seq.sparsity) {
    seq.sparsity = std::make_unique<kvcache::SparsityState>(
        seq.sparsity->spec(), Kv(seq).layout().num_layers, Kv(seq).layout().num_kv_heads);
  }
}

bool Scheduler::Abort(RequestId id) {
  if (!seqs_.contains(id)) return false;
  Remove(id);
  return true;
}

RequestId Scheduler::PreemptNewest(int32_t pool) {
  auto it = std::find_if(running_.rbegin(), running_.rend(),
                         [&](RequestId id) { return seqs_.at(id)->kv_pool == pool; });
  CHECK(it != running_.rend());
  const RequestId victim = *it;
  Preempt(victim);
  return victim;
}

void Scheduler::Preempt(RequestId id) {
  running_.erase(std::remove(running_.begin(), running_.end(), id), running_.end());
  Sequence& seq = *seqs_.at(id);
  if (SwapCheaper(seq) && Kv(seq).SwapOut(id)) {
    ++num_swap_preemptions_;  // num_computed_tokens stays: its KV comes back on resume
    LOG_DEBUG("preempted request {}: {} tokens swapped to host", id, seq.num_computed_tokens);
  } else {
    Kv(seq).Release(id);
    LOG_DEBUG("preempted request {}: {} tokens to recompute", id, seq.num_computed_tokens);
    ForgetKv(seq);
  }
  ++seq.num_preemptions;
  ++num_preemptions_;
  waiting_.push_front(id);
}

// Swap out + in costs two copies of the KV at host memory bandwidth; recomputing costs the
// prefill of every computed token (the cost model's price, learnt from the steps so far). An
// unfitted model (no steps seen) says nothing: copying memory wins against a forward pass.
bool Scheduler::SwapCheaper(const Sequence& seq) const {
  const kvcache::KvCacheManager& kv = Kv(seq);
  if (kv.tiers() == nullptr || seq.num_computed_tokens == 0) return false;
  const double swap_s = kv.tiers()->SwapSeconds(kv.SwapBytes(seq.id));
  if (cost_ == nullptr) return true;
  const double n = static_cast<double>(seq.num_computed_tokens);
  const double recompute_s =
      cost_->Predict({.prefill_tokens = n, .kv_tokens_read = n}) - cost_->Predict({});
  return recompute_s <= 0 || swap_s < recompute_s;
}

bool Scheduler::ScheduleRunning(StepPlan* plan, int64_t* budget) {
  bool preempted = false;
  for (size_t i = 0; i < running_.size() && *budget > 0; ++i) {
    Sequence& seq = *seqs_.at(running_[i]);
    const int64_t remaining = static_cast<int64_t>(seq.tokens.size()) - seq.num_computed_tokens;
    const int64_t num_new = std::min(remaining, *budget);
    bool reserved = false;
    while (!(reserved = ReserveKv(seq, seq.num_computed_tokens + num_new))) {
      preempted = true;
      if (PreemptNewest(seq.kv_pool) == seq.id) break;  // it was the newest itself
    }
    if (!reserved) break;
    plan->seqs.push_back({.id = seq.id, .start = seq.num_computed_tokens,
                          .num_new_tokens = num_new, .sample = num_new == remaining});
    *budget -= num_new;
  }
  return preempted;
}

void Scheduler::ScheduleWaiting(StepPlan* plan, int64_t* budget) {
  for (size_t i = 0; i < waiting_.size() && *budget > 0 &&
                     static_cast<int32_t>(running_.size()) < config_.max_num_seqs;) {
    Sequence& seq = *seqs_.at(waiting_[i]);
    const std::optional<int64_t> attached = AttachKv(seq);
    if (!attached && seq.loading) {  // only its own blocks hold it back
      ++i;
      continue;
    }
    if (!attached) return;  // FCFS: siblings wait right behind their parent
    const int64_t remaining = static_cast<int64_t>(seq.tokens.size()) - *attached;
    const int64_t num_new = std::min(remaining, *budget);
    if (!ReserveAdmitted(seq, *attached, *attached + num_new, Now())) return;  // FCFS: all wait
    waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
    running_.push_back(seq.id);
    plan->seqs.push_back({.id = seq.id, .start = *attached, .num_new_tokens = num_new,
                          .sample = num_new == remaining});
    *budget -= num_new;
  }
}

bool Scheduler::ReserveAdmitted(Sequence& seq, int64_t attached, int64_t num_tokens, double now) {
  if (!ReserveKv(seq, num_tokens)) {
    Kv(seq).Release(seq.id);  // keeps the prefix pages cached; a swapped-in KV is recomputed
    ForgetKv(seq);
    return false;
  }
  seq.num_computed_tokens = attached;
  seq.fork_parent.reset();
  if (seq.first_scheduled_at == 0) seq.first_scheduled_at = now;
  return true;
}

std::optional<int64_t> Scheduler::AttachKv(Sequence& seq) {
  seq.loading = false;
  kvcache::KvCacheManager& kv = Kv(seq);
  if (kv.IsSwapped(seq.id)) {
    if (kv.SwapIn(seq.id)) return seq.num_computed_tokens;
    if (kv.IsSwapped(seq.id)) return std::nullopt;  // no device room yet
    ForgetKv(seq);  // the copy back failed: recompute
  }
  // KIVI siblings do not fork (their residual is private): the prefix cache shares the blocks.
  if (seq.fork_parent && seq.kv_access.residual_tokens == 0) {
    const Sequence* parent = Find(*seq.fork_parent);
    if (parent != nullptr && kv.Contains(parent->id)) {
      if (parent->num_computed_tokens < parent->num_prompt_tokens) return std::nullopt;
      // Full blocks only, and at least one token left so the sibling gets its own logits.
      const int64_t bs = kv.layout().block_size;
      const int64_t shared = (seq.num_prompt_tokens - 1) / bs * bs;
      kv.Fork(parent->id, seq.id, shared);
      if (seq.num_preemptions == 0) seq.num_cached_tokens = shared;
      return shared;
    }
  }
  kvcache::KvAccess access = seq.kv_access;
  access.fetched_from_block = seq.fetched_from_block;
  const kvcache::PrefixHit hit = kv.Attach(seq.id, seq.prefix_seed, seq.tokens, access);
  if (hit.loading) {
    seq.loading = true;
    seq.fetched_from_block = hit.fetch_block;
    return std::nullopt;
  }
  seq.quant_tokens = seq.kv_access.residual_tokens > 0 ? hit.cached_tokens : 0;
  if (seq.num_preemptions == 0) {
    seq.num_cached_tokens = hit.cached_tokens;
    seq.num_host_cached_tokens = hit.host_tokens;
    seq.num_disk_cached_tokens = hit.disk_tokens;
  }
  return hit.cached_tokens;
}

StepPlan Scheduler::Schedule() {
  StepPlan plan;
  ReplanLayers();
  if (config_.policy == "slo") {
    ScheduleSlo(&plan);  // keeps plan.features current as it goes
  } else {
    ScheduleFcfs(&plan);
    plan.features = Features(plan, *this);
  }
  for (const ScheduledSeq& s : plan.seqs) plan.num_tokens += s.num_new_tokens;
  return plan;
}

StepFeatures Scheduler::Features(const StepPlan& plan, const Scheduler& s) {
  StepFeatures f;
  for (const ScheduledSeq& q : plan.seqs) {
    const Sequence& seq = *s.seqs_.at(q.id);
    const bool decode = q.num_new_tokens == 1 && q.start >= seq.num_prompt_tokens;
    f.decode_seqs += decode ? 1 : 0;
    f.prefill_tokens += decode ? 0 : static_cast<double>(q.num_new_tokens);
    f.kv_tokens_read += static_cast<double>(q.start + q.num_new_tokens);
    f.host_load_bytes += s.LayerLoadBytes(q);
  }
  return f;
}

void Scheduler::ScheduleFcfs(StepPlan* out) {
  StepPlan& plan = *out;
  int64_t budget = config_.max_batch_tokens;
  const int64_t preemptions_before = num_preemptions_;
  const bool preempted = ScheduleRunning(&plan, &budget);
  if (preempted) {
    // The sequences preempted now sit at the front of the waiting queue; new admissions wait
    // for the next step (vLLM does the same), so the freed pages go to running sequences first.
    for (int64_t i = 0; i < num_preemptions_ - preemptions_before; ++i) {
      plan.preempted.push_back(waiting_[i]);
    }
  } else {
    ScheduleWaiting(&plan, &budget);
  }
}

bool Scheduler::Finished(Sequence& seq, int32_t token) const {
  const auto& stops = seq.stop_token_ids;
  if (std::find(stops.begin(), stops.end(), token) != stops.end()) {
    seq.finish_reason = "stop";
  } else if (seq.num_output_tokens() >= seq.max_tokens) {
    seq.finish_reason = "length";
  }
  return !seq.finish_reason.empty();
}

std::vector<SeqEvent> Scheduler::Update(const StepPlan& plan, std::span<const int32_t> sampled) {
  std::vector<SeqEvent> events;
  size_t next_sample = 0;
  for (const ScheduledSeq& s : plan.seqs) {
    Sequence& seq = *seqs_.at(s.id);
    seq.num_computed_tokens = s.start + s.num_new_tokens;
    if (seq.kv_access.residual_tokens > 0) {  // KIVI: only quantized blocks are published
      seq.quant_tokens = kvcache::KiviQuantAfter(seq.quant_tokens, seq.num_computed_tokens,
                                                 seq.kv_access.residual_tokens);
      Kv(seq).Commit(seq.id, seq.tokens, seq.quant_tokens);
    } else if (!seq.sparsity) {  // a sparse sequence's KV is private: nothing to publish
      Kv(seq).Commit(seq.id, seq.tokens, seq.num_computed_tokens);
    }
    if (!s.sample) continue;
    CHECK(next_sample < sampled.size());
    const int32_t token = sampled[next_sample++];
    if (seq.num_output_tokens() == 0) seq.first_token_s = Now();
    seq.tokens.push_back(token);
    SeqEvent event{.id = seq.id, .token = token, .finish_reason = "",
                   .num_cached_tokens = seq.num_cached_tokens,
                   .num_host_cached_tokens = seq.num_host_cached_tokens,
                   .num_disk_cached_tokens = seq.num_disk_cached_tokens};
    if (Finished(seq, token)) {
      event.finish_reason = seq.finish_reason;
      Remove(seq.id);
    }
    events.push_back(std::move(event));
  }
  return events;
}

}  // namespace strata::engine
