// Reference (plain scalar) row conversion between fp32 and the GGUF block
// formats: dequantize_row and quantize_row. Layouts follow ggml-common.h; the
// quantisers follow llama.cpp's quantize_row_*_ref (ggml-quants.c), including
// the weighted scale searches of the k-quants (make_qkx2_quants /
// make_qx_quants), so `make-model` files look like llama.cpp's.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/error.h"
#include "common/fp16.h"
#include "tensor/ops.h"
#include "tensor/quants.h"

namespace harmonia {

using namespace quants;

namespace {

constexpr float kGroupMaxEps = 1e-15f;  // ggml GROUP_MAX_EPS

// ---- dequantisation, one block at a time -------------------------------------

void dequant_q8_0(const BlockQ8_0& b, float* y) {
  const float d = half_to_float(b.d);
  for (int j = 0; j < kQK; ++j) y[j] = d * b.qs[j];
}

void dequant_q4_0(const BlockQ4_0& b, float* y) {
  const float d = half_to_float(b.d);
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * ((b.qs[j] & 0xF) - 8);
    y[j + kQK / 2] = d * ((b.qs[j] >> 4) - 8);
  }
}

void dequant_q4_k(const BlockQ4_K& b, float* y) {
  const float d = half_to_float(b.d), dmin = half_to_float(b.dmin);
  const uint8_t* q = b.qs;
  for (int c = 0; c < 4; ++c, q += 32, y += 64) {  // 64-element chunk = sub-blocks 2c, 2c+1
    uint8_t sc0, m0, sc1, m1;
    scale_min_k4(2 * c, b.scales, &sc0, &m0);
    scale_min_k4(2 * c + 1, b.scales, &sc1, &m1);
    const float d0 = d * sc0, mm0 = dmin * m0, d1 = d * sc1, mm1 = dmin * m1;
    for (int l = 0; l < 32; ++l) y[l] = d0 * (q[l] & 0xF) - mm0;
    for (int l = 0; l < 32; ++l) y[l + 32] = d1 * (q[l] >> 4) - mm1;
  }
}

void dequant_q5_k(const BlockQ5_K& b, float* y) {
  const float d = half_to_float(b.d), dmin = half_to_float(b.dmin);
  const uint8_t* q = b.qs;
  for (int c = 0; c < 4; ++c, q += 32, y += 64) {
    uint8_t sc0, m0, sc1, m1;
    scale_min_k4(2 * c, b.scales, &sc0, &m0);
    scale_min_k4(2 * c + 1, b.scales, &sc1, &m1);
    const float d0 = d * sc0, mm0 = dmin * m0, d1 = d * sc1, mm1 = dmin * m1;
    const int bit0 = 2 * c, bit1 = 2 * c + 1;  // qh bit of sub-block 2c, 2c+1
    for (int l = 0; l < 32; ++l)
      y[l] = d0 * ((q[l] & 0xF) | (((b.qh[l] >> bit0) & 1) << 4)) - mm0;
    for (int l = 0; l < 32; ++l)
      y[l + 32] = d1 * ((q[l] >> 4) | (((b.qh[l] >> bit1) & 1) << 4)) - mm1;
  }
}

void dequant_q6_k(const BlockQ6_K& b, float* y) {
  const float d = half_to_float(b.d);
  for (int h = 0; h < 2; ++h, y += 128) {
    const uint8_t* ql = b.ql + 64 * h;
    const uint8_t* qh = b.qh + 32 * h;
    const int8_t* sc = b.scales + 8 * h;
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l + 0] = d * sc[is + 0] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
  }
}

template <class Block, void (*F)(const Block&, float*)>
void dequant_blocks(const void* src, float* dst, int64_t n, int block_elems) {
  const auto* p = static_cast<const uint8_t*>(src);
  for (int64_t b = 0; b < n / block_elems; ++b) {
    Block blk;  // copy: rows of a mapped file need not be aligned
    std::memcpy(&blk, p + b * sizeof(Block), sizeof(Block));
    F(blk, dst + b * block_elems);
  }
}

// ---- quantisation helpers (llama.cpp ggml-quants.c) -----------------------------

// Weighted least-squares fit of x ~ scale * L - min with L in [0, nmax], searching
// nstep + 1 candidate inverse scales (rmin + rdelta * is + nmax) / (max - min).
// Returns scale; *the_min = min (>= 0). ggml make_qkx2_quants with use_mad = false.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0];
  float sum_w = weights[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    min = std::min(min, x[i]);
    max = std::max(max, x[i]);
    sum_w += weights[i];
    sum_x += weights[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill(L, L + n, 0);
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_err = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
    L[i] = static_cast<uint8_t>(l);
    const float diff = scale * l + min - x[i];
    best_err += weights[i] * diff * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float err = 0;
      for (int i = 0; i < n; ++i) {
        const float diff = this_scale * Laux[i] + this_min - x[i];
        err += weights[i] * diff * diff;
      }
      if (err < best_err) {
        std::copy(Laux, Laux + n, L);
        best_err = err;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// Symmetric fit x ~ scale * (L - nmax), L in [0, 2 nmax), weights x^2, searching
// 19 inverse scales around nmax / max|x|. ggml make_qx_quants with rmse_type = 1.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, 0);
    return 0.f;
  }
  auto fit = [&](float iscale, float* sumlx, float* suml2, bool store) {
    *sumlx = *suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      if (store) L[i] = static_cast<int8_t>(l + nmax);
      const float w = x[i] * x[i];
      *sumlx += w * x[i] * l;
      *suml2 += w * l * l;
    }
  };
  float sumlx, suml2;
  fit(-nmax / max, &sumlx, &suml2, true);
  float scale = suml2 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    const float iscale = -(nmax + 0.1f * is) / max;
    fit(iscale, &sumlx, &suml2, false);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      fit(iscale, &sumlx, &suml2, true);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// ---- quantisation, one block at a time ---------------------------------------------

// NOTE: q8_0 and q4_0 compute the quants with the fp16-rounded scale (llama.cpp
// uses the unrounded one), so every element is within d/2 of its value for the
// stored d (d for q4_0's clamped end) rather than d/2 + 127 * rounding(d).
void quant_q8_0(const float* x, BlockQ8_0* y) {
  float amax = 0;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
  y->d = f32_to_f16(amax / 127);
  const float d = half_to_float(y->d);
  const float id = d ? 1.0f / d : 0.0f;
  for (int j = 0; j < kQK; ++j) y->qs[j] = static_cast<int8_t>(std::clamp(nearest_int(x[j] * id), -127, 127));
}

void quant_q4_0(const float* x, BlockQ4_0* y) {
  float amax = 0, max = 0;  // max: the signed value of largest magnitude
  for (int j = 0; j < kQK; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  y->d = f32_to_f16(max / -8);
  const float d = half_to_float(y->d);
  const float id = d ? 1.0f / d : 0.0f;
  for (int j = 0; j < kQK / 2; ++j) {
    const int q0 = std::clamp(static_cast<int>(x[j] * id + 8.5f), 0, 15);
    const int q1 = std::clamp(static_cast<int>(x[j + kQK / 2] * id + 8.5f), 0, 15);
    y->qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
  }
}

// Shared by q4_K (nmax 15) and q5_K (nmax 31): sub-block scales and mins, packed
// into 6 bits each, then the quants L[256] recomputed with the packed values.
void quant_k_scales(const float* x, int nmax, float rmin, int nstep, uint16_t* d_out,
                    uint16_t* dmin_out, uint8_t* packed, uint8_t* L) {
  float weights[32], mins[8], scales[8];
  uint8_t Laux[32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin,
                                 0.1f, nstep);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  std::memset(packed, 0, 12);
  for (int j = 0; j < 8; ++j) {
    const int ls = std::clamp(nearest_int(inv_scale * scales[j]), 0, 63);
    const int lm = std::clamp(nearest_int(inv_min * mins[j]), 0, 63);
    if (j < 4) {
      packed[j] = static_cast<uint8_t>(ls);
      packed[j + 4] = static_cast<uint8_t>(lm);
    } else {
      packed[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      packed[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      packed[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
  *d_out = f32_to_f16(max_scale / 63.f);
  *dmin_out = f32_to_f16(max_min / 63.f);
  const float d = half_to_float(*d_out), dmin = half_to_float(*dmin_out);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    scale_min_k4(j, packed, &sc, &m);
    const float ds = d * sc;
    if (!ds) continue;
    const float dm = dmin * m;
    for (int l = 0; l < 32; ++l)
      L[32 * j + l] = static_cast<uint8_t>(std::clamp(nearest_int((x[32 * j + l] + dm) / ds), 0, nmax));
  }
}

void quant_q4_k(const float* x, BlockQ4_K* y) {
  uint8_t L[kQK_K];
  quant_k_scales(x, 15, -1.f, 20, &y->d, &y->dmin, y->scales, L);
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l)
      y->qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
}

void quant_q5_k(const float* x, BlockQ5_K* y) {
  uint8_t L[kQK_K];
  quant_k_scales(x, 31, -0.5f, 15, &y->d, &y->dmin, y->scales, L);
  std::memset(y->qh, 0, sizeof(y->qh));
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      const int l0 = L[64 * c + l], l1 = L[64 * c + 32 + l];
      y->qs[32 * c + l] = static_cast<uint8_t>((l0 & 0xF) | ((l1 & 0xF) << 4));
      y->qh[l] |= static_cast<uint8_t>(((l0 >> 4) << (2 * c)) | ((l1 >> 4) << (2 * c + 1)));
    }
  }
}

void quant_q6_k(const float* x, BlockQ6_K* y) {
  int8_t L[kQK_K];
  float scales[16];
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < 16; ++ib) {
    scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
    if (std::fabs(scales[ib]) > max_abs_scale) {
      max_abs_scale = std::fabs(scales[ib]);
      max_scale = scales[ib];
    }
  }
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(y, 0, sizeof(*y));
    return;
  }
  const float iscale = -128.f / max_scale;
  y->d = f32_to_f16(1 / iscale);
  for (int ib = 0; ib < 16; ++ib)
    y->scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
  const float d = half_to_float(y->d);
  for (int j = 0; j < 16; ++j) {
    const float ds = d * y->scales[j];
    if (!ds) continue;
    for (int l = 0; l < 16; ++l)
      L[16 * j + l] = static_cast<int8_t>(std::clamp(nearest_int(x[16 * j + l] / ds), -32, 31) + 32);
  }
  for (int h = 0; h < 2; ++h) {
    const int8_t* Lh = L + 128 * h;
    for (int l = 0; l < 32; ++l) {
      y->ql[64 * h + l] = static_cast<uint8_t>((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
      y->ql[64 * h + l + 32] = static_cast<uint8_t>((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
      y->qh[32 * h + l] = static_cast<uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) |
                                               ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
    }
  }
}

template <class Block, void (*F)(const float*, Block*)>
void quant_blocks(const float* src, void* dst, int64_t n, int block_elems) {
  auto* p = static_cast<uint8_t*>(dst);
  for (int64_t b = 0; b < n / block_elems; ++b) {
    Block blk;
    F(src + b * block_elems, &blk);
    std::memcpy(p + b * sizeof(Block), &blk, sizeof(Block));
  }
}

}  // namespace

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  (void)row_bytes(t, n);  // validates the block multiple
  const auto* p = static_cast<const uint8_t*>(src);
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = load_half(p + 2 * i);
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
      }
      return;
    case DType::Q8_0: return dequant_blocks<BlockQ8_0, dequant_q8_0>(src, dst, n, kQK);
    case DType::Q4_0: return dequant_blocks<BlockQ4_0, dequant_q4_0>(src, dst, n, kQK);
    case DType::Q4_K: return dequant_blocks<BlockQ4_K, dequant_q4_k>(src, dst, n, kQK_K);
    case DType::Q5_K: return dequant_blocks<BlockQ5_K, dequant_q5_k>(src, dst, n, kQK_K);
    case DType::Q6_K: return dequant_blocks<BlockQ6_K, dequant_q6_k>(src, dst, n, kQK_K);
    default:
      fail(ErrorKind::Unsupported, "dequantize_row: no kernel for tensor type {}", dtype_name(t));
  }
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  (void)row_bytes(t, n);
  auto* p = static_cast<uint8_t*>(dst);
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_f16(src[i]);
        std::memcpy(p + 2 * i, &h, 2);
      }
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_bf16(src[i]);
        std::memcpy(p + 2 * i, &h, 2);
      }
      return;
    case DType::Q8_0: return quant_blocks<BlockQ8_0, quant_q8_0>(src, dst, n, kQK);
    case DType::Q4_0: return quant_blocks<BlockQ4_0, quant_q4_0>(src, dst, n, kQK);
    case DType::Q4_K: return quant_blocks<BlockQ4_K, quant_q4_k>(src, dst, n, kQK_K);
    case DType::Q5_K: return quant_blocks<BlockQ5_K, quant_q5_k>(src, dst, n, kQK_K);
    case DType::Q6_K: return quant_blocks<BlockQ6_K, quant_q6_k>(src, dst, n, kQK_K);
    default:
      fail(ErrorKind::Unsupported, "quantize_row: no kernel for tensor type {}", dtype_name(t));
  }
}

}  // namespace harmonia
