// A Device with graphs on the CPU, for tests: RunGraph records the kernels `record` launches
// (their parameter structs, by value) without running them, then replays the recording, now and
// on every later call with the key, without calling `record` again — what a CUDA graph does. So a
// caller that passes a changed argument on replay, reads device data on the host, copies or
// allocates inside a capture, or forgets to refresh an input buffer gets wrong results or an
// error here, as it would on a GPU. It can also report a device memory budget (memory_info), as
// a GPU does. Everything else goes to the wrapped device.
// Threading: as the wrapped device (one driving thread).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "kernels/device.h"

namespace strata::testing {

class GraphReplayDevice final : public kernels::Device {
 public:
  explicit GraphReplayDevice(std::unique_ptr<kernels::Device> inner) : inner_(std::move(inner)) {}

  int captures() const { return captures_; }
  int replays() const { return replays_; }
  int failed_captures() const { return failed_captures_; }
  size_t num_graphs() const { return graphs_.size(); }
  // The next capture of `key` fails as if it could not be captured (it then runs uncaptured).
  void FailNextCapture(uint64_t key) { fail_next_.insert(key); }

  void SetMemoryInfo(std::optional<MemoryInfo> info) { memory_ = info; }
  std::optional<MemoryInfo> memory_info() const override { return memory_; }

  std::string name() const override { return "graph-replay(" + inner_->name() + ")"; }
  bool host_visible() const override { return inner_->host_visible(); }
  bool supports_graphs() const override { return true; }

  absl::Status RunGraph(uint64_t key, const std::function<absl::Status()>& record) override {
    if (recording_ != nullptr) return Refuse("RunGraph");
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
      std::vector<Kernel> kernels;
      recording_ = &kernels;
      absl::Status s = record();
      recording_ = nullptr;
      if (fail_next_.erase(key) > 0 && s.ok()) s = absl::FailedPreconditionError("injected");
      if (!s.ok()) {
        ++failed_captures_;
        return record();
      }
      ++captures_;
      it = graphs_.emplace(key, std::move(kernels)).first;
    } else {
      ++replays_;
    }
    for (const Kernel& k : it->second) RETURN_IF_ERROR(k());
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<kernels::Buffer>> Allocate(size_t bytes) override {
    if (recording_ != nullptr) return Refuse("Allocate");
    return inner_->Allocate(bytes);
  }
  absl::StatusOr<std::unique_ptr<kernels::Buffer>> AllocateHost(size_t bytes) override {
    if (recording_ != nullptr) return Refuse("AllocateHost");
    return inner_->AllocateHost(bytes);
  }
  absl::Status CopyToDevice(void* dst, const void* src, size_t bytes) override {
    if (recording_ != nullptr) return Refuse("CopyToDevice");
    return inner_->CopyToDevice(dst, src, bytes);
  }
  absl::Status CopyToHost(void* dst, const void* src, size_t bytes) override {
    if (recording_ != nullptr) return Refuse("CopyToHost");
    return inner_->CopyToHost(dst, src, bytes);
  }
  absl::Status Synchronize() override {
    if (recording_ != nullptr) return Refuse("Synchronize");
    return inner_->Synchronize();
  }

  absl::Status Gemm(const kernels::GemmParams& p) override { return Launch(&Device::Gemm, p); }
  absl::Status RmsNorm(const kernels::RmsNormParams& p) override {
    return Launch(&Device::RmsNorm, p);
  }
  absl::Status Rope(const kernels::RopeParams& p) override { return Launch(&Device::Rope, p); }
  absl::Status WriteKv(const kernels::WriteKvParams& p) override {
    return Launch(&Device::WriteKv, p);
  }
  absl::Status PagedAttention(const kernels::PagedAttentionParams& p) override {
    return Launch(&Device::PagedAttention, p);
  }
  absl::Status QuantWriteKv(const kernels::QuantWriteKvParams& p) override {
    return Launch(&Device::QuantWriteKv, p);
  }
  absl::Status KiviWriteKv(const kernels::KiviWriteKvParams& p) override {
    return Launch(&Device::KiviWriteKv, p);
  }
  absl::Status QuantPagedAttention(const kernels::QuantAttentionParams& p) override {
    return Launch(&Device::QuantPagedAttention, p);
  }
  absl::Status AttentionScores(const kernels::AttentionScoresParams& p) override {
    return Launch(&Device::AttentionScores, p);
  }
  absl::Status KvCompact(const kernels::KvCompactParams& p) override {
    return Launch(&Device::KvCompact, p);
  }
  absl::Status SwiGlu(const kernels::SwiGluParams& p) override {
    return Launch(&Device::SwiGlu, p);
  }
  absl::Status Embedding(const kernels::EmbeddingParams& p) override {
    return Launch(&Device::Embedding, p);
  }
  absl::Status Add(const kernels::AddParams& p) override { return Launch(&Device::Add, p); }
  absl::Status Argmax(const kernels::ArgmaxParams& p) override {
    return Launch(&Device::Argmax, p);
  }
  absl::Status ApplyPenalties(const kernels::ApplyPenaltiesParams& p) override {
    return Launch(&Device::ApplyPenalties, p);
  }
  absl::Status Sample(const kernels::SampleParams& p) override {
    return Launch(&Device::Sample, p);
  }

 private:
  using Kernel = std::function<absl::Status()>;

  template <typename P>
  absl::Status Launch(absl::Status (kernels::Device::*op)(const P&), const P& p) {
    if (recording_ == nullptr) return (inner_.get()->*op)(p);
    recording_->push_back([this, op, p] { return (inner_.get()->*op)(p); });
    return absl::OkStatus();
  }
  static absl::Status Refuse(std::string_view what) {
    return absl::FailedPreconditionError(StrCat(what, " inside a captured graph"));
  }

  std::unique_ptr<kernels::Device> inner_;
  std::map<uint64_t, std::vector<Kernel>> graphs_;
  std::vector<Kernel>* recording_ = nullptr;
  std::set<uint64_t> fail_next_;
  std::optional<MemoryInfo> memory_;
  int captures_ = 0, replays_ = 0, failed_captures_ = 0;
};

}  // namespace strata::testing
