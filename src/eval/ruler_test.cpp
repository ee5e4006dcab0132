// RULER: length fitting by binary search (prompt + generation budget <= the
// target, one more haystack unit would not fit), construction per task, and
// determinism.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "common/testing.h"
#include "eval/scorers.h"
#include "eval/tasks.h"
#include "eval/text.h"

using namespace harmonia;
using namespace harmonia::eval;

namespace {
const char* kModel = "models/stories260K/stories260K.gguf";

size_t count_of(const std::string& text, const std::string& w) {
  size_t n = 0;
  for (size_t p = text.find(w); p != std::string::npos; p = text.find(w, p + 1)) ++n;
  return n;
}
}  // namespace

TEST(RulerFit, BinarySearchFindsTheLargestFit) {
  int calls = 0;
  auto fits = [&](int64_t n) {
    ++calls;
    return n * 3 <= 100;
  };
  EXPECT_EQ(fit_largest(1, 1000, fits), 33);
  EXPECT_LT(calls, 25);
  EXPECT_EQ(fit_largest(40, 1000, fits), 39);  // even the smallest does not fit
  EXPECT_EQ(fit_largest(1, 20, fits), 20);     // capped
}

TEST(RulerFit, SamplesFillTheLengthExactly) {
  HARMONIA_REQUIRE_SHARED(kModel);
  auto m = load_model(shared_path(kModel));
  RulerOptions o;
  o.max_new = 32;  // so that the short contexts of the shared models hold most tasks
  RulerBuilder b(*m, o, ChatMode::Auto, 7, 2048);
  for (const std::string task : {"niah_single_1", "niah_single_2", "niah_multikey_2", "niah_multivalue", "fwe"}) {
    for (int64_t L : {448, 512}) {
      SCOPED_TRACE(task + " L" + std::to_string(L));
      auto s = b.make(task, L, 0);
      ASSERT_TRUE(s.has_value());
      const int64_t n = s->extra["haystack_size"].get<int64_t>();
      EXPECT_LE(static_cast<int64_t>(s->tokens.size()) + s->max_new, L);
      // One more unit of haystack would overflow the target.
      const Sample bigger = b.build(task, L, 0, n + 1);
      EXPECT_GT(static_cast<int64_t>(bigger.tokens.size()) + bigger.max_new, L);
      EXPECT_EQ(s->max_new, 32);
      EXPECT_EQ(s->tokens, b.prompter().encode(s->prompt));
    }
  }
}

TEST(RulerFit, BudgetsAndNotApplicable) {
  HARMONIA_REQUIRE_SHARED(kModel);
  auto m = load_model(shared_path(kModel));
  RulerOptions o;
  RulerBuilder b(*m, o, ChatMode::Auto, 7, 2048);
  EXPECT_EQ(b.budget("niah_single_1"), 128);
  EXPECT_EQ(b.budget("vt"), 30);
  EXPECT_EQ(b.budget("cwe"), 120);
  EXPECT_EQ(b.budget("fwe"), 50);
  int64_t need = 0;
  EXPECT_FALSE(b.make("cwe", 256, 0, &need).has_value());  // a one-shot example alone is longer
  EXPECT_GT(need, 256);
}

TEST(RulerTasks, NiahTemplatesAndAnswers) {
  HARMONIA_REQUIRE_SHARED(kModel);
  auto m = load_model(shared_path(kModel));
  RulerOptions o;
  RulerBuilder b(*m, o, ChatMode::Auto, 11, 2048);
  // Single answer: singular wording, the answer prefix ends the prompt.
  const Sample s1 = *b.make("niah_single_1", 1024, 0);
  EXPECT_EQ(s1.prompt.rfind("A special magic number is hidden within the following text.", 0), 0u) << s1.prompt.substr(0, 80);
  EXPECT_NE(s1.prompt.find("What is the special magic number for "), std::string::npos);
  ASSERT_EQ(s1.expected.size(), 1u);
  EXPECT_EQ(s1.expected[0].size(), 7u);  // 7-digit value
  EXPECT_NE(s1.prompt.find("One of the special magic numbers for "), std::string::npos);  // the needle keeps the plural
  EXPECT_NE(s1.prompt.find("is: " + s1.expected[0] + "."), std::string::npos);
  EXPECT_TRUE(s1.prompt.ends_with("mentioned in the provided text is")) << s1.prompt.substr(s1.prompt.size() - 60);
  // Multi-value: plural, four values of one key.
  const Sample mv = *b.make("niah_multivalue", 1024, 0);
  EXPECT_EQ(mv.expected.size(), 4u);
  EXPECT_TRUE(mv.prompt.ends_with("mentioned in the provided text are"));
  for (const auto& v : mv.expected) EXPECT_NE(mv.prompt.find(v), std::string::npos);
  // Multi-query: four keys joined "a, b, c, and d".
  const Sample mq = *b.make("niah_multiquery", 1024, 0);
  EXPECT_EQ(mq.expected.size(), 4u);
  EXPECT_NE(mq.prompt.find(", and "), std::string::npos);
  // UUID values.
  const Sample u = *b.make("niah_multikey_3", 1024, 0);
  ASSERT_EQ(u.expected.size(), 1u);
  EXPECT_EQ(u.expected[0].size(), 36u);
  EXPECT_EQ(u.expected[0][14], '4');  // version 4
  // A perfect answer scores 1 under string_match_all, however it is worded.
  EXPECT_DOUBLE_EQ(string_match_all(ruler_postprocess(" " + mv.expected[3] + ", " + mv.expected[0] + " and also " +
                                                      mv.expected[2] + " " + mv.expected[1]),
                                    mv.expected),
                   1.0);
  // Deterministic per (seed, task, length, index); other indices differ.
  RulerBuilder again(*m, o, ChatMode::Auto, 11, 2048);
  EXPECT_EQ(again.make("niah_single_1", 1024, 0)->prompt, s1.prompt);
  EXPECT_NE(b.make("niah_single_1", 1024, 1)->expected, s1.expected);
}

TEST(RulerTasks, VariableTrackingCommonAndFrequentWords) {
  HARMONIA_REQUIRE_SHARED(kModel);
  auto m = load_model(shared_path(kModel));
  RulerOptions o;
  RulerBuilder b(*m, o, ChatMode::Auto, 5, 4096);
  // VT: the answer is the chain's 5 names; the one-shot example comes first.
  const auto vt = b.make("vt", 2048, 0);
  ASSERT_TRUE(vt.has_value());
  ASSERT_EQ(vt->expected.size(), 5u);
  for (size_t j = 1; j < 5; ++j)
    EXPECT_NE(vt->prompt.find("VAR " + vt->expected[j] + " = VAR " + vt->expected[j - 1]), std::string::npos);
  EXPECT_EQ(count_of(vt->prompt, "Memorize and track the chain(s)"), 2u);  // example + task
  EXPECT_NE(vt->prompt.find("5 variables are assigned the value"), std::string::npos);
  EXPECT_EQ(vt->prompt.find("12345"), std::string::npos);  // the example's value was replaced
  // CWE below 4k: the 10 common words appear 6 times in the task list (plus the example's).
  const auto cwe = b.make("cwe", 2048, 0);
  ASSERT_TRUE(cwe.has_value());
  ASSERT_EQ(cwe->expected.size(), 10u);
  const std::string task_part = cwe->prompt.substr(cwe->prompt.rfind("Below is a numbered list"));
  for (const auto& w : cwe->expected) EXPECT_EQ(count_of(task_part, ". " + w + " ") + count_of(task_part, ". " + w + "\n"), 6u) << w;
  // FWE: ranks 2-4 of a zeta(2) distribution, rank 1 replaced by '...'.
  const auto fwe = b.make("fwe", 2048, 0);
  ASSERT_TRUE(fwe.has_value());
  ASSERT_EQ(fwe->expected.size(), 3u);
  const size_t c2 = count_of(fwe->prompt, " " + fwe->expected[0]), c4 = count_of(fwe->prompt, " " + fwe->expected[2]);
  EXPECT_GT(c2, c4);
  EXPECT_GT(count_of(fwe->prompt, "..."), c2);
}
