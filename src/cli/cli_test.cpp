// Bad input through the real binary: one-line errors naming the file and the
// problem, exit code 2, never a crash. CliRun again under ASan+UBSan by `make test`.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <unistd.h>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sys/wait.h>

#include "common/testing.h"
#include "common/testing_cli.h"
#include "gguf/gguf.h"
#include "model/presets.h"

using namespace harmonia;
namespace fs = std::filesystem;

namespace {

using cli_testing::CliRun;
using cli_testing::expect_clean_error;
using cli_testing::slurp;
using cli_testing::spit;

std::string tmp(const std::string& name) { return cli_testing::scratch_path("cli", name); }

CliRun run_cli(const std::string& args) { return cli_testing::run_harmonia(args, "cli"); }

std::string tiny_gguf(const std::string& name, void (*tweak)(Model&) = nullptr) {
  auto m = make_random_model(preset_config("tiny-llama"), {});
  if (tweak) tweak(*m);
  const std::string p = tmp(name);
  write_gguf(*m, p);
  return p;
}

}  // namespace

TEST(BadInput, MissingFile) {
  expect_clean_error(run_cli("generate -m /nonexistent/model.gguf -n 4"), "/nonexistent/model.gguf", "missing");
  expect_clean_error(run_cli("info -m /nonexistent/dir/"), "/nonexistent/dir/", "missing dir");
}

TEST(BadInput, InfoWithModelAndPreset) {
  expect_clean_error(run_cli("info -m " + tiny_gguf("both.gguf") + " --preset llama-110m"), "not both", "-m and --preset");
}

TEST(BadInput, WrongMagic) {
  const std::string p = tmp("wrong_magic.gguf");
  spit(p, "GGUX" + std::string(100, '\0'));
  expect_clean_error(run_cli("info -m " + p), "bad magic", "gguf magic");
  const std::string q = tmp("garbage.bin");
  spit(q, std::string(100, '\x7f'));
  expect_clean_error(run_cli("info -m " + q), q, "llama2c garbage");
}

TEST(BadInput, TruncatedGgufAtManyOffsets) {
  const std::string full = slurp(tiny_gguf("full.gguf"));
  const std::string p = tmp("cut.gguf");
  for (size_t cut : {size_t(3), size_t(10), size_t(30), size_t(200), size_t(1000), full.size() / 3, full.size() / 2,
                     full.size() - 100, full.size() - 1}) {
    spit(p, full.substr(0, cut));
    expect_clean_error(run_cli("info -m " + p), p, "cut at " + std::to_string(cut));
  }
}

TEST(BadInput, TruncatedLlama2cAtManyOffsets) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const std::string full = slurp(shared_path("models/stories260K/stories260K.bin"));
  const std::string p = tmp("cut.bin");
  for (size_t cut : {size_t(0), size_t(5), size_t(27), size_t(28), size_t(1000), full.size() / 2, full.size() - 4}) {
    spit(p, full.substr(0, cut));
    expect_clean_error(run_cli("info -m " + p), p, "llama2c cut at " + std::to_string(cut));
  }
}

TEST(BadInput, TensorOutsideFile) {
  const std::string full = slurp(tiny_gguf("outside.gguf"));
  const std::string p = tmp("outside_cut.gguf");
  spit(p, full.substr(0, full.size() - 64));
  expect_clean_error(run_cli("info -m " + p), "past the end", "tensor past end");
}

TEST(BadInput, UnknownTensorType) {
  std::string b = slurp(tiny_gguf("type.gguf"));
  // Tensor info: name, u32 n_dims, u64 ne[n_dims], u32 type. Patch the first tensor's type.
  const std::string name = "token_embd.weight";
  const size_t at = b.find(name);
  ASSERT_NE(at, std::string::npos);
  uint32_t nd;
  std::memcpy(&nd, b.data() + at + name.size(), 4);
  const size_t type_off = at + name.size() + 4 + 8 * nd;
  const uint32_t bad = 99;
  std::memcpy(b.data() + type_off, &bad, 4);
  const std::string p = tmp("type_bad.gguf");
  spit(p, b);
  expect_clean_error(run_cli("info -m " + p), "unknown type id 99", "type id");
}

TEST(BadInput, UnknownArchitecture) {
  gguf::Writer w;
  w.set_string("general.architecture", "gpt-neox");
  const std::string p = tmp("arch.gguf");
  w.write(p);
  expect_clean_error(run_cli("info -m " + p), "architecture 'gpt-neox' is not supported", "arch");
}

TEST(BadInput, ShapeDisagreesWithConfig) {
  const std::string p = tiny_gguf("shape.gguf", [](Model& m) { m.config.ffn_dim = 96; });
  expect_clean_error(run_cli("info -m " + p), "ffn_gate.weight", "ffn shape");
  const std::string q = tiny_gguf("shape2.gguf", [](Model& m) { m.config.n_kv_heads = 4; });
  expect_clean_error(run_cli("info -m " + q), "attn_k.weight", "kv heads");
}

TEST(BadInput, PromptLongerThanContext) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const std::string m = shared_path("models/stories260K/stories260K.gguf");
  const CliRun r = run_cli("generate -m " + m + " -p 'Once upon a time there was a little girl named Lily' --ctx 8 -n 4");
  expect_clean_error(r, "but the context is 8", "ctx");
  EXPECT_NE(r.err.find("prompt has "), std::string::npos);
}

TEST(BadInput, BadFlags) {
  const CliRun r = run_cli("generate --top-p 7 --preset tiny-llama");
  expect_clean_error(r, "top_p", "top-p range");
  expect_clean_error(run_cli("generate --preset nope"), "unknown preset 'nope'", "preset");
  const CliRun u = run_cli("frobnicate");
  EXPECT_EQ(u.code, 2);
  expect_clean_error(run_cli("generate -m"), "-m", "missing value");
  // Out-of-range numbers are refused by name instead of falling back to defaults.
  expect_clean_error(run_cli("bench --preset tiny-llama -t -2 -p 0 -n 2"), "--threads", "negative threads");
  expect_clean_error(run_cli("bench --preset tiny-llama -r 0"), "--reps", "zero reps");
  expect_clean_error(run_cli("bench --preset tiny-llama -d -5"), "--depth", "negative depth");
  expect_clean_error(run_cli("info --preset llama-3b --ctx -1"), "--ctx", "negative ctx");
  expect_clean_error(run_cli("simulate --synthetic reference --preempt-ms nan"), "--preempt-ms", "NaN preempt cost");
  expect_clean_error(run_cli("simulate --synthetic reference --requests 0"), "--requests", "zero requests");
  expect_clean_error(run_cli("simulate --synthetic reference --kv-tokens -1"), "--kv-tokens", "negative kv budget");
}

TEST(BadInput, CalibrateFlagsAndOutputBeforeWork) {
  const std::string m = tiny_gguf("cal.gguf");
  const std::string text = tmp("cal.txt");
  std::ofstream(text) << "once upon a time";
  expect_clean_error(run_cli("calibrate -m " + m + " --text " + text + " --coeffs 15 -o " + tmp("d.json")), "--coeffs",
                     "odd coefficient count");
  expect_clean_error(run_cli("calibrate -m " + m + " --text " + text + " --window -8 -o " + tmp("d.json")), "--window",
                     "negative window");
  const CliRun r = run_cli("calibrate -m " + m + " --text " + text + " -o /nonexistent-dir/d.json");
  expect_clean_error(r, "/nonexistent-dir/d.json", "unwritable output");
  EXPECT_FALSE(std::ifstream(tmp("d.json"))) << "no dims file is left behind by a refused run";
}

TEST(Cli, GenerateJsonFromBos) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const CliRun r = run_cli("generate -m " + shared_path("models/stories260K/stories260K.gguf") + " -n 10 --temp 0 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["prompt_tokens"], nlohmann::json::array({1}));
  EXPECT_EQ(j["tokens"], nlohmann::json::parse("[403, 407, 261, 378, 432, 383, 286, 261, 376, 298]"));
  EXPECT_EQ(j["text"].get<std::string>().rfind("Once upon a time", 0), 0u) << j["text"];
  for (const char* k : {"prefill_ms", "decode_ms", "prefill_tok_s", "decode_tok_s"}) EXPECT_TRUE(j["timings"].contains(k));
}

TEST(Cli, MakeModelInfoAndBench) {
  const std::string p = tmp("mm.gguf");
  const CliRun mk = run_cli("make-model --arch qwen2 --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 --vocab 300 --dtype q8_0 -o " + p);
  ASSERT_EQ(mk.code, 0) << mk.err;
  const CliRun info = run_cli("info -m " + p + " --json");
  ASSERT_EQ(info.code, 0) << info.err;
  const auto j = nlohmann::json::parse(info.out);
  EXPECT_EQ(j["architecture"], "qwen2");
  EXPECT_EQ(j["n_kv_heads"], 2);
  EXPECT_TRUE(j["qkv_bias"].get<bool>());
  EXPECT_TRUE(j["tensor_types"].contains("q8_0"));
  const CliRun b = run_cli("bench -m " + p + " -p 8 -n 4 -r 1 -d 0,16 --no-bandwidth --json");
  ASSERT_EQ(b.code, 0) << b.err;
  const auto bj = nlohmann::json::parse(b.out);
  ASSERT_EQ(bj["results"].size(), 2u);
  EXPECT_GT(bj["results"][1]["decode_tok_s"].get<double>(), 0.0);
}

// --device cuda where it cannot run (no CUDA in the build, or no GPU: CI): one line, exit 2.
// On a machine with a GPU the command succeeds instead, and there is nothing to check here.
TEST(BadInput, DeviceCudaWithoutGpu) {
  const std::string p = tiny_gguf("device_cuda.gguf");
  const CliRun r = run_cli("generate -m " + p + " -n 2 --temp 0 --device cuda");
  if (r.code == 0) GTEST_SKIP() << "a CUDA device is present: --device cuda ran";
  expect_clean_error(r, "--device cuda", "generate --device cuda");
  expect_clean_error(run_cli("bench -m " + p + " -p 4 -n 2 -r 1 --device cuda"), "--device cuda", "bench --device cuda");
  expect_clean_error(run_cli("generate -m " + p + " -n 2 --device tpu"), "--device must be cpu or cuda", "bad device");
  expect_clean_error(run_cli("generate -m " + p + " -n 2 --gpu-dtype f16"), "--gpu-dtype", "bad gpu dtype");
}
