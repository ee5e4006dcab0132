// The fast forward pass (batched prefill, SIMD decode, kv::Policy attention)
// against the plain fp32 reference, on random-weight models of every supported
// architecture's shape and several weight types.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "common/error.h"
#include "kv/policy.h"
#include "model/forward.h"
#include "model/presets.h"

using namespace harmonia;

namespace {

double max_rel_diff(const float* a, const float* b, int n) {
  double scale = 0, worst = 0;
  for (int i = 0; i < n; ++i) scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  for (int i = 0; i < n; ++i) worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]));
  return worst / std::max(scale, 1e-30);
}

// Prefill 7 tokens in one batch, then decode 5 one at a time; compare every
// position's logits with the reference's (which runs token by token).
void check_matches_reference(const std::string& preset, DType dtype, double tol) {
  SCOPED_TRACE(preset + " " + dtype_name(dtype));
  RandomModelOptions o;
  o.dtype = dtype;
  o.seed = 7;
  auto m = make_random_model(preset_config(preset), o);
  const int V = m->config.vocab_size;
  const std::vector<int32_t> toks = {1, 17, 200, 3, 99, 42, 5, 250, 8, 11, 64, 128};
  const int n_prefill = 7;

  ReferenceForward ref(*m, 64);
  std::vector<float> ref_logits(toks.size() * V);
  for (size_t i = 0; i < toks.size(); ++i) ref.step(toks[i], ref_logits.data() + i * V);

  Forward fw(*m);
  auto kv = kv::make_policy("full", kv_shape(m->config, 64));
  std::vector<float> got(toks.size() * V);
  fw.run(toks.data(), n_prefill, *kv, got.data(), true);
  for (size_t i = n_prefill; i < toks.size(); ++i) fw.run(&toks[i], 1, *kv, got.data() + i * V);
  for (size_t i = 0; i < toks.size(); ++i) {
    const float* g = got.data() + i * V;
    const float* r = ref_logits.data() + i * V;
    for (int j = 0; j < V; ++j) ASSERT_TRUE(std::isfinite(g[j])) << "position " << i;
    EXPECT_LE(max_rel_diff(g, r, V), tol) << "position " << i;
  }
  EXPECT_EQ(kv->n_tokens(), static_cast<int64_t>(toks.size()));
}

}  // namespace

// f32 weights: only summation order differs (BLAS vs plain loops).
TEST(Forward, LlamaMatchesReference) { check_matches_reference("tiny-llama", DType::F32, 1e-4); }
TEST(Forward, MistralMatchesReference) { check_matches_reference("tiny-mistral", DType::F32, 1e-4); }
TEST(Forward, Qwen2MatchesReference) { check_matches_reference("tiny-qwen2", DType::F32, 1e-4); }
TEST(Forward, Qwen3MatchesReference) { check_matches_reference("tiny-qwen3", DType::F32, 1e-4); }

// Quantised weights: the reference dequantises to fp32 exactly, so differences come
// from the fast kernels' arithmetic (e.g. quantised activations); 2e-2 of the logit scale.
TEST(Forward, QuantisedWeightsMatchReference) {
  for (DType t : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0})
    check_matches_reference("tiny-llama", t, 2e-2);
  // k-quants need rows that are multiples of 256.
  ModelConfig c = preset_config("tiny-llama");
  (void)c;
}

TEST(Forward, KQuantModel) {
  ModelConfig c = preset_config("tiny-llama");
  c.dim = 256;
  c.ffn_dim = 512;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 64;
  c.rope.n_rot = 64;
  for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    SCOPED_TRACE(dtype_name(t));
    RandomModelOptions o;
    o.dtype = t;
    auto m = make_random_model(c, o);
    const int V = c.vocab_size;
    ReferenceForward ref(*m, 16);
    Forward fw(*m);
    auto kv = kv::make_policy("full", kv_shape(c, 16));
    std::vector<float> r(V), g(V);
    for (int32_t tok : {1, 5, 9, 100}) {
      ref.step(tok, r.data());
      fw.run(&tok, 1, *kv, g.data());
      EXPECT_LE(max_rel_diff(g.data(), r.data(), V), 2e-2);
    }
  }
}

TEST(Forward, GgufRoundTripOfRandomModel) {
  // write_gguf + load_gguf reproduce the same logits (incl. llama3 rope_freqs and qwen2 biases).
  for (const char* preset : {"tiny-llama", "tiny-qwen2", "tiny-qwen3"}) {
    SCOPED_TRACE(preset);
    ModelConfig c = preset_config(preset);
    if (std::string(preset) == "tiny-llama") {
      c.rope.scaling = RopeConfig::Scaling::Llama3;
      c.rope.factor = 8;
      c.rope.original_ctx = 64;
    }
    auto m = make_random_model(c, {});
    const std::string p = (std::filesystem::temp_directory_path() / (std::string(preset) + "_rt.gguf")).string();
    write_gguf(*m, p);
    auto m2 = load_model(p);
    EXPECT_EQ(m2->config.qkv_bias, c.qkv_bias);
    EXPECT_EQ(m2->config.qk_norm, c.qk_norm);
    const int V = c.vocab_size;
    ReferenceForward a(*m, 300), b(*m2, 300);
    std::vector<float> la(V), lb(V);
    for (int i = 0; i < 200; ++i) {  // past original_ctx so llama3 scaling matters
      a.step(i % V, la.data());
      b.step(i % V, lb.data());
    }
    EXPECT_LE(max_rel_diff(lb.data(), la.data(), V), 1e-5);
    std::filesystem::remove(p);
  }
}

TEST(Forward, RejectsBadTokensAndOverflow) {
  auto m = make_random_model(preset_config("tiny-llama"), {});
  Forward fw(*m);
  auto kv = kv::make_policy("full", kv_shape(m->config, 4));
  std::vector<float> logits(m->config.vocab_size);
  int32_t bad = m->config.vocab_size;
  EXPECT_THROW(fw.run(&bad, 1, *kv, logits.data()), Error);
  const std::vector<int32_t> five = {1, 2, 3, 4, 5};
  EXPECT_THROW(fw.run(five.data(), 5, *kv, logits.data()), Error);
}

TEST(Forward, BatchOfSequencesMatchesEachAlone) {
  for (DType t : {DType::F32, DType::Q8_0}) {
    SCOPED_TRACE(dtype_name(t));
    RandomModelOptions o;
    o.dtype = t;
    auto m = make_random_model(preset_config("tiny-qwen2"), o);
    const int V = m->config.vocab_size;
    const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3, 4, 5}, {9}, {7, 7, 100, 31}};
    // Alone: prefill each prompt, then one decode token.
    std::vector<std::vector<float>> alone;
    for (const auto& p : prompts) {
      Forward fw(*m);
      auto kv = kv::make_policy("full", kv_shape(m->config, 32));
      std::vector<float> lg(p.size() * V), next(V);
      fw.run(p.data(), static_cast<int64_t>(p.size()), *kv, lg.data(), true);
      const int32_t t2 = 42;
      fw.run(&t2, 1, *kv, next.data());
      lg.insert(lg.end(), next.begin(), next.end());
      alone.push_back(lg);
    }
    // Batched: one step with all prompts (all logits), then one step decoding each.
    Forward fw(*m);
    std::vector<std::unique_ptr<kv::Policy>> kvs;
    std::vector<std::vector<float>> got(prompts.size());
    std::vector<SeqStep> step;
    for (size_t i = 0; i < prompts.size(); ++i) {
      kvs.push_back(kv::make_policy("full", kv_shape(m->config, 32)));
      got[i].resize((prompts[i].size() + 1) * V);
      step.push_back({prompts[i].data(), static_cast<int64_t>(prompts[i].size()), kvs[i].get(), got[i].data(), true});
    }
    fw.run_batch(step);
    const int32_t t2 = 42;
    step.clear();
    for (size_t i = 0; i < prompts.size(); ++i)
      step.push_back({&t2, 1, kvs[i].get(), got[i].data() + prompts[i].size() * V, false});
    fw.run_batch(step);
    const double tol = t == DType::F32 ? 1e-5 : 2e-2;
    for (size_t i = 0; i < prompts.size(); ++i)
      for (size_t p = 0; p <= prompts[i].size(); ++p)
        EXPECT_LE(max_rel_diff(got[i].data() + p * V, alone[i].data() + p * V, V), tol) << "seq " << i << " pos " << p;
  }
}
