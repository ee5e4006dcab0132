#pragma once
// FourierPath::FourStep (private to src/cuda; kernel in fourier_fourstep.cu): the middle of
// FlashFourierAttention by the four-step FFT factorisation of the period T = P * Q (Q a power of two
// >= N, see fourstep_quantum). Middle position l = a P + b (a < Q, residue b < P):
//   w_n l = 2 pi n a / Q + 2 pi n b / T, so for each residue b
//   f(a P + b) = Re sum_{n<N} [c_n e^{2 pi i n b / T}] e^{2 pi i n a / Q}     (one length-Q FFT)
//   A_n += e^{2 pi i n b / T} sum_a p_{a P + b} e^{2 pi i n a / Q}             (one length-Q FFT)
// exactly the direct path's two sums (c_n = alpha_n - i alpha_{N+n}), O(T log Q) per query head, with
// no T-length buffer in device memory. A block owns one (sequence, KV head) and a contiguous range of
// residues; per residue and query head one warp does both FFTs in registers and shuffles (lane l holds
// elements l + 32 j), the block's threads share the exact-dims dot products and the exact V dims.
// Partials (softmax max / sum, exact V dims, spectral sums) go to the direct path's layout, so
// fourier_merge_kernel and fourier_vmap_kernel finish the step unchanged.
#include <cuda_bf16.h>

#include <cstdint>

namespace harmonia::cuda::fourstep {

// Q for N frequencies: the smallest power of two >= max(N, 32) (a warp's 32 lanes hold Q / 32
// elements each). Equals kv::fourier_aligned_quantum (the CPU's period=aligned rounds T to it).
inline int quantum(int N) {
  int q = 32;
  while (q < N) q *= 2;
  return q;
}

struct Params {
  const float *q, *alpha, *gamma;       // q [B][Hq][D], alpha [B][Hq][2N], gamma [B][Hq]
  const __nv_bfloat16 *midk, *midv;     // [B][mid_cap * nkn_tot], per head [mid_cap][nkn(h)] at mid_cap * kn_off[h]
  int64_t mid_cap, mid_len, T;
  int nkn_tot, nvn_tot;
  const int *kn_idx, *kn_off, *vn_idx, *vn_off;  // exact K / V dims per head, offsets [H + 1]
  int N, Hq, H, D, Q, P;                // P = T / Q residues
  float scale;                          // 1 / sqrt(D)
  int S_ex, S_mid, iters;               // partial slots; residue groups (of 8 / G residues) per block
  int flags;                            // loop variants (fourier_fourstep.cu, set by plan())
  float *pm, *pl, *po;                  // [B][Hq][S_ex + S_mid] (po: x D); middle slots at S_ex + block
  float2* pA;                           // [B][Hq][S_mid][N] spectral sums
};

// Whether the four-step path handles this layer: T % Q == 0, Q <= 512, T < 2^31, head_dim 64 / 128,
// group 1/2/4/8.
bool supported(int N, int D, int G, int64_t T);
// Sets p.iters and p.S_mid for B sequences (p.P, p.H, p.Hq, p.Q, p.N, p.D set); target_blocks as
// FourierLayer::attend's (0: one wave of resident blocks).
void plan(Params& p, int B, int target_blocks);
// Launches the middle blocks (grid S_mid x H x B) on the default stream.
void launch(const Params& p, int B);

}  // namespace harmonia::cuda::fourstep
