// Every scorer on hand-computed cases: a correct answer worded differently
// scores full marks, a fluent wrong answer scores zero, and the reference
// implementations' quirks are kept.
#include "eval/scorers.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "eval/tasks.h"

using namespace harmonia::eval;

TEST(NiahScorer, KeywordRecallIgnoresWording) {
  const std::vector<std::string> kw = {"sandwich", "Dolores Park"};
  // Correct, worded differently, different case and line break: full marks.
  EXPECT_DOUBLE_EQ(keyword_recall("You should grab a SANDWICH and relax in dolores\n  park when it is sunny.", kw), 1.0);
  EXPECT_DOUBLE_EQ(keyword_recall("Eat a sandwich.", kw), 0.5);
  // Fluent and wrong: zero.
  EXPECT_DOUBLE_EQ(keyword_recall("The best thing to do in San Francisco is to walk across the Golden Gate Bridge.", kw), 0.0);
  EXPECT_DOUBLE_EQ(keyword_recall("anything", {}), 0.0);
}

TEST(NiahScorer, ExactContainment) {
  const std::string ans = "eat a sandwich and sit in Dolores Park on a sunny day.";
  EXPECT_DOUBLE_EQ(exact_containment("It says: Eat a sandwich and  sit in Dolores Park on a sunny day. Enjoy!", ans), 1.0);
  EXPECT_DOUBLE_EQ(exact_containment("eat a sandwich and sit in a park", ans), 0.0);
}

TEST(PasskeyScorer, FirstIntegerOnly) {
  EXPECT_EQ(first_integer(" 4821. Remember it."), "4821");
  EXPECT_EQ(first_integer("no digits"), "");
  EXPECT_DOUBLE_EQ(passkey_score(" 4821. Remember it.", 4821), 1.0);
  EXPECT_DOUBLE_EQ(passkey_score("The key you asked for is 004821, I think", 4821), 1.0);  // int("004821") == 4821
  EXPECT_DOUBLE_EQ(passkey_score(" 42, no wait, 4821", 4821), 0.0);                        // the first integer counts
  EXPECT_DOUBLE_EQ(passkey_score("The pass key is the one I was told to remember.", 4821), 0.0);
}

TEST(RulerScorer, StringMatchAllAndPart) {
  const std::vector<std::string> refs = {"4823711", "9911002"};
  // Different wording, both values: full marks.
  EXPECT_DOUBLE_EQ(string_match_all("Sure! They are 9911002 and, I believe, 4823711.", refs), 1.0);
  EXPECT_DOUBLE_EQ(string_match_all("4823711", refs), 0.5);
  EXPECT_DOUBLE_EQ(string_match_all("The special magic numbers are hidden in the text above.", refs), 0.0);
  EXPECT_DOUBLE_EQ(string_match_part("only 9911002", refs), 1.0);
  EXPECT_DOUBLE_EQ(string_match_part("none of them", refs), 0.0);
  EXPECT_DOUBLE_EQ(string_match_all("answer: ABCDE fghij", {"abcde", "FGHIJ"}), 1.0);  // case-insensitive
  EXPECT_EQ(ruler_postprocess("  a\x01" "b\tc \n"), "a\nb\nc");
}

TEST(LongBenchScorer, NormalizeAnswer) {
  EXPECT_EQ(normalize_answer("The  Cat's hat!"), "cats hat");
  EXPECT_EQ(normalize_answer("An apple, a theory"), "apple theory");  // "theory" keeps its "the"
}

TEST(LongBenchScorer, QaF1) {
  EXPECT_DOUBLE_EQ(qa_f1("The Stonecross!", "stonecross"), 1.0);  // articles, case, punctuation
  EXPECT_NEAR(qa_f1("red band", "red"), 2.0 / 3, 1e-12);           // P = 1/2, R = 1
  EXPECT_NEAR(qa_f1("it is stonecross", "Stonecross"), 0.5, 1e-12);  // P = 1/3, R = 1
  EXPECT_DOUBLE_EQ(qa_f1("The keeper was born in a fishing town by the sea.", "Stonecross"), 0.0);
  // Bag of words: counts are clipped.
  EXPECT_NEAR(qa_f1("red red red", "red blue"), 2 * (1.0 / 3) * 0.5 / (1.0 / 3 + 0.5), 1e-12);
}

TEST(LongBenchScorer, QaF1Chinese) {
  // Character tokens: pred {白, 色}, gold {白, 色, 的}: P = 1, R = 2/3.
  EXPECT_NEAR(qa_f1_zh("白色", "白色的"), 0.8, 1e-12);
  EXPECT_DOUBLE_EQ(qa_f1_zh("白色！", "白色"), 1.0);  // punctuation dropped
  EXPECT_DOUBLE_EQ(qa_f1_zh("黑", "白色"), 0.0);
}

TEST(LongBenchScorer, RougeL) {
  // One sentence each: unique words 5 and 5; LCS "the cat on the mat" -> {the, cat, on, mat} = 4.
  EXPECT_NEAR(rouge_l("the cat sat on the mat", "the cat lay on the mat"), 2 * 0.8 * 0.8 / (1.6 + 1e-8), 1e-12);
  // Summary level: the union LCS over sentence pairs covers every word.
  EXPECT_NEAR(rouge_l("a b. c d", "a c. b d"), 2.0 / (2.0 + 1e-8), 1e-12);
  EXPECT_DOUBLE_EQ(rouge_l("", "a reference"), 0.0);   // the package raises; LongBench scores 0
  EXPECT_DOUBLE_EQ(rouge_l("...", "a reference"), 0.0);
  EXPECT_DOUBLE_EQ(rouge_l("completely unrelated words", "the report says pipes break"), 0.0);
  // Case matters to the package (no lower-casing).
  EXPECT_LT(rouge_l("The Cat", "the cat"), 1e-9);
}

TEST(LongBenchScorer, Classification) {
  const std::vector<std::string> cls = {"City", "Country", "Individual"};
  EXPECT_DOUBLE_EQ(classification_score("The type is Individual", "Individual", cls), 1.0);
  EXPECT_DOUBLE_EQ(classification_score("Individual or City", "Individual", cls), 0.5);
  EXPECT_DOUBLE_EQ(classification_score("A person from a town", "Individual", cls), 0.0);
  // A found class that is a proper substring of the gold label is dropped.
  EXPECT_DOUBLE_EQ(classification_score("Number of something", "Number of something", {"Num", "Number of something"}), 1.0);
  // Python removes while iterating and skips the next element: matches [a, b, ab]
  // -> remove "a" -> [b, ab], next index is "ab" (b is never checked): 1/2.
  EXPECT_DOUBLE_EQ(classification_score("ab", "ab", {"a", "b", "ab"}), 0.5);
}

TEST(LongBenchScorer, RetrievalAndCount) {
  EXPECT_DOUBLE_EQ(retrieval_score("Paragraph 3", "Paragraph 3"), 1.0);
  EXPECT_DOUBLE_EQ(retrieval_score("The abstract comes from the third one, paragraph 3.", "Paragraph 3"), 1.0);
  EXPECT_DOUBLE_EQ(retrieval_score("Paragraph 3, or maybe 1", "Paragraph 3"), 0.5);
  EXPECT_DOUBLE_EQ(retrieval_score("It is clearly the paragraph about the comet.", "Paragraph 3"), 0.0);
  EXPECT_DOUBLE_EQ(retrieval_zh_score("答案是段落12", "段落12"), 1.0);
  EXPECT_DOUBLE_EQ(count_score("2", "2"), 1.0);
  EXPECT_DOUBLE_EQ(count_score("There are 2 unique paragraphs among the 3.", "2"), 0.5);
  EXPECT_DOUBLE_EQ(count_score("There are two.", "2"), 0.0);
}

TEST(LongBenchScorer, CodeSimilarity) {
  // python-Levenshtein: kitten -> sitting = 2 substitutions (cost 2 each) + 1 insertion = 5; (13 - 5) / 13.
  EXPECT_NEAR(levenshtein_ratio("kitten", "sitting"), 8.0 / 13, 1e-12);
  EXPECT_EQ(fuzz_ratio("kitten", "sitting"), 62);
  EXPECT_EQ(fuzz_ratio("", ""), 100);
  EXPECT_EQ(fuzz_ratio("", "x"), 0);
  // The first line without ` # // is compared: a fenced answer still scores 1.
  EXPECT_DOUBLE_EQ(code_sim_score("\n```python\n    p = perimeter(width, height)\n```", "    p = perimeter(width, height)"), 1.0);
  EXPECT_DOUBLE_EQ(code_sim_score("# compute it\n", "x = 1"), 0.0);  // no usable line -> ""
  EXPECT_NEAR(code_sim_score("x = 2", "x = 1"), 0.8, 1e-12);         // (10 - 2) / 10
}

TEST(LongBenchScorer, PerDatasetRules) {
  const std::vector<std::string> cls = {"City", "Individual"};
  // trec scores the first line only; the maximum over answers counts.
  EXPECT_DOUBLE_EQ(longbench_score("trec", "\nIndividual\nCity", {"Individual"}, cls), 1.0);
  EXPECT_DOUBLE_EQ(longbench_score("trec", "\nCity\nIndividual", {"Individual"}, cls), 0.0);
  EXPECT_DOUBLE_EQ(longbench_score("hotpotqa", "red", {"blue", "Red"}, {}), 1.0);
  EXPECT_DOUBLE_EQ(longbench_score("passage_retrieval_en", "Paragraph 2", {"Paragraph 2"}, {}), 1.0);
  EXPECT_THROW(longbench_score("no_such_set", "x", {"x"}, {}), harmonia::Error);
  EXPECT_EQ(longbench_category("gov_report"), "Summarization");
  EXPECT_EQ(longbench_category("lcc"), "Code Completion");
}
