// The Engine with its KV tiers (device -> host -> disk, DESIGN.md §5) end to end on the CPU
// device with stories260K, the disk tier on a FaultFileSystem: injected disk faults never change
// an output (they are misses, counted), a request cancelled while its prefix is read from disk
// leaves nothing behind, a prefix served from disk keeps the output, a randomized workload with
// swap preemption matches the reference token for token, and per-request KV policies (no lower
// tiers, no prefix cache) are honoured.
//
// The reference for every output is an engine without tiers and without prefix caching.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/file.h"
#include "engine/engine.h"
#include "kvcache/fault_file_system.h"
#include "kvcache/file_system.h"
#include "tests/common/temp_dir.h"
#include "tests/common/tokens.h"
#include "tests/engine/engine_test_util.h"

namespace strata::engine {
namespace {

using kvcache::FaultFileSystem;
using kvcache::PosixFileSystem;

constexpr int32_t kBlock = 16;
constexpr int64_t kBlockBytes = 20 * 1024;  // 5 layers x 16 tokens x K,V x 32 floats
constexpr int32_t kVocab = 512;

std::vector<int32_t> RandomTokens(std::mt19937& rng, int n) {
  return strata::RandomTokens(rng, n, kVocab);
}

EngineConfig BaseConfig() {
  EngineConfig c;
  c.backend = "cpu";
  c.threads = 1;
  c.block_size = kBlock;
  c.max_model_len = 256;
  c.scheduler.max_batch_tokens = 256;
  c.scheduler.max_num_seqs = 16;
  return c;
}

// The small device (20 blocks), 10 host blocks, a disk under `dir` on `fs`.
EngineConfig TieredConfig(const std::string& dir, kvcache::FileSystem* fs) {
  EngineConfig c = BaseConfig();
  c.num_kv_pages = 100;  // 20 blocks of 5 layers
  c.tiers.host_capacity_bytes = 10 * kBlockBytes;
  c.tiers.disk_min_hits = 0;
  c.tiers.disk.dir = dir;
  c.tiers.disk.capacity_bytes = 4 << 20;
  c.tiers.disk.segment_bytes = 1 << 20;
  c.tiers.disk.persist = false;
  c.tiers.fs = fs;
  return c;
}

// Greedy outputs of an engine without tiers and without prefix caching, one request at a time.
class Reference {
 public:
  explicit Reference(const Model& model) {
    EngineConfig c = BaseConfig();
    c.enable_prefix_caching = false;
    auto e = Engine::Create(model, c);
    EXPECT_TRUE(e.ok()) << e.status();
    if (e.ok()) engine_ = std::move(*e);
  }
  const std::vector<int32_t>& Get(const std::vector<int32_t>& prompt, int64_t max_tokens) {
    auto key = std::make_pair(prompt, max_tokens);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    std::vector<int32_t> tokens;
    if (engine_) {
      auto s = engine_->Submit(Greedy(prompt, max_tokens));
      EXPECT_TRUE(s.ok()) << s.status();
      if (s.ok()) {
        Output o = Drain(*s->channel);
        EXPECT_EQ(o.finish_reason, "length");
        tokens = o.tokens;
      }
    }
    return cache_.emplace(key, std::move(tokens)).first->second;
  }

 private:
  std::unique_ptr<Engine> engine_;
  std::map<std::pair<std::vector<int32_t>, int64_t>, std::vector<int32_t>> cache_;
};

// Stats are published by engine steps; a tiny request that neither uses nor feeds the prefix
// cache makes one happen, so the snapshot afterwards covers everything before it.
EngineStats FreshStats(Engine& engine) {
  RequestOptions probe = Greedy({1, 7}, 1);
  probe.kv_access.prefix_cache = false;
  probe.kv_access.lower_tiers = 0;
  Output o = RunOne(engine, probe);
  EXPECT_EQ(o.finish_reason, "length");
  return engine.Stats();
}

// FreshStats once no disk write is in flight (bounded wait), so that disk counts are final.
EngineStats SettledStats(Engine& engine) {
  EngineStats s = FreshStats(engine);
  for (int i = 0; i < 2000 && s.tiers.disk_writes_in_flight > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    s = FreshStats(engine);
  }
  EXPECT_EQ(s.tiers.disk_writes_in_flight, 0) << "disk writes never completed";
  return s;
}

// Waits (bounded) until `pred` holds for Engine::Stats(); true if it did.
template <typename Pred>
bool WaitForStats(Engine& engine, Pred pred, double timeout_s = 1.5) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred(engine.Stats())) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred(engine.Stats());
}

int64_t Errors(const EngineStats& s, const std::string& kind) {
  auto it = s.tiers.errors.find(kind);
  return it == s.tiers.errors.end() ? 0 : it->second;
}

// Groups of prompts sharing a 6-block prefix (two prompts per group, 116 tokens each).
struct Workload {
  std::vector<std::vector<std::vector<int32_t>>> groups;
  static constexpr int64_t kMaxTokens = 8;

  Workload(int num_groups, uint32_t seed) {
    std::mt19937 rng(seed);
    for (int g = 0; g < num_groups; ++g) {
      std::vector<int32_t> prefix = Concat({1}, RandomTokens(rng, 6 * kBlock - 1));
      groups.push_back({Concat(prefix, RandomTokens(rng, 20)), Concat(prefix, RandomTokens(rng, 20))});
    }
  }
};

// Runs every prompt of `groups` one at a time, each checked against the reference.
void RunGroups(Engine& engine, Reference& ref, const Workload& w, int first, int last,
               const std::string& what, std::vector<Output>* outs = nullptr) {
  for (int g = first; g < last; ++g) {
    for (size_t i = 0; i < w.groups[g].size(); ++i) {
      const auto& prompt = w.groups[g][i];
      Output o = RunOne(engine, Greedy(prompt, Workload::kMaxTokens));
      EXPECT_EQ(o.finish_reason, "length") << what << " group " << g << " prompt " << i;
      EXPECT_EQ(o.tokens, ref.Get(prompt, Workload::kMaxTokens))
          << what << " group " << g << " prompt " << i;
      if (outs) outs->push_back(o);
    }
  }
}

// Fills the disk: 8 groups, twice over, so the first groups' blocks go device -> host -> disk.
void FillDisk(Engine& engine, Reference& ref, const Workload& w) {
  RunGroups(engine, ref, w, 0, 8, "fill round 1");
  RunGroups(engine, ref, w, 4, 8, "fill round 2");
}

class TieredEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = SharedModel();
    if (model_ == nullptr) GTEST_SKIP() << kStoriesDir << " is absent";
    dir_ = std::make_unique<TempDir>();
    posix_ = std::make_unique<PosixFileSystem>();
    fault_ = std::make_unique<FaultFileSystem>(posix_.get());
    ref_ = std::make_unique<Reference>(*model_);
  }
  void TearDown() override {
    engine_.reset();  // before the file systems it submits to
    fault_.reset();
    posix_.reset();
    dir_.reset();
  }
  void MakeEngine(EngineConfig c) {
    auto e = Engine::Create(*model_, c);
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
    const EngineStats s = engine_->Stats();
    ASSERT_EQ(s.num_pages, 100);
  }
  void MakeTieredEngine() { MakeEngine(TieredConfig(dir_->path(), fault_.get())); }

  const Model* model_ = nullptr;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<PosixFileSystem> posix_;
  std::unique_ptr<FaultFileSystem> fault_;
  std::unique_ptr<Reference> ref_;
  std::unique_ptr<Engine> engine_;
};

// ---- 1. Faults: outputs identical, errors counted, serving goes on ------------------------------

enum class ReadFault { kIo, kShort, kCorrupt };

void ExpectReadFaultIsAMiss(TieredEngineTest* t, Engine& engine, FaultFileSystem& fault, Reference& ref,
                            ReadFault kind, const std::string& counter) {
  Workload w(10, 100 + static_cast<uint32_t>(kind));
  FillDisk(engine, ref, w);
  EngineStats before = FreshStats(engine);
  ASSERT_TRUE(before.has_tiers);
  ASSERT_GT(before.tiers.disk_records, 0) << "the fill did not reach the disk";
  EXPECT_EQ(Errors(before, counter), 0);

  switch (kind) {
    case ReadFault::kIo:
      fault.FailReads(FaultFileSystem::kAlways, EIO);
      break;
    case ReadFault::kShort:
      fault.ShortReads(FaultFileSystem::kAlways, 4096);
      break;
    case ReadFault::kCorrupt:
      fault.CorruptReads(FaultFileSystem::kAlways, 8192 + 100);  // inside the payload
      break;
  }
  // The oldest groups were pushed out to disk: asking them again reads the disk (and fails).
  std::vector<Output> outs;
  RunGroups(engine, ref, w, 0, 4, counter, &outs);
  for (const Output& o : outs) EXPECT_EQ(o.num_disk_cached_tokens, 0) << counter;
  EngineStats after = FreshStats(engine);
  EXPECT_GT(Errors(after, counter), 0) << counter << " not counted";
  const kvcache::FaultCounts c = fault.counts();
  EXPECT_GT(c.failed_reads + c.short_reads + c.corrupted_reads, 0) << "no disk read was tried";

  // Clear the rule; serving goes on: a follow-up request completes with the reference output.
  fault.FailReads(0);
  fault.ShortReads(0, 0);
  fault.CorruptReads(0, 0);
  std::mt19937 rng(7);
  std::vector<int32_t> fresh = Concat({1}, RandomTokens(rng, 40));
  Output o = RunOne(engine, Greedy(fresh, 12));
  EXPECT_EQ(o.finish_reason, "length");
  EXPECT_EQ(o.tokens, ref.Get(fresh, 12));
  RunGroups(engine, ref, w, 4, 6, counter + " after");
  EngineStats end = FreshStats(engine);
  EXPECT_EQ(end.num_free_pages, end.num_pages);
  EXPECT_EQ(end.tiers.host_pinned, 0);
  EXPECT_EQ(end.tiers.fetches_in_flight, 0);
  (void)t;
}

TEST_F(TieredEngineTest, ReadIoErrorIsAMissAndCounted) {
  MakeTieredEngine();
  ExpectReadFaultIsAMiss(this, *engine_, *fault_, *ref_, ReadFault::kIo, "disk/io");
}

TEST_F(TieredEngineTest, ShortReadIsAMissAndCounted) {
  MakeTieredEngine();
  ExpectReadFaultIsAMiss(this, *engine_, *fault_, *ref_, ReadFault::kShort, "disk/short_read");
}

TEST_F(TieredEngineTest, CorruptReadIsAMissAndCounted) {
  MakeTieredEngine();
  ExpectReadFaultIsAMiss(this, *engine_, *fault_, *ref_, ReadFault::kCorrupt, "disk/checksum");
}

TEST_F(TieredEngineTest, DiskFullStopsWritesAndServingGoesOn) {
  MakeTieredEngine();
  Workload w(16, 200);
  FillDisk(*engine_, *ref_, w);
  EngineStats before = SettledStats(*engine_);
  ASSERT_GT(before.tiers.disk_records, 0);
  EXPECT_EQ(Errors(before, "disk/full"), 0);

  fault_->FailWrites(FaultFileSystem::kAlways, ENOSPC);
  // New groups push more blocks down to the disk: the writes fail with ENOSPC.
  RunGroups(*engine_, *ref_, w, 8, 12, "disk full");
  // Writes submitted before the first ENOSPC came back fail too: they all complete first.
  EngineStats full = SettledStats(*engine_);
  EXPECT_GT(Errors(full, "disk/full"), 0);
  const int64_t failed = fault_->counts().failed_writes;
  EXPECT_GT(failed, 0);
  EXPECT_LE(full.tiers.disk_records, before.tiers.disk_records);

  // Later writes are skipped (never submitted): more demotions, no more failed writes.
  RunGroups(*engine_, *ref_, w, 12, 16, "after disk full");
  RunGroups(*engine_, *ref_, w, 0, 4, "old prompts after disk full");
  EngineStats later = SettledStats(*engine_);
  EXPECT_EQ(fault_->counts().failed_writes, failed) << "writes went on after disk full";
  EXPECT_EQ(Errors(later, "disk/full"), Errors(full, "disk/full"));
  EXPECT_LE(later.tiers.disk_records, full.tiers.disk_records);
  EXPECT_EQ(later.tiers.host_to_disk_bytes, full.tiers.host_to_disk_bytes)
      << "host_to_disk_bytes counts writes that were skipped";

  std::mt19937 rng(9);
  std::vector<int32_t> fresh = Concat({1}, RandomTokens(rng, 50));
  Output o = RunOne(*engine_, Greedy(fresh, 12));
  EXPECT_EQ(o.finish_reason, "length");
  EXPECT_EQ(o.tokens, ref_->Get(fresh, 12));
  EXPECT_EQ(later.num_free_pages, later.num_pages);
  EXPECT_EQ(later.tiers.host_pinned, 0);
}

// ---- 2. Cancellation while a disk load is in flight ---------------------------------------------

TEST_F(TieredEngineTest, CancelWhileADiskFetchIsInFlight) {
  MakeTieredEngine();
  Workload w(10, 300);
  FillDisk(*engine_, *ref_, w);
  EngineStats filled = FreshStats(*engine_);
  ASSERT_GT(filled.tiers.disk_records, 0);
  ASSERT_EQ(filled.tiers.fetches_in_flight, 0);

  fault_->HoldReads(FaultFileSystem::kAlways);
  auto victim = (*engine_).Submit(Greedy(w.groups[0][0], Workload::kMaxTokens));
  ASSERT_TRUE(victim.ok());
  const bool seen = WaitForStats(*engine_, [](const EngineStats& s) {
    return s.tiers.fetches_in_flight > 0 && s.num_waiting == 1 && s.num_running == 0;
  });
  EXPECT_TRUE(seen) << "stats never showed the fetch in flight with the request waiting "
                       "(fetches_in_flight="
                    << engine_->Stats().tiers.fetches_in_flight
                    << " waiting=" << engine_->Stats().num_waiting << ")";
  // Whatever the stats say, the read must really be parked.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (fault_->counts().held_reads == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_GT(fault_->counts().held_reads, 0) << "no disk read was started for the victim";
  EXPECT_FALSE(victim->channel->TryPop().has_value()) << "the victim ran before its load";

  engine_->Cancel(victim->id);
  Output v = Drain(*victim->channel);
  EXPECT_EQ(v.finish_reason, "abort");
  EXPECT_TRUE(v.tokens.empty());

  // An unrelated request is served while the read is still held.
  std::mt19937 rng(11);
  std::vector<int32_t> other = Concat({1}, RandomTokens(rng, 30));
  Output o = RunOne(*engine_, Greedy(other, 10));
  EXPECT_EQ(o.finish_reason, "length");
  EXPECT_EQ(o.tokens, ref_->Get(other, 10));
  EngineStats held = engine_->Stats();
  EXPECT_GT(held.tiers.fetches_in_flight, 0) << "the held read was no longer in flight";

  fault_->HoldReads(0);
  fault_->ReleaseHeld();
  const bool drained = WaitForStats(*engine_, [](const EngineStats& s) {
    return s.tiers.fetches_in_flight == 0 && s.tiers.host_pinned == 0;
  });
  EXPECT_TRUE(drained) << "stats still show fetches_in_flight="
                       << engine_->Stats().tiers.fetches_in_flight
                       << " host_pinned=" << engine_->Stats().tiers.host_pinned
                       << " after the held reads completed";
  EngineStats end = FreshStats(*engine_);
  EXPECT_EQ(end.tiers.fetches_in_flight, 0);
  EXPECT_EQ(end.tiers.host_pinned, 0);
  EXPECT_EQ(end.num_free_pages, end.num_pages);
  EXPECT_EQ(end.num_running, 0);
  EXPECT_EQ(end.num_waiting, 0);
  // The victim's prompt still gets its reference output afterwards.
  Output again = RunOne(*engine_, Greedy(w.groups[0][0], Workload::kMaxTokens));
  EXPECT_EQ(again.tokens, ref_->Get(w.groups[0][0], Workload::kMaxTokens));
}

// ---- 3. A prefix on disk is served from disk ----------------------------------------------------

TEST_F(TieredEngineTest, PrefixOnDiskIsServedFromDiskWithTheSameOutput) {
  MakeTieredEngine();
  Workload w(10, 400);
  FillDisk(*engine_, *ref_, w);
  EngineStats filled = FreshStats(*engine_);
  ASSERT_GT(filled.tiers.disk_records, 0);
  const auto& prompt = w.groups[0][0];
  Output o = RunOne(*engine_, Greedy(prompt, Workload::kMaxTokens));
  EXPECT_EQ(o.finish_reason, "length");
  EXPECT_EQ(o.tokens, ref_->Get(prompt, Workload::kMaxTokens));
  EXPECT_GT(o.num_disk_cached_tokens, 0);
  EXPECT_EQ(o.num_disk_cached_tokens % kBlock, 0);
  EXPECT_LE(o.num_disk_cached_tokens, o.num_host_cached_tokens);
  EXPECT_LE(o.num_host_cached_tokens, o.num_cached_tokens);
  EXPECT_LE(o.num_cached_tokens, static_cast<int64_t>(prompt.size()) - 1);
  EngineStats end = FreshStats(*engine_);
  EXPECT_GT(end.tiers.disk_to_host_bytes, filled.tiers.disk_to_host_bytes);
  EXPECT_GE(end.tiers.disk_hit_tokens - filled.tiers.disk_hit_tokens, o.num_disk_cached_tokens);
  EXPECT_TRUE(end.tiers.errors.empty());
  EXPECT_EQ(end.tiers.host_pinned, 0);
  EXPECT_EQ(end.num_free_pages, end.num_pages);
}

// ---- 4. Randomized workload with swap preemption ------------------------------------------------

TEST_F(TieredEngineTest, RandomizedWorkloadMatchesTheReference) {
  MakeTieredEngine();
  std::mt19937 rng(20261123);
  std::vector<std::vector<int32_t>> prefixes;
  for (int i = 0; i < 5; ++i) {
    prefixes.push_back(Concat({1}, RandomTokens(rng, 16 + 12 * i - 1)));  // 16..64 tokens
  }
  struct Req {
    RequestOptions options;
    bool cancel = false;
  };
  auto make = [&](int i) {
    Req r;
    std::vector<int32_t> prompt = {1};
    if (i % 4 != 3) prompt = prefixes[std::uniform_int_distribution<int>(0, 4)(rng)];
    prompt = Concat(prompt, RandomTokens(rng, std::uniform_int_distribution<int>(1, 40)(rng)));
    r.options = Greedy(prompt, std::uniform_int_distribution<int>(4, 40)(rng));
    if (i % 5 == 2) r.options.kv_access.lower_tiers = 0;
    if (i % 6 == 4) r.options.kv_access.prefix_cache = false;
    r.cancel = i % 7 == 5;
    return r;
  };
  // Two rounds of 40: the second finds blocks the first left on device, host and disk.
  int64_t checked = 0;
  for (int round = 0; round < 2; ++round) {
    std::vector<Req> reqs;
    for (int i = 0; i < 40; ++i) reqs.push_back(make(i));
    std::vector<Engine::Submission> subs;
    for (Req& r : reqs) {
      auto s = engine_->Submit(r.options);
      ASSERT_TRUE(s.ok()) << s.status();
      if (r.cancel) engine_->Cancel(s->id);
      subs.push_back(*s);
    }
    for (size_t i = 0; i < reqs.size(); ++i) {
      Output o = Drain(*subs[i].channel);
      const auto& want = ref_->Get(reqs[i].options.prompt_ids, reqs[i].options.max_tokens);
      if (reqs[i].cancel) {
        EXPECT_TRUE(o.finish_reason == "abort" || o.finish_reason == "length")
            << "round " << round << " request " << i << ": " << o.finish_reason;
        const std::vector<int32_t> head(want.begin(),
                                        want.begin() + std::min(o.tokens.size(), want.size()));
        EXPECT_EQ(o.tokens, head) << "round " << round << " cancelled request " << i;
        continue;
      }
      EXPECT_EQ(o.finish_reason, "length") << "round " << round << " request " << i;
      EXPECT_EQ(o.tokens, want) << "round " << round << " request " << i;
      if (!reqs[i].options.kv_access.prefix_cache) {
        EXPECT_EQ(o.num_cached_tokens, 0) << "round " << round << " request " << i;
      }
      if (reqs[i].options.kv_access.lower_tiers == 0) {
        EXPECT_EQ(o.num_host_cached_tokens, 0) << "round " << round << " request " << i;
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 60);
  // All finished: the last step's snapshot covers them (a client that saw its last token sees
  // stats that include it).
  EngineStats s = engine_->Stats();
  EXPECT_GT(s.num_preemptions, 0);
  EXPECT_GT(s.num_swap_preemptions, 0);
  EXPECT_GT(s.tiers.swap_outs, 0);
  EXPECT_EQ(s.num_running, 0);
  EXPECT_EQ(s.num_waiting, 0);
  EXPECT_EQ(s.num_free_pages, s.num_pages);
  EXPECT_EQ(s.num_step_errors, 0);
  EngineStats end = FreshStats(*engine_);
  EXPECT_EQ(end.num_free_pages, end.num_pages);
  EXPECT_EQ(end.tiers.host_pinned, 0);
  EXPECT_EQ(end.tiers.fetches_in_flight, 0);
  EXPECT_EQ(end.num_running, 0);
  EXPECT_EQ(end.num_waiting, 0);
  EXPECT_TRUE(end.tiers.errors.empty());
  // The workload did go through every tier.
  EXPECT_GT(end.tiers.host_hit_tokens, 0);
  EXPECT_GT(end.tiers.disk_to_host_bytes, 0);
  EXPECT_GT(end.tiers.disk_hit_tokens, 0);
}

// ---- 5. Per-request policy: lower_tiers = 0, prefix_cache = false -------------------------------

TEST_F(TieredEngineTest, NoLowerTiersKeepsTheRequestOffHostAndDisk) {
  EngineConfig c = TieredConfig(dir_->path(), fault_.get());
  c.tiers.write_through = true;  // a published block goes down at once unless its policy forbids
  MakeEngine(c);
  std::mt19937 rng(500);
  std::vector<int32_t> prompt = Concat({1}, RandomTokens(rng, 6 * kBlock + 3));
  RequestOptions restricted = Greedy(prompt, 10);
  restricted.kv_access.lower_tiers = 0;

  EngineStats before = FreshStats(*engine_);
  Output o = RunOne(*engine_, restricted);
  EXPECT_EQ(o.tokens, ref_->Get(prompt, 10));
  EngineStats after = FreshStats(*engine_);
  EXPECT_EQ(after.tiers.device_to_host_bytes, before.tiers.device_to_host_bytes);
  EXPECT_EQ(after.tiers.host_used, before.tiers.host_used);

  // Push its cached blocks off the device with other restricted requests: still nothing goes down.
  for (int i = 0; i < 4; ++i) {
    std::vector<int32_t> filler = Concat({1}, RandomTokens(rng, 150));
    RequestOptions f = Greedy(filler, 20);
    f.kv_access.lower_tiers = 0;
    Output fo = RunOne(*engine_, f);
    EXPECT_EQ(fo.tokens, ref_->Get(filler, 20));
  }
  EngineStats evicted = FreshStats(*engine_);
  EXPECT_EQ(evicted.tiers.device_to_host_bytes, before.tiers.device_to_host_bytes);
  EXPECT_EQ(evicted.tiers.host_used, 0);
  EXPECT_EQ(evicted.tiers.disk_records, 0);
  // So the prompt is found nowhere now.
  Output again = RunOne(*engine_, Greedy(prompt, 10));
  EXPECT_EQ(again.tokens, ref_->Get(prompt, 10));
  EXPECT_EQ(again.num_cached_tokens, 0);
  // Control: the same prompt with the default policy did go down (write-through).
  EngineStats control = FreshStats(*engine_);
  EXPECT_GT(control.tiers.device_to_host_bytes, before.tiers.device_to_host_bytes);
}

TEST_F(TieredEngineTest, NoPrefixCacheNeitherHitsNorPublishes) {
  EngineConfig c = TieredConfig(dir_->path(), fault_.get());
  c.tiers.write_through = true;
  MakeEngine(c);
  std::mt19937 rng(501);
  std::vector<int32_t> p = Concat({1}, RandomTokens(rng, 5 * kBlock + 7));
  std::vector<int32_t> q = Concat({1}, RandomTokens(rng, 5 * kBlock + 7));

  // p is cached (device and, write-through, host); a prefix_cache=false request does not hit it.
  Output first = RunOne(*engine_, Greedy(p, 10));
  EXPECT_EQ(first.tokens, ref_->Get(p, 10));
  Output hit = RunOne(*engine_, Greedy(p, 10));
  EXPECT_GT(hit.num_cached_tokens, 0) << "control: the default policy hits";
  RequestOptions off = Greedy(p, 10);
  off.kv_access.prefix_cache = false;
  Output miss = RunOne(*engine_, off);
  EXPECT_EQ(miss.num_cached_tokens, 0);
  EXPECT_EQ(miss.num_host_cached_tokens, 0);
  EXPECT_EQ(miss.tokens, ref_->Get(p, 10));

  // q asked with prefix_cache=false publishes nothing: not on the device, not down the tiers.
  EngineStats before = FreshStats(*engine_);
  RequestOptions q_off = Greedy(q, 10);
  q_off.kv_access.prefix_cache = false;
  Output qo = RunOne(*engine_, q_off);
  EXPECT_EQ(qo.tokens, ref_->Get(q, 10));
  EngineStats after = FreshStats(*engine_);
  EXPECT_EQ(after.tiers.device_to_host_bytes, before.tiers.device_to_host_bytes);
  Output q_default = RunOne(*engine_, Greedy(q, 10));
  EXPECT_EQ(q_default.num_cached_tokens, 0) << "the prefix_cache=false run published its blocks";
  EXPECT_EQ(q_default.tokens, ref_->Get(q, 10));
  Output q_again = RunOne(*engine_, Greedy(q, 10));
  EXPECT_GT(q_again.num_cached_tokens, 0) << "control: the default run published";
}

}  // namespace
}  // namespace strata::engine
