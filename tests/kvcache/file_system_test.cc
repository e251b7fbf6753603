#include "kvcache/file_system.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include "kvcache/fault_file_system.h"
#include "tests/common/temp_dir.h"

namespace strata::kvcache {
namespace {

void Fill(AlignedBuffer& buffer, uint8_t seed) {
  for (size_t i = 0; i < buffer.size(); ++i) buffer.data()[i] = std::byte(uint8_t(seed + i * 7));
}

IoRequest Request(IoRequest::Kind kind, RandomRWFile* file, int64_t offset, AlignedBuffer& buf) {
  return {kind, file, offset, buf.data(), buf.size(), nullptr};
}

class PosixFileSystemTest : public ::testing::TestWithParam<bool> {
 protected:
  PosixFileSystemTest() : fs_(PosixFileSystemOptions{.queue_depth = 4,
                                                     .force_thread_pool = GetParam()}) {}
  void SetUp() override {
    if (!GetParam() && !fs_.uses_io_uring()) GTEST_SKIP() << "io_uring unavailable here";
    EXPECT_EQ(fs_.uses_io_uring(), !GetParam());
  }
  TempDir dir_;
  PosixFileSystem fs_;
};

TEST_P(PosixFileSystemTest, WritesThenReadsBackAlignedData) {
  const std::string path = dir_.path() + "/data";
  auto file = fs_.OpenForDirectIo(path, /*create=*/true);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_TRUE(fs_.Preallocate(file->get(), 64 << 10).ok());
  EXPECT_EQ(*fs_.FileSize(path), 64 << 10);

  AlignedBuffer out(16 << 10);
  Fill(out, 3);
  auto n = SyncIo(&fs_, Request(IoRequest::Kind::kWrite, file->get(), 8192, out));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, out.size());

  AlignedBuffer in(16 << 10);
  n = SyncIo(&fs_, Request(IoRequest::Kind::kRead, file->get(), 8192, in));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, in.size());
  EXPECT_EQ(std::memcmp(in.data(), out.data(), in.size()), 0);
}

// More requests than the queue depth in one batch: the excess waits and still completes.
TEST_P(PosixFileSystemTest, BatchLargerThanQueueDepthCompletes) {
  auto file = fs_.OpenForDirectIo(dir_.path() + "/batch", true);
  ASSERT_TRUE(file.ok());
  constexpr int kOps = 64;
  std::vector<AlignedBuffer> buffers;
  for (int i = 0; i < kOps; ++i) {
    buffers.emplace_back(4096);
    Fill(buffers.back(), static_cast<uint8_t>(i));
  }
  std::vector<std::promise<absl::StatusOr<size_t>>> results(kOps);
  std::vector<IoRequest> batch;
  for (int i = 0; i < kOps; ++i) {
    batch.push_back(Request(IoRequest::Kind::kWrite, file->get(), i * 4096, buffers[i]));
    batch.back().done = [&results, i](absl::StatusOr<size_t> n) { results[i].set_value(n); };
  }
  fs_.Submit(std::move(batch));
  for (int i = 0; i < kOps; ++i) EXPECT_EQ(*results[i].get_future().get(), 4096u);

  AlignedBuffer in(4096);
  ASSERT_EQ(*SyncIo(&fs_, Request(IoRequest::Kind::kRead, file->get(), 63 * 4096, in)), 4096u);
  EXPECT_EQ(std::memcmp(in.data(), buffers[63].data(), 4096), 0);
}

TEST_P(PosixFileSystemTest, ShortReadAtEndOfFileIsReported) {
  auto file = fs_.OpenForDirectIo(dir_.path() + "/short", true);
  ASSERT_TRUE(file.ok());
  AlignedBuffer one(4096);
  ASSERT_EQ(*SyncIo(&fs_, Request(IoRequest::Kind::kWrite, file->get(), 0, one)), 4096u);
  AlignedBuffer two(8192);
  auto n = SyncIo(&fs_, Request(IoRequest::Kind::kRead, file->get(), 0, two));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 4096u);
}

TEST_P(PosixFileSystemTest, SubmitAfterShutdownFails) {
  auto file = fs_.OpenForDirectIo(dir_.path() + "/late", true);
  ASSERT_TRUE(file.ok());
  fs_.Shutdown();
  AlignedBuffer buf(4096);
  auto n = SyncIo(&fs_, Request(IoRequest::Kind::kWrite, file->get(), 0, buf));
  EXPECT_TRUE(absl::IsFailedPrecondition(n.status())) << n.status();
}

INSTANTIATE_TEST_SUITE_P(IoPaths, PosixFileSystemTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "ThreadPool" : "IoUring"; });

// tmpfs may refuse O_DIRECT (EINVAL, older kernels): the file must work either way.
TEST(PosixFileSystem, DirectIoFallbackStillWorksOnTmpfs) {
  if (!std::filesystem::is_directory("/dev/shm")) GTEST_SKIP() << "no /dev/shm";
  TempDir dir("/dev/shm");
  PosixFileSystem fs;
  auto file = fs.OpenForDirectIo(dir.path() + "/f", true);
  ASSERT_TRUE(file.ok()) << file.status();
  std::printf("tmpfs file is_direct=%d\n", (*file)->is_direct());
  AlignedBuffer out(8192);
  Fill(out, 9);
  ASSERT_EQ(*SyncIo(&fs, Request(IoRequest::Kind::kWrite, file->get(), 4096, out)), 8192u);
  AlignedBuffer in(8192);
  ASSERT_EQ(*SyncIo(&fs, Request(IoRequest::Kind::kRead, file->get(), 4096, in)), 8192u);
  EXPECT_EQ(std::memcmp(in.data(), out.data(), 8192), 0);
}

// The buffered path (what a refused O_DIRECT falls back to), on both I/O paths.
TEST(PosixFileSystem, BufferedFallbackPathReadsBackWhatItWrote) {
  for (bool thread_pool : {false, true}) {
    TempDir dir;
    PosixFileSystem fs(PosixFileSystemOptions{.force_thread_pool = thread_pool,
                                              .direct_io = false});
    auto file = fs.OpenForDirectIo(dir.path() + "/f", true);
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_FALSE((*file)->is_direct());
    AlignedBuffer out(8192);
    Fill(out, 11);
    ASSERT_EQ(*SyncIo(&fs, Request(IoRequest::Kind::kWrite, file->get(), 0, out)), 8192u);
    AlignedBuffer in(8192);
    ASSERT_EQ(*SyncIo(&fs, Request(IoRequest::Kind::kRead, file->get(), 0, in)), 8192u);
    EXPECT_EQ(std::memcmp(in.data(), out.data(), 8192), 0);
  }
}

TEST(PosixFileSystem, DirectoryOperations) {
  TempDir dir;
  PosixFileSystem fs;
  const std::string sub = dir.path() + "/a/b";
  ASSERT_TRUE(fs.CreateDir(sub).ok());
  ASSERT_TRUE(fs.CreateDir(sub).ok());
  ASSERT_TRUE(fs.OpenForDirectIo(sub + "/x", true).ok());
  EXPECT_EQ(*fs.ListDir(sub), std::vector<std::string>{"x"});
  ASSERT_TRUE(fs.DeleteFile(sub + "/x").ok());
  EXPECT_TRUE(fs.ListDir(sub)->empty());
  EXPECT_TRUE(absl::IsNotFound(fs.FileSize(sub + "/x").status()));
  EXPECT_TRUE(absl::IsNotFound(fs.OpenForDirectIo(sub + "/missing", false).status()));
}

TEST(AlignedBuffer, IsAlignedRoundedAndMovable) {
  AlignedBuffer a(5000);
  EXPECT_EQ(a.size(), 8192u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % kDirectIoAlignment, 0u);
  std::byte* p = a.data();
  AlignedBuffer b = std::move(a);
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(a.size(), 0u);
}

class FaultFileSystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto file = fault_.OpenForDirectIo(dir_.path() + "/f", true);
    ASSERT_TRUE(file.ok());
    file_ = std::move(*file);
    Fill(data_, 1);
    ASSERT_EQ(*SyncIo(&fault_, Request(IoRequest::Kind::kWrite, file_.get(), 0, data_)), 8192u);
  }
  absl::StatusOr<size_t> ReadInto(AlignedBuffer& buf) {
    return SyncIo(&fault_, Request(IoRequest::Kind::kRead, file_.get(), 0, buf));
  }

  TempDir dir_;
  PosixFileSystem base_;
  FaultFileSystem fault_{&base_};
  std::unique_ptr<RandomRWFile> file_;
  AlignedBuffer data_{8192};
};

TEST_F(FaultFileSystemTest, FailsTheNextReadsWithEio) {
  fault_.FailReads(2);
  AlignedBuffer in(8192);
  EXPECT_TRUE(absl::IsInternal(ReadInto(in).status()));
  EXPECT_TRUE(absl::IsInternal(ReadInto(in).status()));
  EXPECT_EQ(*ReadInto(in), 8192u);
  EXPECT_EQ(fault_.counts().failed_reads, 2);
}

TEST_F(FaultFileSystemTest, FailedWriteWithEnospcLeavesTheFileAlone) {
  fault_.FailWrites(FaultFileSystem::kAlways, ENOSPC);
  AlignedBuffer zeros(8192);
  auto n = SyncIo(&fault_, Request(IoRequest::Kind::kWrite, file_.get(), 0, zeros));
  EXPECT_TRUE(absl::IsResourceExhausted(n.status())) << n.status();
  EXPECT_TRUE(absl::IsResourceExhausted(
      SyncIo(&fault_, Request(IoRequest::Kind::kWrite, file_.get(), 0, zeros)).status()));
  EXPECT_EQ(fault_.counts().failed_writes, 2);
  AlignedBuffer in(8192);
  ASSERT_EQ(*ReadInto(in), 8192u);
  EXPECT_EQ(std::memcmp(in.data(), data_.data(), 8192), 0);
}

TEST_F(FaultFileSystemTest, ShortensAndCorruptsReads) {
  fault_.ShortReads(1, 100);
  AlignedBuffer in(8192);
  EXPECT_EQ(*ReadInto(in), 100u);
  EXPECT_EQ(*ReadInto(in), 8192u);

  fault_.CorruptReads(1, 5);
  ASSERT_EQ(*ReadInto(in), 8192u);
  EXPECT_EQ(in.data()[5], data_.data()[5] ^ std::byte{0xFF});
  EXPECT_EQ(std::memcmp(in.data() + 6, data_.data() + 6, 8192 - 6), 0);
  ASSERT_EQ(*ReadInto(in), 8192u);
  EXPECT_EQ(std::memcmp(in.data(), data_.data(), 8192), 0);
  EXPECT_EQ(fault_.counts().short_reads, 1);
  EXPECT_EQ(fault_.counts().corrupted_reads, 1);
}

TEST_F(FaultFileSystemTest, PreallocateFailsWithDiskFull) {
  fault_.FailPreallocate(1);
  absl::Status status = fault_.Preallocate(file_.get(), 1 << 20);
  EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
  EXPECT_NE(status.message().find("disk full"), std::string_view::npos);
  EXPECT_TRUE(fault_.Preallocate(file_.get(), 1 << 20).ok());
  EXPECT_EQ(fault_.counts().failed_preallocates, 1);
}

TEST_F(FaultFileSystemTest, HeldWriteCompletesOnlyAfterRelease) {
  fault_.HoldWrites(1);
  std::promise<absl::StatusOr<size_t>> result;
  std::vector<IoRequest> batch{Request(IoRequest::Kind::kWrite, file_.get(), 0, data_)};
  batch[0].done = [&result](absl::StatusOr<size_t> n) { result.set_value(n); };
  fault_.Submit(std::move(batch));
  std::future<absl::StatusOr<size_t>> future = result.get_future();
  while (fault_.counts().held_writes == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(future.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  fault_.ReleaseHeld();
  EXPECT_EQ(*future.get(), 8192u);
}

}  // namespace
}  // namespace strata::kvcache
