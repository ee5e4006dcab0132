#include "model/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"

namespace harmonia {
namespace {

// ---------------------------------------------------------------------------
// Reference tables, written again from transformers' modeling_rope_utils.py
// (whole-vector style, as the Python reads), independently of rope.cpp.

const double kPi = std::numbers::pi;

std::vector<double> ref_default(int dim, double base) {
  // inv_freq = 1 / base ** (arange(0, dim, 2) / dim)
  std::vector<double> out;
  for (int j = 0; j < dim; j += 2) out.push_back(1.0 / std::pow(base, double(j) / dim));
  return out;
}

std::vector<double> ref_linear(int dim, double base, double factor) {
  auto inv = ref_default(dim, base);
  for (auto& v : inv) v = v / factor;
  return inv;
}

std::vector<double> ref_llama3(int dim, double base, double factor, double low_freq_factor,
                               double high_freq_factor, double old_context_len) {
  auto inv_freq = ref_default(dim, base);
  double low_freq_wavelen = old_context_len / low_freq_factor;
  double high_freq_wavelen = old_context_len / high_freq_factor;
  std::vector<double> out(inv_freq.size());
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    double wavelen = 2 * kPi / inv_freq[i];
    // inv_freq_llama = where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    double inv_freq_llama = wavelen > low_freq_wavelen ? inv_freq[i] / factor : inv_freq[i];
    double smooth_factor =
        (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
    double smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama;
    bool is_medium_freq = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    out[i] = is_medium_freq ? smoothed : inv_freq_llama;
  }
  return out;
}

double find_correction_dim(double num_rotations, int dim, double base, double max_pos) {
  return (dim * std::log(max_pos / (num_rotations * 2 * kPi))) / (2 * std::log(base));
}

std::pair<double, double> find_correction_range(double low_rot, double high_rot, int dim,
                                                double base, double max_pos) {
  double low = std::floor(find_correction_dim(low_rot, dim, base, max_pos));
  double high = std::ceil(find_correction_dim(high_rot, dim, base, max_pos));
  return {std::max(low, 0.0), std::min(high, double(dim - 1))};
}

std::vector<double> linear_ramp_factor(double min, double max, int dim) {
  if (min == max) max += 0.001;
  std::vector<double> r(static_cast<size_t>(dim));
  for (int j = 0; j < dim; ++j) r[size_t(j)] = std::clamp((j - min) / (max - min), 0.0, 1.0);
  return r;
}

std::vector<double> ref_yarn(int dim, double base, double factor, double original_max_pos,
                             double beta_fast = 32, double beta_slow = 1) {
  std::vector<double> inv_freq_extrapolation, inv_freq_interpolation;
  for (int j = 0; j < dim; j += 2) {
    double pos_freqs = std::pow(base, double(j) / dim);
    inv_freq_extrapolation.push_back(1.0 / pos_freqs);
    inv_freq_interpolation.push_back(1.0 / (factor * pos_freqs));
  }
  auto [low, high] = find_correction_range(beta_fast, beta_slow, dim, base, original_max_pos);
  auto ramp = linear_ramp_factor(low, high, dim / 2);
  std::vector<double> inv(size_t(dim / 2));
  for (size_t i = 0; i < inv.size(); ++i) {
    double extrapolation_factor = 1 - ramp[i];
    inv[i] = inv_freq_interpolation[i] * (1 - extrapolation_factor) +
             inv_freq_extrapolation[i] * extrapolation_factor;
  }
  return inv;
}

std::vector<double> ref_dynamic(int dim, double base, double factor, double max_pos,
                                double seq_len) {
  seq_len = std::max(seq_len, max_pos);
  base = base * std::pow((factor * seq_len / max_pos) - (factor - 1), double(dim) / (dim - 2));
  return ref_default(dim, base);
}

void expect_tables_near(const std::vector<double>& got, const std::vector<double>& want,
                        const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], 1e-12 * std::max(1.0, std::abs(want[i]))) << what << " pair " << i;
}

RopeConfig config(int n_rot, double theta, RopeConfig::Style style = RopeConfig::Style::Interleaved) {
  RopeConfig c;
  c.n_rot = n_rot;
  c.theta = theta;
  c.style = style;
  return c;
}

RopeConfig llama31_8b() {
  RopeConfig c = config(128, 500000.0, RopeConfig::Style::Half);
  c.scaling = RopeConfig::Scaling::Llama3;
  c.factor = 8.0;
  c.low_freq_factor = 1.0;
  c.high_freq_factor = 4.0;
  c.original_ctx = 8192;
  return c;
}

RopeConfig yarn(double theta, double factor, int64_t original_ctx) {
  RopeConfig c = config(128, theta, RopeConfig::Style::Half);
  c.scaling = RopeConfig::Scaling::Yarn;
  c.factor = factor;
  c.original_ctx = original_ctx;
  return c;
}

std::vector<float> random_vec(size_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

double dot(const float* a, const float* b, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += double(a[i]) * b[i];
  return s;
}

// ---------------------------------------------------------------------------
// Tables

TEST(RopeTables, DefaultMatchesFormulaAndHandValues) {
  Rope r(config(128, 10000.0));
  expect_tables_near(r.inv_freq(), ref_default(128, 10000.0), "default");
  // Hand-checked: 10000^(-2/128) = e^(-ln(10000)/64) and 10000^(-126/128) = 10^-3.9375.
  EXPECT_DOUBLE_EQ(r.inv_freq()[0], 1.0);
  EXPECT_NEAR(r.inv_freq()[1], 0.8659643233600653, 1e-15);
  EXPECT_NEAR(r.inv_freq()[63], 1.1547819846894582e-4, 1e-18);
  EXPECT_DOUBLE_EQ(r.mscale(), 1.0);
}

TEST(RopeTables, LinearDividesByFactor) {
  RopeConfig c = config(64, 10000.0);
  c.scaling = RopeConfig::Scaling::Linear;
  c.factor = 4.0;
  Rope r(c);
  expect_tables_near(r.inv_freq(), ref_linear(64, 10000.0, 4.0), "linear");
  // Equivalently, positions are divided by the factor: R_linear(8) == R(2).
  Rope plain(config(64, 10000.0));
  auto x = random_vec(64, 1), y = x;
  r.apply(x.data(), 1, 64, 8);
  plain.apply(y.data(), 1, 64, 2);
  for (int i = 0; i < 64; ++i) EXPECT_NEAR(x[i], y[i], 1e-6) << i;
}

TEST(RopeTables, Llama3MatchesTransformersForLlama31_8B) {
  Rope r(llama31_8b());
  const auto& f = r.inv_freq();
  expect_tables_near(f, ref_llama3(128, 500000.0, 8.0, 1.0, 4.0, 8192.0), "llama3");
  // Hand-checked regions: wavelength 2*pi*500000^(i/64) is below 2048 for
  // i <= 28 (kept), above 8192 for i >= 35 (divided by 8), blended between.
  auto base = ref_default(128, 500000.0);
  for (int i = 0; i <= 28; ++i) EXPECT_DOUBLE_EQ(f[i], base[i]) << i;
  for (int i = 35; i < 64; ++i) EXPECT_NEAR(f[i], base[i] / 8.0, 1e-18) << i;
  for (int i = 29; i <= 34; ++i) {
    EXPECT_LT(f[i], base[i]) << i;
    EXPECT_GT(f[i], base[i] / 8.0) << i;
  }
  EXPECT_NEAR(f[1], 0.8146172338565447, 1e-15);
  // i = 30: smooth = 8192 / (2*pi*500000^(30/64)) - 1) / 3 = 0.59285.
  EXPECT_NEAR(f[30], 0.0013718935677611381, 1e-15);
  EXPECT_NEAR(f[63], 3.068925988914511e-07, 1e-19);  // 500000^(-63/64) / 8
  EXPECT_DOUBLE_EQ(r.mscale(), 1.0);
}

TEST(RopeTables, YarnMatchesTransformers) {
  // Qwen2.5-style long context: theta 1e6, factor 4, original 32768.
  Rope q(yarn(1e6, 4.0, 32768));
  expect_tables_near(q.inv_freq(), ref_yarn(128, 1e6, 4.0, 32768), "yarn qwen");
  // Hand-checked correction range: floor(23.596) = 23, ceil(39.651) = 40.
  auto [low, high] = find_correction_range(32, 1, 128, 1e6, 32768);
  EXPECT_EQ(low, 23.0);
  EXPECT_EQ(high, 40.0);
  auto base = ref_default(128, 1e6);
  for (int i = 0; i <= 23; ++i) EXPECT_DOUBLE_EQ(q.inv_freq()[i], base[i]) << i;  // extrapolated
  for (int i = 40; i < 64; ++i) EXPECT_NEAR(q.inv_freq()[i], base[i] / 4, 1e-18) << i;
  EXPECT_NEAR(q.inv_freq()[30], 0.0010643609812470017, 1e-15);  // ramp 7/17
  EXPECT_NEAR(q.mscale(), 1.1386294361119890, 1e-12);           // 0.1 ln 4 + 1

  // Yarn-Llama-2 style: theta 1e4, factor 16, original 4096.
  Rope l(yarn(10000.0, 16.0, 4096));
  expect_tables_near(l.inv_freq(), ref_yarn(128, 10000.0, 16.0, 4096), "yarn llama2");
  EXPECT_NEAR(l.inv_freq()[20], 0.056234132519034905, 1e-15);
  EXPECT_NEAR(l.mscale(), 1.2772588722239782, 1e-12);  // 0.1 ln 16 + 1

  // Non-default betas and an explicit attention factor.
  RopeConfig c = yarn(10000.0, 8.0, 2048);
  c.yarn_beta_fast = 16;
  c.yarn_beta_slow = 2;
  c.yarn_attn_factor = 1.5;
  Rope b(c);
  expect_tables_near(b.inv_freq(), ref_yarn(128, 10000.0, 8.0, 2048, 16, 2), "yarn betas");
  EXPECT_DOUBLE_EQ(b.mscale(), 1.5);
  // apply() multiplies cos and sin by mscale: norms scale by it.
  auto x = random_vec(128, 9);
  double n0 = dot(x.data(), x.data(), 128);
  b.apply(x.data(), 1, 128, 1234);
  EXPECT_NEAR(std::sqrt(dot(x.data(), x.data(), 128) / n0), 1.5, 1e-5);
}

TEST(RopeTables, DynamicNtkGrowsBaseWithSequenceLength) {
  RopeConfig c = config(128, 10000.0, RopeConfig::Style::Half);
  c.scaling = RopeConfig::Scaling::DynamicNTK;
  c.factor = 2.0;
  c.original_ctx = 4096;
  Rope r(c);
  expect_tables_near(r.inv_freq(), ref_default(128, 10000.0), "dynamic base");
  expect_tables_near(r.inv_freq_at(100), ref_default(128, 10000.0), "dynamic short");
  expect_tables_near(r.inv_freq_at(4096), ref_default(128, 10000.0), "dynamic at original");
  for (int64_t len : {4097, 8192, 50000})
    expect_tables_near(r.inv_freq_at(len), ref_dynamic(128, 10000.0, 2.0, 4096, double(len)),
                       "dynamic " + std::to_string(len));
  // Hand-checked: base' = 10000 * (2*8192/4096 - 1)^(128/126) = 30527.7367...
  EXPECT_NEAR(r.inv_freq_at(8192)[1], 1.0 / std::pow(30527.7367488067, 2.0 / 128), 1e-12);
  EXPECT_NEAR(r.inv_freq_at(8192)[1], 0.8509942913412162, 1e-12);

  // apply() uses max(seq_len, pos + 1): a decode token at 8191 with seq_len 0
  // sees the base for length 8192.
  RopeConfig plain_c = config(128, 30527.7367488067, RopeConfig::Style::Half);
  Rope plain(plain_c);
  auto x = random_vec(128, 4), y = x, z = x;
  r.apply(x.data(), 1, 128, 8191);
  r.apply(z.data(), 1, 128, 8191, 8192);
  plain.apply(y.data(), 1, 128, 8191);
  for (int i = 0; i < 128; ++i) {
    EXPECT_NEAR(x[i], y[i], 1e-5) << i;  // base given to 15 digits
    EXPECT_EQ(x[i], z[i]) << i;
  }
}

TEST(RopeTables, FreqFactorsDivideInvFreq) {
  // llama.cpp's GGUF form of Llama 3.1 scaling: no scaling type, per-pair
  // divisors base/llama3 in rope_freqs.weight. Must reproduce the llama3 table.
  auto base = ref_default(128, 500000.0);
  auto l3 = ref_llama3(128, 500000.0, 8.0, 1.0, 4.0, 8192.0);
  RopeConfig c = config(128, 500000.0);
  for (size_t i = 0; i < base.size(); ++i) c.freq_factors.push_back(base[i] / l3[i]);
  Rope r(c);
  expect_tables_near(r.inv_freq(), l3, "freq_factors");
}

// ---------------------------------------------------------------------------
// apply()

TEST(RopeApply, InterleavedRotatesAdjacentPairs) {
  // Pair 0 has inv_freq 1, so at position p it turns by p radians.
  Rope r(config(8, 10000.0, RopeConfig::Style::Interleaved));
  std::vector<float> x = {1, 0, 0, 0, 0, 0, 0, 0};
  r.apply(x.data(), 1, 8, 1);
  EXPECT_NEAR(x[0], std::cos(1.0), 1e-7);
  EXPECT_NEAR(x[1], std::sin(1.0), 1e-7);
  for (int i = 2; i < 8; ++i) EXPECT_EQ(x[i], 0.0f) << i;
  // Pair 1 = dims (2, 3), inv_freq 10000^(-2/8) = 0.1.
  std::vector<float> y = {0, 0, 0, 1, 0, 0, 0, 0};
  r.apply(y.data(), 1, 8, 5);
  EXPECT_NEAR(y[2], -std::sin(0.5), 1e-7);
  EXPECT_NEAR(y[3], std::cos(0.5), 1e-7);
  for (int i : {0, 1, 4, 5, 6, 7}) EXPECT_EQ(y[i], 0.0f) << i;
}

TEST(RopeApply, HalfRotatesSplitPairs) {
  Rope r(config(8, 10000.0, RopeConfig::Style::Half));
  std::vector<float> x = {1, 0, 0, 0, 0, 0, 0, 0};
  r.apply(x.data(), 1, 8, 1);
  // rotate_half: out[i] = x[i] cos - x[i+4] sin, out[i+4] = x[i+4] cos + x[i] sin.
  EXPECT_NEAR(x[0], std::cos(1.0), 1e-7);
  EXPECT_NEAR(x[4], std::sin(1.0), 1e-7);
  for (int i : {1, 2, 3, 5, 6, 7}) EXPECT_EQ(x[i], 0.0f) << i;
  std::vector<float> y = {0, 0, 0, 0, 0, 1, 0, 0};  // second half of pair 1
  r.apply(y.data(), 1, 8, 5);
  EXPECT_NEAR(y[1], -std::sin(0.5), 1e-7);
  EXPECT_NEAR(y[5], std::cos(0.5), 1e-7);
}

TEST(RopeApply, StylesAgreeUnderPermutation) {
  // Half-style on x equals interleaved-style on x permuted to (x0, x4, x1, x5, ...),
  // the permutation llama.cpp's converter applies to HF Q/K weights.
  const int n = 64, heads = 3;
  Rope inter(config(n, 10000.0, RopeConfig::Style::Interleaved));
  Rope half(config(n, 10000.0, RopeConfig::Style::Half));
  auto x = random_vec(size_t(n * heads), 5);
  std::vector<float> p(x.size());
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < n / 2; ++i) {
      p[h * n + 2 * i] = x[h * n + i];
      p[h * n + 2 * i + 1] = x[h * n + i + n / 2];
    }
  half.apply(x.data(), heads, n, 77);
  inter.apply(p.data(), heads, n, 77);
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < n / 2; ++i) {
      EXPECT_EQ(p[h * n + 2 * i], x[h * n + i]);
      EXPECT_EQ(p[h * n + 2 * i + 1], x[h * n + i + n / 2]);
    }
}

TEST(RopeApply, PreservesNorms) {
  RopeConfig dyn = config(128, 10000.0);
  dyn.scaling = RopeConfig::Scaling::DynamicNTK;
  dyn.factor = 4;
  dyn.original_ctx = 2048;
  for (const RopeConfig& c : {config(128, 10000.0), config(128, 1e6, RopeConfig::Style::Half),
                              llama31_8b(), dyn}) {
    Rope r(c);
    for (int64_t pos : {0, 1, 100, 4095, 131071, 1000000}) {
      auto x = random_vec(128 * 4, uint64_t(pos) + 1);
      auto y = x;
      r.apply(y.data(), 4, 128, pos);
      for (int h = 0; h < 4; ++h) {
        double before = dot(&x[h * 128], &x[h * 128], 128);
        double after = dot(&y[h * 128], &y[h * 128], 128);
        EXPECT_NEAR(after / before, 1.0, 1e-5) << rope_scaling_name(c.scaling) << " pos " << pos;
      }
    }
  }
}

TEST(RopeApply, DotProductDependsOnlyOnRelativePosition) {
  for (auto style : {RopeConfig::Style::Interleaved, RopeConfig::Style::Half}) {
    Rope r(config(64, 10000.0, style));
    const auto q = random_vec(64, 11), k = random_vec(64, 12);
    auto score = [&](int64_t pq, int64_t pk) {
      auto a = q, b = k;
      r.apply(a.data(), 1, 64, pq);
      r.apply(b.data(), 1, 64, pk);
      return dot(a.data(), b.data(), 64);
    };
    for (int64_t delta : {0, 1, 5, 300}) {
      const double want = score(0, delta);
      for (int64_t p : {1, 17, 1000, 65536, 131072})
        EXPECT_NEAR(score(p, p + delta), want, 1e-4 * (1 + std::abs(want)))
            << "delta " << delta << " p " << p;
    }
    EXPECT_GT(std::abs(score(0, 1) - score(0, 5)), 1e-3);  // the position does matter
  }
}

TEST(RopeApply, LargePositionsStayAccurate) {
  // Angles pos * inv_freq are formed in double: at 131072 a float angle would
  // be off by up to half an ulp of 131072, 0.0078 rad.
  Rope r(llama31_8b());
  auto ref = ref_llama3(128, 500000.0, 8.0, 1.0, 4.0, 8192.0);
  for (int64_t pos : {131071, 131072, 1 << 20}) {
    auto x = random_vec(128, 3);
    auto y = x;
    r.apply(y.data(), 1, 128, pos);
    for (int i = 0; i < 64; ++i) {
      long double a = (long double)pos * (long double)ref[i];
      long double c = std::cos(a), s = std::sin(a);
      long double w0 = x[i] * c - x[i + 64] * s, w1 = x[i + 64] * c + x[i] * s;
      EXPECT_NEAR(y[i], double(w0), 2e-6) << "pos " << pos << " pair " << i;
      EXPECT_NEAR(y[i + 64], double(w1), 2e-6) << "pos " << pos << " pair " << i;
    }
  }
}

TEST(RopeApply, PartialRotaryLeavesTheRestAlone) {
  Rope r(config(32, 10000.0, RopeConfig::Style::Half));
  auto x = random_vec(2 * 48, 8);
  auto y = x;
  r.apply(y.data(), 2, 48, 9);
  for (int h = 0; h < 2; ++h) {
    for (int i = 32; i < 48; ++i) EXPECT_EQ(y[h * 48 + i], x[h * 48 + i]);
    EXPECT_NE(y[h * 48 + 1], x[h * 48 + 1]);
  }
}

TEST(RopeApply, CosSinTableMatchesApply) {
  Rope r(yarn(1e6, 4.0, 32768));
  std::vector<float> c(64), s(64);
  r.cos_sin(5000, 0, c.data(), s.data());
  std::vector<float> x(128, 0.0f);
  x[7] = 1.0f;
  r.apply(x.data(), 1, 128, 5000);
  EXPECT_EQ(x[7], c[7]);
  EXPECT_EQ(x[7 + 64], s[7]);
  EXPECT_NEAR(c[0], std::cos(5000.0) * r.mscale(), 1e-6);
}

// A table built once and rotate() on several heads/tensors (the forward pass's
// per-step table) gives apply()'s values bit for bit, for every scaling and style.
TEST(RopeApply, RotateWithTableEqualsApply) {
  RopeConfig lin = config(64, 10000.0);
  lin.scaling = RopeConfig::Scaling::Linear;
  lin.factor = 4.0;
  RopeConfig dyn = config(128, 10000.0, RopeConfig::Style::Half);
  dyn.scaling = RopeConfig::Scaling::DynamicNTK;
  dyn.factor = 2.0;
  dyn.original_ctx = 2048;
  for (const RopeConfig& c : {config(64, 10000.0), config(32, 10000.0, RopeConfig::Style::Half), lin,
                              llama31_8b(), yarn(1e6, 4.0, 32768), dyn}) {
    Rope r(c);
    const int pairs = c.n_rot / 2, hd = c.n_rot + 16;
    for (int64_t pos : {int64_t{0}, int64_t{17}, int64_t{5000}, int64_t{131071}}) {
      const int64_t seq_len = pos + 3;
      std::vector<float> cs(static_cast<size_t>(pairs)), sn(static_cast<size_t>(pairs));
      r.cos_sin(pos, seq_len, cs.data(), sn.data());
      auto x = random_vec(3 * hd, 11);
      auto y = x;
      r.apply(x.data(), 3, hd, pos, seq_len);
      r.rotate(y.data(), 3, hd, cs.data(), sn.data());
      for (size_t i = 0; i < x.size(); ++i)
        ASSERT_EQ(x[i], y[i]) << rope_scaling_name(c.scaling) << " pos " << pos << " i " << i;
    }
  }
}

TEST(Rope, InvalidConfigsThrowWithData) {
  auto msg = [](const RopeConfig& c) {
    try {
      Rope r(c);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(msg(config(7, 10000.0)), "rope n_rot must be a positive even number, got 7");
  EXPECT_EQ(msg(config(64, 0.0)), "rope theta must be positive, got 0");
  RopeConfig c = llama31_8b();
  c.original_ctx = 0;
  EXPECT_EQ(msg(c), "rope scaling 'llama3' needs original_ctx > 0, got 0");
  c = llama31_8b();
  c.high_freq_factor = 1.0;
  EXPECT_EQ(msg(c),
            "rope scaling 'llama3' needs 0 < low_freq_factor < high_freq_factor, got 1 and 1");
  c = yarn(1e6, -2.0, 32768);
  EXPECT_EQ(msg(c), "rope scaling 'yarn' factor must be positive, got -2");
  c = config(64, 10000.0);
  c.freq_factors = {1.0, 2.0};
  EXPECT_EQ(msg(c), "rope freq_factors has 2 values, expected n_rot/2 = 32");
  Rope r(config(64, 10000.0));
  std::vector<float> x(64);
  EXPECT_THROW(r.apply(x.data(), 1, 32, 0), Error);
  EXPECT_THROW(r.apply(x.data(), 1, 64, -1), Error);
}

TEST(Rope, ScalingNamesAreTransformersRopeTypes) {
  EXPECT_STREQ(rope_scaling_name(RopeConfig::Scaling::None), "none");
  EXPECT_STREQ(rope_scaling_name(RopeConfig::Scaling::Linear), "linear");
  EXPECT_STREQ(rope_scaling_name(RopeConfig::Scaling::Llama3), "llama3");
  EXPECT_STREQ(rope_scaling_name(RopeConfig::Scaling::Yarn), "yarn");
  EXPECT_STREQ(rope_scaling_name(RopeConfig::Scaling::DynamicNTK), "dynamic");
}

}  // namespace
}  // namespace harmonia
