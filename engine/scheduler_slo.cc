// Scheduler, policy slo (DESIGN.md §6): the SLO-aware step planner. See scheduler.h.
#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/scheduler.h"

namespace strata::engine {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kSlackShare = 0.5;  // of a sequence's TPOT slack one step may spend
constexpr double kTpotShare = 0.9;   // of its TPOT target one step may take

double Deadline(const Sequence& seq) {
  return seq.slo.ttft_s > 0 ? seq.arrival_s + seq.slo.ttft_s : kInf;
}

bool InPrompt(const Sequence& seq) {
  return seq.num_computed_tokens < static_cast<int64_t>(seq.tokens.size()) - 1 ||
         seq.num_output_tokens() == 0;
}

}  // namespace

void Scheduler::ScheduleSlo(StepPlan* plan) {
  const double now = Now();
  int64_t budget = config_.max_batch_tokens;
  PreemptForPriority(plan);
  // As in fcfs, a step that had to preempt for pages admits nobody new: they go to running ones.
  const bool admit = !ScheduleDecodes(plan, &budget);
  plan->features = Features(*plan, *this);  // kept current as prompt chunks join
  const double limit = StepTimeLimit(now);
  std::vector<PrefillCandidate> candidates = PrefillOrder(admit);
  Classify(candidates, *plan, now, &plan->rejected);
  // Two passes: requests whose TTFT target is reachable (or who have none), then best effort.
  for (bool best_effort : {false, true}) {
    for (const PrefillCandidate& c : candidates) {
      if (budget <= 0) return;
      if (c.seq != nullptr && c.reachable != best_effort) {
        SchedulePrefill(*c.seq, limit, now, plan, &budget);
      }
    }
  }
}

// Judges every candidate's TTFT target once, next to this step's decodes: reachable, or not —
// then a waiting request of a `reject` class is rejected now (its seq set to null).
void Scheduler::Classify(std::vector<PrefillCandidate>& candidates, const StepPlan& plan,
                         double now, std::vector<Rejection>* rejected) {
  for (PrefillCandidate& c : candidates) {
    const Sequence& seq = *c.seq;
    if (seq.slo.ttft_s <= 0 || seq.num_output_tokens() > 0) continue;
    const double predicted = PredictedTtft(seq, plan, now);
    c.reachable = predicted <= seq.slo.ttft_s;
    if (c.reachable || !c.waiting || !seq.slo.reject_on_overload) continue;
    rejected->push_back(
        {seq.id, StrCat("SLO class '", seq.slo.name, "': predicted time to first token ",
                        std::lround(predicted * 1e3), " ms exceeds its target of ",
                        std::lround(seq.slo.ttft_s * 1e3), " ms")});
    Remove(seq.id);
    c.seq = nullptr;
  }
}

// With every batch slot taken, each waiting sequence of a higher priority than the lowest running
// one takes that one's slot: the victim (the newest of the lowest priority) is preempted.
void Scheduler::PreemptForPriority(StepPlan* plan) {
  if (static_cast<int32_t>(running_.size()) < config_.max_num_seqs) return;
  for (const PrefillCandidate& c : PrefillOrder(/*with_waiting=*/true)) {
    if (!c.waiting) continue;
    if (!MakeRoomByPriority(*c.seq, plan)) return;  // the rest have no higher priority either
  }
}

// Every running sequence past its prompt gets its one decode token; out of pages preempts the
// lowest-priority, newest running sequence.
bool Scheduler::ScheduleDecodes(StepPlan* plan, int64_t* budget) {
  bool preempted = false;
  for (size_t i = 0; i < running_.size() && *budget > 0; ++i) {
    Sequence& seq = *seqs_.at(running_[i]);
    if (InPrompt(seq)) continue;
    bool reserved = false;
    while (!(reserved = ReserveKv(seq, seq.num_computed_tokens + 1))) {
      preempted = true;
      const RequestId victim = PreemptNewest(seq.kv_pool);
      plan->preempted.push_back(victim);
      if (victim == seq.id) break;
    }
    if (!reserved) break;
    plan->seqs.push_back({.id = seq.id, .start = seq.num_computed_tokens, .num_new_tokens = 1,
                          .sample = true});
    *budget -= 1;
  }
  return preempted;
}

double Scheduler::TpotSlack(const Sequence& seq, double now) {
  if (seq.slo.tpot_s <= 0 || seq.first_token_s == 0) return kInf;
  const double generated = static_cast<double>(seq.num_output_tokens());
  return seq.slo.tpot_s * generated - (now - seq.first_token_s);
}

// The longest this step may take so that every running sequence with a TPOT target and positive
// slack keeps it positive: after the step it has one more token and step more seconds, so
// slack + tpot - step > 0. A margin keeps half the slack and a tenth of the target in reserve
// for prediction errors and for the steps to come. Sequences already behind their target do not
// hold everyone back.
double Scheduler::StepTimeLimit(double now) const {
  double limit = kInf;
  for (RequestId id : running_) {
    const Sequence& seq = *seqs_.at(id);
    const double slack = TpotSlack(seq, now);
    if (slack == kInf) continue;
    if (slack > 0) limit = std::min(limit, kSlackShare * slack + kTpotShare * seq.slo.tpot_s);
  }
  return limit;
}

// Running sequences still in their prompt, then waiting ones; by priority, then deadline, then
// arrival.
std::vector<Scheduler::PrefillCandidate> Scheduler::PrefillOrder(bool with_waiting) const {
  std::vector<PrefillCandidate> order;
  for (RequestId id : running_) {
    Sequence* seq = seqs_.at(id).get();
    if (InPrompt(*seq)) order.push_back({seq, /*waiting=*/false});
  }
  const size_t num_running = order.size();
  if (with_waiting) {
    for (RequestId id : waiting_) order.push_back({seqs_.at(id).get(), /*waiting=*/true});
  }
  auto urgent = [](const PrefillCandidate& a, const PrefillCandidate& b) {
    const Sequence& x = *a.seq;
    const Sequence& y = *b.seq;
    if (x.slo.priority != y.slo.priority) return x.slo.priority > y.slo.priority;
    if (Deadline(x) != Deadline(y)) return Deadline(x) < Deadline(y);
    return x.arrival_s < y.arrival_s;
  };
  std::stable_sort(order.begin(), order.begin() + num_running, urgent);
  std::stable_sort(order.begin() + num_running, order.end(), urgent);
  return order;
}

double Scheduler::PredictedTtft(const Sequence& seq, const StepPlan& plan, double now) const {
  const StepFeatures& f = plan.features;
  const int64_t left = static_cast<int64_t>(seq.tokens.size()) - seq.num_computed_tokens;
  const int64_t per_step =
      std::max<int64_t>(1, config_.max_batch_tokens - static_cast<int64_t>(f.decode_seqs));
  double t = now - seq.arrival_s;
  for (int64_t done = 0; done < left;) {
    const int64_t c = std::min(per_step, left - done);
    StepFeatures g = f;
    g.prefill_tokens += static_cast<double>(c);
    g.kv_tokens_read += static_cast<double>(seq.num_computed_tokens + done + c);
    t += cost_->Predict(g);
    done += c;
  }
  return t;
}

bool Scheduler::SchedulePrefill(Sequence& seq, double limit, double now, StepPlan* plan,
                                int64_t* budget) {
  // Running sequences hold KV; waiting ones (never admitted, preempted, or made room for in this
  // very step) do not.
  const bool waiting = !Kv(seq).Contains(seq.id);
  // The largest chunk whose predicted step time stays within the limit.
  const int64_t remaining = static_cast<int64_t>(seq.tokens.size()) - seq.num_computed_tokens;
  int64_t chunk = std::min(remaining, *budget);
  const double per_token = cost_->coefficients().per_prefill_token_s +
                           cost_->coefficients().per_kv_token_s;
  if (limit < kInf && per_token > 0) {
    const double room = (limit - cost_->Predict(plan->features)) / per_token;
    chunk = std::min<int64_t>(chunk, room <= 0 ? 0 : static_cast<int64_t>(room));
  }
  if (chunk <= 0) return false;
  if (waiting) {
    if (!Admit(seq, chunk, now, plan)) return false;
  } else if (!ReserveKv(seq, seq.num_computed_tokens + chunk)) {
    return false;
  }
  const int64_t start = seq.num_computed_tokens;
  chunk = std::min(chunk, static_cast<int64_t>(seq.tokens.size()) - start);
  plan->seqs.push_back({.id = seq.id, .start = start, .num_new_tokens = chunk,
                        .sample = start + chunk == static_cast<int64_t>(seq.tokens.size())});
  plan->features.prefill_tokens += static_cast<double>(chunk);
  plan->features.kv_tokens_read += static_cast<double>(start + chunk);
  plan->features.host_load_bytes += LayerLoadBytes(plan->seqs.back());
  *budget -= chunk;
  return true;
}

// Moves a waiting sequence to running with pages for its cached prefix and `chunk` more tokens;
// when max_num_seqs is reached, a lower-priority running sequence makes room.
bool Scheduler::Admit(Sequence& seq, int64_t chunk, double now, StepPlan* plan) {
  if (static_cast<int32_t>(running_.size()) >= config_.max_num_seqs &&
      !MakeRoomByPriority(seq, plan)) {
    return false;
  }
  // nullopt: its fork parent is still computing the prompt, or its KV is on the way up
  const std::optional<int64_t> attached = AttachKv(seq);
  if (!attached) return false;
  const int64_t total = static_cast<int64_t>(seq.tokens.size());
  if (!ReserveAdmitted(seq, *attached, std::min(total, *attached + chunk), now)) return false;
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), seq.id), waiting_.end());
  running_.push_back(seq.id);
  return true;
}

// Preempts the newest running sequence of the lowest priority below `seq`'s, if any. Sequences
// already in this step's plan are not touched (their rows are being built).
bool Scheduler::MakeRoomByPriority(const Sequence& seq, StepPlan* plan) {
  const Sequence* victim = nullptr;
  for (RequestId id : running_) {
    const Sequence& r = *seqs_.at(id);
    const bool planned = std::any_of(plan->seqs.begin(), plan->seqs.end(),
                                     [&](const ScheduledSeq& q) { return q.id == id; });
    if (!planned && r.slo.priority < seq.slo.priority &&
        (victim == nullptr || r.slo.priority <= victim->slo.priority)) {
      victim = &r;
    }
  }
  if (victim == nullptr) return false;
  const RequestId id = victim->id;
  Preempt(id);
  plan->preempted.push_back(id);
  return true;
}

}  // namespace strata::engine
