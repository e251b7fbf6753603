#include "bench/harness/arrivals.h"

#include <algorithm>
#include <fstream>
#include <random>

#include "common/json.h"

namespace strata::bench {
namespace {

template <typename Gaps>
std::vector<double> Accumulate(int64_t n, Gaps&& gap) {
  std::vector<double> out;
  out.reserve(std::max<int64_t>(n, 0));
  double t = 0;
  for (int64_t i = 0; i < n; ++i) out.push_back(t += gap());
  return out;
}

absl::StatusOr<TraceEntry> ParseTraceLine(const std::string& line, const std::string& what) {
  ASSIGN_OR_RETURN(Json j, ParseJson(line, what));
  if (!j.is_object()) return absl::InvalidArgumentError(what + ": expected a JSON object");
  TraceEntry e;
  ASSIGN_OR_RETURN(e.timestamp_s, JsonOptionalDouble(j, "timestamp", -1, what));
  if (e.timestamp_s < 0) return absl::InvalidArgumentError(what + ": key 'timestamp': missing");
  e.timestamp_s /= 1e3;
  ASSIGN_OR_RETURN(e.input_length, JsonInt(j, "input_length", what));
  ASSIGN_OR_RETURN(e.output_length, JsonInt(j, "output_length", what));
  if (e.input_length < 1 || e.output_length < 1) {
    return absl::InvalidArgumentError(what + ": input_length and output_length must be >= 1");
  }
  if (auto it = j.find("hash_ids"); it != j.end()) {
    if (!it->is_array()) return absl::InvalidArgumentError(what + ": key 'hash_ids': expected a list");
    for (const Json& id : *it) {
      if (!id.is_number_integer()) {
        return absl::InvalidArgumentError(what + ": key 'hash_ids': expected integers");
      }
      e.hash_ids.push_back(id.get<int64_t>());
    }
  }
  return e;
}

}  // namespace

std::vector<double> PoissonArrivals(int64_t n, double rate, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> gap(rate);
  return Accumulate(n, [&] { return gap(rng); });
}

std::vector<double> GammaArrivals(int64_t n, double rate, double cv, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const double shape = 1.0 / (cv * cv);
  std::gamma_distribution<double> gap(shape, 1.0 / (rate * shape));
  return Accumulate(n, [&] { return gap(rng); });
}

absl::StatusOr<std::vector<TraceEntry>> LoadTrace(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("trace: cannot open " + path);
  std::vector<TraceEntry> out;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ASSIGN_OR_RETURN(TraceEntry e, ParseTraceLine(line, StrCat(path, ":", number)));
    out.push_back(std::move(e));
  }
  if (out.empty()) return absl::InvalidArgumentError("trace: " + path + " has no entries");
  std::stable_sort(out.begin(), out.end(),
                   [](const TraceEntry& a, const TraceEntry& b) { return a.timestamp_s < b.timestamp_s; });
  const double t0 = out.front().timestamp_s;
  for (TraceEntry& e : out) e.timestamp_s -= t0;
  return out;
}

}  // namespace strata::bench
