#include "server/metrics.h"

#include <algorithm>

#include "prometheus/text_serializer.h"

namespace strata::server {
namespace {

using prometheus::Histogram;

// Latency buckets in seconds, as vLLM's: fine below 100 ms where TPOT lives, coarse up to minutes.
const Histogram::BucketBoundaries& LatencyBuckets() {
  static const Histogram::BucketBoundaries b{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                             0.25,  0.5,   0.75, 1.0,  2.5,  5.0,  7.5,  10.0,
                                             20.0,  40.0,  80.0, 160.0, 640.0};
  return b;
}

}  // namespace

Metrics::Metrics(const MetricsInfo& info)
    : info_(info), registry_(std::make_shared<prometheus::Registry>()) {
  const prometheus::Labels model{{"model", info.model}};
  auto histogram = [&](const char* name, const char* help) {
    return &prometheus::BuildHistogram().Name(name).Help(help).Register(*registry_).Add(
        model, LatencyBuckets());
  };
  ttft_ = histogram("strata_time_to_first_token_seconds",
                    "Time from a request's arrival to its first generated token.");
  tpot_ = histogram("strata_time_per_output_token_seconds",
                    "Per completion: (last token time - first token time) / (tokens - 1).");
  e2e_ = histogram("strata_e2e_request_latency_seconds",
                   "Time from a request's arrival to its last token.");
  queue_ = histogram("strata_request_queue_time_seconds",
                     "Time from a request's arrival until it first joined an engine step.");
  auto counter = [&](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(*registry_).Add(model);
  };
  prompt_tokens_ = counter("strata_prompt_tokens_total", "Prompt tokens of admitted requests.");
  generation_tokens_ = counter("strata_generation_tokens_total", "Generated tokens.");
  preemptions_ = counter("strata_preemptions_total", "Requests preempted by the scheduler.");
  auto family = [&](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(*registry_);
  };
  requests_ = family("strata_requests_total", "Finished requests by status.");
  prefix_queries_ = family("strata_prefix_cache_queries_tokens_total",
                           "Prompt tokens looked up in the prefix cache.");
  prefix_hits_ = family("strata_prefix_cache_hits_tokens_total",
                        "Prompt tokens found in the prefix cache, by the tier that held them.");
  slo_requests_ = family("strata_slo_requests_total",
                         "Requests by SLO class and outcome (met, missed, rejected, cancelled).");
  transfers_ = family("strata_kv_transfer_bytes_total", "KV bytes moved between tiers.");
  for (auto [src, dst] : {std::pair{"device", "host"}, {"host", "device"}, {"host", "disk"},
                          {"disk", "host"}}) {
    CounterWith(*transfers_, {{"src", src}, {"dst", dst}});
  }
  tier_errors_ = family("strata_kv_tier_errors_total",
                        "KV tier faults, each served as a miss or a skipped write: checksum, "
                        "short_read, io, full, foreign.");
  for (const char* kind : {"checksum", "short_read", "io", "full", "foreign"}) {
    CounterWith(*tier_errors_, {{"tier", "disk"}, {"kind", kind}});
  }
  swaps_ = family("strata_kv_swaps_total",
                  "Preempted requests whose KV was swapped to host (out) and back (in).");
  for (const char* direction : {"out", "in"}) CounterWith(*swaps_, {{"direction", direction}});
  layer_moves_ = family("strata_kv_layer_moves_total",
                        "LayerKV: layers of running requests moved to host RAM (to_host) under "
                        "device pressure and back (to_device).");
  for (const char* direction : {"to_host", "to_device"}) {
    CounterWith(*layer_moves_, {{"direction", direction}});
  }
  layer_stream_bytes_ = counter("strata_kv_layer_stream_bytes_total",
                                "LayerKV: KV bytes streamed between host RAM and staging pages "
                                "during steps (loads before a layer runs, stores after).");
  // Series a dashboard or an alert divides by or watches for exist at zero before the first
  // (rare) event, so a ratio reads 0 instead of nothing and rate() counts that first event.
  for (const char* status : {"ok", "cancelled", "error", "rejected", "invalid"}) {
    CounterWith(*requests_, {{"status", status}});
  }
  for (const std::string& slo_class : info.slo_classes) {
    for (const char* outcome : {"met", "missed_ttft", "missed_tpot", "rejected", "cancelled"}) {
      CounterWith(*slo_requests_, {{"class", slo_class}, {"outcome", outcome}});
    }
  }
  CounterWith(*prefix_queries_, {});
  for (const char* tier : {"device", "host", "disk"}) CounterWith(*prefix_hits_, {{"tier", tier}});
  auto gauge = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(*registry_);
  };
  running_ = &gauge("strata_num_requests_running", "Requests in the running batch.")->Add(model);
  waiting_ = &gauge("strata_num_requests_waiting", "Requests waiting for admission.")->Add(model);
  kv_usage_ = gauge("strata_kv_cache_usage_ratio",
                    "Fraction of a tier's KV pages held by requests (cached free pages count "
                    "as free).");
  kv_pool_usage_ = gauge("strata_kv_pool_usage_ratio",
                         "Fraction of a device KV pool's pages held by requests, per codec (each "
                         "codec a policy names has its own pool carved from the KV budget).");
  step_time_ = &gauge("strata_step_time_seconds", "Measured duration of the last engine step.")
                    ->Add(model);
  step_time_predicted_ = &gauge("strata_step_time_predicted_seconds",
                                "The cost model's prediction for the last engine step.")
                              ->Add(model);
  step_error_ratio_ = &gauge("strata_step_time_prediction_error_ratio",
                             "Recent mean of |predicted - measured| / measured step time.")
                           ->Add(model);
  step_seconds_ = counter("strata_step_duration_seconds_total", "Measured engine step time.");
  step_predicted_seconds_ = counter("strata_step_predicted_duration_seconds_total",
                                    "Engine step time the cost model predicted.");
  gauge("strata_cache_config_info", "KV cache configuration (value 1).")
      ->Add({{"model", info.model},
             {"block_size", std::to_string(info.block_size)},
             {"num_device_blocks", std::to_string(info.num_device_blocks)}})
      .Set(1);
  gauge("strata_build_info", "Build information (value 1).")
      ->Add({{"model", info.model}, {"version", info.version}, {"backend", info.backend}})
      .Set(1);
}

prometheus::Counter& Metrics::CounterWith(prometheus::Family<prometheus::Counter>& family,
                                          const prometheus::Labels& extra) {
  prometheus::Labels labels = extra;
  labels["model"] = info_.model;
  return family.Add(labels);  // returns the existing series for known labels
}

// Counters that mirror a cumulative engine total grow by what the total gained since the
// counter last caught up with it.
void Metrics::AdvanceTo(prometheus::Counter& counter, double total) {
  const double gained = total - counter.Value();
  if (gained > 0) counter.Increment(gained);
}

void Metrics::ObserveTimeToFirstToken(double s) { ttft_->Observe(s); }
void Metrics::ObserveTimePerOutputToken(double s) { tpot_->Observe(s); }
void Metrics::ObserveEndToEnd(double s) { e2e_->Observe(s); }
void Metrics::ObserveQueueTime(double s) { queue_->Observe(s); }
void Metrics::AddPromptTokens(int64_t n) { prompt_tokens_->Increment(static_cast<double>(n)); }
void Metrics::AddGenerationTokens(int64_t n) {
  generation_tokens_->Increment(static_cast<double>(n));
}

void Metrics::CountRequest(std::string_view status) {
  CounterWith(*requests_, {{"status", std::string(status)}}).Increment();
}

void Metrics::AddPrefixCacheLookup(int64_t queried, const TierHits& hits) {
  CounterWith(*prefix_queries_, {}).Increment(static_cast<double>(queried));
  const std::pair<const char*, int64_t> by_tier[] = {
      {"device", hits.device}, {"host", hits.host}, {"disk", hits.disk}};
  for (const auto& [tier, n] : by_tier) {
    if (n > 0) CounterWith(*prefix_hits_, {{"tier", tier}}).Increment(static_cast<double>(n));
  }
}

void Metrics::CountSlo(std::string_view slo_class, std::string_view outcome) {
  CounterWith(*slo_requests_, {{"class", std::string(slo_class)}, {"outcome", std::string(outcome)}})
      .Increment();
}

std::string Metrics::Render(const engine::EngineStats& stats) {
  std::lock_guard<std::mutex> lock(mu_);
  running_->Set(stats.num_running);
  waiting_->Set(stats.num_waiting);
  const double used = stats.num_pages > 0
                          ? 1.0 - static_cast<double>(stats.num_free_pages) / stats.num_pages
                          : 0.0;
  kv_usage_->Add({{"model", info_.model}, {"tier", "device"}}).Set(used);
  for (const engine::EngineStats::Pool& pool : stats.pools) {
    const double pool_used =
        pool.num_pages > 0 ? 1.0 - static_cast<double>(pool.num_free_pages) / pool.num_pages : 0.0;
    kv_pool_usage_->Add({{"model", info_.model}, {"codec", pool.codec}}).Set(pool_used);
  }
  step_time_->Set(stats.last_step_s);
  step_time_predicted_->Set(stats.last_predicted_step_s);
  step_error_ratio_->Set(stats.step_error_ratio);
  AdvanceTo(*step_seconds_, stats.sum_step_s);
  AdvanceTo(*step_predicted_seconds_, stats.sum_predicted_step_s);
  AdvanceTo(*preemptions_, static_cast<double>(stats.num_preemptions));
  if (stats.has_tiers) RenderTiers(stats.tiers);
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

// REQUIRES: mu_.
void Metrics::RenderTiers(const kvcache::TierStats& t) {
  auto advance = [&](prometheus::Family<prometheus::Counter>& family,
                     const prometheus::Labels& labels, int64_t total) {
    AdvanceTo(CounterWith(family, labels), static_cast<double>(total));
  };
  advance(*transfers_, {{"src", "device"}, {"dst", "host"}}, t.device_to_host_bytes);
  advance(*transfers_, {{"src", "host"}, {"dst", "device"}}, t.host_to_device_bytes);
  advance(*transfers_, {{"src", "host"}, {"dst", "disk"}}, t.host_to_disk_bytes);
  advance(*transfers_, {{"src", "disk"}, {"dst", "host"}}, t.disk_to_host_bytes);
  advance(*swaps_, {{"direction", "out"}}, t.swap_outs);
  advance(*swaps_, {{"direction", "in"}}, t.swap_ins);
  advance(*layer_moves_, {{"direction", "to_host"}}, t.layer_offloads);
  advance(*layer_moves_, {{"direction", "to_device"}}, t.layer_restores);
  AdvanceTo(*layer_stream_bytes_, static_cast<double>(t.layer_stream_bytes));
  for (const auto& [tier_kind, n] : t.errors) {
    const size_t slash = tier_kind.find('/');
    advance(*tier_errors_,
            {{"tier", tier_kind.substr(0, slash)}, {"kind", tier_kind.substr(slash + 1)}}, n);
  }
  auto ratio = [](int64_t used, int64_t cap) {
    return cap > 0 ? static_cast<double>(used) / static_cast<double>(cap) : 0.0;
  };
  kv_usage_->Add({{"model", info_.model}, {"tier", "host"}}).Set(ratio(t.host_used, t.host_slots));
  kv_usage_->Add({{"model", info_.model}, {"tier", "disk"}})
      .Set(ratio(t.disk_records, t.disk_capacity_records));
}

}  // namespace strata::server
