// Needle placement (Kamradt's insert_needle): sentence boundary, depth 0 and
// 100, and the token budget counting the template and the generation budget.
#include <gtest/gtest.h>

#include "common/error.h"
#include "common/testing.h"
#include "eval/tasks.h"
#include "eval/text.h"

using namespace harmonia;
using namespace harmonia::eval;

namespace {
const char* kModel = "models/stories260K/stories260K.gguf";
std::unique_ptr<Model> load() { return load_model(shared_path(kModel)); }
}  // namespace

TEST(NiahPlacement, BoundaryRuleOnIds) {
  // Token 1 is the period. Haystack: w . w w . w w
  const std::vector<int32_t> hay = {5, 1, 6, 7, 1, 8, 9};
  const std::vector<int32_t> needle = {100, 101};
  std::vector<bool> period(200, false);
  period[1] = true;
  int64_t pos = -1;
  // depth 50: p = floor(7 / 2) = 3, token 2 (6) is no period -> back to p = 2 after the first '.'.
  EXPECT_EQ(insert_needle(hay, needle, 50, period, &pos), (std::vector<int32_t>{5, 1, 100, 101, 6, 7, 1, 8, 9}));
  EXPECT_EQ(pos, 2);
  // depth 0: at the very start.
  EXPECT_EQ(insert_needle(hay, needle, 0, period, &pos), (std::vector<int32_t>{100, 101, 5, 1, 6, 7, 1, 8, 9}));
  EXPECT_EQ(pos, 0);
  // depth 100: appended, no search.
  EXPECT_EQ(insert_needle(hay, needle, 100, period, &pos), (std::vector<int32_t>{5, 1, 6, 7, 1, 8, 9, 100, 101}));
  EXPECT_EQ(pos, 7);
  // depth 99: p = 6 -> back to 5, right after the second '.'.
  insert_needle(hay, needle, 99, period, &pos);
  EXPECT_EQ(pos, 5);
  // No period before p: the needle goes first.
  insert_needle({5, 6, 7, 8}, needle, 80, period, &pos);
  EXPECT_EQ(pos, 0);
}

TEST(NiahPlacement, PeriodTokensOfTheVocabulary) {
  HARMONIA_REQUIRE_SHARED(kModel);
  auto m = load();
  const auto p = period_tokens(*m->tokenizer);
  const auto dot = m->tokenizer->encode(".", false);
  ASSERT_FALSE(dot.empty());
  EXPECT_TRUE(p[dot.back()]);
  size_t n = 0;
  for (int32_t id = 0; id < m->tokenizer->vocab_size(); ++id) {
    if (!p[id]) continue;
    ++n;
    EXPECT_EQ(strip(m->tokenizer->token_bytes(id)).back(), '.');
  }
  EXPECT_GE(n, 1u);
}

TEST(NiahPlacement, SentenceBoundaryDepthsAndBudget) {
  HARMONIA_REQUIRE_SHARED(kModel);
  // An SPM vocabulary with "." alone, and one that merges ". " (TinyStories-656K).
  for (const char* path : {kModel, "models/TinyStories-656K/tokenizer.json"}) {
  if (!file_exists(shared_path(path))) continue;
  auto m = load();
  if (std::string(path) != kModel) m->tokenizer = load_tokenizer(shared_path(path));
  for (const char* style : {"compact", "anthropic", "messages"}) {
    NiahOptions o;
    o.prompt = style;
    o.max_new = 24;
    NiahBuilder b(*m, o, ChatMode::Auto, 512);
    const std::string needle = strip(o.needle);
    const int64_t overhead = b.prompter().count(b.prompt_text(""));
    const auto period = period_tokens(b.prompter().tok());
    const std::vector<int64_t> lengths = style == std::string("compact") ? std::vector<int64_t>{192, 256, 384, 512}
                                                                          : std::vector<int64_t>{384, 512};
    for (int64_t L : lengths) {
      for (double d : {0.0, 10.0, 33.0, 50.0, 90.0, 100.0}) {
        const Sample s = b.make(L, d);
        SCOPED_TRACE(std::string(path) + " " + style + " " + s.id);
        // Budget: prompt (BOS + template + question) + generation <= L, and tight:
        // the haystack was cut only back to its last period within the room.
        EXPECT_LE(static_cast<int64_t>(s.tokens.size()) + o.max_new, L);
        const int64_t used = s.extra["haystack_tokens"].get<int64_t>();
        const int64_t room = L - o.max_new - overhead - static_cast<int64_t>(b.needle().size());
        EXPECT_LE(used, room + 2);
        for (int64_t i = used; i < room - 4; ++i) EXPECT_FALSE(period[b.haystack()[i]]) << "a period at " << i << " was left out";
        EXPECT_EQ(s.tokens, b.prompter().encode(s.prompt));
        // The needle is in the prompt once, on a sentence boundary.
        const size_t at = s.prompt.find(needle);
        ASSERT_NE(at, std::string::npos);
        EXPECT_EQ(s.prompt.find(needle, at + 1), std::string::npos);
        // Where the context starts and what follows it in this prompt style.
        const std::string marked = b.prompt_text("@@CTX@@");
        const size_t ctx_start = marked.find("@@CTX@@");
        const std::string tail = marked.substr(ctx_start + 7);
        const std::string before = strip(s.prompt.substr(ctx_start, at - ctx_start));
        const int64_t pos = s.extra["needle_pos"].get<int64_t>();
        if (d == 0) {
          EXPECT_EQ(pos, 0);
        }
        if (pos == 0) {
          EXPECT_TRUE(before.empty()) << before;
        } else {
          ASSERT_FALSE(before.empty());
          EXPECT_EQ(before.back(), '.') << before.substr(before.size() > 40 ? before.size() - 40 : 0);
        }
        if (d == 100) {
          // Last in the context: the rest of the template follows the needle.
          EXPECT_EQ(pos, s.extra["haystack_tokens"].get<int64_t>());
          EXPECT_EQ(strip(s.prompt.substr(at + needle.size())), strip(tail));
        }
        EXPECT_GE(overhead, 5);
      }
    }
  }
  }
}

TEST(NiahPlacement, TooShortLengthIsAClearError) {
  HARMONIA_REQUIRE_SHARED(kModel);
  auto m = load();
  NiahOptions o;
  o.prompt = "anthropic";
  NiahBuilder b(*m, o, ChatMode::Auto, 512);
  try {
    b.make(128, 50);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("length 128 cannot hold the prompt"), std::string::npos) << e.what();
  }
}

TEST(NiahPlacement, DeterministicAndCustomNeedle) {
  HARMONIA_REQUIRE_SHARED(kModel);
  auto m = load();
  NiahOptions o;
  o.needle = " The secret ingredient of the soup is a pinch of cinnamon.";
  o.question = "What is the secret ingredient of the soup?";
  o.keywords = {"cinnamon"};
  NiahBuilder b1(*m, o, ChatMode::Auto, 384), b2(*m, o, ChatMode::Auto, 384);
  const Sample a = b1.make(384, 40), c = b2.make(384, 40);
  EXPECT_EQ(a.prompt, c.prompt);
  EXPECT_EQ(a.expected, std::vector<std::string>{"cinnamon"});
  EXPECT_NE(a.prompt.find("secret ingredient of the soup is a pinch of cinnamon."), std::string::npos);
}
