// kv/attn_kernels.h against double-precision sums on fresh random inputs: every
// head_dim the vector path specialises and some it does not, GQA groups 1-8,
// key counts that are not multiples of the vector width; the exp's accuracy.
#include "kv/attn_kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace harmonia::kv::attn {
namespace {

std::vector<float> randn(size_t n, std::mt19937& rng, float sd = 1.0f) {
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

TEST(AttnKernels, ScoresSoftmaxValuesMatchDoubleAttention) {
  std::mt19937 rng(7);
  for (int hd : {8, 16, 24, 32, 64, 128, 256})
    for (int group : {1, 4, 8})
      for (int64_t n : {1, 15, 17, 300, 1000}) {
        const auto q = randn(static_cast<size_t>(group) * hd, rng), k = randn(static_cast<size_t>(n) * hd, rng),
                   v = randn(static_cast<size_t>(n) * hd, rng);
        const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
        std::vector<float> p(static_cast<size_t>(group) * n, -1.0f);
        scores(q.data(), group, k.data(), n, hd, scale, p.data(), n);
        for (int g = 0; g < group; ++g) softmax(p.data() + g * n, n);
        std::vector<float> o(static_cast<size_t>(group) * hd, 0.5f);  // values() accumulates
        values(p.data(), n, group, v.data(), n, hd, o.data());
        for (int g = 0; g < group; ++g) {
          std::vector<double> s(n);
          double mx = -1e300, sum = 0;
          for (int64_t t = 0; t < n; ++t) {
            double d = 0;
            for (int j = 0; j < hd; ++j) d += double(q[g * hd + j]) * k[t * hd + j];
            s[t] = d * scale;
            mx = std::max(mx, s[t]);
          }
          for (auto& x : s) sum += (x = std::exp(x - mx));
          double err = 0, ref = 0;
          for (int64_t t = 0; t < n; ++t) EXPECT_NEAR(p[g * n + t], s[t] / sum, 1e-6 + 1e-5 * s[t] / sum);
          for (int j = 0; j < hd; ++j) {
            double want = 0.5;
            for (int64_t t = 0; t < n; ++t) want += s[t] / sum * v[t * hd + j];
            err += (o[g * hd + j] - want) * (o[g * hd + j] - want);
            ref += want * want;
          }
          EXPECT_LT(std::sqrt(err / ref), 1e-5) << "hd " << hd << " group " << group << " n " << n;
        }
      }
}

TEST(AttnKernels, SoftmaxOfWideRangesAndTies) {
  // Very negative scores underflow to 0 without NaN; equal scores share the mass.
  std::vector<float> p = {0.0f, -200.0f, -1e30f, 0.0f, -87.0f, -88.0f, -20.0f, 0.0f, 0.0f, -1.0f,
                          -2.0f, -3.0f, -4.0f, -5.0f, -6.0f, -7.0f, -8.0f, -9.0f};
  std::vector<double> want(p.size());
  double sum = 0;
  for (size_t i = 0; i < p.size(); ++i) sum += (want[i] = std::exp(double(p[i])));
  softmax(p.data(), static_cast<int64_t>(p.size()));
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_FALSE(std::isnan(p[i]));
    EXPECT_NEAR(p[i], want[i] / sum, 1e-7 + 2e-6 * want[i] / sum) << i;
  }
}

#if defined(__AVX512F__)
TEST(AttnKernels, VectorExpRelativeError) {
  double worst = 0;
  for (double x = -87.0; x <= 0.0; x += 0.0137) {
    alignas(64) float in[16], out[16];
    for (int l = 0; l < 16; ++l) in[l] = static_cast<float>(x - l * 1e-4);
    _mm512_store_ps(out, exp16(_mm512_load_ps(in)));
    for (int l = 0; l < 16; ++l) worst = std::max(worst, std::abs(out[l] / std::exp(double(in[l])) - 1.0));
  }
  EXPECT_LT(worst, 2e-7);
}
#endif

}  // namespace
}  // namespace harmonia::kv::attn
