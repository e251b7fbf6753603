#include "bench/harness/limits.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <tuple>
#include <fstream>
#include <memory>
#include <thread>

#include "bench/bench_limits.h"
#include "common/logging.h"
#include "engine/synthetic.h"
#include "kernels/device.h"

namespace strata::bench {
namespace {

struct AlignedFree {
  void operator()(char* p) const { std::free(p); }
};

// Writes (or reads) `bytes` through `fd` in 4 MiB requests; returns the seconds taken.
absl::StatusOr<double> Stream(int fd, char* buf, size_t bytes, bool write) {
  constexpr size_t kRequest = size_t{4} << 20;
  const double t0 = NowSeconds();
  for (size_t done = 0; done < bytes; done += kRequest) {
    const ssize_t n = write ? ::pwrite(fd, buf, kRequest, done) : ::pread(fd, buf, kRequest, done);
    if (n != static_cast<ssize_t>(kRequest)) {
      return absl::InternalError(StrCat(write ? "write" : "read", " failed at offset ", done));
    }
  }
  if (write && ::fdatasync(fd) != 0) return absl::InternalError("fdatasync failed");
  return NowSeconds() - t0;
}

int OpenProbe(const std::string& path, bool direct) {
  return ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | (direct ? O_DIRECT : 0), 0600);
}

}  // namespace

absl::Status MeasureDisk(const std::string& dir, size_t bytes, MachineLimits* limits) {
  constexpr size_t kRequest = size_t{4} << 20;
  bytes = std::max(kRequest, bytes / kRequest * kRequest);
  const std::string path = dir + "/.strata-bench-probe";
  bool direct = true;
  int fd = OpenProbe(path, true);
  if (fd < 0) {
    direct = false;
    fd = OpenProbe(path, false);
    LOG_WARN("bench: {} refuses O_DIRECT; the disk probe is buffered", dir);
  }
  if (fd < 0) return absl::InternalError("bench: cannot create a probe file in " + dir);
  std::unique_ptr<char, AlignedFree> buf(static_cast<char*>(std::aligned_alloc(4096, kRequest)));
  std::memset(buf.get(), 0x5a, kRequest);
  absl::StatusOr<double> w = Stream(fd, buf.get(), bytes, /*write=*/true);
  if (w.ok() && !direct) ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  absl::StatusOr<double> r = w.ok() ? Stream(fd, buf.get(), bytes, /*write=*/false) : w;
  ::close(fd);
  ::unlink(path.c_str());
  if (!r.ok()) return absl::InternalError("bench: disk probe in " + dir + ": " + r.status().ToString());
  limits->disk_dir = dir;
  limits->disk_write_bytes_per_s = bytes / *w;
  limits->disk_read_bytes_per_s = bytes / *r;
  return absl::OkStatus();
}

absl::StatusOr<MachineLimits> MeasureLimits(const LimitsOptions& o) {
  MachineLimits l;
  l.mem_read_bytes_per_s = MeasureReadBandwidth(o.memory_bytes, 3);
  l.mem_copy_bytes_per_s = MeasureCopyBandwidth(o.memory_bytes, 3);
  ASSIGN_OR_RETURN(auto dev, kernels::MakeCpuDevice({.threads = o.threads}));
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{256, 2048, 2048}, {512, 4096, 1024}}) {
    l.gemm_flops = std::max(l.gemm_flops, MeasureGemmRate(*dev, m, n, k, 3));
  }
  if (!o.disk_dir.empty()) RETURN_IF_ERROR(MeasureDisk(o.disk_dir, o.disk_bytes, &l));
  return l;
}

absl::StatusOr<ModelCosts> CostsOfModel(const std::string& model) {
  engine::ModelConfig c;
  int64_t weight_element_bytes = 2;  // synthetic models are bf16
  if (model.rfind("synthetic:", 0) == 0) {
    ASSIGN_OR_RETURN(c, engine::SyntheticModelConfig(model.substr(10)));
  } else {
    std::ifstream in(model + "/config.json");
    if (!in) return absl::NotFoundError("bench: no config.json in " + model);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSIGN_OR_RETURN(c, engine::ParseModelConfig(text, model + "/config.json"));
    // F16 checkpoints are converted to f32 at load (no f16 GEMM on the CPU).
    weight_element_bytes = c.dtype == DType::kBF16 ? 2 : 4;
  }
  ModelCosts costs;
  costs.matmul_params = MatmulParams(c);
  costs.weight_bytes = costs.matmul_params * weight_element_bytes;
  costs.kv_bytes_per_token = 2 * c.num_layers * c.num_kv_heads * c.head_dim * 4;
  return costs;
}

std::string DescribeMachine() {
  std::ifstream cpu("/proc/cpuinfo");
  std::string line, name = "unknown CPU";
  while (std::getline(cpu, line)) {
    if (line.rfind("model name", 0) == 0) {
      name = line.substr(line.find(':') + 2);
      break;
    }
  }
  const double gib = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * ::sysconf(_SC_PAGESIZE) /
                     (1024.0 * 1024 * 1024);
  return StrCat(name, ", ", std::thread::hardware_concurrency(), " cores, ",
                static_cast<int>(gib + 0.5), " GiB");
}

}  // namespace strata::bench
