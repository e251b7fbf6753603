// Test helpers shared by the tier tests: a fake device arena behind PageIo whose pages hold a
// pattern derived from (tag, layer, byte), a temporary directory, a bounded wait.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "kvcache/disk_format.h"
#include "kvcache/page_io.h"
#include "kvcache/tiered_store.h"
#include "tests/common/temp_dir.h"

namespace strata::kvcache {

// The KV cache manager's invariants (pages, references, tables) hold.
#define EXPECT_INVARIANTS(kv)                  \
  do {                                         \
    absl::Status st_ = (kv).CheckInvariants(); \
    EXPECT_TRUE(st_.ok()) << st_;              \
  } while (0)

// 2 layers x (2 x 4 tokens x 2 heads x 4 dims x f32) = 2 x 256 bytes: a block is 512 bytes.
inline KvLayout Layout() {
  return KvLayout{.num_layers = 2, .num_kv_heads = 2, .head_dim = 4, .block_size = 4};
}
inline const size_t kPageBytes = Layout().PageBytes();
inline const int64_t kBlockBytes = static_cast<int64_t>(kPageBytes) * 2;

// A host tier of `host_blocks` blocks.
inline TierOptions HostOnly(int64_t host_blocks, bool write_through = false) {
  TierOptions o;
  o.host_capacity_bytes = host_blocks * kBlockBytes;
  o.write_through = write_through;
  return o;
}

// Plus a disk tier of `disk_records` records in one segment under `dir` (not persisted).
inline TierOptions WithDisk(const std::string& dir, int64_t host_blocks, int64_t disk_records,
                            FileSystem* fs = nullptr) {
  TierOptions o = HostOnly(host_blocks);
  o.fs = fs;
  o.disk.dir = dir;
  o.disk.segment_bytes = kSegmentHeaderBytes + disk_records * SlotBytes(kBlockBytes);
  o.disk.capacity_bytes = o.disk.segment_bytes;
  o.disk.persist = false;
  o.disk.namespace_hash = {0x1234, 0x5678};
  o.disk.namespace_text = "model=tier_test";
  o.disk.layers = 2;
  return o;
}

// Disk errors of every kind.
inline int64_t DiskErrors(const TierStats& s) {
  int64_t n = 0;
  for (const auto& [k, v] : s.errors) {
    if (k.rfind("disk/", 0) == 0) n += v;
  }
  return n;
}

inline uint8_t PatternByte(uint64_t tag, int32_t layer, size_t i) {
  uint64_t x = tag * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(layer + 1) * 0xC2B2AE3D27D4EB4Full +
               i * 0x165667B19E3779F9ull;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return static_cast<uint8_t>(x);
}

// The device KV arena: num_pages pages of PageBytes(), plus injected copy failures.
class FakeDevice : public PageIo {
 public:
  FakeDevice(const KvLayout& layout, int32_t num_pages)
      : page_bytes_(layout.PageBytes()), num_pages_(num_pages), arena_(num_pages * page_bytes_) {}

  absl::Status ReadPage(int32_t page, std::span<std::byte> out) override {
    ++reads_;
    if (fail_next_ > 0) {
      --fail_next_;
      return absl::InternalError("fake device: injected read failure");
    }
    if (page < 0 || page >= num_pages_ || out.size() != page_bytes_) {
      ADD_FAILURE() << "bad ReadPage(" << page << ", " << out.size() << ")";
      return absl::InvalidArgumentError("bad page");
    }
    std::memcpy(out.data(), arena_.data() + page * page_bytes_, page_bytes_);
    return absl::OkStatus();
  }
  absl::Status WritePage(int32_t page, std::span<const std::byte> in) override {
    ++writes_;
    if (fail_next_write_ > 0) {
      --fail_next_write_;
      return absl::InternalError("fake device: injected write failure");
    }
    if (fail_next_ > 0) {
      --fail_next_;
      return absl::InternalError("fake device: injected write failure");
    }
    if (page < 0 || page >= num_pages_ || in.size() != page_bytes_) {
      ADD_FAILURE() << "bad WritePage(" << page << ", " << in.size() << ")";
      return absl::InvalidArgumentError("bad page");
    }
    std::memcpy(arena_.data() + page * page_bytes_, in.data(), page_bytes_);
    return absl::OkStatus();
  }

  // Host-tier arenas come from here (on CUDA: page-locked memory); counted.
  absl::StatusOr<std::unique_ptr<kernels::Buffer>> AllocateHost(size_t bytes) override {
    host_bytes_allocated_ += static_cast<int64_t>(bytes);
    return kernels::AllocateHostBuffer(bytes);
  }
  int64_t host_bytes_allocated() const { return host_bytes_allocated_; }

  // The next `n` ReadPage/WritePage calls fail.
  void FailNext(int n = 1) { fail_next_ = n; }
  void FailNextWrite(int n = 1) { fail_next_write_ = n; }
  int reads() const { return reads_; }
  int writes() const { return writes_; }

  void Fill(int32_t page, uint64_t tag, int32_t layer) {
    for (size_t i = 0; i < page_bytes_; ++i) {
      arena_[page * page_bytes_ + i] = std::byte(PatternByte(tag, layer, i));
    }
  }
  void Clear(int32_t page, uint8_t value = 0) {
    std::memset(arena_.data() + page * page_bytes_, value, page_bytes_);
  }
  ::testing::AssertionResult Holds(int32_t page, uint64_t tag, int32_t layer) const {
    for (size_t i = 0; i < page_bytes_; ++i) {
      if (arena_[page * page_bytes_ + i] != std::byte(PatternByte(tag, layer, i))) {
        return ::testing::AssertionFailure()
               << "page " << page << " differs from (tag " << tag << ", layer " << layer
               << ") at byte " << i;
      }
    }
    return ::testing::AssertionSuccess();
  }
  ::testing::AssertionResult IsFilledWith(int32_t page, uint8_t value) const {
    for (size_t i = 0; i < page_bytes_; ++i) {
      if (arena_[page * page_bytes_ + i] != std::byte(value)) {
        return ::testing::AssertionFailure() << "page " << page << " byte " << i << " changed";
      }
    }
    return ::testing::AssertionSuccess();
  }

 private:
  size_t page_bytes_;
  int32_t num_pages_;
  std::vector<std::byte> arena_;
  int fail_next_ = 0;
  int fail_next_write_ = 0;
  int reads_ = 0;
  int writes_ = 0;
  int64_t host_bytes_allocated_ = 0;
};

// Waits (bounded) until `done()`; false on time-out.
inline bool WaitFor(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}


inline void FillBlock(FakeDevice& dev, const std::vector<int32_t>& pages, uint64_t tag) {
  for (size_t l = 0; l < pages.size(); ++l) dev.Fill(pages[l], tag, static_cast<int32_t>(l));
}
inline ::testing::AssertionResult BlockHolds(const FakeDevice& dev, const std::vector<int32_t>& pages,
                                      uint64_t tag) {
  for (size_t l = 0; l < pages.size(); ++l) {
    ::testing::AssertionResult r = dev.Holds(pages[l], tag, static_cast<int32_t>(l));
    if (!r) return r;
  }
  return ::testing::AssertionSuccess();
}

// Polls `store` (bounded) until no disk fetch is in flight; false on time-out.
inline bool PollUntilIdle(TieredStore& store) {
  return WaitFor([&] {
    store.Poll();
    return store.fetches_in_flight() == 0;
  });
}

}  // namespace strata::kvcache
