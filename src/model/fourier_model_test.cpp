// The `fourier` KV policy (src/kv/fourier.h) on a real model, stories260K
// (5 layers, 8 q / 4 kv heads, head_dim 8, interleaved RoPE).
// NOTE: these belong in src/kv/fourier_model_test.cpp once test_kv links
// harmonia_model; they live here because test_model already links everything.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "common/testing.h"
#include "kv/fourier.h"
#include "kv/policy.h"
#include "model/forward.h"
#include "model/model.h"

using namespace harmonia;

namespace {

const char* kModel = "models/stories260K/stories260K.gguf";

int32_t argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// A natural prompt: the model's own greedy continuation of BOS.
std::vector<int32_t> story(const Model& m, int n) {
  auto kv = kv::make_policy("full", kv_shape(m.config, 512));
  Forward fw(m);
  std::vector<float> logits(m.config.vocab_size);
  std::vector<int32_t> toks = {1};
  fw.run(toks.data(), 1, *kv, logits.data());
  while (static_cast<int>(toks.size()) < n) {
    toks.push_back(argmax(logits));
    fw.run(&toks.back(), 1, *kv, logits.data());
  }
  return toks;
}

// Prefill in chunks; returns the last logits.
std::vector<float> prefill(Forward& fw, kv::Policy& kv, const std::vector<int32_t>& p, int chunk, int max_new) {
  kv.plan(static_cast<int64_t>(p.size()), max_new);
  std::vector<float> logits(fw.model().config.vocab_size);
  for (size_t i = 0; i < p.size(); i += chunk) {
    const int64_t n = std::min<int64_t>(chunk, static_cast<int64_t>(p.size() - i));
    fw.run(p.data() + i, n, kv, logits.data());
  }
  return logits;
}

double kl(const std::vector<float>& p_logits, const std::vector<float>& q_logits) {
  auto softmax = [](const std::vector<float>& l) {
    const float mx = *std::max_element(l.begin(), l.end());
    std::vector<double> p(l.size());
    double s = 0;
    for (size_t i = 0; i < l.size(); ++i) s += p[i] = std::exp(static_cast<double>(l[i]) - mx);
    for (double& x : p) x /= s;
    return p;
  };
  const auto p = softmax(p_logits), q = softmax(q_logits);
  double d = 0;
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] > 0) d += p[i] * std::log(p[i] / std::max(q[i], 1e-300));
  return d;
}

}  // namespace

// O12: the first generated token (prefill logits) equals full's bit for bit,
// with chunked prefill, although the cache compresses right after the prompt.
// Then teacher-forced decoding reports top-1 agreement and KL to full. The
// built-in dims compress 50-95 % of this tiny model's K/V dims, whose middle
// signals are far from band-limited, so M = 32 is lossy; M = 256 (N = 128 of
// the 152 frequencies of T = 304) must be much closer.
TEST(FourierModel, O12FirstTokenExactThenQuality) {
  HARMONIA_REQUIRE_SHARED(kModel);
  const auto m = load_model(shared_path(kModel));
  const auto prompt = story(*m, 300);
  const int steps = 40;
  struct Run {
    const char* compat;
    const char* coeffs;
    double kl_mean = 0;
  };
  std::vector<Run> runs = {{"none", "32"}, {"reference", "32"}, {"none", "256"}};
  for (Run& r : runs) {
    Forward fw(*m);
    auto full = kv::make_policy("full", kv_shape(m->config, 512));
    auto four = kv::make_policy("fourier", kv_shape(m->config, 512),
                                {{"sink", "4"}, {"window", "32"}, {"coeffs", r.coeffs}, {"rope", "interleaved"},
                                 {"compat", r.compat}});
    auto lf = prefill(fw, *full, prompt, 64, steps);
    auto lq = prefill(fw, *four, prompt, 64, steps);
    ASSERT_EQ(std::memcmp(lf.data(), lq.data(), lf.size() * sizeof(float)), 0) << "compat=" << r.compat;
    auto* fc = dynamic_cast<kv::FourierCache*>(four.get());
    ASSERT_NE(fc, nullptr);
    ASSERT_TRUE(fc->compressed());
    EXPECT_EQ(fc->segments(0).middle, 300 - 36);
    int agree = 0;
    double kl_max = 0;
    for (int t = 0; t < steps; ++t) {
      const int32_t tok = argmax(lf);  // teacher forcing with full's greedy token
      agree += argmax(lq) == tok;
      const double d = kl(lf, lq);
      ASSERT_TRUE(std::isfinite(d));
      r.kl_mean += d / steps;
      kl_max = std::max(kl_max, d);
      fw.run(&tok, 1, *full, lf.data());
      fw.run(&tok, 1, *four, lq.data());
    }
    std::printf("[ quality ] stories260K, prompt 300, sink 4, window 32, M %s, compat=%s: top-1 agreement %d/%d, "
                "KL mean %.4f max %.4f, KV %zu vs %zu bytes\n",
                r.coeffs, r.compat, agree, steps, r.kl_mean, kl_max, four->total_bytes(), full->total_bytes());
  }
  EXPECT_LT(runs[2].kl_mean, 0.25 * runs[0].kl_mean);
  EXPECT_LT(runs[2].kl_mean, 0.2);
}

// Spectral-domain and direct attention give the same logits on the real model.
TEST(FourierModel, SpectralEqualsDirectOnModel) {
  HARMONIA_REQUIRE_SHARED(kModel);
  const auto m = load_model(shared_path(kModel));
  const auto prompt = story(*m, 200);
  Forward fw(*m);
  const kv::Options base = {{"sink", "4"}, {"window", "32"}, {"coeffs", "32"}, {"rope", "interleaved"}};
  kv::Options od = base;
  od["attention"] = "direct";
  auto a = kv::make_policy("fourier", kv_shape(m->config, 512), base);
  auto b = kv::make_policy("fourier", kv_shape(m->config, 512), od);
  auto la = prefill(fw, *a, prompt, 200, 20);
  auto lb = prefill(fw, *b, prompt, 200, 20);
  double worst = 0;
  for (int t = 0; t < 20; ++t) {
    const int32_t tok = argmax(la);
    fw.run(&tok, 1, *a, la.data());
    fw.run(&tok, 1, *b, lb.data());
    for (size_t i = 0; i < la.size(); ++i)
      worst = std::max(worst, std::abs(static_cast<double>(la[i]) - lb[i]) / std::max(1.0, std::abs(1.0 * lb[i])));
  }
  EXPECT_LT(worst, 1e-4);
}

// With no compressed dims `fourier` is `full`, bit for bit, over a whole greedy generation.
TEST(FourierModel, NoCompressedDimsEqualsFullOverGeneration) {
  HARMONIA_REQUIRE_SHARED(kModel);
  const auto m = load_model(shared_path(kModel));
  const auto prompt = story(*m, 100);
  Forward fw(*m);
  auto full = kv::make_policy("full", kv_shape(m->config, 512));
  auto four = kv::make_policy("fourier", kv_shape(m->config, 512),
                              {{"sink", "4"}, {"window", "16"}, {"coeffs", "16"}, {"dims", "none"}});
  auto lf = prefill(fw, *full, prompt, 32, 150);
  auto lq = prefill(fw, *four, prompt, 32, 150);
  for (int t = 0; t < 150; ++t) {
    ASSERT_EQ(std::memcmp(lf.data(), lq.data(), lf.size() * sizeof(float)), 0) << "step " << t;
    const int32_t tf = argmax(lf), tq = argmax(lq);
    ASSERT_EQ(tf, tq);
    fw.run(&tf, 1, *full, lf.data());
    fw.run(&tq, 1, *four, lq.data());
  }
}
