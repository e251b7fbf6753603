// The open-loop arrival processes have the rate and dispersion asked for (BENCHMARKS.md W3:
// Poisson = CV 1, bursty Gamma with CV 2-4), are reproducible from their seed, and a recorded
// trace in the Mooncake format loads with its timestamps, lengths and block ids.
#include "bench/harness/arrivals.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>

namespace strata::bench {
namespace {

struct GapStats {
  double mean = 0, cv = 0;
};

GapStats Gaps(const std::vector<double>& times) {
  std::vector<double> gaps(times.size());
  std::adjacent_difference(times.begin(), times.end(), gaps.begin());
  const double mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / gaps.size();
  double var = 0;
  for (double g : gaps) var += (g - mean) * (g - mean);
  var /= gaps.size() - 1;
  return {mean, std::sqrt(var) / mean};
}

TEST(ArrivalsTest, PoissonHasTheRateAndUnitDispersion) {
  const auto t = PoissonArrivals(20000, 4.0, 7);
  ASSERT_EQ(t.size(), 20000u);
  EXPECT_TRUE(std::is_sorted(t.begin(), t.end()));
  const GapStats s = Gaps(t);
  // Standard error of the mean gap is 0.25/sqrt(20000) = 0.0018: 3% is > 4 sigma.
  EXPECT_NEAR(s.mean, 0.25, 0.25 * 0.03);
  EXPECT_NEAR(s.cv, 1.0, 0.05);
}

TEST(ArrivalsTest, GammaHasTheRateAndTheRequestedDispersion) {
  for (double cv : {0.5, 2.0, 4.0}) {
    const auto t = GammaArrivals(50000, 10.0, cv, 11);
    const GapStats s = Gaps(t);
    EXPECT_NEAR(s.mean, 0.1, 0.1 * 0.05 * cv) << "cv " << cv;
    EXPECT_NEAR(s.cv, cv, 0.1 * cv) << "cv " << cv;
  }
}

TEST(ArrivalsTest, TheSeedFixesTheArrivals) {
  EXPECT_EQ(PoissonArrivals(100, 2, 3), PoissonArrivals(100, 2, 3));
  EXPECT_NE(PoissonArrivals(100, 2, 3), PoissonArrivals(100, 2, 4));
  EXPECT_EQ(GammaArrivals(100, 2, 3, 5), GammaArrivals(100, 2, 3, 5));
}

std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string path =
      (std::filesystem::temp_directory_path() / (name + std::to_string(::getpid()))).string();
  std::ofstream(path) << text;
  return path;
}

TEST(ArrivalsTest, LoadsAMooncakeTrace) {
  const std::string path = WriteTemp(
      "trace.jsonl",
      "{\"timestamp\": 1500, \"input_length\": 700, \"output_length\": 12, \"hash_ids\": [0, 1]}\n"
      "\n"
      "{\"timestamp\": 1000, \"input_length\": 600, \"output_length\": 3, \"hash_ids\": [0, 2]}\n");
  auto t = LoadTrace(path);
  std::filesystem::remove(path);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->size(), 2u);
  EXPECT_DOUBLE_EQ((*t)[0].timestamp_s, 0.0);  // sorted, relative to the first
  EXPECT_DOUBLE_EQ((*t)[1].timestamp_s, 0.5);
  EXPECT_EQ((*t)[0].input_length, 600);
  EXPECT_EQ((*t)[1].output_length, 12);
  EXPECT_EQ((*t)[1].hash_ids, (std::vector<int64_t>{0, 1}));
}

TEST(ArrivalsTest, ABadTraceLineIsNamed) {
  const std::string path =
      WriteTemp("bad.jsonl",
                "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1}\n"
                "{\"timestamp\": 1, \"input_length\": \"x\", \"output_length\": 1}\n");
  auto t = LoadTrace(path);
  std::filesystem::remove(path);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find(":2"), std::string::npos) << t.status();
  EXPECT_NE(t.status().message().find("input_length"), std::string::npos) << t.status();
  EXPECT_FALSE(LoadTrace("/nonexistent/trace.jsonl").ok());
}

}  // namespace
}  // namespace strata::bench
