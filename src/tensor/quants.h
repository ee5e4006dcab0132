#pragma once
// Private to tensor/: GGUF block layouts (ggml-common.h) and the helpers the
// reference and SIMD kernels share. Other subsystems use tensor/ops.h only.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/fp16.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace harmonia::quants {

constexpr int kQK = 32;    // elements per q4_0 / q8_0 block
constexpr int kQK_K = 256; // elements per k-quant super-block

// x = d * q
struct BlockQ8_0 {
  uint16_t d;      // fp16
  int8_t qs[kQK];
};
// x = d * (q - 8); qs[j] low nibble is element j, high nibble element j + 16.
struct BlockQ4_0 {
  uint16_t d;      // fp16
  uint8_t qs[kQK / 2];
};
// Eight sub-blocks of 32: x = d * sc[j] * q - dmin * m[j], q in [0, 15];
// sc/m are 6-bit, packed in scales[12] (see scale_min_k4). qs holds 64-element
// chunks: byte l of chunk c has element 64c + l (low nibble) and 64c + 32 + l (high).
struct BlockQ4_K {
  uint16_t d;      // fp16 super-block scale of the sub-block scales
  uint16_t dmin;   // fp16 super-block scale of the sub-block mins
  uint8_t scales[12];
  uint8_t qs[kQK_K / 2];
};
// As q4_K with a fifth bit: bit j of qh[l] is the high bit of element 32j + l.
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
// Sixteen sub-blocks of 16: x = d * scales[j] * (q - 32), q in [0, 63].
// Per 128-element half h: ql[64h + l] holds elements 128h + l (low nibble) and
// 128h + 64 + l (high nibble) for l < 64; qh[32h + l] holds the top two bits of
// elements 128h + l + {0, 32, 64, 96} in bit pairs {0-1, 2-3, 4-5, 6-7}.
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};

static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);

// Sub-block j (0..7) scale and min of a q4_K/q5_K block (ggml get_scale_min_k4):
// j < 4: low 6 bits of scales[j] and scales[j + 4]; j >= 4: low/high nibble of
// scales[j + 4] plus the top two bits of scales[j - 4] / scales[j].
inline void scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// fp16 -> fp32, using the F16C instruction where the build has it.
inline float half_to_float(uint16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  return f16_to_f32(h);
#endif
}

inline float load_half(const void* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return half_to_float(h);
}

// Round half to even, as ggml's nearest_int (for |v| < 2^22).
inline int nearest_int(float v) { return static_cast<int>(std::nearbyint(v)); }

}  // namespace harmonia::quants
