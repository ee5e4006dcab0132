// Spectral primitives of FourierAttention against the spec's oracles O1-O6
// (shared/specs/fourierattention.md §12), checked in float against double sums.
#include "kv/spectral.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

using namespace harmonia::kv::spectral;

namespace {

std::vector<float> random_signal(int64_t K, uint32_t seed, bool walk = false) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(K);
  float acc = 0.0f;
  for (auto& v : x) {
    acc += nd(rng);
    v = walk ? acc * 0.1f : nd(rng);
  }
  return x;
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

}  // namespace

// O1: zero-padded FFT of length T, bins 0..N-1, C = Re, S = -Im, equals the direct sums.
TEST(Spectral, O1FftEqualsDirectSums) {
  const int64_t T = 3000, K = 2500;
  const int N = 512;
  const auto x = random_signal(K, 1);
  std::vector<float> c(N), s(N);
  FftBuffer buf;
  coefficients_fft(x.data(), K, 1, T, N, c.data(), s.data(), 1, buf);
  std::vector<double> cd(N, 0.0), sd(N, 0.0);
  coefficients_direct(x.data(), K, 1, 0, T, N, cd.data(), sd.data());
  const double scale = std::max(max_abs(cd), max_abs(sd));
  double worst = 0;
  for (int n = 0; n < N; ++n) worst = std::max({worst, std::abs(c[n] - cd[n]), std::abs(s[n] - sd[n])});
  EXPECT_LT(worst / scale, 1e-5);
  EXPECT_EQ(s[0], 0.0f);
}

// O2: a signal in the span with K = T is recovered exactly, by the proper inverse
// and by the reference's (1/N) reconstruction followed by the affine match.
TEST(Spectral, O2ExactRecoveryInSpan) {
  const int64_t T = 64;
  const int N = 8;
  std::mt19937 rng(2);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> an(N), bn(N);
  for (int n = 0; n < N; ++n) an[n] = u(rng), bn[n] = n ? u(rng) : 0.0;
  std::vector<float> x(T);
  for (int64_t l = 0; l < T; ++l) x[l] = static_cast<float>(eval_trig_direct(an.data(), bn.data(), N, T, l));
  std::vector<float> c(N), s(N);
  FftBuffer buf;
  coefficients_fft(x.data(), T, 1, T, N, c.data(), s.data(), 1, buf);
  EXPECT_NEAR(c[0], T * an[0], 1e-4);
  for (int n = 1; n < N; ++n) {
    EXPECT_NEAR(c[n], T / 2.0 * an[n], 1e-4) << n;
    EXPECT_NEAR(s[n], T / 2.0 * bn[n], 1e-4) << n;
  }
  std::vector<float> proper(T), raw(T);
  reconstruct_fft(c.data(), s.data(), 1, N, T, proper_inverse(T), T, proper.data(), buf);
  reconstruct_fft(c.data(), s.data(), 1, N, T, reference_inverse(N), T, raw.data(), buf);
  const Affine a = affine_match(mean_dev(x.data(), T), mean_dev(raw.data(), T));
  for (int64_t l = 0; l < T; ++l) {
    EXPECT_NEAR(proper[l], x[l], 1e-5) << l;
    EXPECT_NEAR((raw[l] - a.i_bar) * a.scale + a.u_bar, x[l], 1e-5) << l;
    EXPECT_NEAR(reconstruct_direct(c.data(), s.data(), 1, N, T, proper_inverse(T), l), x[l], 1e-5) << l;
  }
}

// O3: orthogonality over a full period.
TEST(Spectral, O3Orthogonality) {
  const int64_t T = 100;
  auto ip = [&](auto f, auto g) {
    double s = 0;
    for (int64_t l = 0; l < T; ++l) s += f(l) * g(l);
    return s;
  };
  auto c = [&](int n) { return [=](int64_t l) { return std::cos(angle(n, l, T)); }; };
  auto sn = [&](int n) { return [=](int64_t l) { return std::sin(angle(n, l, T)); }; };
  EXPECT_NEAR(ip(c(0), c(0)), 100, 1e-9);
  EXPECT_NEAR(ip(c(3), c(3)), 50, 1e-9);
  EXPECT_NEAR(ip(sn(3), sn(3)), 50, 1e-9);
  EXPECT_NEAR(ip(c(3), sn(3)), 0, 1e-9);
  EXPECT_NEAR(ip(c(3), c(4)), 0, 1e-9);
}

// O4: a(l) = (T/2N) x_hat(l) + C_0/(2N); normalising a or x_hat gives the same
// result; the normalised reconstruction of a smooth signal is close.
TEST(Spectral, O4AffineInvariance) {
  const int64_t T = 5000, K = 4000;
  const int N = 512;
  const auto x = random_signal(K, 4, /*walk=*/true);
  std::vector<float> c(N), s(N), raw(K), proper(K);
  FftBuffer buf;
  coefficients_fft(x.data(), K, 1, T, N, c.data(), s.data(), 1, buf);
  reconstruct_fft(c.data(), s.data(), 1, N, T, reference_inverse(N), K, raw.data(), buf);
  reconstruct_fft(c.data(), s.data(), 1, N, T, proper_inverse(T), K, proper.data(), buf);
  double worst = 0, mag = 0;
  for (int64_t l = 0; l < K; ++l) {
    const double pred = static_cast<double>(T) / (2 * N) * proper[l] + c[0] / (2.0 * N);
    worst = std::max(worst, std::abs(raw[l] - pred));
    mag = std::max(mag, std::abs(static_cast<double>(raw[l])));
  }
  EXPECT_LT(worst / mag, 1e-5);
  const MeanDev mx = mean_dev(x.data(), K);
  const Affine a1 = affine_match(mx, mean_dev(raw.data(), K));
  const Affine a2 = affine_match(mx, mean_dev(proper.data(), K));
  double diff = 0, err = 0, energy = 0;
  for (int64_t l = 0; l < K; ++l) {
    const double y1 = (raw[l] - a1.i_bar) * a1.scale + a1.u_bar;
    const double y2 = (proper[l] - a2.i_bar) * a2.scale + a2.u_bar;
    diff = std::max(diff, std::abs(y1 - y2));
    err += (y2 - x[l]) * (y2 - x[l]);
    energy += (x[l] - mx.mean) * (x[l] - mx.mean);
  }
  EXPECT_LT(diff, 1e-4 * mx.dev);
  EXPECT_LT(err / energy, 0.05) << "relative MSE of the normalised reconstruction";
}

// O5: FFT of the first K tokens plus rank-1 updates at K..K+J-1 equals the FFT of
// all K+J; the reference's positions K+1..K+J give an O(1) difference.
TEST(Spectral, O5IncrementalEqualsBatch) {
  const int64_t T = 3000, K = 2000, J = 5;
  const int N = 512;
  const auto x = random_signal(K + J, 5);
  std::vector<float> c0(N), s0(N), call(N), sall(N);
  FftBuffer buf;
  coefficients_fft(x.data(), K, 1, T, N, c0.data(), s0.data(), 1, buf);
  coefficients_fft(x.data(), K + J, 1, T, N, call.data(), sall.data(), 1, buf);
  std::vector<double> c(c0.begin(), c0.end()), s(s0.begin(), s0.end());
  std::vector<double> cr(c), sr(s);
  for (int64_t j = 0; j < J; ++j) {
    coefficients_direct(x.data() + K + j, 1, 1, K + j, T, N, c.data(), s.data());
    coefficients_direct(x.data() + K + j, 1, 1, K + j + 1, T, N, cr.data(), sr.data());  // off by one
  }
  double worst = 0, worst_ref = 0, mag = 0;
  for (int n = 0; n < N; ++n) {
    worst = std::max({worst, std::abs(c[n] - call[n]), std::abs(s[n] - sall[n])});
    worst_ref = std::max({worst_ref, std::abs(cr[n] - call[n]), std::abs(sr[n] - sall[n])});
    mag = std::max({mag, std::abs(static_cast<double>(call[n])), std::abs(static_cast<double>(sall[n]))});
  }
  EXPECT_LT(worst / mag, 1e-5);
  EXPECT_GT(worst_ref, 0.1) << "the off-by-one position must give an O(1) difference";
  std::printf("[ O5 ] max |diff| incremental %.2e, off-by-one %.3f (coefficients up to %.1f)\n", worst, worst_ref, mag);
}

// O6: int(1/(1/T)) != T for the listed periods; 11 740 of [1, 200000].
TEST(Spectral, O6ReferencePeriodRounding) {
  for (int64_t T : {93, 99, 105, 117, 123, 186}) EXPECT_EQ(reference_period(T), T - 1) << T;
  EXPECT_EQ(reference_period(31476), 31475);
  EXPECT_EQ(reference_period(31220), 31220);
  EXPECT_EQ(reference_period(3172), 3172);
  std::vector<int64_t> first;
  int64_t count = 0;
  for (int64_t T = 1; T <= 200000; ++T)
    if (reference_period(T) != T) {
      ++count;
      if (first.size() < 6) first.push_back(T);
    }
  EXPECT_EQ(count, 11740);
  EXPECT_EQ(first, (std::vector<int64_t>{93, 99, 105, 117, 123, 186}));
}

TEST(Spectral, SmoothPeriod) {
  EXPECT_EQ(smooth_period(1), 2);
  EXPECT_EQ(smooth_period(16381), 16384);
  EXPECT_EQ(smooth_period(15625), 15680);  // 5^6 is odd; 15680 = 2^6 * 5 * 7^2
  for (int64_t n : {97, 1000, 31476, 130000}) {
    const int64_t m = smooth_period(n);
    EXPECT_GE(m, n);
    EXPECT_LT(m, n + n / 10 + 4);
    EXPECT_EQ(m % 2, 0);
  }
}

// The trigonometric evaluation by inverse FFT equals the direct sums, also for
// long periods with large n*l (argument reduction).
TEST(Spectral, EvalTrigFftEqualsDirect) {
  for (auto [T, N, L] : {std::tuple<int64_t, int, int64_t>{40, 4, 40}, {1000, 64, 700}, {33000, 512, 32000}}) {
    std::mt19937 rng(static_cast<uint32_t>(T));
    std::normal_distribution<float> nd;
    std::vector<float> a(N), b(N);
    std::vector<double> ad(N), bd(N);
    for (int n = 0; n < N; ++n) ad[n] = a[n] = nd(rng), bd[n] = b[n] = nd(rng);
    std::vector<float> f(L);
    FftBuffer buf;
    eval_trig_fft(a.data(), b.data(), N, T, L, f.data(), buf);
    double worst = 0;
    for (int64_t l = 0; l < L; l += std::max<int64_t>(1, L / 97))
      worst = std::max(worst, std::abs(f[l] - eval_trig_direct(ad.data(), bd.data(), N, T, l)));
    EXPECT_LT(worst, 2e-5 * std::sqrt(2.0 * N)) << "T " << T;
  }
}

TEST(Spectral, AffineGuards) {
  // Constant reconstruction: s = 1. Constant original: s = 0, so the value is u_bar.
  EXPECT_EQ(affine_match({1.0, 2.0}, {0.5, 0.0}).scale, 1.0f);
  EXPECT_EQ(affine_match({1.0, 0.0}, {0.5, 3.0}).scale, 0.0f);
  std::vector<float> v = {1, 5, 3};
  const MeanDev m = mean_dev(v.data(), 3);
  EXPECT_DOUBLE_EQ(m.mean, 3.0);
  EXPECT_DOUBLE_EQ(m.dev, 2.0);
}
