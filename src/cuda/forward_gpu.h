#pragma once
// The decoder forward pass on the GPU (`--device cuda`): the same arithmetic as
// the CPU Forward (src/model/forward.cpp), one sequence, with its own full KV
// cache in device memory.
//
// Per layer, for n tokens at positions pos0 .. pos0+n-1 (prefill: n > 1; decode: n = 1):
//   xb  = RMSNorm(x) * attn_norm                       (kernel; bf16 out for bf16 weights)
//   qkv = xb Wqkv^T                                    (one cuBLAS GEMM over [Wq; Wk; Wv])
//   q, k += bias (Qwen2); per-head RMSNorm (Qwen3); RoPE from the CPU's cos/sin tables (kernel)
//   K/V cache rows pos0.. <- k, v                      (kernel)
//   att = causal softmax(q K^T / sqrt(hd)) V           (prefill: flash-style tile kernel;
//                                                       decode: cuda::decode_attention_full)
//   x  += att Wo^T                                     (GEMM with beta = 1: the residual add)
//   xb  = RMSNorm(x) * ffn_norm
//   gu  = xb [Wgate; Wup]^T                            (one GEMM)
//   h   = silu(gate) * up                              (kernel)
//   x  += h Wdown^T                                    (GEMM with beta = 1)
// then the final RMSNorm of the last row, logits = xb Wout^T, and greedy argmax on
// the device (only the id is copied back) or the logits copied to the host.
//
// Weights: any Model dtype is dequantised on the host to f32 and stored as bf16
// (default) or f32; norms and biases stay f32. GEMMs accumulate in f32
// (CUBLAS_COMPUTE_32F, no TF32): with f32 weights and an f32 KV cache the GPU
// follows the CPU up to summation order.
#include <cstdint>
#include <memory>
#include <vector>

#include "kv/fourier.h"
#include "model/model.h"

namespace harmonia::cuda {

struct GpuForwardOptions {
  bool f32_weights = false;    // weights on the device as f32 (exact-match tests) instead of bf16
  bool f32_kv = false;         // KV cache as f32 instead of bf16
  int64_t max_tokens = 0;      // KV cache capacity in tokens (> 0, <= 2^31 - 1)
  // Weights: false = upload the Model's; true = fill device weights with
  // deterministic uniform noise of the Model's shape (benchmarks of shapes too
  // large to hold on the host; the Model's tensors are then not read at all).
  bool random_weights = false;
  uint64_t seed = 1;           // random_weights' pattern
};

// FourierAttention for the decode steps (cuda::FourierLayer per layer, arXiv 2506.11886):
// kv::FourierCache's defaults (sinks, local window, M coefficients, the built-in dims,
// the 7-smooth period T = smooth(L + max_new - sink - window), the proper inverse).
struct GpuFourierOptions {
  int64_t sink = 4, window = 1024, coeffs = 1024;  // L_init, L_local, M = 2N
  bool coeff_bf16 = false;                         // coefficient storage f32 | bf16
  bool aligned_period = false;  // period=aligned: T a multiple of Q (kv::aligned_period), the four-step path
};

class GpuForward {
 public:
  // Uploads (or generates) the weights, allocates the KV cache and the RoPE
  // tables. Throws Error(Unsupported) without a CUDA device or for a head_dim
  // outside 8..128, Error(InvalidInput) for max_tokens <= 0.
  GpuForward(const Model& m, const GpuForwardOptions& o);
  ~GpuForward();
  GpuForward(const GpuForward&) = delete;
  GpuForward& operator=(const GpuForward&) = delete;

  // Runs tokens[n] at positions n_tokens() .. n_tokens()+n-1 and appends their K/V.
  // logits: host [vocab] f32 of the last token, or null; argmax: host, the last
  // token's greedy id (largest logit, ties to the lowest id), or null.
  // Throws Error(InvalidInput) for n <= 0, a token outside the vocabulary, or
  // when the context (max_tokens) would overflow.
  void run(const int32_t* tokens, int64_t n, float* logits, int32_t* argmax);
  // A speculative verify pass: run() over tokens[n] with every token's greedy id in argmax[n]
  // (host; row i predicts the token after tokens[i]). Same errors as run().
  void run_verify(const int32_t* tokens, int64_t n, int32_t* argmax);

  // Tokens in the KV cache, and its capacity (GpuForwardOptions::max_tokens).
  int64_t n_tokens() const;
  int64_t capacity() const;
  // Sets the KV cache length to `len` tokens (<= max_tokens) without touching
  // its contents: reset(0) starts a new sequence; with fill_kv_random, a
  // benchmark's context depth.
  void reset(int64_t len);
  // Benchmarks: replaces the full cache by a FourierAttention cache of `len` tokens
  // with random contents (FourierLayer::fill_random; len > sink + window) with room for
  // max_new decode tokens. Decode steps (n = 1) then append to it and attend through
  // FlashFourierAttention; prefill steps throw Error(Unsupported); reset() returns to the
  // full cache. NOTE: compressing a real prompt on the GPU is not wired into the forward
  // pass yet, so this mode measures speed and memory only. Throws Error(Unsupported) for a
  // head_dim other than 64/128 or a layer without compressed dims.
  void start_fourier_random(const GpuFourierOptions& f, int64_t len, int64_t max_new, uint64_t seed);
  bool fourier_active() const;

  // FourierAttention as the KV cache of the sequences that follow (until reset() clears the
  // sequence, the policy stays): kv::FourierCache's semantics for context `ctx` (its kv::Shape's
  // max_tokens) with options f (kv::FourierOptions::parse; dims "" / "none" / a file, the RoPE
  // layout as f.rope). Prefill steps attend exactly over the full cache; after the step that
  // completes the planned prompt (or any later one) where the middle exceeds M (L - sink - window
  // > coeffs), every layer with compressed dims becomes a FourierLayer prefilled from its K/V
  // rows, with kv::FourierCache's period T = smooth(min(P + max_new, ctx) - sink - window) (at
  // least the middle) and its dims. Decode steps then append (eviction + rank-1 update) and attend
  // through FlashFourierAttention (direct path for f32 exact K/V or head_dim < 64); layers
  // without compressed dims keep the full cache. Exact K/V are f32 with GpuForwardOptions::f32_kv
  // (the exact-match mode), else bf16. Throws Error(Unsupported) for compat=reference, f16
  // coefficients, 16-bit statistics, a head_dim outside 8/16/32/64/128 or a GQA group outside
  // 1/2/4/8 (when some layer compresses), Error(InvalidInput) for a bad dims file or ctx < 1.
  // Multi-token steps after compression and a middle index reaching T (the CPU re-anchors) throw
  // Error(Unsupported).
  void use_fourier(const kv::FourierOptions& f, int64_t ctx);
  // kv::Policy::plan for the current sequence: the prompt's length (compression waits for it to
  // complete) and the tokens planned after it (T). Throws Error(InvalidInput) for negatives.
  void plan(int64_t prompt_tokens, int64_t max_new_tokens);
  // use_fourier's state: whether the cache has compressed, its period T and the middle length of
  // the compressed layers (0 before compression).
  struct FourierState {
    bool compressed = false;
    int64_t period = 0, mid_len = 0;
    int compressed_layers = 0;
  };
  FourierState fourier_state() const;

  // Fills every KV cache row with deterministic uniform noise in [-1, 1)
  // (benchmarks: decode time does not depend on the cached values).
  void fill_kv_random(uint64_t seed);

  const Model& model() const;
  size_t weight_bytes() const;    // device bytes of all weights
  // Device bytes of the KV cache at n_tokens(): full rows; fourier: the FourierLayers' held bytes
  // (exact rows, the middle's exact dims, coefficients, scale/offset) plus the full rows of
  // layers without compressed dims. The full cache's allocation (kv_capacity_bytes) stays.
  size_t kv_bytes() const;
  size_t kv_bytes_read() const;   // KV bytes one decode step reads now (full: K + V rows; fourier: attention_bytes)
  size_t kv_capacity_bytes() const;
  size_t kv_bytes_per_token() const;  // K + V over all layers

  struct Impl;

 private:
  std::unique_ptr<Impl> im_;
};

struct GpuBenchOptions {
  int n_prompt = 512;  // prefill test: tokens in one forward call (0 = skip)
  int n_gen = 128;     // decode test: tokens decoded one at a time, greedy id copied back each (0 = skip)
  int64_t depth = 0;   // tokens in the KV cache before each test
  int reps = 3;        // repetitions; medians reported
  uint64_t seed = 1;   // random token ids and KV contents
  // Decode through FourierAttention (start_fourier_random at `depth`) instead of the full
  // cache; the prefill test is skipped then.
  bool fourier = false;
  GpuFourierOptions fourier_options;
};

struct GpuBenchResult {
  double prefill_tok_s = 0, decode_tok_s = 0;           // medians
  std::vector<double> prefill_samples, decode_samples;  // tokens/s per repetition
  size_t weight_bytes = 0;           // device bytes of the weights
  size_t kv_bytes_read = 0;          // KV bytes one decode step reads at the end of the decode test
  size_t kv_bytes_held = 0;          // KV cache bytes held then (full: K + V rows in use)
  size_t device_memory_bytes = 0;    // device_memory_used() after the runs
};

// Prefill and decode speed at a context depth. The depth is synthetic: every KV
// row is filled with uniform noise once (fill_kv_random) and the cache length set
// to `depth` before each test, no prefill is run for it (decode time does not
// depend on the cached values). Times are wall clock around synchronous steps.
// Throws Error(InvalidInput) when depth + max(n_prompt, n_gen) exceeds the capacity.
GpuBenchResult bench_forward(GpuForward& fw, const GpuBenchOptions& o);

// Device memory in use (total - free, cudaMemGetInfo), bytes: every allocation
// of this process and the CUDA context.
size_t device_memory_used();

}  // namespace harmonia::cuda
