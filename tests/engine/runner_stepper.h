// A ModelRunner driven step by step like the engine drives it, for runner tests: it owns the
// runner, a PagePool over its arena and the KV of numbered sequences; a step names which
// sequences take part and the tokens each adds, and returns their last tokens' logits.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <vector>

#include "engine/model_runner.h"
#include "engine/synthetic.h"
#include "kvcache/page_pool.h"
#include "kvcache/sequence_kv.h"

namespace strata::engine {

// synthetic:tiny with seed 3, the model the runner tests share; null (and a failure) if it cannot
// be made.
inline std::unique_ptr<SyntheticModel> TinyRunnerModel() {
  auto m = MakeSyntheticModel("tiny", 3);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::make_unique<SyntheticModel>(std::move(*m)) : nullptr;
}

// A CPU device with the default options; null (and a failure) if it cannot be made.
inline std::unique_ptr<kernels::Device> TestCpuDevice() {
  auto dev = kernels::MakeCpuDevice({});
  EXPECT_TRUE(dev.ok()) << dev.status();
  return dev.ok() ? std::move(*dev) : nullptr;
}

// One runner and the KV of its sequences; steps are described by which sequences take part and
// which tokens they add.
class Stepper {
 public:
  Stepper(const SyntheticModel& model, std::unique_ptr<kernels::Device> device,
          const RunnerConfig& rc)
      : device_(std::move(device)), pool_(rc.num_kv_pages) {
    auto r = ModelRunner::Create(device_.get(), model.config, model.weights, rc);
    EXPECT_TRUE(r.ok()) << r.status();
    runner_ = std::move(*r);
  }

  // Appends new_tokens[i] to sequence seqs[i] (creating it on first use) and returns the
  // logits of each one's last token, [seqs.size() * vocab].
  std::vector<float> Step(const std::vector<int>& seqs,
                          const std::vector<std::vector<int32_t>>& new_tokens) {
    const auto& layout = runner_->kv_layout();
    std::vector<int32_t> ids, positions, query_start{0}, context_lens, rows, tables;
    std::vector<int64_t> slots;
    int32_t max_blocks = 1;
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int s = seqs[i];
      if (kv_.size() <= static_cast<size_t>(s)) kv_.resize(s + 1);
      if (!kv_[s]) kv_[s] = std::make_unique<kvcache::SequenceKv>(layout, &pool_);
      if (lens_.size() <= static_cast<size_t>(s)) lens_.resize(s + 1, 0);
      const int32_t before = lens_[s];
      lens_[s] += static_cast<int32_t>(new_tokens[i].size());
      EXPECT_TRUE(kv_[s]->Reserve(lens_[s]));
      max_blocks = std::max<int32_t>(max_blocks, kv_[s]->num_blocks());
      for (size_t t = 0; t < new_tokens[i].size(); ++t) {
        ids.push_back(new_tokens[i][t]);
        positions.push_back(before + static_cast<int32_t>(t));
      }
      query_start.push_back(static_cast<int32_t>(ids.size()));
      context_lens.push_back(lens_[s]);
      rows.push_back(query_start.back() - 1);
    }
    for (int32_t l = 0; l < layout.num_layers; ++l) {
      for (int s : seqs) {
        auto pages = kv_[s]->pages(l);
        for (int32_t b = 0; b < max_blocks; ++b) {
          tables.push_back(b < static_cast<int32_t>(pages.size()) ? pages[b] : 0);
        }
      }
      for (size_t i = 0; i < seqs.size(); ++i) {
        for (int32_t p = lens_[seqs[i]] - static_cast<int32_t>(new_tokens[i].size());
             p < lens_[seqs[i]]; ++p) {
          slots.push_back(kv_[seqs[i]]->Slot(l, p));
        }
      }
    }
    std::vector<float> logits(rows.size() * runner_->vocab_size());
    BatchInput b;
    b.token_ids = ids;
    b.positions = positions;
    b.query_start = query_start;
    b.context_lens = context_lens;
    b.max_blocks_per_seq = max_blocks;
    b.block_tables = tables;
    b.slots = slots;
    b.logit_rows = rows;
    const absl::Status status = runner_->Forward(b, logits);
    EXPECT_TRUE(status.ok()) << status;
    return logits;
  }

  // Every page of the arena, as bytes.
  std::vector<std::byte> Pages() {
    const size_t page_bytes = runner_->kv_layout().PageBytes();
    const int32_t pages = runner_->runner_config().num_kv_pages;
    std::vector<std::byte> all(page_bytes * pages);
    for (int32_t p = 0; p < pages; ++p) {
      EXPECT_TRUE(runner_->ReadPage(p, {all.data() + p * page_bytes, page_bytes}).ok());
    }
    return all;
  }

  ModelRunner& runner() { return *runner_; }
  kernels::Device* device() { return device_.get(); }

 private:
  std::unique_ptr<kernels::Device> device_;
  kvcache::PagePool pool_;
  std::unique_ptr<ModelRunner> runner_;
  std::vector<std::unique_ptr<kvcache::SequenceKv>> kv_;
  std::vector<int32_t> lens_;
};

}  // namespace strata::engine
