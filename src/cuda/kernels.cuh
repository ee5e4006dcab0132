#pragma once
// Device building blocks shared by the decode-attention kernels (private to src/cuda).
//
// Split-KV flash decoding (one query per sequence): a block owns one KV head
// and a range of keys, and all G query heads of that head's GQA group, so each
// K/V row is read from memory once per block. It leaves per query head the
// partial softmax state (m = max score, l = sum of exp(score - m), o = sum of
// exp(score - m) * v) that merge kernels combine with log-sum-exp weights.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace harmonia::cuda::detail {

constexpr int kThreads = 128;  // every attention kernel: 4 warps
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFull = 0xffffffffu;

// 8 consecutive 16-bit elements (16 bytes, 16-byte aligned) as float.
__device__ __forceinline__ void load8(const __nv_bfloat16* p, float (&f)[8]) {
  const uint4 r = __ldg(reinterpret_cast<const uint4*>(p));
  const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

__device__ __forceinline__ void load8(const __half* p, float (&f)[8]) {
  const uint4 r = __ldg(reinterpret_cast<const uint4*>(p));
  const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}

// 8 consecutive f32 (32 bytes, 16-byte aligned): two 16-byte loads.
__device__ __forceinline__ void load8(const float* p, float (&f)[8]) {
  const float4 a = __ldg(reinterpret_cast<const float4*>(p));
  const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w;
  f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}

// 8 consecutive elements as loaded, not yet converted: 16 bytes (bf16/f16) or
// 32 bytes (f32). Lets a loop keep the next rows' loads in flight in 4 (8)
// registers per row while it computes on the current ones.
template <typename T>
struct Raw8 {
  uint4 w[sizeof(T) / 2];
};
template <typename T>
__device__ __forceinline__ void load_raw8(const T* p, Raw8<T>& r) {
#pragma unroll
  for (int i = 0; i < static_cast<int>(sizeof(T) / 2); ++i) r.w[i] = __ldg(reinterpret_cast<const uint4*>(p) + i);
}
__device__ __forceinline__ void to_float8(const Raw8<__nv_bfloat16>& r, float (&f)[8]) {
  const uint32_t w[4] = {r.w[0].x, r.w[0].y, r.w[0].z, r.w[0].w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ void to_float8(const Raw8<__half>& r, float (&f)[8]) {
  const uint32_t w[4] = {r.w[0].x, r.w[0].y, r.w[0].z, r.w[0].w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}
__device__ __forceinline__ void to_float8(const Raw8<float>& r, float (&f)[8]) {
  f[0] = __uint_as_float(r.w[0].x), f[1] = __uint_as_float(r.w[0].y);
  f[2] = __uint_as_float(r.w[0].z), f[3] = __uint_as_float(r.w[0].w);
  f[4] = __uint_as_float(r.w[1].x), f[5] = __uint_as_float(r.w[1].y);
  f[6] = __uint_as_float(r.w[1].z), f[7] = __uint_as_float(r.w[1].w);
}

__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(float x) { return x; }

// exp(a - b) for softmax rescaling; 0 when a is -inf, 1 when a == b (also -inf == -inf).
__device__ __forceinline__ float rescale(float a, float b) { return a == b ? 1.0f : __expf(a - b); }

// Per-query-head softmax state of one row group (replicated over its lanes);
// each lane holds the output accumulator of its 8 dims.
template <int G>
struct Online {
  float m[G], l[G], acc[G][8];
  __device__ void init() {
#pragma unroll
    for (int g = 0; g < G; ++g) {
      m[g] = -INFINITY;
      l[g] = 0.0f;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[g][e] = 0.0f;
    }
  }
};

// Dense attention of the G query heads over rows [begin, end) of one KV head
// (row r of K at K + r*D). A warp's lanes form 32/(D/8) row groups of D/8 lanes,
// each lane 8 elements of a row (16 bytes; 32 for f32); a group takes U consecutive rows per step (up
// to 4U 16-byte loads in flight per lane, see below). Loop trip counts are uniform per warp
// (shuffles need the whole warp). q: this lane's 8 dims of each query head,
// already multiplied by the softmax scale.
template <typename T, int D, int G>
__device__ __forceinline__ void dense_range(const T* __restrict__ K, const T* __restrict__ V, int64_t begin,
                                            int64_t end, const float (&q)[G][8], Online<G>& st) {
  constexpr int LPR = D / 8, RPW = 32 / LPR, U = 4;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int grp = lane / LPR, sub = lane % LPR;
  constexpr int64_t kStep = static_cast<int64_t>(kWarps) * RPW * U;  // rows per block iteration
  // Software pipelining: the next iteration's 2U rows are loaded (raw) before
  // this iteration's arithmetic, so each lane keeps up to 4U 16-byte loads in
  // flight instead of 2U (decode attention is bound by memory latency x
  // parallelism at batch 1).
  Raw8<T> kr[U], vr[U];
  auto fetch = [&](int64_t wb) {
    const int64_t base = wb + grp * U;
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t r = base + u < end ? base + u : begin;  // a valid address; masked below
      load_raw8(K + r * D + sub * 8, kr[u]);
      load_raw8(V + r * D + sub * 8, vr[u]);
    }
  };
  int64_t wbase = begin + static_cast<int64_t>(warp) * RPW * U;
  if (wbase < end) fetch(wbase);
  for (; wbase < end; wbase += kStep) {
    const int64_t base = wbase + grp * U;
    float kf[U][8], vf[U][8];
    bool ok[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      ok[u] = base + u < end;
      to_float8(kr[u], kf[u]);
      to_float8(vr[u], vf[u]);
    }
    if (wbase + kStep < end) fetch(wbase + kStep);  // uniform per warp
    float s[U][G];
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int g = 0; g < G; ++g) {
        float d = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) d = fmaf(q[g][e], kf[u][e], d);
#pragma unroll
        for (int o = LPR / 2; o > 0; o /= 2) d += __shfl_xor_sync(kFull, d, o);
        s[u][g] = ok[u] ? d : -INFINITY;
      }
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float mx = s[0][g];
#pragma unroll
      for (int u = 1; u < U; ++u) mx = fmaxf(mx, s[u][g]);
      const float mn = fmaxf(st.m[g], mx);
      const float c = rescale(st.m[g], mn);
      st.l[g] *= c;
#pragma unroll
      for (int e = 0; e < 8; ++e) st.acc[g][e] *= c;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const float p = ok[u] ? __expf(s[u][g] - mn) : 0.0f;
        st.l[g] += p;
#pragma unroll
        for (int e = 0; e < 8; ++e) st.acc[g][e] = fmaf(p, vf[u][e], st.acc[g][e]);
      }
      st.m[g] = mn;
    }
  }
}

// Combines the row groups of a block (dense_range states) and writes the
// block's partial for each query head: pm[g*pstride], pl[g*pstride] and
// po[g*pstride*D .. + D]. smem: at least kThreads/(D/8) * G * (D + 2) floats.
template <int D, int G>
__device__ __forceinline__ void combine_write(const Online<G>& st, float* smem, float* pm, float* pl, float* po,
                                              int64_t pstride) {
  constexpr int LPR = D / 8, NGRP = kThreads / LPR;
  const int gi = threadIdx.x / LPR, sub = threadIdx.x % LPR;
  float* sm_m = smem;                // [NGRP][G]
  float* sm_l = sm_m + NGRP * G;     // [NGRP][G]
  float* sm_acc = sm_l + NGRP * G;   // [NGRP][G][D]
  __syncthreads();
#pragma unroll
  for (int g = 0; g < G; ++g) {
    if (sub == 0) {
      sm_m[gi * G + g] = st.m[g];
      sm_l[gi * G + g] = st.l[g];
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) sm_acc[(gi * G + g) * D + sub * 8 + e] = st.acc[g][e];
  }
  __syncthreads();
  for (int item = threadIdx.x; item < G * D; item += kThreads) {
    const int g = item / D, d = item % D;
    float M = -INFINITY;
    for (int i = 0; i < NGRP; ++i) M = fmaxf(M, sm_m[i * G + g]);
    float o = 0.0f, L = 0.0f;
    if (M != -INFINITY)
      for (int i = 0; i < NGRP; ++i) {
        const float w = rescale(sm_m[i * G + g], M);
        o = fmaf(w, sm_acc[(i * G + g) * D + d], o);
        L = fmaf(w, sm_l[i * G + g], L);
      }
    po[g * pstride * D + d] = o;
    if (d == 0) {
      pm[g * pstride] = M;
      pl[g * pstride] = L;
    }
  }
}

template <int D, int G>
constexpr int combine_smem_floats() {
  return kThreads / (D / 8) * G * (D + 2);
}

// Block-wide max / sum of one value per thread (kThreads threads); every thread gets the result.
// `scratch`: kWarps floats of shared memory, not in use by the caller during the call.
__device__ __forceinline__ float block_max(float v, float* scratch) {
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  v = scratch[0];
  for (int w = 1; w < kWarps; ++w) v = fmaxf(v, scratch[w]);
  return v;
}
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(kFull, v, o);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  v = scratch[0];
  for (int w = 1; w < kWarps; ++w) v += scratch[w];
  return v;
}

// Log-sum-exp weights of S split partials of one query head: w[s] = exp(pm[s] - max pm)
// into shared w[S] (0 for empty splits); returns sum_s w[s] pl[s] (0 if all empty).
// L_mid: the same sum over splits s >= mid_from; max_out: max pm (the reference of w).
// Loads are spread over the block (the merge is latency-bound, not bandwidth-bound).
__device__ __forceinline__ float lse_weights(const float* __restrict__ pm, const float* __restrict__ pl, int S,
                                             float* w, float* scratch, float* L_mid = nullptr, int mid_from = 0,
                                             float* max_out = nullptr) {
  float mx = -INFINITY;
  for (int s = threadIdx.x; s < S; s += kThreads) mx = fmaxf(mx, pm[s]);
  mx = block_max(mx, scratch);
  if (max_out) *max_out = mx;
  float L = 0.0f, Lm = 0.0f;
  for (int s = threadIdx.x; s < S; s += kThreads) {
    const float ws = mx == -INFINITY ? 0.0f : rescale(pm[s], mx);
    w[s] = ws;
    L = fmaf(ws, pl[s], L);
    if (s >= mid_from) Lm = fmaf(ws, pl[s], Lm);
  }
  L = block_sum(L, scratch);
  if (L_mid) *L_mid = block_sum(Lm, scratch);
  __syncthreads();  // w[] complete
  return L;
}

// One level of transpose_reduce32: lanes with bit S set keep the upper half of v, the others
// the lower half, and each adds its partner's (lane ^ S) other half. A fresh array per level:
// updating v in place made nvcc 13.0 put it in local memory (128-byte stack frame).
template <int S>
__device__ __forceinline__ void transpose_level(const float (&v)[2 * S], float (&w)[S]) {
  const bool upper = threadIdx.x & S;
#pragma unroll
  for (int i = 0; i < S; ++i) {
    const float send = upper ? v[i] : v[i + S];
    const float keep = upper ? v[i + S] : v[i];
    w[i] = keep + __shfl_xor_sync(kFull, send, S);
  }
}

// Sum over the warp of 32 values per lane, transposed: lane i gets the warp total of index i.
// 31 shuffles instead of 32 * 5.
__device__ __forceinline__ float transpose_reduce32(const float (&v)[32]) {
  float a[16], b[8], c[4], d[2], e[1];
  transpose_level<16>(v, a);
  transpose_level<8>(a, b);
  transpose_level<4>(b, c);
  transpose_level<2>(c, d);
  transpose_level<1>(d, e);
  return e[0];
}

}  // namespace harmonia::cuda::detail
