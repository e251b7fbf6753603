// Metrics: the Prometheus registry behind `GET /metrics` (DESIGN.md §7), through prometheus-cpp.
// Every series carries the label `model`. Front ends record request-level observations as they
// happen (TTFT from arrival, TPOT per completion, token-weighted prefix-cache hits); engine-side
// gauges and counters (running, waiting, KV usage, preemptions) are refreshed from an
// EngineStats snapshot when the exposition is rendered.
//
// Thread-safe: prometheus-cpp metrics are atomic; Render serialises under a mutex.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace strata::server {

struct MetricsInfo {
  std::string model;              // the served name (label `model`)
  std::string version;            // build info
  std::string backend;            // cpu | cuda
  int32_t block_size = 16;
  int32_t num_device_blocks = 0;  // KV pages on the device tier
  // Configured SLO classes: their outcome series exist at zero from start-up, so attainment
  // (met / all) reads 0 rather than nothing when a class has only misses, and rate() sees the
  // first event of each outcome.
  std::vector<std::string> slo_classes;
};

class Metrics {
 public:
  explicit Metrics(const MetricsInfo& info);

  void ObserveTimeToFirstToken(double seconds);
  void ObserveTimePerOutputToken(double seconds);
  void ObserveEndToEnd(double seconds);
  void ObserveQueueTime(double seconds);
  void AddPromptTokens(int64_t n);
  void AddGenerationTokens(int64_t n);
  // status: ok | cancelled | error | rejected | invalid
  void CountRequest(std::string_view status);
  // A request's prompt looked up in the prefix cache: `queried` tokens, and how many of them each
  // tier held.
  struct TierHits {
    int64_t device = 0, host = 0, disk = 0;
  };
  void AddPrefixCacheLookup(int64_t queried, const TierHits& hits);
  // outcome: met | missed_ttft | missed_tpot | rejected | cancelled
  void CountSlo(std::string_view slo_class, std::string_view outcome);

  // The text exposition format, with engine-side series refreshed from `stats`.
  std::string Render(const engine::EngineStats& stats);

 private:
  static void AdvanceTo(prometheus::Counter& counter, double total);
  void RenderTiers(const kvcache::TierStats& tiers);
  prometheus::Counter& CounterWith(prometheus::Family<prometheus::Counter>& family,
                                   const prometheus::Labels& extra);

  const MetricsInfo info_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Histogram* ttft_;
  prometheus::Histogram* tpot_;
  prometheus::Histogram* e2e_;
  prometheus::Histogram* queue_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* generation_tokens_;
  prometheus::Counter* preemptions_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Counter>* prefix_queries_;
  prometheus::Family<prometheus::Counter>* prefix_hits_;
  prometheus::Family<prometheus::Counter>* slo_requests_;
  prometheus::Family<prometheus::Counter>* transfers_;
  prometheus::Family<prometheus::Counter>* tier_errors_;
  prometheus::Family<prometheus::Counter>* swaps_;
  prometheus::Family<prometheus::Counter>* layer_moves_;
  prometheus::Counter* layer_stream_bytes_;
  prometheus::Gauge* running_;
  prometheus::Gauge* waiting_;
  prometheus::Family<prometheus::Gauge>* kv_usage_;
  prometheus::Family<prometheus::Gauge>* kv_pool_usage_;
  // The scheduler's cost model against reality (DESIGN.md §6): last step measured and predicted,
  // the recent mean relative error, and both summed over every step.
  prometheus::Gauge* step_time_;
  prometheus::Gauge* step_time_predicted_;
  prometheus::Gauge* step_error_ratio_;
  prometheus::Counter* step_seconds_;
  prometheus::Counter* step_predicted_seconds_;
  std::mutex mu_;                  // Render
};

}  // namespace strata::server
