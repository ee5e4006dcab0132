// The shared pieces: text helpers, grids, the results file (resume, torn
// lines), the samples-file guard, the progress bar and the PNG/SVG writers.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/mapped_file.h"
#include "common/testing.h"
#include "model/presets.h"
#include "eval/figure.h"
#include "eval/filler.h"
#include "eval/harness.h"
#include "eval/progress.h"
#include "eval/records.h"
#include "eval/rng.h"
#include "eval/tasks.h"
#include "eval/text.h"

using namespace harmonia;
using namespace harmonia::eval;
namespace fs = std::filesystem;

namespace {
std::string tmpdir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("harmonia_eval_" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}
uint32_t be32(const std::string& s, size_t at) {
  return (uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) | (uint32_t(uint8_t(s[at + 2])) << 8) |
         uint32_t(uint8_t(s[at + 3]));
}
}  // namespace

TEST(EvalText, PythonStringSemantics) {
  EXPECT_EQ(split_ws("  a\tb\n\nc  "), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(collapse_ws(" a  b \n c"), "a b c");
  EXPECT_EQ(split_on("a..b", "."), (std::vector<std::string>{"a", "", "b"}));
  EXPECT_EQ(replace_all("are you aware", "are", "is"), "is you awis");  // Python str.replace
  EXPECT_EQ(fill_template("{a} {b} {not a slot", {{"a", "1"}, {"b", "{a}"}}), "1 {a} {not a slot");
  EXPECT_THROW(fill_template("{missing}", {}), Error);
  EXPECT_EQ(split_sentences("One. Two! \"Three?\" Four"), (std::vector<std::string>{"One.", "Two!", "\"Three?\"", "Four"}));
  EXPECT_EQ(split_sentences("Pi is 3.14 here. Next."), (std::vector<std::string>{"Pi is 3.14 here.", "Next."}));
  EXPECT_EQ(utf8_encode(utf8_decode("héllo 白")), "héllo 白");
}

TEST(EvalText, Grids) {
  EXPECT_EQ(linspace_round(0, 100, 5), (std::vector<int64_t>{0, 25, 50, 75, 100}));
  EXPECT_EQ(linspace_round(0, 5, 3), (std::vector<int64_t>{0, 2, 5}));  // 2.5 rounds half to even, as numpy
  EXPECT_EQ(parse_grid("128,256", "--lengths"), (std::vector<double>{128, 256}));
  EXPECT_EQ(parse_grid("0:100:3", "--depths"), (std::vector<double>{0, 50, 100}));
  EXPECT_THROW(parse_grid("0:100", "--depths"), Error);
  EXPECT_THROW(parse_grid("12x", "--lengths"), Error);
  EXPECT_EQ(resolve_lengths("", 512), (std::vector<int64_t>{128, 256, 384, 512}));
  EXPECT_THROW(resolve_lengths("1024", 512), Error);
  // Kamradt's sigmoid: 100 / (1 + exp(0.1 (x - 50))), rounded to 3 places; 0 and 100 kept.
  EXPECT_DOUBLE_EQ(sigmoid_depth(25), 92.414);
  EXPECT_DOUBLE_EQ(sigmoid_depth(50), 50);
  EXPECT_DOUBLE_EQ(sigmoid_depth(100), 100);
  NiahOptions o;
  o.depths = "0:100:5";
  o.depth_spacing = "sigmoid";
  EXPECT_EQ(niah_depths(o), (std::vector<double>{0, 7.586, 50, 92.414, 100}));
}

TEST(EvalRng, DeterministicAndUniformish) {
  Rng a(derive_seed(42, "x")), b(derive_seed(42, "x")), c(derive_seed(43, "x"));
  EXPECT_EQ(a.next(), b.next());
  EXPECT_NE(a.next(), c.next());
  Rng r(1);
  int hist[5] = {};
  for (int i = 0; i < 5000; ++i) ++hist[r.range(1, 5) - 1];
  for (int h : hist) EXPECT_GT(h, 850);
  auto s = r.sample(10, 10);
  std::sort(s.begin(), s.end());
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(s[i], i);
}

TEST(EvalFiller, OriginalAndClean) {
  const std::string f = synthetic_filler(20000);
  EXPECT_GE(f.size(), 20000u);
  EXPECT_EQ(synthetic_filler(5000), f.substr(0, synthetic_filler(5000).size()));  // same prefix
  for (const char* banned : {"sandwich", "Dolores", "park", "San Francisco", "pass key", "magic", "VAR"})
    EXPECT_EQ(f.find(banned), std::string::npos) << banned;
  EXPECT_EQ(f.find_first_of("0123456789"), std::string::npos);
  EXPECT_GT(split_sentences(f).size(), 200u);
}

TEST(EvalRecords, ResumeDropsTornLine) {
  const std::string dir = tmpdir("records");
  const std::string path = dir + "/t.results.jsonl";
  {
    ResultsFile f(path);
    f.append({{"policy", "full"}, {"id", "a"}, {"score", 1}});
    f.append({{"policy", "full"}, {"id", "b"}, {"score", 0}});
  }
  {  // a killed run leaves half a line
    std::ofstream o(path, std::ios::app);
    o << "{\"policy\":\"full\",\"id\":\"c\",\"sco";
  }
  ResultsFile f(path);
  EXPECT_EQ(f.records().size(), 2u);
  EXPECT_GT(f.torn_bytes_dropped(), 0u);
  EXPECT_TRUE(f.has("full", "a"));
  EXPECT_FALSE(f.has("full", "c"));
  f.append({{"policy", "full"}, {"id", "c"}, {"score", 1}});
  EXPECT_EQ(read_jsonl(path).size(), 3u);  // the torn bytes are gone, the new line is whole
}

TEST(EvalRecords, MalformedLineNamesFileAndLine) {
  const std::string dir = tmpdir("bad");
  const std::string path = dir + "/t.results.jsonl";
  {
    std::ofstream o(path);
    o << "{\"policy\":\"full\",\"id\":\"a\"}\nnot json\n";
  }
  try {
    ResultsFile f(path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":2"), std::string::npos) << e.what();
  }
}

TEST(EvalRecords, SamplesFileGuardsResults) {
  const std::string dir = tmpdir("guard");
  const std::string s = dir + "/t.samples.jsonl", r = dir + "/t.results.jsonl";
  write_samples_file(s, "one\n", r);
  write_samples_file(s, "two\n", r);  // no results yet: rewritten
  EXPECT_EQ(read_file(s), "two\n");
  { std::ofstream(r) << "{\"policy\":\"full\",\"id\":\"a\"}\n"; }
  EXPECT_NO_THROW(write_samples_file(s, "two\n", r));  // same samples: resume
  EXPECT_THROW(write_samples_file(s, "three\n", r), Error);
}

TEST(EvalProgress, RenderAndDurations) {
  EXPECT_EQ(format_duration(850), "850ms");
  EXPECT_EQ(format_duration(12340), "12.3s");
  EXPECT_EQ(format_duration(245000), "4m05s");
  EXPECT_EQ(Progress::render(1, 4, 1000, 8), "[##......] 1/4  25% 1.0s elapsed ETA 3.0s");
  EXPECT_EQ(Progress::render(4, 4, 4000, 8), "[########] 4/4 100% 4.0s elapsed done");
}

TEST(EvalFigure, HeatmapPanelsShareTheScale) {
  HeatmapSpec s;
  s.title = "NIAH test";
  s.x_label = "length";
  s.y_label = "depth";
  s.legend = "score";
  s.x_ticks = {"128", "256"};
  s.y_ticks = {"0", "100"};
  s.panels = {{"full", "mean 50", {{0.0, 1.0}, {0.5, NAN}}}, {"streaming", "mean 0", {{0.0, 0.0}, {0.0, 0.0}}}};
  const Figure f = heatmap_figure(s);
  EXPECT_GT(f.width, 200);
  EXPECT_GT(f.height, 100);
  const std::string svg = f.to_svg();
  EXPECT_NE(svg.find(">full<"), std::string::npos);
  EXPECT_NE(svg.find(">streaming<"), std::string::npos);
  EXPECT_NE(svg.find(">100<"), std::string::npos);  // the cell of score 1
  // The same colour for the same score in both panels, red at 0, green at 1.
  EXPECT_EQ(score_colour(0), 0xF0496Eu);
  EXPECT_EQ(score_colour(1), 0x0CD79Fu);
  EXPECT_EQ(score_colour(0.5), 0xEBB839u);
  size_t red = 0;
  for (const auto& r : f.rects) red += r.fill == 0xF0496Eu;
  EXPECT_GE(red, 6u);  // 1 + 4 zero cells, plus the colour bar's first stripe
  // The PNG is the same layout: its size, and each cell's colour at the cell's corner.
  const Image img = f.rasterize();
  EXPECT_EQ(img.width(), f.width);
  EXPECT_EQ(img.height(), f.height);
  for (const auto& r : f.rects) {
    if (r.w < 4 || r.h < 4) continue;  // colour-bar stripes and ticks
    const Rgb c = img.get(r.x + 2, r.y + 2);
    EXPECT_EQ((uint32_t(c.r) << 16) | (uint32_t(c.g) << 8) | c.b, r.fill);
  }
  const std::string png = f.to_png();
  ASSERT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  EXPECT_EQ(be32(png, 16), static_cast<uint32_t>(f.width));
  EXPECT_EQ(be32(png, 20), static_cast<uint32_t>(f.height));
}

TEST(EvalPpl, SlidingWindowsScoreEveryTokenOnce) {
  for (auto [n, win, stride] : {std::tuple<int64_t, int64_t, int64_t>{1000, 256, 128}, {1000, 256, 255}, {300, 256, 100}, {50, 256, 128}}) {
    const auto ws = sliding_windows(n, win, stride);
    int64_t scored = 0, next = 1;
    for (const auto& w : ws) {
      EXPECT_LE(w.end - w.begin, win);
      EXPECT_GE(w.prompt, 1);
      EXPECT_EQ(w.begin + w.prompt, next) << "window [" << w.begin << ", " << w.end << ")";  // contiguous, no overlap
      next = w.end;
      scored += w.scored();
    }
    EXPECT_EQ(scored, n - 1);
    EXPECT_EQ(ws.back().end, n);
  }
  // stride == window: non-overlapping chunks; a chunk's first token has no context and is not scored (as in HF).
  const auto chunks = sliding_windows(512, 256, 256);
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[1].begin + chunks[1].prompt, 257);
  EXPECT_THROW(sliding_windows(100, 64, 65), Error);
}

// Chat templates where the benchmark expects them; base models and raw
// benchmarks get plain text.
TEST(EvalPrompter, ChatWhereTheBenchmarkExpectsIt) {
  const std::string tok_path = shared_path("models/qwen3-tokenizer/tokenizer.json");
  if (!file_exists(tok_path)) GTEST_SKIP() << "shared file missing: " << tok_path;
  auto m = make_random_model(preset_config("tiny-qwen3"), {});
  m->tokenizer = load_tokenizer(tok_path);
  ASSERT_EQ(detect_chat_format(m->tokenizer->chat_template()), ChatFormat::ChatML);

  const Prompter chat(*m, ChatMode::Auto, /*benchmark_uses_chat=*/true);
  EXPECT_TRUE(chat.chat());
  const std::string t = chat.chat_text({{"user", "Question?"}}, " The answer is");
  EXPECT_EQ(t, "<|im_start|>user\nQuestion?<|im_end|>\n<|im_start|>assistant\n The answer is");
  const auto ids = chat.encode(t);
  const auto im_start = m->tokenizer->encode("<|im_start|>", false, true);
  ASSERT_EQ(im_start.size(), 1u);  // a special token, not text
  EXPECT_EQ(std::count(ids.begin(), ids.end(), im_start[0]), 2);

  EXPECT_FALSE(Prompter(*m, ChatMode::Auto, /*benchmark_uses_chat=*/false).chat());  // passkey, LongBench few-shot/code
  EXPECT_FALSE(Prompter(*m, ChatMode::Off, true).chat());
  EXPECT_TRUE(Prompter(*m, ChatMode::On, false).chat());

  // RULER: the answer prefix follows the assistant header.
  RulerOptions ro;
  ro.max_new = 16;
  RulerBuilder rb(*m, ro, ChatMode::Auto, 1, 1024);
  const auto s = rb.make("niah_single_1", 1024, 0);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->prompt.rfind("<|im_start|>user\nA special magic number is hidden", 0), 0u) << s->prompt.substr(0, 80);
  EXPECT_TRUE(s->prompt.ends_with("<|im_start|>assistant\n The special magic number for " +
                                  s->prompt.substr(s->prompt.rfind(" for ") + 5, s->prompt.rfind(" mentioned") - s->prompt.rfind(" for ") - 5) +
                                  " mentioned in the provided text is"));
  // NIAH with a chat model: Kamradt's system + context + question turns.
  NiahOptions no;
  NiahBuilder nb(*m, no, ChatMode::Auto, 512);
  const std::string p = nb.prompt_text("CONTEXT");
  EXPECT_EQ(p.rfind(std::string("<|im_start|>system\n") + kNiahSystem, 0), 0u) << p;
  EXPECT_NE(p.find("<|im_start|>user\nCONTEXT<|im_end|>\n<|im_start|>user\nWhat is the best thing to do in San Francisco? "
                   "Don't give information outside the document or repeat your findings<|im_end|>"),
            std::string::npos)
      << p;

  // A base model (no template) never gets one under auto; --chat on is refused.
  auto base = load_model(shared_path("models/stories260K/stories260K.gguf"));
  EXPECT_FALSE(Prompter(*base, ChatMode::Auto, true).chat());
  EXPECT_THROW(Prompter(*base, ChatMode::On, true), Error);
}
