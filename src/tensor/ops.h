#pragma once
// Linear-algebra kernels over (possibly quantised) weight rows.
//
// Every function has a plain fp32 reference version (suffix _ref) that the fast
// versions are tested against (tensor/*_test.cpp). Block layouts are those of
// the GGUF format description (ggml-common.h): Q8_0, Q4_0, Q4_K, Q5_K, Q6_K.
//
// Numerics of the fast kernels (tolerances in tensor/ops_test.cpp):
//  - f32/f16/bf16 weights: fp32 products and sums in a different order from the
//    reference; |fast - exact| <= 2e-5 * sum_i |w_i x_i| (tested to 4096 columns).
//  - block-quantised weights (q8_0, q4_0, q4_K, q5_K, q6_K) in dot_row, matvec
//    and matmul with n <= kMatmulStreamMaxN: x is first rounded to 8-bit blocks
//    of 32 (as llama.cpp's CPU backend does), x_i -> d_b * round(x_i / d_b) with
//    d_b = max|x_block| / 127, then the products are exact integer sums. The
//    result is the exact dot with the rounded x (to fp32 rounding), so
//    |fast - exact| <= sum_i |w_i| d_b / 2; typically ~0.3% of the sum's magnitude.
//  - matmul with n > kMatmulStreamMaxN keeps x in fp32 (dequantised weights, sgemm).
#include <cstdint>
#include <initializer_list>

#include "tensor/tensor.h"

namespace harmonia {

// ---- Row conversion ----------------------------------------------------------
// dst[n] <- src row of type t holding n elements. Throws Error(Unsupported) for
// types without kernels, Error(InvalidInput) if n is not a multiple of the block.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);
// dst row of type t <- src[n] (round to nearest; llama.cpp's reference
// quantisers for q8_0/q4_0/q4_k/q5_k/q6_k). Throws like dequantize_row.
void quantize_row(DType t, const float* src, void* dst, int64_t n);

// ---- Dot products -------------------------------------------------------------
// sum_i row[i] * x[i] for one row of type t with n elements; x is fp32.
// Throws like dequantize_row.
float dot_row_ref(DType t, const void* row, const float* x, int64_t n);  // exact to fp32 (double sum)
float dot_row(DType t, const void* row, const float* x, int64_t n);      // SIMD

// ---- Matrix-vector (decode) -----------------------------------------------------
// y[rows] = W[rows, cols] * x[cols]. Multi-threaded over rows (OpenMP, using
// the current omp_get_max_threads(); single-threaded inside a parallel region
// or for weights under 64 KiB). Throws Error(Unsupported) for a weight type
// without kernels, Error(InvalidInput) for a tensor without data, a row length
// that is not a block multiple, or nbytes (when set) short of rows * row bytes.
void matvec_ref(const Tensor& W, const float* x, float* y);
void matvec(const Tensor& W, const float* x, float* y);

// ---- Matrix-matrix (prefill) ------------------------------------------------------
// Y[n, rows] = X[n, cols] * W^T; n <= 0 does nothing. n <= kMatmulStreamMaxN: W
// streamed once through the matvec kernels, each row meeting all n vectors. Else:
// OpenMP threads each take a contiguous share of W's rows and run sgemm on it
// (f32 directly; other types dequantised ~512 KiB tile by tile). NOTE: sets
// OpenBLAS to single-threaded for the process (openblas_set_num_threads(1)):
// Harmonia threads BLAS calls itself. Single-threaded inside a parallel region.
// Throws like matvec.
void matmul_ref(const Tensor& W, const float* X, int64_t n, float* Y);
void matmul(const Tensor& W, const float* X, int64_t n, float* Y);
// Several matrices with the same input, e.g. a layer's q/k/v projections:
// Y_j[n, rows_j] = X[n, cols] * W_j^T for each job, exactly as matmul(W_j, X, n,
// Y_j) computes it. With n <= kMatmulStreamMaxN all jobs run in one OpenMP pass
// (decode: one fork/join instead of one per matrix, X quantised once), else one
// matmul each. Jobs may differ in type and rows. Throws like matmul, and
// Error(InvalidInput) if the W_j differ in cols or there are more than 8.
struct MatmulJob {
  const Tensor* W;
  float* Y;
};
void matmul_multi(std::initializer_list<MatmulJob> jobs, const float* X, int64_t n);
// The n up to which matmul streams W through the matvec kernels (32): measured
// (ops_bench BM_Matmul) as fast as or faster per token than dequantise + sgemm
// up to n ~ 64 on Zen 4 and Sapphire Rapids; above it sgemm keeps x in fp32.
inline constexpr int64_t kMatmulStreamMaxN = 32;

// ---- Activations ------------------------------------------------------------------
// SwiGLU's gate (Shazeer 2020): h[i] <- silu(h[i]) * g[i], silu(x) = x / (1 + exp(-x)),
// i in [0, n). The reference uses std::exp; the fast version a vectorised Cephes-style
// expf (range reduction by ln 2, degree-6 polynomial; 16 lanes with AVX-512, 8 with
// AVX2, the reference formula for the tail) with exp's argument clamped to [-88.37, 88.37]:
// |fast - ref| <= 1e-6 |ref| + 1e-30 (tested on random x in [-100, 100]). Single-threaded.
void swiglu_ref(float* h, const float* g, int64_t n);
void swiglu(float* h, const float* g, int64_t n);

// Sets OpenBLAS to one thread for the process (once; idempotent). Harmonia
// threads its BLAS calls itself with OpenMP: matmul's row tiles, attention's
// heads. OpenBLAS's own pthread pool spinning beside OpenMP's fought for the cores.
void set_blas_single_threaded();

// Instruction set the fast kernels were compiled for: "avx512vnni", "avx2" or
// "scalar" (for logs and benchmark output).
const char* kernel_isa();

}  // namespace harmonia
