#include <gtest/gtest.h>

#include "runtime/stop_matcher.h"

namespace marlin {
namespace {

std::string feed(StopMatcher& m, const std::vector<std::string>& pieces) {
  std::string out;
  for (const auto& p : pieces) out += m.push(p);
  return out + m.flush();
}

TEST(StopMatcher, PassesTextWithoutStops) {
  StopMatcher m({});
  EXPECT_EQ(m.push("hello"), "hello");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, CutsAtStopSpanningPieces) {
  StopMatcher m({"</end>"});
  EXPECT_EQ(m.push("abc</e"), "abc");  // "</e" held back
  EXPECT_EQ(m.push("nd> tail"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.push("more"), "");
}

TEST(StopMatcher, ReleasesFalseAlarm) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.push("ST"), "");
  EXPECT_EQ(m.push("ART"), "START");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, FlushReleasesHeldPrefix) {
  StopMatcher m({"\n\nUser:"});
  EXPECT_EQ(feed(m, {"answer", "\n\n"}), "answer\n\n");
}

TEST(StopMatcher, EarliestOfSeveralStops) {
  StopMatcher m({"b", "xyz"});
  EXPECT_EQ(feed(m, {"aaxyzb"}), "aa");
}

TEST(StopMatcher, EveryCharacterSeparately) {
  const std::string text = "The answer is 42.###rest";
  StopMatcher m({"###"});
  std::vector<std::string> chars;
  for (char c : text) chars.emplace_back(1, c);
  EXPECT_EQ(feed(m, chars), "The answer is 42.");
}

}  // namespace
}  // namespace marlin
