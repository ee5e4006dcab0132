// `harmonia bench --profile`, `harmonia replay --record` and `harmonia simulate`
// on the recorded traces, through the real binary. Nothing here depends on how
// fast the machine is.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sys/wait.h>
#include <unistd.h>

#include "common/testing.h"
#include "common/testing_cli.h"

namespace fs = std::filesystem;

namespace {

using harmonia::cli_testing::CliRun;
using harmonia::cli_testing::slurp;

std::string tmp(const std::string& name) { return harmonia::cli_testing::scratch_path("replay", name); }

CliRun harmonia_cmd(const std::string& args) { return harmonia::cli_testing::run_harmonia(args, "replay"); }

const std::string& model() {
  static const std::string m = harmonia::shared_path("models/stories260K/stories260K.gguf");
  return m;
}

}  // namespace

TEST(CliReplay, ProfileRecordSimulateAndCompare) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const std::string prof = tmp("profile.json"), wl = tmp("w.jsonl"), rec = tmp("rec.jsonl");
  const CliRun p = harmonia_cmd("bench --profile -m " + model() + " --spec ngram -t 1 --ctx 256 --batches 1,2 --draft-lens 0,2 "
                             "--contexts 32,128 --prefill-tokens 1,32 --profile-reps 2 -o " + prof);
  ASSERT_EQ(p.code, 0) << p.err;
  const auto pj = nlohmann::json::parse(slurp(prof));
  EXPECT_EQ(pj["format"], "harmonia.sd_profile");
  EXPECT_EQ(pj["batch"], nlohmann::json({1, 2}));

  std::ofstream(wl) << R"({"format": "harmonia.workload", "version": 1})" "\n"
                    << R"({"id": 0, "arrival_s": 0.0, "prompt_tokens": 20, "output_tokens": 12})" "\n"
                    << R"({"id": 1, "arrival_s": 0.001, "prompt_tokens": 6, "output_tokens": 30})" "\n"
                    << R"({"id": 2, "arrival_s": 0.002, "prompt": "Once upon a time", "output_tokens": 3})" "\n"
                    << R"({"id": 3, "arrival_s": 0.02, "prompt_tokens": 40, "output_tokens": 9})" "\n";
  const std::string common = "-m " + model() + " --spec ngram --draft-n 2 -t 1 -c 256 --profile " + prof;
  const CliRun r = harmonia_cmd("replay " + common + " --workload " + wl + " --sched fcfs,laps-sd --record " + rec + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["points"][0]["results"].size(), 2u);
  for (const auto& row : j["points"][0]["results"]) {
    EXPECT_EQ(row["requests"], 4);
    EXPECT_GE(row["busy_wall_s"].get<double>(), 0.0);
  }
  EXPECT_EQ(j["points"][0]["results"][1]["policy"], "laps-sd");

  // The recorded traces reload in the simulator.
  const std::string text = slurp(rec);
  EXPECT_NE(text.find("\"first_step\":\"prefill\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"drafted\""), std::string::npos);
  const CliRun s = harmonia_cmd("simulate --workload " + rec + " --profile " + prof + " --sched fcfs,srpt-oracle --json");
  ASSERT_EQ(s.code, 0) << s.err;
  const auto sj = nlohmann::json::parse(s.out);
  EXPECT_EQ(sj["draft_len"], 2);
  EXPECT_EQ(sj["points"][0]["results"][1]["requests"], 4);

  // Replaying the recorded workload at a load, next to its simulation.
  const CliRun c = harmonia_cmd("replay " + common + " --workload " + rec + " --sched fcfs,srpt-oracle --loads 0.5 --compare");
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_NE(c.out.find("(load 0.50)"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("sim/real"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("| srpt-oracle "), std::string::npos) << c.out;
}

// --draft-preset: a random-weight draft model of a preset shape (same vocabulary as the target preset).
TEST(CliReplay, ProfileWithDraftPreset) {
  const std::string prof = tmp("pp.json");
  const CliRun p = harmonia_cmd("bench --profile --preset tiny-llama --draft-preset tiny-llama -t 1 --batches 1 "
                                "--draft-lens 0,2 --contexts 16,32 --prefill-tokens 4,16 --profile-reps 1 -o " + prof);
  ASSERT_EQ(p.code, 0) << p.err;
  const auto j = nlohmann::json::parse(std::ifstream(prof));
  EXPECT_NE(j.at("draft").get<std::string>().find("tiny-llama"), std::string::npos) << j.dump();
  EXPECT_GT(j.at("draft_ms_per_token").at(0).at(1).get<double>(), 0.0) << j.dump();
}

TEST(CliReplay, BadInput) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const std::string wl = tmp("plain.jsonl"), prof = tmp("p.json");
  std::ofstream(wl) << R"({"arrival_s": 0, "prompt_tokens": 4, "output_tokens": 3})" "\n";
  const CliRun none = harmonia_cmd("replay -m " + model() + " --workload " + wl);
  EXPECT_EQ(none.code, 2);
  EXPECT_NE(none.err.find("--profile"), std::string::npos) << none.err;
  const CliRun w = harmonia_cmd("simulate --synthetic reference:requests=3 --write-profile " + prof + " --sched fcfs");
  ASSERT_EQ(w.code, 0) << w.err;
  const CliRun c = harmonia_cmd("replay -m " + model() + " --spec ngram --workload " + wl + " --profile " + prof + " --compare");
  EXPECT_EQ(c.code, 2);
  EXPECT_NE(c.err.find("need an acceptance trace for every request"), std::string::npos) << c.err;
  const CliRun b = harmonia_cmd("bench --profile -m " + model() + " --spec ngram");
  EXPECT_EQ(b.code, 2);
  EXPECT_NE(b.err.find("needs -o FILE"), std::string::npos) << b.err;
  const CliRun two = harmonia_cmd("bench --profile -m " + model() + " --draft " + model() +
                                  " --draft-preset tiny-llama -o " + tmp("unused.json"));
  EXPECT_EQ(two.code, 2);
  EXPECT_NE(two.err.find("either --draft MODEL or --draft-preset"), std::string::npos) << two.err;
  // Plain-bench flags are refused with --profile instead of being ignored.
  for (const std::string flag : {"--kv streaming", "-d 64", "--json"}) {
    const CliRun f = harmonia_cmd("bench --profile -m " + model() + " --spec ngram -o " + tmp("unused.json") + " " + flag);
    EXPECT_EQ(f.code, 2) << flag;
    EXPECT_NE(f.err.find("does not apply to the cost profile"), std::string::npos) << flag << ": " << f.err;
  }
  // A prompt far beyond the context is refused before anything is allocated; an arrival a
  // century away is refused instead of waited for (replay runs in real time).
  const std::string huge = tmp("huge.jsonl"), late = tmp("late.jsonl");
  std::ofstream(huge) << R"({"arrival_s": 0, "prompt_tokens": 1e12, "output_tokens": 3})" "\n";
  const CliRun h = harmonia_cmd("replay -m " + model() + " --workload " + huge + " --profile " + prof);
  EXPECT_EQ(h.code, 2) << h.err;
  EXPECT_NE(h.err.find("but the context is"), std::string::npos) << h.err;
  std::ofstream(late) << R"({"arrival_s": 1e308, "prompt_tokens": 4, "output_tokens": 3})" "\n";
  const CliRun l = harmonia_cmd("replay -m " + model() + " --workload " + late + " --profile " + prof);
  EXPECT_EQ(l.code, 2) << l.err;
  EXPECT_NE(l.err.find("real time"), std::string::npos) << l.err;
  // --record naming the workload itself would overwrite it: refused, the file kept.
  const CliRun r = harmonia_cmd("replay -m " + model() + " --workload " + wl + " --profile " + prof + " --record " + wl);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("is the --workload file itself"), std::string::npos) << r.err;
  std::ifstream kept(wl);
  std::string line;
  std::getline(kept, line);
  EXPECT_NE(line.find("output_tokens"), std::string::npos) << line;
}
