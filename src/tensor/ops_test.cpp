// Fast kernels (dot_row, matvec, matmul) against the reference on random inputs.
//
// Oracle: the weights dequantised by the reference code, multiplied in double.
// Tolerances, with M = sum_i |w_i x_i| (the magnitude the rounding errors scale with):
//  - f32 / f16 / bf16 weights: |fast - exact| <= 2e-5 M. The SIMD kernels sum at
//    most cols/16 terms per partial sum (<= 256 at 4096 columns: 256 * 2^-24 = 1.5e-5
//    worst case); sgemm's error is far below its worst case on random data.
//  - block-quantised weights with 8-bit activations (dot_row, matvec, matmul with
//    n <= kMatmulStreamMaxN), checked two ways:
//      tight: against the exact dot with the same rounded activations x^:
//             |fast - exact(w, x^)| <= 2e-5 M^, where M^ also counts the k-quant
//             min terms (q4_K/q5_K subtract dmin * m * sum(x^) separately, so those
//             products are rounded on their own);
//      loose: against the exact dot with fp32 x: the tight bound plus the
//             activation rounding, sum_i |w_i| d_b / 2 (d_b = max|x_block| / 127).
//  - matmul with n > kMatmulStreamMaxN on quantised weights: fp32 x, 2e-5 M.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "tensor/kernels.h"
#include "tensor/ops.h"
#include "tensor/quants.h"
#include "tensor/test_util.h"

namespace harmonia {
namespace {

using testing::random_floats;
using testing::random_weights;

constexpr double kRelTol = 2e-5;

const DType kAllTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0,
                           DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

bool quantised(DType t) { return kernels::uses_q8_act(t); }

// Exact dot of a dequantised row with x, and the magnitude M its rounding scales with.
struct Exact {
  double value = 0, mag = 0;
};

Exact exact_dot(DType t, const uint8_t* row, const float* x, int64_t n) {
  std::vector<float> w(static_cast<size_t>(n));
  dequantize_row(t, row, w.data(), n);
  Exact e;
  for (int64_t i = 0; i < n; ++i) {
    e.value += double(w[i]) * x[i];
    e.mag += std::fabs(double(w[i]) * x[i]);
  }
  if (t == DType::Q4_K || t == DType::Q5_K) {  // + sum |dmin m_j| |x_i|, twice (see header)
    const size_t bb = row_bytes(t, 256);
    for (int64_t s = 0; s < n / 256; ++s) {
      const uint8_t* p = row + s * bb;
      const float dmin = quants::load_half(p + 2);
      for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        quants::scale_min_k4(j, p + 4, &sc, &m);
        for (int l = 0; l < 32; ++l) e.mag += 2 * std::fabs(double(dmin) * m * x[256 * s + 32 * j + l]);
      }
    }
  }
  return e;
}

// The activations the quantised kernels actually multiply with, and the loose
// bound's activation-rounding term sum_i |w_i| d_b / 2 for one row.
struct RoundedX {
  std::vector<float> xr;   // [n] d_b * q_i
  std::vector<float> d;    // [n / 32]
};

RoundedX rounded_x(const float* x, int64_t n) {
  kernels::Q8ActBuffer buf;
  buf.quantize(x, 1, n);
  const kernels::Q8Act a = buf.view(0);
  RoundedX r;
  r.xr.resize(static_cast<size_t>(n));
  r.d.assign(a.d, a.d + n / 32);
  for (int64_t i = 0; i < n; ++i) r.xr[i] = a.d[i / 32] * a.qs[i];
  return r;
}

double act_rounding_bound(DType t, const uint8_t* row, const RoundedX& r, int64_t n) {
  std::vector<float> w(static_cast<size_t>(n));
  dequantize_row(t, row, w.data(), n);
  double b = 0;
  for (int64_t i = 0; i < n; ++i) b += std::fabs(double(w[i])) * r.d[i / 32] * 0.5 * (1 + 1e-6);
  return b;
}

// Checks one computed dot product `got` of `row` with x against the bounds above.
// `rounded_acts`: the kernel used 8-bit activations.
void check_dot(DType t, const uint8_t* row, const float* x, int64_t n, float got, bool rounded_acts,
               const std::string& where) {
  if (!rounded_acts) {
    const Exact e = exact_dot(t, row, x, n);
    EXPECT_LE(std::fabs(got - e.value), kRelTol * e.mag + 1e-30) << where << " exact " << e.value;
    return;
  }
  const RoundedX r = rounded_x(x, n);
  const Exact tight = exact_dot(t, row, r.xr.data(), n);
  EXPECT_LE(std::fabs(got - tight.value), kRelTol * tight.mag + 1e-30) << where << " (tight) " << tight.value;
  const Exact loose = exact_dot(t, row, x, n);
  EXPECT_LE(std::fabs(got - loose.value), act_rounding_bound(t, row, r, n) + kRelTol * loose.mag + 1e-30)
      << where << " (loose) " << loose.value;
}

std::string type_name(const ::testing::TestParamInfo<DType>& info) { return dtype_name(info.param); }

// Column counts valid for the type, from one block up to 4096 + a block.
std::vector<int64_t> test_cols(DType t) {
  const int be = dtype_info(t).block_elems;
  if (be == 256) return {256, 512, 768, 2048, 4096 + 256};
  if (be == 32) return {32, 64, 96, 768, 2048, 4096 + 32};
  return {1, 7, 8, 15, 16, 33, 100, 768, 2048, 4099};
}

class Kernels : public ::testing::TestWithParam<DType> {
 protected:
  std::mt19937 rng{12345};
};

TEST_P(Kernels, DotRowMatchesReference) {
  const DType t = GetParam();
  for (int64_t n : test_cols(t)) {
    for (int rep = 0; rep < 3; ++rep) {
      auto w = random_weights(rng, t, 1, n);
      const auto x = random_floats(rng, n, rep == 2 ? 100.0f : 1.0f);
      const float got = dot_row(t, w.t.row(0), x.data(), n);
      check_dot(t, w.t.row(0), x.data(), n, got, quantised(t), "n=" + std::to_string(n));
    }
  }
}

// matvec on shapes below and above the parallel threshold (64 KiB), rows not a
// multiple of the thread count or of 16, at 1, 2 and 3 threads.
TEST_P(Kernels, MatvecMatchesReference) {
  const DType t = GetParam();
  const int be = dtype_info(t).block_elems;
  std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 256}, {17, 256}, {33, 768}, {1001, 768}, {203, 2048}, {67, 4096}};
  if (be <= 32) shapes.push_back({77, 96});
  if (be == 1) shapes.push_back({9, 100});
  const int saved = omp_get_max_threads();
  for (auto [rows, cols] : shapes) {
    auto w = random_weights(rng, t, rows, cols);
    const auto x = random_floats(rng, cols);
    for (int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      std::vector<float> y(static_cast<size_t>(rows), -1.0f);
      matvec(w.t, x.data(), y.data());
      for (int64_t r = 0; r < rows; ++r) {
        check_dot(t, w.t.row(r), x.data(), cols, y[r], quantised(t),
                  std::to_string(rows) + "x" + std::to_string(cols) + " threads=" + std::to_string(threads) +
                      " row " + std::to_string(r));
        // same kernel, same activations: bit-identical to dot_row
        ASSERT_EQ(y[r], dot_row(t, w.t.row(r), x.data(), cols)) << "row " << r;
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST_P(Kernels, MatmulMatchesReference) {
  const DType t = GetParam();
  const std::pair<int64_t, int64_t> shapes[] = {{17, 256}, {300, 768}, {130, 2048}};
  for (auto [rows, cols] : shapes) {
    auto w = random_weights(rng, t, rows, cols);
    for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{8}, int64_t{17}, kMatmulStreamMaxN, kMatmulStreamMaxN + 1, int64_t{64}}) {
      const auto X = random_floats(rng, n * cols);
      std::vector<float> Y(static_cast<size_t>(n * rows), -1.0f);
      matmul(w.t, X.data(), n, Y.data());
      const bool rounded = quantised(t) && n <= kMatmulStreamMaxN;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t r = 0; r < rows; ++r)
          check_dot(t, w.t.row(r), X.data() + i * cols, cols, Y[i * rows + r], rounded,
                    std::to_string(rows) + "x" + std::to_string(cols) + " n=" + std::to_string(n) + " [" +
                        std::to_string(i) + "," + std::to_string(r) + "]");
      if (n == 1) {
        std::vector<float> y(static_cast<size_t>(rows));
        matvec(w.t, X.data(), y.data());
        EXPECT_EQ(Y, y) << "matmul n=1 is matvec";
      }
    }
  }
}

// Called from inside a parallel region matmul runs on the calling thread (no
// nested team; concurrent single-threaded sgemm calls); each result must be right.
TEST_P(Kernels, MatmulInsideParallelRegion) {
  const DType t = GetParam();
  const int64_t rows = 70, cols = 512, n = kMatmulStreamMaxN + 1;  // the sgemm path
  auto w = random_weights(rng, t, rows, cols);
  const auto X = random_floats(rng, n * cols);
  std::vector<float> Y0(static_cast<size_t>(n * rows)), Y1(Y0.size());
#pragma omp parallel num_threads(2)
  matmul(w.t, X.data(), n, omp_get_thread_num() == 0 ? Y0.data() : Y1.data());
  for (const auto* Y : {&Y0, &Y1})
    for (int64_t i = 0; i < n; ++i)
      for (int64_t r = 0; r < rows; ++r)
        check_dot(t, w.t.row(r), X.data() + i * cols, cols, (*Y)[i * rows + r], false, "in parallel");
}

INSTANTIATE_TEST_SUITE_P(AllTypes, Kernels, ::testing::ValuesIn(kAllTypes), type_name);

// matmul_multi gives each matrix exactly matmul's result, also with mixed types
// (a Q4_K_M file mixes q4_k and q6_k in one layer) and row counts, on 1-3 threads,
// on both sides of kMatmulStreamMaxN.
TEST(MatmulMulti, EqualsOneMatmulPerMatrix) {
  std::mt19937 rng(7);
  const int64_t cols = 512;
  auto a = random_weights(rng, DType::Q4_K, 300, cols);
  auto b = random_weights(rng, DType::Q6_K, 77, cols);
  auto c = random_weights(rng, DType::F32, 129, cols);
  for (int64_t n : {int64_t{1}, int64_t{5}, kMatmulStreamMaxN + 3}) {
    const auto X = random_floats(rng, n * cols);
    for (int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      std::vector<float> ya(n * 300), yb(n * 77), yc(n * 129), ra(ya.size()), rb(yb.size()), rc(yc.size());
      matmul_multi({{&a.t, ya.data()}, {&b.t, yb.data()}, {&c.t, yc.data()}}, X.data(), n);
      matmul(a.t, X.data(), n, ra.data());
      matmul(b.t, X.data(), n, rb.data());
      matmul(c.t, X.data(), n, rc.data());
      EXPECT_EQ(ya, ra) << "n=" << n << " threads=" << threads;
      EXPECT_EQ(yb, rb) << "n=" << n << " threads=" << threads;
      EXPECT_EQ(yc, rc) << "n=" << n << " threads=" << threads;
    }
  }
  auto d = random_weights(rng, DType::F32, 8, 256);
  std::vector<float> y(8 * 300), x(512);
  EXPECT_THROW(matmul_multi({{&a.t, y.data()}, {&d.t, y.data()}}, x.data(), 1), Error);  // cols differ
}

// ---- matvec schedule ----------------------------------------------------------------------

// The matvec schedule (each thread's own contiguous share, then stealing) covers
// every row exactly once: a row left at -1 would show. Row counts around the
// 16-row unit, more threads than units, and a share large enough to be stolen from.
TEST(MatvecSchedule, EveryRowOnce) {
  std::mt19937 rng(13);
  const int saved = omp_get_max_threads();
  const std::pair<int64_t, int64_t> shapes[] = {{1, 64}, {3, 64}, {5, 2048}, {15, 2048}, {16, 2048}, {17, 2048},
                                                {33, 2048}, {95, 768}, {4001, 768}};
  for (DType t : {DType::Q8_0, DType::F32}) {
    for (auto [rows, cols] : shapes) {
      auto w = random_weights(rng, t, rows, cols);
      const auto x = random_floats(rng, cols);
      std::vector<float> want(static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) want[r] = dot_row(t, w.t.row(r), x.data(), cols);
      for (int threads : {1, 2, 3, 5}) {
        omp_set_num_threads(threads);
        for (int rep = 0; rep < 3; ++rep) {
          std::vector<float> y(static_cast<size_t>(rows), -1.0f);
          matvec(w.t, x.data(), y.data());
          ASSERT_EQ(y, want) << dtype_name(t) << " " << rows << "x" << cols << " threads=" << threads;
        }
      }
    }
  }
  omp_set_num_threads(saved);
}

// ---- 8-bit activations ------------------------------------------------------------------

TEST(Q8Act, RoundsWithinHalfScale) {
  std::mt19937 rng(7);
  auto X = random_floats(rng, 3 * 256, 5.0f);
  std::fill(X.begin() + 32, X.begin() + 64, 0.0f);  // an all-zero block
  kernels::Q8ActBuffer buf;
  buf.quantize(X.data(), 3, 256);
  for (int v = 0; v < 3; ++v) {
    const kernels::Q8Act a = buf.view(v);
    ASSERT_EQ(a.n, 256);
    for (int b = 0; b < 8; ++b) {
      const float* x = X.data() + 256 * v + 32 * b;
      float amax = 0;
      int sum = 0;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
      EXPECT_FLOAT_EQ(a.d[b], amax / 127);
      for (int i = 0; i < 32; ++i) {
        const int q = a.qs[32 * b + i];
        EXPECT_LE(std::abs(q), 127);
        EXPECT_LE(std::fabs(a.d[b] * q - x[i]), a.d[b] * 0.5f * (1 + 1e-6f)) << v << " " << b << " " << i;
        sum += q;
      }
      for (int l = 0; l < 8; ++l) {
        const int8_t* q = a.qs + 32 * b + 4 * l;
        EXPECT_EQ(a.lsum[8 * b + l], q[0] + q[1] + q[2] + q[3]);
      }
      EXPECT_FLOAT_EQ(a.dsum[b], a.d[b] * sum);
    }
  }
  EXPECT_EQ(buf.view(0).d[1], 0.0f);
}

// ---- errors ---------------------------------------------------------------------------------

template <class F>
ErrorKind error_kind(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  ADD_FAILURE() << "no harmonia::Error thrown";
  return ErrorKind::Internal;
}

// Fast swiglu (vectorised expf) against the std::exp reference: |fast - ref| <=
// 1e-6 |ref| + 1e-30 (the exp polynomial is ~2 ulp; the division and product add ~1
// ulp each). x covers silu's both tails (|x| up to 100: exp's argument clamped) and
// lengths that leave a tail of every size for the 16- and 8-wide loops.
TEST(OpsSwiglu, FastMatchesReference) {
  std::mt19937 rng(7);
  for (int64_t n : {1, 7, 15, 16, 17, 31, 33, 100, 2048, 2049}) {
    for (float scale : {1.0f, 10.0f, 100.0f}) {
      std::uniform_real_distribution<float> u(-scale, scale);
      std::vector<float> h(static_cast<size_t>(n)), g(static_cast<size_t>(n));
      for (auto& v : h) v = u(rng);
      g = random_floats(rng, n);
      if (n > 4) h[0] = 0.0f, h[1] = 88.5f, h[2] = -88.5f, h[3] = -1e-8f;
      std::vector<float> ref = h, fast = h;
      swiglu_ref(ref.data(), g.data(), n);
      swiglu(fast.data(), g.data(), n);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_NEAR(fast[i], ref[i], 1e-6 * std::abs(ref[i]) + 1e-30)
            << "n " << n << " i " << i << " x " << h[i] << " g " << g[i];
    }
  }
}

TEST(KernelErrors, UnsupportedTypes) {
  std::vector<uint8_t> bytes(84 * 4 * 8);
  std::vector<float> x(1024), y(8);
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_1, DType::Q8_K}) {
    Tensor w;
    w.name = "blk.0.ffn_up.weight";
    w.type = t;
    w.ne = {256, 2, 1, 1};
    w.data = bytes.data();
    EXPECT_EQ(error_kind([&] { dot_row(t, bytes.data(), x.data(), 256); }), ErrorKind::Unsupported);
    EXPECT_EQ(error_kind([&] { matvec(w, x.data(), y.data()); }), ErrorKind::Unsupported);
    EXPECT_EQ(error_kind([&] { matmul(w, x.data(), 3, y.data()); }), ErrorKind::Unsupported);
    EXPECT_EQ(error_kind([&] { matvec_ref(w, x.data(), y.data()); }), ErrorKind::Unsupported);
  }
  try {
    Tensor w;
    w.name = "blk.3.attn_q.weight";
    w.type = DType::Q2_K;
    w.ne = {256, 2, 1, 1};
    w.data = bytes.data();
    matvec(w, x.data(), y.data());
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.3.attn_q.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("q2_k"), std::string::npos) << e.what();
  }
}

TEST(KernelErrors, BadShapesAndData) {
  std::vector<uint8_t> bytes(34 * 8);
  std::vector<float> x(256), y(8);
  Tensor w;
  w.name = "output.weight";
  w.type = DType::Q8_0;
  w.ne = {48, 2, 1, 1};  // 48 is not a multiple of 32
  w.data = bytes.data();
  EXPECT_EQ(error_kind([&] { matvec(w, x.data(), y.data()); }), ErrorKind::InvalidInput);
  EXPECT_EQ(error_kind([&] { dot_row(DType::Q4_K, bytes.data(), x.data(), 100); }), ErrorKind::InvalidInput);
  w.ne = {64, 8, 1, 1};
  w.nbytes = 34 * 8;  // needs 8 rows * 68 bytes
  EXPECT_EQ(error_kind([&] { matvec(w, x.data(), y.data()); }), ErrorKind::InvalidInput);
  w.nbytes = 0;
  w.data = nullptr;
  EXPECT_EQ(error_kind([&] { matmul(w, x.data(), 2, y.data()); }), ErrorKind::InvalidInput);
}

TEST(KernelIsa, ReportsIsa) {
  const std::string isa = kernel_isa();
  EXPECT_TRUE(isa == "avx512vnni" || isa == "avx2" || isa == "scalar") << isa;
#if defined(__AVX512VNNI__) && defined(__AVX512VL__) && defined(__AVX2__)
  EXPECT_EQ(isa, "avx512vnni");
#endif
}

}  // namespace
}  // namespace harmonia
