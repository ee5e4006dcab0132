// Row dot-product kernels (see kernels.h): AVX2 with 256-bit vectors, using
// AVX-512 VNNI's vpdpbusd (256-bit form, AVX512VL) where the build has it, and a
// plain scalar fallback for builds without AVX2.
//
// Each kernel multiplies one weight row with up to kMaxVec activation vectors, so
// a row decoded once serves several vectors (prefill / speculative batches of a
// few tokens); for decode nv = 1. Decode is memory-bound: the kernels only need
// to decode a block faster than DRAM delivers it, keep 2-4 independent
// accumulators so FMA latency never limits a single row, and prefetch the
// weight stream 4 KiB ahead (see prefetch_ahead).
#include "tensor/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/fp16.h"
#include "tensor/ops.h"
#include "tensor/quants.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define HARMONIA_AVX2 1
#include <immintrin.h>
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define HARMONIA_VNNI 1
#endif
#endif

namespace harmonia::kernels {

using namespace quants;

const char* isa_name() {
#if defined(HARMONIA_VNNI)
  return "avx512vnni";
#elif defined(HARMONIA_AVX2)
  return "avx2";
#else
  return "scalar";
#endif
}

namespace {

#if defined(HARMONIA_AVX2)

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// Lane l (of 8 int32) = sum_{k<4} u[4l + k] * s[4l + k], u unsigned, s signed
// bytes. The AVX2 form saturates pair sums at 16 bits: callers keep
// |u| * |s| <= 128 * 127 (true for every use below).
inline __m256i dot_u8s8(__m256i u, __m256i s) {
#if defined(HARMONIA_VNNI)
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

// NOTE: explicit prefetch of the weight stream. The kernels spend 10-20
// instructions per 64-byte line, so the out-of-order window alone covers too
// few lines to keep DRAM busy; without it q8_0 matvec reached ~50% of the
// streaming-read bandwidth on a quiet 2-core run (ops_bench BM_MatvecRoofline).
// Rows are contiguous, so prefetching past a row's end warms the next row.
#ifndef HARMONIA_PREFETCH_BYTES
#define HARMONIA_PREFETCH_BYTES 4096
#endif
constexpr int kPrefetchBytes = HARMONIA_PREFETCH_BYTES;

// Prefetch the lines of [p + kPrefetchBytes, p + kPrefetchBytes + kBytes).
template <int kBytes>
inline void prefetch_ahead(const uint8_t* p) {
  if constexpr (kPrefetchBytes > 0)
    for (int o = 0; o < kBytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchBytes + o), _MM_HINT_T0);
}

// ---- float weights ------------------------------------------------------------

struct LoadF32 {
  static constexpr int kBytes = 4;
  static __m256 vec(const uint8_t* r, int64_t i) { return _mm256_loadu_ps(reinterpret_cast<const float*>(r) + i); }
  static float one(const uint8_t* r, int64_t i) {
    float f;
    std::memcpy(&f, r + 4 * i, 4);
    return f;
  }
};
struct LoadF16 {
  static constexpr int kBytes = 2;
  static __m256 vec(const uint8_t* r, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 2 * i)));
  }
  static float one(const uint8_t* r, int64_t i) { return load_half(r + 2 * i); }
};
struct LoadBF16 {
  static constexpr int kBytes = 2;
  static __m256 vec(const uint8_t* r, int64_t i) {
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 2 * i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
  }
  static float one(const uint8_t* r, int64_t i) {
    uint16_t h;
    std::memcpy(&h, r + 2 * i, 2);
    return bf16_to_f32(h);
  }
};

template <class L, int NV>
void dot_float(const uint8_t* row, int64_t n, const Acts& a, float* out) {
  constexpr int K = NV == 1 ? 4 : 2;  // independent accumulators per vector
  __m256 acc[NV][K];
  for (auto& av : acc)
    for (auto& ak : av) ak = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 * K <= n; i += 8 * K) {
    prefetch_ahead<8 * K * L::kBytes>(row + i * L::kBytes);
    __m256 w[K];
    for (int k = 0; k < K; ++k) w[k] = L::vec(row, i + 8 * k);
    for (int v = 0; v < NV; ++v)
      for (int k = 0; k < K; ++k) acc[v][k] = _mm256_fmadd_ps(w[k], _mm256_loadu_ps(a.x[v] + i + 8 * k), acc[v][k]);
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 w = L::vec(row, i);
    for (int v = 0; v < NV; ++v) acc[v][0] = _mm256_fmadd_ps(w, _mm256_loadu_ps(a.x[v] + i), acc[v][0]);
  }
  for (int v = 0; v < NV; ++v) {
    for (int k = 1; k < K; ++k) acc[v][0] = _mm256_add_ps(acc[v][0], acc[v][k]);
    float s = hsum(acc[v][0]);
    for (int64_t j = i; j < n; ++j) s += L::one(row, j) * a.x[v][j];
    out[v] = s;
  }
}

// ---- 32-element blocks ------------------------------------------------------------

// fp16 scale at p broadcast to 8 lanes (vpbroadcastw + vcvtph2ps).
inline __m256 bcast_half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(h)));
}

template <int NV>
void dot_q8_0(const uint8_t* row, int64_t n, const Acts& a, float* out) {
  const int64_t nb = n / kQK;
  constexpr int K = NV == 1 ? 4 : 2;
  __m256 acc[NV][K];
  for (auto& av : acc)
    for (auto& ak : av) ak = _mm256_setzero_ps();
  auto block = [&](int64_t b, int k) {
    const uint8_t* p = row + b * sizeof(BlockQ8_0);
    const __m256 dw = bcast_half(p);
    const __m256i w = load256(p + 2);
#if defined(HARMONIA_VNNI)
    // (w + 128) is unsigned: sum (w + 128) x - 128 sum x, the last term precomputed
    const __m256i u = _mm256_xor_si256(w, _mm256_set1_epi8(static_cast<char>(0x80)));
#else
    const __m256i aw = _mm256_sign_epi8(w, w);  // |w| * (x * sign(w)): pairs fit int16
#endif
    for (int v = 0; v < NV; ++v) {
      const __m256i x = load256(a.q[v].qs + b * kQK);
#if defined(HARMONIA_VNNI)
      const __m256i si = _mm256_dpbusd_epi32(load256(a.q[v].lsum_m128 + 8 * b), u, x);
#else
      const __m256i si = dot_u8s8(aw, _mm256_sign_epi8(x, w));
#endif
      const __m256 s = _mm256_mul_ps(_mm256_cvtepi32_ps(si), _mm256_set1_ps(a.q[v].d[b]));
      acc[v][k] = _mm256_fmadd_ps(s, dw, acc[v][k]);
    }
  };
  int64_t b = 0;
  for (; b + K <= nb; b += K) {
    prefetch_ahead<K * sizeof(BlockQ8_0)>(row + b * sizeof(BlockQ8_0));
    for (int k = 0; k < K; ++k) block(b + k, k);
  }
  for (; b < nb; ++b) block(b, 0);
  for (int v = 0; v < NV; ++v) {
    for (int k = 1; k < K; ++k) acc[v][0] = _mm256_add_ps(acc[v][0], acc[v][k]);
    out[v] = hsum(acc[v][0]);
  }
}

// Unsigned quants u in [0, 2 kOff) standing for u - kOff, prepared for dot_off.
template <int kOff>
inline __m256i prep_off(__m256i u) {
#if defined(HARMONIA_VNNI)
  return _mm256_add_epi8(u, _mm256_set1_epi8(static_cast<char>(128 - kOff)));  // u - kOff + 128 < 256
#else
  return u;
#endif
}

// Lanes of sum (u - kOff) * x over activation block b, for u from prep_off.
template <int kOff>
inline __m256i dot_off(__m256i u, const Q8Act& a, int64_t b) {
  const __m256i x = load256(a.qs + b * kQK);
#if defined(HARMONIA_VNNI)
  return _mm256_dpbusd_epi32(load256(a.lsum_m128 + 8 * b), u, x);  // starts at -128 sum x
#else
  static_assert(kOff == 8 || kOff == 32);
  constexpr int kShift = kOff == 8 ? 3 : 5;
  return _mm256_sub_epi32(dot_u8s8(u, x), _mm256_slli_epi32(load256(a.lsum + 8 * b), kShift));
#endif
}

template <int NV>
void dot_q4_0(const uint8_t* row, int64_t n, const Acts& a, float* out) {
  const int64_t nb = n / kQK;
  const __m256i m4 = _mm256_set1_epi8(0xF);
  constexpr int K = NV == 1 ? 4 : 2;
  __m256 acc[NV][K];
  for (auto& av : acc)
    for (auto& ak : av) ak = _mm256_setzero_ps();
  auto block = [&](int64_t b, int k) {
    const uint8_t* p = row + b * sizeof(BlockQ4_0);
    const __m256 dw = bcast_half(p);
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2));
    // elements 0..15 = low nibbles, 16..31 = high nibbles; value = q - 8
    const __m256i u = prep_off<8>(_mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4));
    for (int v = 0; v < NV; ++v) {
      const __m256 s = _mm256_mul_ps(_mm256_cvtepi32_ps(dot_off<8>(u, a.q[v], b)), _mm256_set1_ps(a.q[v].d[b]));
      acc[v][k] = _mm256_fmadd_ps(s, dw, acc[v][k]);
    }
  };
  int64_t b = 0;
  for (; b + K <= nb; b += K) {
    prefetch_ahead<K * sizeof(BlockQ4_0)>(row + b * sizeof(BlockQ4_0));
    for (int k = 0; k < K; ++k) block(b + k, k);
  }
  for (; b < nb; ++b) block(b, 0);
  for (int v = 0; v < NV; ++v) {
    for (int k = 1; k < K; ++k) acc[v][0] = _mm256_add_ps(acc[v][0], acc[v][k]);
    out[v] = hsum(acc[v][0]);
  }
}

// ---- 256-element k-quant super-blocks ------------------------------------------------

// The eight 6-bit scales (bytes 0..7) and mins (bytes 8..15) of a q4_K/q5_K
// block: scale_min_k4 for all j at once (ggml's kmask trick).
inline void unpack_scales_k4(const uint8_t* packed, uint32_t u[4]) {
  constexpr uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
  std::memcpy(u, packed, 12);
  u[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
  const uint32_t m_lo = u[1] & kmask1;
  u[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
  u[2] = m_lo;
  u[0] &= kmask1;
}

inline __m256 bytes8_to_ps(const void* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(static_cast<const __m128i*>(p))));
}

// Lane j of v in all 8 lanes (a register permute: no store/reload).
inline __m256 lane(__m256 v, int j) { return _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(j)); }

// Shared by q4_K and q5_K: `quants(p, c, &lo, &hi)` yields the unsigned quants of
// sub-blocks 2c and 2c+1 of the block at p.
template <int NV, size_t kBlockBytes, class Quants>
void dot_k4(const uint8_t* row, int64_t n, const Acts& a, float* out, Quants quants) {
  const int64_t nsb = n / kQK_K;
  __m256 acc[NV][2], accm[NV];
  for (int v = 0; v < NV; ++v) acc[v][0] = acc[v][1] = accm[v] = _mm256_setzero_ps();
  for (int64_t s = 0; s < nsb; ++s) {
    const uint8_t* p = row + s * kBlockBytes;
    prefetch_ahead<kBlockBytes>(p);
    uint32_t u[4];
    unpack_scales_k4(p + 4, u);
    const __m256 sc = _mm256_mul_ps(bytes8_to_ps(&u[0]), bcast_half(p));       // d * sc_j
    const __m256 mn = _mm256_mul_ps(bytes8_to_ps(&u[2]), bcast_half(p + 2));   // dmin * m_j
    const int64_t b0 = s * 8;  // first activation block
    __m256 scale[NV];          // d * sc_j * dx_j
    for (int v = 0; v < NV; ++v) {
      scale[v] = _mm256_mul_ps(sc, _mm256_loadu_ps(a.q[v].d + b0));
      accm[v] = _mm256_fmadd_ps(mn, _mm256_loadu_ps(a.q[v].dsum + b0), accm[v]);
    }
    for (int c = 0; c < 4; ++c) {
      __m256i lo, hi;
      quants(p, c, &lo, &hi);
      for (int v = 0; v < NV; ++v) {
        const int8_t* x = a.q[v].qs + (b0 + 2 * c) * kQK;
        const __m256 s0 = _mm256_cvtepi32_ps(dot_u8s8(lo, load256(x)));
        const __m256 s1 = _mm256_cvtepi32_ps(dot_u8s8(hi, load256(x + kQK)));
        acc[v][0] = _mm256_fmadd_ps(s0, lane(scale[v], 2 * c), acc[v][0]);
        acc[v][1] = _mm256_fmadd_ps(s1, lane(scale[v], 2 * c + 1), acc[v][1]);
      }
    }
  }
  for (int v = 0; v < NV; ++v) out[v] = hsum(_mm256_add_ps(acc[v][0], acc[v][1])) - hsum(accm[v]);
}

template <int NV>
void dot_q4_k(const uint8_t* row, int64_t n, const Acts& a, float* out) {
  const __m256i m4 = _mm256_set1_epi8(0xF);
  dot_k4<NV, sizeof(BlockQ4_K)>(row, n, a, out, [m4](const uint8_t* p, int c, __m256i* lo, __m256i* hi) {
    const __m256i q = load256(p + offsetof(BlockQ4_K, qs) + 32 * c);
    *lo = _mm256_and_si256(q, m4);
    *hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
  });
}

template <int NV>
void dot_q5_k(const uint8_t* row, int64_t n, const Acts& a, float* out) {
  const __m256i m4 = _mm256_set1_epi8(0xF), one = _mm256_set1_epi8(1);
  dot_k4<NV, sizeof(BlockQ5_K)>(row, n, a, out, [=](const uint8_t* p, int c, __m256i* lo, __m256i* hi) {
    const __m256i q = load256(p + offsetof(BlockQ5_K, qs) + 32 * c);
    const __m256i qh = load256(p + offsetof(BlockQ5_K, qh));
    // bit 2c (2c+1) of qh[l] is bit 4 of element l of sub-block 2c (2c+1)
    const __m256i h0 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c)), one);
    const __m256i h1 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c + 1)), one);
    *lo = _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_slli_epi16(h0, 4));
    *hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), _mm256_slli_epi16(h1, 4));
  });
}

template <int NV>
void dot_q6_k(const uint8_t* row, int64_t n, const Acts& a, float* out) {
  const int64_t nsb = n / kQK_K;
  const __m256i m4 = _mm256_set1_epi8(0xF), m2h = _mm256_set1_epi8(0x30);
  constexpr int K = NV == 1 ? 4 : 2;
  __m256 acc[NV][K];
  for (auto& av : acc)
    for (auto& ak : av) ak = _mm256_setzero_ps();
  for (int64_t s = 0; s < nsb; ++s) {
    const uint8_t* p = row + s * sizeof(BlockQ6_K);
    prefetch_ahead<sizeof(BlockQ6_K)>(p);
    const __m256 d = bcast_half(p + offsetof(BlockQ6_K, d));
    const uint8_t* scp = p + offsetof(BlockQ6_K, scales);
    for (int h = 0; h < 2; ++h) {
      // d * scales[8h + i] for the 8 sub-blocks of 16 of this half
      const __m256 sc = _mm256_mul_ps(
          _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(scp + 8 * h)))), d);
      const __m256i ql0 = load256(p + offsetof(BlockQ6_K, ql) + 64 * h);
      const __m256i ql1 = load256(p + offsetof(BlockQ6_K, ql) + 64 * h + 32);
      const __m256i qh = load256(p + offsetof(BlockQ6_K, qh) + 32 * h);
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2h)),
          _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2h)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m2h)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                          _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2h)),
      };
      for (int k = 0; k < 4; ++k) {
        // 32-element group 4h + k: sub-blocks of 16 at lanes 0-3 (scale 2k) and 4-7 (2k + 1)
        const __m256 gs = _mm256_permutevar8x32_ps(sc, _mm256_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k, 2 * k + 1,
                                                                         2 * k + 1, 2 * k + 1, 2 * k + 1));
        const __m256i u = prep_off<32>(q[k]);
        const int64_t b = s * 8 + 4 * h + k;  // activation block
        for (int v = 0; v < NV; ++v) {
          const __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(dot_off<32>(u, a.q[v], b)), _mm256_set1_ps(a.q[v].d[b]));
          acc[v][k % K] = _mm256_fmadd_ps(t, gs, acc[v][k % K]);
        }
      }
    }
  }
  for (int v = 0; v < NV; ++v) {
    for (int k = 1; k < K; ++k) acc[v][0] = _mm256_add_ps(acc[v][0], acc[v][k]);
    out[v] = hsum(acc[v][0]);
  }
}

#define HARMONIA_KERNEL(name, ...)                                                  \
  [](const uint8_t* r, int64_t n, const Acts& a, int nv, float* o) {               \
    switch (nv) {                                                                   \
      case 1: return name<__VA_ARGS__ __VA_OPT__(, ) 1>(r, n, a, o);                \
      case 2: return name<__VA_ARGS__ __VA_OPT__(, ) 2>(r, n, a, o);                \
      case 3: return name<__VA_ARGS__ __VA_OPT__(, ) 3>(r, n, a, o);                \
      default: return name<__VA_ARGS__ __VA_OPT__(, ) 4>(r, n, a, o);               \
    }                                                                               \
  }

#else  // !HARMONIA_AVX2: scalar fallback

template <class Load>
void dot_float_scalar(const uint8_t* row, int64_t n, const Acts& a, int nv, float* out) {
  for (int v = 0; v < nv; ++v) {
    double s = 0;  // keeps the scalar build within the SIMD kernels' tolerance
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(Load::one(row, i)) * a.x[v][i];
    out[v] = static_cast<float>(s);
  }
}
struct LoadF32 {
  static float one(const uint8_t* r, int64_t i) {
    float f;
    std::memcpy(&f, r + 4 * i, 4);
    return f;
  }
};
struct LoadF16 {
  static float one(const uint8_t* r, int64_t i) { return load_half(r + 2 * i); }
};
struct LoadBF16 {
  static float one(const uint8_t* r, int64_t i) {
    uint16_t h;
    std::memcpy(&h, r + 2 * i, 2);
    return bf16_to_f32(h);
  }
};

// Dequantise each block with the reference code, multiply with the dequantised
// 8-bit activations: the same numbers the SIMD kernels compute.
template <DType T>
void dot_blocks_scalar(const uint8_t* row, int64_t n, const Acts& a, int nv, float* out) {
  const auto& info = dtype_info(T);
  float w[kQK_K];
  double sum[kMaxVec] = {};
  for (int64_t b = 0; b < n / info.block_elems; ++b) {
    dequantize_row(T, row + b * info.block_bytes, w, info.block_elems);
    for (int v = 0; v < nv; ++v) {
      const Q8Act& q = a.q[v];
      for (int i = 0; i < info.block_elems; ++i) {
        const int64_t j = b * info.block_elems + i;
        sum[v] += static_cast<double>(w[i]) * (q.d[j / kQK] * q.qs[j]);
      }
    }
  }
  for (int v = 0; v < nv; ++v) out[v] = static_cast<float>(sum[v]);
}

#endif  // HARMONIA_AVX2

}  // namespace

RowKernel row_kernel(DType t) {
#if defined(HARMONIA_AVX2)
  switch (t) {
    case DType::F32: return HARMONIA_KERNEL(dot_float, LoadF32);
    case DType::F16: return HARMONIA_KERNEL(dot_float, LoadF16);
    case DType::BF16: return HARMONIA_KERNEL(dot_float, LoadBF16);
    case DType::Q8_0: return HARMONIA_KERNEL(dot_q8_0);
    case DType::Q4_0: return HARMONIA_KERNEL(dot_q4_0);
    case DType::Q4_K: return HARMONIA_KERNEL(dot_q4_k);
    case DType::Q5_K: return HARMONIA_KERNEL(dot_q5_k);
    case DType::Q6_K: return HARMONIA_KERNEL(dot_q6_k);
    default: return nullptr;
  }
#else
  switch (t) {
    case DType::F32: return dot_float_scalar<LoadF32>;
    case DType::F16: return dot_float_scalar<LoadF16>;
    case DType::BF16: return dot_float_scalar<LoadBF16>;
    case DType::Q8_0: return dot_blocks_scalar<DType::Q8_0>;
    case DType::Q4_0: return dot_blocks_scalar<DType::Q4_0>;
    case DType::Q4_K: return dot_blocks_scalar<DType::Q4_K>;
    case DType::Q5_K: return dot_blocks_scalar<DType::Q5_K>;
    case DType::Q6_K: return dot_blocks_scalar<DType::Q6_K>;
    default: return nullptr;
  }
#endif
}

bool uses_q8_act(DType t) {
  switch (t) {
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: return true;
    default: return false;
  }
}

// ---- activation quantisation ---------------------------------------------------------

void Q8ActBuffer::quantize(const float* X, int64_t count, int64_t n) {
  const int64_t nb = n / kQK;
  n_ = n;
  count_ = count;
  const auto total = static_cast<size_t>(count * nb);
  if (d_.size() < total) {
    d_.resize(total);
    dsum_.resize(total);
    lsum_.resize(total * 8);
    lsum_m128_.resize(total * 8);
    qs_.resize(total * kQK);
  }
  for (int64_t b = 0; b < count * nb; ++b) {
    const float* x = X + b * kQK;  // rows are contiguous and n % 32 == 0
    int8_t* q = qs_.data() + b * kQK;
    int32_t* ls = lsum_.data() + b * 8;
#if defined(HARMONIA_AVX2)
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm256_loadu_ps(x + 8 * k);
      amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[k]));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float d = _mm_cvtss_f32(m) / 127.0f;
    const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    __m256i i[4];
    for (int k = 0; k < 4; ++k) i[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], id));  // nearest even
    // packs interleave 128-bit lanes; the permute restores element order
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
    const __m256i qv = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), qv);
    const __m256i lv = dot_u8s8(_mm256_set1_epi8(1), qv);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(ls), lv);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(lsum_m128_.data() + b * 8),
                        _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(lv, 7)));
    d_[b] = d;
    dsum_[b] = d * static_cast<float>(hsum_i32(lv));
#else
    float amax = 0;
    for (int k = 0; k < kQK; ++k) amax = std::max(amax, std::fabs(x[k]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int k = 0; k < kQK; ++k) {
      q[k] = static_cast<int8_t>(std::nearbyint(x[k] * id));  // nearest even, as cvtps
      sum += q[k];
    }
    for (int l = 0; l < 8; ++l) {
      ls[l] = q[4 * l] + q[4 * l + 1] + q[4 * l + 2] + q[4 * l + 3];
      lsum_m128_[b * 8 + l] = -128 * ls[l];
    }
    d_[b] = d;
    dsum_[b] = d * static_cast<float>(sum);
#endif
  }
}

Q8Act Q8ActBuffer::view(int64_t i) const {
  const int64_t nb = n_ / kQK;
  Q8Act a;
  a.n = n_;
  a.d = d_.data() + i * nb;
  a.dsum = dsum_.data() + i * nb;
  a.lsum = lsum_.data() + i * nb * 8;
  a.lsum_m128 = lsum_m128_.data() + i * nb * 8;
  a.qs = qs_.data() + i * n_;
  return a;
}

}  // namespace harmonia::kernels
