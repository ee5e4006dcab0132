#pragma once
// Private to tensor/: the per-row dot-product kernels behind dot_row, matvec and
// matmul (tensor/ops.cpp), and the 8-bit activation format they use.
//
// Float weights (f32, f16, bf16) are multiplied with the fp32 activations as is.
// Block-quantised weights (q8_0, q4_0, q4_K, q5_K, q6_K) are multiplied with the
// activations quantised to 8-bit blocks of 32 (Q8Act, llama.cpp's approach with
// its q8_0 / q8_K "vec_dot_type"), so each 32-element product is an exact
// integer dot product (AVX-512 VNNI vpdpbusd, or AVX2 vpmaddubsw) scaled once.
// The only approximation beyond fp32 rounding is x -> d * round(x / d), at most
// d/2 = max|x_block| / 254 per element.
#include <cstdint>
#include <vector>

#include "tensor/dtype.h"

namespace harmonia::kernels {

constexpr int kMaxVec = 4;  // activation vectors one kernel call multiplies a row with

// x[n] quantised per 32-element block b: x[32b + i] ~= d[b] * qs[32b + i].
struct Q8Act {
  int64_t n = 0;                  // elements, a multiple of 32
  const float* d = nullptr;       // [n/32] block scale max|x| / 127
  const float* dsum = nullptr;    // [n/32] d[b] * sum_i qs[32b + i] (for k-quant mins)
  const int32_t* lsum = nullptr;  // [n/32][8] sum of qs over each 4 consecutive elements
  const int32_t* lsum_m128 = nullptr;  // [n/32][8] -128 * lsum (start of a vpdpbusd with w + 128)
  const int8_t* qs = nullptr;     // [n]
};

// Storage for `count` quantised activation vectors; reuse it across calls to
// avoid allocation in the decode loop.
class Q8ActBuffer {
 public:
  // X[count, n] row-major fp32 -> count Q8Act. n must be a multiple of 32.
  void quantize(const float* X, int64_t count, int64_t n);
  Q8Act view(int64_t i) const;  // i < count

 private:
  int64_t n_ = 0, count_ = 0;
  std::vector<float> d_, dsum_;
  std::vector<int32_t> lsum_, lsum_m128_;
  std::vector<int8_t> qs_;
};

// The activations of one kernel call: x for float weights, q for quantised ones.
struct Acts {
  const float* x[kMaxVec] = {};
  Q8Act q[kMaxVec] = {};
};

// out[v] = sum_i row[i] * x_v[i] for v < nv (1 <= nv <= kMaxVec), n elements.
using RowKernel = void (*)(const uint8_t* row, int64_t n, const Acts& a, int nv, float* out);

// The kernel for weight type t; nullptr where Harmonia has none.
RowKernel row_kernel(DType t);
// True where row_kernel(t) reads Acts::q (block-quantised types), false for Acts::x.
bool uses_q8_act(DType t);
// "avx512vnni", "avx2" or "scalar": the instruction set the kernels were built for.
const char* isa_name();

}  // namespace harmonia::kernels
