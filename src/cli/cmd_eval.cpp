// `harmonia eval TASK`: evaluation subcommands.
//   fidelity   teacher-forced KL/top-1/ppl of each KV policy against full
//   ppl        sliding-window perplexity per policy, KL against full
//   niah       needle in a haystack (length x depth grid, heatmap)
//   passkey    passkey retrieval
//   ruler      RULER's synthetic tasks
//   longbench  LongBench v1 on its JSON-lines files
// Every flag is defined once in kFlags, so an option has the same name and help
// text in every task.
#include <cstdio>
#include <iostream>
#include <type_traits>

#include "cli/commands.h"
#include "common/error.h"
#include "common/mapped_file.h"
#include "eval/fidelity.h"
#include "eval/tasks.h"
#include "kv/spec.h"

namespace harmonia::cli {

using nlohmann::json;

namespace {

enum class F {
  File, Kv, KvOpt, Ctx, Threads, Out, Seed, Chat, NoProgress, Lengths, Depths, DepthSpacing, Samples, MaxNew,
  Haystack, Stride, MaxTokens, Data, Datasets, Tasks, Words, Needle, Question, Answer, Keywords, Match, Prompt, Threshold,
};

struct FlagDef {
  F id;
  const char* name;
  const char* help;
};

// The one table of evaluation flags.
constexpr FlagDef kFlags[] = {
    {F::File, "-f,--file", "text file"},
    {F::Kv, "--kv", "KV policies, comma list with inline options: full,streaming:window=64,snapkv:budget=32"},
    {F::KvOpt, "--kv-opt", "option key=value for every listed policy (repeatable)"},
    {F::Ctx, "-c,--ctx", "context size in tokens: KV capacity and the largest length (default: the model's)"},
    {F::Threads, "-t,--threads", "threads (default: all cores)"},
    {F::Out, "-o,--out", "output folder: <task>.samples.jsonl, .results.jsonl (resumed), .summary.md/.json"},
    {F::Seed, "--seed", "seed of the sample construction (keys, depths, words); same seed, same samples"},
    {F::Chat, "--chat", "chat template: auto (where the benchmark uses one and the model has one), on, off"},
    {F::NoProgress, "--no-progress", "no progress bar"},
    {F::Lengths, "--lengths", "context lengths in tokens incl. template and generation: a,b,c or min:max:n (default ctx/4..ctx)"},
    {F::Depths, "--depths", "needle depths in %: a,b,c or min:max:n"},
    {F::DepthSpacing, "--depth-spacing", "spacing of min:max:n depths: linear or sigmoid (Kamradt)"},
    {F::Samples, "--samples", "samples per cell (per length; per task and length for ruler; per dataset for longbench, 0 = all)"},
    {F::MaxNew, "--max-new", "tokens to generate at most (counted in the length)"},
    {F::Haystack, "--haystack", "folder of .txt files for the haystack (default: the built-in synthetic filler)"},
    {F::Stride, "--stride", "tokens between window starts (default: half the window)"},
    {F::MaxTokens, "--max-tokens", "use only the first N tokens of the text (0 = all)"},
    {F::Data, "--data", "folder of LongBench v1 <dataset>.jsonl files (official field names)"},
    {F::Datasets, "--datasets", "comma list of datasets (default: every known one in --data)"},
    {F::Tasks, "--tasks", "comma list of tasks, or all"},
    {F::Words, "--words", "word list, one per line (Debian wamerican)"},
    {F::Needle, "--needle", "needle text"},
    {F::Question, "--question", "retrieval question"},
    {F::Answer, "--answer", "expected answer (default: the needle)"},
    {F::Keywords, "--keywords", "key phrases of the answer, comma separated (scored by recall)"},
    {F::Match, "--match", "scoring: recall (share of key phrases found) or contains (the whole answer)"},
    {F::Prompt, "--prompt", "prompt style: auto, messages (chat turns), anthropic (completion), compact"},
    {F::Threshold, "--threshold", "score a cell needs to pass (effective length)"},
};

const FlagDef& def(F id) {
  for (const auto& d : kFlags)
    if (d.id == id) return d;
  throw Error(ErrorKind::Internal, "eval flag missing from kFlags");
}

template <typename T>
CLI::Option* add(CLI::App* app, F id, T& var) {
  const FlagDef& d = def(id);
  CLI::Option* o = app->add_option(d.name, var, d.help)->capture_default_str();
  if constexpr (std::is_same_v<T, std::string>) {
    if (var.find('\n') != std::string::npos) {  // show "\n" in --help, not a line break
      std::string shown;
      for (char c : var) shown += c == '\n' ? std::string("\\n") : std::string(1, c);
      o->default_str(shown);
    }
  }
  return o;
}
CLI::Option* add_flag(CLI::App* app, F id, bool& var) {
  const FlagDef& d = def(id);
  return app->add_flag(d.name, var, d.help);
}

// The flags every benchmark task shares.
struct CommonFlags {
  ModelFlags mf;
  std::string kv = "full";
  std::vector<std::string> kv_opts;
  std::string chat = "auto";
  bool no_progress = false;
  eval::HarnessOptions h;

  void attach(CLI::App* sub) {
    mf.attach(sub);
    add(sub, F::Kv, kv);
    add(sub, F::KvOpt, kv_opts);
    add(sub, F::Ctx, h.ctx);
    add(sub, F::Threads, h.threads);
    add(sub, F::Out, h.out_dir);
    add(sub, F::Seed, h.seed);
    add(sub, F::Chat, chat);
    add_flag(sub, F::NoProgress, no_progress);
  }
  eval::HarnessOptions resolve() {
    h.policies = kv::parse_policy_list(kv, kv_opts);
    h.chat = eval::parse_chat_mode(chat);
    h.progress = !no_progress;
    return h;
  }
};

void print_report(const eval::TaskReport& rep) {
  std::cout << rep.markdown << "\n";
  for (const auto& f : rep.files) std::cout << "wrote " << f << "\n";
}

class EvalCmd : public Command {
 public:
  void attach(CLI::App& app) override {
    sub_ = app.add_subcommand("eval", "evaluation: KV fidelity and long-context benchmarks (ppl, niah, passkey, ruler, longbench)");
    sub_->require_subcommand(1);

    fid_ = sub_->add_subcommand("fidelity", "same text through full and each KV policy (teacher forced): KL, top-1, ppl");
    fid_mf_.attach(fid_);
    add(fid_, F::File, file_)->required();
    add(fid_, F::Kv, fid_kv_)->required();
    add(fid_, F::KvOpt, fid_kv_opts_);
    add(fid_, F::Ctx, fo_.ctx);
    fid_->add_option("--prompt-frac", fo_.prompt_frac, "share of the tokens prefilled as the prompt")->capture_default_str();
    fid_->add_option("--prompt-tokens", fo_.prompt_tokens, "explicit prompt length (overrides --prompt-frac)");
    add(fid_, F::Threads, fo_.threads);
    fid_->add_flag("--json", json_, "print JSON");

    ppl_ = sub_->add_subcommand("ppl", "perplexity of a text, sliding window of --ctx tokens, per KV policy with KL against full");
    c_.attach(ppl_);
    add(ppl_, F::File, ppl_o_.file)->required();
    add(ppl_, F::Stride, ppl_o_.stride);
    add(ppl_, F::MaxTokens, ppl_o_.max_tokens);

    niah_ = sub_->add_subcommand("niah", "needle in a haystack: length x depth grid per KV policy, heatmap (PNG, SVG)");
    c_.attach(niah_);
    add(niah_, F::Lengths, niah_o_.lengths);
    add(niah_, F::Depths, niah_o_.depths);
    add(niah_, F::DepthSpacing, niah_o_.depth_spacing);
    add(niah_, F::Haystack, niah_o_.haystack_dir);
    add(niah_, F::Needle, niah_o_.needle);
    add(niah_, F::Question, niah_o_.question);
    add(niah_, F::Answer, niah_o_.answer);
    add(niah_, F::Keywords, niah_o_.keywords)->delimiter(',');
    add(niah_, F::Match, niah_o_.match);
    add(niah_, F::Prompt, niah_o_.prompt);
    add(niah_, F::MaxNew, niah_o_.max_new);
    add(niah_, F::Threshold, niah_o_.threshold);

    pk_ = sub_->add_subcommand("passkey", "passkey retrieval (LandmarkAttention): filler, key in 1..50000, first integer");
    c_.attach(pk_);
    add(pk_, F::Lengths, pk_o_.lengths);
    add(pk_, F::Samples, pk_o_.samples);
    add(pk_, F::Depths, pk_o_.depths);
    add(pk_, F::MaxNew, pk_o_.max_new);

    ruler_ = sub_->add_subcommand("ruler", "RULER synthetic tasks: NIAH variants, variable tracking, common/frequent words");
    c_.attach(ruler_);
    add(ruler_, F::Lengths, ruler_o_.lengths);
    add(ruler_, F::Tasks, ruler_o_.tasks);
    add(ruler_, F::Samples, ruler_o_.samples);
    add(ruler_, F::Words, ruler_o_.words);
    add(ruler_, F::Haystack, ruler_o_.haystack_dir);
    add(ruler_, F::MaxNew, ruler_o_.max_new);

    lb_ = sub_->add_subcommand("longbench", "LongBench v1 JSON-lines files: official prompts, middle truncation, metrics");
    c_.attach(lb_);
    add(lb_, F::Data, lb_o_.data_dir)->required();
    add(lb_, F::Datasets, lb_o_.datasets);
    add(lb_, F::Samples, lb_o_.samples);
  }

  int run() override {
    if (fid_->parsed()) return run_fidelity();
    auto m = c_.mf.load();
    const eval::HarnessOptions h = c_.resolve();
    if (ppl_->parsed()) print_report(eval::run_ppl(*m, ppl_o_, h));
    else if (niah_->parsed()) print_report(eval::run_niah(*m, niah_o_, h));
    else if (pk_->parsed()) print_report(eval::run_passkey(*m, pk_o_, h));
    else if (ruler_->parsed()) print_report(eval::run_ruler(*m, ruler_o_, h));
    else if (lb_->parsed()) print_report(eval::run_longbench(*m, lb_o_, h));
    return 0;
  }

 private:
  int run_fidelity() {
    auto m = fid_mf_.load();
    if (!m->tokenizer) fail(ErrorKind::InvalidInput, "{}: no tokenizer to encode the text (give --tokenizer)", m->path);
    const std::string text = read_file(file_);
    const auto toks = m->tokenizer->encode(text, m->tokenizer->bos_id() >= 0);
    const auto specs = kv::parse_policy_list(fid_kv_, fid_kv_opts_);
    const auto rep = eval::run_fidelity(*m, toks, specs, fo_);
    if (json_) {
      json rows = json::array();
      for (const auto& r : rep.rows)
        rows.push_back({{"policy", r.policy}, {"kv_bytes", r.kv_bytes}, {"kv_ratio", r.kv_ratio}, {"kl_mean", r.kl_mean},
                        {"kl_max", r.kl_max}, {"top1_agreement", r.top1_agreement}, {"ppl", r.ppl},
                        {"ppl_delta", r.ppl_delta}, {"positions", r.positions}, {"ms", r.ms}});
      std::cout << dump_json(json{{"model", m->path}, {"prompt_tokens", rep.prompt_tokens},
                             {"continuation_tokens", rep.continuation_tokens}, {"results", rows}}, 2)
                << "\n";
      return 0;
    }
    std::printf("model %s: prompt %lld tokens, %lld teacher-forced continuation tokens\n", m->path.c_str(),
                static_cast<long long>(rep.prompt_tokens), static_cast<long long>(rep.continuation_tokens));
    std::printf("| %-40s | %12s | %7s | %9s | %9s | %6s | %8s | %8s |\n", "policy", "KV bytes", "x full", "KL mean",
                "KL max", "top-1", "ppl", "Δppl");
    std::printf("|%s|%s|%s|%s|%s|%s|%s|%s|\n", std::string(42, '-').c_str(), std::string(14, '-').c_str(),
                std::string(9, '-').c_str(), std::string(11, '-').c_str(), std::string(11, '-').c_str(),
                std::string(8, '-').c_str(), std::string(10, '-').c_str(), std::string(10, '-').c_str());
    for (const auto& r : rep.rows)
      std::printf("| %-40s | %12zu | %7.3f | %9.5f | %9.5f | %6.3f | %8.4f | %+8.4f |\n", r.policy.c_str(), r.kv_bytes,
                  r.kv_ratio, r.kl_mean, r.kl_max, r.top1_agreement, r.ppl, r.ppl_delta);
    return 0;
  }

  CLI::App *fid_ = nullptr, *ppl_ = nullptr, *niah_ = nullptr, *pk_ = nullptr, *ruler_ = nullptr, *lb_ = nullptr;
  // fidelity
  ModelFlags fid_mf_;
  std::string file_, fid_kv_;
  std::vector<std::string> fid_kv_opts_;
  eval::FidelityOptions fo_;
  bool json_ = false;
  // benchmark tasks (one is parsed per invocation; they share the common flags' storage)
  CommonFlags c_;
  eval::PplOptions ppl_o_;
  eval::NiahOptions niah_o_;
  eval::PasskeyOptions pk_o_;
  eval::RulerOptions ruler_o_;
  eval::LongBenchOptions lb_o_;
};

}  // namespace

std::unique_ptr<Command> make_eval_command() { return std::make_unique<EvalCmd>(); }

}  // namespace harmonia::cli
