#include "bench/harness/workloads.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace strata::bench {
namespace {

// Seeded token segments: every call draws from its own generator, keyed by (seed, stream, index),
// so a segment is the same whatever else the workload contains.
class Tokens {
 public:
  explicit Tokens(const WorkloadOptions& o) : o_(o) {}

  // `n` random ids for segment (stream, index).
  std::vector<int32_t> Segment(uint64_t stream, uint64_t index, int32_t n) const {
    std::seed_seq seq{o_.seed, stream, index};
    std::mt19937_64 rng(seq);
    std::uniform_int_distribution<int32_t> id(o_.token_lo, o_.token_hi - 1);
    std::vector<int32_t> out(std::max(n, 0));
    for (int32_t& t : out) t = id(rng);
    return out;
  }
  // Like Segment, but the first two ids encode `tag` (low digit first), so siblings with tags
  // below the id range differ at their first token, and any two distinct tags by their second.
  std::vector<int32_t> Tagged(uint64_t stream, uint64_t tag, int32_t n) const {
    std::vector<int32_t> out = Segment(stream, tag, n);
    const uint64_t range = o_.token_hi - o_.token_lo;
    if (n > 0) out[0] = o_.token_lo + static_cast<int32_t>(tag % range);
    if (n > 1) out[1] = o_.token_lo + static_cast<int32_t>((tag / range) % range);
    return out;
  }

 private:
  const WorkloadOptions& o_;
};

enum Stream : uint64_t { kSystem = 1, kTurn, kAnswer, kDocument, kQuestion, kUnique, kBlock };

void Append(std::vector<int32_t>& to, const std::vector<int32_t>& from) {
  to.insert(to.end(), from.begin(), from.end());
}

std::vector<BenchRequest> MultiTurn(const WorkloadOptions& o, const Tokens& t) {
  const std::vector<int32_t> system = t.Segment(kSystem, 0, o.system_tokens);
  std::vector<std::vector<int32_t>> history(o.users, system);
  std::vector<BenchRequest> out;
  for (int32_t r = 0; r < o.rounds; ++r) {
    for (int32_t u = 0; u < o.users; ++u) {
      const uint64_t key = static_cast<uint64_t>(u) * o.rounds + r;
      // Users differ from their first turn on; a user's rounds extend the same history.
      Append(history[u], r == 0 ? t.Tagged(kTurn, u, o.turn_tokens)
                                : t.Segment(kTurn, key, o.turn_tokens));
      BenchRequest q;
      q.id = static_cast<int64_t>(out.size());
      q.group = StrCat("user", u, "/round", r);
      q.after = r == 0 ? -1 : q.id - o.users;
      q.prompt = history[u];
      q.max_tokens = o.answer_tokens;
      out.push_back(std::move(q));
      Append(history[u], t.Segment(kAnswer, key, o.answer_tokens));
    }
  }
  return out;
}

// The document order of W2: each document index appears twice.
absl::StatusOr<std::vector<int32_t>> DocumentOrder(const WorkloadOptions& o) {
  std::vector<int32_t> order;
  const int32_t n = o.documents;
  if (o.order == "tile" || o.order == "random") {
    for (int pass = 0; pass < 2; ++pass) {
      for (int32_t d = 0; d < n; ++d) order.push_back(d);
    }
    if (o.order == "random") std::shuffle(order.begin(), order.end(), std::mt19937_64(o.seed));
  } else if (o.order == "interleave") {
    // d0 d1 d0 d2 d1 d3 d2 ... d(n-1) d(n-2) d(n-1)
    order.push_back(0);
    for (int32_t d = 1; d < n; ++d) {
      order.push_back(d);
      order.push_back(d - 1);
    }
    order.push_back(n - 1);
  } else {
    return absl::InvalidArgumentError("--order: expected interleave, random or tile, got '" +
                                      o.order + "'");
  }
  return order;
}

absl::StatusOr<std::vector<BenchRequest>> DocumentQa(const WorkloadOptions& o, const Tokens& t) {
  ASSIGN_OR_RETURN(std::vector<int32_t> order, DocumentOrder(o));
  std::vector<int32_t> asked(o.documents, 0);
  std::vector<BenchRequest> out;
  for (int32_t d : order) {
    const int32_t ask = asked[d]++;
    BenchRequest q;
    q.id = static_cast<int64_t>(out.size());
    q.group = StrCat("doc", d, "/ask", ask);
    q.prompt = t.Tagged(kDocument, d, o.doc_tokens);
    Append(q.prompt, t.Tagged(kQuestion, static_cast<uint64_t>(d) * 2 + ask, o.question_tokens));
    q.max_tokens = o.qa_answer_tokens;
    out.push_back(std::move(q));
  }
  return out;
}

int32_t LogNormalLength(std::mt19937_64& rng, double median, double sigma, int32_t max) {
  std::lognormal_distribution<double> d(std::log(median), sigma);
  return std::clamp(static_cast<int32_t>(std::lround(d(rng))), 1, max);
}

std::string PickClass(std::mt19937_64& rng, const WorkloadOptions& o) {
  if (o.classes.empty()) return "";
  double total = 0;
  for (const auto& [name, w] : o.classes) total += w;
  double x = std::uniform_real_distribution<double>(0, total)(rng);
  for (const auto& [name, w] : o.classes) {
    if ((x -= w) < 0) return name;
  }
  return o.classes.back().first;
}

std::vector<BenchRequest> Mix(const WorkloadOptions& o, const Tokens& t, bool faults) {
  std::mt19937_64 rng(o.seed);
  std::vector<BenchRequest> out;
  for (int64_t i = 0; i < o.requests; ++i) {
    BenchRequest q;
    q.id = i;
    q.group = StrCat("req", i);
    const int32_t in = std::max(2, LogNormalLength(rng, o.input_median, o.input_sigma,
                                                   o.max_input_tokens));
    q.max_tokens = LogNormalLength(rng, o.output_median, o.output_sigma, o.max_output_tokens);
    q.prompt = t.Tagged(kUnique, i, in);
    q.slo_class = PickClass(rng, o);
    if (faults && std::uniform_real_distribution<double>(0, 1)(rng) < o.cancel_fraction) {
      q.max_tokens = std::max(q.max_tokens, o.cancel_after_tokens + 8);
      q.cancel_after_tokens = o.cancel_after_tokens;
    }
    out.push_back(std::move(q));
  }
  return out;
}

std::vector<BenchRequest> Offline(const WorkloadOptions& o, const Tokens& t) {
  std::vector<BenchRequest> out;
  for (int64_t i = 0; i < o.requests; ++i) {
    BenchRequest q;
    q.id = i;
    q.group = StrCat("req", i);
    q.prompt = t.Tagged(kUnique, i, o.input_tokens);
    q.max_tokens = o.output_tokens;
    out.push_back(std::move(q));
  }
  return out;
}

absl::StatusOr<std::vector<BenchRequest>> Trace(const WorkloadOptions& o, const Tokens& t) {
  ASSIGN_OR_RETURN(std::vector<TraceEntry> entries, LoadTrace(o.trace_path));
  std::vector<BenchRequest> out;
  for (const TraceEntry& e : entries) {
    BenchRequest q;
    q.id = static_cast<int64_t>(out.size());
    q.group = StrCat("trace", q.id);
    q.arrival_s = e.timestamp_s;
    for (int64_t id : e.hash_ids) {
      if (static_cast<int64_t>(q.prompt.size()) >= e.input_length) break;
      Append(q.prompt, t.Tagged(kBlock, static_cast<uint64_t>(id), o.trace_block_tokens));
    }
    // Blocks past the named ones are unique to this request.
    for (int32_t b = 0; static_cast<int64_t>(q.prompt.size()) < e.input_length; ++b) {
      Append(q.prompt, t.Segment(kUnique, static_cast<uint64_t>(q.id) << 20 | b,
                                 o.trace_block_tokens));
    }
    q.prompt.resize(e.input_length);
    q.max_tokens = static_cast<int32_t>(e.output_length);
    out.push_back(std::move(q));
  }
  return out;
}

absl::Status Validate(const WorkloadOptions& o) {
  if (o.token_lo < 0 || o.token_hi - o.token_lo < 2) {
    return absl::InvalidArgumentError("--token-range: needs at least two ids, lo >= 0");
  }
  for (auto [value, flag] : {std::pair{o.users, "--users"}, {o.rounds, "--rounds"},
                             {o.documents, "--documents"}, {o.doc_tokens, "--doc-tokens"},
                             {o.input_tokens, "--input-tokens"},
                             {o.output_tokens, "--output-tokens"}}) {
    if (value < 1) return absl::InvalidArgumentError(StrCat(flag, ": must be >= 1"));
  }
  if (o.requests < 1) return absl::InvalidArgumentError("--requests: must be >= 1");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<BenchRequest>> MakeWorkload(const WorkloadOptions& o) {
  RETURN_IF_ERROR(Validate(o));
  const Tokens t(o);
  if (o.name == "W1") return MultiTurn(o, t);
  if (o.name == "W2") return DocumentQa(o, t);
  if (o.name == "W3") return Mix(o, t, /*faults=*/false);
  if (o.name == "W4") return Offline(o, t);
  if (o.name == "W5") return Mix(o, t, /*faults=*/true);
  if (o.name == "trace") return Trace(o, t);
  return absl::InvalidArgumentError("--workload: expected W1, W2, W3, W4, W5 or trace, got '" +
                                    o.name + "'");
}

absl::Status ApplyArrivals(std::vector<BenchRequest>& requests, const std::string& process,
                           double rate, double cv, uint64_t seed) {
  std::vector<double> times;
  const int64_t n = static_cast<int64_t>(requests.size());
  if (process == "none") {
    times.assign(n, 0.0);
  } else if (rate <= 0) {
    return absl::InvalidArgumentError("--rate: must be > 0 for an open loop");
  } else if (process == "poisson") {
    times = PoissonArrivals(n, rate, seed);
  } else if (process == "gamma") {
    if (cv <= 0) return absl::InvalidArgumentError("--cv: must be > 0");
    times = GammaArrivals(n, rate, cv, seed);
  } else {
    return absl::InvalidArgumentError("--arrivals: expected poisson, gamma or none, got '" +
                                      process + "'");
  }
  for (int64_t i = 0; i < n; ++i) requests[i].arrival_s = times[i];
  return absl::OkStatus();
}

}  // namespace strata::bench
