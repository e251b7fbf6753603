// The physical limits a benchmark report compares against, measured in the same run
// (BENCHMARKS.md "Limits"): streaming-read and memcpy bandwidth, the CPU device's bf16 GEMM rate,
// and the raw sequential write and read bandwidth of a directory (the disk tier's) with O_DIRECT;
// plus the per-token costs of a model from its config. Runs on the calling thread (OpenMP inside).
#pragma once

#include <string>

#include "bench/harness/record.h"
#include "common/status.h"

namespace strata::bench {

struct LimitsOptions {
  size_t memory_bytes = size_t{512} << 20;  // buffer of the bandwidth probes
  size_t disk_bytes = size_t{256} << 20;    // file written then read in the directory
  std::string disk_dir;                     // "" = skip the disk probe
  int threads = 0;                          // GEMM threads (0 = all cores)
};

absl::StatusOr<MachineLimits> MeasureLimits(const LimitsOptions& options);

// Sequential O_DIRECT write (then fdatasync) and read of `bytes` in `dir`, 4 MiB requests, the
// file removed afterwards. Falls back to buffered I/O + posix_fadvise(DONTNEED) where the file
// system refuses O_DIRECT (tmpfs), and says so in the log.
absl::Status MeasureDisk(const std::string& dir, size_t bytes, MachineLimits* limits);

// Costs of `model` (a Hugging Face folder or synthetic:NAME): matmul parameters, the bytes of
// those weights in the dtype the CPU backend keeps them (bf16 for synthetic models, the
// checkpoint's otherwise) and KV bytes per token in the f32 KV arena.
absl::StatusOr<ModelCosts> CostsOfModel(const std::string& model);

// "CPU model, N cores, M GiB" of this machine.
std::string DescribeMachine();

}  // namespace strata::bench
