#pragma once
// What every long-context benchmark shares: the run settings, prompt assembly
// (chat template or raw), the sample record, the loop that runs every KV policy
// on the same samples with resume and a progress bar, and the summary files.
//
// Files in --out for task T (see records.h): T.samples.jsonl, T.results.jsonl,
// T.summary.md, T.summary.json (+ T.heatmap.png/.svg for niah).
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kv/spec.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace harmonia::eval {

// --chat: auto = the model's chat template where the benchmark expects one
// (NIAH, RULER, LongBench except its few-shot and code sets) and the model has
// one; base models and raw benchmarks (passkey) get plain text.
enum class ChatMode { Auto, On, Off };
// "auto" | "on" | "off"; throws Error(InvalidInput) naming --chat.
ChatMode parse_chat_mode(const std::string& s);

// Settings of every task (the CLI flags of the same names).
struct HarnessOptions {
  std::vector<kv::PolicySpec> policies = {{"full", {}}};  // --kv, in report order
  int64_t ctx = 0;            // --ctx: context size in tokens = KV capacity and the largest length; 0 = the model's
  int threads = 0;            // --threads (0: leave as is)
  std::string out_dir = "eval-out";  // --out
  uint64_t seed = 42;         // --seed: sample construction (keys, depths, words)
  ChatMode chat = ChatMode::Auto;    // --chat
  bool progress = true;       // --no-progress turns it off
};

// The context size a run uses: o.ctx or the model's trained length.
int64_t context_size(const Model& m, const HarnessOptions& o);
// Lengths of a grid ("a,b,c" | "min:max:n"; "" = ctx/4, ctx/2, 3ctx/4, ctx), each in
// [16, ctx]. Throws Error(InvalidInput) naming --lengths and the bad value.
std::vector<int64_t> resolve_lengths(const std::string& grid, int64_t ctx);

// Prompt assembly for one benchmark.
class Prompter {
 public:
  // benchmark_uses_chat: whether the benchmark wraps its prompt in the chat
  // template (RULER, NIAH, LongBench) or feeds raw text (passkey). Throws
  // Error(InvalidInput) when the model has no tokenizer, or for --chat on
  // without a chat template.
  Prompter(const Model& m, ChatMode mode, bool benchmark_uses_chat);
  bool chat() const { return chat_; }
  ChatFormat format() const { return format_; }
  const Tokenizer& tok() const { return *tok_; }
  // Chat text: the template over `msgs` with the assistant header, then
  // answer_prefix (generation continues from it, as RULER does).
  std::string chat_text(const std::vector<ChatMessage>& msgs, const std::string& answer_prefix = "") const;
  // BOS (when the vocabulary adds one) + ids of `text`; chat markers are parsed
  // as special tokens in chat mode only.
  std::vector<int32_t> encode(const std::string& text) const;
  int64_t count(const std::string& text) const { return static_cast<int64_t>(encode(text).size()); }
  // Ids of text inside a prompt (no BOS, no special parsing).
  std::vector<int32_t> encode_plain(const std::string& text) const { return tok_->encode(text, false, false); }

 private:
  const Tokenizer* tok_;
  bool chat_ = false;
  ChatFormat format_ = ChatFormat::Raw;
};

// One constructed sample, the same for every policy.
struct Sample {
  std::string id;                     // unique in the task; with the policy label, the resume key
  std::string group;                  // sub-task / dataset ("" for single-family tasks)
  int64_t length = 0;                 // target tokens: prompt (BOS, template) + generation budget
  double depth = -1;                  // needle depth in % (-1: not applicable; null in the files)
  std::string prompt;                 // the text that was encoded (template, answer prefix included)
  std::vector<int32_t> tokens;        // prompt ids
  std::vector<std::string> expected;  // reference answers
  int max_new = 0;                    // generation budget (tokens)
  std::vector<std::string> stop;      // extra stop strings
  nlohmann::json extra = nlohmann::json::object();  // task fields, copied into each record
  // The samples-file line (no timings: a pure function of the settings and seed).
  nlohmann::json to_json() const;
};

// Per-sample score in [0, 1] of one generated output.
using Scorer = std::function<double(const Sample&, const std::string& output)>;

struct TaskRun {
  std::vector<nlohmann::json> records;  // one per (sample, policy) of this run's settings, in sample-major order
  std::string samples_path, results_path;
  int64_t ran = 0, resumed = 0;         // records computed now / found in the results file
};

// Creates each policy of o.policies once for a context of ctx tokens, so an
// unknown name or a bad option fails before any file is written.
void validate_policies(const Model& m, const HarnessOptions& o, int64_t ctx);

// The files of task `task` in o.out_dir.
std::string task_file(const HarnessOptions& o, const std::string& task, const std::string& suffix);

// Writes the samples file, then runs greedy generation (temperature 0, EOS and
// sample.stop end it) for every sample x policy missing from the results file,
// appending one record each: task, policy, id, group, length, depth,
// prompt_tokens, output, expected, score, kv_bytes, prefill_ms, decode_ms,
// output_tokens, stop_reason + sample.extra. Samples run in order, each under
// every policy, so an interrupted run has complete comparisons.
TaskRun run_generation_task(const Model& m, const std::string& task, const std::vector<Sample>& samples,
                            const Scorer& score, const HarnessOptions& o);

// Mean score and costs of a set of records.
struct Aggregate {
  int64_t n = 0;
  double score = 0;       // mean of "score" x 100
  double kv_bytes = 0;    // mean KV bytes held at the end
  double prefill_ms = 0, decode_ms = 0;  // means
  nlohmann::json to_json() const;
};
// Records grouped by the key `key_of` returns (records with an empty key are dropped).
std::map<std::string, Aggregate> aggregate(const std::vector<nlohmann::json>& records,
                                           const std::function<std::string(const nlohmann::json&)>& key_of);

// A Markdown table.
std::string markdown_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);
// "1.25 KiB", "80.0 KiB", "3.10 MiB".
std::string format_bytes(double bytes);
// "42.5"; "-" for NaN.
std::string format_score(double v);

// The model's file (or folder) name, for titles.
std::string model_name(const Model& m);

// Markdown table of the mean score % per policy (rows) and length (columns),
// the mean over lengths and the mean KV bytes at the largest length. `out`
// (optional) receives the same numbers as JSON.
std::string policy_length_table(const std::vector<nlohmann::json>& records, const std::vector<std::string>& labels,
                                const std::vector<int64_t>& lengths, nlohmann::json* out = nullptr);

// The policy labels of o.policies, in order.
std::vector<std::string> policy_labels(const HarnessOptions& o);

// What a task leaves behind and prints.
struct TaskReport {
  std::string markdown;           // the summary table(s), also written to T.summary.md
  nlohmann::json summary;         // also written to T.summary.json
  std::vector<std::string> files; // every file written
};
// Writes T.summary.md and T.summary.json and fills report.files.
void write_summary(const HarnessOptions& o, const std::string& task, TaskReport& report, const TaskRun* run);

// Header shared by the summaries: model, settings and policies.
nlohmann::json summary_header(const Model& m, const std::string& task, const HarnessOptions& o, int64_t ctx);

}  // namespace harmonia::eval
