// Golden outputs of real pretrained checkpoints against references computed
// independently (numpy) and shipped in shared/models/*/reference_greedy.json.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "common/testing.h"
#include "kv/policy.h"
#include "model/forward.h"
#include "model/model.h"

using namespace harmonia;
using nlohmann::json;

namespace {

json read_json(const std::string& p) {
  std::ifstream f(p);
  return json::parse(f);
}

int32_t argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// |a - b| <= rel * max(1, |b|) elementwise: relative for large logits, absolute near 0.
void expect_close(const std::vector<float>& a, const json& ref, double rel, const std::string& what) {
  ASSERT_EQ(a.size(), ref.size()) << what;
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double b = ref[i].get<double>();
    worst = std::max(worst, std::abs(a[i] - b) / std::max(1.0, std::abs(b)));
  }
  EXPECT_LE(worst, rel) << what;
}

// Greedy decode with the fast path: prompt (prefill in one batch), then n steps.
std::vector<int32_t> greedy_fast(const Model& m, const std::vector<int32_t>& prompt, int n,
                                 std::vector<std::vector<float>>* prompt_logits = nullptr) {
  auto kv = kv::make_policy("full", kv_shape(m.config, 1024));
  Forward fw(m);
  const int V = m.config.vocab_size;
  std::vector<float> all(prompt.size() * V);
  fw.run(prompt.data(), static_cast<int64_t>(prompt.size()), *kv, all.data(), true);
  if (prompt_logits)
    for (size_t i = 0; i < prompt.size(); ++i) prompt_logits->emplace_back(all.begin() + i * V, all.begin() + (i + 1) * V);
  std::vector<float> logits(all.end() - V, all.end());
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    int32_t t = argmax(logits);
    out.push_back(t);
    if (i + 1 < n) fw.run(&t, 1, *kv, logits.data());
  }
  return out;
}

void check_stories260k(const std::string& file) {
  auto m = load_model(shared_path(file));
  const json ref = read_json(shared_path("models/stories260K/reference_greedy.json"));
  const auto want = ref["generated_token_ids"].get<std::vector<int32_t>>();
  ASSERT_EQ(want.size(), 200u);
  const int V = m->config.vocab_size;
  ASSERT_EQ(V, 512);

  // Reference path: token by token from BOS, logits at positions 0..3, 200 ids.
  ReferenceForward ref_fw(*m, 512);
  std::vector<float> logits(V);
  std::vector<int32_t> got;
  int32_t tok = 1;
  for (int i = 0; i < 200; ++i) {
    ref_fw.step(tok, logits.data());
    if (i < 4) expect_close(logits, ref["logits_first_positions"][std::to_string(i)], 1e-4, "ref logits pos " + std::to_string(i));
    tok = argmax(logits);
    got.push_back(tok);
  }
  EXPECT_EQ(got, want) << "reference path";

  // Fast path: logits at positions 0..3 via a batched prefill of BOS + 3 reference ids.
  std::vector<std::vector<float>> pl;
  auto fast = greedy_fast(*m, {1, want[0], want[1], want[2]}, 1, &pl);
  for (int i = 0; i < 4; ++i)
    expect_close(pl[i], ref["logits_first_positions"][std::to_string(i)], 1e-4, "fast logits pos " + std::to_string(i));
  EXPECT_EQ(greedy_fast(*m, {1}, 200), want) << "fast path";
}

}  // namespace

TEST(Golden, Stories260KLlama2c) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  check_stories260k("models/stories260K/stories260K.bin");
}

TEST(Golden, Stories260KGguf) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  check_stories260k("models/stories260K/stories260K.gguf");
}

TEST(Golden, TinyStories656KSafetensors) {
  HARMONIA_REQUIRE_SHARED("models/TinyStories-656K/model.safetensors");
  auto m = load_model(shared_path("models/TinyStories-656K"));
  const json ref = read_json(shared_path("models/TinyStories-656K/reference_greedy.json"));
  const auto prompt = ref["prompt_ids"].get<std::vector<int32_t>>();
  ASSERT_NE(m->tokenizer, nullptr);
  EXPECT_EQ(m->tokenizer->encode(ref["prompt_text"].get<std::string>(), true), prompt);
  const auto& r = ref["f32_safetensors"];
  const auto want = r["generated_ids"].get<std::vector<int32_t>>();
  std::vector<std::vector<float>> pl;
  EXPECT_EQ(greedy_fast(*m, prompt, static_cast<int>(want.size()), &pl), want);
  for (size_t i = 0; i < prompt.size(); ++i)
    expect_close(pl[i], r["logits_at_prompt_positions"][std::to_string(i)], 1e-4, "pos " + std::to_string(i));
  // The reference path agrees too.
  ReferenceForward rf(*m, 512);
  std::vector<float> logits(m->config.vocab_size);
  for (size_t i = 0; i < prompt.size(); ++i) {
    rf.step(prompt[i], logits.data());
    expect_close(logits, r["logits_at_prompt_positions"][std::to_string(i)], 1e-4, "ref pos " + std::to_string(i));
  }
}

TEST(Golden, TinyStories656KQ8_0Gguf) {
  HARMONIA_REQUIRE_SHARED("models/TinyStories-656K/TinyStories-656K-Q8_0.gguf");
  auto m = load_model(shared_path("models/TinyStories-656K/TinyStories-656K-Q8_0.gguf"));
  const json ref = read_json(shared_path("models/TinyStories-656K/reference_greedy.json"));
  const auto prompt = ref["prompt_ids"].get<std::vector<int32_t>>();
  const auto want = ref["q8_0_gguf"]["generated_ids"].get<std::vector<int32_t>>();
  ASSERT_NE(m->tokenizer, nullptr);
  EXPECT_EQ(m->tokenizer->encode(ref["prompt_text"].get<std::string>(), true), prompt);
  EXPECT_EQ(greedy_fast(*m, prompt, static_cast<int>(want.size())), want);
}
