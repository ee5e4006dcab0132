#pragma once
// Kernels of the GPU forward pass (private to src/cuda; GpuForward drives them).
// All pointers are device pointers; every launch goes to the default stream.
// Activations are f32 unless a parameter says `Elem`: the inputs of the weight
// GEMMs take the weights' element type (bf16 or f32).
#include <cstdint>

namespace harmonia::cuda::fwd {

enum class Elem { F32, BF16 };

inline int elem_bytes(Elem e) { return e == Elem::F32 ? 4 : 2; }

// x[i][:] = table[tokens[i]][:] as f32. tokens: [n] int32; table: [vocab][dim] of `t`; x: [n][dim].
void embed(const int* tokens, int64_t n, const void* table, Elem t, int dim, float* x);

// out[i][:] = x[i][:] / sqrt(mean(x[i]^2) + eps) * w (RMSNorm, Zhang & Sennrich 2019; sum of
// squares in double, as the CPU's). x: [n][dim] f32 with row stride `x_stride` floats; w: [dim];
// out: [n][dim] of `t`.
void rmsnorm(const float* x, int64_t n, int64_t x_stride, int dim, const float* w, float eps, void* out, Elem t);

struct QkvShape {
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  constexpr int stride() const { return (n_heads + 2 * n_kv_heads) * head_dim; }  // floats per token row
};

// In place over qkv [n][q heads | k heads | v heads][head_dim] f32, per token i:
//  - bias (may be null): [q_dim + 2 kv_dim] added to the whole row (Qwen2);
//  - q_norm / k_norm (may be null): per-head RMSNorm of q and k heads, weights [head_dim] (Qwen3);
//  - RoPE of q and k heads: pairs (2j, 2j+1) when interleaved, else (j, j + n_rot/2), j < n_rot/2;
//    x_a' = x_a cos - x_b sin, x_b' = x_b cos + x_a sin with cos/sin rows [n_rot/2] taken from
//    table row `row0 + i` (Rope::cos_sin's values, mscale included). Dims >= n_rot are kept.
void qkv_post(float* qkv, int64_t n, const QkvShape& s, const float* bias, const float* q_norm, const float* k_norm,
              float eps, const float* cos, const float* sin, int64_t row0, int n_rot, bool interleaved);

// K/V cache rows pos0 .. pos0+n-1 of one layer <- the k and v heads of qkv (row layout as qkv_post).
// k_cache, v_cache: [n_kv_heads][cap][head_dim] of `t`.
void store_kv(const float* qkv, int64_t n, const QkvShape& s, void* k_cache, void* v_cache, Elem t, int64_t cap,
              int64_t pos0);

// Causal attention of n queries at positions pos0 .. pos0+n-1 (query i sees cache rows
// 0 .. pos0+i): out[i][h][:] = softmax(q_i,h . K[h/G]^T / sqrt(head_dim)) V[h/G], G = n_heads /
// n_kv_heads. q: the q heads of qkv; k/v cache as store_kv; out: [n][n_heads][head_dim] of `out_t`.
// Flash-attention style: a block takes a tile of queries of one head, K/V tiles of 32 rows go
// through shared memory, each warp keeps its query's online softmax in f32.
// head_dim 1..128. Throws Error(Unsupported) above 128.
void prefill_attention(const float* qkv, int64_t n, const QkvShape& s, const void* k_cache, const void* v_cache,
                       Elem kv_t, int64_t cap, int64_t pos0, void* out, Elem out_t);

// h[i][j] = silu(gu[i][j]) * gu[i][ffn + j] (SwiGLU). gu: [n][2 ffn] f32 (gate | up); h: [n][ffn] of `t`.
void swiglu(const float* gu, int64_t n, int ffn, void* h, Elem t);

// dst[i] = src[i] converted to `t`, i < n.
void convert(const float* src, int64_t n, void* dst, Elem t);

// *out = the index of the largest x[i], i < n (ties to the lowest index; NaN never wins).
void argmax(const float* x, int n, int* out);

// *p = v, ordered with the other launches on the default stream.
void set_int(int* p, int v);

}  // namespace harmonia::cuda::fwd
