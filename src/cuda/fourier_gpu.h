#pragma once
// FourierAttention (arXiv 2506.11886; spec shared/specs/fourierattention.md) on
// the GPU: one layer's compressed KV cache for a batch of sequences, its
// prefill (coefficients by cuFFT, §3.3, statistics §3.5), the decode-time
// eviction with the rank-1 coefficient update (§3.4), and FlashFourierAttention
// decode in the spectral domain (§4.3).
//
// The arithmetic mirrors kv::FourierCache's default mode (src/kv/fourier.cpp):
// the true middle index for evictions, one period T everywhere, the proper
// inverse (1/T)[C_0 + 2 sum ...] (any w0, w can be given), frozen f32
// statistics, and for bf16 coefficients the same storage (C_0 in f32, the zero
// S_0 row dropped, other rows scaled by 1/T). Exact K/V (sinks, local window, the
// middle's exact dims) are bf16, or f32 with FourierConfig::exact_f32 (direct path only).
//
// Attention, per layer and decode step (three launches):
//  1. projection: per KV head, the query heads of its GQA group are projected
//     into coefficient space in one pass over the K coefficients
//     (alpha_r = w_r sum_j q_j s_j C_r(j), gamma = sum_j q_j (u_j - s_j i_j));
//  2. one fused split-KV kernel: blocks over the exact sinks + local window
//     (plain flash decoding), and blocks over the middle that score each
//     middle token by its exact dims plus the trigonometric polynomial
//     sum_n a_n cos(w_n l) + b_n sin(w_n l) (no compressed value is ever
//     rebuilt), keep an online softmax, and accumulate the exact V dims and
//     the spectral sums A_n = sum_l p_l e^{i w_n l};
//  3. merge with log-sum-exp weights, then the compressed V dims of the output
//     from the merged A_n through the V coefficients and the affine correction.
// That is the *direct* path: O(L_mid * N) trigonometric terms per query head,
// compute-bound (docs/perf/gpu.md). The *FFT* path (FourierPath::Fft) computes
// the same two sums as kv::FourierCache's attend_spectral does on the CPU, in
// O(T log T) per query head, batched over all query heads and sequences by cuFFT:
//  1. projection as above;
//  2. the compressed-dims scores of every middle position, f(l) = sum_n a_n cos(w_n l)
//     + b_n sin(w_n l), by one C2R FFT of length T per query head;
//  3. the split kernel as above, except that a middle block reads f(l) instead of
//     evaluating it, and writes the full scaled score s_l back in place (no spectral
//     accumulators: its partials are the exact V dims and the softmax state);
//  4. merge (log-sum-exp, exact parts) and its max / sum per query head; the
//     middle's normalised probabilities p_l = exp(s_l - max) / sum, zero-padded to T,
//     and their spectral sums A_n = conj(R2C(p)_n) by one R2C FFT per query head;
//  5. the V-coefficient map as above.
// Plans are cached per (T, batch * n_heads) for the process, one work area shared by
// a pair. The *tiled* path (FourierPath::Tiled; N % 8 == 0, N <= 512) evaluates the
// direct path's two sums as small matrix products on tensor cores: middle position
// l = t0 + l2 (tiles of 32), f(l) = Re sum_n (c_n e^{i w_n t0}) e^{i w_n l2}, so one fixed
// fp16 basis E[l2][n] = e^{i w_n l2} (in shared memory) serves every tile, head and
// sequence; per tile only the G x N twiddled coefficients change:
//  1. projection as above;
//  2. exact blocks (plain flash decoding), then middle blocks that per pass of 64 / G
//     tiles (64 (tile, head) rows) compute the scores [64 x 2N] . [2N x 32]
//     (mma.m16n8k16) plus the exact dims, the online softmax, and the spectral sums
//     [64 x 32] . [32 x 2N], twiddled back into a G x N accumulator (fp16 hi/lo operands:
//     f32-class results; TiledFast: plain fp16);
//  3. merge and V-coefficient map as in the direct path.
// The *four-step* path (FourierPath::FourStep; T a multiple of Q = the power of two >= max(N, 32),
// Q <= 512: kv::FourierCache's period=aligned) factors T = P Q: middle position l = a P + b, and
// w_n l = 2 pi n a / Q + 2 pi n b / T, so per residue b and query head one length-Q inverse FFT of
// the twiddled coefficients c_n e^{2 pi i n b / T} gives f at the Q positions a P + b, and one
// length-Q FFT of the probabilities there, twiddled back, adds that residue's share of A_n:
//  1. projection as above;
//  2. exact blocks (plain flash decoding), then middle blocks (fourier_fourstep.cu) that each own a
//     range of residues of one (sequence, KV head): exact dims, both FFTs in registers and warp
//     shuffles, online softmax, exact V dims and spectral sums, no T-length buffer in device memory;
//  3. merge and V-coefficient map as in the direct path.
// FourierPath::Auto picks four-step where T allows it, else direct or FFT (the FFT path where its
// estimated cost is lower); the tiled path is correct but measured slower than FFT (docs/perf/gpu.md).
// NOTE: the spec's "one fused kernel" is step 2; the projection (1) and the
// V-coefficient map (3) run once per KV head rather than once per split block,
// which is what keeps the coefficient bytes at one read per step.
//
// Batch: all sequences of a FourierLayer have the same segment lengths (the
// engine batches equal-length requests or uses one FourierLayer per sequence).
// Past T (middle index >= period) the CPU re-anchors the basis; here append()
// throws Error(Unsupported).
#include <cstdint>
#include <memory>
#include <vector>

#include "cuda/attention.h"

namespace harmonia::cuda {

// Within-head dim offsets of one KV head (kv::HeadDims): compressed / exact K and V dims.
struct FourierHeadDims {
  std::vector<int> kc, kn, vc, vn;
};

struct FourierConfig {
  DecodeShape shape;  // head_dim 8, 16, 32, 64 or 128 (FFT / tiled paths: 64, 128)
  int64_t sink = 4, window = 1024, coeffs = 1024;  // L_init, L_local, M = 2N
  bool coeff_bf16 = false;                         // coefficient storage: f32 or bf16
  int64_t period = 0;                              // T, > 2(N - 1)
  double w0 = 0, w = 0;                            // reconstruction weights (proper inverse: 1/T, 2/T)
  int64_t mid_capacity = 0;                        // most middle tokens held (<= period)
  // Exact K/V stored as f32 instead of bf16 (kv::FourierCache keeps f32: the exact-match mode).
  // The FFT and tiled paths refuse it (Error(Unsupported)); Auto then takes the direct path.
  bool exact_f32 = false;
};

// How attend() evaluates the compressed dims of the middle (see above). Tiled: the spectral sums
// as small matrix products on tensor cores (fourier.cu, section 2c), fp16 hi/lo-split operands
// (f32-class results); TiledFast: the same with plain fp16 operands (one third of the tensor work,
// ~1e-3 relative, the TF32 class of the authors' kernel). Both need N % 8 == 0 and N <= 512.
// FourStep: see above (needs T % Q == 0, Q <= 512).
enum class FourierPath { Auto, Direct, Fft, Tiled, TiledFast, FourStep };

class FourierLayer {
 public:
  // heads: [n_kv_heads]. Throws Error(InvalidInput) for inconsistent dims or sizes.
  FourierLayer(const FourierConfig& cfg, const std::vector<FourierHeadDims>& heads);
  ~FourierLayer();
  FourierLayer(const FourierLayer&) = delete;
  FourierLayer& operator=(const FourierLayer&) = delete;

  // Spec §5 prefill step 4: compress a prompt of P tokens (P > sink + window,
  // P - sink - window <= mid_capacity). k, v: device bf16 [batch][n_kv_heads][P][head_dim].
  // The uint16_t overloads take bf16 K/V (exact_f32 false), the float ones f32 (exact_f32 true);
  // the other type throws Error(InvalidInput).
  void prefill(const uint16_t* k, const uint16_t* v, int64_t P);
  void prefill(const float* k, const float* v, int64_t P);
  // Spec §3.4: one decode token per sequence; the oldest local token moves to
  // the middle (exact dims appended, compressed dims added to the coefficients
  // at its middle index). k, v: device bf16 [batch][n_kv_heads][head_dim].
  void append(const uint16_t* k, const uint16_t* v);
  void append(const float* k, const float* v);
  // append() in two steps, for a caller that writes the new token's K/V itself (the forward pass's
  // store_kv, straight into the window ring: no staging copy). evict(): the oldest local token moves to
  // the middle (exact dims appended, rank-1 coefficient update; one launch); returns the ring row it
  // vacated. The caller then writes the new token's K/V at that row of exact_k() / exact_v() (device,
  // [batch][n_kv_heads][exact_rows()][head_dim] of the exact type) before the next attend().
  // stream: the cudaStream_t to launch on (null: the default stream); the caller orders it after the
  // last attend() and before its write of the new token (events). Throws as append().
  int64_t evict(void* stream = nullptr);
  void* exact_k() const;
  void* exact_v() const;
  int64_t exact_rows() const;
  // Decode attention for one query per sequence over [sinks | middle | local].
  // q: device f32 [batch][n_heads][head_dim]; out: device f32, same shape.
  // target_blocks: blocks of the split kernel resident at once (0: one wave from occupancy).
  // Throws Error(Internal) if cuFFT fails (FFT path), Error(Unsupported) for Tiled / TiledFast
  // outside their limits (N % 8 == 0, N <= 512), for Fft / Tiled / TiledFast / FourStep with exact_f32
  // or a head_dim other than 64 / 128, and for FourStep where T % Q != 0 or Q > 512.
  void attend(const float* q, float* out, AttentionWorkspace& ws, int target_blocks = 0,
              FourierPath path = FourierPath::Auto);
  // The path FourierPath::Auto takes at the current middle length (FourStep, Direct or Fft; Direct where
  // the others lack the head_dim or exact type).
  FourierPath auto_path() const;

  // Benchmarks: a compressed state with `mid_len` middle tokens and random contents.
  void fill_random(int64_t mid_len, uint64_t seed);

  int64_t mid_len() const;
  // Coefficients of (sequence b, kv head h) as true f32 values, [M][|Dc(h)|] (rows 0..N-1 cos, N..2N-1 sin).
  std::vector<float> coefficients(int b, int h, bool values) const;
  // Bytes attend() must read from device memory: exact rows, middle exact dims,
  // coefficients and statistics (queries and outputs excluded).
  size_t attention_bytes() const;
  // Bytes held by the cache (capacity of the middle excluded: the used part only).
  size_t held_bytes() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> im_;
};

}  // namespace harmonia::cuda
