// FourierPath::FourStep: the middle blocks of FlashFourierAttention by length-Q FFTs per residue
// (see fourier_fourstep.cuh for the factorisation; fourier_gpu.h for the whole attention step).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>

#include "cuda/fourier_fourstep.cuh"
#include "cuda/kernels.cuh"
#include "cuda/runtime.h"

namespace harmonia::cuda::fourstep {

using bf16 = __nv_bfloat16;
using detail::kFull;
using detail::rescale;

namespace {

constexpr int kFsThreads = 256, kFsWarps = kFsThreads / 32;
// Params::flags (HARMONIA_FOURSTEP_FLAGS, benchmarks; default 0 = staged rows, one wave): with kLegacy
// (per-row global loads, the path before the staging) batched exact-K loads, batched exact-V loads,
// L2 prefetch of the next residue group's rows (kPrefetch: also on the staged path), L2 prefetch of this
// group's V rows at its start
// (546 = kLegacy | kBatchV | kPrefetchV: the previous default); any path: a grid of one / four waves
// instead of two (kOneWave is the default now; kTwoWaves: the default before fe2e).
// kSkip*: ablations for timing only (wrong results): no exact-K loads, no exact-V loop, no FFTs.
constexpr int kBatchK = 1, kBatchV = 2, kPrefetch = 4, kFourWaves = 16, kPrefetchV = 32;  // (8: one wave, the default now)
constexpr int kSkipK = 64, kSkipV = 128, kSkipFft = 256;
// kLegacy: the per-row global loads above (flags 1 / 2 / 4 / 32 pick their variants) instead of the
// default staging of each residue group's exact K / V rows into shared memory (stage_rows).
constexpr int kLegacy = 512;
constexpr int kTwoWaves = 1024;

__device__ __forceinline__ float2 cmul(float2 a, float2 b) {
  return make_float2(fmaf(a.x, b.x, -a.y * b.y), fmaf(a.x, b.y, a.y * b.x));
}
__device__ __forceinline__ float2 cadd(float2 a, float2 b) { return make_float2(a.x + b.x, a.y + b.y); }
__device__ __forceinline__ float2 csub(float2 a, float2 b) { return make_float2(a.x - b.x, a.y - b.y); }
__device__ __forceinline__ float2 shfl_xor2(float2 v, int m) {
  return make_float2(__shfl_xor_sync(kFull, v.x, m), __shfl_xor_sync(kFull, v.y, m));
}
// Position a of a length-Q row in shared memory, one float of padding per 32: the FFT warps touch
// a = k1 + R * k2 (k2 over lanes), which the padding spreads over all 32 banks.
__device__ __forceinline__ int pad(int a) { return a + (a >> 5); }

constexpr int rev_bits(int i, int bits) {
  int r = 0;
  for (int b = 0; b < bits; ++b) r |= ((i >> b) & 1) << (bits - 1 - b);
  return r;
}
constexpr int log2c(int v) { return v <= 1 ? 0 : 1 + log2c(v / 2); }

template <int V>
struct Const {
  static constexpr int value = V;
};
// y[i] = x[bit-reversed i], every index a compile-time constant (a runtime index would put the
// arrays in local memory).
template <int R, int... I>
__device__ __forceinline__ void bit_reverse(float2 (&y)[R], const float2 (&x)[R], std::integer_sequence<int, I...>) {
  ((y[I] = x[Const<rev_bits(I, log2c(R))>::value]), ...);
}

// Radix-2 stages of length LEN, 2 LEN, ..., R on bit-reversed y (one template per stage, so that
// every loop has constant bounds and unrolls fully).
template <int R, int LEN>
__device__ __forceinline__ void dft_stages(float2 (&y)[R], const float2* wq) {
  if constexpr (LEN <= R) {
    constexpr int Q = 32 * R;
#pragma unroll
    for (int i = 0; i < R; i += LEN)
#pragma unroll
      for (int k = 0; k < LEN / 2; ++k) {
        float2 v = y[i + k + LEN / 2];
        if (k) v = cmul(v, wq[k * (Q / LEN)]);
        const float2 u = y[i + k];
        y[i + k] = cadd(u, v);
        y[i + k + LEN / 2] = csub(u, v);
      }
    dft_stages<R, 2 * LEN>(y, wq);
  }
}

// Length-R DFT in registers, natural order in and out: x[k] <- sum_j x[j] e^{2 pi i j k / R}.
// wq: e^{2 pi i k / Q} for k < Q = 32 R (shared memory).
template <int R>
__device__ __forceinline__ void reg_dft(float2 (&x)[R], const float2* wq) {
  float2 y[R];
  bit_reverse(y, x, std::make_integer_sequence<int, R>{});
  dft_stages<R, 2>(y, wq);
#pragma unroll
  for (int i = 0; i < R; ++i) x[i] = y[i];
}

// Length-32 DFTs across the lanes (sign +), one per register k: decimation in frequency, natural
// order in, lane l ends with output index brev5(l). Per stage s (m = 2^s) the upper lanes (lane & m)
// take (partner - own) * e^{2 pi i (lane mod m) / 2m}, the lower ones own + partner: with
// sg = -1 / +1 and tw = that twiddle / 1 (lane_twiddles), one FMA pair and one complex multiply.
struct LaneTw {
  float2 tw[5];
  float sg[5];
};
__device__ __forceinline__ LaneTw lane_twiddles(const float2* wq, int Q, int lane) {
  LaneTw t;
#pragma unroll
  for (int s = 0; s < 5; ++s) {
    const bool upper = lane & (1 << s);
    t.tw[s] = upper ? wq[(lane & ((1 << s) - 1)) * (Q >> (s + 1))] : make_float2(1.0f, 0.0f);
    t.sg[s] = upper ? -1.0f : 1.0f;
  }
  return t;
}
template <int R>
__device__ __forceinline__ void lane_dif(float2 (&x)[R], const LaneTw& t) {
#pragma unroll
  for (int s = 4; s >= 0; --s)
#pragma unroll
    for (int k = 0; k < R; ++k) {
      const float2 y = shfl_xor2(x[k], 1 << s);
      x[k] = cmul(make_float2(fmaf(t.sg[s], x[k].x, y.x), fmaf(t.sg[s], x[k].y, y.y)), t.tw[s]);
    }
}
// The transpose of lane_dif: decimation in time, lane l holds input index brev5(l), natural order out.
template <int R>
__device__ __forceinline__ void lane_dit(float2 (&x)[R], const LaneTw& t) {
#pragma unroll
  for (int s = 0; s < 5; ++s)
#pragma unroll
    for (int k = 0; k < R; ++k) {
      const float2 u = cmul(x[k], t.tw[s]);
      const float2 y = shfl_xor2(u, 1 << s);
      x[k] = make_float2(fmaf(t.sg[s], u.x, y.x), fmaf(t.sg[s], u.y, y.y));
    }
}

// Shared memory of fourstep_kernel<G, R> in floats (see the layout there).
constexpr int smem_floats(int G, int R, int D) {
  const int Q = 32 * R, RB = kFsWarps / G, QP = Q + Q / 32;
  return 4 * Q + 2 * RB * (32 + R) + G * (D + 8) + RB * G * QP + 4 * kFsWarps + 4 * G + G * D +
         kFsWarps * G * D + 2 * RB * G * Q;
}
// Bytes of each of the two staging buffers (after smem_floats): what is left of ~110 KB per block
// (two blocks per multiprocessor), a multiple of 16, at least one row group of RB rows of D dims.
constexpr int stage_bytes(int G, int R, int D) {
  const int RB = kFsWarps / G, left = (110 * 1024 - 4 * smem_floats(G, R, D)) / 2 / 16 * 16;
  const int need = 16 * ((RB * D * 2 + 29) / 16);
  return left > need ? left : need;
}
// Bytes per a in a staging buffer for rows of nd dims: the RB rows' bytes from their 16-byte
// aligned-down start, rounded up to 16.
__device__ __forceinline__ int stage_stride(int RB, int nd) { return 16 * ((RB * nd * 2 + 29) / 16); }

__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
__device__ __forceinline__ void cp_async_wait1() { asm volatile("cp.async.wait_group 1;" ::: "memory"); }

// Issues (one commit group) the copy of rows a P + b0 .. a P + b0 + RB - 1 for a in [a0, a0 + na)
// (those below row_end and below a P + P) of one head's [rows][nd] bf16 matrix m into buf: the run
// of a (contiguous bytes) at buf + (a - a0) * stride, from its 16-byte aligned-down start (so row
// a P + b0 + r begins at byte ((m + (a P + b0) nd) & 15) + 2 r nd there). Every 16-byte piece by
// cp.async, also the run's partial head / tail pieces (their other bytes: neighbouring rows, unused)
// where they lie inside the allocation [lo, hi); element by element (synchronous) where not.
__device__ __forceinline__ void stage_rows(char* buf, int stride, const bf16* m, int nd, int b0, int RB, int P,
                                           int a0, int na, int mid_len, uintptr_t lo, uintptr_t hi) {
  const int nch = stride / 16;
  if (nd > 0)
    for (int i = threadIdx.x; i < na * nch; i += kFsThreads) {
      const int al = i / nch, k = i - al * nch, a = a0 + al;
      const int r0 = a * P + b0, r1 = min(min(r0 + RB, a * P + P), mid_len);
      if (r0 >= r1) continue;
      const uintptr_t s = reinterpret_cast<uintptr_t>(m + static_cast<int64_t>(r0) * nd);
      const uintptr_t e = reinterpret_cast<uintptr_t>(m + static_cast<int64_t>(r1) * nd);
      const uintptr_t g = (s & ~uintptr_t{15}) + 16 * k;
      if (g >= e) continue;
      char* dst = buf + al * stride + 16 * k;
      if (g >= lo && g + 16 <= hi) {
        cp_async16(dst, reinterpret_cast<const void*>(g));
      } else {
#pragma unroll
        for (int t = 0; t < 8; ++t) {
          const uintptr_t at = g + 2 * t;
          if (at >= s && at < e)
            reinterpret_cast<bf16*>(dst)[t] = *reinterpret_cast<const bf16*>(at);
        }
      }
    }
  cp_async_commit();
}
// Exact-dims scores of one row (nkn bf16 values; null: all zero) for the G heads, qk [nkn][G] (shared),
// written to out[g QP] (the row's column of its residue slot's [G][QP] scores).
template <int G>
__device__ __forceinline__ void row_scores(const bf16* row, int nkn, const float* qk, float* out, int QP) {
  float s[G];
#pragma unroll
  for (int g = 0; g < G; ++g) s[g] = 0.0f;
  if (row) {
#pragma unroll 4
    for (int j = 0; j < nkn; ++j) {
      const float kv = __bfloat162float(row[j]);
#pragma unroll
      for (int g = 0; g < G; ++g) s[g] = fmaf(qk[j * G + g], kv, s[g]);
    }
  }
#pragma unroll
  for (int g = 0; g < G; ++g) out[g * QP] = s[g];
}
// Exact V dims j0, j0 + 1 of one row (nvn bf16 values) times the G heads' probabilities pr[g QP]
// (the row's column of its residue slot's [G][QP] probabilities), added to acc.
template <int G>
__device__ __forceinline__ void row_accumulate(float (&acc)[2][G], const bf16* row, int j0, int nvn, const float* pr,
                                               int QP) {
  const float v0 = j0 < nvn ? __bfloat162float(row[j0]) : 0.0f;
  const float v1 = j0 + 1 < nvn ? __bfloat162float(row[j0 + 1]) : 0.0f;
#pragma unroll
  for (int g = 0; g < G; ++g) {
    const float pg = pr[g * QP];
    acc[0][g] = fmaf(pg, v0, acc[0][g]);
    acc[1][g] = fmaf(pg, v1, acc[1][g]);
  }
}
// Exact V dims: combines the two half-warps' sums acc (dims j0, j0 + 1, different positions) and adds
// them from the lower half into this warp's running sums vw [G][D] (first scaled by cr[g] if kScale).
template <int G, bool kScale>
__device__ __forceinline__ void fold_halves(float (&acc)[2][G], float* vw, int D, int j0, int nvn, bool lower,
                                            const float* cr) {
#pragma unroll
  for (int e = 0; e < 2; ++e)
#pragma unroll
    for (int g = 0; g < G; ++g) acc[e][g] += __shfl_xor_sync(kFull, acc[e][g], 16);
  if (lower)
#pragma unroll
    for (int e = 0; e < 2; ++e)
      if (j0 + e < nvn)
#pragma unroll
        for (int g = 0; g < G; ++g) {
          float& w = vw[g * D + j0 + e];
          w = kScale ? fmaf(w, cr[g], acc[e][g]) : w + acc[e][g];
        }
}
constexpr int smem_bytes(int G, int R, int D) { return 16 * ((4 * smem_floats(G, R, D) + 15) / 16) + 2 * stage_bytes(G, R, D); }

// L2 prefetch of the rows a P + b0 .. a P + b0 + RB - 1 (a < Q; those below row_end and below
// a P + P) of one head's [rows][nd] bf16 matrix: one prefetch per 128-byte line, the block's threads
// over (a, line). The rows are read by the next residue group, latency-bound otherwise.
__device__ __forceinline__ void prefetch_rows(const bf16* m, int nd, int b0, int RB, int P, int Q, int64_t row_end) {
  if (nd == 0) return;
  const int len = RB * nd * 2, lpa = len / 128 + 2;
  for (int i = threadIdx.x; i < Q * lpa; i += blockDim.x) {
    const int a = i / lpa, k = i % lpa;
    const int64_t r0 = static_cast<int64_t>(a) * P + b0;
    const int64_t r1 = min(min(r0 + RB, static_cast<int64_t>(a) * P + P), row_end);
    if (r0 >= r1) continue;
    const char* lo = reinterpret_cast<const char*>(m + r0 * nd);
    const char* hi = reinterpret_cast<const char*>(m + r1 * nd) - 1;
    const char* at = lo + 128 * k;
    if (at > hi + 127) continue;
    asm volatile("prefetch.global.L2 [%0];" ::"l"(at < hi ? at : hi));
  }
}

// grid (S_mid, H, B), 256 threads. Block ms owns residues [ms * iters * RB, (ms + 1) * iters * RB) of
// KV head h of sequence bz; per iteration RB = 8 / G residues, warp w = (slot w / G, query head w % G).
// The exact K / V rows of a group (for each a, RB consecutive rows: one contiguous run) come into
// shared memory by cp.async in pieces of CA values of a (stage_rows), double-buffered: the next piece
// (K, then V, then the next group's first K piece) is in flight while this one is used; the first V
// piece during the FFTs.
// Two blocks per multiprocessor: at most 128 registers (spills at Q = 512; without the cap, 240+
// registers and one block per multiprocessor measured 1.3x slower, docs/perf/gpu.md).
template <int G, int R>
__global__ void __launch_bounds__(kFsThreads, 2) fourstep_kernel(Params p) {
  constexpr int Q = 32 * R, RB = kFsWarps / G, QP = Q + Q / 32;
  extern __shared__ float4 smem4[];
  const int D = p.D, N = p.N, P = p.P;
  float2* wq = reinterpret_cast<float2*>(smem4);  // [Q] e^{2 pi i k / Q}
  float2* ltw = wq + Q;                           // [R][32] e^{2 pi i lane k1 / Q}
  float2* b1 = ltw + Q;                           // [RB][32] e^{2 pi i lane b / T}
  float2* b2 = b1 + RB * 32;                      // [RB][R] e^{2 pi i 32 j b / T}
  float2* Aw = b2 + RB * R;                       // [RB][G][Q] spectral sums per (residue slot, head)
  float* qk = reinterpret_cast<float*>(Aw + RB * G * Q);  // [D + 8][G] q at the exact K dims, zero after nkn
  float* sc = qk + G * (D + 8);           // [RB][G][QP] exact-dims scores, then probabilities
  float* wmax = sc + RB * G * QP;         // [8] per warp
  float* wsum = wmax + kFsWarps;          // [8]
  float* mnew = wsum + kFsWarps;          // [G]
  float* corr = mnew + G;                 // [G]
  float* mrun = corr + G;                 // [G]
  float* lrun = mrun + G;                 // [G]
  float* orow = lrun + G;                 // [G][D] partial output row (exact V dims in place)
  float* Vw = orow + G * D;               // [8][G][D] exact V dims per warp (its positions)
  // Two staging buffers of SB bytes (16-byte aligned): the exact K, then V rows of the residue group,
  // CA values of a at a time (stage_rows), the next piece's copy in flight during this one's math.
  char* stg = reinterpret_cast<char*>(smem4) + 16 * ((4 * smem_floats(G, R, D) + 15) / 16);
  const int SB = stage_bytes(G, R, D);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int ms = blockIdx.x, h = blockIdx.y, bz = blockIdx.z;
  const int64_t bhq = static_cast<int64_t>(bz) * p.Hq + h * G;
  const int kn0 = p.kn_off[h], nkn = p.kn_off[h + 1] - kn0;
  const int vn0 = p.vn_off[h], nvn = p.vn_off[h + 1] - vn0;
  const bf16* mk = p.midk + static_cast<int64_t>(bz) * p.mid_cap * p.nkn_tot + p.mid_cap * kn0;
  const bf16* mv = p.midv + static_cast<int64_t>(bz) * p.mid_cap * p.nvn_tot + p.mid_cap * vn0;
  for (int i = tid; i < Q; i += kFsThreads) {
    float s, c;
    sincospif(2.0f * static_cast<float>(i) / Q, &s, &c);
    wq[i] = make_float2(c, s);
    const int k1 = i / 32, l = i % 32;
    sincospif(2.0f * static_cast<float>((l * k1) % Q) / Q, &s, &c);
    ltw[i] = make_float2(c, s);
  }
  for (int i = tid; i < RB * G * Q; i += kFsThreads) Aw[i] = make_float2(0.0f, 0.0f);
  for (int i = tid; i < G * D; i += kFsThreads) orow[i] = 0.0f;
  for (int i = tid; i < kFsWarps * G * D; i += kFsThreads) Vw[i] = 0.0f;
  for (int i = tid; i < G * (D + 8); i += kFsThreads) {
    const int j = i / G, g = i % G;
    qk[i] = j < nkn ? p.q[(bhq + g) * D + p.kn_idx[kn0 + j]] : 0.0f;
  }
  if (p.flags & kPrefetch) {  // (staged path too: the pieces after the first then hit L2)
    prefetch_rows(mk, nkn, ms * p.iters * RB, RB, P, Q, p.mid_len);
    prefetch_rows(mv, nvn, ms * p.iters * RB, RB, P, Q, p.mid_len);
  }
  if (tid < G) {
    mrun[tid] = -INFINITY;
    lrun[tid] = 0.0f;
  }
  const int wr = warp / G, wg = warp % G;  // this warp's residue slot and query head
  const float* al = p.alpha + (bhq + wg) * 2 * N;
  const float gam = p.gamma[bhq + wg];
  float2* Amine = Aw + (wr * G + wg) * Q;  // this warp's spectral sums, element n = lane + 32 j
  __syncthreads();
  const float Tf = static_cast<float>(p.T);
  const int k2 = __brev(lane) >> 27;  // lane_dif's output index: positions a = k1 + R k2
  const int half = lane >> 4, hl = lane & 15;  // exact V dims: two positions per warp, two dims per lane
  const int nvc_chunks = (nvn + 31) / 32;
  // Positions a P + b with a < n_valid(b) are in the middle (b < P).
  // (32-bit division: mid_len < T < 2^31; a 64-bit one is a call, whose spills cost more than it does.)
  const int mid_len = static_cast<int>(p.mid_len);
  auto n_valid = [&](int b) { return b < P && b < mid_len ? min(Q, (mid_len - b + P - 1) / P) : 0; };
  const bool staged = !(p.flags & kLegacy);
  const int sstride = stage_stride(RB, max(nkn, nvn)), CA = min(Q, SB / sstride);
  int st = 0;  // staging pieces consumed so far (buffer st & 1 holds the next one)
  auto sbuf = [&](int s) { return stg + (s & 1) * SB; };
  // Byte offset in a staged run of row a P + b0 (its start mod 16; unsigned wrap keeps the residue).
  const unsigned mk16 = static_cast<unsigned>(reinterpret_cast<uintptr_t>(mk) & 15);
  const unsigned mv16 = static_cast<unsigned>(reinterpret_cast<uintptr_t>(mv) & 15);
  // The allocations of midk / midv ([B][mid_cap * n_tot] bf16, B = gridDim.z): bounds of the over-read.
  const uintptr_t klo = reinterpret_cast<uintptr_t>(p.midk), vlo = reinterpret_cast<uintptr_t>(p.midv);
  const uintptr_t khi = reinterpret_cast<uintptr_t>(p.midk + static_cast<int64_t>(gridDim.z) * p.mid_cap * p.nkn_tot);
  const uintptr_t vhi = reinterpret_cast<uintptr_t>(p.midv + static_cast<int64_t>(gridDim.z) * p.mid_cap * p.nvn_tot);
  if (staged) {
    const int bf = ms * p.iters * RB;
    stage_rows(sbuf(0), sstride, mk, nkn, bf, RB, P, 0, min(CA, n_valid(bf)), mid_len, klo, khi);
  }

  for (int it = 0; it < p.iters; ++it) {
    const int b0 = (ms * p.iters + it) * RB;
    if (b0 >= P) break;  // uniform
    if ((p.flags & kLegacy) && (p.flags & kPrefetchV)) prefetch_rows(mv, nvn, b0, RB, P, Q, p.mid_len);  // read after the FFTs
    if ((p.flags & kPrefetch) && it + 1 < p.iters) {  // the next group's K and V rows into L2
      prefetch_rows(mk, nkn, b0 + RB, RB, P, Q, p.mid_len);
      prefetch_rows(mv, nvn, b0 + RB, RB, P, Q, p.mid_len);
    }
    // Twiddle bases of this iteration's residues (n b < Q P = T: no reduction needed).
    for (int i = tid; i < RB * (32 + R); i += kFsThreads) {
      const int r = i / (32 + R), k = i % (32 + R), b = b0 + r;
      const int64_t e = k < 32 ? static_cast<int64_t>(k) * b : static_cast<int64_t>(32) * (k - 32) * b;
      float s, c;
      sincospif(2.0f * static_cast<float>(e) / Tf, &s, &c);
      if (k < 32)
        b1[r * 32 + k] = make_float2(c, s);
      else
        b2[r * R + k - 32] = make_float2(c, s);
    }
    // Exact-dims scores of positions a P + b (a < Q, b = b0 + r): one row per thread, all G heads
    // (r = tid mod RB for every i of this thread).
    const int ak = n_valid(b0 + tid % RB);
    const int nv0 = n_valid(b0), nC = max(1, (nv0 + CA - 1) / CA);  // staged pieces of this group
    if (staged) {
      for (int c = 0; c < nC; ++c, ++st) {
        const int a0 = c * CA;
        if (c + 1 < nC)
          stage_rows(sbuf(st + 1), sstride, mk, nkn, b0, RB, P, a0 + CA, min(CA, nv0 - a0 - CA), mid_len, klo, khi);
        else  // the group's first V piece, in flight during the FFTs
          stage_rows(sbuf(st + 1), sstride, mv, nvn, b0, RB, P, 0, min(CA, nv0), mid_len, vlo, vhi);
        cp_async_wait1();
        __syncthreads();
        const char* kb = sbuf(st);
        const int na = min(CA, nv0 - a0);
        for (int i = tid; i < na * RB; i += kFsThreads) {
          const int al = i / RB, r = i % RB, a = a0 + al;
          const unsigned off = (mk16 + static_cast<unsigned>(a * P + b0) * static_cast<unsigned>(2 * nkn)) & 15;
          const bf16* row = reinterpret_cast<const bf16*>(kb + al * sstride + off) + r * nkn;
          row_scores<G>(a < ak && !(p.flags & kSkipK) ? row : nullptr, nkn, qk, sc + r * G * QP + pad(a), QP);
        }
        if (c + 1 < nC) __syncthreads();  // (the last one: below)
      }
    } else if (!(p.flags & kBatchK)) {
      for (int i = tid; i < RB * Q; i += kFsThreads) {
        const int a = i / RB, r = i % RB;
        const bf16* row = mk + static_cast<int64_t>(a * P + b0 + r) * nkn;
        row_scores<G>(a < ak && !(p.flags & kSkipK) ? row : nullptr, nkn, qk, sc + r * G * QP + pad(a), QP);
      }
    } else {
    // U rows at a time, eight dims per step: 8 U independent loads in flight per thread.
    constexpr int U = 2;
    for (int i0 = tid; i0 < RB * Q; i0 += U * kFsThreads) {
      const bf16* rows[U];
      bool ok[U];
      float s[U][G];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int i = i0 + u * kFsThreads, a = i / RB;
        ok[u] = i < RB * Q && a < ak;
        rows[u] = mk + static_cast<int64_t>(ok[u] ? a * P + b0 + i % RB : 0) * nkn;
#pragma unroll
        for (int g = 0; g < G; ++g) s[u][g] = 0.0f;
      }
      for (int j0 = 0; j0 < nkn; j0 += 8) {
        float kv[U][8];
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
          for (int e = 0; e < 8; ++e) kv[u][e] = ok[u] && j0 + e < nkn ? __bfloat162float(rows[u][j0 + e]) : 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          const float* qj = qk + (j0 + e) * G;
#pragma unroll
          for (int g = 0; g < G; ++g) {
            const float qv = qj[g];
#pragma unroll
            for (int u = 0; u < U; ++u) s[u][g] = fmaf(qv, kv[u][e], s[u][g]);
          }
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int i = i0 + u * kFsThreads;
        if (i < RB * Q)
#pragma unroll
          for (int g = 0; g < G; ++g) sc[((i % RB) * G + g) * QP + pad(i / RB)] = s[u][g];
      }
    }
    }
    __syncthreads();

    // Compressed-dims scores of this warp's (residue, head): twiddle, length-Q inverse FFT.
    const int b = b0 + wr, aw = n_valid(b);
    const bool live = b < P;  // warp-uniform
    float* row_sc = sc + (wr * G + wg) * QP;
    float2 x[R];
    float smax = -INFINITY;
    if (live) {
      const float2 t1 = b1[wr * 32 + lane];
#pragma unroll
      for (int j = 0; j < R; ++j) {
        const int n = lane + 32 * j;
        x[j] = n < N ? cmul(make_float2(__ldg(al + n), -__ldg(al + N + n)), cmul(t1, b2[wr * R + j]))
                     : make_float2(0.0f, 0.0f);
      }
      if (!(p.flags & kSkipFft)) {
        reg_dft<R>(x, wq);
#pragma unroll
        for (int k1 = 0; k1 < R; ++k1) x[k1] = cmul(x[k1], ltw[k1 * 32 + lane]);
        lane_dif<R>(x, lane_twiddles(wq, Q, lane));
      }
#pragma unroll
      for (int k1 = 0; k1 < R; ++k1) {
        const int a = k1 + R * k2;
        const float sv = a < aw ? (row_sc[pad(a)] + x[k1].x + gam) * p.scale : -INFINITY;
        x[k1].x = sv;
        smax = fmaxf(smax, sv);
      }
      for (int o = 16; o > 0; o /= 2) smax = fmaxf(smax, __shfl_xor_sync(kFull, smax, o));
    }
    if (lane == 0) wmax[warp] = smax;
    __syncthreads();

    // Online softmax over the block's residues (one running max per query head), then the
    // spectral sums of this warp's probabilities: length-Q FFT over a, twiddle, accumulate.
    float mn = mrun[wg];
#pragma unroll
    for (int r = 0; r < RB; ++r) mn = fmaxf(mn, wmax[r * G + wg]);
    const float cr = rescale(mrun[wg], mn);
    if (wr == 0 && lane == 0) {
      mnew[wg] = mn;
      corr[wg] = cr;
    }
    if (live) {
      float ssum = 0.0f;
#pragma unroll
      for (int k1 = 0; k1 < R; ++k1) {
        const int a = k1 + R * k2;
        const float pv = a < aw ? __expf(x[k1].x - mn) : 0.0f;
        row_sc[pad(a)] = pv;
        ssum += pv;
        x[k1] = make_float2(pv, 0.0f);
      }
      if (!(p.flags & kSkipFft)) {
        lane_dit<R>(x, lane_twiddles(wq, Q, lane));
#pragma unroll
        for (int k1 = 0; k1 < R; ++k1) x[k1] = cmul(x[k1], ltw[k1 * 32 + lane]);
        reg_dft<R>(x, wq);
      }
      const float2 t1 = b1[wr * 32 + lane];
#pragma unroll
      for (int j = 0; j < R; ++j) {
        const float2 v = cmul(x[j], cmul(t1, b2[wr * R + j]));
        const float2 o = Amine[lane + 32 * j];
        Amine[lane + 32 * j] = make_float2(fmaf(o.x, cr, v.x), fmaf(o.y, cr, v.y));
      }
      for (int o = 16; o > 0; o /= 2) ssum += __shfl_xor_sync(kFull, ssum, o);
      if (lane == 0) wsum[warp] = ssum;
    } else {
#pragma unroll
      for (int j = 0; j < R; ++j) {
        const float2 o = Amine[lane + 32 * j];
        Amine[lane + 32 * j] = make_float2(o.x * cr, o.y * cr);
      }
      if (lane == 0) wsum[warp] = 0.0f;
    }
    __syncthreads();

    // Exact V dims: per 32-dim chunk, the two half-warps take positions i = 2 w + half + 16 k, each
    // lane dims 2 hl, 2 hl + 1 of the chunk; this iteration's sums are added into the warp's running
    // ones (rescaled by corr). r = (2 w + half) mod RB for every i of this thread.
    const int av = n_valid(b0 + (2 * warp + half) % RB);
    if (staged) {
      const int r = (2 * warp + half) % RB;
      if (half == 0)  // this warp's running sums, rescaled once per group
        for (int c = 0; c < nvc_chunks; ++c)
#pragma unroll
          for (int e = 0; e < 2; ++e)
            if (32 * c + 2 * hl + e < nvn)
#pragma unroll
              for (int g = 0; g < G; ++g) Vw[(warp * G + g) * D + 32 * c + 2 * hl + e] *= corr[g];
      for (int c = 0; c < nC; ++c, ++st) {
        const int a0 = c * CA;
        if (c + 1 < nC) {
          stage_rows(sbuf(st + 1), sstride, mv, nvn, b0, RB, P, a0 + CA, min(CA, nv0 - a0 - CA), mid_len, vlo, vhi);
        } else {  // the next group's first K piece (none: an empty commit group)
          const int bn = b0 + RB;
          const bool more = it + 1 < p.iters && bn < P;
          stage_rows(sbuf(st + 1), sstride, mk, nkn, bn, RB, P, 0, more ? min(CA, n_valid(bn)) : 0, mid_len, klo, khi);
        }
        cp_async_wait1();
        __syncthreads();
        const char* vb = sbuf(st);
        // positions i = al RB + r of this piece below av; half-warp positions 2 w + half + 16 k
        const int ni = (p.flags & kSkipV) ? 0 : max(0, min(min(CA, nv0 - a0), av - a0)) * RB;
        for (int cc = 0; cc < nvc_chunks; ++cc) {
          const int j0 = 32 * cc + 2 * hl;
          float acc[2][G] = {};
#pragma unroll 2
          for (int i = 2 * warp + half; i < ni; i += 2 * kFsWarps) {
            const int al = i / RB, a = a0 + al;
            const unsigned off = (mv16 + static_cast<unsigned>(a * P + b0) * static_cast<unsigned>(2 * nvn)) & 15;
            const bf16* row = reinterpret_cast<const bf16*>(vb + al * sstride + off) + r * nvn;
            row_accumulate<G>(acc, row, j0, nvn, sc + r * G * QP + pad(a), QP);
          }
          fold_halves<G, false>(acc, Vw + warp * G * D, D, j0, nvn, half == 0, nullptr);
        }
        if (c + 1 < nC) __syncthreads();  // (the last one: below)
      }
    }
    for (int c = 0; c < (staged || (p.flags & kSkipV) ? 0 : nvc_chunks); ++c) {
      const int j0 = 32 * c + 2 * hl;
      float acc[2][G] = {};
      const int r = (2 * warp + half) % RB;
      if (!(p.flags & kBatchV)) {
        for (int i = 2 * warp + half; i < RB * Q; i += 2 * kFsWarps) {
          const int a = i / RB;
          if (a >= av) continue;
          row_accumulate<G>(acc, mv + static_cast<int64_t>(a * P + b0 + r) * nvn, j0, nvn, sc + r * G * QP + pad(a), QP);
        }
      } else
      // Eight positions per step, loads first (16 in flight per lane); probabilities past the middle are 0.
      for (int i0 = 2 * warp + half; i0 < RB * Q; i0 += 16 * 8) {
        float v[8][2];
#pragma unroll
        for (int u = 0; u < 8; ++u) {
          const int a = (i0 + 16 * u) / RB;
          const bool ok = a < av;  // also i < RB * Q (av <= Q)
          const bf16* row = mv + static_cast<int64_t>(ok ? a * P + b0 + r : 0) * nvn;
          v[u][0] = ok && j0 < nvn ? __bfloat162float(row[j0]) : 0.0f;
          v[u][1] = ok && j0 + 1 < nvn ? __bfloat162float(row[j0 + 1]) : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < 8; ++u) {
          const int a = (i0 + 16 * u) / RB;
          if (a < av)
#pragma unroll
            for (int g = 0; g < G; ++g) {
              const float pg = sc[(r * G + g) * QP + pad(a)];
              acc[0][g] = fmaf(pg, v[u][0], acc[0][g]);
              acc[1][g] = fmaf(pg, v[u][1], acc[1][g]);
            }
        }
      }
      fold_halves<G, true>(acc, Vw + warp * G * D, D, j0, nvn, half == 0, corr);
    }
    if (tid < G) {
      float s = 0.0f;
      for (int r = 0; r < RB; ++r) s += wsum[r * G + tid];
      lrun[tid] = fmaf(lrun[tid], corr[tid], s);
      mrun[tid] = mnew[tid];
    }
    __syncthreads();
  }

  asm volatile("cp.async.wait_all;" ::: "memory");
  // Partials: exact V dims (sum of the warps' position sets) scattered to the head's exact dims,
  // spectral sums (sum of the residue slots), softmax state.
  for (int i = tid; i < G * nvn; i += kFsThreads) {
    const int g = i / nvn, jj = i % nvn;
    float s = 0.0f;
#pragma unroll
    for (int w = 0; w < kFsWarps; ++w) s += Vw[(w * G + g) * D + jj];
    orow[g * D + p.vn_idx[vn0 + jj]] = s;
  }
  for (int i = tid; i < G * N; i += kFsThreads) {
    const int g = i / N, n = i % N;
    float2 s = make_float2(0.0f, 0.0f);
#pragma unroll
    for (int r = 0; r < RB; ++r) s = cadd(s, Aw[(r * G + g) * Q + n]);
    p.pA[((bhq + g) * p.S_mid + ms) * N + n] = s;
  }
  __syncthreads();
  const int S_tot = p.S_ex + p.S_mid;
  for (int i = tid; i < G * D; i += kFsThreads)
    p.po[((bhq + i / D) * S_tot + p.S_ex + ms) * D + i % D] = orow[i];
  if (tid < G) {
    p.pm[(bhq + tid) * S_tot + p.S_ex + ms] = mrun[tid];
    p.pl[(bhq + tid) * S_tot + p.S_ex + ms] = lrun[tid];
  }
}

template <int G, int R>
void launch_gr(const Params& p, int B) {
  static const bool configured = [] {
    check(cudaFuncSetAttribute(fourstep_kernel<G, R>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               std::max(smem_bytes(G, R, 64), smem_bytes(G, R, 128))),
          "cudaFuncSetAttribute (four-step)");
    return true;
  }();
  (void)configured;
  fourstep_kernel<G, R><<<dim3(p.S_mid, p.H, B), kFsThreads, smem_bytes(G, R, p.D)>>>(p);
}

template <int G>
void launch_g(const Params& p, int B) {
  switch (p.Q) {
    case 32: return launch_gr<G, 1>(p, B);
    case 64: return launch_gr<G, 2>(p, B);
    case 128: return launch_gr<G, 4>(p, B);
    case 256: return launch_gr<G, 8>(p, B);
    case 512: return launch_gr<G, 16>(p, B);
  }
  fail_unsupported("cuda fourier attention (four-step): Q = " + std::to_string(p.Q) + " (have 32..512)");
}

}  // namespace

bool supported(int N, int D, int G, int64_t T) {
  const int Q = quantum(N);
  return Q <= 512 && T % Q == 0 && T < (int64_t{1} << 31) && (D == 64 || D == 128) &&
         (G == 1 || G == 2 || G == 4 || G == 8);
}

void plan(Params& p, int B, int target_blocks) {
  static const int flags = [] {
    const char* e = std::getenv("HARMONIA_FOURSTEP_FLAGS");
    return e ? std::atoi(e) : 0;  // staged rows; kLegacy | kBatchV | kPrefetchV (546): the previous default
  }();
  p.flags = flags;
  const int G = p.Hq / p.H, RB = kFsWarps / G;
  const int64_t groups = (p.P + RB - 1) / RB;  // residue groups per (sequence, KV head)
  const int64_t units = static_cast<int64_t>(B) * p.H;
  if (target_blocks <= 0) {
    // NOTE: two resident blocks per multiprocessor (256 threads, <= 128 registers, < 100 KB of shared
    // memory); one wave of them (flags kTwoWaves: two, kFourWaves: four). One wave measured 4 % faster
    // per call than two at Llama-3.1-8B shape, 128k b1 (fewer partials for the merge, the per-block
    // tables and pipeline start amortised over more residue groups; docs/perf/gpu.md, fe2e).
    target_blocks = (flags & kTwoWaves ? 4 : flags & kFourWaves ? 8 : 2) * sm_count();
  }
  const int64_t chunks = std::clamp<int64_t>((target_blocks + units - 1) / units, 1, std::min<int64_t>(groups, 1024));
  p.iters = static_cast<int>((groups + chunks - 1) / chunks);
  p.S_mid = static_cast<int>((groups + p.iters - 1) / p.iters);
}

void launch(const Params& p, int B) {
  switch (p.Hq / p.H) {
    case 1: return launch_g<1>(p, B);
    case 2: return launch_g<2>(p, B);
    case 4: return launch_g<4>(p, B);
    case 8: return launch_g<8>(p, B);
  }
  fail_unsupported("cuda fourier attention (four-step): GQA group of " + std::to_string(p.Hq / p.H));
}

}  // namespace harmonia::cuda::fourstep
