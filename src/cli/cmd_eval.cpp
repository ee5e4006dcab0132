// `harmonia eval TASK`: evaluation subcommands.
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "common/error.h"
#include "common/mapped_file.h"
#include "eval/fidelity.h"
#include "kv/spec.h"

namespace harmonia::cli {

using nlohmann::json;

namespace {

// ---- eval ---------------------------------------------------------------------------

class EvalCmd : public Command {
 public:
  void attach(CLI::App& app) override {
    sub_ = app.add_subcommand("eval", "evaluation: KV fidelity against the uncompressed model");
    sub_->require_subcommand(1);
    fid_ = sub_->add_subcommand("fidelity", "same text through full and each KV policy (teacher forced): KL, top-1, ppl");
    mf_.attach(fid_);
    fid_->add_option("-f,--file", file_, "text file")->required();
    fid_->add_option("--kv", kv_, "policies, comma list with inline options (name:k=v:k=v)")->required();
    fid_->add_option("--kv-opt", kv_opts_, "option key=value for every listed policy (repeatable)");
    fid_->add_option("-c,--ctx", fo_.ctx, "tokens of the text to use (default: the model's context)");
    fid_->add_option("--prompt-frac", fo_.prompt_frac, "share of the tokens prefilled as the prompt")->capture_default_str();
    fid_->add_option("--prompt-tokens", fo_.prompt_tokens, "explicit prompt length (overrides --prompt-frac)");
    fid_->add_option("-t,--threads", fo_.threads, "threads");
    fid_->add_flag("--json", json_, "print JSON");
  }
  int run() override {
    auto m = mf_.load();
    if (!m->tokenizer) fail(ErrorKind::InvalidInput, "{}: no tokenizer to encode the text (give --tokenizer)", m->path);
    const std::string text = read_file(file_);
    const auto toks = m->tokenizer->encode(text, m->tokenizer->bos_id() >= 0);
    const auto specs = kv::parse_policy_list(kv_, kv_opts_);
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

 private:
  CLI::App* fid_ = nullptr;
  ModelFlags mf_;
  std::string file_, kv_;
  std::vector<std::string> kv_opts_;
  eval::FidelityOptions fo_;
  bool json_ = false;
};


}  // namespace

std::unique_ptr<Command> make_eval_command() { return std::make_unique<EvalCmd>(); }

}  // namespace harmonia::cli
