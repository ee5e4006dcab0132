#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <string>

#include "cuda/forward_kernels.h"
#include "cuda/runtime.h"

namespace harmonia::cuda::fwd {

namespace {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ float load(const bf16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(bf16* p, float v) { *p = __float2bfloat16_rn(v); }

// Calls f(T{}) with T the device type of e.
template <typename F>
void with_elem(Elem e, F&& f) {
  if (e == Elem::F32)
    f(float{});
  else
    f(bf16{});
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

constexpr int kNormThreads = 256;

template <typename T>
__global__ void embed_kernel(const int* __restrict__ tokens, const T* __restrict__ table, int dim, float* x) {
  const int64_t i = blockIdx.x;
  const T* row = table + static_cast<int64_t>(tokens[i]) * dim;
  for (int d = threadIdx.x; d < dim; d += blockDim.x) x[i * dim + d] = load(row + d);
}

template <typename Out>
__global__ void __launch_bounds__(kNormThreads) rmsnorm_kernel(const float* __restrict__ x, int64_t x_stride, int dim,
                                                               const float* __restrict__ w, float eps, Out* out) {
  __shared__ double part[kNormThreads / 32];
  const int64_t i = blockIdx.x;
  const float* xi = x + i * x_stride;
  double ss = 0.0;
  for (int d = threadIdx.x; d < dim; d += kNormThreads) ss += static_cast<double>(xi[d]) * xi[d];
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
  __syncthreads();
  double total = 0.0;
  for (int k = 0; k < kNormThreads / 32; ++k) total += part[k];
  const float r = 1.0f / sqrtf(static_cast<float>(total / dim) + eps);
  for (int d = threadIdx.x; d < dim; d += kNormThreads) store(out + i * dim + d, xi[d] * r * w[d]);
}

constexpr int kMaxHeadDim = 128;

// One warp per (token, head of the qkv row).
__global__ void __launch_bounds__(32) qkv_post_kernel(float* qkv, QkvShape s, const float* __restrict__ bias,
                                                      const float* __restrict__ qn, const float* __restrict__ kn,
                                                      float eps, const float* __restrict__ cos_t,
                                                      const float* __restrict__ sin_t, int64_t row0, int n_rot,
                                                      bool interleaved) {
  __shared__ float buf[kMaxHeadDim];
  const int64_t i = blockIdx.x;
  const int g = blockIdx.y, hd = s.head_dim, lane = threadIdx.x;
  float* row = qkv + i * s.stride() + static_cast<int64_t>(g) * hd;
  for (int d = lane; d < hd; d += 32) buf[d] = bias ? row[d] + bias[g * hd + d] : row[d];
  __syncwarp();
  const bool is_q = g < s.n_heads, is_k = !is_q && g < s.n_heads + s.n_kv_heads;
  if (!is_q && !is_k) {  // a v head: bias only
    for (int d = lane; d < hd; d += 32) row[d] = buf[d];
    return;
  }
  const float* nw = is_q ? qn : kn;
  if (nw) {
    double ss = 0.0;
    for (int d = lane; d < hd; d += 32) ss += static_cast<double>(buf[d]) * buf[d];
    ss = warp_sum(ss);
    const float r = 1.0f / sqrtf(static_cast<float>(ss / hd) + eps);
    __syncwarp();
    for (int d = lane; d < hd; d += 32) buf[d] = buf[d] * r * nw[d];
    __syncwarp();
  }
  const int half = n_rot / 2;
  const float* cs = cos_t + (row0 + i) * half;
  const float* sn = sin_t + (row0 + i) * half;
  for (int j = lane; j < half; j += 32) {
    const int a = interleaved ? 2 * j : j, b = interleaved ? 2 * j + 1 : j + half;
    const float x0 = buf[a], x1 = buf[b];
    row[a] = x0 * cs[j] - x1 * sn[j];
    row[b] = x1 * cs[j] + x0 * sn[j];
  }
  for (int d = n_rot + lane; d < hd; d += 32) row[d] = buf[d];
}

template <typename T>
__global__ void store_kv_kernel(const float* __restrict__ qkv, int64_t n, QkvShape s, T* kc, T* vc, int64_t cap,
                                int64_t pos0) {
  const int hd = s.head_dim, kvd = s.n_kv_heads * hd, qd = s.n_heads * hd;
  const int64_t total = n * kvd;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / kvd;
    const int j = static_cast<int>(e % kvd), h = j / hd, d = j % hd;
    const float* row = qkv + i * s.stride();
    const int64_t at = (static_cast<int64_t>(h) * cap + pos0 + i) * hd + d;
    store(kc + at, row[qd + j]);
    store(vc + at, row[qd + kvd + j]);
  }
}

constexpr int kQueryTile = 4;  // queries (warps) per block
constexpr int kKeyTile = 32;   // K/V rows per shared-memory tile

template <typename KV, typename Out>
__global__ void __launch_bounds__(kQueryTile * 32)
    prefill_attention_kernel(const float* __restrict__ qkv, int64_t n, QkvShape s, const KV* __restrict__ kc,
                             const KV* __restrict__ vc, int64_t cap, int64_t pos0, float scale, Out* out) {
  __shared__ float qs[kQueryTile][kMaxHeadDim];
  __shared__ float ks[kKeyTile][kMaxHeadDim + 1];  // +1: lane r reads row r without bank conflicts
  __shared__ float vs[kKeyTile][kMaxHeadDim];
  __shared__ float ps[kQueryTile][kKeyTile];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, hd = s.head_dim;
  const int h = blockIdx.y, kvh = h / (s.n_heads / s.n_kv_heads);
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kQueryTile, i = i0 + warp;
  const bool valid = i < n;
  const int64_t last = pos0 + i;                                         // this query's last key
  const int64_t kend = pos0 + (n - 1 < i0 + kQueryTile - 1 ? n - 1 : i0 + kQueryTile - 1) + 1;  // the block's key range
  if (valid)
    for (int d = lane; d < hd; d += 32) qs[warp][d] = qkv[i * s.stride() + static_cast<int64_t>(h) * hd + d] * scale;
  const KV* K = kc + static_cast<int64_t>(kvh) * cap * hd;
  const KV* V = vc + static_cast<int64_t>(kvh) * cap * hd;
  constexpr int kAcc = kMaxHeadDim / 32;
  float acc[kAcc] = {};
  float m = -INFINITY, l = 0.0f;
  for (int64_t t0 = 0; t0 < kend; t0 += kKeyTile) {
    __syncthreads();  // previous tile consumed (and qs written, first time)
    for (int e = threadIdx.x; e < kKeyTile * hd; e += blockDim.x) {
      const int r = e / hd, d = e % hd;
      const bool in = t0 + r < kend;
      ks[r][d] = in ? load(K + (t0 + r) * hd + d) : 0.0f;
      vs[r][d] = in ? load(V + (t0 + r) * hd + d) : 0.0f;
    }
    __syncthreads();
    if (!valid || t0 > last) continue;  // no barrier below: safe to skip
    float sc = -INFINITY;
    if (t0 + lane <= last) {
      float dot = 0.0f;
      for (int d = 0; d < hd; ++d) dot = fmaf(qs[warp][d], ks[lane][d], dot);
      sc = dot;
    }
    const float mt = warp_max(sc);  // finite: row t0 <= last is in the tile
    const float mn = fmaxf(m, mt);
    const float c = m == -INFINITY ? 0.0f : expf(m - mn);
    const float p = sc == -INFINITY ? 0.0f : expf(sc - mn);
    l = l * c + warp_sum(p);
    m = mn;
    ps[warp][lane] = p;
    __syncwarp();
#pragma unroll
    for (int j = 0; j < kAcc; ++j) {
      const int d = lane + 32 * j;
      if (d < hd) {
        float a = acc[j] * c;
        for (int r = 0; r < kKeyTile; ++r) a = fmaf(ps[warp][r], vs[r][d], a);
        acc[j] = a;
      }
    }
    __syncwarp();
  }
  if (!valid) return;
  const float il = 1.0f / l;
#pragma unroll
  for (int j = 0; j < kAcc; ++j) {
    const int d = lane + 32 * j;
    if (d < hd) store(out + (i * s.n_heads + h) * hd + d, acc[j] * il);
  }
}

template <typename T>
__global__ void swiglu_kernel(const float* __restrict__ gu, int64_t n, int ffn, T* h) {
  const int64_t total = n * ffn;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / ffn, j = e % ffn;
    const float g = gu[i * 2 * ffn + j], u = gu[i * 2 * ffn + ffn + j];
    store(h + e, g / (1.0f + expf(-g)) * u);
  }
}

template <typename T>
__global__ void convert_kernel(const float* __restrict__ src, int64_t n, T* dst) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)
    store(dst + e, src[e]);
}

constexpr int kArgmaxThreads = 1024;

__global__ void __launch_bounds__(kArgmaxThreads) argmax_kernel(const float* __restrict__ x, int n, int* out) {
  __shared__ float bv[kArgmaxThreads];
  __shared__ int bi[kArgmaxThreads];
  float best = -INFINITY;
  int idx = INT_MAX;
  for (int k = threadIdx.x; k < n; k += kArgmaxThreads)
    if (x[k] > best || (x[k] == best && k < idx)) best = x[k], idx = k;
  bv[threadIdx.x] = best;
  bi[threadIdx.x] = idx;
  __syncthreads();
  for (int w = kArgmaxThreads / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) {
      const float ov = bv[threadIdx.x + w];
      const int oi = bi[threadIdx.x + w];
      if (ov > bv[threadIdx.x] || (ov == bv[threadIdx.x] && oi < bi[threadIdx.x])) {
        bv[threadIdx.x] = ov;
        bi[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = bi[0] == INT_MAX ? 0 : bi[0];
}

__global__ void set_int_kernel(int* p, int v) { *p = v; }

int grid_for(int64_t n, int threads) {
  return static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 4096));
}

}  // namespace

void embed(const int* tokens, int64_t n, const void* table, Elem t, int dim, float* x) {
  with_elem(t, [&](auto z) {
    using T = decltype(z);
    embed_kernel<T><<<static_cast<unsigned>(n), 256>>>(tokens, static_cast<const T*>(table), dim, x);
  });
  check_launch("forward embed");
}

void rmsnorm(const float* x, int64_t n, int64_t x_stride, int dim, const float* w, float eps, void* out, Elem t) {
  with_elem(t, [&](auto z) {
    using T = decltype(z);
    rmsnorm_kernel<T><<<static_cast<unsigned>(n), kNormThreads>>>(x, x_stride, dim, w, eps, static_cast<T*>(out));
  });
  check_launch("forward rmsnorm");
}

void qkv_post(float* qkv, int64_t n, const QkvShape& s, const float* bias, const float* q_norm, const float* k_norm,
              float eps, const float* cos, const float* sin, int64_t row0, int n_rot, bool interleaved) {
  if (s.head_dim > kMaxHeadDim || n_rot > s.head_dim)
    fail_unsupported("cuda forward: head_dim " + std::to_string(s.head_dim) + " / n_rot " + std::to_string(n_rot) +
                     " (have head_dim <= 128, n_rot <= head_dim)");
  const dim3 grid(static_cast<unsigned>(n), s.n_heads + 2 * s.n_kv_heads);
  qkv_post_kernel<<<grid, 32>>>(qkv, s, bias, q_norm, k_norm, eps, cos, sin, row0, n_rot, interleaved);
  check_launch("forward qkv bias/norm/rope");
}

void store_kv(const float* qkv, int64_t n, const QkvShape& s, void* k_cache, void* v_cache, Elem t, int64_t cap,
              int64_t pos0) {
  with_elem(t, [&](auto z) {
    using T = decltype(z);
    store_kv_kernel<T><<<grid_for(n * s.n_kv_heads * s.head_dim, 256), 256>>>(
        qkv, n, s, static_cast<T*>(k_cache), static_cast<T*>(v_cache), cap, pos0);
  });
  check_launch("forward store kv");
}

void prefill_attention(const float* qkv, int64_t n, const QkvShape& s, const void* k_cache, const void* v_cache,
                       Elem kv_t, int64_t cap, int64_t pos0, void* out, Elem out_t) {
  if (s.head_dim > kMaxHeadDim)
    fail_unsupported("cuda prefill attention: head_dim " + std::to_string(s.head_dim) + " (have <= 128)");
  const dim3 grid(static_cast<unsigned>((n + kQueryTile - 1) / kQueryTile), s.n_heads);
  const float scale = 1.0f / sqrtf(static_cast<float>(s.head_dim));
  with_elem(kv_t, [&](auto zk) {
    using KV = decltype(zk);
    with_elem(out_t, [&](auto zo) {
      using O = decltype(zo);
      prefill_attention_kernel<KV, O><<<grid, kQueryTile * 32>>>(qkv, n, s, static_cast<const KV*>(k_cache),
                                                                  static_cast<const KV*>(v_cache), cap, pos0, scale,
                                                                  static_cast<O*>(out));
    });
  });
  check_launch("forward prefill attention");
}

void swiglu(const float* gu, int64_t n, int ffn, void* h, Elem t) {
  with_elem(t, [&](auto z) {
    using T = decltype(z);
    swiglu_kernel<T><<<grid_for(n * ffn, 256), 256>>>(gu, n, ffn, static_cast<T*>(h));
  });
  check_launch("forward swiglu");
}

void convert(const float* src, int64_t n, void* dst, Elem t) {
  with_elem(t, [&](auto z) {
    using T = decltype(z);
    convert_kernel<T><<<grid_for(n, 256), 256>>>(src, n, static_cast<T*>(dst));
  });
  check_launch("forward convert");
}

void argmax(const float* x, int n, int* out) {
  argmax_kernel<<<1, kArgmaxThreads>>>(x, n, out);
  check_launch("forward argmax");
}

void set_int(int* p, int v) {
  set_int_kernel<<<1, 1>>>(p, v);
  check_launch("forward set_int");
}

}  // namespace harmonia::cuda::fwd
