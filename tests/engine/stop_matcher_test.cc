#include "engine/stop_matcher.h"

#include <gtest/gtest.h>

namespace strata::engine {
namespace {

// Feeds chunks, returns (everything emitted, stopped).
std::pair<std::string, bool> Feed(StopMatcher& m, const std::vector<std::string>& chunks) {
  std::string out;
  for (const std::string& c : chunks) {
    auto r = m.Push(c);
    out += r.text;
    if (r.stopped) return {out, true};
  }
  return {out + m.Flush(), false};
}

TEST(StopMatcherTest, StopSplitAcrossChunksIsFoundAndNotEmitted) {
  StopMatcher m({"lo W"});
  auto r1 = m.Push("Hel");
  EXPECT_EQ(r1.text, "He");  // "l" could start "lo W"
  auto r2 = m.Push("lo Wor");
  EXPECT_TRUE(r2.stopped);
  EXPECT_EQ(r2.text, "l");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcherTest, FalseAlarmTailIsReleased) {
  StopMatcher m({"###"});
  EXPECT_EQ(m.Push("a#").text, "a");
  EXPECT_EQ(m.Push("#").text, "");
  EXPECT_EQ(m.Push("b").text, "##b");
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopMatcherTest, EarliestOfSeveralStopsWins) {
  StopMatcher m({"world", "o w"});
  EXPECT_EQ(Feed(m, {"hello", " wor", "ld"}), (std::pair<std::string, bool>{"hell", true}));
}

TEST(StopMatcherTest, NoStopsPassesEverythingThrough) {
  StopMatcher m({"", ""});
  EXPECT_EQ(m.Push("abc").text, "abc");
  EXPECT_EQ(Feed(m, {"x", "y"}), (std::pair<std::string, bool>{"xy", false}));
}

TEST(StopMatcherTest, HeldTailIsFlushedAtTheEnd) {
  StopMatcher m({"\n\n"});
  EXPECT_EQ(Feed(m, {"line", "\n"}), (std::pair<std::string, bool>{"line\n", false}));
}

TEST(StopMatcherTest, MultiByteCharactersAreNeverSplit) {
  StopMatcher m({"é!"});
  auto r = m.Push("café");
  EXPECT_EQ(r.text, "caf");  // "é" is held whole, never half of its two bytes
  EXPECT_EQ(m.Push("?").text, "é?");
}

}  // namespace
}  // namespace strata::engine
