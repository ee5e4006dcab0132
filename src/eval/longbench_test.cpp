// LongBench v1: middle truncation (pred.py) on a real tokenizer, and the
// hand-written fixture files in the official format.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/testing.h"
#include "eval/records.h"
#include "eval/tasks.h"

using namespace harmonia;
using namespace harmonia::eval;

namespace {
const char* kModel = "models/stories260K/stories260K.gguf";
std::string fixtures() { return (std::filesystem::path(__FILE__).parent_path() / "testdata" / "longbench").string(); }
}  // namespace

TEST(LongBenchTruncation, KeepsFirstAndLastHalf) {
  HARMONIA_REQUIRE_SHARED(kModel);
  auto m = load_model(shared_path(kModel));
  const Tokenizer& tok = *m->tokenizer;
  std::string prompt = "BEGIN of the instructions. ";
  for (int i = 0; i < 40; ++i) prompt += "Filler sentence number " + std::string(1, char('a' + i % 26)) + " goes here. ";
  prompt += "Question: what is at the END";
  const auto ids = tok.encode(prompt, false);
  int64_t before = 0;
  const std::string cut = truncate_middle(tok, prompt, 100, &before);
  EXPECT_EQ(before, static_cast<int64_t>(ids.size()));
  ASSERT_GT(before, 100);
  // Exactly decode(first 50) + decode(last 50).
  const std::vector<int32_t> head(ids.begin(), ids.begin() + 50), tail(ids.end() - 50, ids.end());
  EXPECT_EQ(cut, tok.decode(head, true) + tok.decode(tail, true));
  EXPECT_EQ(cut.rfind("BEGIN of the instructions.", 0), 0u);
  EXPECT_TRUE(cut.ends_with("Question: what is at the END"));
  const int64_t n = static_cast<int64_t>(tok.encode(cut, false).size());
  EXPECT_LE(std::abs(n - 100), 2);  // re-tokenised at the seam
  // An odd maximum keeps floor(max / 2) from each end; a short prompt is untouched.
  EXPECT_EQ(truncate_middle(tok, prompt, 101), cut);
  EXPECT_EQ(truncate_middle(tok, "short prompt", 100), "short prompt");
}

TEST(LongBenchFixtures, OfficialFieldsAndKnownDatasets) {
  const auto names = longbench_datasets();
  EXPECT_EQ(names.size(), 21u);
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(fixtures())) {
    const std::string name = e.path().stem().string();
    SCOPED_TRACE(name);
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end());
    for (const auto& r : read_jsonl(e.path().string())) {
      for (const char* f : {"input", "context", "answers", "length", "dataset", "language", "all_classes", "_id"})
        EXPECT_TRUE(r.contains(f)) << f;
      EXPECT_EQ(r["dataset"], name);
      // The reference answer scores full marks under the dataset's metric.
      const auto answers = r["answers"].get<std::vector<std::string>>();
      const auto classes = r["all_classes"].is_null() ? std::vector<std::string>{} : r["all_classes"].get<std::vector<std::string>>();
      EXPECT_NEAR(longbench_score(name, answers[0], answers, classes), 1.0, 1e-6);
    }
    ++files;
  }
  EXPECT_GE(files, 6);
}
