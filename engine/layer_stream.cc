#include "engine/layer_stream.h"

namespace strata::engine {

LayerStream::LayerStream(kvcache::PageIo* io, size_t page_bytes, int32_t num_layers,
                         std::span<const kvcache::LayerPageCopy> loads,
                         std::span<const kvcache::LayerPageCopy> stores)
    : io_(io), page_bytes_(page_bytes), loads_(num_layers), stores_(num_layers) {
  for (const kvcache::LayerPageCopy& c : loads) loads_[c.layer].push_back(c);
  for (const kvcache::LayerPageCopy& c : stores) stores_[c.layer].push_back(c);
  empty_ = loads.empty() && stores.empty();
}

LayerStream::~LayerStream() {
  if (next_.valid()) next_.wait();
}

absl::Status LayerStream::Load(int32_t l) {
  for (const kvcache::LayerPageCopy& c : loads_[l]) {
    RETURN_IF_ERROR(io_->WritePage(c.page, {c.host, page_bytes_}));
  }
  return absl::OkStatus();
}

absl::Status LayerStream::BeforeLayer(int32_t l) {
  if (empty_) return absl::OkStatus();
  absl::Status loaded = next_layer_ == l && next_.valid() ? next_.get() : Load(l);
  next_layer_ = -1;
  RETURN_IF_ERROR(loaded);
  const int32_t next = l + 1;
  if (next < static_cast<int32_t>(loads_.size()) && !loads_[next].empty()) {
    next_ = std::async(std::launch::async, [this, next] { return Load(next); });
    next_layer_ = next;
  }
  return absl::OkStatus();
}

absl::Status LayerStream::AfterLayer(int32_t l) {
  for (const kvcache::LayerPageCopy& c : stores_[l]) {
    RETURN_IF_ERROR(io_->ReadPage(c.page, {c.host, page_bytes_}));
  }
  return absl::OkStatus();
}

}  // namespace strata::engine
