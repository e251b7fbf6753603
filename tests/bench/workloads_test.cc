// The workloads share exactly the prefixes BENCHMARKS.md defines, token for token, and no more:
// W1's users share the system prompt and each user's rounds extend the previous round; W2's two
// asks of a document share the document; W3/W4 prompts share nothing; a trace's equal block ids
// are equal blocks. Everything is fixed by the seed.
#include "bench/harness/workloads.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

namespace strata::bench {
namespace {

size_t CommonPrefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

std::vector<BenchRequest> Make(WorkloadOptions o) {
  auto w = MakeWorkload(o);
  EXPECT_TRUE(w.ok()) << w.status();
  return w.ok() ? *w : std::vector<BenchRequest>{};
}

TEST(WorkloadsTest, MultiTurnSharesTheSystemPromptAndEachUsersHistory) {
  WorkloadOptions o;
  o.name = "W1";
  o.users = 5, o.rounds = 3, o.system_tokens = 40, o.turn_tokens = 7, o.answer_tokens = 11;
  const auto w = Make(o);
  ASSERT_EQ(w.size(), 15u);
  std::map<std::string, const BenchRequest*> by_group;
  for (const BenchRequest& r : w) by_group[r.group] = &r;
  for (int u = 0; u < 5; ++u) {
    for (int r = 0; r < 3; ++r) {
      const BenchRequest& q = *by_group.at(StrCat("user", u, "/round", r));
      EXPECT_EQ(q.prompt.size(), 40u + r * (7 + 11) + 7);
      EXPECT_EQ(q.max_tokens, 11);
      if (r == 0) {
        EXPECT_EQ(q.after, -1);
        continue;
      }
      // Round r extends round r-1's prompt by its recorded answer and the new turn.
      const BenchRequest& prev = *by_group.at(StrCat("user", u, "/round", r - 1));
      EXPECT_EQ(q.after, prev.id);
      EXPECT_EQ(CommonPrefix(q.prompt, prev.prompt), prev.prompt.size());
    }
    for (int v = u + 1; v < 5; ++v) {
      // Two users share exactly the system prompt, in every pair of rounds.
      for (int r = 0; r < 3; ++r) {
        EXPECT_EQ(CommonPrefix(by_group.at(StrCat("user", u, "/round", r))->prompt,
                               by_group.at(StrCat("user", v, "/round", 2 - r))->prompt),
                  40u);
      }
    }
  }
}

TEST(WorkloadsTest, DocumentQaAsksEachDocumentTwiceSharingExactlyTheDocument) {
  for (const char* order : {"interleave", "random", "tile"}) {
    WorkloadOptions o;
    o.name = "W2";
    o.documents = 6, o.doc_tokens = 100, o.question_tokens = 9, o.order = order;
    const auto w = Make(o);
    ASSERT_EQ(w.size(), 12u) << order;
    std::map<std::string, std::vector<const BenchRequest*>> asks;  // by document
    for (const BenchRequest& r : w) {
      EXPECT_EQ(r.prompt.size(), 109u);
      asks[r.group.substr(0, r.group.find('/'))].push_back(&r);
    }
    ASSERT_EQ(asks.size(), 6u);
    for (const auto& [doc, a] : asks) {
      ASSERT_EQ(a.size(), 2u);
      EXPECT_EQ(CommonPrefix(a[0]->prompt, a[1]->prompt), 100u) << order << " " << doc;
    }
    for (size_t i = 0; i < w.size(); ++i) {
      for (size_t j = 0; j < w.size(); ++j) {
        if (w[i].group.substr(0, 4) != w[j].group.substr(0, 4)) {
          EXPECT_EQ(CommonPrefix(w[i].prompt, w[j].prompt), 0u) << order;
        }
      }
    }
  }
}

TEST(WorkloadsTest, DocumentOrdersHaveTheirReuseDistances) {
  auto docs = [](const char* order) {
    WorkloadOptions o;
    o.name = "W2";
    o.documents = 4, o.doc_tokens = 8, o.order = order;
    std::string s;
    for (const BenchRequest& r : Make(o)) s += r.group.substr(3, 1);
    return s;
  };
  EXPECT_EQ(docs("interleave"), "01021323");
  EXPECT_EQ(docs("tile"), "01230123");
  const std::string random = docs("random");
  EXPECT_EQ(std::count(random.begin(), random.end(), '2'), 2);
  WorkloadOptions bad;
  bad.name = "W2", bad.order = "lru";
  EXPECT_FALSE(MakeWorkload(bad).ok());
}

TEST(WorkloadsTest, MixedAndOfflinePromptsShareNothing) {
  for (const char* name : {"W3", "W4", "W5"}) {
    WorkloadOptions o;
    o.name = name;
    o.requests = 200, o.input_tokens = 20, o.output_tokens = 5;
    o.classes = {{"interactive", 1}, {"batch", 3}};
    const auto w = Make(o);
    ASSERT_EQ(w.size(), 200u);
    std::map<std::string, int> classes;
    for (size_t i = 0; i < w.size(); ++i) {
      for (size_t j = i + 1; j < w.size(); ++j) {
        ASSERT_EQ(CommonPrefix(w[i].prompt, w[j].prompt), 0u) << name << " " << i << " " << j;
      }
      EXPECT_GE(w[i].prompt.size(), 2u);
      EXPECT_GE(w[i].max_tokens, 1);
      if (std::string(name) == "W4") {
        EXPECT_EQ(w[i].prompt.size(), 20u);
        EXPECT_EQ(w[i].max_tokens, 5);
      } else {
        ++classes[w[i].slo_class];
      }
    }
    if (std::string(name) != "W4") {
      // Weights 1:3 over 200 draws: ~50 interactive.
      EXPECT_NEAR(classes["interactive"], 50, 20) << name;
      EXPECT_EQ(classes["interactive"] + classes["batch"], 200) << name;
    }
  }
}

TEST(WorkloadsTest, MoreSiblingsThanTokenIdsShareAtMostOneToken) {
  WorkloadOptions o;
  o.name = "W4";
  o.requests = 300, o.input_tokens = 6, o.token_lo = 10, o.token_hi = 110;  // 100 ids
  const auto w = Make(o);
  for (size_t i = 0; i < w.size(); ++i) {
    for (size_t j = i + 1; j < w.size(); ++j) {
      ASSERT_LE(CommonPrefix(w[i].prompt, w[j].prompt), 1u);
    }
    for (int32_t t : w[i].prompt) ASSERT_TRUE(t >= 10 && t < 110);
  }
}

TEST(WorkloadsTest, W3LengthsFollowTheLognormalMedians) {
  WorkloadOptions o;
  o.name = "W3";
  o.requests = 2001, o.input_median = 100, o.output_median = 40;
  auto w = Make(o);
  std::vector<size_t> in;
  std::vector<int32_t> out;
  for (const BenchRequest& r : w) {
    in.push_back(r.prompt.size());
    out.push_back(r.max_tokens);
    EXPECT_LE(r.prompt.size(), 1024u);
    EXPECT_LE(r.max_tokens, 256);
  }
  std::nth_element(in.begin(), in.begin() + 1000, in.end());
  std::nth_element(out.begin(), out.begin() + 1000, out.end());
  EXPECT_NEAR(static_cast<double>(in[1000]), 100, 10);
  EXPECT_NEAR(out[1000], 40, 5);
}

TEST(WorkloadsTest, FaultWorkloadCancelsTheRequestedFraction) {
  WorkloadOptions o;
  o.name = "W5";
  o.requests = 400, o.cancel_fraction = 0.25, o.cancel_after_tokens = 3;
  int cancelled = 0;
  for (const BenchRequest& r : Make(o)) {
    if (r.cancel_after_tokens < 0) continue;
    ++cancelled;
    EXPECT_EQ(r.cancel_after_tokens, 3);
    EXPECT_GT(r.max_tokens, 3);  // there is something left to cancel
  }
  EXPECT_NEAR(cancelled, 100, 30);
}

TEST(WorkloadsTest, TraceBlocksWithEqualIdsAreEqual) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("w.jsonl" + std::to_string(::getpid()))).string();
  std::ofstream(path)
      << "{\"timestamp\": 0, \"input_length\": 40, \"output_length\": 2, \"hash_ids\": [7, 8, 9]}\n"
         "{\"timestamp\": 250, \"input_length\": 35, \"output_length\": 3, \"hash_ids\": [7, 8, "
         "5]}\n"
         "{\"timestamp\": 500, \"input_length\": 50, \"output_length\": 4, \"hash_ids\": [7]}\n";
  WorkloadOptions o;
  o.name = "trace", o.trace_path = path, o.trace_block_tokens = 16;
  const auto w = Make(o);
  std::filesystem::remove(path);
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0].prompt.size(), 40u);
  EXPECT_EQ(w[1].prompt.size(), 35u);
  EXPECT_EQ(w[2].prompt.size(), 50u);
  EXPECT_DOUBLE_EQ(w[1].arrival_s, 0.25);
  EXPECT_EQ(w[2].max_tokens, 4);
  EXPECT_EQ(CommonPrefix(w[0].prompt, w[1].prompt), 32u);  // blocks 7, 8
  EXPECT_EQ(CommonPrefix(w[0].prompt, w[2].prompt), 16u);  // block 7, then unique tokens
  EXPECT_EQ(CommonPrefix(w[1].prompt, w[2].prompt), 16u);
}

TEST(WorkloadsTest, ArrivalsApplyInOrderAndBadNamesAreRejected) {
  WorkloadOptions o;
  o.name = "W4", o.requests = 50;
  auto w = Make(o);
  ASSERT_TRUE(ApplyArrivals(w, "gamma", 5, 2, 1).ok());
  for (size_t i = 1; i < w.size(); ++i) EXPECT_GE(w[i].arrival_s, w[i - 1].arrival_s);
  EXPECT_GT(w.back().arrival_s, 0);
  EXPECT_FALSE(ApplyArrivals(w, "uniform", 5, 1, 1).ok());
  EXPECT_FALSE(ApplyArrivals(w, "poisson", 0, 1, 1).ok());
  o.name = "W9";
  EXPECT_FALSE(MakeWorkload(o).ok());
  o.name = "W1", o.users = 0;
  EXPECT_FALSE(MakeWorkload(o).ok());
}

TEST(WorkloadsTest, TheSeedFixesThePrompts) {
  WorkloadOptions o;
  o.name = "W3", o.requests = 20;
  const auto a = Make(o), b = Make(o);
  o.seed = 2;
  const auto c = Make(o);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].prompt, b[i].prompt);
  EXPECT_NE(a[5].prompt, c[5].prompt);
}

}  // namespace
}  // namespace strata::bench
