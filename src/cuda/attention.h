#pragma once
// Decode attention over a full KV cache on the GPU: split-KV flash decoding,
// GQA-aware (a block reads each K/V row once for all query heads of its group),
// partial softmax states merged with log-sum-exp weights.
#include <cstdint>

#include "cuda/runtime.h"

namespace harmonia::cuda {

enum class KvType { BF16, F16, F32 };

struct DecodeShape {
  int batch = 1;       // sequences, one query each
  int n_heads = 0;     // query heads
  int n_kv_heads = 0;  // n_heads / n_kv_heads query heads share a K/V head
  int head_dim = 0;    // 8, 16, 32, 64 or 128
  // Every query reads sequence 0's K/V (one sequence's multi-token step, e.g. a speculative
  // verify pass: query b is token b and sees lens[b] keys), instead of sequence b's.
  bool shared_kv = false;
};

// Split partials and merge scratch, grown on demand and reused across calls.
// m, l, o: split softmax states; a: direct fourier spectral partials; ab: fourier V-side
// coefficients-space weights; x, z, st: the FFT fourier path's signals [B*n_heads][T] f32,
// spectra [B*n_heads][T/2+1] complex f32, and softmax statistics [B*n_heads] (max, 1/sum).
// done: full decode's per (sequence, KV head) count of finished split blocks, zero between calls
// (a workspace serves one stream at a time).
struct AttentionWorkspace {
  DeviceBuffer m, l, o, a, ab, x, z, st, done;
};

// Splits per (sequence, KV head) for `len` keys: enough blocks to fill the GPU
// in one wave (target_blocks: blocks resident at once; 0 = 8 per multiprocessor), at least `min_rows` keys each.
int choose_splits(int64_t len, int64_t parallel_units, int target_blocks, int64_t min_rows);

// out[b][hq][:] = softmax(q[b][hq] . K[b][hq/G][0..lens[b])^T / sqrt(head_dim)) V.
//   q:    [batch][n_heads][head_dim] f32 (device)
//   k, v: [batch][n_kv_heads][cap][head_dim] bf16, f16 or f32 (device), rows >= lens[b] unused
//         (s.shared_kv: [n_kv_heads][cap][head_dim], one cache for every query)
//   lens: [batch] int32 (device), 1 <= lens[b] <= max_len <= cap
//   out:  [batch][n_heads][head_dim] f32 (device)
// Throws Error(Unsupported) for a head_dim or group size without a kernel.
void decode_attention_full(const DecodeShape& s, KvType type, const float* q, const void* k, const void* v,
                           int64_t cap, const int* lens, int64_t max_len, float* out, AttentionWorkspace& ws,
                           int target_blocks = 0);

// Fills n device elements with a deterministic pseudo-random pattern, uniform in
// [-scale, scale) (benchmarks: never time on zeros).
void fill_uniform_bf16(void* dev, size_t n, uint64_t seed, float scale = 1.0f);
void fill_uniform_f32(float* dev, size_t n, uint64_t seed, float scale = 1.0f);

}  // namespace harmonia::cuda
