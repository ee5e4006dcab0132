#pragma once
// Decode/prefill attention inner loops over contiguous fp32 K/V rows, shared by
// the policies' exact segments (kv/full.cpp). Three steps per query group:
//   scores   S[g][t] = scale * q_g . k_t            (rows of K read once for the whole GQA group)
//   softmax  P[g][:] = exp(S[g][:] - max) / sum      (in place)
//   values   o_g    += sum_t P[g][t] v_t             (V read once per block of 256 keys)
// With AVX-512 and head_dim in {16, 32, 64, 128, 256} these run on 16-float vectors with a
// polynomial exp (relative error < 2e-7 on [-87, 0]); otherwise plain loops that
// the compiler vectorises. Both are tested against double-precision attention
// (kv/full_test.cpp, kv/attn_kernels_test.cpp).
#include <algorithm>
#include <cmath>
#include <cstdint>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

// GCC 12 warns that the intrinsics' internal _mm512_undefined_ps() is
// uninitialised (a false positive, fixed in GCC 13).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace harmonia::kv::attn {

// Keys per block of the values step: 256 rows of head_dim 128 are 128 KiB, so
// the block's V rows stay in L2 while every query of the group reads them.
inline constexpr int64_t kValueBlock = 256;

#if defined(__AVX512F__)
// exp(x) for x <= 0 (softmax inputs after the max is subtracted), 16 lanes:
// x = n ln2 + r with |r| <= ln2/2, exp(r) by a degree-7 Taylor/Horner
// polynomial, times 2^n (scalef). x < -87.3 gives 0.
inline __m512 exp16(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.3f);
  const __mmask16 tiny = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_max_ps(x, lo);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // ln2 split in two for accuracy
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~tiny), _mm512_scalef_ps(p, n));
}
#endif

#if defined(__AVX512F__)
template <int NV>  // head_dim = 16 * NV
inline void scores16(const float* q, int group, const float* k, int64_t n, float scale, float* sc, int64_t ld) {
  constexpr int hd = 16 * NV;
  for (int64_t t = 0; t < n; ++t) {
    const float* kt = k + t * hd;
    __m512 kv[NV];
    for (int j = 0; j < NV; ++j) kv[j] = _mm512_loadu_ps(kt + 16 * j);
    for (int g = 0; g < group; ++g) {
      const float* qg = q + g * hd;
      __m512 a = _mm512_mul_ps(_mm512_loadu_ps(qg), kv[0]);
      for (int j = 1; j < NV; ++j) a = _mm512_fmadd_ps(_mm512_loadu_ps(qg + 16 * j), kv[j], a);
      sc[g * ld + t] = _mm512_reduce_add_ps(a) * scale;
    }
  }
}

template <int NV>
inline void values16(const float* p, int64_t ld, int group, const float* v, int64_t n, float* o) {
  constexpr int hd = 16 * NV;
  for (int64_t t0 = 0; t0 < n; t0 += kValueBlock) {
    const int64_t t1 = std::min(n, t0 + kValueBlock);
    for (int g = 0; g < group; ++g) {
      float* og = o + g * hd;
      const float* pg = p + g * ld;
      __m512 acc[NV];
      for (int j = 0; j < NV; ++j) acc[j] = _mm512_loadu_ps(og + 16 * j);
      for (int64_t t = t0; t < t1; ++t) {
        const __m512 w = _mm512_set1_ps(pg[t]);
        const float* vt = v + t * hd;
        for (int j = 0; j < NV; ++j) acc[j] = _mm512_fmadd_ps(w, _mm512_loadu_ps(vt + 16 * j), acc[j]);
      }
      for (int j = 0; j < NV; ++j) _mm512_storeu_ps(og + 16 * j, acc[j]);
    }
  }
}
#endif

// sc[g * ld + t] = scale * (q[g*hd : (g+1)*hd] . k[t*hd : (t+1)*hd]) for g < group, t < n.
inline void scores(const float* q, int group, const float* k, int64_t n, int hd, float scale, float* sc, int64_t ld) {
#if defined(__AVX512F__)
  switch (hd) {
    case 16: return scores16<1>(q, group, k, n, scale, sc, ld);
    case 32: return scores16<2>(q, group, k, n, scale, sc, ld);
    case 64: return scores16<4>(q, group, k, n, scale, sc, ld);
    case 128: return scores16<8>(q, group, k, n, scale, sc, ld);
    case 256: return scores16<16>(q, group, k, n, scale, sc, ld);
    default: break;
  }
#endif
  for (int64_t t = 0; t < n; ++t) {
    const float* kt = k + t * hd;
    for (int g = 0; g < group; ++g) {
      const float* qg = q + g * hd;
      float d = 0.0f;
#pragma omp simd reduction(+ : d)
      for (int j = 0; j < hd; ++j) d += qg[j] * kt[j];
      sc[g * ld + t] = d * scale;
    }
  }
}

// p[0:n] <- softmax(p[0:n]) in place (n >= 1).
inline void softmax(float* p, int64_t n) {
  float mx = -INFINITY;
  for (int64_t t = 0; t < n; ++t) mx = std::max(mx, p[t]);
  int64_t t = 0;
  float sum = 0.0f;
#if defined(__AVX512F__)
  const __m512 m = _mm512_set1_ps(mx);
  __m512 acc = _mm512_setzero_ps();
  for (; t + 16 <= n; t += 16) {
    const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(p + t), m));
    _mm512_storeu_ps(p + t, e);
    acc = _mm512_add_ps(acc, e);
  }
  sum = _mm512_reduce_add_ps(acc);
#endif
  for (; t < n; ++t) {
    p[t] = std::exp(p[t] - mx);
    sum += p[t];
  }
  const float inv = 1.0f / sum;
#pragma omp simd
  for (int64_t u = 0; u < n; ++u) p[u] *= inv;
}

// o[g*hd : (g+1)*hd] += sum_t p[g * ld + t] * v[t*hd : (t+1)*hd] for g < group, t < n.
inline void values(const float* p, int64_t ld, int group, const float* v, int64_t n, int hd, float* o) {
#if defined(__AVX512F__)
  switch (hd) {
    case 16: return values16<1>(p, ld, group, v, n, o);
    case 32: return values16<2>(p, ld, group, v, n, o);
    case 64: return values16<4>(p, ld, group, v, n, o);
    case 128: return values16<8>(p, ld, group, v, n, o);
    case 256: return values16<16>(p, ld, group, v, n, o);
    default: break;
  }
#endif
  for (int64_t t = 0; t < n; ++t) {
    const float* vt = v + t * hd;
    for (int g = 0; g < group; ++g) {
      float* og = o + g * hd;
      const float w = p[g * ld + t];
#pragma omp simd
      for (int j = 0; j < hd; ++j) og[j] += w * vt[j];
    }
  }
}

}  // namespace harmonia::kv::attn

#pragma GCC diagnostic pop
