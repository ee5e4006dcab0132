// `harmonia simulate` through the real binary: a small sweep, plots, and bad
// input giving one-line errors with exit code 2.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sys/wait.h>
#include <unistd.h>

#include "common/testing_cli.h"

namespace fs = std::filesystem;

namespace {

using harmonia::cli_testing::CliRun;

using harmonia::cli_testing::slurp;

std::string tmp(const std::string& name) { return harmonia::cli_testing::scratch_path("sim", name); }

CliRun simulate(const std::string& args) { return harmonia::cli_testing::run_harmonia("simulate " + args, "sim"); }

void expect_error(const CliRun& r, const std::string& needle) { harmonia::cli_testing::expect_clean_error(r, needle); }

}  // namespace

TEST(CliSimulate, SweepJsonAndPlots) {
  const std::string svg = tmp("plot.svg"), png = tmp("plot.png"), wl = tmp("w.jsonl");
  const CliRun r = simulate("--synthetic reference:requests=60:seed=2 --rates 0.3,0.6 --sched fcfs,laps-sd,mlfq --json "
                         "--plot " + svg + " --plot " + png + " --write-workload " + wl);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["points"].size(), 2u);
  ASSERT_EQ(j["points"][0]["results"].size(), 3u);
  EXPECT_EQ(j["points"][0]["results"][1]["policy"], "laps-sd");
  EXPECT_EQ(j["points"][1]["results"][0]["requests"], 60);
  EXPECT_NE(slurp(svg).find("<svg"), std::string::npos);
  EXPECT_EQ(slurp(png).substr(0, 4), "\x89PNG");
  // The saved workload replays to the same first-point results.
  const CliRun again = simulate("--workload " + wl + " --sched fcfs,laps-sd,mlfq --json");
  ASSERT_EQ(again.code, 0) << again.err;
  const auto k = nlohmann::json::parse(again.out);
  EXPECT_DOUBLE_EQ(k["points"][0]["results"][1]["mean_latency_s"].get<double>(),
                   j["points"][0]["results"][1]["mean_latency_s"].get<double>());
}

TEST(CliSimulate, TableOutput) {
  const CliRun r = simulate("--synthetic single:requests=30:output=50 --loads 0.5 --seeds 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("| laps-sd "), std::string::npos);
  EXPECT_NE(r.out.find("| srpt-oracle "), std::string::npos);
  EXPECT_NE(r.out.find("(load 0.50)"), std::string::npos);
}

TEST(CliSimulate, BadInput) {
  expect_error(simulate("--workload /nonexistent/w.jsonl"), "/nonexistent/w.jsonl");
  const std::string bad = tmp("bad.jsonl");
  std::ofstream(bad) << "{\"arrival_s\": 0, \"prompt_tokens\": 4, \"output_tokens\": 3}\n{\"arrival_s\": 1, \"output_tokens\": 3}\n";
  expect_error(simulate("--workload " + bad), bad + ":2: give prompt_tokens or prompt");
  expect_error(simulate("--synthetic reference --sched fcfs,lifo"), "unknown scheduling policy 'lifo'");
  expect_error(simulate("--synthetic reference --sched laps-sd:windw=2"), "has no option 'windw'");
  expect_error(simulate("--rates 1"), "give exactly one of --workload FILE and --synthetic SPEC");
  expect_error(simulate("--synthetic reference --profile /nonexistent/p.json"), "/nonexistent/p.json");
  expect_error(simulate("--synthetic reference:requests=5 --rates 1 --plot x.pdf"), "must end in .svg or .png");
}
