// bench_cuda where it cannot measure anything: without a GPU (or in a build without CUDA) it
// prints one line saying why and exits 0, whatever it was asked to run; a bad flag exits 2 with
// the usage. The binary is run as a user would (popen). Where a GPU is present the no-GPU path
// cannot be reached, and the test skips (running the benchmark itself is not a test).
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"

namespace strata {
namespace {

const std::string kBenchCuda = STRATA_BINARY_DIR "/bin/bench_cuda";

struct Ran {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

Ran RunBenchCuda(const std::string& args) {
  Ran r;
  FILE* pipe = ::popen((kBenchCuda + " " + args + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

int Lines(const std::string& text) {
  int lines = 0;
  for (char c : text) lines += c == '\n';
  return lines;
}

class BenchCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kBenchCuda)) GTEST_SKIP() << kBenchCuda << " is not built";
    const Ran probe = RunBenchCuda("--probe");
    ASSERT_EQ(probe.exit_code, 0) << probe.output;
    if (probe.output.rfind("bench_cuda: GPU found", 0) == 0) {
      GTEST_SKIP() << "a GPU is present, so the no-GPU path cannot be checked: " << probe.output;
    }
  }
};

TEST_F(BenchCudaTest, WithoutAGpuEveryRunPrintsWhyOnOneLineAndExitsZero) {
  for (const std::string args : {"--probe", "", "--quick --commit abc123"}) {
    const Ran r = RunBenchCuda(args);
    EXPECT_EQ(r.exit_code, 0) << args << ": " << r.output;
    EXPECT_EQ(Lines(r.output), 1) << args << ": " << r.output;
    EXPECT_EQ(r.output.rfind("bench_cuda: no usable GPU, nothing measured: ", 0), 0u)
        << args << ": " << r.output;
    EXPECT_GT(r.output.size(), std::string("bench_cuda: no usable GPU, nothing measured: x").size())
        << "no reason given: " << r.output;
  }
}

// Flags are parsed before the GPU is looked at, so this holds with or without one.
TEST(BenchCudaFlags, ABadFlagExitsTwoWithTheUsage) {
  if (!std::filesystem::exists(kBenchCuda)) GTEST_SKIP() << kBenchCuda << " is not built";
  const Ran r = RunBenchCuda("--no-such-flag");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("'--no-such-flag'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("usage: bench_cuda"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace strata
