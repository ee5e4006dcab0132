#pragma once
// Subcommands of the `harmonia` binary. Each attaches its flags to the app
// (one table: the flags generate --help) and runs when parsed.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

#include "engine/bench.h"
#include "model/model.h"

namespace harmonia::cli {

class Command {
 public:
  virtual ~Command() = default;
  virtual void attach(CLI::App& app) = 0;
  virtual int run() = 0;
  bool parsed() const { return sub_ && sub_->parsed(); }

 protected:
  CLI::App* sub_ = nullptr;
};

std::vector<std::unique_ptr<Command>> all_commands();
// `harmonia eval TASK` (cli/cmd_eval.cpp).
std::unique_ptr<Command> make_eval_command();
// `harmonia serve` (cli/cmd_serve.cpp) and `harmonia load` (cli/cmd_load.cpp).
std::unique_ptr<Command> make_serve_command();
std::unique_ptr<Command> make_load_command();
// `harmonia calibrate` (cli/cmd_calibrate.cpp).
std::unique_ptr<Command> make_calibrate_command();
// `harmonia simulate` (cli/cmd_simulate.cpp).
std::unique_ptr<Command> make_simulate_command();

// `harmonia replay` (cli/cmd_replay.cpp).
std::unique_ptr<Command> make_replay_command();
// `harmonia bench --profile` (cli/cmd_profile.cpp): its flags live on the bench
// subcommand; bench runs it instead of the speed test when --profile is given.
struct BenchProfileFlags;
std::shared_ptr<BenchProfileFlags> attach_bench_profile(CLI::App* bench);
bool bench_profile_requested(const BenchProfileFlags& f);
struct ModelFlags;
struct DeviceFlags;
// dev cuda: the B = 1 profile on the GPU (cuda/profile_gpu.h); --preset / --draft-preset weights are
// generated on the GPU there.
int run_bench_profile(const BenchProfileFlags& f, const ModelFlags& mf, int threads, const DeviceFlags& dev);
// Text-like token ids for prompts and contexts: the eval harness's synthetic
// story filler, tokenized by m's tokenizer (at least min_tokens of them), or
// deterministic random ids when m has no tokenizer.
std::vector<int32_t> filler_tokens(const Model& m, size_t min_tokens);

// Flags shared by every command that needs a model: -m PATH | --preset NAME
// [--dtype T] [--tokenizer PATH] [--seed S].
struct ModelFlags {
  std::string model;
  std::string preset;
  std::string dtype = "f32";
  std::string tokenizer;
  uint64_t weight_seed = 1;
  bool mmap = false;  // LoadOptions::mmap_weights
  void attach(CLI::App* sub, bool required = true);
  // Loads the file or builds the preset; throws Error with a hint when neither is given.
  std::unique_ptr<Model> load() const;
};

// A Model with the --preset's config and weight views that carry shapes and byte
// counts but no data (nothing is allocated): for the GPU's generated weights.
std::unique_ptr<Model> shape_only(const ModelFlags& mf);

// JSON text with invalid UTF-8 replaced by U+FFFD (generated text may hold any bytes).
std::string dump_json(const nlohmann::json& j, int indent = -1);
// One `bench --json` result row: the fields the CPU and GPU benches share (o.depth is the row's depth).
nlohmann::json bench_row_json(const std::string& kv, const BenchOptions& o, const BenchResult& r);
std::string join(const std::vector<std::string>& v, const char* sep = ", ");

}  // namespace harmonia::cli
