#pragma once
// The long-context benchmarks of `harmonia eval TASK` (construction and scoring
// as in shared/specs/long-context-survey.md §2). Each run_* builds its samples,
// runs every --kv policy on them through the harness (harness.h), and writes
// the summary; the CLI maps flags onto these Options structs.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "eval/harness.h"
#include "eval/text.h"

namespace harmonia::eval {

// ---- ppl: perplexity with a sliding window (survey §2.5) ------------------------

struct PplOptions {
  std::string file;        // --file: the text
  int64_t stride = 0;      // --stride: tokens between window starts; 0 = window / 2
  int64_t max_tokens = 0;  // --max-tokens: use the first N tokens of the text (0 = all)
};
// One window of the sliding evaluation: tokens [begin, end); the first `prompt`
// are prefilled, the rest are scored one by one (teacher forced), so each
// policy's compressed cache is what predicts the scored tokens.
struct Window {
  int64_t begin = 0, end = 0, prompt = 1;
  int64_t scored() const { return end - begin - prompt; }
};
// Hugging Face's sliding-window perplexity: windows of `window` tokens every
// `stride`; each scores only the tokens the previous one did not. With stride <
// window every token from 1 to n-1 is scored exactly once; with stride = window
// (non-overlapping chunks) the first token of each chunk has no context and is
// not scored, as in Hugging Face's recipe.
// Throws Error(InvalidInput) for stride < 1, stride > window or n < 2.
std::vector<Window> sliding_windows(int64_t n_tokens, int64_t window, int64_t stride);
// Window = the context (--ctx). `full` is always computed (KL reference) and reported.
TaskReport run_ppl(const Model& m, const PplOptions& o, const HarnessOptions& h);

// ---- niah: Kamradt's needle in a haystack (survey §2.1) -------------------------

inline constexpr const char* kNiahNeedle =
    "\nThe best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.\n";
inline constexpr const char* kNiahQuestion = "What is the best thing to do in San Francisco?";
inline constexpr const char* kNiahSystem =
    "You are a helpful AI bot that answers questions for a user. Keep your response short and direct";
inline constexpr const char* kNiahInstruction = "Don't give information outside the document or repeat your findings";

struct NiahOptions {
  std::string haystack_dir;  // --haystack: folder of .txt; "" = the built-in synthetic filler
  std::string needle = kNiahNeedle;      // --needle
  std::string question = kNiahQuestion;  // --question
  std::string answer;                    // --answer: expected answer ("" = the needle, stripped)
  std::vector<std::string> keywords = {"sandwich", "Dolores Park"};  // --keywords: key phrases of the answer
  std::string match = "recall";          // --match: recall (share of key phrases) | contains (the whole answer)
  std::string lengths;                   // --lengths grid (default ctx/4..ctx)
  std::string depths = "0:100:11";       // --depths grid in %
  std::string depth_spacing = "linear";  // --depth-spacing linear | sigmoid (applies to min:max:n)
  int max_new = 32;                      // --max-new: generation budget (counted in the length)
  // --prompt: messages (Kamradt's OpenAI system+context+question turns, through
  // the chat template), anthropic (his completion prompt with <context> tags and
  // the "Here is the most relevant sentence" lead-in), compact (context,
  // question, "Answer:"; fits short contexts), auto = messages with a chat
  // template, else compact.
  std::string prompt = "auto";
  double threshold = 1.0;                // --threshold: a cell passes at score >= this (effective length)
};

// Ids whose bytes end in '.', trailing whitespace ignored (not special): a
// needle may start right after one. (Kamradt: the ids of encode(".").)
std::vector<bool> period_tokens(const Tokenizer& tok);
// Kamradt's insert_needle on ids: depth 100 appends; otherwise p = floor(|h| *
// depth / 100) moves back until the token before p is a period (or p = 0) and
// the needle is spliced in at p. *pos receives p.
std::vector<int32_t> insert_needle(const std::vector<int32_t>& haystack, const std::vector<int32_t>& needle, double depth,
                                   const std::vector<bool>& is_period, int64_t* pos = nullptr);

class NiahBuilder {
 public:
  // Loads and tokenizes the haystack for lengths up to max_length.
  NiahBuilder(const Model& m, const NiahOptions& o, ChatMode chat, int64_t max_length);
  // The sample at (length, depth): haystack cut so that prompt (BOS, template,
  // question) + needle + max_new <= length and ended at its last period, needle
  // at the boundary rule's place (so on a sentence boundary at every depth).
  // Throws Error(InvalidInput) when the length cannot hold the template, the
  // needle and the generation budget.
  Sample make(int64_t length, double depth) const;
  // The prompt text around a context.
  std::string prompt_text(const std::string& context) const;
  const Prompter& prompter() const { return prompter_; }
  const std::vector<int32_t>& haystack() const { return hay_; }
  const std::vector<int32_t>& needle() const { return needle_; }

 private:
  NiahOptions o_;
  Prompter prompter_;
  std::string style_;
  std::vector<int32_t> hay_, needle_;
  std::vector<bool> period_;
};
// The depth grid of the options (sorted, unique).
std::vector<double> niah_depths(const NiahOptions& o);
TaskReport run_niah(const Model& m, const NiahOptions& o, const HarnessOptions& h);

// ---- passkey: LandmarkAttention passkey retrieval (survey §2.2) -----------------

struct PasskeyOptions {
  std::string lengths;   // --lengths grid: total tokens incl. the 10 generated
  int samples = 50;      // --samples: trials per length (per depth with --depths)
  std::string depths;    // --depths: "" = uniform random split (original); a grid = fixed depths
  int max_new = 10;      // --max-new
};
// LandmarkAttention's prompt: task line, the first prefix_chars of the repeated
// filler, the pass-key line, the first (n_garbage - prefix_chars) of the filler,
// the question, joined by newlines.
std::string passkey_text(int64_t n_garbage, int64_t prefix_chars, int64_t key);
std::vector<Sample> build_passkey_samples(const Model& m, const PasskeyOptions& o, const HarnessOptions& h);
TaskReport run_passkey(const Model& m, const PasskeyOptions& o, const HarnessOptions& h);

// ---- ruler: RULER's synthetic tasks (survey §2.3) ------------------------------

struct RulerOptions {
  std::string lengths;       // --lengths grid
  std::string tasks = "all"; // --tasks: comma list of ruler_task_names()
  int samples = 500;         // --samples per task and length (RULER: 500)
  std::string words = kDefaultWordList;  // --words: word list for keys and CWE (Debian wamerican)
  std::string haystack_dir;  // --haystack: essay haystack ("" = the built-in filler)
  int max_new = 0;           // --max-new: 0 = RULER's budget per family (NIAH 128, VT 30, CWE 120, FWE 50)
};
std::vector<std::string> ruler_task_names();
// The largest n in [lo, hi] with fits(n) (fits must be true then false as n
// grows), by binary search; lo - 1 when even lo does not fit.
int64_t fit_largest(int64_t lo, int64_t hi, const std::function<bool(int64_t)>& fits);

class RulerBuilder {
 public:
  // Loads the word list (when a selected task needs words) and the essay
  // haystack for lengths up to max_length.
  RulerBuilder(const Model& m, const RulerOptions& o, ChatMode chat, uint64_t seed, int64_t max_length);
  // Sample `index` of `task` at `length` tokens (prompt + generation budget),
  // the haystack size fitted by binary search. nullopt when even the smallest
  // haystack does not fit; *needed then receives its token count.
  std::optional<Sample> make(const std::string& task, int64_t length, int index, int64_t* needed = nullptr) const;
  // The sample of `task` with haystack size n (sentences, lines or words); the
  // same (task, length, index) draws the same keys and values for every n.
  Sample build(const std::string& task, int64_t length, int index, int64_t n) const;
  // The smallest haystack size `task` accepts.
  int64_t min_size(const std::string& task) const;
  // Generation budget of `task` (RULER's, or --max-new).
  int budget(const std::string& task) const;
  const Prompter& prompter() const { return prompter_; }

 private:
  std::string vt_icl_example(int64_t length) const;
  RulerOptions o_;
  mutable std::map<int64_t, std::string> icl_cache_;  // VT one-shot example per length
  Prompter prompter_;
  uint64_t seed_;
  std::vector<std::string> words_, essay_words_;
};
TaskReport run_ruler(const Model& m, const RulerOptions& o, const HarnessOptions& h);

// ---- longbench: LongBench v1 (survey §2.4) --------------------------------------

struct LongBenchOptions {
  std::string data_dir;  // --data: folder of <dataset>.jsonl (official field names)
  std::string datasets;  // --datasets: comma list ("" = every known dataset file in --data)
  int samples = 0;       // --samples: first N per dataset (0 = all)
};
std::vector<std::string> longbench_datasets();
// "Single-Document QA", "Multi-Document QA", "Summarization", "Few-shot Learning",
// "Synthetic Tasks", "Code Completion"; "" for an unknown dataset.
std::string longbench_category(const std::string& dataset);
// pred.py: when `prompt` has more than max_tokens tokens (no BOS), keep the first
// max/2 and the last max/2 (max/2 rounded down), decoded back to text.
std::string truncate_middle(const Tokenizer& tok, const std::string& prompt, int64_t max_tokens,
                            int64_t* tokens_before = nullptr);
// eval.py scorer for one sample: first line only for trec/triviaqa/samsum/lsht,
// then the dataset's metric, maximum over the answers. Throws Error(InvalidInput)
// for an unknown dataset.
double longbench_score(const std::string& dataset, const std::string& pred, const std::vector<std::string>& answers,
                       const std::vector<std::string>& all_classes);
TaskReport run_longbench(const Model& m, const LongBenchOptions& o, const HarnessOptions& h);

}  // namespace harmonia::eval
