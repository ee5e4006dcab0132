// End to end through the real binary on stories260K, small settings: every
// task writes its samples, results and summaries (niah also the heatmap); the
// same seed gives byte-identical samples files; an interrupted run resumes
// without redoing samples. All of it runs in a few seconds (-t 1).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/mapped_file.h"
#include "common/testing.h"
#include "common/testing_cli.h"

using namespace harmonia;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* kModelRel = "models/stories260K/stories260K.gguf";

std::string model() { return shared_path(kModelRel); }
std::string source(const std::string& rel) { return (fs::path(__FILE__).parent_path().parent_path().parent_path() / rel).string(); }

std::string outdir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("harmonia_e2e_" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  return d.string();
}

using cli_testing::CliRun;

CliRun run(const std::string& args) { return cli_testing::run_harmonia(args, "e2e"); }

std::vector<std::string> lines(const std::string& path) {
  std::vector<std::string> v;
  std::ifstream f(path);
  for (std::string l; std::getline(f, l);) v.push_back(l);
  return v;
}

// Every task's standard files, and one record per (sample, policy).
void expect_files(const std::string& dir, const std::string& task, size_t policies) {
  for (const char* suf : {"samples.jsonl", "results.jsonl", "summary.md", "summary.json"})
    EXPECT_TRUE(fs::exists(dir + "/" + task + "." + suf)) << task << "." << suf;
  const auto samples = lines(dir + "/" + task + ".samples.jsonl");
  const auto results = lines(dir + "/" + task + ".results.jsonl");
  EXPECT_EQ(results.size(), samples.size() * policies) << task;
  std::set<std::pair<std::string, std::string>> keys;
  for (const auto& l : results) {
    const json r = json::parse(l);
    EXPECT_TRUE(keys.insert({r["policy"].get<std::string>(), r["id"].get<std::string>()}).second)
        << "duplicate " << l.substr(0, 80);
    for (const char* f : {"task", "policy", "id", "length", "prompt_tokens", "kv_bytes"}) EXPECT_TRUE(r.contains(f)) << f;
    if (task != "ppl") {
      for (const char* f : {"depth", "output", "expected", "score", "prefill_ms", "decode_ms"}) EXPECT_TRUE(r.contains(f)) << f;
    }
  }
  EXPECT_TRUE(json::parse(read_file(dir + "/" + task + ".summary.json")).is_object());
}

const std::string kCommon = " --no-progress -t 1 --kv full,streaming:window=32";

}  // namespace

TEST(EvalE2E, NiahHeatmapAndResume) {
  HARMONIA_REQUIRE_SHARED(kModelRel);
  const std::string dir = outdir("niah");
  const std::string args = "eval niah -m " + model() + " --ctx 512 --lengths 192,256 --depths 0,50,100 --max-new 16 -o " +
                           dir + kCommon;
  CliRun r = run(args);
  ASSERT_EQ(r.code, 0) << r.err;
  expect_files(dir, "niah", 2);
  EXPECT_NE(r.out.find("| full |"), std::string::npos) << r.out;
  const std::string png = read_file(dir + "/niah.heatmap.png");
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_NE(read_file(dir + "/niah.heatmap.svg").find("<svg"), std::string::npos);

  // Kill simulation: drop the last 3 records and leave a torn half line, as a
  // killed writer would; the rerun computes exactly those 3.
  const std::string res = dir + "/niah.results.jsonl";
  auto all = lines(res);
  ASSERT_EQ(all.size(), 12u);
  {
    std::ofstream f(res, std::ios::trunc);
    for (size_t i = 0; i + 3 < all.size(); ++i) f << all[i] << "\n";
    f << all[9].substr(0, 40);
  }
  r = run(args);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto again = lines(res);
  ASSERT_EQ(again.size(), 12u);
  for (size_t i = 0; i < 9; ++i) EXPECT_EQ(again[i], all[i]) << "record " << i << " was redone";
  expect_files(dir, "niah", 2);
}

TEST(EvalE2E, PasskeySameSeedSameSamples) {
  HARMONIA_REQUIRE_SHARED(kModelRel);
  const std::string a = outdir("pk_a"), b = outdir("pk_b"), c = outdir("pk_c");
  const std::string base = "eval passkey -m " + model() + " --ctx 512 --lengths 256,384 --samples 2" + kCommon;
  ASSERT_EQ(run(base + " --seed 3 -o " + a).code, 0);
  ASSERT_EQ(run(base + " --seed 3 -o " + b).code, 0);
  ASSERT_EQ(run(base + " --seed 4 -o " + c).code, 0);
  expect_files(a, "passkey", 2);
  EXPECT_EQ(read_file(a + "/passkey.samples.jsonl"), read_file(b + "/passkey.samples.jsonl"));
  EXPECT_NE(read_file(a + "/passkey.samples.jsonl"), read_file(c + "/passkey.samples.jsonl"));
  // Greedy decoding: the outputs match too (timings differ).
  const auto ra = lines(a + "/passkey.results.jsonl"), rb = lines(b + "/passkey.results.jsonl");
  ASSERT_EQ(ra.size(), rb.size());
  for (size_t i = 0; i < ra.size(); ++i) EXPECT_EQ(json::parse(ra[i])["output"], json::parse(rb[i])["output"]);
  // Other settings into the same folder: refused, naming the file.
  const CliRun clash = run(base + " --seed 4 -o " + a);
  EXPECT_EQ(clash.code, 2);
  EXPECT_NE(clash.err.find("passkey.samples.jsonl"), std::string::npos) << clash.err;
}

TEST(EvalE2E, KilledRunResumes) {
  HARMONIA_REQUIRE_SHARED(kModelRel);
  const std::string dir = outdir("kill");
  const std::string args = "eval passkey -m " + model() + " --ctx 512 --lengths 384 --samples 8 -o " + dir + kCommon;
  const std::string res = dir + "/passkey.results.jsonl";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const int devnull = ::open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    execl("/bin/sh", "sh", "-c", ("exec " + cli_testing::harmonia_bin() + " " + args).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // SIGKILL as soon as the first records are on disk.
  bool killed = false;
  for (int i = 0; i < 20000; ++i) {
    std::error_code ec;
    if (fs::exists(res, ec) && fs::file_size(res, ec) > 0) {
      killed = ::kill(pid, SIGKILL) == 0;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  int st = 0;
  waitpid(pid, &st, 0);
  const size_t before = lines(res).size();
  const CliRun r = run(args);
  ASSERT_EQ(r.code, 0) << r.err;
  expect_files(dir, "passkey", 2);  // every (sample, policy) once: nothing redone, nothing missing
  if (killed && WIFSIGNALED(st)) {
    EXPECT_LT(before, 16u);
    std::cerr << "[ killed after " << before << " records; resumed ]\n";
  }
}

TEST(EvalE2E, RulerLongBenchPpl) {
  HARMONIA_REQUIRE_SHARED(kModelRel);
  const std::string dir = outdir("rest");
  CliRun r = run("eval ruler -m " + model() + " --ctx 512 --lengths 512 --tasks niah_single_1,niah_single_2,fwe,vt --samples 1 "
              "--max-new 32 -o " + dir + kCommon);
  ASSERT_EQ(r.code, 0) << r.err;
  expect_files(dir, "ruler", 2);
  EXPECT_NE(r.out.find("n/a (needs"), std::string::npos) << r.out;  // vt does not fit 512 tokens with its one-shot example

  r = run("eval longbench -m " + model() + " --ctx 512 --data " + source("src/eval/testdata/longbench") + " -o " + dir + kCommon);
  ASSERT_EQ(r.code, 0) << r.err;
  expect_files(dir, "longbench", 2);
  EXPECT_NE(r.out.find("Avg (mean of categories)"), std::string::npos) << r.out;

  r = run("eval ppl -m " + model() + " --ctx 128 --stride 64 --max-tokens 400 -f " + source("tests/data/tinystory.txt") +
          " -o " + dir + kCommon);
  ASSERT_EQ(r.code, 0) << r.err;
  expect_files(dir, "ppl", 2);
  const json s = json::parse(read_file(dir + "/ppl.summary.json"));
  ASSERT_EQ(s["results"].size(), 2u);
  EXPECT_EQ(s["results"][0]["policy"], "full");
  EXPECT_DOUBLE_EQ(s["results"][0]["kl_mean"].get<double>(), 0.0);
  EXPECT_EQ(s["results"][0]["scored_tokens"], 399);
  EXPECT_GT(s["results"][1]["kl_mean"].get<double>(), 0.0);  // the window of 32 drops context
}

TEST(EvalE2E, BadInputIsOneLine) {
  HARMONIA_REQUIRE_SHARED(kModelRel);
  const CliRun r = run("eval niah -m " + model() + " --ctx 512 --lengths 1024 -o " + outdir("bad") + " --no-progress");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--lengths: 1024 is outside [16, 512]"), std::string::npos) << r.err;
  const CliRun r2 = run("eval longbench -m " + model() + " --data /nonexistent/lb -o " + outdir("bad2"));
  EXPECT_EQ(r2.code, 2);
  EXPECT_NE(r2.err.find("/nonexistent/lb"), std::string::npos) << r2.err;
  // A bad policy fails before any file is written.
  const std::string d3 = outdir("bad3");
  const CliRun r3 = run("eval passkey -m " + model() + " --ctx 512 --lengths 256 --samples 1 --kv full,nosuch -o " + d3);
  EXPECT_EQ(r3.code, 2);
  EXPECT_NE(r3.err.find("unknown kv policy 'nosuch'"), std::string::npos) << r3.err;
  EXPECT_FALSE(fs::exists(d3 + "/passkey.samples.jsonl"));
}
