#include "engine/layer_stream.h"

namespace strata::engine {

LayerStream::LayerStream(kvcache::PageIo* io, size_t page_bytes, int32_t num_layers,
                         std::span<const kvcache::LayerPageCopy> loads,
                         std::span<const kvcache::LayerPageCopy> stores)
    : io_(io), page_bytes_(page_bytes), loads_(num_layers), stores_(num_layers) {
  for (const kvcache::LayerPageCopy& c : loads) loads_[c.layer].push_back(c);
  for (const kvcache::LayerPageCopy& c : stores) stores_[c.layer].push_back(c);
  if (!loads.empty()) copier_ = std::thread([this] { LoadAll(); });
}

LayerStream::~LayerStream() {
  if (!copier_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  copier_.join();
}

void LayerStream::LoadAll() {
  for (int32_t l = 0; l < static_cast<int32_t>(loads_.size()); ++l) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || stored_ >= l - 2; });
      if (stop_) return;
    }
    absl::Status s;
    for (const kvcache::LayerPageCopy& c : loads_[l]) {
      s = io_->WritePage(c.page, {c.host, page_bytes_});
      if (!s.ok()) break;
    }
    {
      std::lock_guard lock(mu_);
      loaded_ = l;
      load_status_.Update(s);
    }
    cv_.notify_all();
    if (!s.ok()) return;
  }
}

absl::Status LayerStream::BeforeLayer(int32_t l) {
  if (!copier_.joinable()) return absl::OkStatus();
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return loaded_ >= l || !load_status_.ok(); });
  return load_status_;
}

absl::Status LayerStream::AfterLayer(int32_t l) {
  for (const kvcache::LayerPageCopy& c : stores_[l]) {
    RETURN_IF_ERROR(io_->ReadPage(c.page, {c.host, page_bytes_}));
  }
  if (copier_.joinable()) {
    {
      std::lock_guard lock(mu_);
      stored_ = l;
    }
    cv_.notify_all();
  }
  return absl::OkStatus();
}

}  // namespace strata::engine
