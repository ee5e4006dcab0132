// Block layouts and reference quantisers (tensor/quants.cpp).
//
// The layout tests write block bytes by hand from the GGUF format description
// (ggml-common.h) and assert the exact dequantised values; they do not use the
// library's own packing code. The quantiser tests bound the round-trip error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/error.h"
#include "common/fp16.h"
#include "tensor/ops.h"
#include "tensor/test_util.h"

namespace harmonia {
namespace {

// fp16 bit patterns of exactly representable scales
constexpr uint16_t kHalf1 = 0x3C00, kHalf0_5 = 0x3800, kHalf0_25 = 0x3400, kHalf0_125 = 0x3000, kHalf2 = 0x4000;

void put_half(std::vector<uint8_t>& b, size_t off, uint16_t h) {
  b[off] = static_cast<uint8_t>(h & 0xFF);
  b[off + 1] = static_cast<uint8_t>(h >> 8);
}

std::vector<float> dequant(DType t, const std::vector<uint8_t>& bytes, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  dequantize_row(t, bytes.data(), y.data(), n);
  return y;
}

// ---- hand-built blocks ----------------------------------------------------------

TEST(BlockLayout, Q8_0) {
  // block_q8_0 { f16 d; int8 qs[32] } (34 bytes), x = d * q
  std::vector<uint8_t> b(2 * 34);
  for (int blk = 0; blk < 2; ++blk) {
    put_half(b, 34 * blk, blk == 0 ? kHalf0_5 : kHalf2);
    for (int j = 0; j < 32; ++j) b[34 * blk + 2 + j] = static_cast<uint8_t>(static_cast<int8_t>(8 * j - 127));
  }
  const auto y = dequant(DType::Q8_0, b, 64);
  for (int j = 0; j < 32; ++j) {
    EXPECT_EQ(y[j], 0.5f * (8 * j - 127)) << j;
    EXPECT_EQ(y[32 + j], 2.0f * (8 * j - 127)) << j;
  }
  EXPECT_EQ(y[0], -63.5f);
  EXPECT_EQ(y[63], 2.0f * 121);
}

TEST(BlockLayout, Q4_0) {
  // block_q4_0 { f16 d; u8 qs[16] } (18 bytes), x = d * (q - 8);
  // qs[j] low nibble = element j, high nibble = element j + 16.
  std::vector<uint8_t> b(18);
  put_half(b, 0, kHalf0_25);
  for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const auto y = dequant(DType::Q4_0, b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.25f * (j - 8)) << j;
    EXPECT_EQ(y[16 + j], 0.25f * (7 - j)) << j;
  }
  EXPECT_EQ(y[0], -2.0f);
  EXPECT_EQ(y[16], 1.75f);
  EXPECT_EQ(y[31], -2.0f);
}

// The 12 scale bytes of a q4_K/q5_K block from 6-bit scales sc[8] and mins m[8]:
// bytes 0-3: sc[0..3] | (sc[4..7] >> 4) << 6; bytes 4-7: m[0..3] | (m[4..7] >> 4) << 6;
// bytes 8-11: (sc[4..7] & 15) | (m[4..7] & 15) << 4.
void put_k4_scales(std::vector<uint8_t>& b, size_t off, const int sc[8], const int m[8]) {
  for (int j = 0; j < 4; ++j) {
    b[off + j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    b[off + 4 + j] = static_cast<uint8_t>(m[j] | ((m[j + 4] >> 4) << 6));
    b[off + 8 + j] = static_cast<uint8_t>((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
  }
}

constexpr int kSc[8] = {1, 2, 3, 63, 17, 33, 48, 5};  // >= 16 in 4..7 exercises the top bits
constexpr int kMin[8] = {0, 1, 62, 4, 35, 16, 63, 2};

TEST(BlockLayout, Q4_K) {
  // block_q4_K { f16 d; f16 dmin; u8 scales[12]; u8 qs[128] } (144 bytes);
  // element e = 32 j + l of sub-block j: x = d * sc[j] * q - dmin * m[j], with q the
  // low (j even) or high (j odd) nibble of qs[32 (j / 2) + l].
  std::vector<uint8_t> b(144, 0);
  put_half(b, 0, kHalf1);
  put_half(b, 2, kHalf0_5);
  put_k4_scales(b, 4, kSc, kMin);
  auto q_of = [](int e) { return (7 * e + 3) % 16; };
  for (int e = 0; e < 256; ++e) {
    const int j = e / 32, l = e % 32;
    b[16 + 32 * (j / 2) + l] |= static_cast<uint8_t>(q_of(e) << (j % 2 ? 4 : 0));
  }
  const auto y = dequant(DType::Q4_K, b, 256);
  for (int e = 0; e < 256; ++e) {
    const int j = e / 32;
    EXPECT_EQ(y[e], 1.0f * kSc[j] * q_of(e) - 0.5f * kMin[j]) << e;
  }
  EXPECT_EQ(y[0], 3.0f);      // sub-block 0: 1 * 1 * 3 - 0.5 * 0
  EXPECT_EQ(y[193], 448.5f);  // sub-block 6 (sc 48, m 63), q = 1354 % 16 = 10: 480 - 31.5
}

TEST(BlockLayout, Q5_K) {
  // block_q5_K { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] } (176 bytes);
  // as q4_K, with bit 4 of q in bit j of qh[l] for element 32 j + l.
  std::vector<uint8_t> b(176, 0);
  put_half(b, 0, kHalf0_5);
  put_half(b, 2, kHalf0_25);
  put_k4_scales(b, 4, kSc, kMin);
  auto q_of = [](int e) { return (11 * e + 5) % 32; };
  for (int e = 0; e < 256; ++e) {
    const int j = e / 32, l = e % 32, q = q_of(e);
    b[48 + 32 * (j / 2) + l] |= static_cast<uint8_t>((q & 15) << (j % 2 ? 4 : 0));
    b[16 + l] |= static_cast<uint8_t>((q >> 4) << j);
  }
  const auto y = dequant(DType::Q5_K, b, 256);
  for (int e = 0; e < 256; ++e) {
    const int j = e / 32;
    EXPECT_EQ(y[e], 0.5f * kSc[j] * q_of(e) - 0.25f * kMin[j]) << e;
  }
  EXPECT_EQ(y[1], 8.0f);  // e = 1: q = 16 (only the qh bit set), sc 1, m 0: 0.5 * 16
}

TEST(BlockLayout, Q6_K) {
  // block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d } (210 bytes);
  // x = d * scales[e / 16] * (q - 32). Element e = 128 h + 32 k + l (k < 4, l < 32):
  // low 4 bits in ql[64 h + 32 (k % 2) + l] (low nibble for k < 2, high for k >= 2),
  // top 2 bits in bits 2k, 2k+1 of qh[32 h + l].
  std::vector<uint8_t> b(210, 0);
  const int8_t sc[16] = {1, -2, 3, -4, 5, -6, 7, -8, 127, -128, 16, -16, 0, 2, -1, 9};
  for (int i = 0; i < 16; ++i) b[192 + i] = static_cast<uint8_t>(sc[i]);
  put_half(b, 208, kHalf0_125);
  auto q_of = [](int e) { return (13 * e + 7) % 64; };
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, k = (e % 128) / 32, l = e % 32, q = q_of(e);
    b[64 * h + 32 * (k % 2) + l] |= static_cast<uint8_t>((q & 15) << (k >= 2 ? 4 : 0));
    b[128 + 32 * h + l] |= static_cast<uint8_t>((q >> 4) << (2 * k));
  }
  const auto y = dequant(DType::Q6_K, b, 256);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], 0.125f * sc[e / 16] * (q_of(e) - 32)) << e;
  EXPECT_EQ(y[0], -3.125f);   // 0.125 * 1 * (7 - 32)
  EXPECT_EQ(y[144], 144.0f);  // scales[9] = -128, q = 1879 % 64 = 23: 0.125 * -128 * -9
}

TEST(BlockLayout, F16AndBF16) {
  std::vector<uint8_t> h(4), bf(4);
  put_half(h, 0, 0xC000);  // -2
  put_half(h, 2, 0x0001);  // smallest subnormal, 2^-24
  put_half(bf, 0, 0x3F80);  // 1
  put_half(bf, 2, 0xC0A0);  // -5
  const auto yh = dequant(DType::F16, h, 2);
  const auto yb = dequant(DType::BF16, bf, 2);
  EXPECT_EQ(yh[0], -2.0f);
  EXPECT_EQ(yh[1], std::ldexp(1.0f, -24));
  EXPECT_EQ(yb[0], 1.0f);
  EXPECT_EQ(yb[1], -5.0f);
}

// ---- quantise -> dequantise error bounds ---------------------------------------------

float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

std::vector<uint8_t> quant(DType t, const std::vector<float>& x) {
  std::vector<uint8_t> b(row_bytes(t, static_cast<int64_t>(x.size())));
  quantize_row(t, x.data(), b.data(), static_cast<int64_t>(x.size()));
  return b;
}

TEST(Quantize, FloatTypes) {
  std::mt19937 rng(1);
  const auto x = testing::random_floats(rng, 4096);
  const auto y32 = dequant(DType::F32, quant(DType::F32, x), 4096);
  const auto y16 = dequant(DType::F16, quant(DType::F16, x), 4096);
  const auto yb = dequant(DType::BF16, quant(DType::BF16, x), 4096);
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(y32[i], x[i]);
    // round to nearest: half a unit in the last place, 11 / 8 significant bits
    EXPECT_LE(std::fabs(y16[i] - x[i]), std::max(std::fabs(x[i]) * 0x1p-11f, 0x1p-25f)) << i;
    EXPECT_LE(std::fabs(yb[i] - x[i]), std::fabs(x[i]) * 0x1p-8f) << i;
  }
}

// q8_0: d = max|x| / 127 (rounded to fp16), every element within d/2.
TEST(Quantize, Q8_0ErrorAtMostHalfScale) {
  std::mt19937 rng(2);
  for (float scale : {1e-3f, 1.0f, 300.0f}) {
    const auto x = testing::random_floats(rng, 32 * 64, scale);
    const auto b = quant(DType::Q8_0, x);
    const auto y = dequant(DType::Q8_0, b, static_cast<int64_t>(x.size()));
    for (size_t blk = 0; blk < x.size() / 32; ++blk) {
      const float d = half_at(&b[34 * blk]);
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * blk + j]));
      // fp16 rounding: half an ulp, absolute 2^-25 where d is subnormal (< 2^-14)
      EXPECT_NEAR(d, amax / 127, std::max(amax / 127 * 0x1p-11f, 0x1p-25f));
      for (int j = 0; j < 32; ++j)
        EXPECT_LE(std::fabs(y[32 * blk + j] - x[32 * blk + j]), 0.5f * d * (1 + 1e-6f)) << blk << " " << j;
    }
  }
}

// q4_0: d = -max / 8 where max is the value of largest magnitude, so quants span
// [-8, 7]: within |d|/2, except values beyond 7.5 |d| on the far side, which clamp
// to 7 and are within |d|.
TEST(Quantize, Q4_0ErrorAtMostHalfScale) {
  std::mt19937 rng(3);
  const auto x = testing::random_floats(rng, 32 * 256);
  const auto b = quant(DType::Q4_0, x);
  const auto y = dequant(DType::Q4_0, b, static_cast<int64_t>(x.size()));
  int clamped = 0;
  for (size_t blk = 0; blk < x.size() / 32; ++blk) {
    const float d = half_at(&b[18 * blk]);
    for (int j = 0; j < 32; ++j) {
      const float xi = x[32 * blk + j], err = std::fabs(y[32 * blk + j] - xi);
      if (xi / d > 7.5f) {
        ++clamped;
        EXPECT_LE(err, std::fabs(d) * (1 + 1e-6f));
      } else {
        EXPECT_LE(err, 0.5f * std::fabs(d) * (1 + 1e-6f)) << blk << " " << j;
      }
    }
  }
  EXPECT_LT(clamped, 32 * 256 / 50);
}

// k-quants have no simple per-element bound (their scale search trades a few
// clamped values for a better fit), so bound the RMS error relative to the RMS of
// the data (llama.cpp's test-quantize-fns checks total error the same way) and the
// largest error relative to the largest |x| of its 256-block. Measured on this
// data: rel. RMS q4_K 0.072, q5_K 0.036, q6_K 0.018 (q4_0 0.087, q8_0 0.0053);
// max q4_K 0.074, q5_K 0.049, q6_K 0.040 (at scale 1e-3, where q6_K's fp16
// super-block scale is subnormal; 0.016 otherwise). Bounds are ~1.25x those.
struct KQuantCase {
  DType t;
  double max_rel_rmse;  // rms(err) / rms(x)
  double max_rel_err;   // max|err| / max|x| per 256-block
};

void PrintTo(const KQuantCase& c, std::ostream* os) { *os << dtype_name(c.t); }

class QuantizeK : public ::testing::TestWithParam<KQuantCase> {};

TEST_P(QuantizeK, RoundTripError) {
  const auto c = GetParam();
  std::mt19937 rng(4);
  for (float scale : {1e-3f, 1.0f, 50.0f}) {
    std::vector<float> x(256 * 64);
    std::normal_distribution<float> nd(0.0f, scale);
    for (auto& v : x) v = nd(rng);
    const auto y = dequant(c.t, quant(c.t, x), static_cast<int64_t>(x.size()));
    double se = 0, sx = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      se += (double(y[i]) - x[i]) * (double(y[i]) - x[i]);
      sx += double(x[i]) * x[i];
    }
    EXPECT_LE(std::sqrt(se / sx), c.max_rel_rmse) << dtype_name(c.t) << " scale " << scale;
    for (size_t blk = 0; blk < x.size() / 256; ++blk) {
      float amax = 0, emax = 0;
      for (int j = 0; j < 256; ++j) {
        amax = std::max(amax, std::fabs(x[256 * blk + j]));
        emax = std::max(emax, std::fabs(y[256 * blk + j] - x[256 * blk + j]));
      }
      EXPECT_LE(emax, c.max_rel_err * amax) << dtype_name(c.t) << " block " << blk;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(KQuants, QuantizeK,
                         ::testing::Values(KQuantCase{DType::Q4_K, 0.09, 0.095}, KQuantCase{DType::Q5_K, 0.045, 0.062},
                                           KQuantCase{DType::Q6_K, 0.023, 0.05}),
                         [](const auto& tp) { return std::string(dtype_name(tp.param.t)); });

TEST(Quantize, ZeroRowsStayZero) {
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    const std::vector<float> x(512, 0.0f);
    const auto y = dequant(t, quant(t, x), 512);
    for (float v : y) EXPECT_EQ(v, 0.0f) << dtype_name(t);
  }
}

// A constant row: the k-quants fit it through their min / their scale.
TEST(Quantize, ConstantRows) {
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    for (float c : {-3.0f, 0.75f}) {
      const std::vector<float> x(256, c);
      const auto y = dequant(t, quant(t, x), 256);
      for (float v : y) EXPECT_NEAR(v, c, std::fabs(c) * 0.02f) << dtype_name(t) << " " << c;
    }
  }
}

// ---- errors -------------------------------------------------------------------------

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

TEST(Quantize, UnsupportedTypesThrow) {
  std::vector<uint8_t> b(1024);
  std::vector<float> x(256);
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_1, DType::Q5_0, DType::Q8_K}) {
    EXPECT_EQ(error_kind([&] { dequantize_row(t, b.data(), x.data(), 256); }), ErrorKind::Unsupported)
        << dtype_name(t);
    EXPECT_EQ(error_kind([&] { quantize_row(t, x.data(), b.data(), 256); }), ErrorKind::Unsupported)
        << dtype_name(t);
  }
  EXPECT_EQ(error_kind([&] { dequantize_row(static_cast<DType>(99), b.data(), x.data(), 32); }),
            ErrorKind::InvalidInput);
}

TEST(Quantize, PartialBlockThrows) {
  std::vector<uint8_t> b(1024);
  std::vector<float> x(256);
  EXPECT_EQ(error_kind([&] { dequantize_row(DType::Q8_0, b.data(), x.data(), 48); }), ErrorKind::InvalidInput);
  EXPECT_EQ(error_kind([&] { quantize_row(DType::Q4_K, x.data(), b.data(), 128); }), ErrorKind::InvalidInput);
}

}  // namespace
}  // namespace harmonia
