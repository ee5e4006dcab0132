#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "cuda/attention.h"
#include "cuda/kernels.cuh"

namespace harmonia::cuda {

using namespace detail;

namespace {

// One block: (split, kv head, sequence). Partials at [b][hq][split]. The last block of a
// (sequence, KV head) to finish merges its S partials into out (log-sum-exp weights, one warp
// per query head), so one launch does the whole call: done[b * H + h] counts finished blocks and
// that last block resets it to 0 (zero between calls).
template <typename T, int D, int G>
__global__ void __launch_bounds__(kThreads) full_split_kernel(const float* __restrict__ q, const T* __restrict__ k,
                                                               const T* __restrict__ v, int64_t cap, int64_t seq_stride,
                                                               const int* __restrict__ lens, int64_t chunk, int S,
                                                               int Hq, int H, float scale, float* pm, float* pl,
                                                               float* po, unsigned* done, float* out) {
  constexpr int kMerge = kWarps * 1024;  // per-warp merge weights, S <= 1024
  constexpr int kSmem = combine_smem_floats<D, G>() > kMerge ? combine_smem_floats<D, G>() : kMerge;
  __shared__ float smem[kSmem];
  __shared__ bool last;
  const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  constexpr int LPR = D / 8;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int sub = lane % LPR;
  const int64_t len = lens[b];
  const int64_t begin = split * chunk, end = min(len, begin + chunk);
  float qr[G][8];
#pragma unroll
  for (int g = 0; g < G; ++g)
#pragma unroll
    for (int e = 0; e < 8; ++e) qr[g][e] = q[(static_cast<int64_t>(b) * Hq + h * G + g) * D + sub * 8 + e] * scale;
  const int64_t head = b * seq_stride + static_cast<int64_t>(h) * cap * D;
  Online<G> st;
  st.init();
  dense_range<T, D, G>(k + head, v + head, begin, end, qr, st);
  const int64_t p0 = (static_cast<int64_t>(b) * Hq + h * G) * S + split;
  combine_write<D, G>(st, smem, pm + p0, pl + p0, po + p0 * D, S);
  // Publish this block's partials, then count it; the block that brings the count to S merges.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(done + static_cast<int64_t>(b) * H + h, 1u) == static_cast<unsigned>(S - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  float* w = smem + warp * 1024;
  for (int g = warp; g < G; g += kWarps) {
    const int64_t bh = static_cast<int64_t>(b) * Hq + h * G + g;
    float mx = -INFINITY;
    for (int s2 = lane; s2 < S; s2 += 32) mx = fmaxf(mx, __ldcg(pm + bh * S + s2));
#pragma unroll
    for (int o = 16; o > 0; o /= 2) mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, o));
    float L = 0.0f;
    for (int s2 = lane; s2 < S; s2 += 32) {
      const float ws = mx == -INFINITY ? 0.0f : rescale(__ldcg(pm + bh * S + s2), mx);
      w[s2] = ws;
      L = fmaf(ws, __ldcg(pl + bh * S + s2), L);
    }
#pragma unroll
    for (int o = 16; o > 0; o /= 2) L += __shfl_xor_sync(kFull, L, o);
    __syncwarp();
    const float il = L > 0.0f ? 1.0f / L : 0.0f;
    for (int d = lane; d < D; d += 32) {
      float o = 0.0f;
#pragma unroll 8
      for (int s2 = 0; s2 < S; ++s2) o = fmaf(w[s2], __ldcg(po + (bh * S + s2) * D + d), o);
      out[bh * D + d] = o * il;
    }
    __syncwarp();
  }
  if (threadIdx.x == 0) done[static_cast<int64_t>(b) * H + h] = 0;
}

}  // namespace


int choose_splits(int64_t len, int64_t parallel_units, int target_blocks, int64_t min_rows) {
  if (target_blocks <= 0) target_blocks = 8 * sm_count();
  // At most one wave of target_blocks: a partial second wave would leave most of the GPU idle.
  const int64_t want = target_blocks / std::max<int64_t>(parallel_units, 1);
  const int64_t most = std::max<int64_t>(1, (len + min_rows - 1) / min_rows);
  return static_cast<int>(std::clamp<int64_t>(want, 1, std::min<int64_t>(most, 1024)));
}

namespace {

template <typename T, int D, int G>
void launch_full(const DecodeShape& s, const float* q, const void* k, const void* v, int64_t cap, const int* lens,
                 int64_t max_len, float* out, AttentionWorkspace& ws, int target_blocks) {
  static const int resident = [] {  // blocks per multiprocessor at this kernel's register/smem use
    int n = 0;
    check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, full_split_kernel<T, D, G>, kThreads, 0),
          "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
    return std::max(n, 1);
  }();
  if (target_blocks <= 0) target_blocks = resident * sm_count();
  const int S = choose_splits(max_len, static_cast<int64_t>(s.batch) * s.n_kv_heads, target_blocks, 256);
  const int64_t chunk = (max_len + S - 1) / S;
  const size_t np = static_cast<size_t>(s.batch) * s.n_heads * S;
  ws.m.reserve(np * sizeof(float));
  ws.l.reserve(np * sizeof(float));
  ws.o.reserve(np * D * sizeof(float));
  const size_t nd = static_cast<size_t>(s.batch) * s.n_kv_heads * sizeof(unsigned);
  if (ws.done.bytes() < nd) {
    ws.done.reserve(nd);
    fill_zero(ws.done.get(), ws.done.bytes());
  }
  float *pm = ws.m.as<float>(), *pl = ws.l.as<float>(), *po = ws.o.as<float>();
  const dim3 grid(S, s.n_kv_heads, s.batch);
  const int64_t seq_stride = s.shared_kv ? 0 : static_cast<int64_t>(s.n_kv_heads) * cap * D;
  full_split_kernel<T, D, G><<<grid, kThreads>>>(q, static_cast<const T*>(k), static_cast<const T*>(v), cap, seq_stride, lens,
                                                 chunk, S, s.n_heads, s.n_kv_heads,
                                                 1.0f / sqrtf(static_cast<float>(D)), pm, pl, po,
                                                 ws.done.as<unsigned>(), out);
  check_launch("full decode attention");
}

#define HARMONIA_FULL_ARGS s, q, k, v, cap, lens, max_len, out, ws, target_blocks
template <typename T, int D>
void dispatch_g(int G, const DecodeShape& s, const float* q, const void* k, const void* v, int64_t cap,
                const int* lens, int64_t max_len, float* out, AttentionWorkspace& ws, int target_blocks) {
  switch (G) {
    case 1: return launch_full<T, D, 1>(HARMONIA_FULL_ARGS);
    case 2: return launch_full<T, D, 2>(HARMONIA_FULL_ARGS);
    case 4: return launch_full<T, D, 4>(HARMONIA_FULL_ARGS);
    case 8: return launch_full<T, D, 8>(HARMONIA_FULL_ARGS);
  }
  fail_unsupported("cuda decode attention: GQA group of " + std::to_string(G) + " query heads (have 1, 2, 4, 8)");
}

template <typename T>
void dispatch_d(const DecodeShape& s, const float* q, const void* k, const void* v, int64_t cap, const int* lens,
                int64_t max_len, float* out, AttentionWorkspace& ws, int target_blocks) {
  const int G = s.n_heads / s.n_kv_heads;
  switch (s.head_dim) {
    case 8: return dispatch_g<T, 8>(G, HARMONIA_FULL_ARGS);
    case 16: return dispatch_g<T, 16>(G, HARMONIA_FULL_ARGS);
    case 32: return dispatch_g<T, 32>(G, HARMONIA_FULL_ARGS);
    case 64: return dispatch_g<T, 64>(G, HARMONIA_FULL_ARGS);
    case 128: return dispatch_g<T, 128>(G, HARMONIA_FULL_ARGS);
  }
  fail_unsupported("cuda decode attention: head_dim " + std::to_string(s.head_dim) + " (have 8, 16, 32, 64, 128)");
}

__device__ __forceinline__ float hash_uniform(uint64_t seed, uint64_t i) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (i + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f;  // [-1, 1)
}

template <typename T>
__global__ void fill_uniform_kernel(T* p, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = scale * hash_uniform(seed, i);
    if constexpr (sizeof(T) == 2)
      p[i] = __float2bfloat16_rn(v);
    else
      p[i] = v;
  }
}

}  // namespace

void fill_uniform_bf16(void* dev, size_t n, uint64_t seed, float scale) {
  fill_uniform_kernel<__nv_bfloat16><<<1024, 256>>>(static_cast<__nv_bfloat16*>(dev), static_cast<int64_t>(n), seed,
                                                     scale);
  check_launch("fill_uniform_bf16");
}

void fill_uniform_f32(float* dev, size_t n, uint64_t seed, float scale) {
  fill_uniform_kernel<float><<<1024, 256>>>(dev, static_cast<int64_t>(n), seed, scale);
  check_launch("fill_uniform_f32");
}

void decode_attention_full(const DecodeShape& s, KvType type, const float* q, const void* k, const void* v,
                           int64_t cap, const int* lens, int64_t max_len, float* out, AttentionWorkspace& ws,
                           int target_blocks) {
  if (s.batch < 1 || s.n_kv_heads < 1 || s.n_heads % s.n_kv_heads || max_len < 1 || max_len > cap)
    fail_invalid("cuda decode attention: bad shape (batch " + std::to_string(s.batch) + ", heads " +
                 std::to_string(s.n_heads) + "/" + std::to_string(s.n_kv_heads) + ", max_len " +
                 std::to_string(max_len) + ", cap " + std::to_string(cap) + ")");
  switch (type) {
    case KvType::BF16: return dispatch_d<__nv_bfloat16>(HARMONIA_FULL_ARGS);
    case KvType::F16: return dispatch_d<__half>(HARMONIA_FULL_ARGS);
    case KvType::F32: return dispatch_d<float>(HARMONIA_FULL_ARGS);
  }
}

}  // namespace harmonia::cuda
