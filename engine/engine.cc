#include "engine/engine.h"

#include <algorithm>

#include "common/logging.h"
#include "engine/logprobs.h"
#include "common/clock.h"
#include "engine/cost_profile.h"
#include "engine/local_runtime.h"
#include "engine/sparsity_step.h"
#include "engine/step_batch.h"

namespace strata::engine {
namespace {

TokenEvent Aborted() {
  TokenEvent e;
  e.finish_reason = "abort";
  return e;
}

}  // namespace

void OutputChannel::Push(TokenEvent event) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(event));
  }
  cv_.notify_one();
}

TokenEvent OutputChannel::Pop() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !events_.empty(); });
  TokenEvent e = std::move(events_.front());
  events_.pop_front();
  return e;
}

std::optional<TokenEvent> OutputChannel::TryPop() {
  std::lock_guard<std::mutex> lock(mu_);
  if (events_.empty()) return std::nullopt;
  TokenEvent e = std::move(events_.front());
  events_.pop_front();
  return e;
}

absl::Status EngineConfig::Validate() const {
  RETURN_IF_ERROR(scheduler.Validate());
  if (block_size <= 0) return absl::InvalidArgumentError("kvcache.block_size must be > 0");
  if (num_kv_pages < 0) return absl::InvalidArgumentError("num_kv_pages must be >= 0");
  if (max_model_len < 0) return absl::InvalidArgumentError("model.max_model_len must be >= 0");
  return absl::OkStatus();
}

Engine::Engine(const Model& model, const EngineConfig& config) : model_(model), config_(config) {}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const Model& model,
                                                       const EngineConfig& config) {
  RETURN_IF_ERROR(config.Validate());
  std::unique_ptr<Engine> engine(new Engine(model, config));
  RETURN_IF_ERROR(engine->Init());
  engine->thread_ = std::thread([e = engine.get()] { e->Loop(); });
  return engine;
}

absl::Status Engine::Init() {
  ASSIGN_OR_RETURN(device_, MakeDevice(config_.backend, config_.threads));
  const ModelConfig& mc = model_.config;
  const int64_t max_len = MaxModelLen(mc, config_.max_model_len);
  const int64_t blocks_per_seq = (max_len + config_.block_size - 1) / config_.block_size;
  const int32_t min_pages = static_cast<int32_t>(blocks_per_seq * mc.num_layers);
  int32_t pages = config_.num_kv_pages > 0
                      ? config_.num_kv_pages
                      : static_cast<int32_t>(min_pages * config_.scheduler.max_num_seqs);
  if (pages < min_pages) {
    return absl::InvalidArgumentError(
        StrCat("the KV cache (", pages, " pages) cannot hold one sequence of max_model_len ",
               max_len, " tokens (", min_pages, " pages)"));
  }
  RunnerConfig rc{.max_batch_tokens = config_.scheduler.max_batch_tokens,
                  .max_num_seqs = config_.scheduler.max_num_seqs,
                  .max_logit_rows = config_.scheduler.max_num_seqs,
                  .num_kv_pages = pages,
                  .block_size = config_.block_size,
                  .max_model_len = max_len,
                  .extra_pools = config_.codec_pools,
                  .decode_graphs = config_.cuda_graphs,
                  .fit_kv_pages = config_.num_kv_pages == 0};
  ASSIGN_OR_RETURN(runner_, ModelRunner::Create(device_.get(), mc, model_.weights, rc));
  if (runner_->runner_config().num_kv_pages < pages) {
    pages = runner_->runner_config().num_kv_pages;
    LOG_INFO("kv cache: {} pages ({} sequences of max_model_len {}), what {}'s free memory holds",
             pages, pages / min_pages, max_len, device_->name());
    if (pages < min_pages) {
      return absl::ResourceExhaustedError(StrCat(
          device_->name(), "'s free memory holds ", pages, " KV pages after the weights, fewer "
          "than one sequence of max_model_len ", max_len, " tokens needs (", min_pages,
          "): lower model.max_model_len"));
    }
  }
  kv_ = std::make_unique<kvcache::KvCacheManager>(runner_->kv_layout(), pages,
                                                  config_.enable_prefix_caching);
  if (config_.scheduler.policy == "slo") {
    const double t0 = NowSeconds();
    ASSIGN_OR_RETURN(auto samples,
                     ProfileStepCosts(*runner_, *kv_, config_.scheduler.max_batch_tokens,
                                      config_.scheduler.max_num_seqs));
    cost_ = CostModel::FromProfile(samples);
    LOG_INFO("slo scheduler: step cost profile in {:.2f} s: {}", NowSeconds() - t0,
             cost_.Describe());
  }
  RETURN_IF_ERROR(InitTiers());  // after the profile: its made-up blocks stay on the device
  scheduler_ = std::make_unique<Scheduler>(config_.scheduler, kv_.get(), &cost_);
  stats_.num_pages = pages;
  stats_.num_free_pages = pages;
  return InitPools(max_len);
}

// One manager per codec pool; each must hold one sequence of max_model_len on its own.
absl::Status Engine::InitPools(int64_t max_len) {
  for (int32_t p = 1; p < runner_->num_pools(); ++p) {
    const kvcache::KvLayout& layout = runner_->pool_layout(p);
    const KvPoolSpec& spec = config_.codec_pools[p - 1];
    const int64_t residual = layout.kivi() ? layout.ResidualPages(spec.max_residual_tokens) : 0;
    const int64_t need = (layout.BlocksFor(max_len) + residual) * layout.num_layers;
    if (spec.num_pages < need) {
      return absl::InvalidArgumentError(StrCat(
          "the ", kernels::CodecName(layout.codec), " KV pool (", spec.num_pages,
          " pages) cannot hold one sequence of max_model_len ", max_len, " tokens (", need,
          " pages)"));
    }
    codec_kv_.push_back(std::make_unique<kvcache::KvCacheManager>(
        layout, spec.num_pages, config_.enable_prefix_caching));
    CHECK(scheduler_->AddKvPool(codec_kv_.back().get()) == p);
    LOG_INFO("kv pool {}: {} pages of {} tokens ({} bytes each)", kernels::CodecName(layout.codec),
             spec.num_pages, layout.block_size, layout.PageBytes());
  }
  return absl::OkStatus();
}

std::optional<int32_t> Engine::PoolOf(kernels::KvCodec codec) const {
  for (int32_t p = 0; p < runner_->num_pools(); ++p) {
    if (runner_->pool_layout(p).codec == codec) return p;
  }
  return std::nullopt;
}

// The disk tier's namespace is the prefix seed without a salt: segments of another model, weights,
// tokenizer, codec or layout are never served.
absl::Status Engine::InitTiers() {
  kvcache::TierOptions t = config_.tiers;
  if (t.host_capacity_bytes <= 0 && t.disk.capacity_bytes <= 0) return absl::OkStatus();
  const kvcache::PrefixSeed ns = PrefixSeed(std::nullopt);
  t.disk.namespace_hash = kvcache::SeedHash(ns);
  t.disk.namespace_text = StrCat(ns.model_id, " codec=", ns.codec, " block=", ns.block_size,
                                 " layout=", ns.layout_version);
  t.disk.layers = static_cast<uint32_t>(model_.config.num_layers);
  ASSIGN_OR_RETURN(tiers_, kvcache::TieredStore::Create(runner_->kv_layout(), t, runner_.get(),
                                                        [this] { WakeFromTiers(); }));
  kv_->AttachTiers(tiers_.get());
  const kvcache::TierStats s = tiers_->stats();
  LOG_INFO("kv tiers: host {} blocks of {} bytes{}{}", s.host_slots, tiers_->block_bytes(),
           tiers_->has_disk() ? StrCat(", disk ", s.disk_capacity_records, " blocks under ",
                                       t.disk.dir, " (", s.disk_records, " kept from before)")
                              : std::string(),
           t.write_through ? ", write-through" : ", demote on eviction");
  return absl::OkStatus();
}

kvcache::PrefixSeed Engine::PrefixSeed(const std::optional<std::string>& cache_salt,
                                       int32_t pool) const {
  const kvcache::KvLayout& layout = runner_->pool_layout(pool);
  return {.model_id = model_.name,
          .weights_fingerprint_hi = model_.weights.fingerprint_hi,
          .weights_fingerprint_lo = model_.weights.fingerprint_lo,
          .tokenizer_fingerprint = model_.tokenizer ? model_.tokenizer->fingerprint() : 0,
          .codec = std::string(kernels::CodecName(layout.codec)),
          .block_size = layout.block_size,
          .cache_salt = cache_salt};
}

void Engine::WakeFromTiers() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tier_event_ = true;
  }
  cv_.notify_one();
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::Status Engine::CheckKvAccess(const kvcache::KvAccess& a) const {
  const std::string_view codec = kernels::CodecName(a.codec);
  const std::optional<int32_t> pool = PoolOf(a.codec);
  if (!pool) {
    return absl::InvalidArgumentError(
        StrCat("no KV pool holds codec ", codec, ": no policy of the config names it"));
  }
  const bool kivi = kernels::IsKivi(a.codec);
  const kvcache::SparsitySpec& sp = a.sparsity;
  if (sp.enabled() && (a.codec != kernels::KvCodec::kF32 || sp.Budget() <= 0 ||
                       sp.recent_tokens > sp.budget_tokens ||
                       sp.observation_tokens > sp.budget_tokens || sp.pool_kernel < 1)) {
    return absl::InvalidArgumentError(
        StrCat("sparsity needs the fp32 codec and a budget that holds its recent and "
               "observation windows (codec ", codec, ", budget ", sp.Budget(), ")"));
  }
  const int32_t max_residual =
      *pool == 0 ? 0 : config_.codec_pools[*pool - 1].max_residual_tokens;
  if (kivi != (a.residual_tokens > 0) || a.residual_tokens % kernels::kKiviGroupTokens != 0 ||
      a.residual_tokens > max_residual) {
    return absl::InvalidArgumentError(
        StrCat("residual_tokens ", a.residual_tokens, " does not suit codec ", codec,
               " (KIVI: a multiple of 32 in [32, ", max_residual, "]; others: 0)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Engine::Submission> Engine::Submit(RequestOptions options) {
  if (options.prompt_ids.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  for (int32_t id : options.prompt_ids) {
    if (id < 0 || id >= model_.config.vocab_size) {
      return absl::InvalidArgumentError(StrCat("prompt token id ", id, " is outside the vocabulary"));
    }
  }
  if (options.max_tokens <= 0) return absl::InvalidArgumentError("max_tokens must be > 0");
  const int64_t total = static_cast<int64_t>(options.prompt_ids.size()) + options.max_tokens;
  if (total > max_model_len()) {
    return absl::InvalidArgumentError(
        StrCat("prompt (", options.prompt_ids.size(), " tokens) + max_tokens (",
               options.max_tokens, ") exceeds the maximum model length ", max_model_len()));
  }
  RETURN_IF_ERROR(options.sampling.Validate());
  RETURN_IF_ERROR(CheckKvAccess(options.kv_access));
  if (options.n < 1 || options.n > config_.scheduler.max_num_seqs) {
    return absl::InvalidArgumentError(StrCat("n must be in [1, ", config_.scheduler.max_num_seqs,
                                             "], got ", options.n));
  }
  Submission s;
  for (int32_t i = 0; i < options.n; ++i) {
    s.ids.push_back(next_id_++);
    s.channels.push_back(std::make_shared<OutputChannel>());
  }
  s.id = s.ids[0];
  s.channel = s.channels[0];
  {
    std::lock_guard<std::mutex> lock(mu_);
    inbox_.push_back({s.ids, std::move(options), s.channels});
  }
  cv_.notify_one();
  return s;
}

void Engine::Cancel(RequestId id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancels_.push_back(id);
  }
  cv_.notify_one();
}

EngineStats Engine::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

std::unique_ptr<Sequence> Engine::MakeSequence(RequestId id, const RequestOptions& o,
                                               int32_t sibling) const {
  auto seq = std::make_unique<Sequence>();
  seq->id = id;
  seq->tokens = o.prompt_ids;
  seq->num_prompt_tokens = static_cast<int64_t>(seq->tokens.size());
  seq->max_tokens = o.max_tokens;
  seq->stop_token_ids = o.stop_token_ids;
  seq->num_logprobs = o.logprobs;
  seq->slo = o.slo;
  SamplingParams sampling = o.sampling;
  if (sampling.seed) *sampling.seed += static_cast<uint64_t>(sibling);
  seq->sampler = std::make_unique<Sampler>(sampling);
  seq->kv_access = o.kv_access;
  seq->kv_pool = *PoolOf(o.kv_access.codec);  // checked by Submit
  if (o.kv_access.sparsity.enabled()) {  // its KV is private: compaction rewrites it
    seq->kv_access.prefix_cache = false;
    seq->kv_access.lower_tiers = 0;
    seq->sparsity = std::make_unique<kvcache::SparsityState>(
        o.kv_access.sparsity, static_cast<int32_t>(model_.config.num_layers),
        static_cast<int32_t>(model_.config.num_kv_heads));
  }
  seq->prefix_seed = kvcache::SeedHash(PrefixSeed(o.cache_salt, seq->kv_pool));
  return seq;
}

void Engine::Admit(Pending p) {
  for (size_t i = 0; i < p.ids.size(); ++i) {
    auto seq = MakeSequence(p.ids[i], p.options, static_cast<int32_t>(i));
    if (i > 0) seq->fork_parent = p.ids[0];
    routes_[p.ids[i]] = {std::move(p.channels[i]), p.options.notify};
    scheduler_->Add(std::move(seq));
  }
}

bool Engine::DrainInbox(bool block) {
  std::deque<Pending> inbox;
  std::vector<RequestId> cancels;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (block) {
      cv_.wait(lock, [&] {
        return stopping_ || !inbox_.empty() || !cancels_.empty() || tier_event_;
      });
    }
    if (stopping_) return false;
    tier_event_ = false;
    inbox.swap(inbox_);
    cancels.swap(cancels_);
  }
  if (tiers_) tiers_->Poll();  // finished disk reads land in the host tier
  for (Pending& p : inbox) Admit(std::move(p));
  std::vector<RequestId> aborted;
  for (RequestId id : cancels) {
    if (scheduler_->Abort(id)) aborted.push_back(id);
  }
  if (!aborted.empty()) PublishStats(0, 0);
  for (RequestId id : aborted) Deliver(id, Aborted());
  return true;
}

void Engine::Loop() {
  bool idle = true;
  while (DrainInbox(/*block=*/idle)) {
    absl::StatusOr<bool> ran = Step();
    if (!ran.ok()) FailAll(ran.status());
    const bool ran_nothing = ran.ok() && !*ran;
    if (ran_nothing) PublishStats(0, 0);  // admissions, parked requests, landed fetches
    // Nothing to run while disk reads are in flight: sleep until one lands (or new work).
    const bool waiting_for_disk = ran_nothing && tiers_ && tiers_->fetches_in_flight() > 0;
    idle = scheduler_->num_running() + scheduler_->num_waiting() == 0 || waiting_for_disk;
  }
  FailAll(absl::CancelledError("engine stopped"));
}

absl::StatusOr<bool> Engine::Step() {
  const double t0 = NowSeconds();
  StepPlan plan = scheduler_->Schedule();
  Reject(plan.rejected);
  if (plan.empty()) return !plan.rejected.empty();
  StepBatch batch;
  batch.Build(plan, *scheduler_);
  BatchInput input = batch.input();
  const Sampling sampling = StepSampling(plan);
  RETURN_IF_ERROR(ForwardStep(plan, input, sampling));
  CollectScores(plan, batch, input, *runner_, *scheduler_);
  if (batch.num_layer_copies() > 0) {
    kv_->tiers()->CountLayerMoves(
        0, 0, static_cast<int64_t>(batch.num_layer_copies() * kv_->layout().PageBytes()));
  }
  std::unordered_map<RequestId, TokenEvent> extra;  // per sampled row: timing, logprobs
  std::vector<int32_t> sampled = SampleRows(
      plan,
      sampling == Sampling::kHost ? std::span<const int32_t>() : std::span<const int32_t>(device_ids_),
      &extra);
  std::vector<SeqEvent> events = scheduler_->Update(plan, sampled);
  RETURN_IF_ERROR(CompactSparse(plan, *scheduler_, *runner_));
  ObserveStep(plan.features, NowSeconds() - t0);
  // Stats first: a client that saw its last token must see a snapshot that includes it.
  PublishStats(/*num_steps=*/1, static_cast<int64_t>(sampled.size()));
  for (SeqEvent& e : events) {
    TokenEvent out = extra.count(e.id) ? std::move(extra[e.id]) : TokenEvent{};
    out.token = e.token;
    out.finish_reason = e.finish_reason;
    out.num_cached_tokens = e.num_cached_tokens;
    out.num_host_cached_tokens = e.num_host_cached_tokens;
    out.num_disk_cached_tokens = e.num_disk_cached_tokens;
    Deliver(e.id, std::move(out));
  }
  return true;
}

Engine::Sampling Engine::StepSampling(const StepPlan& plan) const {
  Sampling sampling = Sampling::kArgmax;
  for (const ScheduledSeq& s : plan.seqs) {
    if (!s.sample) continue;
    const Sequence& seq = *scheduler_->Find(s.id);
    if (seq.num_logprobs >= 0) return Sampling::kHost;
    if (!seq.sampler->params().IsPlainArgmax()) sampling = Sampling::kDevice;
  }
  return sampling;
}

absl::Status Engine::ForwardStep(const StepPlan& plan, const BatchInput& input,
                                 Sampling sampling) {
  const size_t rows = input.logit_rows.size();
  switch (sampling) {
    case Sampling::kArgmax:
      device_ids_.resize(rows);
      return runner_->ForwardArgmax(input, device_ids_);
    case Sampling::kDevice:
      device_ids_.resize(rows);
      BuildSamplingRows(plan);
      return runner_->ForwardSample(input, sampling_rows_, penalties_, device_ids_);
    case Sampling::kHost:
      break;
  }
  logits_.resize(rows * model_.config.vocab_size);
  return runner_->Forward(input, logits_);
}

void Engine::BuildSamplingRows(const StepPlan& plan) {
  sampling_rows_.clear();
  penalties_.clear();
  const int64_t vocab = model_.config.vocab_size;
  for (const ScheduledSeq& s : plan.seqs) {
    if (!s.sample) continue;
    const Sequence& seq = *scheduler_->Find(s.id);
    const int32_t row = static_cast<int32_t>(sampling_rows_.size());
    sampling_rows_.push_back(seq.sampler->NextRow());
    std::span<const int32_t> all(seq.tokens);
    seq.sampler->AppendPenaltyEntries(row, all.first(seq.num_prompt_tokens),
                                      all.subspan(seq.num_prompt_tokens), vocab, &penalties_);
  }
}

std::vector<int32_t> Engine::SampleRows(const StepPlan& plan, std::span<const int32_t> device_ids,
                                        std::unordered_map<RequestId, TokenEvent>* events) {
  const int64_t vocab = model_.config.vocab_size;
  std::vector<int32_t> sampled;
  for (const ScheduledSeq& s : plan.seqs) {
    if (!s.sample) continue;
    const Sequence& seq = *scheduler_->Find(s.id);
    if (!device_ids.empty()) {  // the device already chose
      const int32_t token = device_ids[sampled.size()];
      sampled.push_back(token);
      (*events)[s.id].first_scheduled_at = seq.first_scheduled_at;
      continue;
    }
    std::span<const int32_t> all(seq.tokens);
    std::span<float> row(logits_.data() + sampled.size() * vocab, vocab);
    std::optional<LogSoftmaxRow> raw;
    if (seq.num_logprobs >= 0) raw = LogSoftmaxRow(row);  // before Sample edits the row
    const int32_t token = seq.sampler->Sample(row, all.first(seq.num_prompt_tokens),
                                              all.subspan(seq.num_prompt_tokens));
    sampled.push_back(token);
    TokenEvent& e = (*events)[s.id];
    e.first_scheduled_at = seq.first_scheduled_at;
    if (raw) {
      e.logprob = TokenLogprob{token, raw->LogProb(token)};
      e.top_logprobs = raw->Top(seq.num_logprobs);
    }
  }
  return sampled;
}

void Engine::Reject(const std::vector<Rejection>& rejected) {
  if (rejected.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.num_rejected += static_cast<int64_t>(rejected.size());
  }
  PublishStats(0, 0);
  for (const Rejection& r : rejected) {
    TokenEvent e;
    e.finish_reason = "rejected";
    e.reason = r.reason;
    Deliver(r.id, std::move(e));
  }
}

// The cost model learns from every step; the stats show how well it predicted this one.
void Engine::ObserveStep(const StepFeatures& features, double seconds) {
  const double predicted = cost_.Predict(features);
  cost_.Observe(features, seconds);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.last_step_s = seconds;
  stats_.last_predicted_step_s = predicted;
  stats_.step_error_ratio = cost_.mean_abs_rel_error();
  stats_.sum_step_s += seconds;
  stats_.sum_predicted_step_s += predicted;
}

void Engine::Deliver(RequestId id, TokenEvent event) {
  auto it = routes_.find(id);
  if (it == routes_.end()) return;
  const bool last = !event.finish_reason.empty();
  it->second.channel->Push(std::move(event));
  if (it->second.notify) it->second.notify();
  if (last) routes_.erase(it);
}

void Engine::PublishStats(int64_t num_steps, int64_t num_generated_tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.num_running = scheduler_->num_running();
  stats_.num_waiting = scheduler_->num_waiting();
  stats_.num_free_pages = kv_->pool().num_free();
  stats_.pools.resize(runner_->num_pools());
  for (int32_t p = 0; p < runner_->num_pools(); ++p) {
    const kvcache::KvCacheManager& kv = p == 0 ? *kv_ : *codec_kv_[p - 1];
    stats_.pools[p] = {.codec = std::string(kernels::CodecName(kv.layout().codec)),
                       .block_size = kv.layout().block_size,
                       .page_bytes = static_cast<int64_t>(kv.layout().PageBytes()),
                       .num_pages = kv.pool().num_pages(),
                       .num_free_pages = kv.pool().num_free()};
  }
  stats_.num_preemptions = scheduler_->num_preemptions();
  stats_.num_swap_preemptions = scheduler_->num_swap_preemptions();
  if (tiers_) {
    stats_.has_tiers = true;
    stats_.tiers = tiers_->stats();
  }
  stats_.num_generated_tokens += num_generated_tokens;
  stats_.num_steps += num_steps;
  stats_.num_graph_steps = runner_->num_graph_steps();
}

void Engine::FailAll(const absl::Status& status) {
  if (!status.ok() && status.code() != absl::StatusCode::kCancelled) {
    LOG_ERROR("engine step failed, aborting every request: {}", std::string(status.message()));
  }
  if (!status.ok() && status.code() != absl::StatusCode::kCancelled) {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.num_step_errors;
  }
  std::vector<RequestId> ids;
  for (const auto& [id, route] : routes_) ids.push_back(id);
  for (RequestId id : ids) {
    scheduler_->Abort(id);
    Deliver(id, Aborted());
  }
  PublishStats(0, 0);
}

}  // namespace strata::engine
