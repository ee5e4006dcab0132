#include <cuda_runtime.h>
#include <cufft.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <numeric>
#include <string>
#include <type_traits>
#include <utility>

#include "cuda/fourier_fourstep.cuh"
#include "cuda/fourier_gpu.h"
#include "cuda/kernels.cuh"

namespace harmonia::cuda {

using namespace detail;
using bf16 = __nv_bfloat16;

namespace {

constexpr int BT = 32;  // middle positions per tile of the fused kernel
constexpr double kTwoPi = 6.283185307179586476925286766559;

// ---- Coefficient storage ------------------------------------------------------------
// f32: [M][cols] true values. bf16 (kv::FourierCache's CoeffMatrix): C_0 in f32
// (dc[cols]), row N (S_0 = 0) unused, other rows stored as value * kappa (kappa = 1/T).

__device__ __forceinline__ float coef_get(const float* c, const float* dc, int r, int j, int cols, int N,
                                          float kappa) {
  return c[static_cast<int64_t>(r) * cols + j];
}
__device__ __forceinline__ float coef_get(const bf16* c, const float* dc, int r, int j, int cols, int N, float kappa) {
  if (r == 0) return dc[j];
  if (r == N) return 0.0f;
  return __bfloat162float(c[static_cast<int64_t>(r) * cols + j]) / kappa;
}
__device__ __forceinline__ void coef_set(float* c, float* dc, int r, int j, int cols, int N, float kappa, float v) {
  c[static_cast<int64_t>(r) * cols + j] = v;
}
__device__ __forceinline__ void coef_set(bf16* c, float* dc, int r, int j, int cols, int N, float kappa, float v) {
  if (r == 0)
    dc[j] = v;
  else if (r != N)
    c[static_cast<int64_t>(r) * cols + j] = __float2bfloat16_rn(v * kappa);
}
// Spec §3.4 rank-1 step for one element whose stored form `old` was read by coef_get(..., kappa = 1)
// (f32: the value; bf16: dc[j] at row 0, else the stored bf16 as float): value += x * basis (basis =
// cos or sin of w_n p). Row N of bf16 storage (S_0) stays unused.
__device__ __forceinline__ void coef_put(float* c, float* dc, int r, int j, int cols, int N, float kappa, float old,
                                         float x, float basis) {
  c[static_cast<int64_t>(r) * cols + j] = old + x * basis;
}
__device__ __forceinline__ void coef_put(bf16* c, float* dc, int r, int j, int cols, int N, float kappa, float old,
                                         float x, float basis) {
  if (r == 0)
    dc[j] = old + x;
  else if (r != N)
    c[static_cast<int64_t>(r) * cols + j] = __float2bfloat16_rn(old + x * (basis * kappa));
}

// Device views of one layer (by value into kernels). XT: the exact K/V element type (bf16, or f32 with
// FourierConfig::exact_f32); views of the other type carry null exact pointers (kernels that never
// touch exact storage take LayerView<CT>).
template <typename CT, typename XT = bf16>
struct LayerView {
  int B, H, Hq, G, D, N, M;
  int64_t E, T, mid_cap;
  int nkc_tot, nkn_tot, nvc_tot, nvn_tot;
  const int *kc_idx, *kc_off, *kn_idx, *kn_off, *vc_idx, *vc_off, *vn_idx, *vn_off;  // [H+1] offsets
  XT *kex, *vex;          // [B][H][E][D]
  XT *midk, *midv;        // [B][mid_cap * nkn_tot] per head [mid_cap][nkn(h)] at mid_cap * kn_off[h]
  CT *ck, *cv;            // [B][M * nkc_tot] per head [M][nkc(h)] at M * kc_off[h]
  float *dck, *dcv;       // [B][nkc_tot] C_0 (bf16 storage)
  float *ks, *ko, *vs, *vo;  // [B][nkc_tot] / [B][nvc_tot]: scale s_j and offset u_j - s_j i_j
  float kappa;            // 1/T for bf16, 1 for f32
  float w0, w;
};

// ---- Programmatic dependent launch (sm_90) -------------------------------------------------
// A kernel started by pdl_launch may begin while the kernel before it in the stream is still running
// (from that kernel's pdl_trigger, or its end); pdl_wait() blocks until that kernel has completed and its
// writes are visible. Both are no-ops for a plain launch. Used by the merge (waits first) and the V map
// (stages its coefficients, which nothing in attend writes, before waiting).
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// ---- Coefficient rows staged in shared memory ---------------------------------------------
// The small kernels around the middle (projection, V map) are latency-bound at batch 1 (a few MB over
// ~100-250 blocks): each block copies a contiguous run of coefficient rows into shared memory by 16-byte
// loads, all of a thread's loads issued before any is used, then computes from shared memory.

// Row stride of staged rows: >= cols and = 4 (mod 32), so the projection's 8 rows x 4 lanes per warp
// read 32 distinct banks. At most 132 for cols <= 128.
__host__ __device__ constexpr int coef_stride(int cols) { return cols + ((4 - cols) & 31); }
constexpr int kMaxCoefStride = 132;

// True value of staged element x at row r, column j (as coef_get): f32 storage as is; bf16: row 0 from
// dc, row N zero, other rows x / kappa.
__device__ __forceinline__ float coef_fix(const float*, float x, const float*, int, int, int, float) { return x; }
__device__ __forceinline__ float coef_fix(const bf16*, float x, const float* dc, int r, int j, int N, float kappa) {
  return r == 0 ? dc[j] : r == N ? 0.0f : x / kappa;
}
__device__ __forceinline__ float raw_elem(const uint4& v, int k, const float*) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
  return __uint_as_float(w[k]);
}
__device__ __forceinline__ float raw_elem(const uint4& v, int k, const bf16*) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
  const uint32_t x = w[k >> 1];
  return __uint_as_float((k & 1) ? (x & 0xffff0000u) : (x << 16));
}

// Rows [r0, r1) of a [M][cols] coefficient matrix C (one sequence and KV head; dc its C_0 for bf16) as true
// values into S[(r - r0) * stride + j]. Every thread of the block takes part; no barrier inside. `between`
// runs once after the first batch of loads is issued (independent work to overlap with their latency).
template <typename CT, int U, typename F>
__device__ __forceinline__ void stage_coef_rows(const CT* __restrict__ C, const float* __restrict__ dc, int cols,
                                                int r0, int r1, int N, float kappa, float* S, int stride,
                                                F&& between) {
  constexpr int V = 16 / static_cast<int>(sizeof(CT));  // elements per 16-byte load
  const CT* src = C + static_cast<int64_t>(r0) * cols;
  const int n = (r1 - r0) * cols;
  const int lead = min(n, static_cast<int>(((16 - (reinterpret_cast<uintptr_t>(src) & 15)) & 15) / sizeof(CT)));
  const int nv = (n - lead) / V, tail0 = lead + nv * V;
  auto put = [&](int e, float x) {
    const int rr = e / cols, j = e - rr * cols;
    S[rr * stride + j] = coef_fix(C, x, dc, r0 + rr, j, N, kappa);
  };
  const uint4* vsrc = reinterpret_cast<const uint4*>(src + lead);
  bool first = true;
  for (int base = 0; base < nv || first; base += U * kThreads) {
    uint4 raw[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int i = base + u * kThreads + threadIdx.x;
      if (i < nv) raw[u] = __ldg(vsrc + i);
    }
    if (first) {
      first = false;
      between();
      // Unaligned ends (scalar).
      for (int e = threadIdx.x; e < lead; e += kThreads) put(e, to_float(src[e]));
      for (int e = tail0 + threadIdx.x; e < n; e += kThreads) put(e, to_float(src[e]));
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int i = base + u * kThreads + threadIdx.x;
      if (i < nv) {
        int e = lead + i * V, rr = e / cols, j = e - rr * cols;
#pragma unroll
        for (int k = 0; k < V; ++k) {
          S[rr * stride + j] = coef_fix(C, raw_elem(raw[u], k, C), dc, r0 + rr, j, N, kappa);
          if (++j == cols) j = 0, ++rr;
        }
      }
    }
  }
}

// ---- 1. Projection of the queries into coefficient space --------------------------
// One block per kProjRows coefficient rows of (sequence b, KV head h), all G query heads of the group in one
// pass: the rows staged in shared memory, 4 lanes per row. alpha[b][hq][r] = w_r sum_j q[kc_j] s_j C_r(j);
// block 0 also gamma[b][hq] = sum_j q[kc_j] off_j.
constexpr int kProjRows = kThreads / 4;
template <int G>
constexpr int project_smem_floats() {
  return kProjRows * kMaxCoefStride + G * 128;
}
template <typename CT, int G>
__device__ __forceinline__ void project_rows(const LayerView<CT>& L, const float* __restrict__ q, float* alpha,
                                             float* gamma, int rb, int h, int b, float* smem) {
  float* cs = smem;                             // [kProjRows][stride] staged rows
  float* qs = smem + kProjRows * kMaxCoefStride;  // [G][128] scaled queries at the compressed K dims
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int c0 = L.kc_off[h], nkc = L.kc_off[h + 1] - c0;
  const int r0 = rb * kProjRows, r1 = min(L.M, r0 + kProjRows), stride = coef_stride(nkc);
  const int* kc = L.kc_idx + c0;
  const int64_t bhq = static_cast<int64_t>(b) * L.Hq + h * G;
  const float* qb = q + bhq * L.D;
  const CT* C = L.ck + static_cast<int64_t>(b) * L.M * L.nkc_tot + static_cast<int64_t>(L.M) * c0;
  const float* dc = L.dck + static_cast<int64_t>(b) * L.nkc_tot + c0;
  stage_coef_rows<CT, 8>(C, dc, nkc, r0, r1, L.N, L.kappa, cs, stride, [&] {
    const float* sc = L.ks + static_cast<int64_t>(b) * L.nkc_tot + c0;
    for (int i = tid; i < G * nkc; i += kThreads) {
      const int g = i / nkc, j = i - g * nkc;
      qs[g * 128 + j] = qb[g * L.D + kc[j]] * sc[j];
    }
    if (rb == 0) {
      const float* of = L.ko + static_cast<int64_t>(b) * L.nkc_tot + c0;
      for (int g = warp; g < G; g += kWarps) {
        float s = 0.0f;
        for (int j = lane; j < nkc; j += 32) s = fmaf(qb[g * L.D + kc[j]], of[j], s);
        for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(kFull, s, o);
        if (lane == 0) gamma[bhq + g] = s;
      }
    }
  });
  __syncthreads();
  const int rl = tid >> 2, part = tid & 3, r = r0 + rl;
  const int jn = r < r1 ? nkc : 0;  // loop bound (rows past the end: no work, but in the shuffles)
  float acc[G];
#pragma unroll
  for (int g = 0; g < G; ++g) acc[g] = 0.0f;
#pragma unroll 4
  for (int j = part; j < jn; j += 4) {
    const float c = cs[rl * stride + j];
#pragma unroll
    for (int g = 0; g < G; ++g) acc[g] = fmaf(qs[g * 128 + j], c, acc[g]);
  }
  const float wr = r == 0 ? L.w0 : r == L.N ? 0.0f : L.w;
#pragma unroll
  for (int g = 0; g < G; ++g) {
    float s = acc[g];
    s += __shfl_xor_sync(kFull, s, 1);
    s += __shfl_xor_sync(kFull, s, 2);
    if ((g & 3) == part && r < r1) alpha[(bhq + g) * L.M + r] = wr * s;
  }
}

// ---- 2. FlashFourierAttention split kernel ----------------------------------------
struct SplitParams {
  const float *q, *alpha, *gamma;
  const bf16 *kex, *vex;
  int64_t E, n_exact;
  const bf16 *midk, *midv;
  int64_t mid_cap, mid_len;
  int nkn_tot, nvn_tot;
  const int *kn_idx, *kn_off, *vn_idx, *vn_off;
  int N, Hq, H;
  int64_t T;
  float scale;
  int S_ex, S_mid;
  int64_t chunk_ex, chunk_mid;
  float *pm, *pl, *po;  // [B][Hq][S_ex + S_mid] (po: x D)
  float2* pA;           // [B][Hq][S_mid][N] (direct path)
  float* xs;            // [B][Hq][T] (FFT path): compressed-dims scores f(l) in, scaled full scores out
  const __half* etab;   // tiled path: basis table [hi, lo][kTileP][2N + 8] (see basis_table_kernel)
  // FourierConfig::exact_f32 (direct path only): the exact rows as f32 in place of kex..midv (then null).
  const float *kex32, *vex32, *midk32, *midv32;
};

// SplitParams' exact storage of element type XT.
template <typename XT>
struct ExactRows;
template <>
struct ExactRows<bf16> {
  static __device__ __forceinline__ const bf16* k(const SplitParams& p) { return p.kex; }
  static __device__ __forceinline__ const bf16* v(const SplitParams& p) { return p.vex; }
  static __device__ __forceinline__ const bf16* mk(const SplitParams& p) { return p.midk; }
  static __device__ __forceinline__ const bf16* mv(const SplitParams& p) { return p.midv; }
};
template <>
struct ExactRows<float> {
  static __device__ __forceinline__ const float* k(const SplitParams& p) { return p.kex32; }
  static __device__ __forceinline__ const float* v(const SplitParams& p) { return p.vex32; }
  static __device__ __forceinline__ const float* mk(const SplitParams& p) { return p.midk32; }
  static __device__ __forceinline__ const float* mv(const SplitParams& p) { return p.midv32; }
};

template <int D, int G>
constexpr int middle_smem_floats() {
  return 2 * G * D + 2 * BT * D + BT * G * (2 + kWarps) + 3 * G;
}
template <int D, int G>
constexpr int split_smem_floats() {
  return middle_smem_floats<D, G>() > combine_smem_floats<D, G>() ? middle_smem_floats<D, G>()
                                                                  : combine_smem_floats<D, G>();
}

__device__ __forceinline__ float2 cmul(float2 a, float2 b) {
  return make_float2(fmaf(a.x, b.x, -a.y * b.y), fmaf(a.x, b.y, a.y * b.x));
}

// e^{i 2 pi (n l mod T) / T}: the angle is reduced on integers first.
__device__ __forceinline__ float2 phase(int64_t n, int64_t l, int64_t T) {
  const int64_t r = (n * l) % T;
  float s, c;
  sincospif(static_cast<float>(2.0 * static_cast<double>(r) / static_cast<double>(T)), &s, &c);
  return make_float2(c, s);
}

// A split block over the exact rows (sinks + local window): plain flash decoding.
template <int D, int G, typename XT = bf16>
__device__ __forceinline__ void exact_split(const SplitParams& p, float* smem, int split, int h, int b,
                                            const float* qb, int64_t p0, int S_tot) {
  constexpr int LPR = D / 8;
  const int sub = (threadIdx.x & 31) % LPR;
  float qr[G][8];
#pragma unroll
  for (int g = 0; g < G; ++g)
#pragma unroll
    for (int e = 0; e < 8; ++e) qr[g][e] = qb[g * D + sub * 8 + e] * p.scale;
  const int64_t head = (static_cast<int64_t>(b) * p.H + h) * p.E * D;
  const int64_t begin = split * p.chunk_ex, end = min(p.n_exact, begin + p.chunk_ex);
  Online<G> st;
  st.init();
  dense_range<XT, D, G>(ExactRows<XT>::k(p) + head, ExactRows<XT>::v(p) + head, begin, end, qr, st);
  combine_write<D, G>(st, smem, p.pm + p0, p.pl + p0, p.po + p0 * D, S_tot);
}

// grid (S_ex + S_mid, H, B). Blocks < S_ex: flash decoding over the exact rows
// (sinks + local window). Others: a range of middle positions, BT per tile.
template <int D, int G, int NPT, typename XT = bf16>
__global__ void __launch_bounds__(kThreads) fourier_split_kernel(SplitParams p) {
  extern __shared__ float smem[];
  const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
  const int S_tot = p.S_ex + p.S_mid;
  const int64_t bhq = static_cast<int64_t>(b) * p.Hq + h * G;  // first query head of the group
  const int64_t p0 = bhq * S_tot + split;
  const float* qb = p.q + bhq * D;

  if (split < p.S_ex) {
    exact_split<D, G, XT>(p, smem, split, h, b, qb, p0, S_tot);
    return;
  }

  const int ms = split - p.S_ex, lane = tid & 31, warp = tid >> 5;
  float* qkn = smem;               // [G][D] q at the exact K dims
  float* kt = qkn + G * D;         // [BT][nkn] middle exact K tile
  float* vt = kt + BT * D;         // [BT][nvn]
  float* sc = vt + BT * D;         // [BT][G] scores
  float* red = sc + BT * G;        // [kWarps][BT][G] spectral score partials
  float* pr = red + kWarps * BT * G;  // [BT][G] probabilities
  float* accx = pr + BT * G;       // [G][D] exact V dims of the output (first nvn used)
  float* mcur = accx + G * D;      // [G]
  float* lcur = mcur + G;          // [G]
  float* corr = lcur + G;          // [G]
  const int kn0 = p.kn_off[h], nkn = p.kn_off[h + 1] - kn0;
  const int vn0 = p.vn_off[h], nvn = p.vn_off[h + 1] - vn0;
  const int* kn = p.kn_idx + kn0;
  const int* vn = p.vn_idx + vn0;
  for (int i = tid; i < G * nkn; i += kThreads) qkn[(i / nkn) * D + i % nkn] = qb[(i / nkn) * D + kn[i % nkn]];
  for (int i = tid; i < G * D; i += kThreads) accx[i] = 0.0f;
  if (tid < G) {
    mcur[tid] = -INFINITY;
    lcur[tid] = 0.0f;
  }
  // This thread's frequencies n = tid + k * kThreads: projected query c_n = a_n - i b_n per head,
  // the spectral accumulators A_n, and the one-position rotation e^{i w_n}.
  float2 c[G][NPT], A[G][NPT], step[NPT];
  int nn[NPT];
  const int M = 2 * p.N;
#pragma unroll
  for (int k = 0; k < NPT; ++k) {
    nn[k] = tid + k * kThreads;
    const bool ok = nn[k] < p.N;
    step[k] = phase(ok ? nn[k] : 0, 1, p.T);
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const float* al = p.alpha + (bhq + g) * M;
      c[g][k] = ok ? make_float2(al[nn[k]], -al[p.N + nn[k]]) : make_float2(0.0f, 0.0f);
      A[g][k] = make_float2(0.0f, 0.0f);
    }
  }
  const int64_t lb = ms * p.chunk_mid, le = min(p.mid_len, lb + p.chunk_mid);
  const XT* mk = ExactRows<XT>::mk(p) + static_cast<int64_t>(b) * p.mid_cap * p.nkn_tot + p.mid_cap * kn0;
  const XT* mv = ExactRows<XT>::mv(p) + static_cast<int64_t>(b) * p.mid_cap * p.nvn_tot + p.mid_cap * vn0;
  __syncthreads();

  for (int64_t l1 = lb; l1 < le; l1 += BT) {
    const int nr = le - l1 < BT ? static_cast<int>(le - l1) : BT;
    for (int i = tid; i < nr * nkn; i += kThreads) kt[i] = to_float(mk[l1 * nkn + i]);
    for (int i = tid; i < nr * nvn; i += kThreads) vt[i] = to_float(mv[l1 * nvn + i]);
    float2 ph[NPT];
#pragma unroll
    for (int k = 0; k < NPT; ++k) ph[k] = phase(nn[k] < p.N ? nn[k] : 0, l1, p.T);
    __syncthreads();
    // Exact dims of the middle.
    for (int i = tid; i < BT * G; i += kThreads) {
      const int l0 = i / G, g = i % G;
      float s = 0.0f;
      if (l0 < nr)
        for (int j = 0; j < nkn; ++j) s = fmaf(qkn[g * D + j], kt[l0 * nkn + j], s);
      sc[i] = s;
    }
    // Compressed dims: Re(sum_n c_n e^{i w_n l}) over this thread's n, CH positions x G heads at a time.
    constexpr int CH = 32 / G;
    float2 u[NPT];
#pragma unroll
    for (int k = 0; k < NPT; ++k) u[k] = ph[k];
#pragma unroll 1
    for (int cb = 0; cb < BT; cb += CH) {
      float part[32];
#pragma unroll
      for (int i = 0; i < 32; ++i) part[i] = 0.0f;
#pragma unroll
      for (int ci = 0; ci < CH; ++ci) {
#pragma unroll
        for (int k = 0; k < NPT; ++k) {
#pragma unroll
          for (int g = 0; g < G; ++g)
            part[ci * G + g] = fmaf(c[g][k].x, u[k].x, fmaf(-c[g][k].y, u[k].y, part[ci * G + g]));
          u[k] = cmul(u[k], step[k]);
        }
      }
      red[warp * BT * G + cb * G + lane] = transpose_reduce32(part);
    }
    __syncthreads();
    for (int i = tid; i < BT * G; i += kThreads) {
      float s = sc[i] + p.gamma[bhq + i % G];
#pragma unroll
      for (int w = 0; w < kWarps; ++w) s += red[w * BT * G + i];
      sc[i] = i / G < nr ? s * p.scale : -INFINITY;
    }
    __syncthreads();
    if (tid < G) {
      float mx = -INFINITY;
      for (int l0 = 0; l0 < nr; ++l0) mx = fmaxf(mx, sc[l0 * G + tid]);
      const float mn = fmaxf(mcur[tid], mx);
      corr[tid] = rescale(mcur[tid], mn);
      mcur[tid] = mn;
    }
    __syncthreads();
    for (int i = tid; i < BT * G; i += kThreads) pr[i] = i / G < nr ? __expf(sc[i] - mcur[i % G]) : 0.0f;
    __syncthreads();
    if (tid < G) {
      float s = 0.0f;
      for (int l0 = 0; l0 < nr; ++l0) s += pr[l0 * G + tid];
      lcur[tid] = fmaf(lcur[tid], corr[tid], s);
    }
    for (int i = tid; i < G * nvn; i += kThreads) {
      const int g = i / nvn, j = i % nvn;
      float a = accx[g * D + j] * corr[g];
      for (int l0 = 0; l0 < nr; ++l0) a = fmaf(pr[l0 * G + g], vt[l0 * nvn + j], a);
      accx[g * D + j] = a;
    }
    // Spectral sums of the probabilities: A_n += sum_l p_l e^{i w_n l}.
    float cg[G];
#pragma unroll
    for (int g = 0; g < G; ++g) cg[g] = corr[g];
#pragma unroll
    for (int k = 0; k < NPT; ++k) {
      u[k] = ph[k];
#pragma unroll
      for (int g = 0; g < G; ++g) A[g][k] = make_float2(A[g][k].x * cg[g], A[g][k].y * cg[g]);
    }
#pragma unroll 4
    for (int l0 = 0; l0 < BT; ++l0) {
      float pg[G];
#pragma unroll
      for (int g = 0; g < G; ++g) pg[g] = pr[l0 * G + g];
#pragma unroll
      for (int k = 0; k < NPT; ++k) {
#pragma unroll
        for (int g = 0; g < G; ++g) {
          A[g][k].x = fmaf(pg[g], u[k].x, A[g][k].x);
          A[g][k].y = fmaf(pg[g], u[k].y, A[g][k].y);
        }
        u[k] = cmul(u[k], step[k]);
      }
    }
    __syncthreads();
  }

  // Partials: output row with the exact V dims in place (compressed dims added by the merge).
  float* orow = kt;  // [G][D]
  for (int i = tid; i < G * D; i += kThreads) orow[i] = 0.0f;
  __syncthreads();
  for (int i = tid; i < G * nvn; i += kThreads) orow[(i / nvn) * D + vn[i % nvn]] = accx[(i / nvn) * D + i % nvn];
  __syncthreads();
  for (int i = tid; i < G * D; i += kThreads) p.po[(p0 + static_cast<int64_t>(i / D) * S_tot) * D + i % D] = orow[i];
  if (tid < G) {
    p.pm[p0 + static_cast<int64_t>(tid) * S_tot] = mcur[tid];
    p.pl[p0 + static_cast<int64_t>(tid) * S_tot] = lcur[tid];
  }
#pragma unroll
  for (int k = 0; k < NPT; ++k)
    if (nn[k] < p.N)
#pragma unroll
      for (int g = 0; g < G; ++g) p.pA[((bhq + g) * p.S_mid + ms) * p.N + nn[k]] = A[g][k];
}

// ---- 2b. FFT path: the middle split blocks read the compressed-dims scores ------------
template <int D, int G>
constexpr int fft_middle_smem_floats() {
  return 2 * G * D + 2 * BT * D + 2 * BT * G + 3 * G;
}
template <int D, int G>
constexpr int fft_split_smem_floats() {
  return fft_middle_smem_floats<D, G>() > combine_smem_floats<D, G>() ? fft_middle_smem_floats<D, G>()
                                                                      : combine_smem_floats<D, G>();
}

// grid (S_ex + S_mid, H, B), as fourier_split_kernel. A middle block scores position l as
// (exact dims + p.xs[l] + gamma) * scale, writes that back to p.xs[l] (the merge's max and
// sum turn it into the probability), and keeps the online softmax of the exact V dims.
template <int D, int G>
__global__ void __launch_bounds__(kThreads) fourier_split_fft_kernel(SplitParams p) {
  extern __shared__ float smem[];
  const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
  const int S_tot = p.S_ex + p.S_mid;
  const int64_t bhq = static_cast<int64_t>(b) * p.Hq + h * G;
  const int64_t p0 = bhq * S_tot + split;
  const float* qb = p.q + bhq * D;
  if (split < p.S_ex) {
    exact_split<D, G>(p, smem, split, h, b, qb, p0, S_tot);
    return;
  }
  const int ms = split - p.S_ex;
  float* qkn = smem;          // [G][D]
  float* kt = qkn + G * D;    // [BT][nkn]
  float* vt = kt + BT * D;    // [BT][nvn]
  float* sc = vt + BT * D;    // [BT][G] scores
  float* pr = sc + BT * G;    // [BT][G] probabilities
  float* accx = pr + BT * G;  // [G][D]
  float* mcur = accx + G * D;
  float* lcur = mcur + G;
  float* corr = lcur + G;
  const int kn0 = p.kn_off[h], nkn = p.kn_off[h + 1] - kn0;
  const int vn0 = p.vn_off[h], nvn = p.vn_off[h + 1] - vn0;
  const int* kn = p.kn_idx + kn0;
  const int* vn = p.vn_idx + vn0;
  for (int i = tid; i < G * nkn; i += kThreads) qkn[(i / nkn) * D + i % nkn] = qb[(i / nkn) * D + kn[i % nkn]];
  for (int i = tid; i < G * D; i += kThreads) accx[i] = 0.0f;
  if (tid < G) {
    mcur[tid] = -INFINITY;
    lcur[tid] = 0.0f;
  }
  const int64_t lb = ms * p.chunk_mid, le = min(p.mid_len, lb + p.chunk_mid);
  const bf16* mk = p.midk + static_cast<int64_t>(b) * p.mid_cap * p.nkn_tot + p.mid_cap * kn0;
  const bf16* mv = p.midv + static_cast<int64_t>(b) * p.mid_cap * p.nvn_tot + p.mid_cap * vn0;
  float* xs = p.xs + bhq * p.T;
  __syncthreads();
  for (int64_t l1 = lb; l1 < le; l1 += BT) {
    const int nr = le - l1 < BT ? static_cast<int>(le - l1) : BT;
    for (int i = tid; i < nr * nkn; i += kThreads) kt[i] = __bfloat162float(mk[l1 * nkn + i]);
    for (int i = tid; i < nr * nvn; i += kThreads) vt[i] = __bfloat162float(mv[l1 * nvn + i]);
    __syncthreads();
    for (int i = tid; i < BT * G; i += kThreads) {
      const int l0 = i / G, g = i % G;
      float s = -INFINITY;
      if (l0 < nr) {
        float e = 0.0f;
        for (int j = 0; j < nkn; ++j) e = fmaf(qkn[g * D + j], kt[l0 * nkn + j], e);
        float* x = xs + g * p.T + l1 + l0;
        s = (e + *x + p.gamma[bhq + g]) * p.scale;
        *x = s;
      }
      sc[i] = s;
    }
    __syncthreads();
    if (tid < G) {
      float mx = -INFINITY;
      for (int l0 = 0; l0 < nr; ++l0) mx = fmaxf(mx, sc[l0 * G + tid]);
      const float mn = fmaxf(mcur[tid], mx);
      corr[tid] = rescale(mcur[tid], mn);
      mcur[tid] = mn;
    }
    __syncthreads();
    for (int i = tid; i < BT * G; i += kThreads) pr[i] = i / G < nr ? __expf(sc[i] - mcur[i % G]) : 0.0f;
    __syncthreads();
    if (tid < G) {
      float sum = 0.0f;
      for (int l0 = 0; l0 < nr; ++l0) sum += pr[l0 * G + tid];
      lcur[tid] = fmaf(lcur[tid], corr[tid], sum);
    }
    for (int i = tid; i < G * nvn; i += kThreads) {
      const int g = i / nvn, j = i % nvn;
      float a = accx[g * D + j] * corr[g];
      for (int l0 = 0; l0 < nr; ++l0) a = fmaf(pr[l0 * G + g], vt[l0 * nvn + j], a);
      accx[g * D + j] = a;
    }
    __syncthreads();
  }
  float* orow = kt;  // [G][D]
  for (int i = tid; i < G * D; i += kThreads) orow[i] = 0.0f;
  __syncthreads();
  for (int i = tid; i < G * nvn; i += kThreads) orow[(i / nvn) * D + vn[i % nvn]] = accx[(i / nvn) * D + i % nvn];
  __syncthreads();
  for (int i = tid; i < G * D; i += kThreads) p.po[(p0 + static_cast<int64_t>(i / D) * S_tot) * D + i % D] = orow[i];
  if (tid < G) {
    p.pm[p0 + static_cast<int64_t>(tid) * S_tot] = mcur[tid];
    p.pl[p0 + static_cast<int64_t>(tid) * S_tot] = lcur[tid];
  }
}

// grid (blocks, B*Hq): the half spectrum whose C2R is f(l) = sum_n alpha_n cos(w_n l) + alpha_{N+n} sin(w_n l)
// (alpha already carries w_r): Z_0 = alpha_0, Z_n = (alpha_n - i alpha_{N+n}) / 2, zero for n >= N
// (as kv::spectral::eval_trig_fft). Every element is written: cuFFT's C2R overwrites its input.
__global__ void score_spectrum_kernel(const float* __restrict__ alpha, int N, int64_t half, float2* Z) {
  const int64_t bh = blockIdx.y;
  const float* al = alpha + bh * 2 * N;
  float2* z = Z + bh * half;
  for (int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; n < half;
       n += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float2 v = make_float2(0.0f, 0.0f);
    if (n == 0)
      v.x = al[0];
    else if (n < N)
      v = make_float2(0.5f * al[n], -0.5f * al[N + n]);
    z[n] = v;
  }
}

// grid (blocks, B*Hq): x[l] = exp(x[l] - max) / sum for middle positions l < mid_len, 0 up to T.
__global__ void middle_probabilities_kernel(float* X, const float2* __restrict__ st, int64_t T, int64_t mid_len) {
  const int64_t bh = blockIdx.y;
  const float2 ms = st[bh];  // (max, 1 / sum)
  float* x = X + bh * T;
  for (int64_t l = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; l < T;
       l += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[l] = l < mid_len ? __expf(x[l] - ms.x) * ms.y : 0.0f;
}

// grid (ceil(N/128), B*Hq): ab[r] from Z = R2C(p): A_n = sum_l p_l e^{i w_n l} = conj(Z_n), so
// ab[n] = w_n Re Z_n, ab[N+n] = -w Im Z_n (row N zero); ab[M] was written by the merge.
__global__ void spectral_weights_kernel(const float2* __restrict__ Z, int64_t half, int N, float w0, float w,
                                        float* ab) {
  const int64_t bh = blockIdx.y;
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= N) return;
  const float2 z = Z[bh * half + n];
  float* abr = ab + bh * (2 * N + 1);
  abr[n] = (n == 0 ? w0 : w) * z.x;
  abr[N + n] = n == 0 ? 0.0f : -w * z.y;
}

// ---- 2c. Tiled path: the spectral sums as small matrix products on tensor cores ---------------
// Middle position l = t0 + l2 with t0 a tile start (a multiple of kTileP from the split's start) and
// 0 <= l2 < kTileP. With c_n = a_n - i b_n (a_n = alpha_n, b_n = alpha_{N+n}) and d_n = c_n e^{i w_n t0}:
//   f(t0 + l2) = sum_n a_n cos(w_n l) + b_n sin(w_n l) = sum_n Re(d_n) cos(w_n l2) - Im(d_n) sin(w_n l2),
// one product [rows x 2N] . [2N x kTileP] with the fixed basis E[l2][2n] = cos(w_n l2), E[l2][2n+1] =
// sin(w_n l2), and rows = (tile, query head) pairs (16 per mma.m16n8k16 row block: 16/G tiles x G heads).
// The V side is the transpose: sum_{l2} p_l e^{i w_n l2} = [rows x kTileP] . [kTileP x 2N] with the same
// E, then times e^{i w_n t0} (Horner over a thread's tiles) into a G x N accumulator per block.
// Operands are fp16 (E in [-1, 1]; d scaled per query head by a power of two to |d| < 2^12; p in
// [0, 1]), f32 accumulation. SPLIT: each operand x = hi + lo (both fp16) and the product is
// hi.hi + lo.hi + hi.lo (three MMAs): ~2^-21 relative per term, f32-class (test tolerance 1e-4).
// Without SPLIT one MMA: fp16 operand rounding (2^-12 relative per term), the TF32 class of the
// authors' Triton kernel (spec §4.2).
constexpr int kTileP = 32;            // middle positions per tile (the basis table's rows)
constexpr int kTiledThreads = 256;    // 8 warps; one block per multiprocessor (the basis fills shared memory)
constexpr int kTiledWarps = kTiledThreads / 32;
constexpr int kTiledRB = 4;           // row blocks of 16 (tile, head) rows per pass
constexpr int kTiledMaxN = 512;       // frequencies: the fp16 hi + lo basis [32][2N + 8] is 132 KB at N = 512
constexpr int kPStride = kTileP + 8;  // fp16 probability rows, padded against ldmatrix bank conflicts
constexpr int kScStride = kTileP + 8; // f32 score rows, padded: a warp's float2 partial-sum stores take 2 wavefronts

// Shared memory of fourier_tiled_kernel (bytes); the carve-up is in the kernel, in this order.
inline size_t tiled_smem_bytes(int N, int D, int G, bool split) {
  const size_t es = 2 * static_cast<size_t>(N) + 8, rows = kTiledRB * 16;
  size_t b = (split ? 2 : 1) * kTileP * es * 2;  // basis hi (lo): [kTileP][es] fp16
  b += 2 * rows * kPStride * 2;                  // probabilities hi, lo: [rows][kPStride] fp16
  b += rows * kScStride * 4;                     // scores, then probabilities: [rows][kScStride] f32
  b += static_cast<size_t>(G) * N * 8;           // scaled projected coefficients c: [G][N] complex
  b += static_cast<size_t>(N) * 8;               // tile-step rotations: [N] complex
  b += static_cast<size_t>(8 / G) * N * 8;       // this pass's tile twiddles: [8/G][N] complex
  b += static_cast<size_t>(D) * G * 4 * 2;       // q at the exact K dims [D][G]; output row [G][D]
  b += (2 * kTiledWarps + 5 * G) * 4;            // per-warp max / sum; m, l, corr, scale, 1/scale per head
  return b;
}

// grid (kTileP, 2): table[s][l2][k] for s = 0 (hi) and 1 (lo = fp16(x - hi)), k < 2N:
// x = cos(w_n l2) for k = 2n, sin(w_n l2) for k = 2n + 1 (double, angle reduced on integers); zero padding.
__global__ void basis_table_kernel(__half* table, int N, int64_t T) {
  const int l2 = blockIdx.x, s = blockIdx.y, es = 2 * N + 8;
  __half* row = table + (static_cast<int64_t>(s) * kTileP + l2) * es;
  for (int k = threadIdx.x; k < es; k += blockDim.x) {
    float v = 0.0f;
    if (k < 2 * N) {
      const int64_t r = (static_cast<int64_t>(k / 2) * l2) % T;
      const double a = kTwoPi * static_cast<double>(r) / static_cast<double>(T);
      const double x = (k & 1) ? sin(a) : cos(a);
      const float hi = __half2float(__float2half_rn(static_cast<float>(x)));
      v = s == 0 ? hi : static_cast<float>(x - static_cast<double>(hi));
    }
    row[k] = __float2half_rn(v);
  }
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const __half* p) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const __half* p) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
// c[16x8] += a[16x16] . b[16x8], fp16 operands, f32 accumulators (PTX fragment layouts).
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <bool SPLIT>
__device__ __forceinline__ void mma_split(float (&c)[4], const uint32_t (&ah)[4], const uint32_t (&al)[4],
                                          uint32_t bh0, uint32_t bh1, uint32_t bl0, uint32_t bl1) {
  mma16816(c, ah, bh0, bh1);
  if constexpr (SPLIT) {
    mma16816(c, al, bh0, bh1);
    mma16816(c, ah, bl0, bl1);
  }
}
// Bulk prefetch of [p, p + bytes) into L2 (sm_90), widened to 16-byte bounds.
__device__ __forceinline__ void prefetch_l2(const void* p, int64_t bytes) {
  const uint64_t a = reinterpret_cast<uint64_t>(p), lo = a & ~uint64_t{15};
  const uint64_t hi = (a + static_cast<uint64_t>(bytes) + 15) & ~uint64_t{15};
  for (uint64_t at = lo; at < hi; at += uint64_t{1} << 20) {  // at most 1 MiB per instruction
    const uint32_t n = static_cast<uint32_t>(min(hi - at, uint64_t{1} << 20));
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(at), "r"(n) : "memory");
  }
}
// (x, y) as fp16 pairs: hi = fp16(x, y), lo = fp16 of the remainders.
__device__ __forceinline__ void split_half2(float x, float y, uint32_t& hi, uint32_t& lo) {
  const __half2 h = __floats2half2_rn(x, y);
  const float2 f = __half22float2(h);
  const __half2 l = __floats2half2_rn(x - f.x, y - f.y);
  hi = *reinterpret_cast<const uint32_t*>(&h);
  lo = *reinterpret_cast<const uint32_t*>(&l);
}

// grid (S_mid, H, B), kTiledThreads: middle split ms of (sequence b, KV head h), partials at split
// S_ex + ms (exact blocks: exact_split_kernel). Passes of kTiledRB * 16 / G tiles; per pass:
//  (a) exact K dims + gamma into the score rows, the pass's tile twiddles;
//  (b) compressed-dims scores: warp w takes k-steps (8 frequencies) = w mod 4 and positions 16 (w / 4) ..,
//      all row blocks, and adds its partial sums into the scores (the four k-step warps in turn);
//  (c) online softmax over the pass (a warp's score rows all belong to query head w mod G);
//  (d) spectral sums: warp w takes n-blocks (4 frequencies) w, w + 8, ...; exact V dims: warp w takes
//      positions w, w + 8, ... of the pass, lanes the columns.
// N % 8 == 0, N <= kTiledMaxN; G in {1, 2, 4, 8}.
template <int D, int G, bool SPLIT>
__global__ void __launch_bounds__(kTiledThreads, 1) fourier_tiled_kernel(SplitParams p) {
  extern __shared__ __align__(16) unsigned char tsm[];
  constexpr int DT = 8 / G;                            // tile spacing of a thread's two rows in a row block
  constexpr int RB = kTiledRB, ROWS = RB * 16;         // (tile, head) rows per pass
  constexpr int PT = ROWS / G * kTileP;                // middle positions per pass
  constexpr int NBW = kTiledMaxN / 4 / kTiledWarps;    // n-blocks per warp, at most
  constexpr int DC = D / 32;                           // exact V columns per lane, at most
  const int N = p.N, es = 2 * N + 8, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int gq = lane >> 2, t4 = lane & 3, hd = gq % G, ta = gq / G;
  const int ms = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int S_tot = p.S_ex + p.S_mid;
  const int64_t bhq = static_cast<int64_t>(b) * p.Hq + h * G;
  const int64_t p0 = bhq * S_tot + p.S_ex + ms;
  __half* Ehi = reinterpret_cast<__half*>(tsm);               // [kTileP][es]
  __half* Elo = Ehi + kTileP * es;                            // [kTileP][es] (SPLIT)
  __half* Phi = Ehi + (SPLIT ? 2 : 1) * kTileP * es;          // [ROWS][kPStride]
  __half* Plo = Phi + ROWS * kPStride;                        // [ROWS][kPStride]
  float* sc = reinterpret_cast<float*>(Plo + ROWS * kPStride);  // [ROWS][kScStride], row = tile * G + head
  float2* ctab = reinterpret_cast<float2*>(sc + ROWS * kScStride);  // [G][N]
  float2* stab = ctab + G * N;                                   // [N]: e^{i w_n DT kTileP}
  float2* twp = stab + N;                                        // [DT][N]: e^{i w_n (pass start + t kTileP)}
  float* qkn = reinterpret_cast<float*>(twp + DT * N);           // [D][G]
  float* orow = qkn + D * G;                                     // [G][D]
  float* red_m = orow + G * D;                                   // [kTiledWarps]
  float* red_s = red_m + kTiledWarps;                            // [kTiledWarps]
  float* mrun = red_s + kTiledWarps;                             // [G] each
  float* lrun = mrun + G;
  float* corr = lrun + G;
  float* cscale = corr + G;
  float* cinv = cscale + G;

  {  // the basis table: 16-byte asynchronous copies, all in flight at once (waited for below)
    const int n16 = (SPLIT ? 2 : 1) * kTileP * es / 8;
    const uint4* src = reinterpret_cast<const uint4*>(p.etab);
    const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(Ehi));
    for (int i = tid; i < n16; i += kTiledThreads)
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst + 16 * i), "l"(src + i) : "memory");
    asm volatile("cp.async.commit_group;\n" ::: "memory");
  }
  const int kn0 = p.kn_off[h], nkn = p.kn_off[h + 1] - kn0;
  const int vn0 = p.vn_off[h], nvn = p.vn_off[h + 1] - vn0;
  const int* kn = p.kn_idx + kn0;
  const int* vn = p.vn_idx + vn0;
  const float* qb = p.q + bhq * D;
  const int M = 2 * N;
  for (int i = tid; i < nkn * G; i += kTiledThreads) qkn[i] = qb[(i % G) * D + kn[i / G]];
  for (int i = tid; i < G * D; i += kTiledThreads) orow[i] = 0.0f;
  if (warp < G) {  // per query head: a power of two that brings max |alpha| below 2^12
    const float* al = p.alpha + (bhq + warp) * M;
    float mx = 0.0f;
    for (int r = lane; r < M; r += 32) mx = fmaxf(mx, fabsf(al[r]));
    for (int o = 16; o > 0; o /= 2) mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, o));
    if (lane == 0) {
      int e = 0;
      frexpf(mx, &e);
      const float s = mx > 0.0f && isfinite(mx) ? ldexpf(1.0f, 12 - e) : 1.0f;
      cscale[warp] = s;
      cinv[warp] = 1.0f / s;
      mrun[warp] = -INFINITY;
      lrun[warp] = 0.0f;
    }
  }
  for (int n = tid; n < N; n += kTiledThreads) stab[n] = phase(n, DT * kTileP, p.T);
  asm volatile("cp.async.wait_all;\n" ::: "memory");
  __syncthreads();
  for (int i = tid; i < G * N; i += kTiledThreads) {
    const int g = i / N, n = i % N;
    const float* al = p.alpha + (bhq + g) * M;
    ctab[i] = make_float2(al[n] * cscale[g], -al[N + n] * cscale[g]);
  }
  float gam[G];
#pragma unroll
  for (int g = 0; g < G; ++g) gam[g] = p.gamma[bhq + g];

  float2 Aacc[NBW];  // spectral sums of (head hd, frequency (warp + 8 i) * 4 + t4) over this thread's tiles
#pragma unroll
  for (int i = 0; i < NBW; ++i) Aacc[i] = make_float2(0.0f, 0.0f);
  float accx[DC][G];  // exact V dims: column lane + 32 c, all heads, over this warp's positions
#pragma unroll
  for (int c = 0; c < DC; ++c)
#pragma unroll
    for (int g = 0; g < G; ++g) accx[c][g] = 0.0f;

  const int64_t lb = ms * p.chunk_mid, le = min(p.mid_len, lb + p.chunk_mid);
  const bf16* mk = p.midk + static_cast<int64_t>(b) * p.mid_cap * p.nkn_tot + p.mid_cap * kn0;
  const bf16* mv = p.midv + static_cast<int64_t>(b) * p.mid_cap * p.nvn_tot + p.mid_cap * vn0;
  const int KS = N / 8, NB = N / 4;
  for (int64_t ps = lb; ps < le; ps += PT) {
    const int nval = static_cast<int>(min(static_cast<int64_t>(PT), le - ps));
    // Next pass's exact rows towards L2 while this one computes (one bulk prefetch per side).
    if (tid == 0 && ps + PT < le) {
      const int64_t n1 = min(static_cast<int64_t>(PT), le - ps - PT);
      prefetch_l2(mk + (ps + PT) * nkn, n1 * nkn * 2);
      prefetch_l2(mv + (ps + PT) * nvn, n1 * nvn * 2);
    }
    // (a) exact K dims + gamma; positions past the split are -inf (probability 0). Warp w takes
    // positions [w PT/8, (w + 1) PT/8) in batches of 32, lanes the columns (coalesced, 32 loads in
    // flight per lane); a transposed warp reduction leaves position i's dot products in lane i.
    for (int t0 = warp * (PT / kTiledWarps); t0 < (warp + 1) * (PT / kTiledWarps); t0 += 32) {
      float dot[G];
#pragma unroll
      for (int g = 0; g < G; ++g) dot[g] = gam[g];
#pragma unroll
      for (int c = 0; c < DC; ++c) {
        const int j = lane + 32 * c;
        if (32 * c < nkn) {  // uniform
          float kv[32];
#pragma unroll
          for (int i = 0; i < 32; ++i)
            kv[i] = j < nkn && t0 + i < nval ? __bfloat162float(mk[(ps + t0 + i) * nkn + j]) : 0.0f;
#pragma unroll
          for (int g = 0; g < G; ++g) {
            const float qj = j < nkn ? qkn[j * G + g] : 0.0f;
            float pr[32];
#pragma unroll
            for (int i = 0; i < 32; ++i) pr[i] = kv[i] * qj;
            dot[g] += transpose_reduce32(pr);
          }
        }
      }
      const int t = t0 + lane, tile = t / kTileP, pos = t % kTileP;
#pragma unroll
      for (int g = 0; g < G; ++g) sc[(tile * G + g) * kScStride + pos] = t < nval ? dot[g] : -INFINITY;
    }
    for (int i = tid; i < DT * N; i += kTiledThreads)
      twp[i] = phase(i % N, ps + static_cast<int64_t>(i / N) * kTileP, p.T);
    __syncthreads();
    // (b) compressed-dims scores.
    {
      const int kq = warp & 3, ph = warp >> 2;
      float acc[RB][2][4];
#pragma unroll
      for (int rb = 0; rb < RB; ++rb)
#pragma unroll
        for (int j = 0; j < 2; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[rb][j][e] = 0.0f;
      const int erow = ph * 16 + (lane & 7) + ((lane >> 4) << 3), ecol = ((lane >> 3) & 1) * 8;
      for (int ks = kq; ks < KS; ks += 4) {
        uint32_t bh[4], bl[4] = {0, 0, 0, 0};
        ldsm_x4(bh, Ehi + erow * es + ks * 16 + ecol);
        if constexpr (SPLIT) ldsm_x4(bl, Elo + erow * es + ks * 16 + ecol);
        const int nA = ks * 8 + t4, nB = nA + 4;
        const float2 cA = ctab[hd * N + nA], cB = ctab[hd * N + nB];
        const float2 sA = stab[nA], sB = stab[nB];
        float2 tA = twp[ta * N + nA], tB = twp[ta * N + nB];
#pragma unroll
        for (int rb = 0; rb < RB; ++rb) {
          uint32_t ah[4], al[4];
#pragma unroll
          for (int r8 = 0; r8 < 2; ++r8) {  // row gq (tile ta + 2 rb DT), then row gq + 8 (one DT further)
            const float2 dA = cmul(cA, tA), dB = cmul(cB, tB);
            split_half2(dA.x, -dA.y, ah[r8], al[r8]);
            split_half2(dB.x, -dB.y, ah[2 + r8], al[2 + r8]);
            tA = cmul(tA, sA);
            tB = cmul(tB, sB);
          }
#pragma unroll
          for (int j = 0; j < 2; ++j)
            mma_split<SPLIT>(acc[rb][j], ah, al, bh[2 * j], bh[2 * j + 1], bl[2 * j], bl[2 * j + 1]);
        }
      }
      // The four k-step warps of a position half add their partials in turn (plain read-modify-write:
      // float atomics on shared memory are compare-and-swap loops).
      const float ci = cinv[hd];
      for (int turn = 0; turn < 4; ++turn) {
        if (kq == turn) {
#pragma unroll
          for (int rb = 0; rb < RB; ++rb)
#pragma unroll
            for (int j = 0; j < 2; ++j) {
              const int pos = ph * 16 + j * 8 + 2 * t4;
              float2* r0 = reinterpret_cast<float2*>(sc + (rb * 16 + gq) * kScStride + pos);
              float2* r1 = reinterpret_cast<float2*>(sc + (rb * 16 + gq + 8) * kScStride + pos);
              float2 a = *r0, c = *r1;
              a.x = fmaf(acc[rb][j][0], ci, a.x);
              a.y = fmaf(acc[rb][j][1], ci, a.y);
              c.x = fmaf(acc[rb][j][2], ci, c.x);
              c.y = fmaf(acc[rb][j][3], ci, c.y);
              *r0 = a;
              *r1 = c;
            }
        }
        __syncthreads();
      }
    }
    // (c) online softmax: rows r with r % G = warp % G are this warp's (its indices step by 8 rows).
    const int gw = warp % G;
    {
      float mx = -INFINITY;
      for (int i = tid; i < ROWS * kTileP; i += kTiledThreads) {
        float* e = sc + (i / kTileP) * kScStride + i % kTileP;
        const float s = *e * p.scale;
        *e = s;
        mx = fmaxf(mx, s);
      }
      for (int o = 16; o > 0; o /= 2) mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, o));
      if (lane == 0) red_m[warp] = mx;
    }
    __syncthreads();
    {
      float mn = mrun[gw];
      for (int w = gw; w < kTiledWarps; w += G) mn = fmaxf(mn, red_m[w]);
      float sum = 0.0f;
      for (int i = tid; i < ROWS * kTileP; i += kTiledThreads) {
        const int r = i / kTileP, pos = i % kTileP;
        float* e = sc + r * kScStride + pos;
        const float s = *e;
        const float pv = s == -INFINITY ? 0.0f : __expf(s - mn);
        *e = pv;
        sum += pv;
        const __half hi = __float2half_rn(pv);
        Phi[r * kPStride + pos] = hi;
        Plo[r * kPStride + pos] = __float2half_rn(pv - __half2float(hi));
      }
      for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(kFull, sum, o);
      if (lane == 0) red_s[warp] = sum;
    }
    __syncthreads();
    if (tid < G) {
      float mn = mrun[tid], sum = 0.0f;
      for (int w = tid; w < kTiledWarps; w += G) {
        mn = fmaxf(mn, red_m[w]);
        sum += red_s[w];
      }
      const float c = rescale(mrun[tid], mn);
      lrun[tid] = fmaf(lrun[tid], c, sum);
      corr[tid] = c;
      mrun[tid] = mn;
    }
    __syncthreads();
    // (d) spectral sums of the probabilities, and the exact V dims.
    {
      uint32_t pah[RB][2][4], pal[RB][2][4];
#pragma unroll
      for (int rb = 0; rb < RB; ++rb)
#pragma unroll
        for (int k = 0; k < 2; ++k) {
          const int off = (rb * 16 + (lane & 15)) * kPStride + k * 16 + (lane >> 4) * 8;
          ldsm_x4(pah[rb][k], Phi + off);
          if constexpr (SPLIT)
            ldsm_x4(pal[rb][k], Plo + off);
          else
            pal[rb][k][0] = pal[rb][k][1] = pal[rb][k][2] = pal[rb][k][3] = 0;
        }
      const float cg = corr[hd];
#pragma unroll
      for (int i = 0; i < NBW; ++i) {
        const int nb = warp + kTiledWarps * i;
        if (nb < NB) {
          uint32_t bh[4], bl[4] = {0, 0, 0, 0};
          ldsm_x4_trans(bh, Ehi + lane * es + nb * 8);
          if constexpr (SPLIT) ldsm_x4_trans(bl, Elo + lane * es + nb * 8);
          float c[RB][4];
#pragma unroll
          for (int rb = 0; rb < RB; ++rb) {
#pragma unroll
            for (int e = 0; e < 4; ++e) c[rb][e] = 0.0f;
#pragma unroll
            for (int k = 0; k < 2; ++k)
              mma_split<SPLIT>(c[rb], pah[rb][k], pal[rb][k], bh[2 * k], bh[2 * k + 1], bl[2 * k], bl[2 * k + 1]);
          }
          // Horner over this thread's tiles ta + m DT (m = 2 rb: row gq, m = 2 rb + 1: row gq + 8).
          const int n = nb * 4 + t4;
          const float2 s = stab[n];
          float2 a = make_float2(c[RB - 1][2], c[RB - 1][3]);
#pragma unroll
          for (int m = 2 * RB - 2; m >= 0; --m) {
            a = cmul(a, s);
            a.x += c[m / 2][(m % 2) * 2];
            a.y += c[m / 2][(m % 2) * 2 + 1];
          }
          a = cmul(a, twp[ta * N + n]);
          Aacc[i] = make_float2(fmaf(Aacc[i].x, cg, a.x), fmaf(Aacc[i].y, cg, a.y));
        }
      }
      float cr[G];
#pragma unroll
      for (int g = 0; g < G; ++g) cr[g] = corr[g];
#pragma unroll
      for (int c = 0; c < DC; ++c)
#pragma unroll
        for (int g = 0; g < G; ++g) accx[c][g] *= cr[g];
      // Warp w: positions [w PT/8, (w + 1) PT/8), 32 rows' loads in flight per lane and column chunk.
      for (int t0 = warp * (PT / kTiledWarps); t0 < min(nval, (warp + 1) * (PT / kTiledWarps)); t0 += 32) {
#pragma unroll
        for (int c = 0; c < DC; ++c) {
          const int j = lane + 32 * c;
          if (32 * c < nvn) {  // uniform
            float vv[32];
#pragma unroll
            for (int i = 0; i < 32; ++i)
              vv[i] = j < nvn && t0 + i < nval ? __bfloat162float(mv[(ps + t0 + i) * nvn + j]) : 0.0f;
#pragma unroll
            for (int i = 0; i < 32; ++i) {
              const int t = t0 + i, tile = t / kTileP, pos = t % kTileP;
#pragma unroll
              for (int g = 0; g < G; ++g) accx[c][g] = fmaf(sc[(tile * G + g) * kScStride + pos], vv[i], accx[c][g]);
            }
          }
        }
      }
    }
    __syncthreads();  // sc, P, twp are rewritten by the next pass
  }

  // Partials: exact V dims in place (summed over warps), softmax state, spectral sums.
#pragma unroll
  for (int c = 0; c < DC; ++c) {
    const int j = lane + 32 * c;
    if (j < nvn)
#pragma unroll
      for (int g = 0; g < G; ++g) atomicAdd(&orow[g * D + vn[j]], accx[c][g]);
  }
#pragma unroll
  for (int i = 0; i < NBW; ++i) {
    const int nb = warp + kTiledWarps * i;
    if (nb < NB) {  // uniform per warp
      float2 a = Aacc[i];
#pragma unroll
      for (int o = 4 * G; o < 32; o *= 2) {  // lanes whose rows hold the same query head
        a.x += __shfl_xor_sync(kFull, a.x, o);
        a.y += __shfl_xor_sync(kFull, a.y, o);
      }
      if (gq < G) p.pA[((bhq + gq) * p.S_mid + ms) * N + nb * 4 + t4] = a;
    }
  }
  __syncthreads();
  for (int i = tid; i < G * D; i += kTiledThreads)
    p.po[(p0 + static_cast<int64_t>(i / D) * S_tot) * D + i % D] = orow[i];
  if (tid < G) {
    p.pm[p0 + static_cast<int64_t>(tid) * S_tot] = mrun[tid];
    p.pl[p0 + static_cast<int64_t>(tid) * S_tot] = lrun[tid];
  }
}

// grid (S_ex, H, B): the exact blocks (sinks + local window) of the tiled path, partials at split < S_ex.
template <int D, int G>
__global__ void __launch_bounds__(kThreads) exact_split_kernel(SplitParams p) {
  __shared__ float smem[combine_smem_floats<D, G>()];
  const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int S_tot = p.S_ex + p.S_mid;
  const int64_t bhq = static_cast<int64_t>(b) * p.Hq + h * G;
  exact_split<D, G>(p, smem, split, h, b, p.q + bhq * D, bhq * S_tot + split, S_tot);
}

// grid (n_proj + S_ex_blocks, H, B), kThreads: blocks x < n_proj project coefficient rows
// [x * kProjRows, ..) (project_rows); the others (when the caller asks for them) are the exact blocks
// (sinks + local window) of split x - n_proj, partials at split < p.S_ex. One launch: the two are
// independent, both latency-bound at batch 1, and together fill the GPU.
template <typename CT, int D, int G>
constexpr int prologue_smem_floats() {
  return project_smem_floats<G>() > combine_smem_floats<D, G>() ? project_smem_floats<G>()
                                                                  : combine_smem_floats<D, G>();
}
template <typename CT, int D, int G>
__global__ void __launch_bounds__(kThreads) prologue_kernel(LayerView<CT> L, const float* __restrict__ q,
                                                             float* alpha, float* gamma, SplitParams p, int n_proj) {
  __shared__ float smem[prologue_smem_floats<CT, D, G>()];
  const int h = blockIdx.y, b = blockIdx.z;
  if (static_cast<int>(blockIdx.x) < n_proj) {
    project_rows<CT, G>(L, q, alpha, gamma, blockIdx.x, h, b, smem);
    return;
  }
  const int split = blockIdx.x - n_proj, S_tot = p.S_ex + p.S_mid;
  const int64_t bhq = static_cast<int64_t>(b) * p.Hq + h * G;
  exact_split<D, G>(p, smem, split, h, b, p.q + bhq * D, bhq * S_tot + split, S_tot);
}

// ---- 3. Merge -------------------------------------------------------------------------
// grid (B * Hq, kMergeChunks): block (bh, y) recomputes the log-sum-exp weights of the S partials of query
// head bh (S floats), then writes out dims [y dpb, (y + 1) dpb) = exact part (all splits; dpb = D / chunks,
// kThreads / dpb thread groups over the splits) and, direct / tiled path, ab[r] = w_r * merged spectral
// sums for frequencies [y npb, (y + 1) npb) (row N zero); block y = 0 also ab[M] = psum (middle mass).
// FFT path (pA null): no spectral sums; st[bh] = (max score, 1 / softmax sum) instead.
constexpr int kMergeChunks = 4;
constexpr int kMergePreO = 8, kMergePreA = 16;  // partials per thread loaded before the weights are known
__global__ void __launch_bounds__(kThreads) fourier_merge_kernel(const float* __restrict__ pm,
                                                                 const float* __restrict__ pl,
                                                                 const float* __restrict__ po,
                                                                 const float2* __restrict__ pA, int S_ex, int S_mid,
                                                                 int D, int N, float w0, float w, float* out,
                                                                 float* ab, float2* st) {
  __shared__ float wt[2048];
  __shared__ float scratch[kWarps];
  __shared__ float part[kThreads];
  pdl_wait();     // the partials of the kernel before
  pdl_trigger();  // let the V map start staging its coefficients
  const int64_t bh = blockIdx.x;
  const int y = blockIdx.y, tid = threadIdx.x;
  const int S = S_ex + S_mid, M = 2 * N;
  // This thread's first partials are loaded before the weights (one memory round trip fewer).
  const int dpb = (D + kMergeChunks - 1) / kMergeChunks, d0 = y * dpb, nd = min(D, d0 + dpb) - d0;
  const int ng = kThreads / dpb, di = tid % dpb, gi = tid / dpb;
  const bool od = gi < ng && di < nd;
  const float* pp = po + bh * S * D + d0 + di;
  float opre[kMergePreO];
#pragma unroll
  for (int k = 0; k < kMergePreO; ++k) {
    const int s = gi + k * ng;
    opre[k] = od && s < S ? pp[static_cast<int64_t>(s) * D] : 0.0f;
  }
  const int npb = (N + kMergeChunks - 1) / kMergeChunks, n_first = y * npb + tid, n1 = min(N, (y + 1) * npb);
  const bool an = pA != nullptr && n_first < n1;
  const float2* a_first = an ? pA + bh * S_mid * N + n_first : nullptr;
  float2 apre[kMergePreA];
#pragma unroll
  for (int s = 0; s < kMergePreA; ++s)
    apre[s] = an && s < S_mid ? a_first[static_cast<int64_t>(s) * N] : make_float2(0.0f, 0.0f);

  float Lm = 0.0f, mx = 0.0f;
  const float L = lse_weights(pm + bh * S, pl + bh * S, S, wt, scratch, &Lm, S_ex, &mx);
  const float il = L > 0.0f ? 1.0f / L : 0.0f;
  {
    float o = 0.0f;
#pragma unroll
    for (int k = 0; k < kMergePreO; ++k) {
      const int s = gi + k * ng;
      if (s < S) o = fmaf(wt[s], opre[k], o);
    }
    if (od)
#pragma unroll 8
      for (int s = gi + kMergePreO * ng; s < S; s += ng) o = fmaf(wt[s], pp[static_cast<int64_t>(s) * D], o);
    part[tid] = o;
    __syncthreads();
    if (tid < nd) {
      float a = 0.0f;
      for (int g = 0; g < ng; ++g) a += part[g * dpb + tid];
      out[bh * D + d0 + tid] = a * il;
    }
  }
  if (!pA) {
    if (y == 0 && tid == 0) {
      st[bh] = make_float2(mx, il);
      ab[bh * (M + 1) + M] = Lm * il;
    }
    return;
  }
  float* abr = ab + bh * (M + 1);
  const float* wm = wt + S_ex;
  for (int n = n_first; n < n1; n += kThreads) {
    float ax = 0.0f, ay = 0.0f;
    int s0 = 0;
    if (n == n_first) {
#pragma unroll
      for (int s = 0; s < kMergePreA; ++s)
        if (s < S_mid) {
          ax = fmaf(wm[s], apre[s].x, ax);
          ay = fmaf(wm[s], apre[s].y, ay);
        }
      s0 = kMergePreA;
    }
    const float2* a = pA + bh * S_mid * N + n;
#pragma unroll 16
    for (int s = s0; s < S_mid; ++s) {
      const float2 v = a[static_cast<int64_t>(s) * N];
      ax = fmaf(wm[s], v.x, ax);
      ay = fmaf(wm[s], v.y, ay);
    }
    abr[n] = (n == 0 ? w0 : w) * (ax * il);
    abr[N + n] = n == 0 ? 0.0f : w * (ay * il);
  }
  if (y == 0 && tid == 0) abr[M] = Lm * il;
}

// grid (ceil(M / kVmapRows), H, B): rows [r0, r0 + kVmapRows) of (sequence b, KV head h)'s V coefficients staged
// in shared memory by 16-byte loads, one thread per column j: out[b][hq][vc_j] += s_j sum_{r in rows} ab[r] Cv_r(j)
// (+ off_j psum from the first block), by atomicAdd, all G query heads of the group from one pass.
// Launched dependent (pdl_launch): the staging overlaps the merge.
constexpr int kVmapRows = 64;
template <typename CT, int G>
__global__ void __launch_bounds__(kThreads) fourier_vmap_kernel(LayerView<CT> L, const float* __restrict__ ab,
                                                                float* out) {
  __shared__ float cs[kVmapRows * kMaxCoefStride];
  __shared__ float as[G][kVmapRows];
  const int h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
  const int c0 = L.vc_off[h], nvc = L.vc_off[h + 1] - c0;
  if (nvc == 0) return;  // whole block idle (uniform)
  const int r0 = blockIdx.x * kVmapRows, r1 = min(L.M, r0 + kVmapRows), nr = r1 - r0;
  const CT* C = L.cv + static_cast<int64_t>(b) * L.M * L.nvc_tot + static_cast<int64_t>(L.M) * c0;
  const float* dc = L.dcv + static_cast<int64_t>(b) * L.nvc_tot + c0;
  const int64_t bhq = static_cast<int64_t>(b) * L.Hq + h * G;
  stage_coef_rows<CT, 8>(C, dc, nvc, r0, r1, L.N, L.kappa, cs, nvc, [] {});
  pdl_wait();  // ab and out from the merge (or the FFT path's spectral weights)
  for (int i = tid; i < G * nr; i += kThreads) {
    const int g = i / nr, rr = i - g * nr;
    as[g][rr] = ab[(bhq + g) * (L.M + 1) + r0 + rr];
  }
  __syncthreads();
  for (int j = tid; j < nvc; j += kThreads) {
    float acc[G];
#pragma unroll
    for (int g = 0; g < G; ++g) acc[g] = 0.0f;
#pragma unroll 8
    for (int rr = 0; rr < nr; ++rr) {
      const float c = cs[rr * nvc + j];
#pragma unroll
      for (int g = 0; g < G; ++g) acc[g] = fmaf(as[g][rr], c, acc[g]);
    }
    const float s = L.vs[static_cast<int64_t>(b) * L.nvc_tot + c0 + j];
    const float off = blockIdx.x == 0 ? L.vo[static_cast<int64_t>(b) * L.nvc_tot + c0 + j] : 0.0f;
    const int d = L.vc_idx[c0 + j];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float add = s * acc[g];
      if (blockIdx.x == 0) add += off * ab[(bhq + g) * (L.M + 1) + L.M];
      atomicAdd(&out[(bhq + g) * L.D + d], add);
    }
  }
}

// ---- Decode-time update (spec §3.4) -------------------------------------------------------
// One launch per decode step, grid (ceil(M / kUpdRows), H, B), kThreads: the oldest local token (ring
// slot `slot`) leaves the window. Every block adds its compressed dims to coefficient rows
// [r0, r0 + kUpdRows) of (sequence b, KV head h) at middle index pos (rank-1 step); the blocks x == 0
// also append its exact dims to the middle. A thread issues the loads of all its coefficient elements
// before any store (each element is one independent round trip; the old loop, 32 rows per block with
// load-add-store chains the compiler could not reorder, measured 33 us at Llama-3.1-8B shape).
constexpr int kUpdRows = 4;
constexpr int kUpdPer = kUpdRows * 128 / kThreads;  // elements per thread and side (<= 128 columns per head)
template <typename CT, typename XT>
__global__ void __launch_bounds__(kThreads) update_kernel(LayerView<CT, XT> L, int64_t slot, int64_t pos) {
  __shared__ float basis[kUpdRows];
  __shared__ float xs[2][128];  // the evicted token's compressed K / V dims
  const int h = blockIdx.y, b = blockIdx.z, r0 = blockIdx.x * kUpdRows, tid = threadIdx.x;
  if (tid < kUpdRows && r0 + tid < L.M) {
    const int r = r0 + tid, n = r % L.N;
    // As kv::FourierCache: float(cos/sin(2 pi ((n p) mod T) / T)) in double.
    const int64_t rr = (static_cast<int64_t>(n) * pos) % L.T;
    const double a = kTwoPi * static_cast<double>(rr) / static_cast<double>(L.T);
    basis[tid] = static_cast<float>(r < L.N ? cos(a) : sin(a));
  }
  const int64_t row = ((static_cast<int64_t>(b) * L.H + h) * L.E + slot) * L.D;
  const int kc0 = L.kc_off[h], nkc = L.kc_off[h + 1] - kc0;
  const int vc0 = L.vc_off[h], nvc = L.vc_off[h + 1] - vc0;
  for (int j = tid; j < nkc; j += kThreads) xs[0][j] = to_float(L.kex[row + L.kc_idx[kc0 + j]]);
  for (int j = tid; j < nvc; j += kThreads) xs[1][j] = to_float(L.vex[row + L.vc_idx[vc0 + j]]);
  if (blockIdx.x == 0) {  // exact dims to the middle
    const int kn0 = L.kn_off[h], nkn = L.kn_off[h + 1] - kn0;
    const int vn0 = L.vn_off[h], nvn = L.vn_off[h + 1] - vn0;
    XT* mk = L.midk + static_cast<int64_t>(b) * L.mid_cap * L.nkn_tot + L.mid_cap * kn0 + pos * nkn;
    XT* mv = L.midv + static_cast<int64_t>(b) * L.mid_cap * L.nvn_tot + L.mid_cap * vn0 + pos * nvn;
    for (int j = tid; j < nkn; j += kThreads) mk[j] = L.kex[row + L.kn_idx[kn0 + j]];
    for (int j = tid; j < nvn; j += kThreads) mv[j] = L.vex[row + L.vn_idx[vn0 + j]];
  }
  __syncthreads();
  float old[2][kUpdPer];
#pragma unroll
  for (int side = 0; side < 2; ++side) {
    const int cols = side ? nvc : nkc, tot = side ? L.nvc_tot : L.nkc_tot, c0 = side ? vc0 : kc0;
    const CT* C = (side ? L.cv : L.ck) + static_cast<int64_t>(b) * L.M * tot + static_cast<int64_t>(L.M) * c0;
    const float* dc = (side ? L.dcv : L.dck) + static_cast<int64_t>(b) * tot + c0;
#pragma unroll
    for (int k = 0; k < kUpdPer; ++k) {
      const int i = tid + k * kThreads, rl = cols ? i / cols : 0, j = cols ? i - rl * cols : 0, r = r0 + rl;
      old[side][k] = cols && rl < kUpdRows && r < L.M ? coef_get(C, dc, r, j, cols, L.N, 1.0f) : 0.0f;
    }
  }
#pragma unroll
  for (int side = 0; side < 2; ++side) {
    const int cols = side ? nvc : nkc, tot = side ? L.nvc_tot : L.nkc_tot, c0 = side ? vc0 : kc0;
    CT* C = (side ? L.cv : L.ck) + static_cast<int64_t>(b) * L.M * tot + static_cast<int64_t>(L.M) * c0;
    float* dc = (side ? L.dcv : L.dck) + static_cast<int64_t>(b) * tot + c0;
#pragma unroll
    for (int k = 0; k < kUpdPer; ++k) {
      const int i = tid + k * kThreads, rl = cols ? i / cols : 0, j = cols ? i - rl * cols : 0, r = r0 + rl;
      if (cols && rl < kUpdRows && r < L.M) coef_put(C, dc, r, j, cols, L.N, L.kappa, old[side][k], xs[side][j], basis[rl]);
    }
  }
}

// grid (H, B): the new token into ring slot `slot`.
template <typename XT>
__global__ void push_kernel(XT* kex, XT* vex, const XT* k, const XT* v, int H, int64_t E, int D,
                            int64_t slot) {
  const int h = blockIdx.x, b = blockIdx.y;
  const int64_t dst = ((static_cast<int64_t>(b) * H + h) * E + slot) * D, src = (static_cast<int64_t>(b) * H + h) * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    kex[dst + d] = k[src + d];
    vex[dst + d] = v[src + d];
  }
}

// ---- Prefill (spec §3.3, §3.5) ------------------------------------------------------------
// grid (E, H, B): sinks = prompt rows [0, sink), local = the last `window` rows (ring slots 0..).
template <typename XT>
__global__ void copy_exact_kernel(XT* kex, XT* vex, const XT* k, const XT* v, int H, int64_t E, int D,
                                  int64_t P, int64_t sink, int64_t window) {
  const int64_t e = blockIdx.x;
  const int h = blockIdx.y, b = blockIdx.z;
  const int64_t src_row = e < sink ? e : P - window + (e - sink);
  const int64_t head = static_cast<int64_t>(b) * H + h;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    kex[(head * E + e) * D + d] = k[(head * P + src_row) * D + d];
    vex[(head * E + e) * D + d] = v[(head * P + src_row) * D + d];
  }
}

// grid (ceil(K/32), H, B): exact dims of middle tokens l < K.
template <typename CT, typename XT>
__global__ void __launch_bounds__(kThreads) gather_middle_kernel(LayerView<CT, XT> L, const XT* k, const XT* v,
                                                                  int64_t P, int64_t sink, int64_t K) {
  const int h = blockIdx.y, b = blockIdx.z;
  const int64_t l0 = blockIdx.x * 32;
  const int64_t head = (static_cast<int64_t>(b) * L.H + h) * P;
  for (int side = 0; side < 2; ++side) {
    const int* off = side ? L.vn_off : L.kn_off;
    const int* idx = side ? L.vn_idx : L.kn_idx;
    const int c0 = off[h], cols = off[h + 1] - c0;
    XT* dst = (side ? L.midv : L.midk) + static_cast<int64_t>(b) * L.mid_cap * (side ? L.nvn_tot : L.nkn_tot) +
              L.mid_cap * c0;
    const XT* src = side ? v : k;
    for (int i = threadIdx.x; i < 32 * cols; i += kThreads) {
      const int64_t l = l0 + i / cols;
      const int j = i % cols;
      if (l < K) dst[l * cols + j] = src[(head + sink + l) * L.D + idx[c0 + j]];
    }
  }
}

// Compressed columns: (sequence b, kv head h, K or V, j) in a fixed order; X[c][t] = x_c(t) for t < K, 0 to T.
struct ColumnTable {
  const int *head, *side, *j;  // [n_cols per sequence]
  int n_cols;
};

template <typename CT, typename XT>
__global__ void gather_columns_kernel(LayerView<CT> L, ColumnTable ct, const XT* k, const XT* v, int64_t P,
                                      int64_t sink, int64_t K, int64_t c_begin, float* X) {
  const int64_t c = c_begin + blockIdx.y;
  const int b = static_cast<int>(c / ct.n_cols), cc = static_cast<int>(c % ct.n_cols);
  const int h = ct.head[cc], side = ct.side[cc], j = ct.j[cc];
  const int dim = side ? L.vc_idx[L.vc_off[h] + j] : L.kc_idx[L.kc_off[h] + j];
  const XT* src = (side ? v : k) + (static_cast<int64_t>(b) * L.H + h) * P * L.D + dim;
  float* x = X + static_cast<int64_t>(blockIdx.y) * L.T;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < L.T;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[t] = t < K ? to_float(src[(sink + t) * L.D]) : 0.0f;
}

// Mean and max absolute deviation (spec §3.5) of rows of length K, in double. One block per row.
__global__ void __launch_bounds__(kThreads) mean_dev_kernel(const float* X, int64_t stride, int64_t K,
                                                            double* mean, double* dev) {
  __shared__ double s_sum[kThreads], s_min[kThreads], s_max[kThreads];
  const float* x = X + static_cast<int64_t>(blockIdx.x) * stride;
  double sum = 0, mn = INFINITY, mx = -INFINITY;
  for (int64_t t = threadIdx.x; t < K; t += kThreads) {
    const double v = x[t];
    sum += v;
    mn = fmin(mn, v);
    mx = fmax(mx, v);
  }
  s_sum[threadIdx.x] = sum;
  s_min[threadIdx.x] = mn;
  s_max[threadIdx.x] = mx;
  __syncthreads();
  for (int o = kThreads / 2; o > 0; o /= 2) {
    if (threadIdx.x < o) {
      s_sum[threadIdx.x] += s_sum[threadIdx.x + o];
      s_min[threadIdx.x] = fmin(s_min[threadIdx.x], s_min[threadIdx.x + o]);
      s_max[threadIdx.x] = fmax(s_max[threadIdx.x], s_max[threadIdx.x + o]);
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const double m = s_sum[0] / static_cast<double>(K);
    mean[blockIdx.x] = m;
    dev[blockIdx.x] = fmax(s_max[0] - m, m - s_min[0]);
  }
}

// grid (ceil(N/128), cols): C_n = Re Z_n, S_n = -Im Z_n into the coefficient storage.
template <typename CT>
__global__ void store_coefficients_kernel(LayerView<CT> L, ColumnTable ct, int64_t c_begin, const float2* Z) {
  const int64_t c = c_begin + blockIdx.y;
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= L.N) return;
  const int b = static_cast<int>(c / ct.n_cols), cc = static_cast<int>(c % ct.n_cols);
  const int h = ct.head[cc], side = ct.side[cc], j = ct.j[cc];
  const int* off = side ? L.vc_off : L.kc_off;
  const int c0 = off[h], cols = off[h + 1] - c0, tot = side ? L.nvc_tot : L.nkc_tot;
  CT* C = (side ? L.cv : L.ck) + static_cast<int64_t>(b) * L.M * tot + static_cast<int64_t>(L.M) * c0;
  float* dc = (side ? L.dcv : L.dck) + static_cast<int64_t>(b) * tot + c0;
  const float2 z = Z[static_cast<int64_t>(blockIdx.y) * (L.T / 2 + 1) + n];
  coef_set(C, dc, n, j, cols, L.N, L.kappa, z.x);
  coef_set(C, dc, L.N + n, j, cols, L.N, L.kappa, -z.y);
}

// grid (ceil((T/2+1)/128), cols): the Hermitian half spectrum of the reconstruction
// r(l) = w0 C_0 + w sum_{n>=1} (C_n cos + S_n sin), from the coefficients as stored.
template <typename CT>
__global__ void recon_spectrum_kernel(LayerView<CT> L, ColumnTable ct, int64_t c_begin, float2* Z) {
  const int64_t c = c_begin + blockIdx.y;
  const int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (n > L.T / 2) return;
  float2 z = make_float2(0.0f, 0.0f);
  if (n < L.N) {
    const int b = static_cast<int>(c / ct.n_cols), cc = static_cast<int>(c % ct.n_cols);
    const int h = ct.head[cc], side = ct.side[cc], j = ct.j[cc];
    const int* off = side ? L.vc_off : L.kc_off;
    const int c0 = off[h], cols = off[h + 1] - c0, tot = side ? L.nvc_tot : L.nkc_tot;
    const CT* C = (side ? L.cv : L.ck) + static_cast<int64_t>(b) * L.M * tot + static_cast<int64_t>(L.M) * c0;
    const float* dc = (side ? L.dcv : L.dck) + static_cast<int64_t>(b) * tot + c0;
    const float cn = coef_get(C, dc, static_cast<int>(n), j, cols, L.N, L.kappa);
    const float sn = coef_get(C, dc, static_cast<int>(L.N + n), j, cols, L.N, L.kappa);
    if (n == 0)
      z.x = static_cast<float>(static_cast<double>(L.w0) * cn);
    else
      z = make_float2(0.5f * static_cast<float>(static_cast<double>(L.w) * cn),
                      -0.5f * static_cast<float>(static_cast<double>(L.w) * sn));
  }
  Z[static_cast<int64_t>(blockIdx.y) * (L.T / 2 + 1) + n] = z;
}

// grid (ceil(cols/128)): s = dev_u / dev_i (1 if dev_i = 0), off = u_bar - s i_bar, as kv::spectral::affine_match.
template <typename CT>
__global__ void affine_kernel(LayerView<CT> L, ColumnTable ct, int64_t c_begin, int64_t n, const double* mu,
                              const double* du, const double* mi, const double* di) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int64_t c = c_begin + i;
  const int b = static_cast<int>(c / ct.n_cols), cc = static_cast<int>(c % ct.n_cols);
  const int h = ct.head[cc], side = ct.side[cc], j = ct.j[cc];
  const int* off = side ? L.vc_off : L.kc_off;
  const int tot = side ? L.nvc_tot : L.nkc_tot;
  const int64_t at = static_cast<int64_t>(b) * tot + off[h] + j;
  const float u_bar = static_cast<float>(mu[i]), i_bar = static_cast<float>(mi[i]);
  const float s = di[i] > 0 ? static_cast<float>(du[i] / di[i]) : 1.0f;
  (side ? L.vs : L.ks)[at] = s;
  (side ? L.vo : L.ko)[at] = u_bar - s * i_bar;
}

}  // namespace

// ---- Host side -------------------------------------------------------------------------------

struct FourierLayer::Impl {
  FourierConfig cfg;
  int B, H, Hq, G, D, N, M;
  int64_t E;
  std::vector<int> nkc, nkn, nvc, nvn;                  // [H]
  std::vector<int> kc_off, kn_off, vc_off, vn_off;      // [H+1]
  int nkc_tot = 0, nkn_tot = 0, nvc_tot = 0, nvn_tot = 0;
  DeviceBuffer idx;  // kc, kn, vc, vn lists then the four offset arrays
  int o_kc = 0, o_kn = 0, o_vc = 0, o_vn = 0, o_kco = 0, o_kno = 0, o_vco = 0, o_vno = 0;
  DeviceBuffer cols;  // column table: head, side, j
  int n_cols = 0;
  DeviceBuffer kex, vex, midk, midv, ck, cv, dck, dcv, ks, ko, vs, vo, alpha, gamma;
  DeviceBuffer etab;  // tiled path: fp16 basis table [hi, lo][kTileP][2N + 8] (empty if unsupported)
  bool compressed = false;
  int64_t mid_len = 0, lstart = 0;

  template <typename CT, typename XT = bf16>
  LayerView<CT, XT> view() const {
    LayerView<CT, XT> L{};
    L.B = B, L.H = H, L.Hq = Hq, L.G = G, L.D = D, L.N = N, L.M = M;
    L.E = E, L.T = cfg.period, L.mid_cap = cfg.mid_capacity;
    L.nkc_tot = nkc_tot, L.nkn_tot = nkn_tot, L.nvc_tot = nvc_tot, L.nvn_tot = nvn_tot;
    const int* base = idx.as<int>();
    L.kc_idx = base + o_kc, L.kn_idx = base + o_kn, L.vc_idx = base + o_vc, L.vn_idx = base + o_vn;
    L.kc_off = base + o_kco, L.kn_off = base + o_kno, L.vc_off = base + o_vco, L.vn_off = base + o_vno;
    if (std::is_same_v<XT, float> == cfg.exact_f32)  // else null: the exact storage has the other type
      L.kex = kex.as<XT>(), L.vex = vex.as<XT>(), L.midk = midk.as<XT>(), L.midv = midv.as<XT>();
    L.ck = ck.as<CT>(), L.cv = cv.as<CT>(), L.dck = dck.as<float>(), L.dcv = dcv.as<float>();
    L.ks = ks.as<float>(), L.ko = ko.as<float>(), L.vs = vs.as<float>(), L.vo = vo.as<float>();
    L.kappa = cfg.coeff_bf16 ? static_cast<float>(1.0 / static_cast<double>(cfg.period)) : 1.0f;
    L.w0 = static_cast<float>(cfg.w0), L.w = static_cast<float>(cfg.w);
    return L;
  }
  ColumnTable column_table() const {
    const int* c = cols.as<int>();
    return {c, c + n_cols, c + 2 * n_cols, n_cols};
  }
  int coef_bytes() const { return cfg.coeff_bf16 ? 2 : 4; }
  int exact_bytes() const { return cfg.exact_f32 ? 4 : 2; }

  template <typename CT, typename XT>
  void prefill_t(const XT* k, const XT* v, int64_t P);
  template <typename CT, typename XT>
  int64_t evict_t(void* stream = nullptr);
  template <typename CT, typename XT>
  void append_t(const XT* k, const XT* v);
  template <typename XT>
  void check_exact_type(const char* what) const {
    if (std::is_same_v<XT, float> != cfg.exact_f32)
      fail_invalid(std::string("cuda fourier ") + what + ": K/V given as " + (std::is_same_v<XT, float> ? "f32" : "bf16") +
                   " but the exact storage is " + (cfg.exact_f32 ? "f32" : "bf16"));
  }
  template <typename CT>
  void attend_t(const float* q, float* out, AttentionWorkspace& ws, int target_blocks, FourierPath path);

  // NOTE: estimated from the direct kernel's measured rate (~0.7 ns per middle token x frequency x query
  // head, compute-bound) and the FFT path's traffic (~a dozen f32 passes over T per query head, ~10
  // launches): FFT once the trigonometric work is large against T and the launches are amortised.
  // The tiled path's limits: the basis table in shared memory (N <= kTiledMaxN), k-steps of 8 frequencies.
  // The FFT and tiled paths: bf16 exact storage and head_dim 64 / 128 only (the direct path: any of 8 .. 128).
  bool fft_supported() const { return !cfg.exact_f32 && (D == 64 || D == 128); }
  bool tiled_supported() const {
    return fft_supported() && N % 8 == 0 && N <= kTiledMaxN && (D == 64 || D == 128) && (G == 1 || G == 2 || G == 4 || G == 8) &&
           tiled_smem_bytes(N, D, G, true) <= static_cast<size_t>(smem_optin());
  }
  static int smem_optin() {
    static const int bytes = [] {
      int dev = 0, v = 0;
      check(cudaGetDevice(&dev), "cudaGetDevice");
      check(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "cudaDeviceGetAttribute");
      return v;
    }();
    return bytes;
  }
  // NOTE: the tiled path is not an Auto choice: on the H200 it measured 1.03-1.2x the FFT path's time at
  // 4k-128k (tiled-fast 0.94-1.07x), issue-bound at 8 warps per multiprocessor (docs/perf/gpu.md).
  // Four-step wherever T is a multiple of its Q (period=aligned); otherwise direct or FFT.
  FourierPath auto_path() const {
    if (!fft_supported()) return FourierPath::Direct;  // f32 exact K/V or head_dim < 64: direct only
    if (fourstep::supported(N, D, G, cfg.period)) return FourierPath::FourStep;
    const double work = static_cast<double>(mid_len) * N;
    return work >= 64.0 * static_cast<double>(cfg.period) && work * B * Hq >= 4.0e6 ? FourierPath::Fft
                                                                                     : FourierPath::Direct;
  }
};

FourierLayer::FourierLayer(const FourierConfig& cfg, const std::vector<FourierHeadDims>& heads)
    : im_(std::make_unique<Impl>()) {
  Impl& I = *im_;
  I.cfg = cfg;
  const DecodeShape& s = cfg.shape;
  I.B = s.batch, I.H = s.n_kv_heads, I.Hq = s.n_heads, I.D = s.head_dim;
  if (I.B < 1 || I.H < 1 || I.Hq % I.H || static_cast<int>(heads.size()) != I.H)
    fail_invalid("cuda fourier: bad shape or " + std::to_string(heads.size()) + " head splits for " +
                 std::to_string(I.H) + " kv heads");
  I.G = I.Hq / I.H;
  if (cfg.coeffs < 2 || cfg.coeffs % 2 || cfg.window < 1 || cfg.sink < 0)
    fail_invalid("cuda fourier: invalid sink/window/coeffs");
  I.M = static_cast<int>(cfg.coeffs);
  I.N = I.M / 2;
  if (cfg.period <= 2 * static_cast<int64_t>(I.N - 1) || cfg.mid_capacity < 1 || cfg.mid_capacity > cfg.period)
    fail_invalid("cuda fourier: period " + std::to_string(cfg.period) + " must exceed 2(N-1) = " +
                 std::to_string(2 * (I.N - 1)) + " and hold the middle capacity " +
                 std::to_string(cfg.mid_capacity));
  I.E = cfg.sink + cfg.window;
  std::vector<int> flat;
  auto add_list = [&](auto member, std::vector<int>& count, std::vector<int>& off, int& at) {
    at = static_cast<int>(flat.size());
    off.assign(1, 0);
    for (const auto& hd : heads) {
      const std::vector<int>& l = hd.*member;
      for (int d : l) {
        if (d < 0 || d >= I.D) fail_invalid("cuda fourier: dim index " + std::to_string(d) + " out of range");
        flat.push_back(d);
      }
      count.push_back(static_cast<int>(l.size()));
      off.push_back(off.back() + static_cast<int>(l.size()));
    }
  };
  add_list(&FourierHeadDims::kc, I.nkc, I.kc_off, I.o_kc);
  add_list(&FourierHeadDims::kn, I.nkn, I.kn_off, I.o_kn);
  add_list(&FourierHeadDims::vc, I.nvc, I.vc_off, I.o_vc);
  add_list(&FourierHeadDims::vn, I.nvn, I.vn_off, I.o_vn);
  for (int h = 0; h < I.H; ++h)
    if (I.nkc[h] + I.nkn[h] != I.D || I.nvc[h] + I.nvn[h] != I.D)
      fail_invalid("cuda fourier: kv head " + std::to_string(h) + ": compressed + exact dims must be head_dim");
  I.nkc_tot = I.kc_off.back(), I.nkn_tot = I.kn_off.back(), I.nvc_tot = I.vc_off.back(), I.nvn_tot = I.vn_off.back();
  const std::pair<std::vector<int>*, int*> offsets[] = {
      {&I.kc_off, &I.o_kco}, {&I.kn_off, &I.o_kno}, {&I.vc_off, &I.o_vco}, {&I.vn_off, &I.o_vno}};
  for (auto [v, at] : offsets) {
    *at = static_cast<int>(flat.size());
    flat.insert(flat.end(), v->begin(), v->end());
  }
  I.idx.reserve(flat.size() * sizeof(int));
  to_device(I.idx.get(), flat.data(), flat.size() * sizeof(int));
  std::vector<int> head, side, jj;
  for (int h = 0; h < I.H; ++h)
    for (int sd = 0; sd < 2; ++sd)
      for (int j = 0; j < (sd ? I.nvc[h] : I.nkc[h]); ++j) {
        head.push_back(h);
        side.push_back(sd);
        jj.push_back(j);
      }
  I.n_cols = static_cast<int>(head.size());
  std::vector<int> table = head;
  table.insert(table.end(), side.begin(), side.end());
  table.insert(table.end(), jj.begin(), jj.end());
  I.cols.reserve(std::max<size_t>(table.size(), 1) * sizeof(int));
  if (!table.empty()) to_device(I.cols.get(), table.data(), table.size() * sizeof(int));

  const size_t B = I.B;
  const size_t xb = I.exact_bytes();
  I.kex.reserve(B * I.H * I.E * I.D * xb);
  I.vex.reserve(B * I.H * I.E * I.D * xb);
  I.midk.reserve(std::max<size_t>(1, B * cfg.mid_capacity * I.nkn_tot) * xb);
  I.midv.reserve(std::max<size_t>(1, B * cfg.mid_capacity * I.nvn_tot) * xb);
  I.ck.reserve(std::max<size_t>(1, B * I.M * I.nkc_tot) * I.coef_bytes());
  I.cv.reserve(std::max<size_t>(1, B * I.M * I.nvc_tot) * I.coef_bytes());
  for (DeviceBuffer* d : {&I.dck, &I.ks, &I.ko}) d->reserve(std::max<size_t>(1, B * I.nkc_tot) * 4);
  for (DeviceBuffer* d : {&I.dcv, &I.vs, &I.vo}) d->reserve(std::max<size_t>(1, B * I.nvc_tot) * 4);
  I.alpha.reserve(B * I.Hq * I.M * 4);
  I.gamma.reserve(B * I.Hq * 4);
  if (I.N % 8 == 0 && I.N <= kTiledMaxN) {
    I.etab.reserve(2 * static_cast<size_t>(kTileP) * (2 * I.N + 8) * 2);
    basis_table_kernel<<<dim3(kTileP, 2), 128>>>(I.etab.as<__half>(), I.N, cfg.period);
    check_launch("fourier: tiled basis table");
  }
}

FourierLayer::~FourierLayer() = default;

int64_t FourierLayer::mid_len() const { return im_->mid_len; }

template <typename CT, typename XT>
void FourierLayer::Impl::prefill_t(const XT* k, const XT* v, int64_t P) {
  const int64_t K = P - cfg.sink - cfg.window, T = cfg.period;
  if (K < 1 || K > cfg.mid_capacity)
    fail_invalid("cuda fourier prefill: prompt of " + std::to_string(P) + " tokens leaves a middle of " +
                 std::to_string(K) + " (capacity " + std::to_string(cfg.mid_capacity) + ")");
  const LayerView<CT> L = view<CT>();
  copy_exact_kernel<XT><<<dim3(E, H, B), 128>>>(kex.as<XT>(), vex.as<XT>(), k, v, H, E, D, P, cfg.sink, cfg.window);
  check_launch("fourier prefill: sinks and window");
  gather_middle_kernel<CT, XT><<<dim3((K + 31) / 32, H, B), kThreads>>>(view<CT, XT>(), k, v, P, cfg.sink, K);
  check_launch("fourier prefill: middle exact dims");
  if (cfg.coeff_bf16) {  // row 0 of bf16 storage is unused; keep it defined
    fill_zero(ck.get(), ck.bytes());
    fill_zero(cv.get(), cv.bytes());
  }
  const ColumnTable ct = column_table();
  const int64_t total = static_cast<int64_t>(B) * n_cols;
  const int64_t per_chunk = std::max<int64_t>(1, std::min<int64_t>({total, (int64_t{128} << 20) / (T * 4), 32768}));
  DeviceBuffer X(per_chunk * T * 4), Z(per_chunk * (T / 2 + 1) * 8), st(per_chunk * 4 * 8);
  double* mu = st.as<double>();
  double *du = mu + per_chunk, *mi = du + per_chunk, *di = mi + per_chunk;
  for (int64_t c0 = 0; c0 < total; c0 += per_chunk) {
    const int n = static_cast<int>(std::min(per_chunk, total - c0));
    int len = static_cast<int>(T);
    cufftHandle fwd, inv;
    check_cufft(cufftPlanMany(&fwd, 1, &len, nullptr, 1, len, nullptr, 1, len / 2 + 1, CUFFT_R2C, n), "plan r2c");
    check_cufft(cufftPlanMany(&inv, 1, &len, nullptr, 1, len / 2 + 1, nullptr, 1, len, CUFFT_C2R, n), "plan c2r");
    gather_columns_kernel<CT, XT><<<dim3(static_cast<unsigned>(std::min<int64_t>((T + 255) / 256, 1024)), n), 256>>>(
        L, ct, k, v, P, cfg.sink, K, c0, X.as<float>());
    check_launch("fourier prefill: gather columns");
    mean_dev_kernel<<<n, kThreads>>>(X.as<float>(), T, K, mu, du);
    check_launch("fourier prefill: signal statistics");
    check_cufft(cufftExecR2C(fwd, X.as<cufftReal>(), Z.as<cufftComplex>()), "exec r2c");
    store_coefficients_kernel<CT><<<dim3((N + 127) / 128, n), 128>>>(L, ct, c0, Z.as<float2>());
    check_launch("fourier prefill: store coefficients");
    recon_spectrum_kernel<CT><<<dim3(static_cast<unsigned>((T / 2 + 1 + 127) / 128), n), 128>>>(L, ct, c0,
                                                                                               Z.as<float2>());
    check_launch("fourier prefill: reconstruction spectrum");
    check_cufft(cufftExecC2R(inv, Z.as<cufftComplex>(), X.as<cufftReal>()), "exec c2r");
    mean_dev_kernel<<<n, kThreads>>>(X.as<float>(), T, K, mi, di);
    check_launch("fourier prefill: reconstruction statistics");
    affine_kernel<CT><<<(n + 127) / 128, 128>>>(L, ct, c0, n, mu, du, mi, di);
    check_launch("fourier prefill: affine correction");
    synchronize();
    cufftDestroy(fwd);
    cufftDestroy(inv);
  }
  compressed = true;
  mid_len = K;
  lstart = 0;
}

void FourierLayer::prefill(const uint16_t* k, const uint16_t* v, int64_t P) {
  im_->check_exact_type<bf16>("prefill");
  const auto* kb = reinterpret_cast<const bf16*>(k);
  const auto* vb = reinterpret_cast<const bf16*>(v);
  if (im_->cfg.coeff_bf16)
    im_->prefill_t<bf16>(kb, vb, P);
  else
    im_->prefill_t<float>(kb, vb, P);
}

void FourierLayer::prefill(const float* k, const float* v, int64_t P) {
  im_->check_exact_type<float>("prefill");
  if (im_->cfg.coeff_bf16)
    im_->prefill_t<bf16>(k, v, P);
  else
    im_->prefill_t<float>(k, v, P);
}

template <typename CT, typename XT>
int64_t FourierLayer::Impl::evict_t(void* stream) {
  if (!compressed) fail_unsupported("cuda fourier append: the layer has not been prefilled");
  if (mid_len >= cfg.period)
    fail_unsupported("cuda fourier append: middle index " + std::to_string(mid_len) + " reached the period T = " +
                     std::to_string(cfg.period) + " (re-anchoring is CPU-only)");
  if (mid_len >= cfg.mid_capacity)
    fail_unsupported("cuda fourier append: middle capacity " + std::to_string(cfg.mid_capacity) + " reached");
  const LayerView<CT, XT> L = view<CT, XT>();
  const int64_t slot = cfg.sink + lstart;
  update_kernel<CT, XT><<<dim3((M + kUpdRows - 1) / kUpdRows, H, B), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      L, slot, mid_len);
  check_launch("fourier append: evict and rank-1 update");
  ++mid_len;
  lstart = (lstart + 1) % cfg.window;
  return slot;
}

template <typename CT, typename XT>
void FourierLayer::Impl::append_t(const XT* k, const XT* v) {
  const int64_t slot = evict_t<CT, XT>();
  push_kernel<XT><<<dim3(H, B), 128>>>(kex.as<XT>(), vex.as<XT>(), k, v, H, E, D, slot);
  check_launch("fourier append: push");
}

int64_t FourierLayer::evict(void* stream) {
  if (im_->cfg.exact_f32)
    return im_->cfg.coeff_bf16 ? im_->evict_t<bf16, float>(stream) : im_->evict_t<float, float>(stream);
  return im_->cfg.coeff_bf16 ? im_->evict_t<bf16, bf16>(stream) : im_->evict_t<float, bf16>(stream);
}
void* FourierLayer::exact_k() const { return im_->kex.get(); }
void* FourierLayer::exact_v() const { return im_->vex.get(); }
int64_t FourierLayer::exact_rows() const { return im_->E; }

void FourierLayer::append(const uint16_t* k, const uint16_t* v) {
  im_->check_exact_type<bf16>("append");
  const auto* kb = reinterpret_cast<const bf16*>(k);
  const auto* vb = reinterpret_cast<const bf16*>(v);
  if (im_->cfg.coeff_bf16)
    im_->append_t<bf16>(kb, vb);
  else
    im_->append_t<float>(kb, vb);
}

void FourierLayer::append(const float* k, const float* v) {
  im_->check_exact_type<float>("append");
  if (im_->cfg.coeff_bf16)
    im_->append_t<bf16>(k, v);
  else
    im_->append_t<float>(k, v);
}

namespace {

// Blocks of fourier_split_kernel<D, G, NPT, XT> resident per multiprocessor (configures its shared memory once).
template <int D, int G, int NPT, typename XT>
int split_resident() {
  static const int n = [] {
    constexpr int bytes = split_smem_floats<D, G>() * 4;
    check(cudaFuncSetAttribute(fourier_split_kernel<D, G, NPT, XT>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes),
          "cudaFuncSetAttribute");
    int r = 0;
    check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&r, fourier_split_kernel<D, G, NPT, XT>, kThreads, bytes),
          "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
    return std::max(r, 1);
  }();
  return n;
}

// p.S_mid == 0 asks for the blocks resident per multiprocessor only (returned); otherwise launches.
template <int D, int G, int NPT, typename XT>
int launch_split(const SplitParams& p, int B, int H) {
  const int resident = split_resident<D, G, NPT, XT>();
  if (p.S_mid == 0) return resident;
  fourier_split_kernel<D, G, NPT, XT><<<dim3(p.S_ex + p.S_mid, H, B), kThreads, split_smem_floats<D, G>() * 4>>>(p);
  return resident;
}

template <int D, int G, typename XT>
int dispatch_npt(int N, const SplitParams& p, int B, int H) {
  if (N <= kThreads) return launch_split<D, G, 1, XT>(p, B, H);
  if constexpr (G <= 4) {
    if (N <= 4 * kThreads) return launch_split<D, G, 4, XT>(p, B, H);
    if (N <= 8 * kThreads) return launch_split<D, G, 8, XT>(p, B, H);
  } else {
    if (N <= 4 * kThreads) return launch_split<D, G, 4, XT>(p, B, H);
  }
  fail_unsupported("cuda fourier attention: " + std::to_string(N) + " frequencies with a GQA group of " +
                   std::to_string(G));
}

template <int D, typename XT>
int dispatch_g(int G, int N, const SplitParams& p, int B, int H) {
  switch (G) {
    case 1: return dispatch_npt<D, 1, XT>(N, p, B, H);
    case 2: return dispatch_npt<D, 2, XT>(N, p, B, H);
    case 4: return dispatch_npt<D, 4, XT>(N, p, B, H);
    case 8: return dispatch_npt<D, 8, XT>(N, p, B, H);
  }
  fail_unsupported("cuda fourier attention: GQA group of " + std::to_string(G) + " (have 1, 2, 4, 8)");
}

// The direct path's split kernel for head_dim D (8, 16, 32, 64, 128) and exact element type XT.
template <typename XT>
int dispatch_direct(int D, int G, int N, const SplitParams& p, int B, int H) {
  switch (D) {
    case 8: return dispatch_g<8, XT>(G, N, p, B, H);
    case 16: return dispatch_g<16, XT>(G, N, p, B, H);
    case 32: return dispatch_g<32, XT>(G, N, p, B, H);
    case 64: return dispatch_g<64, XT>(G, N, p, B, H);
    case 128: return dispatch_g<128, XT>(G, N, p, B, H);
  }
  fail_unsupported("cuda fourier attention: head_dim " + std::to_string(D) + " (have 8, 16, 32, 64, 128)");
}

// FFT path: blocks of fourier_split_fft_kernel<D, G> resident per multiprocessor; launches unless p.S_mid == 0.
template <int D, int G>
int launch_split_fft(const SplitParams& p, int B, int H) {
  constexpr int bytes = fft_split_smem_floats<D, G>() * 4;
  static const int resident = [] {
    check(cudaFuncSetAttribute(fourier_split_fft_kernel<D, G>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes),
          "cudaFuncSetAttribute");
    int r = 0;
    check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&r, fourier_split_fft_kernel<D, G>, kThreads, bytes),
          "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
    return std::max(r, 1);
  }();
  if (p.S_mid > 0) fourier_split_fft_kernel<D, G><<<dim3(p.S_ex + p.S_mid, H, B), kThreads, bytes>>>(p);
  return resident;
}

template <int D>
int dispatch_fft_g(int G, const SplitParams& p, int B, int H) {
  switch (G) {
    case 1: return launch_split_fft<D, 1>(p, B, H);
    case 2: return launch_split_fft<D, 2>(p, B, H);
    case 4: return launch_split_fft<D, 4>(p, B, H);
    case 8: return launch_split_fft<D, 8>(p, B, H);
  }
  fail_unsupported("cuda fourier attention: GQA group of " + std::to_string(G) + " (have 1, 2, 4, 8)");
}

// Batched real FFTs of length T over `batch` rows (packed rows: T reals, T/2+1 complex values),
// C2R and R2C, sharing one work area. Cached per (T, batch) for the process and never destroyed
// (NOTE: a static destructor would run after the CUDA context is gone); all use the default stream.
struct FftPlans {
  cufftHandle c2r = 0, r2c = 0;
  void* work = nullptr;
};

const FftPlans& fft_plans(int64_t T, int batch) {
  static std::mutex mu;
  static auto* cache = new std::map<std::pair<int64_t, int>, FftPlans>();
  std::lock_guard<std::mutex> lock(mu);
  const auto key = std::make_pair(T, batch);
  if (auto it = cache->find(key); it != cache->end()) return it->second;
  if (T > (int64_t{1} << 30)) fail_unsupported("cuda fourier attention: FFT length " + std::to_string(T));
  int len = static_cast<int>(T);
  FftPlans pl;
  size_t w_c2r = 0, w_r2c = 0;
  check_cufft(cufftCreate(&pl.c2r), "create c2r");
  check_cufft(cufftCreate(&pl.r2c), "create r2c");
  check_cufft(cufftSetAutoAllocation(pl.c2r, 0), "c2r work area");
  check_cufft(cufftSetAutoAllocation(pl.r2c, 0), "r2c work area");
  check_cufft(cufftMakePlanMany(pl.c2r, 1, &len, nullptr, 1, 0, nullptr, 1, 0, CUFFT_C2R, batch, &w_c2r), "plan c2r");
  check_cufft(cufftMakePlanMany(pl.r2c, 1, &len, nullptr, 1, 0, nullptr, 1, 0, CUFFT_R2C, batch, &w_r2c), "plan r2c");
  check(cudaMalloc(&pl.work, std::max<size_t>({w_c2r, w_r2c, 16})), "cudaMalloc (cuFFT work area)");
  check_cufft(cufftSetWorkArea(pl.c2r, pl.work), "c2r set work area");
  check_cufft(cufftSetWorkArea(pl.r2c, pl.work), "r2c set work area");
  return cache->emplace(key, pl).first->second;
}

// Blocks of 256 threads for an elementwise pass over n elements per row, ~4 elements per thread.
unsigned row_blocks(int64_t n) { return static_cast<unsigned>(std::clamp<int64_t>((n + 1023) / 1024, 1, 4096)); }

// Tiled path: the middle blocks (one per multiprocessor: the basis fills shared memory). The exact blocks
// (split < p.S_ex) ran in the prologue launch (launch_project).
template <int D, int G, bool SPLIT>
void launch_tiled(const SplitParams& p, int B, int H, int N, int smem_optin) {
  static const bool configured = [&] {
    check(cudaFuncSetAttribute(fourier_tiled_kernel<D, G, SPLIT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               smem_optin),
          "cudaFuncSetAttribute");
    return true;
  }();
  (void)configured;
  fourier_tiled_kernel<D, G, SPLIT><<<dim3(p.S_mid, H, B), kTiledThreads, tiled_smem_bytes(N, D, G, SPLIT)>>>(p);
}

template <int D, bool SPLIT>
void dispatch_tiled_g(int G, const SplitParams& p, int B, int H, int N, int smem_optin) {
  switch (G) {
    case 1: return launch_tiled<D, 1, SPLIT>(p, B, H, N, smem_optin);
    case 2: return launch_tiled<D, 2, SPLIT>(p, B, H, N, smem_optin);
    case 4: return launch_tiled<D, 4, SPLIT>(p, B, H, N, smem_optin);
    case 8: return launch_tiled<D, 8, SPLIT>(p, B, H, N, smem_optin);
  }
  fail_unsupported("cuda fourier attention (tiled): GQA group of " + std::to_string(G) + " (have 1, 2, 4, 8)");
}

// Launches kernel<<<grid, block>>>(args) as a programmatic dependent launch (see pdl_wait); a plain launch
// if the runtime refuses the attribute (then every later call launches plainly).
template <typename... KArgs, typename... Args>
void pdl_launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, Args... args) {
  static bool refused = false;
  if (!refused) {
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = 0, cfg.stream = 0;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr, cfg.numAttrs = 1;
    if (cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...) == cudaSuccess) return;
    (void)cudaGetLastError();
    refused = true;
  }
  kernel<<<grid, block>>>(static_cast<KArgs>(args)...);
}

// The projection (all paths), and with `ex` the exact blocks (sinks + local window) of split params *ex in the
// same launch (paths whose middle kernel has no exact blocks of its own: tiled). grid (ceil(M / kProjRows)
// [+ ex->S_ex], H, B).
template <typename CT, int D, int G>
void launch_prologue(const LayerView<CT>& L, const float* q, float* alpha, float* gamma, const SplitParams* ex) {
  const int n_proj = (L.M + kProjRows - 1) / kProjRows;
  const SplitParams p = ex ? *ex : SplitParams{};
  prologue_kernel<CT, D, G><<<dim3(n_proj + (ex ? ex->S_ex : 0), L.H, L.B), kThreads>>>(L, q, alpha, gamma, p,
                                                                                           n_proj);
}
template <typename CT, int D>
void launch_prologue_g(int G, const LayerView<CT>& L, const float* q, float* alpha, float* gamma,
                       const SplitParams* ex) {
  switch (G) {
    case 1: return launch_prologue<CT, D, 1>(L, q, alpha, gamma, ex);
    case 2: return launch_prologue<CT, D, 2>(L, q, alpha, gamma, ex);
    case 4: return launch_prologue<CT, D, 4>(L, q, alpha, gamma, ex);
    case 8: return launch_prologue<CT, D, 8>(L, q, alpha, gamma, ex);
  }
}
template <typename CT>
void launch_project(int G, const LayerView<CT>& L, const float* q, float* alpha, float* gamma,
                    const SplitParams* ex = nullptr) {
  if (L.D == 64)
    launch_prologue_g<CT, 64>(G, L, q, alpha, gamma, ex);
  else
    launch_prologue_g<CT, 128>(G, L, q, alpha, gamma, ex);
}

// max_nvc: unused (the grid is over coefficient rows); kept for callers.
template <typename CT>
void launch_vmap(int G, const LayerView<CT>& L, int /*max_nvc*/, const float* ab, float* out) {
  const dim3 grid((L.M + kVmapRows - 1) / kVmapRows, L.H, L.B);
  switch (G) {
    case 1: return pdl_launch(fourier_vmap_kernel<CT, 1>, grid, kThreads, L, ab, out);
    case 2: return pdl_launch(fourier_vmap_kernel<CT, 2>, grid, kThreads, L, ab, out);
    case 4: return pdl_launch(fourier_vmap_kernel<CT, 4>, grid, kThreads, L, ab, out);
    case 8: return pdl_launch(fourier_vmap_kernel<CT, 8>, grid, kThreads, L, ab, out);
  }
}

// Merge of the split partials (fourier_merge_kernel); pA null and st set on the FFT path.
void launch_merge(const SplitParams& p, int BH, int D, int N, float w0, float w, float* out, float* ab,
                  float2* st) {
  pdl_launch(fourier_merge_kernel, dim3(BH, kMergeChunks), dim3(kThreads), p.pm, p.pl, p.po, p.pA, p.S_ex, p.S_mid,
             D, N, w0, w, out, ab, st);
}

}  // namespace

template <typename CT>
void FourierLayer::Impl::attend_t(const float* q, float* out, AttentionWorkspace& ws, int target_blocks,
                                  FourierPath path) {
  if (!compressed) fail_unsupported("cuda fourier attend: the layer has not been prefilled");
  if (D != 8 && D != 16 && D != 32 && D != 64 && D != 128)
    fail_unsupported("cuda fourier attention: head_dim " + std::to_string(D) + " (have 8, 16, 32, 64, 128)");
  if (G != 1 && G != 2 && G != 4 && G != 8)
    fail_unsupported("cuda fourier attention: GQA group of " + std::to_string(G) + " (have 1, 2, 4, 8)");
  const FourierPath chosen = path == FourierPath::Auto ? auto_path() : path;
  const bool fft = chosen == FourierPath::Fft;
  const bool tiled = chosen == FourierPath::Tiled || chosen == FourierPath::TiledFast;
  const bool split = chosen == FourierPath::Tiled;
  const bool four = chosen == FourierPath::FourStep;
  if ((fft || tiled || four) && !fft_supported())
    fail_unsupported(std::string("cuda fourier attention: the ") + (fft ? "FFT" : tiled ? "tiled" : "four-step") +
                     " path has bf16 exact K/V and head_dim 64 / 128 only (have " +
                     (cfg.exact_f32 ? "f32" : "bf16") + ", head_dim " + std::to_string(D) + "; the direct path has both)");
  if (four && !fourstep::supported(N, D, G, cfg.period))
    fail_unsupported("cuda fourier attention: the four-step path needs T a multiple of Q = " +
                     std::to_string(fourstep::quantum(N)) + " <= 512 (have T = " + std::to_string(cfg.period) +
                     ", N = " + std::to_string(N) + ")");
  if (tiled && !tiled_supported())
    fail_unsupported("cuda fourier attention: the tiled path needs N % 8 == 0 and N <= " + std::to_string(kTiledMaxN) +
                     " (have N = " + std::to_string(N) + ", head_dim " + std::to_string(D) + ", group " +
                     std::to_string(G) + ")");
  const LayerView<CT> L = view<CT>();

  const int64_t n_exact = cfg.sink + cfg.window, T = cfg.period, half = T / 2 + 1;
  const int64_t units = static_cast<int64_t>(B) * H;
  const int BH = B * Hq;
  fourstep::Params fp{};
  auto launch_split_kernel = [&](const SplitParams& sp) {
    if (four) {  // its exact blocks run in the prologue launch (launch_project with the split params)
      if (sp.S_mid == 0) return 2;  // blocks per multiprocessor for the exact blocks' split count
      fourstep::launch(fp, B);
      return 2;
    }
    if (tiled) {
      if (sp.S_mid == 0) return 1;  // one middle block per multiprocessor
      if (D == 64)
        split ? dispatch_tiled_g<64, true>(G, sp, B, H, N, smem_optin())
              : dispatch_tiled_g<64, false>(G, sp, B, H, N, smem_optin());
      else
        split ? dispatch_tiled_g<128, true>(G, sp, B, H, N, smem_optin())
              : dispatch_tiled_g<128, false>(G, sp, B, H, N, smem_optin());
      return 1;
    }
    if (fft) return D == 64 ? dispatch_fft_g<64>(G, sp, B, H) : dispatch_fft_g<128>(G, sp, B, H);
    return cfg.exact_f32 ? dispatch_direct<float>(D, G, N, sp, B, H) : dispatch_direct<bf16>(D, G, N, sp, B, H);
  };
  SplitParams p{};
  const int target_asked = target_blocks;
  if (target_blocks <= 0) {  // one wave of the split kernel
    p.S_mid = 0;
    target_blocks = launch_split_kernel(p) * sm_count();
  }
  p.S_mid = std::min(choose_splits(mid_len, units, target_blocks, 256), 1024);
  p.chunk_mid = ((mid_len + p.S_mid - 1) / p.S_mid + BT - 1) / BT * BT;
  p.S_mid = static_cast<int>((mid_len + p.chunk_mid - 1) / p.chunk_mid);
  if (four) {  // middle blocks over residue groups (fourier_fourstep.cuh)
    fp.N = N, fp.Hq = Hq, fp.H = H, fp.D = D, fp.Q = fourstep::quantum(N);
    fp.P = static_cast<int>(T / fp.Q);
    fourstep::plan(fp, B, target_asked);
    p.S_mid = fp.S_mid;
  }
  // Exact rows: splits of >= 64 rows (one 1024-row window over 8 KV heads is 16 x 8 blocks at batch 1).
  p.S_ex = std::min(choose_splits(n_exact, units, std::max(target_blocks, 2 * sm_count()), 64), 64);
  p.chunk_ex = (n_exact + p.S_ex - 1) / p.S_ex;
  p.S_ex = static_cast<int>((n_exact + p.chunk_ex - 1) / p.chunk_ex);
  const int S = p.S_ex + p.S_mid;
  const size_t np = static_cast<size_t>(BH) * S;
  ws.m.reserve(np * 4);
  ws.l.reserve(np * 4);
  ws.o.reserve(np * D * 4);
  ws.ab.reserve(static_cast<size_t>(BH) * (M + 1) * 4);
  p.q = q, p.alpha = alpha.as<float>(), p.gamma = gamma.as<float>();
  if (cfg.exact_f32) {
    p.kex32 = kex.as<float>(), p.vex32 = vex.as<float>(), p.midk32 = midk.as<float>(), p.midv32 = midv.as<float>();
  } else {
    p.kex = kex.as<bf16>(), p.vex = vex.as<bf16>(), p.midk = midk.as<bf16>(), p.midv = midv.as<bf16>();
  }
  p.E = E, p.n_exact = n_exact, p.mid_cap = cfg.mid_capacity, p.mid_len = mid_len;
  p.nkn_tot = nkn_tot, p.nvn_tot = nvn_tot;
  p.kn_idx = L.kn_idx, p.kn_off = L.kn_off, p.vn_idx = L.vn_idx, p.vn_off = L.vn_off;
  p.N = N, p.Hq = Hq, p.H = H, p.T = T, p.scale = 1.0f / std::sqrt(static_cast<float>(D));
  p.pm = ws.m.as<float>(), p.pl = ws.l.as<float>(), p.po = ws.o.as<float>();
  launch_project<CT>(G, L, q, alpha.as<float>(), gamma.as<float>(), tiled || four ? &p : nullptr);
  check_launch("fourier attention: projection (tiled and four-step paths: and the exact blocks)");
  if (!fft) {
    ws.a.reserve(static_cast<size_t>(BH) * p.S_mid * N * 8);
    p.pA = ws.a.as<float2>();
    p.etab = etab.as<__half>();
    if (four) {
      fp.q = q, fp.alpha = p.alpha, fp.gamma = p.gamma, fp.midk = p.midk, fp.midv = p.midv;
      fp.mid_cap = p.mid_cap, fp.mid_len = mid_len, fp.T = T, fp.nkn_tot = nkn_tot, fp.nvn_tot = nvn_tot;
      fp.kn_idx = p.kn_idx, fp.kn_off = p.kn_off, fp.vn_idx = p.vn_idx, fp.vn_off = p.vn_off;
      fp.scale = p.scale, fp.S_ex = p.S_ex, fp.pm = p.pm, fp.pl = p.pl, fp.po = p.po, fp.pA = p.pA;
    }
    launch_split_kernel(p);
    check_launch("fourier attention: split kernel");
    launch_merge(p, BH, D, N, L.w0, L.w, out, ws.ab.as<float>(), nullptr);
    check_launch("fourier attention: merge");
  } else {
    ws.x.reserve(static_cast<size_t>(BH) * T * 4);
    ws.z.reserve(static_cast<size_t>(BH) * half * 8);
    ws.st.reserve(static_cast<size_t>(BH) * 8);
    const FftPlans& plans = fft_plans(T, BH);
    float* x = ws.x.as<float>();
    float2* z = ws.z.as<float2>();
    score_spectrum_kernel<<<dim3(row_blocks(half), BH), 256>>>(alpha.as<float>(), N, half, z);
    check_launch("fourier attention: score spectrum");
    check_cufft(cufftExecC2R(plans.c2r, reinterpret_cast<cufftComplex*>(z), x), "exec c2r (middle scores)");
    p.pA = nullptr, p.xs = x;
    launch_split_kernel(p);
    check_launch("fourier attention: split kernel (FFT path)");
    launch_merge(p, BH, D, N, L.w0, L.w, out, ws.ab.as<float>(), ws.st.as<float2>());
    check_launch("fourier attention: merge (FFT path)");
    middle_probabilities_kernel<<<dim3(row_blocks(T), BH), 256>>>(x, ws.st.as<float2>(), T, mid_len);
    check_launch("fourier attention: middle probabilities");
    check_cufft(cufftExecR2C(plans.r2c, x, reinterpret_cast<cufftComplex*>(z)), "exec r2c (probability spectrum)");
    spectral_weights_kernel<<<dim3((N + 127) / 128, BH), 128>>>(z, half, N, L.w0, L.w, ws.ab.as<float>());
    check_launch("fourier attention: spectral weights");
  }
  launch_vmap<CT>(G, L, *std::max_element(nvc.begin(), nvc.end()), ws.ab.as<float>(), out);
  check_launch("fourier attention: V coefficients");
}

void FourierLayer::attend(const float* q, float* out, AttentionWorkspace& ws, int target_blocks, FourierPath path) {
  if (im_->cfg.coeff_bf16)
    im_->attend_t<bf16>(q, out, ws, target_blocks, path);
  else
    im_->attend_t<float>(q, out, ws, target_blocks, path);
}

FourierPath FourierLayer::auto_path() const { return im_->auto_path(); }

void FourierLayer::fill_random(int64_t mid_len, uint64_t seed) {
  Impl& I = *im_;
  if (mid_len < 1 || mid_len > I.cfg.mid_capacity) fail_invalid("cuda fourier fill_random: bad middle length");
  auto fill_bf16 = [&](DeviceBuffer& d, size_t n, float scale) { fill_uniform_bf16(d.get(), n, seed++, scale); };
  auto fill_f32 = [&](DeviceBuffer& d, size_t n, float scale) { fill_uniform_f32(d.as<float>(), n, seed++, scale); };
  const size_t B = I.B;
  auto fill_exact = [&](DeviceBuffer& d, size_t n) { I.cfg.exact_f32 ? fill_f32(d, n, 1.0f) : fill_bf16(d, n, 1.0f); };
  fill_exact(I.kex, B * I.H * I.E * I.D);
  fill_exact(I.vex, B * I.H * I.E * I.D);
  fill_exact(I.midk, B * I.cfg.mid_capacity * I.nkn_tot);
  fill_exact(I.midv, B * I.cfg.mid_capacity * I.nvn_tot);
  // True coefficient values uniform in +-0.01 mid_len (bf16 stores value / T).
  const float cs = static_cast<float>(mid_len) * 0.01f *
                   (I.cfg.coeff_bf16 ? static_cast<float>(1.0 / static_cast<double>(I.cfg.period)) : 1.0f);
  if (I.cfg.coeff_bf16) {
    fill_bf16(I.ck, B * I.M * I.nkc_tot, cs);
    fill_bf16(I.cv, B * I.M * I.nvc_tot, cs);
  } else {
    fill_f32(I.ck, B * I.M * I.nkc_tot, cs);
    fill_f32(I.cv, B * I.M * I.nvc_tot, cs);
  }
  fill_f32(I.dck, B * I.nkc_tot, 1.0f);
  fill_f32(I.dcv, B * I.nvc_tot, 1.0f);
  fill_f32(I.ks, B * I.nkc_tot, 1.0f);
  fill_f32(I.ko, B * I.nkc_tot, 0.1f);
  fill_f32(I.vs, B * I.nvc_tot, 1.0f);
  fill_f32(I.vo, B * I.nvc_tot, 0.1f);
  synchronize();
  I.compressed = true;
  I.mid_len = mid_len;
  I.lstart = 0;
}

std::vector<float> FourierLayer::coefficients(int b, int h, bool values) const {
  const Impl& I = *im_;
  const int cols = values ? I.nvc.at(h) : I.nkc.at(h);
  const int c0 = values ? I.vc_off[h] : I.kc_off[h];
  const int tot = values ? I.nvc_tot : I.nkc_tot;
  std::vector<float> out(static_cast<size_t>(I.M) * cols);
  if (cols == 0) return out;
  const size_t n = static_cast<size_t>(I.M) * cols;
  const size_t at = (static_cast<size_t>(b) * I.M * tot + static_cast<size_t>(I.M) * c0);
  const DeviceBuffer& C = values ? I.cv : I.ck;
  if (!I.cfg.coeff_bf16) {
    to_host(out.data(), C.as<float>() + at, n * 4);
    return out;
  }
  std::vector<uint16_t> raw(n);
  std::vector<float> dc(cols);
  to_host(raw.data(), C.as<uint16_t>() + at, n * 2);
  to_host(dc.data(), (values ? I.dcv : I.dck).as<float>() + static_cast<size_t>(b) * tot + c0, cols * 4);
  const float kappa = static_cast<float>(1.0 / static_cast<double>(I.cfg.period));
  for (int r = 0; r < I.M; ++r)
    for (int j = 0; j < cols; ++j) {
      float v;
      if (r == 0) {
        v = dc[j];
      } else if (r == I.N) {
        v = 0.0f;
      } else {
        const uint32_t u = static_cast<uint32_t>(raw[static_cast<size_t>(r) * cols + j]) << 16;
        float f;
        std::memcpy(&f, &u, 4);
        v = f / kappa;
      }
      out[static_cast<size_t>(r) * cols + j] = v;
    }
  return out;
}

size_t FourierLayer::attention_bytes() const {
  const Impl& I = *im_;
  const size_t B = I.B, nc = I.nkc_tot + I.nvc_tot;
  const size_t exact = B * 2 * I.H * static_cast<size_t>(I.E) * I.D * I.exact_bytes();
  const size_t middle = B * static_cast<size_t>(I.mid_len) * (I.nkn_tot + I.nvn_tot) * I.exact_bytes();
  // bf16 storage: M - 2 rows of 2 bytes plus C_0 in f32 = 2 M bytes per dim (as kv::FourierCache counts).
  const size_t coef = B * nc * static_cast<size_t>(I.M) * I.coef_bytes();
  const size_t stats = B * nc * 2 * 4;
  return exact + middle + coef + stats;
}

size_t FourierLayer::held_bytes() const { return attention_bytes(); }

}  // namespace harmonia::cuda
