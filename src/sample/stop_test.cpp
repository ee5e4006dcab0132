#include "sample/stop.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "common/error.h"

namespace harmonia {
namespace {

constexpr int32_t kEos = 2;

// Pushes (token, piece) pairs; returns the text emitted by each push.
std::vector<std::string> feed(StopChecker& sc,
                              const std::vector<std::pair<int32_t, std::string>>& steps,
                              StopStep* last = nullptr) {
  std::vector<std::string> out;
  for (const auto& [tok, piece] : steps) {
    StopStep st = sc.push(tok, piece);
    out.push_back(st.text);
    if (last) *last = st;
    if (st.stop()) break;
  }
  return out;
}

TEST(StopChecker, StopStringSpanningSeveralTokens) {
  StopChecker sc({"</answer>"}, {kEos}, -1);
  StopStep last;
  auto out = feed(sc, {{10, "The answer"}, {11, " is 42<"}, {12, "/ans"}, {13, "wer>"}, {14, "x"}},
                  &last);
  EXPECT_EQ(out, (std::vector<std::string>{"The answer", " is 42", "", ""}));
  EXPECT_EQ(last.reason, StopReason::StopString);
  EXPECT_EQ(last.index, 0);
  EXPECT_TRUE(sc.stopped());
  EXPECT_EQ(sc.n_tokens(), 4);
  EXPECT_EQ(sc.held_bytes(), 0u);
}

TEST(StopChecker, HeldBackPartialMatchIsReleasedWhenItDiverges) {
  StopChecker sc({"###"}, {}, -1);
  EXPECT_EQ(sc.push(1, "a#").text, "a");
  EXPECT_EQ(sc.held_bytes(), 1u);
  EXPECT_EQ(sc.push(2, "#").text, "");
  EXPECT_EQ(sc.held_bytes(), 2u);
  StopStep st = sc.push(3, "b");
  EXPECT_EQ(st.text, "##b");
  EXPECT_FALSE(st.stop());
  // A held prefix that completes in the next piece is dropped with the text after it.
  EXPECT_EQ(sc.push(4, "c#").text, "c");
  st = sc.push(5, "##tail");
  EXPECT_EQ(st.text, "");
  EXPECT_EQ(st.reason, StopReason::StopString);
}

TEST(StopChecker, StopStringInsideOnePieceCutsThere) {
  StopChecker sc({"\n\n"}, {}, -1);
  StopStep st = sc.push(1, "abc\n\nxyz");
  EXPECT_EQ(st.text, "abc");
  EXPECT_EQ(st.reason, StopReason::StopString);
}

TEST(StopChecker, EarliestOfSeveralStopStringsWins) {
  StopChecker sc({"world", "lo w", "zzz"}, {}, -1);
  StopStep last;
  auto out = feed(sc, {{1, "hel"}, {2, "lo"}, {3, " world"}}, &last);
  // "l" and then "lo" are held as possible starts of "lo w".
  EXPECT_EQ(out, (std::vector<std::string>{"he", "l", ""}));
  EXPECT_EQ(last.index, 1);  // "lo w" starts before "world"
}

TEST(StopChecker, HoldsLongestPossiblePrefix) {
  // "aab" could start at either 'a': hold both.
  StopChecker sc({"aab"}, {}, -1);
  EXPECT_EQ(sc.push(1, "xaa").text, "x");
  EXPECT_EQ(sc.push(2, "a").text, "a");  // "aaa": only the last "aa" can still match
  StopStep st = sc.push(3, "b");
  EXPECT_EQ(st.text, "");
  EXPECT_EQ(st.reason, StopReason::StopString);
}

TEST(StopChecker, StopTokenReleasesHeldTextWithoutItsPiece) {
  StopChecker sc({"###"}, {kEos, 7}, -1);
  EXPECT_EQ(sc.push(1, "x##").text, "x");
  StopStep st = sc.push(kEos, "</s>");
  EXPECT_EQ(st.text, "##");
  EXPECT_EQ(st.reason, StopReason::StopToken);
  EXPECT_EQ(st.index, 0);
  EXPECT_STREQ(openai_finish_reason(st.reason), "stop");
  EXPECT_STREQ(stop_reason_name(st.reason), "stop_token");
}

TEST(StopChecker, MaxTokensStopsAndFlushes) {
  StopChecker sc({"###"}, {kEos}, 3);
  StopStep last;
  auto out = feed(sc, {{1, "a"}, {1, "b#"}, {1, "#"}, {1, "never"}}, &last);
  EXPECT_EQ(out, (std::vector<std::string>{"a", "b", "##"}));
  EXPECT_EQ(last.reason, StopReason::MaxTokens);
  EXPECT_STREQ(openai_finish_reason(last.reason), "length");
  EXPECT_EQ(sc.n_tokens(), 3);
  // A stop string completed by the last allowed token still wins.
  StopChecker sc2({"##"}, {}, 2);
  feed(sc2, {{1, "a#"}, {1, "#"}}, &last);
  EXPECT_EQ(last.reason, StopReason::StopString);
  EXPECT_EQ(last.text, "");
}

TEST(StopChecker, HoldsIncompleteUtf8) {
  StopChecker sc({}, {}, -1);
  // "€" = E2 82 AC split over three tokens, then "😀" = F0 9F 98 80 over two.
  EXPECT_EQ(sc.push(1, "a\xE2").text, "a");
  EXPECT_EQ(sc.push(2, "\x82").text, "");
  EXPECT_EQ(sc.push(3, "\xAC!").text, "\xE2\x82\xAC!");
  EXPECT_EQ(sc.push(4, "\xF0\x9F").text, "");
  EXPECT_EQ(sc.push(5, "\x98\x80").text, "\xF0\x9F\x98\x80");
  EXPECT_EQ(sc.push(6, "\xC3").text, "");
  EXPECT_EQ(sc.flush(), "\xC3");  // the caller ends the stream: release as is
  EXPECT_FALSE(sc.stopped());
}

TEST(StopChecker, FlushReleasesHeldText) {
  StopChecker sc({"STOP"}, {}, -1);
  EXPECT_EQ(sc.push(1, "go ST").text, "go ");
  EXPECT_EQ(sc.flush(), "ST");
  EXPECT_EQ(sc.held_bytes(), 0u);
}

TEST(StopChecker, BadArgumentsThrowWithData) {
  auto msg = [](auto make) {
    try {
      make();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(msg([] { StopChecker({"a", ""}, {}, 5); }), "stop string 1 is empty");
  EXPECT_EQ(msg([] { StopChecker({}, {-3}, 5); }),
            "stop token 0 is -3, expected a token id >= 0");
  EXPECT_EQ(msg([] { StopChecker({}, {}, 0); }),
            "max_tokens must be >= 1 or -1 (no limit), got 0");
  StopChecker sc({}, {kEos}, -1);
  sc.push(kEos, "");
  try {
    sc.push(1, "x");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Internal);
  }
}

}  // namespace
}  // namespace harmonia
